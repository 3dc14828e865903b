//! `make bench BENCH_ARGS=--k10-settings`: how long a change to K10's OIDC Secret takes to show in
//! every object's `Ready`. 100 objects bind `michael_azure_<id>`; K10's `groupPrefix` is flipped
//! between that and a typo, 5 times each way; each flip is timed from the Secret's update until
//! every object says the new `Ready` (False `PrefixMismatch`, or True `Reconciled`).

use std::time::{Duration, Instant};

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use groupbinder_e2e::{
    SEED_PREFIX, apiserver_writes, install_crd, install_k10, install_seed_k10_oidc, ready,
};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::{CONCURRENCY, median, run_all};

const OBJECTS: usize = 100;
const FLIPS: usize = 10;

async fn all_say(agbs: &Api<AzureGroupBinding>, reason: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let all = agbs.list(&Default::default()).await?;
        let done = all
            .items
            .iter()
            .filter(|a| ready(a).is_some_and(|c| c.reason == reason))
            .count();
        if done == OBJECTS {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{done} of {OBJECTS} say {reason} after 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run() -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    install_seed_k10_oidc(&client).await?;
    println!(
        "groupbinder K10-settings benchmark: {OBJECTS} objects, {FLIPS} flips of K10's groupPrefix"
    );
    let (_operator, _) = super::logged_operator(&cp, &[("GROUPBINDER_RESYNC_SECONDS", "0")])?;
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    run_all(OBJECTS, CONCURRENCY, |i| {
        let agbs = agbs.clone();
        async move {
            let spec = AzureGroupBindingSpec {
                group_object_id: format!("00000000-0000-4000-8000-{i:012x}"),
                group_prefix: Some(SEED_PREFIX.into()),
                ..AzureGroupBindingSpec::default()
            };
            agbs.create(
                &PostParams::default(),
                &AzureGroupBinding::new(&format!("k10s-{i}"), spec),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    all_say(&agbs, "Reconciled").await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kasten-io");
    let writes = [
        "azuregroupbindings",
        "clusterrolebindings",
        "rolebindings",
        "events",
    ];
    let before = apiserver_writes(&client, &writes).await?;
    let mut times = Vec::new();
    for flip in 0..FLIPS {
        let (prefix, reason) = if flip % 2 == 0 {
            ("michael-azure_", "PrefixMismatch")
        } else {
            (SEED_PREFIX, "Reconciled")
        };
        let patch = serde_json::json!({"stringData": {"groupPrefix": prefix}});
        let started = Instant::now();
        secrets
            .patch(
                "k10-oidc-auth",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        all_say(&agbs, reason).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_flip = (apiserver_writes(&client, &writes).await? - before) / FLIPS as f64;
    let worst = times.iter().copied().fold(0.0, f64::max);
    println!(
        "K10's Secret changed to all {OBJECTS} objects' Ready updated: median {:.0} ms, worst {worst:.0} ms ({FLIPS} flips); writes per flip {per_flip:.1} (statuses and events; no binding is touched)",
        median(times)
    );
    cp.shutdown();
    Ok(())
}
