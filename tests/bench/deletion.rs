//! `make bench BENCH_ARGS=--deletion`: how fast a deleted object's grants go. One object whose
//! namespaceSelector makes 1,000 RoleBindings is deleted with a plain `kubectl delete`, twice, in
//! one run:
//! - by the operator, on a control plane without kube-controller-manager (nothing else deletes);
//! - by the garbage collector alone (kube-controller-manager running, the operator stopped
//!   before the deletion): today's fallback when the operator is down.
//!
//! Each is timed from the DELETE until no RoleBinding of the object is left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use groupbinder_api::{
    AzureGroupBinding, AzureGroupBindingSpec, NamespaceSelector, NamespacedRole,
};
use groupbinder_e2e::{OperatorProcess, SEED_PREFIX, install_crd, install_k10, ready};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use super::{CONCURRENCY, run_all};

const N: usize = 1000;

/// Makes N namespaces and the object selecting them, waits until its N RoleBindings are there,
/// and returns the operator.
async fn converged(cp: &ControlPlane) -> anyhow::Result<OperatorProcess> {
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    run_all(N, CONCURRENCY, |i| {
        let namespaces = namespaces.clone();
        async move {
            let mut ns = Namespace::default();
            ns.metadata.name = Some(format!("del-{i}"));
            ns.metadata.labels = Some(BTreeMap::from([("team".to_owned(), "del".to_owned())]));
            namespaces.create(&PostParams::default(), &ns).await?;
            Ok(())
        }
    })
    .await?;
    let max = N.to_string();
    let env = [
        ("GROUPBINDER_RESYNC_SECONDS", "0"),
        ("GROUPBINDER_MAX_ROLE_BINDINGS", max.as_str()),
    ];
    let (operator, _) = super::logged_operator(cp, &env)?;
    let spec = AzureGroupBindingSpec {
        group_object_id: "00000000-0000-4000-8000-00000000de1e".into(),
        group_prefix: Some(SEED_PREFIX.into()),
        roles: Some(vec![NamespacedRole {
            name: "k10-basic".into(),
            namespace: None,
            namespace_selector: Some(NamespaceSelector {
                match_labels: Some(BTreeMap::from([("team".to_owned(), "del".to_owned())])),
                match_expressions: None,
            }),
            kind: groupbinder_api::RoleKind::ClusterRole,
        }]),
        ..AzureGroupBindingSpec::default()
    };
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    agbs.create(&PostParams::default(), &AzureGroupBinding::new("del", spec))
        .await?;
    let started = Instant::now();
    loop {
        let agb = agbs.get("del").await?;
        let count = agb
            .status
            .as_ref()
            .and_then(|s| s.selected_namespaces.as_ref());
        if count.is_some_and(|c| i64::from(c.count) == N as i64)
            && ready(&agb).is_some_and(|c| c.status == "True")
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "not Ready in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(operator)
}

/// Deletes the object and times until none of its RoleBindings is left.
async fn deleted(cp: &ControlPlane) -> anyhow::Result<f64> {
    let client = cp.client().await?;
    let rbs: Api<RoleBinding> = Api::all(client.clone());
    let its = ListParams::default().labels("groupbinder.dev/azuregroupbinding=del");
    anyhow::ensure!(
        rbs.list_metadata(&its).await?.items.len() == N,
        "not {N} RoleBindings"
    );
    let started = Instant::now();
    Api::<AzureGroupBinding>::all(client)
        .delete("del", &DeleteParams::default())
        .await?;
    loop {
        if rbs.list_metadata(&its).await?.items.is_empty() {
            return Ok(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "left after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the deletion benchmark and prints its figures.
pub async fn run() -> anyhow::Result<()> {
    println!("groupbinder deletion benchmark: one object, {N} selector-made RoleBindings");
    let cp = ControlPlane::start(Options {
        without_controller_manager: true,
        ..Options::default()
    })
    .await?;
    let operator = converged(&cp).await?;
    let by_operator = deleted(&cp).await?;
    drop(operator);
    cp.shutdown();

    let cp = ControlPlane::start(Options::default()).await?;
    let operator = converged(&cp).await?;
    drop(operator); // SIGTERM, and waited for: down before the deletion
    let by_gc = deleted(&cp).await?;
    cp.shutdown();
    println!(
        "deleted to no RoleBinding left: operator (no kube-controller-manager) {by_operator:.2} s, garbage collector alone (operator down) {by_gc:.2} s: {:.1}x",
        by_gc / by_operator
    );
    Ok(())
}
