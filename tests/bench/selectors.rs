//! `make bench BENCH_ARGS=--selectors`: namespace selectors at scale. 2,000 namespaces labelled
//! `team: t<i mod 200>`, and 200 AzureGroupBindings, each binding K10's basic role in the
//! namespaces of one team (10 each, 2,000 RoleBindings). Measured in one run: the time until all
//! are Ready; a relabel (one namespace moves to another team) until the new team's RoleBinding is
//! there and the old one's gone, with the writes each relabel causes; the operator's CPU for
//! namespace events that concern no selector; and its peak RSS.

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

const NAMESPACES: usize = 2000;
const TEAMS: usize = 200;
const RELABELS: usize = 50;

fn team_of(namespace: usize) -> usize {
    namespace % TEAMS
}

fn spec(team: usize) -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: format!("00000000-0000-4000-8000-{team:012x}"),
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

/// Runs the selector benchmark and prints its figures.
pub async fn run() -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    println!(
        "groupbinder selector benchmark: {NAMESPACES} namespaces, {TEAMS} AzureGroupBindings with a namespaceSelector each"
    );

    run_all(NAMESPACES, CONCURRENCY, |i| {
        let namespaces = namespaces.clone();
        async move {
            let mut ns = Namespace::default();
            ns.metadata.name = Some(format!("app-{i}"));
            ns.metadata.labels = Some(BTreeMap::from([(
                "team".to_owned(),
                format!("t{}", team_of(i)),
            )]));
            namespaces.create(&PostParams::default(), &ns).await?;
            Ok(())
        }
    })
    .await?;

    let log = cp.dir().join("operator.log");
    let binary = std::env::current_exe()?.with_file_name("groupbinder");
    let env = [
        ("GROUPBINDER_RESYNC_SECONDS", "0"),
        ("GROUPBINDER_LOG_LEVEL", "warn"),
    ];
    let child = groupbinder_e2e::OperatorProcess::spawn(
        &binary,
        cp.kubeconfig(),
        &env,
        std::fs::File::create(&log)?.into(),
    )?;
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    run_all(TEAMS, CONCURRENCY, |t| {
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
        if done == TEAMS {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{done} of {TEAMS} Ready after 10 minutes"
        );
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
        let i = r * (NAMESPACES / RELABELS);
        let (old, new) = (team_of(i), (team_of(i) + 1) % TEAMS);
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
    let unrelated = run_all(NAMESPACES, CONCURRENCY, |i| {
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
    println!(
        "{TEAMS} selector objects over {NAMESPACES} namespaces ({NAMESPACES} RoleBindings) to all Ready: {converge:.2} s, operator CPU {converge_cpu:.2} s"
    );
    println!(
        "relabel to effect ({RELABELS} relabels, one at a time): median {:.1} ms, worst {worst:.1} ms; writes per relabel {relabel_writes:.2} (rolebindings, statuses, events); operator CPU {:.1} ms per relabel",
        median(times),
        relabel_cpu * 1000.0 / RELABELS as f64
    );
    println!(
        "{NAMESPACES} namespace label changes that no selector reads ({unrelated:.2} s): operator CPU {unrelated_cpu:.2} s, writes {unrelated_writes}"
    );
    println!("operator peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    drop(child);
    Ok(())
}
