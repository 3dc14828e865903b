//! `make bench` (N=1000) or `groupbinder-bench --n 5000`: the operator against the API server's
//! write floor, on a real control plane. A benchmark program, not a test: it prints figures, all
//! measured in one run.
//!
//! Per round (median of `--rounds`): the time from creating N AzureGroupBindings (admin profile,
//! so 2N bindings) until every one is Ready, against two floors, each a client writing directly
//! with the same concurrency:
//! - the floor: the same 2N bindings;
//! - the write-set floor: everything the operator's path writes, built by the operator's own code:
//!   the object itself (under a twin of the CRD in another API group, which the operator does not
//!   watch), its bindings, its status and one event.
//!
//! It also times creating the N objects alone (under the twin group): that much of the
//! operator's timed window is the objects' own creation, which no operator can save.
//!
//! Each phase's CPU seconds per process are printed beside it. Then, once: write requests per
//! AzureGroupBinding during convergence and during a forced full resync
//! (`apiserver_request_total`), the operator's peak RSS, drift repair latency over 50 deleted
//! bindings, and spec change to Ready. `--pprof DIR` also writes kube-apiserver CPU profiles of
//! round 1's phases (`go tool pprof -top DIR/operator.pprof`) and the requests by verb.
//!
//! Then, each on control planes of its own: beside rbac-manager (`peer`, `--no-peer` skips it),
//! namespace selectors at 2,000 and 10,000 namespaces (`selectors`) and beside Kyverno's generate
//! rule (`kyverno`; `--no-selectors` skips both, `--no-kyverno` the last). `--selectors`,
//! `--kyverno`, `--peer`, `--deletion`, `--k10-settings` and `--entra` run one part alone.

mod churn;
mod cold;
mod deletion;
mod entra;
mod k10settings;
mod kyverno;
mod peer;
mod selectors;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use groupbinder_api::names::FIELD_MANAGER;
use groupbinder_api::{
    AzureGroupBinding, AzureGroupBindingSpec, NamespacedRole, Plan, RoleKind, Settings, plan,
};
use groupbinder_controller::bench::{Changes, Outcome, Publisher, binding_status, desired_status};
use groupbinder_e2e::{
    OperatorProcess, SEED_PREFIX, apiserver_requests, apiserver_writes, install_crd, install_k10,
    proc_status_kib, ready,
};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, CustomResourceExt, Resource};

/// Requests in flight, for the operator's objects and for the floor alike (client-go's default
/// burst is 10; a well-behaved bulk client uses a few dozen).
const CONCURRENCY: usize = 32;
/// How long the garbage collector takes to see a new CRD (kube-controller-manager's discovery
/// period is 30 s).
const SETTLE_GC: Duration = Duration::from_secs(31);
/// A pause between phases, so that one phase's watch and garbage-collector work is not counted
/// in the next.
const SETTLE: Duration = Duration::from_secs(2);
const WRITES: [&str; 4] = [
    "clusterrolebindings",
    "rolebindings",
    "azuregroupbindings",
    "events",
];

/// The value after `name` on the command line.
fn flag(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

fn arg(name: &str, default: usize) -> usize {
    flag(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Starts a kube-apiserver CPU profile of the next `seconds` into `dir/name.pprof`.
fn profile(
    cp: &ControlPlane,
    dir: &std::path::Path,
    name: &str,
    seconds: u64,
) -> anyhow::Result<std::process::Child> {
    let out = std::fs::File::create(dir.join(format!("{name}.pprof")))?;
    Ok(cp
        .kubectl()
        .args(["get", "--raw"])
        .arg(format!("/debug/pprof/profile?seconds={seconds}"))
        .stdout(out)
        .spawn()?)
}

fn guid(round: usize, n: usize) -> String {
    format!("00000000-0000-4000-{round:04x}-{n:012x}")
}

/// K10's admin and ns-admin: the 2 bindings per object the figures below are about (the admin
/// profile adds mc-admin since; naming the two keeps the figures comparable).
fn spec(round: usize, n: usize) -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: guid(round, n),
        group_prefix: Some(SEED_PREFIX.into()),
        cluster_roles: Some(vec!["k10-admin".into()]),
        roles: Some(vec![NamespacedRole::in_namespace(
            "k10-ns-admin",
            "kasten-io",
            RoleKind::Role,
        )]),
        ..Default::default()
    }
}

/// The AzureGroupBinding CRD under another API group, which the operator does not watch: the
/// write-set floor writes its objects there, with the same schema and validation rules.
const TWIN_GROUP: &str = "twin.groupbinder.dev";

fn twin_crd() -> CustomResourceDefinition {
    let mut crd = AzureGroupBinding::crd();
    crd.spec.group = TWIN_GROUP.into();
    crd.metadata.name = Some(format!("{}.{TWIN_GROUP}", crd.spec.names.plural));
    crd
}

/// AzureGroupBindings under the twin group.
struct Twins {
    resource: ApiResource,
    api: Api<DynamicObject>,
}

impl Twins {
    fn new(client: &kube::Client) -> Self {
        let gvk = GroupVersionKind::gvk(TWIN_GROUP, "v1alpha1", "AzureGroupBinding");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "azuregroupbindings");
        let api = Api::all_with(client.clone(), &resource);
        Twins { resource, api }
    }

    /// Creates `agb` under the twin group.
    async fn create(&self, agb: &AzureGroupBinding) -> anyhow::Result<DynamicObject> {
        let name = agb.metadata.name.as_deref().unwrap_or_default();
        let object =
            DynamicObject::new(name, &self.resource).data(serde_json::json!({"spec": agb.spec}));
        Ok(self.api.create(&PostParams::default(), &object).await?)
    }
}

