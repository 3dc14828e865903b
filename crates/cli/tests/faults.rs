//! Faults, on real control planes of their own: the operator killed mid-convergence, the API
//! server gone for 20 seconds, etcd gone for a while.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use groupbinder_e2e::*;
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Resource, ResourceExt};

fn guid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// K10's admin and ns-admin, named: one ClusterRoleBinding and one RoleBinding per object.
fn spec(n: u32) -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: guid(n),
        group_prefix: Some(SEED_PREFIX.into()),
        cluster_roles: Some(vec!["k10-admin".into()]),
        roles: Some(vec![groupbinder_api::NamespacedRole::in_namespace(
            "k10-ns-admin",
            "kasten-io",
            groupbinder_api::RoleKind::Role,
        )]),
        ..Default::default()
    }
}

async fn setup() -> anyhow::Result<(ControlPlane, kube::Client)> {
    logs();
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    // Checked at the end of every test here: a hand-made binding whose name the operator plans.
    plant_hand_made(&client).await?;
    Ok((cp, client))
}

/// The managed bindings of the objects named `kill-*`.
async fn managed(
    client: &kube::Client,
) -> anyhow::Result<(Vec<ClusterRoleBinding>, Vec<RoleBinding>)> {
    let selector = ListParams::default().labels("app.kubernetes.io/managed-by=groupbinder");
    let ours = |name: &Option<String>| name.as_deref().is_some_and(|n| n.starts_with("kill-"));
    let mut crbs = Api::<ClusterRoleBinding>::all(client.clone())
        .list(&selector)
        .await?
        .items;
    crbs.retain(|b| ours(&b.metadata.name));
    let mut rbs = Api::<RoleBinding>::all(client.clone())
        .list(&selector)
        .await?
        .items;
    rbs.retain(|b| ours(&b.metadata.name));
    Ok((crbs, rbs))
}

fn spawn_operator(cp: &ControlPlane) -> anyhow::Result<OperatorProcess> {
    let env = [
        ("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX),
        ("GROUPBINDER_RESYNC_SECONDS", "0"),
    ];
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_groupbinder"));
    OperatorProcess::spawn(binary, cp.kubeconfig(), &env, Stdio::null())
}

#[tokio::test]
async fn operator_killed_mid_convergence_ends_with_every_binding_once() -> anyhow::Result<()> {
    let _serial = exclusive().await;
    let (cp, client) = setup().await?;
    const N: u32 = 250; // 500 bindings
    for n in 0..N {
        apply(
            &client,
            &AzureGroupBinding::new(&format!("kill-{n}"), spec(n)),
        )
        .await?;
    }
    let mut first = spawn_operator(&cp)?;
    let at_kill = eventually(
        "the operator to be part-way",
        Duration::from_secs(60),
        || async {
            let (crbs, rbs) = managed(&client).await?;
            let made = crbs.len() + rbs.len();
            Ok((made >= 40).then_some(made))
        },
    )
    .await?;
    first.child().kill()?; // SIGKILL
    first.child().wait()?;
    println!(
        "killed the operator with {at_kill} of {} bindings made",
        2 * N
    );

    let _second = spawn_operator(&cp)?; // killed when dropped
    let api: Api<AzureGroupBinding> = Api::all(client.clone());
    eventually(
        "every AzureGroupBinding to be Ready",
        Duration::from_secs(120),
        || async {
            let all = api.list(&ListParams::default()).await?.items;
            let ready = all
                .iter()
                .filter(|a| ready(a).is_some_and(|c| c.status == "True"))
                .count();
            Ok((ready == N as usize).then_some(()))
        },
    )
    .await?;
    let uids: BTreeMap<String, String> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|a| (a.uid().unwrap_or_default(), a.name_any()))
        .collect();
    let (crbs, rbs) = managed(&client).await?;
    assert_eq!(
        (crbs.len(), rbs.len()),
        (N as usize, N as usize),
        "one ClusterRoleBinding and one RoleBinding each"
    );
    let mut seen = BTreeSet::new();
    for meta in crbs
        .iter()
        .map(|b| b.meta())
        .chain(rbs.iter().map(|b| b.meta()))
    {
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let owner = owner.ok_or_else(|| anyhow::anyhow!("{:?} has no controller", meta.name))?;
        assert!(uids.contains_key(&owner.uid), "{:?} is orphaned", meta.name);
        assert!(
            seen.insert((owner.uid.clone(), meta.namespace.clone())),
            "duplicate binding for {}",
            owner.name
        );
    }
    assert_hand_made_untouched(&client).await
}

