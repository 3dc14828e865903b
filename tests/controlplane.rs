//! The test environment itself, on the real control plane (issue: a real Kubernetes control plane).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use groupbinder_e2e::{Who, eventually};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        ..ObjectMeta::default()
    }
}

async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &Namespace {
            metadata: meta(name, None),
            ..Namespace::default()
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn namespace_create_get_list_watch_delete() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let api: Api<Namespace> = Api::all(client.clone());

    let mut events = Box::pin(watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=cp-watched"),
    ));
    namespace(&client, "cp-watched").await?;
    assert_eq!(api.get("cp-watched").await?.name_any(), "cp-watched");
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(
        names.contains(&"cp-watched".to_owned()) && names.contains(&"kube-system".to_owned()),
        "{names:?}"
    );

    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.try_next().await? {
            if let watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) = event {
                return anyhow::Ok(ns.name_any());
            }
        }
        anyhow::bail!("watch ended")
    })
    .await??;
    assert_eq!(seen, "cp-watched");

    // Deletion goes through the real namespace controller, which removes the finalizer.
    api.delete("cp-watched", &DeleteParams::default()).await?;
    eventually(
        "namespace cp-watched to be gone",
        Duration::from_secs(30),
        || async { Ok(api.get_opt("cp-watched").await?.is_none().then_some(())) },
    )
    .await
}

#[tokio::test]
async fn minted_user_is_denied_until_a_role_binding_allows_it() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client().await?;
    namespace(&admin, "cp-rbac").await?;
    let secret = Secret {
        metadata: meta("s", Some("cp-rbac")),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(admin.clone(), "cp-rbac")
        .create(&PostParams::default(), &secret)
        .await?;

    let alice = cp.user("alice", &["devs"])?;
    let as_alice: Api<Secret> = Api::namespaced(alice.client().await?, "cp-rbac");
    assert!(
        !Who::new(&admin, "alice", &["devs"])
            .can("get", "", "secrets", Some("cp-rbac"))
            .await?
    );
    match as_alice.get("s").await {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("expected 403 Forbidden for alice, got {other:?}"),
    }

    let role = Role {
        metadata: meta("secret-reader", Some("cp-rbac")),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), "cp-rbac")
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: meta("devs-read-secrets", Some("cp-rbac")),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "secret-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: "devs".into(),
            namespace: None,
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), "cp-rbac")
        .create(&PostParams::default(), &binding)
        .await?;

    // The RBAC authorizer reads bindings from its own watch cache: it counts a moment later.
    Who::new(&admin, "alice", &["devs"])
        .may("get", "", "secrets", Some("cp-rbac"))
        .await?;
    assert!(
        !Who::new(&admin, "alice", &["other"])
            .can("get", "", "secrets", Some("cp-rbac"))
            .await?,
        "group decides"
    );
    assert!(
        !Who::new(&admin, "alice", &["devs"])
            .can("get", "", "secrets", Some("default"))
            .await?,
        "namespace decides"
    );
    assert_eq!(as_alice.get("s").await?.name_any(), "s");
    Ok(())
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_of_a_deleted_owner() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    namespace(&client, "cp-gc").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "cp-gc");
    let owner = api
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("owner", Some("cp-gc")),
                ..ConfigMap::default()
            },
        )
        .await?;
    let mut dependent = ConfigMap {
        metadata: meta("dependent", Some("cp-gc")),
        ..ConfigMap::default()
    };
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.uid().unwrap_or_default(),
        ..OwnerReference::default()
    }]);
    dependent.data = Some(BTreeMap::from([("k".into(), "v".into())]));
    api.create(&PostParams::default(), &dependent).await?;

    api.delete("owner", &DeleteParams::default()).await?;
    eventually(
        "the garbage collector to delete the dependent",
        Duration::from_secs(60),
        || async { Ok(api.get_opt("dependent").await?.is_none().then_some(())) },
    )
    .await
}

