//! `make bench BENCH_ARGS="--peer --n N"`: groupbinder beside FairwindsOps rbac-manager (the peer
//! users would pick instead), on one control plane, with the same N and the same concurrency of
//! the client that applies the objects. Each makes the same 2N bindings: Group
//! `michael_azure_<guid>` to ClusterRole `k10-admin` cluster-wide and to Role `k10-ns-admin` in
//! `kasten-io`. Printed, from one run: time from the first create to all 2N bindings present
//! (and, for groupbinder, all Ready) and its ratio to the bindings floor; API requests per object
//! by verb; kube-apiserver and operator CPU seconds; operator peak RSS; drift repair of 50 deleted
//! bindings; one spec change: time to effect and the requests it causes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use groupbinder_api::{AzureGroupBinding, Settings, plan};
use groupbinder_e2e::{SEED_PREFIX, apiserver_requests, install_crd, install_k10, kubectl_apply};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Api;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};

use super::{
    CONCURRENCY, SETTLE, SETTLE_GC, cpu_seconds, create_bindings, guid, rss_kib, run_all, spec,
};

type Requests = BTreeMap<(String, String), f64>;

/// Where build.sh puts the peer, as `--peer` finds it by default.
fn default_peer() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("groupbinder/peers/rbac-manager-14c1018f")
}

/// One contender's figures.
struct Figures {
    /// Time to all 2N bindings present; or, when they were not all present within the time
    /// allowed, how many were, and after how long.
    present: Result<f64, (usize, f64)>,
    ready: Option<f64>,
    requests: Requests,
    apiserver_cpu: f64,
    operator_cpu: f64,
    rss_mib: f64,
    /// Drift repair (median, worst ms) and one spec change (ms, requests): measured only once
    /// every binding is present.
    after: Option<After>,
}

struct After {
    repair_median_ms: f64,
    repair_worst_ms: f64,
    spec_change_ms: f64,
    spec_change_requests: f64,
}

/// How long the peer may take to make its 2N bindings (`--peer-minutes`, default 20): a stall
/// is a result, reported with how far it got.
fn peer_allowance() -> Duration {
    Duration::from_secs(60 * super::arg("--peer-minutes", 20) as u64)
}

