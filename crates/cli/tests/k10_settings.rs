//! Ready means a member really gets K10 access: the operator reads K10's live OIDC settings as
//! K10 does (Deployment `auth-svc` → its volume `k10-oidc-auth` → that Secret), watches them, and
//! says in condition `K10Presents` (and `Ready`) whether K10 presents each object's group. The
//! real binary, at debug log level, on the real control plane; the client secret in K10's Secret
//! never reaches its logs, events, statuses or metrics.

use std::process::Stdio;
use std::time::Duration;

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec, PresentedBy};
use groupbinder_e2e::{
    CLIENT_SECRET, OperatorProcess, SEED_PREFIX, Who, agbs, apply, crbs, eventually, guid,
    install_crd, install_k10, install_k10_oidc, wait_for_reason_within,
};
use groupbinder_testenv::ControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

const PROVIDER: &str =
    "https://login.microsoftonline.com/3f1c0d2e-0000-4000-8000-000000000001/v2.0";

fn object(name: &str, n: u32, prefix: Option<&str>, by: Option<PresentedBy>) -> AzureGroupBinding {
    AzureGroupBinding::new(
        name,
        AzureGroupBindingSpec {
            group_object_id: guid(n),
            group_prefix: prefix.map(str::to_owned),
            presented_by: by,
            ..AzureGroupBindingSpec::default()
        },
    )
}

/// The `K10Presents` condition of `name`: (status, reason).
async fn k10_presents(
    client: &kube::Client,
    name: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let agb = agbs(client).get(name).await?;
    Ok(agb
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "K10Presents")
        .map(|c| (c.status.clone(), c.reason.clone())))
}

