//! `make bench BENCH_ARGS=--entra`: whether asking Entra ID slows binding changes down. 100
//! objects whose groups the Entra ID stand-in knows; drift repair (50 ClusterRoleBindings deleted
//! one by one, each timed until it is back) measured three ways in one run: an operator that does
//! not ask Entra ID, one that asks with Entra ID up, and the same with Entra ID unreachable for a
//! minute (answers kept for 5 s only, so the reconciles each repair sets off ask again, and fail). Also: whether any
//! other binding changed while it was down.

use std::time::{Duration, Instant};

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use groupbinder_e2e::entra::{Entra, object_id};
use groupbinder_e2e::{OperatorProcess, SEED_PREFIX, install_crd, install_k10};
use groupbinder_testenv::{ControlPlane, Options};
use kube::Api;
use kube::api::PostParams;

use super::{CONCURRENCY, drift, median, run_all};

const OBJECTS: usize = 100;
const TENANT: &str = "3f1c0d2e-0000-4000-8000-0000000000b1";

fn binding(i: usize) -> String {
    format!("entra-{i}:k10-admin")
}

/// An operator process, asking `entra` if given.
fn operator(
    cp: &ControlPlane,
    entra: Option<&Entra>,
    name: &str,
) -> anyhow::Result<OperatorProcess> {
    let binary = std::env::current_exe()?.with_file_name("groupbinder");
    let dir = cp.dir().join(name);
    std::fs::create_dir_all(&dir)?;
    let mut env: Vec<(String, String)> = [
        ("GROUPBINDER_RESYNC_SECONDS", "0"),
        ("GROUPBINDER_LOG_LEVEL", "error"),
        ("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    if let Some(entra) = entra {
        env.extend(entra.env(&dir)?);
        env.push(("GROUPBINDER_ENTRA_TTL_SECONDS".into(), "5".into()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = std::fs::File::create(dir.join("operator.log"))?;
    OperatorProcess::spawn(&binary, cp.kubeconfig(), &env, log.into())
}

fn summary(times: &[f64]) -> (f64, f64) {
    (
        median(times.to_vec()),
        times.iter().copied().fold(0.0, f64::max),
    )
}

/// Runs the benchmark and prints its figures.
pub async fn run() -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let entra = Entra::start(TENANT)?;
    for i in 0..OBJECTS {
        entra.add_group(&object_id(i as u32), &format!("team {i}"), true);
    }
    println!(
        "groupbinder Entra ID benchmark: {OBJECTS} objects, drift repair of 50 bindings each way"
    );
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    run_all(OBJECTS, CONCURRENCY, |i| {
        let agbs = agbs.clone();
        async move {
            let spec = AzureGroupBindingSpec {
                group_object_id: object_id(i as u32),
                ..AzureGroupBindingSpec::default()
            };
            agbs.create(
                &PostParams::default(),
                &AzureGroupBinding::new(&format!("entra-{i}"), spec),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let limit = Duration::from_secs(30);

    // Without Entra ID.
    let without = {
        let _operator = operator(&cp, None, "without")?;
        let started = Instant::now();
        while groupbinder_e2e::managed_binding_versions(&client)
            .await?
            .len()
            < OBJECTS
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "not every binding made"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drift(&client, limit, binding).await?
    };
    // Asking Entra ID, which answers.
    let operator_up = operator(&cp, Some(&entra), "with")?;
    let started = Instant::now();
    while entra.graph_requests() < OBJECTS as u64 {
        anyhow::ensure!(
            started.elapsed() < limit,
            "Entra ID was not asked about every object"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let up = drift(&client, limit, binding).await?;
    // Entra ID unreachable for a minute: drift repaired all the same, nothing else changed.
    let before = groupbinder_e2e::managed_binding_versions(&client).await?;
    entra.set_down(true);
    let down_since = Instant::now();
    // Past the 5 s TTL: every reconcile the drift sets off finds its answer due, and asks.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let down = drift(&client, limit, binding).await?;
    let rest = Duration::from_secs(60).saturating_sub(down_since.elapsed());
    tokio::time::sleep(rest).await;
    let mut after = groupbinder_e2e::managed_binding_versions(&client).await?;
    entra.set_down(false);
    let repaired: Vec<String> = (0..50).map(binding).collect();
    let mut untouched = before.clone();
    untouched.retain(|name, _| !repaired.contains(name));
    after.retain(|name, _| untouched.contains_key(name));
    let changed = untouched
        .iter()
        .filter(|(n, v)| after.get(*n) != Some(*v))
        .count();
    let metrics = operator_up.metrics().unwrap_or_default();
    let failed: f64 = 0.0_f64.max(
        metrics
            .lines()
            .filter(|l| l.starts_with("groupbinder_entra_lookups_total{result=\"transport\"}"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum(),
    );
    drop(operator_up);

    let ((w, ww), (u, uw), (d, dw)) = (summary(&without), summary(&up), summary(&down));
    println!("drift repair without Entra ID: median {w:.1} ms, worst {ww:.1} ms");
    println!(
        "drift repair asking Entra ID: median {u:.1} ms, worst {uw:.1} ms ({:.2}x without)",
        u / w
    );
    println!(
        "drift repair with Entra ID unreachable: median {d:.1} ms, worst {dw:.1} ms ({:.2}x without); {failed:.0} lookups failed in that minute; {changed} of {} other bindings changed",
        d / w,
        untouched.len()
    );
    cp.shutdown();
    Ok(())
}