/// Takes groupbinder's label off the planned bindings, so that the operator neither caches them
/// nor is woken by them, as with any binding it did not make; ownerReferences point to
/// `owner_api_version`.
fn not_the_operators(plan: &mut Plan, owner_api_version: &str) {
    for meta in plan
        .cluster_role_bindings
        .iter_mut()
        .map(|b| &mut b.object.metadata)
        .chain(
            plan.role_bindings
                .iter_mut()
                .map(|b| &mut b.object.metadata),
        )
    {
        meta.labels = None;
        for owner in meta.owner_references.iter_mut().flatten() {
            owner.api_version = owner_api_version.into();
        }
    }
}

/// Creates the planned bindings, all at once as a reconcile does.
async fn create_bindings(
    client: &kube::Client,
    plan: &Plan,
    params: &PostParams,
) -> anyhow::Result<()> {
    let crbs = plan.cluster_role_bindings.iter().map(|crb| async move {
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(params, &crb.object)
            .await
            .map(|_| ())
    });
    let rbs = plan.role_bindings.iter().map(|rb| async move {
        let namespace = rb.key.namespace().unwrap_or_default();
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .create(params, &rb.object)
            .await
            .map(|_| ())
    });
    tokio::try_join!(
        futures::future::try_join_all(crbs),
        futures::future::try_join_all(rbs)
    )?;
    Ok(())
}

/// The status the operator gives `agb` once every binding of `plan` is in place.
fn status_of(agb: &AzureGroupBinding, plan: &Plan) -> groupbinder_api::AzureGroupBindingStatus {
    let bindings = (plan.cluster_role_bindings.iter().map(|b| (&b.key, &b.role)))
        .chain(plan.role_bindings.iter().map(|b| (&b.key, &b.role)))
        .map(|(key, role)| binding_status(key, &role.name))
        .collect();
    let outcome = Outcome::bound(plan.group.clone(), bindings, Vec::new());
    desired_status(agb, &outcome, &Time(Timestamp::now()))
}

