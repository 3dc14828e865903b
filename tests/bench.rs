//! `make bench` (N=1000) or `groupbinder-bench --n 5000`: the operator against the API server's
//! write floor, on a real control plane. A benchmark program, not a test: it prints figures, all
//! measured in one run.
//!
//! Per round (median of `--rounds`): the time from creating N AzureGroupBindings (admin profile,
//! so 2N bindings) until every one is Ready, against the floor: a client creating the same 2N
//! bindings directly with the same concurrency. Then, once: write requests per AzureGroupBinding
//! during convergence and during a forced full resync (apiserver_request_total), the operator's
//! peak RSS, drift repair latency over 50 deleted bindings, and spec change to Ready.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec, Settings, plan};
use groupbinder_e2e::{
    OperatorProcess, SEED_PREFIX, apiserver_writes, install_crd, install_k10, ready,
};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

/// Requests in flight, for the operator's objects and for the floor alike (client-go's default
/// burst is 10; a well-behaved bulk client uses a few dozen).
const CONCURRENCY: usize = 32;
const WRITES: [&str; 4] = [
    "clusterrolebindings",
    "rolebindings",
    "azuregroupbindings",
    "events",
];

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn guid(round: usize, n: usize) -> String {
    format!("00000000-0000-4000-{round:04x}-{n:012x}")
}

fn spec(round: usize, n: usize) -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: guid(round, n),
        group_prefix: Some(SEED_PREFIX.into()),
        ..Default::default()
    }
}

/// The operator binary beside this one, with a resync every `resync` seconds (0: none).
fn operator(cp: &ControlPlane, resync: u64) -> anyhow::Result<OperatorProcess> {
    let binary = std::env::current_exe()?.with_file_name("groupbinder");
    let resync = resync.to_string();
    let env = [
        ("GROUPBINDER_RESYNC_SECONDS", resync.as_str()),
        ("GROUPBINDER_LOG_LEVEL", "warn"),
    ];
    OperatorProcess::spawn(&binary, cp.kubeconfig(), &env, Stdio::null())
}