pub(super) fn delta(before: &Requests, after: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn apiserver_pid(cp: &ControlPlane) -> u32 {
    cp.pids()
        .into_iter()
        .find(|(name, _)| *name == "kube-apiserver")
        .map_or(0, |(_, pid)| pid)
}

/// Counts the bindings labelled `selector`: (ClusterRoleBindings, RoleBindings).
async fn count(client: &kube::Client, selector: &str) -> anyhow::Result<usize> {
    let params = ListParams::default().labels(selector);
    let crbs = Api::<ClusterRoleBinding>::all(client.clone())
        .list_metadata(&params)
        .await?;
    let rbs = Api::<RoleBinding>::all(client.clone())
        .list_metadata(&params)
        .await?;
    Ok(crbs.items.len() + rbs.items.len())
}

async fn wait_for<F, Fut>(what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !done().await? {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "{what}: not after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// [`super::drift`] with a peer's patience: median and worst milliseconds.
async fn drift(
    client: &kube::Client,
    name: impl Fn(usize) -> String,
) -> anyhow::Result<(f64, f64)> {
    let times = super::drift(client, Duration::from_secs(120), name).await?;
    let worst = times.iter().copied().fold(0.0, f64::max);
    Ok((super::median(times), worst))
}

/// Waits until the ClusterRoleBinding `name` binds `group`; returns the milliseconds.
async fn until_subject(
    client: &kube::Client,
    name: &str,
    group: &str,
    started: Instant,
) -> anyhow::Result<f64> {
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    loop {
        let bound = crbs
            .get_opt(name)
            .await?
            .and_then(|b| b.subjects)
            .unwrap_or_default();
        if bound.iter().any(|s| s.name == group) {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{name} not moved to {group}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `rbacBindings` of an RBACDefinition that binds `group` as groupbinder's admin profile does
/// (without mc-admin): `k10-admin` cluster-wide, `k10-ns-admin` in `kasten-io`.
fn rbac_bindings(group: &str) -> serde_json::Value {
    serde_json::json!([{
        "name": "k10",
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}],
        "clusterRoleBindings": [{"clusterRole": "k10-admin"}],
        "roleBindings": [{"role": "k10-ns-admin", "namespace": "kasten-io"}],
    }])
}

fn rbac_definition(resource: &ApiResource, i: usize, group: &str) -> DynamicObject {
    DynamicObject::new(&format!("peer-{i}"), resource)
        .data(serde_json::json!({ "rbacBindings": rbac_bindings(group) }))
}

/// Runs the side-by-side benchmark and prints its figures.
pub async fn run(n: usize) -> anyhow::Result<()> {
    let peer = super::flag("--peer-binary")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(default_peer);
    anyhow::ensure!(
        peer.is_file(),
        "{} missing: run ../shared/peers/rbac-manager/build.sh",
        peer.display()
    );
    let crd = std::path::PathBuf::from(format!("{}-src/deploy/2_crd.yaml", peer.display()));
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    kubectl_apply(&cp, &crd)?;
    println!(
        "groupbinder beside rbac-manager ({}): N={n}, {} bindings each, concurrency {CONCURRENCY}",
        peer.display(),
        2 * n
    );
    // The garbage collector has to see both CRDs (both set ownerReferences).
    tokio::time::sleep(SETTLE_GC).await;
    let apiserver = apiserver_pid(&cp);
    let settings = Settings::for_k10("k10", "kasten-io", "");

    // The floor: the same 2N bindings, created directly.
    let floor = run_all(n, CONCURRENCY, |i| {
        let (client, settings) = (client.clone(), settings.clone());
        async move {
            let mut agb = AzureGroupBinding::new(&format!("floor-{i}"), spec(7, i));
            agb.metadata.uid = None;
            let mut plan = plan(&agb, &settings, None)?;
            super::not_the_operators(&mut plan, "none.example.com/v1");
            create_bindings(&client, &plan, &PostParams::default()).await
        }
    })
    .await?;
    tokio::time::sleep(SETTLE).await;

    // groupbinder.
    let before = apiserver_requests(&client).await?;
    let (api_cpu, started) = (cpu_seconds(apiserver), Instant::now());
    let child = super::operator(&cp, 0)?;
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    super::create_round(&agbs, "gb", 8, n).await?;
    wait_for("groupbinder's bindings", || async {
        Ok(count(&client, "app.kubernetes.io/managed-by=groupbinder").await? >= 2 * n)
    })
    .await?;
    let present = started.elapsed().as_secs_f64();
    super::all_ready(&agbs, 8, n).await?;
    let ready = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let requests = delta(&before, &apiserver_requests(&client).await?);
    let gb_api_cpu = cpu_seconds(apiserver) - api_cpu;
    let gb_cpu = cpu_seconds(child.id());
    let (gb_median, gb_worst) = drift(&client, |i| format!("gb-{i}:k10-admin")).await?;
    let before_change = apiserver_requests(&client).await?;
    let new_group = format!("{SEED_PREFIX}{}", guid(9, 1));
    let started_change = Instant::now();
    let patch = serde_json::json!({"spec": {"groupObjectId": guid(9, 1)}});
    agbs.patch("gb-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let gb_change = until_subject(&client, "gb-0:k10-admin", &new_group, started_change).await?;
    tokio::time::sleep(SETTLE).await;
    let gb_change_requests: f64 = delta(&before_change, &apiserver_requests(&client).await?)
        .values()
        .sum();
    let gb = Figures {
        present: Ok(present),
        ready: Some(ready),
        requests,
        apiserver_cpu: gb_api_cpu,
        operator_cpu: gb_cpu,
        rss_mib: rss_kib(child.id()) as f64 / 1024.0,
        after: Some(After {
            repair_median_ms: gb_median,
            repair_worst_ms: gb_worst,
            spec_change_ms: gb_change,
            spec_change_requests: gb_change_requests,
        }),
    };
    drop(child);

    // rbac-manager.
    let gvk = GroupVersionKind::gvk("rbacmanager.reactiveops.io", "v1beta1", "RBACDefinition");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "rbacdefinitions");
    let defs: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let before = apiserver_requests(&client).await?;
    let (api_cpu, started) = (cpu_seconds(apiserver), Instant::now());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut peer_child = std::process::Command::new(&peer)
        .args(["--kubeconfig"])
        .arg(cp.kubeconfig())
        .args([
            "--metrics-address",
            &format!("127.0.0.1:{metrics_port}"),
            "--log-level",
            "warn",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(cp.dir().join("rbac-manager.log"))?)
        .spawn()?;
    let peer_pid = peer_child.id();
    let result = async {
        run_all(n, CONCURRENCY, |i| {
            let (defs, resource) = (defs.clone(), resource.clone());
            async move {
                let group = format!("{SEED_PREFIX}{}", guid(10, i));
                defs.create(
                    &PostParams::default(),
                    &rbac_definition(&resource, i, &group),
                )
                .await?;
                Ok(())
            }
        })
        .await?;
        let allowance = peer_allowance();
        let made = loop {
            let made = count(&client, "rbac-manager=reactiveops").await?;
            if made >= 2 * n || started.elapsed() >= allowance {
                break made;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let present = if made >= 2 * n {
            Ok(started.elapsed().as_secs_f64())
        } else {
            Err((made, started.elapsed().as_secs_f64()))
        };
        tokio::time::sleep(SETTLE).await;
        let requests = delta(&before, &apiserver_requests(&client).await?);
        let peer_api_cpu = cpu_seconds(apiserver) - api_cpu;
        let peer_cpu = cpu_seconds(peer_pid);
        let rss_mib = rss_kib(peer_pid) as f64 / 1024.0;
        // Drift repair and a spec change only once every binding is there.
        let after = if present.is_ok() {
            Some(peer_after(&client, &defs).await?)
        } else {
            None
        };
        anyhow::Ok(Figures {
            present,
            ready: None,
            requests,
            apiserver_cpu: peer_api_cpu,
            operator_cpu: peer_cpu,
            rss_mib,
            after,
        })
    }
    .await;
    let _ = peer_child.kill();
    let _ = peer_child.wait();
    let peer_figures = result?;

    println!("\nN={n}, bindings floor (2N bindings created directly): {floor:.2} s");
    for (name, f) in [("groupbinder", &gb), ("rbac-manager", &peer_figures)] {
        println!("\n{name}:");
        match f.present {
            Ok(present) => println!(
                "  all 2N bindings present: {present:.2} s, {:.2} × the floor",
                present / floor
            ),
            Err((made, after)) => println!(
                "  NOT all 2N bindings present: {made} of {} after {after:.0} s (stopped there; {:.1} bindings/s)",
                2 * n,
                made as f64 / after
            ),
        }
        if let Some(ready) = f.ready {
            println!(
                "  all objects Ready: {ready:.2} s, {:.2} × the floor",
                ready / floor
            );
        }
        println!(
            "  CPU seconds: kube-apiserver {:.2}, operator {:.2}; operator peak RSS {:.1} MiB",
            f.apiserver_cpu, f.operator_cpu, f.rss_mib
        );
        if let Some(a) = &f.after {
            println!(
                "  drift repair, 50 deleted bindings: median {:.1} ms, worst {:.1} ms",
                a.repair_median_ms, a.repair_worst_ms
            );
            println!(
                "  one spec change: {:.1} ms to effect, {:.0} requests",
                a.spec_change_ms, a.spec_change_requests
            );
        }
        println!("  requests per object during convergence:");
        for ((verb, resource), count) in &f.requests {
            if count / n as f64 >= 0.01 {
                println!("    {verb:>6} {resource:<34} {:.2}", count / n as f64);
            }
        }
    }
    Ok(())
}

/// The peer's drift repair of 50 deleted bindings and one spec change (another group).
async fn peer_after(client: &kube::Client, defs: &Api<DynamicObject>) -> anyhow::Result<After> {
    let names: Vec<String> = Api::<ClusterRoleBinding>::all(client.clone())
        .list_metadata(&ListParams::default().labels("rbac-manager=reactiveops"))
        .await?
        .items
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .take(50)
        .collect();
    let (median, worst) = drift(client, |i| names[i].clone()).await?;
    let before_change = apiserver_requests(client).await?;
    let new_group = format!("{SEED_PREFIX}{}", guid(11, 1));
    let target = names[0].clone();
    let def = names_owner(client, &target).await?;
    let started_change = Instant::now();
    let patch = serde_json::json!({ "rbacBindings": rbac_bindings(&new_group) });
    defs.patch(&def, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let change = until_subject(client, &target, &new_group, started_change).await?;
    tokio::time::sleep(SETTLE).await;
    let change_requests: f64 = delta(&before_change, &apiserver_requests(client).await?)
        .values()
        .sum();
    Ok(After {
        repair_median_ms: median,
        repair_worst_ms: worst,
        spec_change_ms: change,
        spec_change_requests: change_requests,
    })
}

/// The RBACDefinition that owns the binding `name`.
async fn names_owner(client: &kube::Client, name: &str) -> anyhow::Result<String> {
    let crb = Api::<ClusterRoleBinding>::all(client.clone())
        .get(name)
        .await?;
    crb.metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|o| o.name)
        .ok_or_else(|| anyhow::anyhow!("{name} has no owner"))
}