async fn wait_presents(
    client: &kube::Client,
    name: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<()> {
    eventually(
        &format!("{name} to say K10Presents={status} ({reason})"),
        Duration::from_secs(30),
        || async {
            let now = k10_presents(client, name).await?;
            Ok((now == Some((status.to_owned(), reason.to_owned()))).then_some(()))
        },
    )
    .await
}

async fn k10(client: &kube::Client, secret: &str, settings: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut all = vec![("provider-url", PROVIDER), ("usernameClaim", "email")];
    all.extend_from_slice(settings);
    install_k10_oidc(client, "kasten-io", secret, &all).await
}

#[tokio::test]
async fn ready_follows_what_k10_really_presents_and_the_client_secret_stays_hidden()
-> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let _serial = groupbinder_e2e::exclusive().await; // K10's one Secret, one operator
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let prefix = ("groupClaim", "groups");
    k10(
        &client,
        "k10-oidc-auth",
        &[prefix, ("groupPrefix", "azure:")],
    )
    .await?;
    let log = cp.dir().join("k10-settings-operator.log");
    let operator = OperatorProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_groupbinder")),
        cp.kubeconfig(),
        &[
            ("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX),
            ("GROUPBINDER_LOG_LEVEL", "debug"),
        ],
        Stdio::from(std::fs::File::create(&log)?),
    )?;
    let within = Duration::from_secs(30);

    // The operator's default prefix and an object's own prefix both differ from K10's.
    apply(&client, &object("chain-default", 1, None, None)).await?;
    apply(&client, &object("chain-override", 2, Some("other:"), None)).await?;
    apply(
        &client,
        &object(
            "chain-elsewhere",
            3,
            Some("other:"),
            Some(PresentedBy::Other),
        ),
    )
    .await?;
    let mismatch =
        wait_for_reason_within(&client, "chain-default", "False", "PrefixMismatch", within).await?;
    let message = mismatch
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("K10 presents azure:{}", guid(1))),
        "{message}"
    );
    wait_presents(&client, "chain-default", "False", "PrefixMismatch").await?;
    wait_for_reason_within(&client, "chain-override", "False", "PrefixMismatch", within).await?;
    // Kept either way (they grant nobody): nothing flaps when K10's settings change.
    assert!(
        crbs(&client)
            .get_opt("chain-default:k10-admin")
            .await?
            .is_some()
    );
    // Not for K10: not checked.
    wait_for_reason_within(&client, "chain-elsewhere", "True", "Reconciled", within).await?;
    wait_presents(&client, "chain-elsewhere", "Unknown", "NotChecked").await?;

    // K10's Secret corrected: Ready without a restart, and a member has access.
    k10(
        &client,
        "k10-oidc-auth",
        &[prefix, ("groupPrefix", SEED_PREFIX)],
    )
    .await?;
    wait_for_reason_within(&client, "chain-default", "True", "Reconciled", within).await?;
    wait_presents(&client, "chain-default", "True", "Presented").await?;
    let group = format!("{SEED_PREFIX}{}", guid(1));
    let groups = [group.as_str()];
    Who::new(&client, "member", &groups)
        .may(
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("kasten-io"),
        )
        .await?;
    wait_for_reason_within(&client, "chain-override", "False", "PrefixMismatch", within).await?;

    // No groups claim: K10 presents no groups at all.
    k10(&client, "k10-oidc-auth", &[("groupPrefix", SEED_PREFIX)]).await?;
    wait_for_reason_within(&client, "chain-default", "False", "NoGroupClaim", within).await?;
    // An allow list without the group, either way it is read; then with both forms.
    let allowed_other = [
        prefix,
        ("groupPrefix", SEED_PREFIX),
        ("groupAllowList", "someone-else\n"),
    ];
    k10(&client, "k10-oidc-auth", &allowed_other).await?;
    wait_for_reason_within(
        &client,
        "chain-default",
        "False",
        "NotInGroupAllowList",
        within,
    )
    .await?;
    let both = format!("{}\n{group}\n", guid(1));
    k10(
        &client,
        "k10-oidc-auth",
        &[
            prefix,
            ("groupPrefix", SEED_PREFIX),
            ("groupAllowList", &both),
        ],
    )
    .await?;
    wait_for_reason_within(&client, "chain-default", "True", "Reconciled", within).await?;

    // auth.oidcAuth.secretName: auth-svc mounts another Secret, which is the one read.
    k10(&client, "custom-oidc", &allowed_other).await?;
    wait_for_reason_within(
        &client,
        "chain-default",
        "False",
        "NotInGroupAllowList",
        within,
    )
    .await?;

    // K10 gone: Unknown, and Ready as before, the bindings made.
    Api::<Deployment>::namespaced(client.clone(), "kasten-io")
        .delete("auth-svc", &Default::default())
        .await?;
    wait_presents(&client, "chain-default", "Unknown", "K10NotInstalled").await?;
    wait_for_reason_within(&client, "chain-default", "True", "Reconciled", within).await?;

    // K10's version, from k10-config.
    let metrics = operator.metrics().unwrap_or_default();
    assert!(
        metrics.contains(r#"groupbinder_k10_info{version="9.0.7",api_domain="kio.kasten.io"} 1"#),
        "{metrics}"
    );
    // K10 newer than the fixtures, with a version chosen by whoever may write k10-config (K10's
    // ns-admins): one warning event about k10-config, escaped; the metric label bounded.
    let hostile = format!("99.0.0\u{1b}]0;owned\u{7}\n{}", "9".repeat(100_000));
    let config: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "k10-config", "namespace": "kasten-io"},
            "data": {"version": hostile, "apiDomain": "kio.kasten.io"},
        }))?;
    apply(&client, &config).await?;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "kasten-io");
    let warned = eventually("a warning event about K10's version", within, || async {
        let all = events.list(&Default::default()).await?;
        Ok(all.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(groupbinder_api::k10::NEWER_THAN_TESTED)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("k10-config")
        }))
    })
    .await?;
    assert_eq!(warned.type_.as_deref(), Some("Warning"));
    let note = warned.note.unwrap_or_default();
    assert!(
        note.contains("K10 99.0.0\\u{1b}]0;owned\\u{7}\\u{a}999"),
        "{note}"
    );
    assert!(!note.chars().any(char::is_control), "{note:?}");
    let metrics = operator.metrics().unwrap_or_default();
    let label = metrics
        .lines()
        .find(|l| l.starts_with("groupbinder_k10_info{"))
        .unwrap_or_default();
    assert!(
        label.starts_with(r#"groupbinder_k10_info{version="99.0.0\\u{1b}]0;owned"#),
        "{label}"
    );
    assert!(
        label.len() < 300,
        "an unbounded label: {} bytes",
        label.len()
    );

    // The client secret is in no output: logs (debug), events, statuses, metrics.
    drop(operator);
    let logs = std::fs::read_to_string(&log)?;
    assert!(
        logs.contains("K10's OIDC settings"),
        "the log says what it read"
    );
    let events = cp
        .kubectl()
        .args(["get", "events", "-A", "-o", "yaml"])
        .output()?;
    let statuses = cp.kubectl().args(["get", "agb", "-o", "yaml"]).output()?;
    for (what, text) in [
        ("log", logs),
        ("metrics", metrics),
        (
            "events",
            String::from_utf8_lossy(&events.stdout).into_owned(),
        ),
        (
            "statuses",
            String::from_utf8_lossy(&statuses.stdout).into_owned(),
        ),
    ] {
        assert!(
            !text.contains(CLIENT_SECRET),
            "the client secret is in the {what}"
        );
    }
    for name in ["chain-default", "chain-override", "chain-elsewhere"] {
        agbs(&client).delete(name, &Default::default()).await?;
    }
    Ok(())
}

