//! `make bench BENCH_ARGS=--selectors`: namespace selectors at scale, at two sizes, each on a
//! control plane of its own: N namespaces labelled `team: t<i mod T>` and T AzureGroupBindings,
//! each binding K10's basic role in the namespaces of one team (10 each, N RoleBindings), for
//! N/T = 2,000/200 and 10,000/1,000. Measured in one run per size: the time until all are Ready;
//! a relabel (one namespace moves to another team) until the new team's RoleBinding is there and
//! the old one's gone, with the writes each relabel causes; the operator's CPU for namespace
//! events that concern no selector; and its peak RSS. Then how each grows from the small size to
//! the large, and (unless `--no-kyverno`) the same task beside Kyverno (`super::kyverno`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use groupbinder_api::{
    AzureGroupBinding, AzureGroupBindingSpec, NamespaceSelector, NamespacedRole, RoleKind,
};
use groupbinder_e2e::{SEED_PREFIX, apiserver_writes, install_crd, install_k10, ready};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::{CONCURRENCY, cpu_seconds, median, peak_rss_kib, run_all};

const RELABELS: usize = 50;

/// One size: namespaces, and teams (one AzureGroupBinding each).
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub namespaces: usize,
    pub teams: usize,
}

/// The two sizes measured, the small one first.
pub const SCALES: [Scale; 2] = [
    Scale {
        namespaces: 2000,
        teams: 200,
    },
    Scale {
        namespaces: 10_000,
        teams: 1000,
    },
];

impl Scale {
    pub fn team_of(&self, namespace: usize) -> usize {
        namespace % self.teams
    }
}

/// Team `team`'s group object ID.
pub fn team_guid(team: usize) -> String {
    format!("00000000-0000-4000-8000-{team:012x}")
}

/// Team `team`'s group as K10 impersonates it (and the RoleBinding's subject).
pub fn team_group(team: usize) -> String {
    format!("{SEED_PREFIX}{}", team_guid(team))
}

/// Team `team`'s AzureGroupBinding: K10's basic role in the team's namespaces.
pub fn spec(team: usize) -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: team_guid(team),
        group_prefix: Some(SEED_PREFIX.into()),
        roles: Some(vec![NamespacedRole {
            name: "k10-basic".into(),
            namespace: None,
            namespace_selector: Some(NamespaceSelector {
                match_labels: Some(BTreeMap::from([("team".to_owned(), format!("t{team}"))])),
                match_expressions: None,
            }),
            kind: RoleKind::ClusterRole,
        }]),
        ..AzureGroupBindingSpec::default()
    }
}

/// Creates namespaces `app-0..n`, each labelled with its team of `scale`.
pub async fn create_namespaces(
    client: &kube::Client,
    scale: Scale,
    n: usize,
) -> anyhow::Result<f64> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    run_all(n, CONCURRENCY, |i| {
        let namespaces = namespaces.clone();
        async move {
            let mut ns = Namespace::default();
            ns.metadata.name = Some(format!("app-{i}"));
            ns.metadata.labels = Some(BTreeMap::from([(
                "team".to_owned(),
                format!("t{}", scale.team_of(i)),
            )]));
            namespaces.create(&PostParams::default(), &ns).await?;
            Ok(())
        }
    })
    .await
}

/// One size's figures.
struct Figures {
    scale: Scale,
    converge_s: f64,
    converge_cpu_s: f64,
    relabel_median_ms: f64,
    relabel_worst_ms: f64,
    relabel_writes: f64,
    relabel_cpu_ms: f64,
    unrelated_cpu_s: f64,
    unrelated_writes: f64,
    rss_mib: f64,
}

/// Runs the selector benchmark at both sizes, prints how it grows, then the Kyverno comparison.
pub async fn run() -> anyhow::Result<()> {
    let mut figures = Vec::new();
    for scale in SCALES {
        figures.push(run_scale(scale).await?);
    }
    let [small, large] = [&figures[0], &figures[1]];
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { f64::NAN };
    println!(
        "\ngrowth from {}/{} to {}/{} (namespaces/objects, x{:.0}):",
        small.scale.namespaces,
        small.scale.teams,
        large.scale.namespaces,
        large.scale.teams,
        ratio(small.scale.namespaces as f64, large.scale.namespaces as f64)
    );
    for (what, a, b) in [
        ("time to all Ready", small.converge_s, large.converge_s),
        (
            "operator CPU to all Ready",
            small.converge_cpu_s,
            large.converge_cpu_s,
        ),
        (
            "relabel to effect (median)",
            small.relabel_median_ms,
            large.relabel_median_ms,
        ),
        (
            "relabel to effect (worst)",
            small.relabel_worst_ms,
            large.relabel_worst_ms,
        ),
        (
            "writes per relabel",
            small.relabel_writes,
            large.relabel_writes,
        ),
        (
            "operator CPU per relabel",
            small.relabel_cpu_ms,
            large.relabel_cpu_ms,
        ),
        (
            "operator CPU, unrelated label changes",
            small.unrelated_cpu_s,
            large.unrelated_cpu_s,
        ),
        (
            "writes, unrelated label changes",
            small.unrelated_writes,
            large.unrelated_writes,
        ),
        ("operator peak RSS (MiB)", small.rss_mib, large.rss_mib),
    ] {
        println!("  {what}: {a:.2} -> {b:.2} (x{:.2})", ratio(a, b));
    }
    if std::env::args().any(|a| a == "--no-kyverno") {
        return Ok(());
    }
    println!("\n--- beside Kyverno generate (--no-kyverno to skip) ---");
    super::kyverno::run().await
}

