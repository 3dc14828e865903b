//! `make bench BENCH_ARGS="--cold-start N"`: the operator started with N AzureGroupBindings, their
//! bindings and statuses already in place, as a previous replica left them (a restart, a new
//! leader, an upgrade). Measured: the time until every object has been reconciled (confirmed),
//! the writes it makes (expected: none), and its peak RSS, against the chart's memory limit.

use std::time::{Duration, Instant};

use groupbinder_api::names::FIELD_MANAGER;
use groupbinder_api::{AzureGroupBinding, Settings, plan};
use groupbinder_e2e::{apiserver_writes, install_crd, install_k10};
use groupbinder_testenv::{ControlPlane, Options};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::{
    CONCURRENCY, WRITES, cpu_seconds, create_bindings, peak_rss_kib, run_all, spec, status_of,
};

/// Creates object `i`, its bindings and its status, as the operator would have.
async fn leave_behind(client: &kube::Client, settings: &Settings, i: usize) -> anyhow::Result<()> {
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    let agb = agbs
        .create(
            &params,
            &AzureGroupBinding::new(&format!("cold-{i}"), spec(0, i)),
        )
        .await?;
    let plan = plan(&agb, settings, None)?;
    create_bindings(client, &plan, &params).await?;
    let status = status_of(&agb, &plan);
    let patch = serde_json::json!({
        "apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding", "status": status,
    });
    agbs.patch_status(
        &format!("cold-{i}"),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    Ok(())
}

/// Runs the cold-start benchmark with `n` objects and prints its figures.
pub async fn run(n: usize) -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let settings = Settings::for_k10("k10", "kasten-io", "");
    println!(
        "groupbinder cold start: {n} AzureGroupBindings ({} bindings) in place; MALLOC_ARENA_MAX={}",
        2 * n,
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "(unset)".into())
    );
    let made = run_all(n, CONCURRENCY, |i| {
        let (client, settings) = (client.clone(), settings.clone());
        async move { leave_behind(&client, &settings, i).await }
    })
    .await?;
    eprintln!("{n} objects left behind in {made:.1} s");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = apiserver_writes(&client, &WRITES).await?;
    let started = Instant::now();
    let child = super::operator(&cp, 0)?;
    loop {
        let reconciled = child.metric("groupbinder_reconciles_total").unwrap_or(0.0);
        if reconciled >= n as f64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{reconciled} of {n} reconciled after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let confirmed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = apiserver_writes(&client, &WRITES).await? - before;
    let cpu = cpu_seconds(child.id());
    let rss = peak_rss_kib(&child) as f64 / 1024.0;
    println!(
        "cold start with {n} objects: every object confirmed in {confirmed:.2} s; writes {writes}; operator CPU {cpu:.2} s; peak RSS {rss:.1} MiB"
    );
    drop(child);
    Ok(())
}