#[tokio::test]
async fn kubectl_and_helm_use_the_same_server() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let out = cp
        .kubectl()
        .args(["get", "ns", "kube-system", "-o", "name"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)?.trim(),
        "namespace/kube-system"
    );

    let out = cp.kubectl().args(["version", "-o", "json"]).output()?;
    let version: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let kubernetes = &cp.binaries().versions.kubernetes;
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        kubernetes.as_str(),
        "stamped /version"
    );
    assert_eq!(
        version["clientVersion"]["gitVersion"],
        kubernetes.as_str(),
        "stamped kubectl"
    );

    let out = cp.helm().args(["version", "--short"]).output()?;
    assert!(String::from_utf8(out.stdout)?.starts_with(&cp.binaries().versions.helm));
    let out = cp
        .helm()
        .args(["list", "--all-namespaces", "-o", "json"])
        .output()?;
    assert!(
        out.status.success(),
        "helm list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "[]");
    Ok(())
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test]
async fn dropping_a_control_plane_stops_every_process_and_removes_its_directory()
-> anyhow::Result<()> {
    let cp = ControlPlane::start(Options {
        without_controller_manager: true,
        ..Options::default()
    })
    .await?;
    let pids = cp.pids();
    let dir = cp.dir().to_owned();
    assert_eq!(
        pids.iter().map(|p| p.0).collect::<Vec<_>>(),
        ["etcd", "kube-apiserver"]
    );
    assert!(pids.iter().all(|(_, pid)| alive(*pid)));
    drop(cp);
    assert!(
        pids.iter().all(|(_, pid)| !alive(*pid)),
        "{pids:?} still running"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}

/// Run by the test below in a child process: starts a control plane, reports it, then waits to be
/// killed (or panics, with GROUPBINDER_TESTENV_CHILD=panic).
#[tokio::test]
#[ignore = "helper: run by killed_or_panicking_test_processes_leave_nothing_behind"]
async fn child_process_with_a_control_plane() -> anyhow::Result<()> {
    let Ok(mode) = std::env::var("GROUPBINDER_TESTENV_CHILD") else {
        return Ok(());
    };
    let cp = ControlPlane::shared().await?;
    let pids: Vec<String> = cp.pids().iter().map(|p| p.1.to_string()).collect();
    println!("PIDS {} DIR {}", pids.join(","), cp.dir().display());
    if mode == "panic" {
        panic!("deliberate panic with a control plane running");
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

#[test]
fn killed_or_panicking_test_processes_leave_nothing_behind() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    for mode in ["panic", "sigkill"] {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--ignored",
                "--exact",
                "child_process_with_a_control_plane",
                "--nocapture",
            ])
            .env("GROUPBINDER_TESTENV_CHILD", mode)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("PIDS "))
            .ok_or_else(|| anyhow::anyhow!("child reported no control plane ({mode})"))?;
        let (pids, dir) = line["PIDS ".len()..]
            .split_once(" DIR ")
            .ok_or_else(|| anyhow::anyhow!("{line}"))?;
        let pids: Vec<u32> = pids.split(',').map(str::parse).collect::<Result<_, _>>()?;
        if mode == "sigkill" {
            child.kill()?; // SIGKILL: no destructor, no atexit; the kernel's PDEATHSIG must do it
        }
        child.wait()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            pids.iter().all(|p| !alive(*p)),
            "{mode}: {pids:?} still running"
        );
        if mode == "panic" {
            // A test that panics still lets the harness exit normally: the atexit hook cleans up.
            assert!(
                !std::path::Path::new(dir).exists(),
                "{mode}: {dir} left behind"
            );
        } else {
            // Nothing runs after SIGKILL: the directory stays until the next control plane starts,
            // which sweeps the directories of dead owners.
            assert!(std::path::Path::new(dir).exists());
            groupbinder_testenv::sweep_stale_dirs();
            assert!(
                !std::path::Path::new(dir).exists(),
                "{mode}: {dir} not swept"
            );
        }
    }
    Ok(())
}
