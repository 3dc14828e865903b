//! What Argo CD and Flux make of an AzureGroupBinding's status: the README's one health mapping,
//! checked on status objects the real control plane and operator produced, with gopher-lua (the
//! interpreter Argo CD embeds) running `examples/argocd-health.yaml`'s check and kstatus (what
//! Flux's `wait: true` and `healthChecks` use), both in `tools/health`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use groupbinder_api::{
    Allowlist, AzureGroupBindingSpec, NamespaceSelector, NamespacedRole, RoleKind,
};
use groupbinder_e2e::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};

/// What each tool must say of an object, by the mapping.
struct Expected {
    kstatus: &'static str,
    argocd: &'static str,
}

const HEALTHY: Expected = Expected {
    kstatus: "Current",
    argocd: "Healthy",
};
const PROGRESSING: Expected = Expected {
    kstatus: "InProgress",
    argocd: "Progressing",
};
const DEGRADED: Expected = Expected {
    kstatus: "Failed",
    argocd: "Degraded",
};
/// Being deleted: kstatus says so from `deletionTimestamp`; Argo CD waits.
const DELETING: Expected = Expected {
    kstatus: "Terminating",
    argocd: "Progressing",
};

/// `tools/health`, built with the Go toolchain (its build cache makes a rebuild a second).
fn health_tool() -> anyhow::Result<PathBuf> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("health");
    let built = Command::new("go")
        .args(["build", "-trimpath", "-buildvcs=false", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(repo().join("tools/health"))
        .env("CGO_ENABLED", "0")
        .output()?;
    anyhow::ensure!(
        built.status.success(),
        "building tools/health: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Ok(out)
}

/// The Lua of `examples/argocd-health.yaml`, as Argo CD reads it from argocd-cm.
fn argocd_check(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(repo().join("examples/argocd-health.yaml"))?;
    let cm: serde_json::Value = serde_saphyr::from_str(&text)?;
    let lua = cm["data"]["resource.customizations.health.groupbinder.dev_AzureGroupBinding"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("argocd-cm holds no AzureGroupBinding health check"))?;
    let file = dir.join("check.lua");
    std::fs::write(&file, lua)?;
    Ok(file)
}

/// Every object's verdicts, by name.
fn verdicts(
    tool: &Path,
    check: &Path,
    objects: &[serde_json::Value],
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .arg("-lua")
        .arg(check)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(&serde_json::to_vec(objects)?)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "tools/health: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            Ok((v["name"].as_str().unwrap_or_default().to_owned(), v))
        })
        .collect()
}

