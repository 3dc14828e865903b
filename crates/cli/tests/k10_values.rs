//! `explain-token` and `plan` against K10 as it is configured: its Helm values (admin groups,
//! group allow list, namespaced API, settings in a Secret) and namespace selectors.

use std::path::Path;
use std::process::{Command, Output};

use groupbinder_api::Settings;
use groupbinder_e2e::k10::{K10, Version};
use groupbinder_e2e::oidc::unsigned;
use groupbinder_e2e::{
    Operator, SEED_GUID, SEED_PREFIX, agb, apply, config, exclusive, install, repo, seed_spec,
    setup, wait_for_reason,
};
use serde_json::{Value, json};

fn groupbinder() -> Command {
    Command::new(env!("CARGO_BIN_EXE_groupbinder"))
}

fn token_file(dir: &Path, groups: &[&str]) -> anyhow::Result<std::path::PathBuf> {
    let token = unsigned(&json!({
        "iss": "https://login.microsoftonline.com/tenant/v2.0", "ver": "2.0", "aud": "k10",
        "oid": "00000000-0000-0000-0000-000000000009", "sub": "x", "groups": groups,
    }));
    let file = dir.join("token.jwt");
    std::fs::write(&file, token)?;
    Ok(file)
}

fn json_of(out: &Output) -> anyhow::Result<Value> {
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn codes(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["code"].as_str().map(str::to_owned))
        .collect()
}

/// The example values say what they should, and a misconfigured K10 is called out.
#[test]
fn explain_token_reads_k10s_own_admin_and_allow_lists() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let token = token_file(dir.path(), &[SEED_GUID])?;
    let explain = |values: &Path| {
        groupbinder()
            .args(["explain-token", "-o", "json", "--token-file"])
            .arg(&token)
            .arg("--k10-values")
            .arg(values)
            .arg("-f")
            .arg(repo().join("examples/k10-admins.yaml"))
            .output()
    };
    let example = json_of(&explain(&repo().join("examples/k10-oidc-values.yaml"))?)?;
    let k10_codes = [
        "AdminGroupWithoutPrefix",
        "AllowListMakesAdmins",
        "GroupNotInAllowList",
        "OidcSettingsInSecret",
    ];
    let found = codes(&example);
    assert!(
        !found.iter().any(|c| k10_codes.contains(&c.as_str())),
        "{found:?}"
    );
    assert_eq!(example["bindings"][0]["name"], "k10-admins", "{example}");

    let risky = dir.path().join("risky.yaml");
    std::fs::write(
        &risky,
        format!(
            "auth:\n  groupAllowList: [\"{SEED_GUID}\"]\n  oidcAuth:\n    groupPrefix: {SEED_PREFIX}\n    groupClaim: groups\n"
        ),
    )?;
    let found = codes(&json_of(&explain(&risky)?)?);
    for code in ["AdminGroupWithoutPrefix", "AllowListMakesAdmins"] {
        assert!(found.iter().any(|c| c == code), "{code} in {found:?}");
    }
    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, "auth:\n  oidcAuth:\n    secretName: k10-oidc\n")?;
    let found = codes(&json_of(&explain(&secret)?)?);
    assert!(
        found.iter().any(|c| c == "OidcSettingsInSecret"),
        "{found:?}"
    );
    Ok(())
}

/// `<release>-basic` in K10's own namespace is planned (the allowlist permits it) with a warning.
#[test]
fn plan_warns_about_basic_in_k10s_own_namespace() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("basic.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata: {{name: oops}}\nspec:\n  groupObjectId: {SEED_GUID}\n  roles: [{{name: k10-basic, kind: ClusterRole, namespace: kasten-io}}]\n"
        ),
    )?;
    let out = groupbinder().args(["plan", "-f"]).arg(&file).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: AzureGroupBinding oops: RoleBinding kasten-io/oops:k10-basic binds ClusterRole k10-basic in kasten-io: in K10's own namespace"),
        "{stderr}"
    );
    // explain-token says so too, beside the match.
    let token = token_file(dir.path(), &[SEED_GUID])?;
    let out = groupbinder()
        .args([
            "explain-token",
            "-o",
            "json",
            "--groups-prefix",
            "",
            "--token-file",
        ])
        .arg(&token)
        .arg("-f")
        .arg(&file)
        .output()?;
    let report = json_of(&out)?;
    let warning = report["bindings"][0]["warnings"][0]
        .as_str()
        .unwrap_or_default();
    assert!(warning.contains("in K10's own namespace"), "{report}");
    // The examples never do it.
    let out = groupbinder()
        .args(["plan", "--namespaces"])
        .arg(namespaces_file(dir.path())?)
        .arg("-f")
        .arg(repo().join("examples"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    Ok(())
}

/// Namespaces as `kubectl get namespaces -o yaml` prints them: `shop` and `shop-dev` labelled
/// `team: shop`, `crm` not.
fn namespaces_file(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let file = dir.join("namespaces.yaml");
    let ns = |name: &str, team: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}});
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [ns("shop", "shop"), ns("shop-dev", "shop"), ns("crm", "crm")]});
    std::fs::write(&file, serde_json::to_string(&list)?)?;
    Ok(file)
}