/// What a K10 admin does: create a backup action in K10's namespace.
const BACKUP_ACTIONS: (&str, &str, &str, Option<&str>) = (
    "create",
    "actions.kio.kasten.io",
    "backupactions",
    Some("kasten-io"),
);

/// Deletes K10's OIDC Secret (a reinstall) and waits until `name` says it cannot be read.
async fn k10_secret_deleted(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "kasten-io");
    secrets.delete("k10-oidc-auth", &Default::default()).await?;
    wait_presents(client, name, "Unknown", "K10ConfigUnreadable").await
}

/// The operator's status group of `name`.
async fn group_of(client: &kube::Client, name: &str) -> anyhow::Result<Option<String>> {
    Ok(agbs(client).get(name).await?.status.and_then(|s| s.group))
}

fn operator(cp: &ControlPlane, log: &str) -> anyhow::Result<OperatorProcess> {
    let log = std::fs::File::create(cp.dir().join(log))?;
    OperatorProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_groupbinder")),
        cp.kubeconfig(),
        &[("GROUPBINDER_FOLLOW_K10_GROUP_PREFIX", "true")],
        Stdio::from(log),
    )
}

/// One prefix, K10's, on request: with `--follow-k10-group-prefix` an object that sets no prefix
/// uses K10's live `groupPrefix` and follows it; while K10's Secret is gone (also across a
/// restart) the last known prefix holds and access never lapses; an explicit prefix that differs
/// is reported, never "fixed".
#[tokio::test]
async fn objects_follow_k10s_prefix_and_hold_the_last_known_one() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let _serial = groupbinder_e2e::exclusive().await;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let claim = ("groupClaim", "groups");
    k10(&client, "k10-oidc-auth", &[claim, ("groupPrefix", "k10:")]).await?;
    let first = operator(cp, "follow-1.log")?;
    let within = Duration::from_secs(30);
    apply(&client, &object("follow-a", 10, None, None)).await?;
    apply(
        &client,
        &object("follow-explicit", 11, Some("other:"), None),
    )
    .await?;
    wait_for_reason_within(&client, "follow-a", "True", "Reconciled", within).await?;
    let held = format!("k10:{}", guid(10));
    assert_eq!(
        group_of(&client, "follow-a").await?.as_deref(),
        Some(held.as_str())
    );
    wait_for_reason_within(
        &client,
        "follow-explicit",
        "False",
        "PrefixMismatch",
        within,
    )
    .await?;
    let groups = [held.as_str()];
    let member = Who::new(&client, "member", &groups);
    let actions = BACKUP_ACTIONS;
    member
        .may(actions.0, actions.1, actions.2, actions.3)
        .await?;

    // K10's Secret deleted (a reinstall), and the operator restarted meanwhile: the prefix
    // holds, nothing is revoked.
    k10_secret_deleted(&client, "follow-a").await?;
    drop(first);
    let second = operator(cp, "follow-2.log")?;
    eventually("the new operator to reconcile", within, || async {
        Ok(second
            .metric("groupbinder_reconciles_total")
            .filter(|n| *n >= 2.0)
            .map(|_| ()))
    })
    .await?;
    for _ in 0..5 {
        assert!(
            member
                .can(actions.0, actions.1, actions.2, actions.3)
                .await?,
            "access lapsed"
        );
        assert_eq!(
            group_of(&client, "follow-a").await?.as_deref(),
            Some(held.as_str())
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_reason_within(&client, "follow-a", "True", "Reconciled", within).await?;

    // Back, then K10's prefix changed: followed, counted, the old group revoked.
    k10(&client, "k10-oidc-auth", &[claim, ("groupPrefix", "k10:")]).await?;
    wait_presents(&client, "follow-a", "True", "Presented").await?;
    k10(
        &client,
        "k10-oidc-auth",
        &[claim, ("groupPrefix", "azure:")],
    )
    .await?;
    let moved = format!("azure:{}", guid(10));
    eventually("follow-a to follow K10's new prefix", within, || async {
        Ok((group_of(&client, "follow-a").await?.as_deref() == Some(moved.as_str())).then_some(()))
    })
    .await?;
    wait_presents(&client, "follow-a", "True", "Presented").await?;
    let new_groups = [moved.as_str()];
    Who::new(&client, "member", &new_groups)
        .may(actions.0, actions.1, actions.2, actions.3)
        .await?;
    member
        .may_not(actions.0, actions.1, actions.2, actions.3)
        .await?;
    assert_eq!(
        second.metric("groupbinder_k10_group_prefix_changes_total"),
        Some(1.0)
    );
    wait_for_reason_within(
        &client,
        "follow-explicit",
        "False",
        "PrefixMismatch",
        within,
    )
    .await?;
    drop(second);
    for name in ["follow-a", "follow-explicit"] {
        agbs(&client).delete(name, &Default::default()).await?;
    }
    Ok(())
}

/// Found by the soak (seed 20261203, step 2961): an object edited from an explicit prefix to
/// none while K10's settings could not be read, the operator restarted meanwhile, kept granting
/// the old prefix's group for good: the last known prefix was taken from a status written for
/// the older spec. When in doubt, revoke: its bindings go until K10's prefix is read again, then
/// it is bound under that one.
#[tokio::test]
async fn an_explicit_prefix_taken_out_while_k10_is_unreadable_keeps_no_grant() -> anyhow::Result<()>
{
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let _serial = groupbinder_e2e::exclusive().await;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let claim = ("groupClaim", "groups");
    k10(&client, "k10-oidc-auth", &[claim, ("groupPrefix", "k10:")]).await?;
    let within = Duration::from_secs(30);
    let actions = BACKUP_ACTIONS;
    let (old, new) = (format!("other:{}", guid(12)), format!("k10:{}", guid(12)));
    let (old_groups, new_groups) = ([old.as_str()], [new.as_str()]);
    let (old_member, new_member) = (
        Who::new(&client, "member", &old_groups),
        Who::new(&client, "member", &new_groups),
    );
    let first = operator(cp, "taken-out-1.log")?;
    apply(&client, &object("taken-out", 12, Some("other:"), None)).await?;
    wait_for_reason_within(&client, "taken-out", "False", "PrefixMismatch", within).await?;
    old_member
        .may(actions.0, actions.1, actions.2, actions.3)
        .await?;

    // K10's Secret gone, the operator stopped, and the explicit prefix taken out meanwhile.
    k10_secret_deleted(&client, "taken-out").await?;
    drop(first);
    apply(&client, &object("taken-out", 12, None, None)).await?;
    let second = operator(cp, "taken-out-2.log")?;
    old_member
        .may_not(actions.0, actions.1, actions.2, actions.3)
        .await?;
    wait_for_reason_within(&client, "taken-out", "False", "K10PrefixUnknown", within).await?;
    new_member
        .may_not(actions.0, actions.1, actions.2, actions.3)
        .await?;

    // K10's settings back: bound under K10's prefix, and only under it.
    k10(&client, "k10-oidc-auth", &[claim, ("groupPrefix", "k10:")]).await?;
    wait_for_reason_within(&client, "taken-out", "True", "Reconciled", within).await?;
    new_member
        .may(actions.0, actions.1, actions.2, actions.3)
        .await?;
    old_member
        .may_not(actions.0, actions.1, actions.2, actions.3)
        .await?;
    drop(second);
    agbs(&client)
        .delete("taken-out", &Default::default())
        .await?;
    Ok(())
}

/// `groupbinder <args>` against the control plane; (exit code, stdout, stderr).
fn cli(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_groupbinder"))
        .args(args)
        .env("KUBECONFIG", cp.kubeconfig())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The commands that talk to the cluster read K10's live settings when no values file is given:
/// `audit` judges prefixes against K10's, `plan --namespaces-from-cluster` says when K10 will
/// not present a planned group, `explain-token --check` maps a token with K10's prefix and
/// claim. `--no-k10-from-cluster` turns it off.
#[tokio::test]
async fn the_commands_read_k10s_live_settings() -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let _serial = groupbinder_e2e::exclusive().await;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    k10(
        &client,
        "k10-oidc-auth",
        &[("groupClaim", "groups"), ("groupPrefix", "azure:")],
    )
    .await?;
    let hand_written = |name: &str, group: String| ClusterRoleBinding {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "k10-admin".into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: group,
            ..Subject::default()
        }]),
    };
    apply(
        &client,
        &hand_written("hw-azure", format!("azure:{}", guid(20))),
    )
    .await?;
    apply(
        &client,
        &hand_written("hw-michael", format!("{SEED_PREFIX}{}", guid(21))),
    )
    .await?;
    let warnings = |json: &str, binding: &str| -> anyhow::Result<Vec<String>> {
        let grants: Vec<serde_json::Value> = serde_json::from_str(json)?;
        Ok(grants
            .iter()
            .filter(|g| g["binding"] == format!("ClusterRoleBinding {binding}"))
            .flat_map(|g| g["warnings"].as_array().cloned().unwrap_or_default())
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect())
    };
    let (_, live, stderr) = cli(cp, &["audit", "-o", "json"])?;
    assert!(stderr.contains("K10's live OIDC settings"), "{stderr}");
    assert_eq!(warnings(&live, "hw-azure")?, ["NotManaged"]);
    assert!(warnings(&live, "hw-michael")?.contains(&"PrefixMismatch".to_owned()));
    let off = [
        "audit",
        "-o",
        "json",
        "--no-k10-from-cluster",
        "--default-group-prefix",
        SEED_PREFIX,
    ];
    let (_, flags, _) = cli(cp, &off)?;
    assert!(warnings(&flags, "hw-azure")?.contains(&"PrefixMismatch".to_owned()));
    assert_eq!(warnings(&flags, "hw-michael")?, ["NotManaged"]);

    // plan, with the namespaces (and so K10) from the cluster.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("agb.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata: {{name: planned}}\nspec: {{groupObjectId: {}}}\n",
            guid(22)
        ),
    )?;
    let path = file.display().to_string();
    let plan = ["plan", "-f", &path, "--namespaces-from-cluster"];
    let (code, _, stderr) = cli(
        cp,
        &[&plan[..], &["--default-group-prefix", SEED_PREFIX]].concat(),
    )?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("PrefixMismatch"), "{stderr}");
    let (_, _, stderr) = cli(
        cp,
        &[&plan[..], &["--default-group-prefix", "azure:"]].concat(),
    )?;
    assert!(!stderr.contains("PrefixMismatch"), "{stderr}");

    // explain-token --check maps with K10's prefix and claim.
    let token = groupbinder_e2e::oidc::unsigned(&serde_json::json!({
        "iss": PROVIDER, "aud": "k10", "sub": "someone", "email": "someone@example.com",
        "groups": [guid(20)], "exp": 4_102_444_800u64,
    }));
    let token_file = dir.path().join("t.jwt");
    std::fs::write(&token_file, token)?;
    let token_path = token_file.display().to_string();
    let (_, out, stderr) = cli(
        cp,
        &[
            "explain-token",
            "-o",
            "json",
            "--check",
            "--token-file",
            &token_path,
        ],
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("{e}: {stderr}"))?;
    assert_eq!(report["mapping"]["groupsPrefix"], "azure:", "{report}");
    assert_eq!(report["mapping"]["usernameClaim"], "email", "{report}");
    let allowed = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["allowed"] == true);
    assert!(allowed, "the hand-written azure: binding grants: {report}");
    for name in ["hw-azure", "hw-michael"] {
        crbs(&client).delete(name, &Default::default()).await?;
    }
    Ok(())
}