/// An object of its own group: the spec with a group object ID no other object has.
fn named(name: &str, spec: AzureGroupBindingSpec) -> groupbinder_api::AzureGroupBinding {
    let n = name.bytes().fold(900_u32, |n, b| {
        n.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    agb(
        name,
        AzureGroupBindingSpec {
            group_object_id: guid(n % 100_000),
            ..spec
        },
    )
}

#[tokio::test]
async fn argo_cd_and_flux_read_every_status_as_the_mapping_says() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let tool = health_tool()?;
    let dir = tempfile::tempdir()?;
    let check = argocd_check(dir.path())?;
    // K10 presents groups under the seed's prefix: another prefix is a PrefixMismatch.
    install_seed_k10_oidc(&client).await?;
    let mut objects = Vec::new();
    let mut expected = BTreeMap::new();
    let get = |name: &'static str| {
        let client = client.clone();
        async move { anyhow::Ok(serde_json::to_value(agbs(&client).get(name).await?)?) }
    };

    // Before any operator runs: no status at all.
    apply(&client, &named("health-fresh", seed_spec())).await?;
    objects.push(get("health-fresh").await?);
    expected.insert("health-fresh", PROGRESSING);

    let mut settings = seed_settings();
    settings.allowed = Allowlist::parse([
        "k10-admin",
        "k10-basic",
        "kasten-io/k10-ns-admin",
        "health-gone",
    ])?;
    settings.max_role_bindings = 1;
    let operator = Operator::start(&client, config(settings));
    for team in ["health-team-1", "health-team-2"] {
        apply(
            &client,
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(team.into()),
                    labels: Some([("health-team".to_owned(), "x".to_owned())].into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    }
    apply(&client, &foreign_binding("health-conflict:k10-admin")).await?;
    let basic_in = |namespace: Option<&str>, selector: Option<NamespaceSelector>| NamespacedRole {
        name: "k10-basic".into(),
        namespace: namespace.map(str::to_owned),
        namespace_selector: selector,
        kind: RoleKind::ClusterRole,
    };
    let cases: Vec<(&'static str, AzureGroupBindingSpec, &str, &str, Expected)> = vec![
        ("health-ready", seed_spec(), "True", "Reconciled", HEALTHY),
        (
            "health-not-allowed",
            AzureGroupBindingSpec {
                cluster_roles: Some(vec!["cluster-admin".into()]),
                ..seed_spec()
            },
            "False",
            "RoleNotAllowed",
            DEGRADED,
        ),
        (
            "health-role-missing",
            AzureGroupBindingSpec {
                cluster_roles: Some(vec!["health-gone".into()]),
                ..seed_spec()
            },
            "False",
            "RoleNotFound",
            PROGRESSING,
        ),
        (
            "health-namespace-missing",
            AzureGroupBindingSpec {
                cluster_roles: None,
                roles: Some(vec![basic_in(Some("health-nowhere"), None)]),
                ..seed_spec()
            },
            "False",
            "NamespaceNotFound",
            PROGRESSING,
        ),
        (
            "health-conflict",
            seed_spec(),
            "False",
            "Conflict",
            DEGRADED,
        ),
        (
            "health-prefix",
            AzureGroupBindingSpec {
                group_prefix: Some("other_".into()),
                ..seed_spec()
            },
            "False",
            "PrefixMismatch",
            DEGRADED,
        ),
        (
            "health-too-many",
            AzureGroupBindingSpec {
                cluster_roles: None,
                roles: Some(vec![basic_in(
                    None,
                    Some(NamespaceSelector {
                        match_labels: Some([("health-team".to_owned(), "x".to_owned())].into()),
                        ..NamespaceSelector::default()
                    }),
                )]),
                ..seed_spec()
            },
            "False",
            "TooManyRoleBindings",
            DEGRADED,
        ),
    ];
    for (name, spec, status, reason, verdict) in cases {
        apply(&client, &named(name, spec)).await?;
        wait_for_reason(&client, name, status, reason).await?;
        objects.push(get(name).await?);
        expected.insert(name, verdict);
    }

    // Being deleted, held by someone else's finalizer.
    apply(&client, &named("health-deleting", seed_spec())).await?;
    wait_for_reason(&client, "health-deleting", "True", "Reconciled").await?;
    agbs(&client)
        .patch(
            "health-deleting",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": ["health.test/hold"]}})),
        )
        .await?;
    agbs(&client)
        .delete("health-deleting", &DeleteParams::default())
        .await?;
    wait_for_reason(&client, "health-deleting", "False", "Deleting").await?;
    objects.push(get("health-deleting").await?);
    expected.insert("health-deleting", DELETING);

    // The operator's gauge counts the same objects by reason (what the alerts read).
    eventually(
        "groupbinder_objects to count every reason",
        Duration::from_secs(10),
        || {
            let text = operator.metrics.encode();
            async move {
                let all = [
                    ("True", "Reconciled", 2), // health-fresh, reconciled by now, and health-ready
                    ("False", "RoleNotAllowed", 1),
                    ("False", "RoleNotFound", 1),
                    ("False", "NamespaceNotFound", 1),
                    ("False", "Conflict", 2), // and the hand-made one `setup` plants
                    ("False", "PrefixMismatch", 1),
                    ("False", "TooManyRoleBindings", 1),
                    ("False", "Deleting", 1),
                ];
                Ok(all
                    .iter()
                    .all(|(ready, reason, n)| {
                        text.lines().any(|l| {
                            l == format!(
                                "groupbinder_objects{{ready=\"{ready}\",reason=\"{reason}\"}} {n}"
                            )
                        })
                    })
                    .then_some(()))
            }
        },
    )
    .await
    .map_err(|e| {
        let text = operator.metrics.encode();
        let seen: Vec<&str> = text.lines().filter(|l| l.contains("_objects")).collect();
        anyhow::anyhow!("{e}; the gauge says {seen:#?}")
    })?;

    // A spec changed while the operator is away: the status is of an older generation.
    operator.stop().await?;
    apply(
        &client,
        &named(
            "health-ready",
            AzureGroupBindingSpec {
                description: Some("changed while the operator was away".into()),
                ..seed_spec()
            },
        ),
    )
    .await?;
    let mut stale = get("health-ready").await?;
    stale["metadata"]["name"] = "health-stale".into();
    objects.push(stale);
    expected.insert("health-stale", PROGRESSING);

    let seen = verdicts(&tool, &check, &objects)?;
    let mut wrong = Vec::new();
    for (name, want) in &expected {
        let got = &seen[*name];
        println!(
            "{name}: kstatus {} ({}), Argo CD {} ({})",
            got["kstatus"], got["kstatusMessage"], got["argocd"], got["argocdMessage"]
        );
        if got["kstatus"] != want.kstatus || got["argocd"] != want.argocd {
            wrong.push(format!(
                "{name}: want kstatus {} and Argo CD {}, got {} and {}",
                want.kstatus, want.argocd, got["kstatus"], got["argocd"]
            ));
        }
    }
    agbs(&client)
        .patch(
            "health-deleting",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}