/// `plan` of a selector needs the namespaces, and says so; with them it plans the selected ones.
#[test]
fn plan_of_a_selector_takes_the_namespaces_from_a_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let example = repo().join("examples/k10-basic-by-team-label.yaml");
    let out = groupbinder().args(["plan", "-f"]).arg(&example).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--namespaces"), "{stderr}");
    let out = groupbinder()
        .args(["plan", "--namespaces"])
        .arg(namespaces_file(dir.path())?)
        .arg("-f")
        .arg(&example)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let planned: Vec<Value> = serde_saphyr::from_str_multiple(&stdout)?;
    let namespaces: Vec<&str> = planned
        .iter()
        .filter_map(|b| b["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(namespaces, ["shop", "shop-dev"], "{stdout}");
    Ok(())
}

/// With `useNamespacedAPI`, K10's API groups end in its namespace: `--check` asks about those
/// (and answers as the real authorizer does), from the values or a flag.
#[tokio::test]
async fn explain_token_checks_k10s_namespaced_api_groups() -> anyhow::Result<()> {
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    let mut k10 = K10::new(Version::NEWEST, "nsk10", "ns-kasten");
    k10.namespaced_api = true;
    install(&client, &k10).await?;
    let operator = Operator::start(
        &client,
        config(Settings::for_k10("nsk10", "ns-kasten", SEED_PREFIX)),
    );
    apply(&client, &agb("ns-admins", seed_spec())).await?;
    wait_for_reason(&client, "ns-admins", "True", "Reconciled").await?;

    let dir = tempfile::tempdir()?;
    let token = token_file(dir.path(), &[SEED_GUID])?;
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!("useNamespacedAPI: true\nauth:\n  oidcAuth:\n    groupPrefix: {SEED_PREFIX}\n"),
    )?;
    let check = |extra: &[&str]| {
        groupbinder()
            .args([
                "explain-token",
                "-o",
                "json",
                "--check",
                "--k10-release",
                "nsk10",
                "--k10-namespace",
                "ns-kasten",
                "--token-file",
            ])
            .arg(&token)
            .args(extra)
            .env("KUBECONFIG", cp.kubeconfig())
            .output()
    };
    let backup = |report: &Value| -> (String, bool) {
        let c = report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["action"] == "create a backup")
            .cloned()
            .unwrap_or_default();
        (
            c["resource"].as_str().unwrap_or_default().to_owned(),
            c["allowed"] == true,
        )
    };
    let values_arg = values.display().to_string();
    for extra in [
        vec!["--k10-values", values_arg.as_str()],
        vec![
            "--groups-prefix",
            SEED_PREFIX,
            "--k10-namespaced-api",
            "true",
        ],
    ] {
        let report = json_of(&check(&extra)?)?;
        assert_eq!(
            backup(&report),
            ("backupactions.actions.kio.ns.kasten".to_owned(), true),
            "{extra:?}: {report}"
        );
    }
    // Without it, --check asks about *.kio.kasten.io, which this K10 does not serve: not allowed.
    let report = json_of(&check(&["--groups-prefix", SEED_PREFIX])?)?;
    assert_eq!(
        backup(&report),
        ("backupactions.actions.kio.kasten.io".to_owned(), false),
        "{report}"
    );
    groupbinder_e2e::agbs(&client)
        .delete("ns-admins", &Default::default())
        .await?;
    operator.stop().await
}