#[tokio::test]
async fn a_20_second_api_server_outage_is_ridden_out_without_a_restart() -> anyhow::Result<()> {
    let _serial = exclusive().await;
    let (cp, client) = setup().await?;
    let (operator_client, sent) = counting_client(cp.kubeconfig()).await?;
    let operator = Operator::start(&operator_client, config(seed_settings()));
    apply(&client, &AzureGroupBinding::new("before", spec(1))).await?;
    wait_for_reason(&client, "before", "True", "Reconciled").await?;

    cp.stop_apiserver();
    let before = sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = sent.load(Ordering::Relaxed) - before;
    cp.start_apiserver().await?;
    let back = Instant::now();
    // Six watches retrying with backoff (0.25 s doubling to 5 s) make a few dozen attempts in
    // 20 s; a retry loop without backoff would make thousands.
    println!("API server outage: the operator sent {during} requests in 20 s");
    assert!(during > 0, "the operator did not try to reconnect");
    assert!(during <= 150, "{during} requests in 20 s: not backing off");

    // Watches resume: a new object is reconciled and a deleted binding restored.
    apply(&client, &AzureGroupBinding::new("after", spec(2))).await?;
    // Generous: what is shown is that it recovers without a restart; the time is printed.
    wait_for_reason_within(
        &client,
        "after",
        "True",
        "Reconciled",
        Duration::from_secs(90),
    )
    .await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    crbs.delete("before:k10-admin", &DeleteParams::default())
        .await?;
    eventually(
        "the deleted binding to be restored",
        Duration::from_secs(60),
        || async { Ok(crbs.get_opt("before:k10-admin").await?.map(|_| ())) },
    )
    .await?;
    println!(
        "recovered {:?} after the API server came back",
        back.elapsed()
    );
    assert!(
        !operator.is_finished(),
        "the operator must not have stopped"
    );
    operator.stop().await
}

/// The watch-and-cache chain the controller runs, on its own: after an API server restart its
/// watch cannot resume (410) and lists again, and the list no longer has a binding deleted
/// meanwhile. The chain must report that binding as deleted, not just drop it from the cache.
/// A stream is only read when polled: not polling it across the restart and the deletion makes
/// sure the watch sees the deletion only through the relist.
#[tokio::test]
async fn a_relist_reports_what_was_deleted_while_the_watch_was_away() -> anyhow::Result<()> {
    use futures::StreamExt;
    let _serial = exclusive().await;
    let (cp, client) = setup().await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    for name in ["away-1", "away-2"] {
        let mut binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "groupbinder"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-basic"},
        }))?;
        binding.subjects = None;
        apply(&client, &binding).await?;
    }
    let config = kube::runtime::watcher::Config::default()
        .streaming_lists()
        .labels(groupbinder_api::names::MANAGED_SELECTOR);
    let (cache, stream) = groupbinder_controller::cached(crbs.clone(), config, |_| {}, |_: &_| {});
    let mut stream = std::pin::pin!(stream);
    let cached = |name: &str| {
        cache
            .get(&kube::runtime::reflector::ObjectRef::new(name))
            .is_some()
    };
    let started = Instant::now();
    while !(cached("away-1") && cached("away-2")) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "initial list");
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
    }

    cp.stop_apiserver();
    cp.start_apiserver().await?;
    crbs.delete("away-1", &DeleteParams::default()).await?;

    let started = Instant::now();
    let mut touched = Vec::new();
    let reported = |touched: &[String]| touched.iter().any(|n| n == "away-1");
    while !reported(&touched) || cached("away-1") {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "away-1 not reported deleted; the watch reported {touched:?}, still cached: {}",
            cached("away-1")
        );
        if let Ok(Some(Ok(binding))) =
            tokio::time::timeout(Duration::from_millis(100), stream.next()).await
        {
            touched.push(binding.name_any());
        }
    }
    assert!(cached("away-2"), "away-2 is still there");
    Ok(())
}