fn peak_rss_kib(child: &OperatorProcess) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `n` objects named `prefix...` are Ready for their generation, from a watch (a
/// list every few milliseconds would load the API server the operator is measured on).
async fn all_ready(api: &Api<AzureGroupBinding>, prefix: &str, n: usize) -> anyhow::Result<()> {
    let mut done = std::collections::HashSet::new();
    let mut events =
        std::pin::pin!(watcher(api.clone(), watcher::Config::default()).applied_objects());
    while let Some(agb) = events.try_next().await? {
        let Some(name) = agb
            .metadata
            .name
            .clone()
            .filter(|name| name.starts_with(prefix))
        else {
            continue;
        };
        if ready(&agb)
            .is_some_and(|c| c.status == "True" && c.observed_generation == agb.metadata.generation)
        {
            done.insert(name);
        }
        if done.len() >= n {
            return Ok(());
        }
    }
    anyhow::bail!("the watch ended")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = arg("--n", 1000);
    let rounds = arg("--rounds", 3);
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    println!(
        "groupbinder benchmark: N={n} AzureGroupBindings ({} bindings), {rounds} rounds, concurrency {CONCURRENCY}",
        2 * n
    );

    let mut operator_times = Vec::new();
    let mut floor_times = Vec::new();
    let mut writes_per_agb = 0.0;
    let mut first_round_rss = 0;
    let child = operator(&cp, 0)?;
    for round in 0..rounds {
        // The floor: the same 2N bindings, created directly.
        let settings = Arc::new(Settings::for_k10("k10", "kasten-io", ""));
        let started = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let (client, settings) = (client.clone(), settings.clone());
                async move {
                    let mut plan = plan(
                        &AzureGroupBinding::new(&format!("floor-{round}-{i}"), spec(round, i)),
                        &settings,
                    )?;
                    // Not labelled as groupbinder's: the operator neither caches them nor is woken
                    // by them, as with any binding it did not make.
                    for meta in plan
                        .cluster_role_bindings
                        .iter_mut()
                        .map(|b| &mut b.metadata)
                        .chain(plan.role_bindings.iter_mut().map(|b| &mut b.metadata))
                    {
                        meta.labels = None;
                    }
                    for crb in &plan.cluster_role_bindings {
                        Api::<ClusterRoleBinding>::all(client.clone())
                            .create(&PostParams::default(), crb)
                            .await?;
                    }
                    for rb in &plan.role_bindings {
                        Api::<RoleBinding>::namespaced(client.clone(), "kasten-io")
                            .create(&PostParams::default(), rb)
                            .await?;
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY / 2)
            .try_collect::<Vec<()>>()
            .await?;
        floor_times.push(started.elapsed().as_secs_f64());

        // The operator: N AzureGroupBindings at once, until every one is Ready.
        let before = apiserver_writes(&client, &WRITES).await?;
        let started = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let agbs = agbs.clone();
                async move {
                    let agb = AzureGroupBinding::new(&format!("bench-{round}-{i}"), spec(round, i));
                    agbs.create(&PostParams::default(), &agb).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        all_ready(&agbs, &format!("bench-{round}-"), n).await?;
        operator_times.push(started.elapsed().as_secs_f64());
        // Everything written for this round, AzureGroupBinding creates included, per object.
        writes_per_agb = (apiserver_writes(&client, &WRITES).await? - before) / n as f64;
        println!(
            "round {}: operator {:.2} s, floor {:.2} s, ratio {:.2}, operator peak RSS so far {:.1} MiB ({} objects)",
            round + 1,
            operator_times[round],
            floor_times[round],
            operator_times[round] / floor_times[round],
            {
                let rss = peak_rss_kib(&child);
                if round == 0 {
                    first_round_rss = rss;
                }
                rss as f64 / 1024.0
            },
            n * (round + 1)
        );
    }
    let rss = peak_rss_kib(&child);
    drop(child);

    // A forced full resync: a fresh operator lists and reconciles everything, and a 10 s resync
    // goes over all of it once more.
    eprintln!("forced full resync ...");
    let before = apiserver_writes(&client, &WRITES).await?;
    let child = operator(&cp, 10)?;
    tokio::time::sleep(Duration::from_secs(25)).await;
    let resync_writes = apiserver_writes(&client, &WRITES).await? - before;
    let rss = rss.max(peak_rss_kib(&child));

    // Drift repair: 50 bindings deleted one by one, each waited for until it is back (another uid).
    eprintln!("drift repair ...");
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let mut repairs = Vec::new();
    for i in 0..50 {
        let name = format!("bench-0-{i}:k10-admin");
        let old = crbs.get(&name).await?.metadata.uid;
        let started = Instant::now();
        crbs.delete(&name, &DeleteParams::default()).await?;
        while crbs
            .get_opt(&name)
            .await?
            .is_none_or(|b| b.metadata.uid == old)
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{name} not restored in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        repairs.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // A spec change (another group) until Ready for the new generation.
    let started = Instant::now();
    let patch = serde_json::json!({"spec": {"groupObjectId": guid(0xffff, 1)}});
    agbs.patch("bench-0-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    loop {
        let agb = agbs.get("bench-0-0").await?;
        if ready(&agb)
            .is_some_and(|c| c.status == "True" && c.observed_generation == agb.metadata.generation)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let spec_change = started.elapsed().as_secs_f64() * 1000.0;
    drop(child);

    let (op, floor) = (median(operator_times), median(floor_times));
    let worst = repairs.iter().copied().fold(0.0, f64::max);
    println!(
        "\nN={n}: operator {op:.2} s, floor {floor:.2} s, ratio {:.2} (medians of {rounds} rounds)",
        op / floor
    );
    println!(
        "writes per AzureGroupBinding during convergence: {writes_per_agb:.2} (its own create included)"
    );
    println!(
        "writes during a forced full resync (restart, then a 10 s resync, over {} objects): {resync_writes}",
        n * rounds
    );
    println!(
        "operator peak RSS: {:.1} MiB holding N={n} objects (round 1), {:.1} MiB overall ({} objects, restart included)",
        first_round_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        n * rounds
    );
    println!(
        "drift repair: median {:.1} ms, worst {worst:.1} ms (50 deleted bindings)",
        median(repairs)
    );
    println!("spec change to Ready: {spec_change:.1} ms");
    Ok(())
}