/// The operator's whole write set for one AzureGroupBinding, written directly: the object
/// itself (under the twin group), its bindings, its status (server-side apply, the operator's
/// field manager) and one event, each built by the operator's own code.
async fn write_directly(
    client: &kube::Client,
    settings: &Settings,
    events: &Publisher,
    twins: &Twins,
    name: &str,
    spec: AzureGroupBindingSpec,
) -> anyhow::Result<()> {
    let twin = &twins.resource;
    let mut agb = AzureGroupBinding::new(name, spec);
    let created = twins.create(&agb).await?;
    agb.metadata.uid = created.metadata.uid.clone();
    agb.metadata.generation = created.metadata.generation;
    let mut plan = plan(&agb, settings, None)?;
    not_the_operators(&mut plan, &twin.api_version);
    create_bindings(client, &plan, &PostParams::default()).await?;
    let status = status_of(&agb, &plan);
    let patch = serde_json::json!({
        "apiVersion": twin.api_version,
        "kind": twin.kind,
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    twins
        .api
        .patch_status(name, &params, &Patch::Apply(patch))
        .await?;
    let mut changes = Changes::default();
    for key in plan.keys() {
        changes.created(&key);
    }
    let event = changes
        .announcement(status.conditions.first())
        .context("becoming Ready is announced")?;
    let regarding = created.object_ref(twin);
    events
        .publish(regarding, event.type_, &event.reason, event.note)
        .await?;
    Ok(())
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

/// The operator binary beside this one with `env` (at log level warn), its log in the control
/// plane's directory: the process, and the log's path.
fn logged_operator(
    cp: &ControlPlane,
    env: &[(&str, &str)],
) -> anyhow::Result<(OperatorProcess, std::path::PathBuf)> {
    let binary = std::env::current_exe()?.with_file_name("groupbinder");
    let mut env = env.to_vec();
    env.push(("GROUPBINDER_LOG_LEVEL", "warn"));
    let log = cp.dir().join("operator.log");
    let file = std::fs::File::create(&log)?;
    let operator = OperatorProcess::spawn(&binary, cp.kubeconfig(), &env, file.into())?;
    Ok((operator, log))
}

fn peak_rss_kib(child: &OperatorProcess) -> u64 {
    rss_kib(child.id())
}

/// The peak resident set size of process `pid` (VmHWM), in KiB.
fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

/// The resident set size of process `pid` now (VmRSS), in KiB.
fn current_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// The label that marks a round's AzureGroupBindings, so that the watch waiting for them lists
/// and receives only those, however many earlier rounds left behind.
const ROUND_LABEL: &str = "bench.groupbinder.dev/round";

/// Creates the `n` AzureGroupBindings of `round`, `<prefix>-<i>` with `spec(round, i)` and the
/// round's label (which [`all_ready`] watches), [`CONCURRENCY`] at a time; returns the seconds.
async fn create_round(
    agbs: &Api<AzureGroupBinding>,
    prefix: &str,
    round: usize,
    n: usize,
) -> anyhow::Result<f64> {
    run_all(n, CONCURRENCY, |i| async move {
        let mut agb = AzureGroupBinding::new(&format!("{prefix}-{i}"), spec(round, i));
        agb.metadata.labels = Some([(ROUND_LABEL.to_owned(), round.to_string())].into());
        agbs.create(&PostParams::default(), &agb).await?;
        Ok(())
    })
    .await
}

/// Waits until the `n` objects of `round` are Ready for their generation, from a watch (a list
/// every few milliseconds would load the API server the operator is measured on).
async fn all_ready(api: &Api<AzureGroupBinding>, round: usize, n: usize) -> anyhow::Result<()> {
    let mut done = std::collections::HashSet::new();
    let config = watcher::Config::default().labels(&format!("{ROUND_LABEL}={round}"));
    let mut events = std::pin::pin!(watcher(api.clone(), config).applied_objects());
    while let Some(agb) = events.try_next().await? {
        if ready(&agb)
            .is_some_and(|c| c.status == "True" && c.observed_generation == agb.metadata.generation)
        {
            done.insert(agb.metadata.name.clone());
        }
        if done.len() >= n {
            return Ok(());
        }
    }
    anyhow::bail!("the watch ended")
}

/// Requests per AzureGroupBinding between two readings of `apiserver_request_total`.
fn print_requests(
    before: &std::collections::BTreeMap<(String, String), f64>,
    after: &std::collections::BTreeMap<(String, String), f64>,
    n: usize,
) {
    println!("requests per AzureGroupBinding during convergence, by verb and resource:");
    for ((verb, resource), count) in after {
        let delta = count
            - before
                .get(&(verb.clone(), resource.clone()))
                .unwrap_or(&0.0);
        if delta / n as f64 >= 0.01 {
            println!("  {verb:>6} {resource:<40} {:.2}", delta / n as f64);
        }
    }
}

/// Deletes 50 ClusterRoleBindings named by `name(i)` one by one, each waited for (up to `limit`)
/// until it is back under another uid; returns the milliseconds each took.
async fn drift(
    client: &kube::Client,
    limit: Duration,
    name: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<f64>> {
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let mut times = Vec::new();
    for i in 0..50 {
        let name = name(i);
        let old = crbs.get(&name).await?.metadata.uid;
        let started = Instant::now();
        crbs.delete(&name, &DeleteParams::default()).await?;
        while crbs
            .get_opt(&name)
            .await?
            .is_none_or(|b| b.metadata.uid == old)
        {
            anyhow::ensure!(
                started.elapsed() < limit,
                "{name} not restored in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}

/// Runs `job(0..n)`, `concurrency` at once; returns the seconds it took.
async fn run_all<F, Fut>(n: usize, concurrency: usize, job: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(job)
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// One phase's CPU seconds per process and, with `--pprof`, a kube-apiserver CPU profile of its
/// first `seconds`.
struct Probe {
    cpu: Cpu,
    profiler: Option<std::process::Child>,
}

impl Probe {
    fn start(
        cp: &ControlPlane,
        operator: &OperatorProcess,
        pprof: Option<&std::path::Path>,
        phase: &str,
        seconds: u64,
    ) -> anyhow::Result<Self> {
        let profiler = pprof
            .map(|dir| profile(cp, dir, phase, seconds))
            .transpose()?;
        Ok(Probe {
            cpu: Cpu::now(cp, operator),
            profiler,
        })
    }

    /// CPU seconds per process since the start (the profile is waited for afterwards).
    fn finish(self) -> anyhow::Result<String> {
        let cpu = self.cpu.since();
        if let Some(mut profiler) = self.profiler {
            profiler.wait()?;
        }
        Ok(cpu)
    }
}

/// CPU seconds (user and system) a process has used so far; 0 when it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}

/// CPU seconds per process: the control plane's, the operator's and this benchmark's.
struct Cpu(Vec<(&'static str, u32, f64)>);

impl Cpu {
    fn now(cp: &ControlPlane, operator: &OperatorProcess) -> Self {
        let pids = cp.pids().into_iter().chain([
            ("groupbinder", operator.id()),
            ("benchmark", std::process::id()),
        ]);
        Cpu(pids
            .map(|(name, pid)| (name, pid, cpu_seconds(pid)))
            .collect())
    }

    /// "name seconds" for each process, since `self`.
    fn since(&self) -> String {
        self.0
            .iter()
            .map(|(name, pid, before)| format!("{name} {:.2}", cpu_seconds(*pid) - before))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--selectors") {
        return selectors::run().await;
    }
    if std::env::args().any(|a| a == "--kyverno") {
        return kyverno::run().await;
    }
    if std::env::args().any(|a| a == "--deletion") {
        return deletion::run().await;
    }
    if std::env::args().any(|a| a == "--k10-settings") {
        return k10settings::run().await;
    }
    if std::env::args().any(|a| a == "--entra") {
        return entra::run().await;
    }
    if std::env::args().any(|a| a == "--peer") {
        return peer::run(arg("--n", 1000)).await;
    }
    if let Some(n) = flag("--cold-start").and_then(|v| v.parse().ok()) {
        return cold::run(n).await;
    }
    let n = arg("--n", 1000);
    let rounds = arg("--rounds", 3);
    // `--pprof DIR`: where to write kube-apiserver CPU profiles of round 1's phases.
    let pprof = flag("--pprof").map(std::path::PathBuf::from);
    let mut options = Options::default();
    if let Some(dir) = &pprof {
        std::fs::create_dir_all(dir)?;
        options.extra_apiserver_args.push("--profiling=true".into());
    }
    let cp = ControlPlane::start(options).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    println!(
        "groupbinder benchmark: N={n} AzureGroupBindings ({} bindings), {rounds} rounds, concurrency {CONCURRENCY}",
        2 * n
    );

    groupbinder_e2e::apply_crd(&client, &twin_crd()).await?;
    // The garbage collector looks for new resources every 30 s; until it has seen both CRDs it
    // retries every ownerReference to them, which would load the phases measured below.
    tokio::time::sleep(SETTLE_GC).await;
    let settings = Settings::for_k10("k10", "kasten-io", "");
    let events = Publisher::new(client.clone(), "groupbinder-bench", "bench");
    let twins = Twins::new(&client);
    let (mut operator_times, mut floor_times) = (Vec::new(), Vec::new());
    let (mut objects_times, mut set_times) = (Vec::new(), Vec::new());
    let mut writes_per_agb = 0.0;
    let mut first_round_rss = 0;
    let child = operator(&cp, 0)?;
    for round in 0..rounds {
        let thousands = (n / 1000).max(1) as u64;
        let probe = |phase: &str, seconds| {
            let pprof = pprof.as_deref().filter(|_| round == 0);
            Probe::start(&cp, &child, pprof, phase, seconds)
        };

        // The floor: the same 2N bindings, created directly.
        let cpu = probe("floor", thousands)?;
        let floor = run_all(n, CONCURRENCY / 2, |i| {
            let (client, settings) = (&client, &settings);
            async move {
                let agb = AzureGroupBinding::new(&format!("floor-{round}-{i}"), spec(round, i));
                let mut plan = plan(&agb, settings, None)?;
                not_the_operators(&mut plan, "");
                create_bindings(client, &plan, &PostParams::default()).await
            }
        })
        .await?;
        floor_times.push(floor);
        let floor_cpu = cpu.finish()?;
        tokio::time::sleep(SETTLE).await;

        // The objects alone: the part of the operator's timed window no operator can save.
        let cpu = probe("objects", thousands)?;
        let objects = run_all(n, CONCURRENCY / 2, |i| {
            let twins = &twins;
            async move {
                let agb = AzureGroupBinding::new(&format!("object-{round}-{i}"), spec(round, i));
                twins.create(&agb).await.map(|_| ())
            }
        })
        .await?;
        objects_times.push(objects);
        let objects_cpu = cpu.finish()?;
        tokio::time::sleep(SETTLE).await;

        // The write-set floor: everything the operator writes, written directly.
        let cpu = probe("write-set", 3 * thousands)?;
        let set = run_all(n, CONCURRENCY / 2, |i| {
            let (client, settings, events, twins) = (&client, &settings, &events, &twins);
            async move {
                let name = format!("direct-{round}-{i}");
                write_directly(client, settings, events, twins, &name, spec(round, i)).await
            }
        })
        .await?;
        set_times.push(set);
        let set_cpu = cpu.finish()?;
        tokio::time::sleep(SETTLE).await;

        // The operator: N AzureGroupBindings at once, until every one is Ready.
        let before = apiserver_writes(&client, &WRITES).await?;
        let requests_before = apiserver_requests(&client).await?;
        let cpu = probe("operator", 4 * thousands)?;
        let started = Instant::now();
        let prefix = format!("bench-{round}");
        let create = create_round(&agbs, &prefix, round, n);
        let (created, ready) = tokio::join!(create, all_ready(&agbs, round, n));
        created?;
        ready?;
        let op = started.elapsed().as_secs_f64();
        operator_times.push(op);
        let operator_cpu = cpu.finish()?;
        // Everything written for this round, AzureGroupBinding creates included, per object.
        writes_per_agb = (apiserver_writes(&client, &WRITES).await? - before) / n as f64;
        if pprof.is_some() && round == 0 {
            print_requests(&requests_before, &apiserver_requests(&client).await?, n);
        }
        let rss = peak_rss_kib(&child);
        if round == 0 {
            first_round_rss = rss;
        }
        println!(
            "round {}: operator {op:.2} s, floor {floor:.2} s (ratio {:.2}), write-set floor {set:.2} s (ratio {:.2}), operator peak RSS so far {:.1} MiB ({} objects)",
            round + 1,
            op / floor,
            op / set,
            rss as f64 / 1024.0,
            n * (round + 1)
        );
        println!("  CPU seconds, floor:           {floor_cpu}");
        println!(
            "  objects alone {objects:.2} s ({:.2} of the floor), CPU seconds: {objects_cpu}",
            objects / floor
        );
        println!("  CPU seconds, write-set floor: {set_cpu}");
        println!("  CPU seconds, operator:        {operator_cpu}");
        tokio::time::sleep(SETTLE).await;
    }
    // The write-set floor's bindings are all still there (no garbage collection mistook their
    // owners for gone), so each round really wrote what the operator writes.
    let direct = Api::<RoleBinding>::namespaced(client.clone(), "kasten-io")
        .list_metadata(&Default::default())
        .await?
        .items
        .iter()
        .filter(|b| {
            b.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("direct-"))
        })
        .count();
    anyhow::ensure!(
        direct == n * rounds,
        "{direct} of the write-set floor's {} RoleBindings are left",
        n * rounds
    );
    // Many roles and namespaces changing while the objects exist.
    churn::run(&client, &child, n * rounds).await?;
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
    let repairs = drift(&client, Duration::from_secs(30), |i| {
        format!("bench-0-{i}:k10-admin")
    })
    .await?;
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

    let (op, floor, set) = (
        median(operator_times),
        median(floor_times),
        median(set_times),
    );
    let objects = median(objects_times);
    let worst = repairs.iter().copied().fold(0.0, f64::max);
    println!(
        "\nN={n}: operator {op:.2} s, floor {floor:.2} s, ratio {:.2} (medians of {rounds} rounds)",
        op / floor
    );
    println!(
        "creating the N objects alone {objects:.2} s: {:.2} of the floor, inside every operator's timed window",
        objects / floor
    );
    println!(
        "write-set floor (the operator's own writes, made directly) {set:.2} s: operator / write-set floor {:.2}",
        op / set
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
    drop(cp);

    // The peer users would pick instead, beside groupbinder on a control plane of their own.
    if std::env::args().any(|a| a == "--no-peer") {
        return Ok(());
    }
    println!("\n--- beside rbac-manager (--no-peer to skip) ---");
    peer::run(n).await?;
    if std::env::args().any(|a| a == "--no-selectors") {
        return Ok(());
    }
    println!(
        "\n--- namespace selectors at two sizes, then beside Kyverno (--no-selectors to skip) ---"
    );
    selectors::run().await
}
