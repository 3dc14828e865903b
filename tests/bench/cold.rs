//! `make bench BENCH_ARGS="--cold-start N"`: a restart at N objects, against the steady state at
//! N. First an operator runs while N AzureGroupBindings are created and makes their bindings, as in
//! production; once all are Ready and it has been idle for a while, its resident set is the
//! steady state. Then it is stopped and a new operator starts with everything in place (a restart,
//! a new leader, an upgrade). Measured: the time until the new one has reconciled (confirmed)
//! every object, the writes it makes (expected: none), and its peak RSS against the steady state
//! and the chart's memory limit.

use std::time::{Duration, Instant};

use groupbinder_api::AzureGroupBinding;
use groupbinder_e2e::{apiserver_writes, install_crd, install_k10};
use groupbinder_testenv::{ControlPlane, Options};
use kube::Api;

use super::{WRITES, all_ready, cpu_seconds, create_round, current_rss_kib, peak_rss_kib};

/// Runs the cold-start benchmark with `n` objects and prints its figures.
pub async fn run(n: usize) -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    println!(
        "groupbinder cold start: {n} AzureGroupBindings ({} bindings); MALLOC_ARENA_MAX={}",
        2 * n,
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "(unset)".into())
    );

    // The steady state: an operator that made the bindings itself, idle for a while.
    let first = super::operator(&cp, 0)?;
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    let made = create_round(&agbs, "cold", 0, n).await?;
    all_ready(&agbs, 0, n).await?;
    eprintln!("{n} objects created in {made:.1} s and Ready");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let steady = current_rss_kib(first.id()) as f64 / 1024.0;
    let steady_peak = peak_rss_kib(&first) as f64 / 1024.0;
    drop(first);

    // The restart.
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
        "steady state at {n} objects (the operator that made the bindings, idle 10 s): RSS {steady:.1} MiB (its peak {steady_peak:.1} MiB)"
    );
    println!(
        "cold start with {n} objects: every object confirmed in {confirmed:.2} s; writes {writes}; operator CPU {cpu:.2} s; peak RSS {rss:.1} MiB = {:.2}x the steady state",
        rss / steady
    );
    drop(child);
    Ok(())
}