/// The selector benchmark at one size, on a control plane of its own.
async fn run_scale(scale: Scale) -> anyhow::Result<Figures> {
    let Scale {
        namespaces: n,
        teams,
    } = scale;
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    println!(
        "\ngroupbinder selector benchmark: {n} namespaces, {teams} AzureGroupBindings with a namespaceSelector each"
    );
    create_namespaces(&client, scale, n).await?;

    let (child, log) = super::logged_operator(&cp, &[("GROUPBINDER_RESYNC_SECONDS", "0")])?;
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    run_all(teams, CONCURRENCY, |t| {
        let agbs = agbs.clone();
        async move {
            agbs.create(
                &PostParams::default(),
                &AzureGroupBinding::new(&format!("team-{t}"), spec(t)),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    loop {
        let all = agbs.list(&Default::default()).await?;
        let done = all
            .items
            .iter()
            .filter(|a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.selected_namespaces.as_ref())
                    .is_some_and(|s| s.count == 10)
                    && ready(a).is_some_and(|c| c.status == "True")
            })
            .count();
        if done == teams {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1200),
            "{done} of {teams} Ready after 20 minutes"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converge = started.elapsed().as_secs_f64();
    let converge_cpu = cpu_seconds(child.id()) - cpu_before;

    // Relabels: app-i moves from its team to the next one; timed until the next team's
    // RoleBinding is in app-i and the old team's is gone.
    let writes = ["rolebindings", "azuregroupbindings", "events"];
    let before = apiserver_writes(&client, &writes).await?;
    let cpu_before = cpu_seconds(child.id());
    let mut times = Vec::new();
    for r in 0..RELABELS {
        let i = r * (n / RELABELS);
        let (old, new) = (scale.team_of(i), (scale.team_of(i) + 1) % teams);
        let ns = format!("app-{i}");
        let patch = serde_json::json!({"metadata": {"labels": {"team": format!("t{new}")}}});
        let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        let started = Instant::now();
        namespaces
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        loop {
            let moved = rbs
                .get_opt(&format!("team-{new}:k10-basic"))
                .await?
                .is_some()
                && rbs
                    .get_opt(&format!("team-{old}:k10-basic"))
                    .await?
                    .is_none();
            if moved {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                anyhow::bail!(
                    "{ns} not moved in 30 s; operator log, last lines first:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // Let the statuses and events of the last relabel land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let relabel_writes = (apiserver_writes(&client, &writes).await? - before) / RELABELS as f64;
    let relabel_cpu = cpu_seconds(child.id()) - cpu_before;

    // Namespace events that concern no selector: a label no selector reads, on every namespace.
    let cpu_before = cpu_seconds(child.id());
    let before = apiserver_writes(&client, &writes).await?;
    let unrelated = run_all(n, CONCURRENCY, |i| {
        let namespaces = namespaces.clone();
        async move {
            let patch =
                serde_json::json!({"metadata": {"labels": {"cost-center": format!("c{i}")}}});
            namespaces
                .patch(
                    &format!("app-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            Ok(())
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unrelated_cpu = cpu_seconds(child.id()) - cpu_before;
    let unrelated_writes = apiserver_writes(&client, &writes).await? - before;
    let rss = peak_rss_kib(&child);

    let worst = times.iter().copied().fold(0.0, f64::max);
    let figures = Figures {
        scale,
        converge_s: converge,
        converge_cpu_s: converge_cpu,
        relabel_median_ms: median(times),
        relabel_worst_ms: worst,
        relabel_writes,
        relabel_cpu_ms: relabel_cpu * 1000.0 / RELABELS as f64,
        unrelated_cpu_s: unrelated_cpu,
        unrelated_writes,
        rss_mib: rss as f64 / 1024.0,
    };
    println!(
        "{teams} selector objects over {n} namespaces ({n} RoleBindings) to all Ready: {converge:.2} s, operator CPU {converge_cpu:.2} s"
    );
    println!(
        "relabel to effect ({RELABELS} relabels, one at a time): median {:.1} ms, worst {worst:.1} ms; writes per relabel {relabel_writes:.2} (rolebindings, statuses, events); operator CPU {:.1} ms per relabel",
        figures.relabel_median_ms, figures.relabel_cpu_ms
    );
    println!(
        "{n} namespace label changes that no selector reads ({unrelated:.2} s): operator CPU {unrelated_cpu:.2} s, writes {unrelated_writes}"
    );
    println!("operator peak RSS: {:.1} MiB", figures.rss_mib);
    drop(child);
    drop(cp);
    Ok(figures)
}