fn signal(operator: &OperatorProcess, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(operator.id())?);
    Ok(nix::sys::signal::kill(pid, signal)?)
}

/// The API server restarts while the operator is frozen and a binding is deleted before it wakes
/// up: its watches cannot resume (410) and list everything again, and the list no longer has
/// the binding. No watch event ever says it was deleted; it must be restored all the same.
#[tokio::test]
async fn a_binding_deleted_while_the_watches_were_down_is_restored() -> anyhow::Result<()> {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let _serial = exclusive().await;
    let (cp, client) = setup().await?;
    let operator = spawn_operator(&cp)?; // killed when dropped, stopped or not
    apply(&client, &AzureGroupBinding::new("gap", spec(4))).await?;
    wait_for_reason(&client, "gap", "True", "Reconciled").await?;
    signal(&operator, SIGSTOP)?;
    cp.stop_apiserver();
    cp.start_apiserver().await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    crbs.delete("gap:k10-admin", &DeleteParams::default())
        .await?;
    signal(&operator, SIGCONT)?;
    let woke = Instant::now();
    eventually(
        "the binding deleted in the gap to be restored",
        Duration::from_secs(45),
        || async { Ok(crbs.get_opt("gap:k10-admin").await?.map(|_| ())) },
    )
    .await?;
    println!("restored {:?} after the operator woke up", woke.elapsed());
    assert_hand_made_untouched(&client).await
}

/// etcd away for 15 s while a binding needs repair: the operator backs off (a few requests, not a
/// loop), and repairs as soon as the API server answers again.
#[tokio::test]
async fn an_etcd_outage_is_backed_off_not_busy_looped() -> anyhow::Result<()> {
    let _serial = exclusive().await;
    let (cp, client) = setup().await?;
    let (operator_client, sent) = counting_client(cp.kubeconfig()).await?;
    let operator = Operator::start(&operator_client, config(seed_settings()));
    apply(&client, &AzureGroupBinding::new("etcd", spec(3))).await?;
    wait_for_reason(&client, "etcd", "True", "Reconciled").await?;

    // A binding disappears, and etcd with it: the repair fails until etcd is back.
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    crbs.delete("etcd:k10-admin", &DeleteParams::default())
        .await?;
    cp.stop_etcd();
    let resources = ["clusterrolebindings", "rolebindings", "azuregroupbindings"];
    let before = apiserver_writes(&client, &resources).await?;
    let sent_before = sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let during = apiserver_writes(&client, &resources).await? - before;
    let sent_during = sent.load(Ordering::Relaxed) - sent_before;
    cp.start_etcd()?;
    eventually(
        "the API server to answer again",
        Duration::from_secs(60),
        || async { Ok(crbs.get_opt("etcd:k10-admin").await.ok().map(drop)) },
    )
    .await?;
    let back = Instant::now();
    eventually(
        "the binding to be restored",
        Duration::from_secs(90),
        || async {
            Ok(crbs
                .get_opt("etcd:k10-admin")
                .await
                .ok()
                .flatten()
                .map(|_| ()))
        },
    )
    .await?;
    let restored = back.elapsed();
    let errors = operator
        .metrics
        .errors
        .get_or_create(&groupbinder_controller::metrics::CategoryLabels { category: "apply" })
        .get();
    println!(
        "etcd outage: the operator sent {sent_during} requests in 15 s ({during} writes reached the API server), {errors} failed reconciles; restored {restored:?} after the API server answered again"
    );
    // At once, not when a backoff grown during the outage says (the API server holds a request
    // while etcd is away, so the operator's one write waits and then goes through).
    assert!(
        restored < Duration::from_secs(6),
        "restored {restored:?} after the API server was back"
    );
    assert!(during <= 30.0, "{during} writes in 15 s: not backing off");
    assert!(
        sent_during <= 30,
        "{sent_during} requests in 15 s: not backing off"
    );
    assert!(
        !operator.is_finished(),
        "the operator must not have stopped"
    );
    operator.stop().await
}
