//! The binary as the kubectl plugin `kubectl groupbinder`, run through the real kubectl with
//! kubectl's connection flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use groupbinder_e2e::{SEED_GUID, SEED_PREFIX, apply, setup};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use kube::config::{Context, Kubeconfig, NamedCluster, NamedContext};

/// A directory holding `kubectl-groupbinder`, a link to the binary under test, as a user (or
/// krew) would install it.
fn plugin_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_groupbinder"),
        dir.path().join("kubectl-groupbinder"),
    )?;
    Ok(dir)
}

/// `kubectl <args>` with only the plugin's directory and kubectl's on the `PATH`, no
/// `KUBECONFIG`: every connection detail comes from the flags.
fn kubectl(kubectl: &Path, plugins: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let path = std::env::join_paths([
        plugins.to_path_buf(),
        kubectl.parent().map(Path::to_path_buf).unwrap_or_default(),
    ])?;
    Ok(Command::new(kubectl)
        .args(args)
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .env("HOME", plugins)
        .env("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX)
        .output()?)
}

/// The control plane's kubeconfig with a second context, made current, whose cluster answers
/// nothing: only `--context` reaches the control plane.
fn two_contexts(admin: &Path, dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let mut config = Kubeconfig::read_from(admin)?;
    let good = config
        .current_context
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the admin kubeconfig has no current context"))?;
    let user = config
        .contexts
        .first()
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    config.clusters.push(NamedCluster {
        name: "nowhere".into(),
        cluster: Some(kube::config::Cluster {
            server: Some("https://127.0.0.1:1".into()),
            insecure_skip_tls_verify: Some(true),
            ..kube::config::Cluster::default()
        }),
        ..NamedCluster::default()
    });
    config.contexts.push(NamedContext {
        name: "nowhere".into(),
        context: Some(Context {
            cluster: "nowhere".into(),
            user,
            ..Context::default()
        }),
        ..NamedContext::default()
    });
    config.current_context = Some("nowhere".into());
    let file = dir.join("two-contexts.kubeconfig");
    // JSON is YAML: kubectl and kube read it as written.
    std::fs::write(&file, serde_json::to_vec(&config)?)?;
    Ok((file, good))
}

/// How `audit -o json` names the two bindings.
const CRB: &str = "\"ClusterRoleBinding plugin-crb\"";
const RB: &str = "\"RoleBinding kasten-io/plugin-rb\"";

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn kubectl_groupbinder_audit_takes_kubectls_connection_flags() -> anyhow::Result<()> {
    let (cp, client) = setup().await?;
    let group = Subject {
        kind: "Group".into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        name: format!("{SEED_PREFIX}{SEED_GUID}"),
        namespace: None,
    };
    apply(
        &client,
        &ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("plugin-crb".into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "k10-admin".into(),
            },
            subjects: Some(vec![group.clone()]),
        },
    )
    .await?;
    for (name, kind, role) in [
        ("plugin-rb", "Role", "k10-ns-admin"),
        ("plugin-basic", "ClusterRole", "k10-basic"),
    ] {
        apply(
            &client,
            &RoleBinding {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("kasten-io".into()),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: kind.into(),
                    name: role.into(),
                },
                subjects: Some(vec![group.clone()]),
            },
        )
        .await?;
    }
    let plugins = plugin_dir()?;
    let kubectl_bin = cp.binaries().kubectl.clone();
    let (kubeconfig, good) = two_contexts(cp.kubeconfig(), plugins.path())?;
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let run = |args: &[&str]| kubectl(&kubectl_bin, plugins.path(), args);

    // kubectl finds the plugin.
    let listed = run(&["plugin", "list"])?;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("kubectl-groupbinder"),
        "{}",
        text(&listed)
    );
    // The current context answers nothing; `--context` picks the control plane.
    let base = [
        "groupbinder",
        "audit",
        "-o",
        "json",
        "--kubeconfig",
        &kubeconfig,
    ];
    let nowhere = run(&base)?;
    assert_eq!(nowhere.status.code(), Some(1), "{}", text(&nowhere));
    assert!(!String::from_utf8_lossy(&nowhere.stdout).contains(CRB));
    let audited = run(&[&base[..], &["--context", &good]].concat())?;
    let out = String::from_utf8_lossy(&audited.stdout);
    assert!(out.contains(CRB) && out.contains(RB), "{}", text(&audited));
    // `-n` names K10's namespace, as kubectl users say it: `basic` there is worth a warning,
    // elsewhere not.
    let warned = |out: &Output| -> anyhow::Result<bool> {
        let grants: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let basic = grants
            .as_array()
            .and_then(|g| {
                g.iter()
                    .find(|g| g["binding"] == "RoleBinding kasten-io/plugin-basic")
            })
            .ok_or_else(|| anyhow::anyhow!("plugin-basic not audited: {}", text(out)))?;
        Ok(basic["warnings"]
            .to_string()
            .contains("BasicInK10Namespace"))
    };
    assert!(warned(&audited)?, "{}", text(&audited));
    let elsewhere = run(&[&base[..], &["--context", &good, "-n", "k10-elsewhere"]].concat())?;
    assert!(!warned(&elsewhere)?, "{}", text(&elsewhere));
    // `--as` impersonates: a user with no rights may not list bindings, one with the group that
    // has them may.
    let nobody = run(&[&base[..], &["--context", &good, "--as", "plugin-nobody"]].concat())?;
    assert_eq!(nobody.status.code(), Some(1), "{}", text(&nobody));
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("forbidden"),
        "{}",
        text(&nobody)
    );
    let masters = run(&[
        &base[..],
        &[
            "--context",
            &good,
            "--as",
            "plugin-nobody",
            "--as-group",
            "system:masters",
        ],
    ]
    .concat())?;
    assert!(
        String::from_utf8_lossy(&masters.stdout).contains(CRB),
        "{}",
        text(&masters)
    );
    // Usage names the command as typed.
    let help = run(&["groupbinder", "--help"])?;
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl groupbinder"),
        "{}",
        text(&help)
    );
    Ok(())
}

#[test]
fn the_krew_manifest_installs_this_binary() -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(groupbinder_e2e::repo().join("examples/krew-groupbinder.yaml"))?;
    let manifest: serde_json::Value = serde_saphyr::from_str(&text)?;
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "groupbinder");
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["spec"]["version"], version.as_str());
    let platforms = manifest["spec"]["platforms"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no platforms"))?;
    let mut arches = Vec::new();
    for platform in platforms {
        assert_eq!(platform["bin"], "groupbinder", "{platform}");
        let arch = platform["selector"]["matchLabels"]["arch"]
            .as_str()
            .unwrap_or_default();
        let uri = platform["uri"].as_str().unwrap_or_default();
        assert!(
            uri.ends_with(&format!(
                "/{version}/groupbinder-{version}-linux-{arch}.tar.gz"
            )),
            "{uri}"
        );
        let sha = platform["sha256"].as_str().unwrap_or_default();
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "{sha}"
        );
        arches.push(arch.to_owned());
    }
    assert_eq!(arches, ["amd64", "arm64"]);
    Ok(())
}
