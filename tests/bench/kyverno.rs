//! `make bench BENCH_ARGS=--kyverno` (and the end of `--selectors`): "K10 basic in every team
//! namespace" done by groupbinder and by Kyverno's `generate` rule, each on a control plane of its
//! own, one run each: 2,000 namespaces labelled `team: t<i mod 200>`, 200 teams, team t's group
//! bound to ClusterRole `k10-basic` in team t's namespaces.
//!
//! Kyverno is the pinned v1.19.1 (`tools/kyverno`, built by `make kyverno`), its admission and
//! background controllers run out of cluster against the test API server (`--serverIP`: the API
//! server calls its webhooks on loopback, with the CA Kyverno makes itself), with the Helm chart's
//! default resource filters and the permissions its chart gives the background controller for
//! what it generates. Its form is one ClusterPolicy per team, `synchronize: true` and
//! `generateExisting: true`: the idiomatic one, since the team's group object ID cannot be
//! derived from the label (one policy for every team would need a lookup table and a context
//! entry per namespace event).
//!
//! Measured for both: the time to all RoleBindings of the existing namespaces (and whether each
//! names the right group); then, 10 times each, a namespace created later, a relabel to another
//! team (the new RoleBinding, and the old one gone, or that it never goes), a namespace that
//! loses the label, a hand-deleted RoleBinding; kube-apiserver and controller CPU seconds and
//! peak RSS; requests by verb; and the objects each stores for its own bookkeeping.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use groupbinder_api::AzureGroupBinding;
use groupbinder_e2e::{apiserver_requests, install_crd, install_k10};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use serde_json::json;

use super::selectors::{SCALES, Scale, create_namespaces, spec, team_group};
use super::{CONCURRENCY, cpu_seconds, median, rss_kib, run_all};

/// Each probe is done this many times, one at a time.
const PROBES: usize = 10;
/// How long a probe waits for its effect before it counts as "never".
const PATIENCE: Duration = Duration::from_secs(30);
/// After the probes, how long a RoleBinding that never went is given to go, once more.
const LAST_CHANCE: Duration = Duration::from_secs(60);
/// How long either tool may take for the existing namespaces (a stall is a result).
const EXISTING_ALLOWANCE: Duration = Duration::from_secs(1200);
/// Kyverno's namespace and service accounts (as its chart names them).
const KYVERNO_NAMESPACE: &str = "kyverno";
const ADMISSION_SA: &str = "kyverno-admission-controller";
const BACKGROUND_SA: &str = "kyverno-background-controller";
/// What a tool may store for its own bookkeeping: (group, version, plural), counted from before
/// it starts to the end.
const STORED: [(&str, &str, &str); 11] = [
    ("", "v1", "events"),
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("coordination.k8s.io", "v1", "leases"),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
    ),
    ("kyverno.io", "v2", "updaterequests"),
    ("reports.kyverno.io", "v1", "ephemeralreports"),
    ("reports.kyverno.io", "v1", "clusterephemeralreports"),
    ("wgpolicyk8s.io", "v1alpha2", "policyreports"),
    ("wgpolicyk8s.io", "v1alpha2", "clusterpolicyreports"),
];
/// The resource filters of Kyverno's Helm chart (`config.resourceFilters`), but for the entries
/// that name the chart's own objects, which this install does not have.
const RESOURCE_FILTERS: &str = "[Event,*,*][*/*,kube-system,*][*/*,kube-public,*][*/*,kube-node-lease,*][Node,*,*][Node/?*,*,*][APIService,*,*][APIService/?*,*,*][TokenReview,*,*][SubjectAccessReview,*,*][SelfSubjectAccessReview,*,*][Binding,*,*][Pod/binding,*,*][ReplicaSet,*,*][ReplicaSet/?*,*,*][EphemeralReport,*,*][ClusterEphemeralReport,*,*]";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Groupbinder,
    Kyverno,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Groupbinder => "groupbinder",
            Tool::Kyverno => "Kyverno",
        }
    }

    /// The name of team `team`'s RoleBinding in each of its namespaces.
    fn binding(self, team: usize) -> String {
        match self {
            Tool::Groupbinder => format!("team-{team}:k10-basic"),
            Tool::Kyverno => format!("team-{team}-k10-basic"),
        }
    }
}

/// A child process killed when dropped.
struct Process {
    name: &'static str,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes of the tool under test: groupbinder's operator, or Kyverno's two controllers.
enum Running {
    Groupbinder(groupbinder_e2e::OperatorProcess),
    Kyverno(Vec<Process>),
}

impl Running {
    fn pids(&self) -> Vec<(&'static str, u32)> {
        match self {
            Running::Groupbinder(operator) => vec![("groupbinder", operator.id())],
            Running::Kyverno(processes) => {
                processes.iter().map(|p| (p.name, p.child.id())).collect()
            }
        }
    }
}

/// One tool's figures: the table's cells in row order, and the lines printed below it.
struct Figures {
    cells: Vec<(&'static str, String)>,
    notes: Vec<String>,
}

/// Runs both and prints the table.
pub async fn run() -> anyhow::Result<()> {
    // `--namespaces N --teams T` for a smaller (or larger) try; the figures are for the default.
    let scale = Scale {
        namespaces: super::arg("--namespaces", SCALES[0].namespaces),
        teams: super::arg("--teams", SCALES[0].teams),
    };
    anyhow::ensure!(
        scale.teams >= PROBES && scale.namespaces >= 3 * PROBES,
        "at least {PROBES} teams and {} namespaces",
        3 * PROBES
    );
    println!(
        "groupbinder beside Kyverno generate: {} namespaces, {} teams, K10's basic role for team t's group in team t's namespaces; {PROBES} of each probe, one at a time, {} s patience",
        scale.namespaces,
        scale.teams,
        PATIENCE.as_secs()
    );
    let ours = run_tool(Tool::Groupbinder, scale).await?;
    let theirs = match run_tool(Tool::Kyverno, scale).await {
        Ok(figures) => figures,
        // A crash or a stall is a result: reported, and groupbinder's column still printed.
        Err(error) => Figures {
            cells: ours
                .cells
                .iter()
                .map(|(row, _)| (*row, "-".to_owned()))
                .collect(),
            notes: vec![format!("Kyverno: failed: {error:#}")],
        },
    };
    let width = ours.cells.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
    println!("\n{:width$}  {:>28}  {:>28}", "", "groupbinder", "Kyverno");
    for ((row, a), (_, b)) in ours.cells.iter().zip(&theirs.cells) {
        println!("{row:width$}  {a:>28}  {b:>28}");
    }
    for note in ours.notes.iter().chain(&theirs.notes) {
        println!("{note}");
    }
    Ok(())
}

async fn run_tool(tool: Tool, scale: Scale) -> anyhow::Result<Figures> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_k10(&client, "k10", "kasten-io").await?;
    create_namespaces(&client, scale, scale.namespaces).await?;
    let apiserver = cp
        .pids()
        .into_iter()
        .find(|(name, _)| *name == "kube-apiserver")
        .map_or(0, |(_, pid)| pid);
    let stored_before = stored(&client).await?;
    let requests_before = apiserver_requests(&client).await?;
    let apiserver_before = cpu_seconds(apiserver);
    let mut cells = Vec::new();
    let mut notes = Vec::new();

    let started = Instant::now();
    let running = match tool {
        Tool::Groupbinder => {
            install_crd(&client).await?;
            let (operator, _) =
                super::logged_operator(&cp, &[("GROUPBINDER_RESYNC_SECONDS", "0")])?;
            // Ready to take objects once its metrics and health port answers.
            while operator.metrics().is_none() {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "no metrics after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Running::Groupbinder(operator)
        }
        Tool::Kyverno => start_kyverno(&cp, &client).await?,
    };
    cells.push((
        "ready to take objects",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    ));

    // The teams' objects, all at once; then until every existing namespace has its RoleBinding.
    let started = Instant::now();
    apply_teams(tool, &client, scale).await?;
    let (present, wrong) = loop {
        let (present, wrong) = existing(tool, &client, scale).await?;
        if present == scale.namespaces || started.elapsed() > EXISTING_ALLOWANCE {
            break (present, wrong);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let took = started.elapsed().as_secs_f64();
    cells.push((
        "all RoleBindings, existing namespaces",
        if present == scale.namespaces {
            format!("{took:.2} s")
        } else {
            format!("{present} of {} after {took:.0} s", scale.namespaces)
        },
    ));
    cells.push(("  of them naming a wrong group", wrong.to_string()));

    let rbs = |ns: &str| Api::<RoleBinding>::namespaced(client.clone(), ns);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let has = |ns: String, name: String| {
        let api = rbs(&ns);
        async move { Ok::<_, anyhow::Error>(api.get_opt(&name).await?.is_some()) }
    };

    // A namespace created later, for team p.
    let mut times = Vec::new();
    for p in 0..PROBES {
        let ns = format!("late-{p}");
        let object: Namespace = serde_json::from_value(
            json!({"metadata": {"name": ns, "labels": {"team": format!("t{p}")}}}),
        )?;
        let started = Instant::now();
        namespaces.create(&PostParams::default(), &object).await?;
        times.push(until(started, || has(ns.clone(), tool.binding(p))).await?);
    }
    cells.push(("namespace created later", summary(&times)));

    // A relabel to the next team: the new team's RoleBinding, and the old one's gone.
    let (mut new, mut gone, mut left) = (Vec::new(), Vec::new(), Vec::new());
    for p in 0..PROBES {
        let i = 3 * p;
        let (old, next) = (scale.team_of(i), (scale.team_of(i) + 1) % scale.teams);
        let ns = format!("app-{i}");
        let patch = json!({"metadata": {"labels": {"team": format!("t{next}")}}});
        let started = Instant::now();
        namespaces
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        new.push(until(started, || has(ns.clone(), tool.binding(next))).await?);
        let went = until(started, || {
            let has = has(ns.clone(), tool.binding(old));
            async move { Ok(!has.await?) }
        })
        .await?;
        if went.is_none() {
            left.push((ns, tool.binding(old)));
        }
        gone.push(went);
    }
    cells.push(("relabel: new team's RoleBinding", summary(&new)));
    cells.push(("relabel: old team's RoleBinding gone", summary(&gone)));

    // A namespace that loses the label: its RoleBinding gone.
    let mut times = Vec::new();
    for p in 0..PROBES {
        let i = 3 * p + 2;
        let ns = format!("app-{i}");
        let patch = json!({"metadata": {"labels": {"team": null}}});
        let started = Instant::now();
        namespaces
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let binding = tool.binding(scale.team_of(i));
        let went = until(started, || {
            let has = has(ns.clone(), binding.clone());
            async move { Ok(!has.await?) }
        })
        .await?;
        if went.is_none() {
            left.push((ns, binding));
        }
        times.push(went);
    }
    cells.push(("label removed: RoleBinding gone", summary(&times)));

    // A hand-deleted RoleBinding: back.
    let mut times = Vec::new();
    for p in 0..PROBES {
        let i = 3 * p + 1;
        let ns = format!("app-{i}");
        let binding = tool.binding(scale.team_of(i));
        let started = Instant::now();
        rbs(&ns).delete(&binding, &DeleteParams::default()).await?;
        // Seen gone first (or already back: then the first look below answers at once).
        times.push(until(started, || has(ns.clone(), binding.clone())).await?);
    }
    cells.push(("hand-deleted RoleBinding back", summary(&times)));

    // RoleBindings that never went, given once more LAST_CHANCE.
    if !left.is_empty() {
        tokio::time::sleep(LAST_CHANCE).await;
        let mut still = 0;
        for (ns, binding) in &left {
            if has(ns.clone(), binding.clone()).await? {
                still += 1;
            }
        }
        notes.push(format!(
            "{}: {} RoleBindings not gone after {} s; {still} still there {} s later",
            tool.name(),
            left.len(),
            PATIENCE.as_secs(),
            LAST_CHANCE.as_secs()
        ));
    }

    // Costs over the whole run, from before the tool started.
    cells.push((
        "kube-apiserver CPU",
        format!("{:.2} s", cpu_seconds(apiserver) - apiserver_before),
    ));
    for (name, pid) in running.pids() {
        notes.push(format!(
            "{}: {name}: CPU {:.2} s, peak RSS {:.1} MiB",
            tool.name(),
            cpu_seconds(pid),
            rss_kib(pid) as f64 / 1024.0
        ));
    }
    let cpu: f64 = running
        .pids()
        .iter()
        .map(|(_, pid)| cpu_seconds(*pid))
        .sum();
    let rss: u64 = running.pids().iter().map(|(_, pid)| rss_kib(*pid)).sum();
    cells.push(("controller CPU (all its processes)", format!("{cpu:.2} s")));
    cells.push((
        "controller peak RSS (all its processes)",
        format!("{:.1} MiB", rss as f64 / 1024.0),
    ));
    let requests = super::peer::delta(&requests_before, &apiserver_requests(&client).await?);
    let total: f64 = requests.values().sum();
    cells.push(("API requests", format!("{total:.0}")));
    let mut by_count: Vec<_> = requests.into_iter().collect();
    by_count.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = by_count
        .iter()
        .take(10)
        .map(|((verb, resource), n)| format!("{verb} {resource} {n:.0}"))
        .collect();
    notes.push(format!(
        "{}: requests, most first: {}",
        tool.name(),
        top.join(", ")
    ));
    let stored_after = stored(&client).await?;
    let grown: Vec<String> = stored_after
        .iter()
        .filter_map(|(resource, after)| {
            let before = stored_before.get(resource).copied().unwrap_or(0);
            (*after != before).then(|| format!("{resource} {before} -> {after}"))
        })
        .collect();
    let added: i64 = stored_after
        .iter()
        .map(|(r, after)| *after as i64 - stored_before.get(r).copied().unwrap_or(0) as i64)
        .sum();
    cells.push(("bookkeeping objects stored (net)", added.to_string()));
    notes.push(format!(
        "{}: objects besides the RoleBindings, at the end: {}",
        tool.name(),
        if grown.is_empty() {
            "none changed".to_owned()
        } else {
            grown.join(", ")
        }
    ));
    drop(running);
    drop(cp);
    Ok(Figures { cells, notes })
}

/// Milliseconds from `started` until `done` holds (checked every 10 ms); `None` after
/// [`PATIENCE`].
async fn until<F, Fut>(started: Instant, mut done: F) -> anyhow::Result<Option<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    loop {
        if done().await? {
            return Ok(Some(started.elapsed().as_secs_f64() * 1000.0));
        }
        if started.elapsed() > PATIENCE {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// "median M ms, worst W ms", and how many never happened within the patience.
fn summary(times: &[Option<f64>]) -> String {
    let seen: Vec<f64> = times.iter().flatten().copied().collect();
    let never = times.len() - seen.len();
    let mut text = if seen.is_empty() {
        "never".to_owned()
    } else {
        let worst = seen.iter().copied().fold(0.0, f64::max);
        format!("{:.0} ms, worst {worst:.0} ms", median(seen))
    };
    if never > 0 {
        text.push_str(&format!("; {never} of {} never", times.len()));
    }
    text
}

/// How many existing namespaces `app-i` hold their team's RoleBinding, and how many RoleBindings
/// of the tool's name name another group or role.
async fn existing(
    tool: Tool,
    client: &kube::Client,
    scale: Scale,
) -> anyhow::Result<(usize, usize)> {
    let all = Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let (mut present, mut wrong) = (0, 0);
    for rb in all.items {
        let ns = rb.metadata.namespace.as_deref().unwrap_or_default();
        let Some(i) = ns
            .strip_prefix("app-")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let team = scale.team_of(i);
        if rb.metadata.name.as_deref() == Some(tool.binding(team).as_str()) {
            present += 1;
            let subjects = rb.subjects.unwrap_or_default();
            let right = rb.role_ref.name == "k10-basic"
                && subjects.len() == 1
                && subjects[0].kind == "Group"
                && subjects[0].name == team_group(team);
            if !right {
                wrong += 1;
            }
        }
    }
    Ok((present, wrong))
}

/// Team t's object: an AzureGroupBinding, or a ClusterPolicy generating the RoleBinding.
async fn apply_teams(tool: Tool, client: &kube::Client, scale: Scale) -> anyhow::Result<()> {
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    let gvk = GroupVersionKind::gvk("kyverno.io", "v1", "ClusterPolicy");
    let policies: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    run_all(scale.teams, CONCURRENCY, |t| {
        let (agbs, policies) = (agbs.clone(), policies.clone());
        async move {
            match tool {
                Tool::Groupbinder => {
                    let agb = AzureGroupBinding::new(&format!("team-{t}"), spec(t));
                    agbs.create(&PostParams::default(), &agb).await?;
                }
                Tool::Kyverno => {
                    let policy: DynamicObject = serde_json::from_value(policy(t))?;
                    policies.create(&PostParams::default(), &policy).await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Team t's ClusterPolicy: a RoleBinding to `k10-basic` for its group in every namespace labelled
/// `team: t<t>`, kept in sync, for namespaces that exist too.
fn policy(team: usize) -> serde_json::Value {
    json!({
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {"name": format!("k10-basic-team-{team}")},
        "spec": {
            "rules": [{
                "name": "k10-basic",
                "match": {"any": [{"resources": {
                    "kinds": ["Namespace"],
                    "selector": {"matchLabels": {"team": format!("t{team}")}},
                }}]},
                "generate": {
                    "generateExisting": true,
                    "synchronize": true,
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "name": Tool::Kyverno.binding(team),
                    "namespace": "{{request.object.metadata.name}}",
                    "data": {
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-basic"},
                        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": team_group(team)}],
                    },
                },
            }],
        },
    })
}

/// Counts, per resource of [`STORED`], the objects stored (0 where the resource does not exist).
async fn stored(client: &kube::Client) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let mut counts = BTreeMap::new();
    for (group, version, plural) in STORED {
        let gvk = GroupVersionKind::gvk(group, version, "");
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let n = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => list.items.len(),
            Err(kube::Error::Api(s)) if s.code == 404 => 0,
            Err(e) => return Err(e.into()),
        };
        counts.insert(plural, n);
    }
    Ok(counts)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Installs Kyverno's CRDs, namespace, service accounts, configuration and the permissions its
/// chart gives for generating RoleBindings, starts its two controllers and waits until its
/// policy webhook is registered.
async fn start_kyverno(cp: &ControlPlane, client: &kube::Client) -> anyhow::Result<Running> {
    let bin = &cp.binaries().dir;
    let version = &cp.binaries().versions.kyverno;
    let crds = bin.join(format!("kyverno-crds-{version}"));
    anyhow::ensure!(
        crds.is_dir(),
        "{} is missing: run `make kyverno` (tools/build-control-plane.sh --kyverno)",
        crds.display()
    );
    let status = cp
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(&crds)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "kubectl apply of Kyverno's CRDs: {status}"
    );
    let status = cp
        .kubectl()
        .args([
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=120s",
        ])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "Kyverno's CRDs not established: {status}");
    groupbinder_e2e::ensure_namespace(client, KYVERNO_NAMESPACE).await?;
    let apply = |value: serde_json::Value| async move {
        let object: DynamicObject = serde_json::from_value(value)?;
        let gvk = GroupVersionKind::try_from(
            object
                .types
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no type"))?,
        )?;
        let resource = ApiResource::from_gvk(&gvk);
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match &object.metadata.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&object),
        )
        .await?;
        anyhow::Ok(())
    };
    for sa in [ADMISSION_SA, BACKGROUND_SA] {
        apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": KYVERNO_NAMESPACE}}))
        .await?;
    }
    apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kyverno", "namespace": KYVERNO_NAMESPACE},
        "data": {"resourceFilters": RESOURCE_FILTERS, "generateSuccessEvents": "false",
            "webhooks": "{\"namespaceSelector\": {\"matchExpressions\": [{\"key\":\"kubernetes.io/metadata.name\",\"operator\":\"NotIn\",\"values\":[\"kyverno\"]}]}}"}}))
    .await?;
    apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kyverno-metrics", "namespace": KYVERNO_NAMESPACE}}))
    .await?;
    // What Kyverno's chart has its users add for a generate rule: the background controller
    // manages RoleBindings and may bind the role it names (the admission controller checks it
    // can, by SubjectAccessReview, when a policy is created).
    apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "kyverno:k10"},
        "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
             "verbs": ["bind"], "resourceNames": ["k10-basic"]}]}),
    )
    .await?;
    let subjects: Vec<serde_json::Value> = [ADMISSION_SA, BACKGROUND_SA]
        .iter()
        .map(|sa| json!({"kind": "ServiceAccount", "name": sa, "namespace": KYVERNO_NAMESPACE}))
        .collect();
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kyverno:k10"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kyverno:k10"},
        "subjects": subjects}))
    .await?;

    let webhook = free_port()?;
    let mut processes = Vec::new();
    let mut spawn = |name: &'static str, binary: String, sa: &str, args: Vec<String>| {
        let log = std::fs::File::create(cp.dir().join(format!("{name}.log")))?;
        let child = Command::new(bin.join(binary))
            .arg(format!("--kubeconfig={}", cp.kubeconfig().display()))
            .arg(format!("--metricsPort={}", free_port()?))
            .arg("--controllerRuntimeMetricsAddress=0")
            .arg("--disableLogColor")
            .args(args)
            .env("KYVERNO_NAMESPACE", KYVERNO_NAMESPACE)
            .env("KYVERNO_SERVICEACCOUNT_NAME", sa)
            .env("KYVERNO_DEPLOYMENT", sa)
            .env("KYVERNO_POD_NAME", format!("{sa}-0"))
            .env("KYVERNO_SVC", "kyverno-svc")
            .env("INIT_CONFIG", "kyverno")
            .env("METRICS_CONFIG", "kyverno-metrics")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        processes.push(Process { name, child });
        anyhow::Ok(())
    };
    spawn(
        "kyverno-admission-controller",
        format!("kyverno-{version}"),
        ADMISSION_SA,
        vec![
            format!("--serverIP=127.0.0.1:{webhook}"),
            "--webhookServerHost=127.0.0.1".into(),
            // As its chart names them: the CA and the serving pair Kyverno makes for itself.
            format!("--caSecretName=kyverno-svc.{KYVERNO_NAMESPACE}.svc.kyverno-tls-ca"),
            format!("--tlsSecretName=kyverno-svc.{KYVERNO_NAMESPACE}.svc.kyverno-tls-pair"),
            format!("--webhookServerPort={webhook}"),
            format!(
                "--backgroundServiceAccountName=system:serviceaccount:{KYVERNO_NAMESPACE}:{BACKGROUND_SA}"
            ),
        ],
    )?;
    spawn(
        "kyverno-background-controller",
        format!("kyverno-background-controller-{version}"),
        BACKGROUND_SA,
        Vec::new(),
    )?;
    // Ready once the policy webhook is registered and answers: a dry-run policy is accepted.
    let gvk = GroupVersionKind::gvk("kyverno.io", "v1", "ClusterPolicy");
    let policies: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let hooks: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
            ),
            "validatingwebhookconfigurations",
        ),
    );
    let started = Instant::now();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe: DynamicObject = serde_json::from_value(policy(0))?;
    loop {
        let registered = hooks
            .get_opt("kyverno-policy-validating-webhook-cfg")
            .await?
            .is_some();
        if registered && policies.create(&dry, &probe).await.is_ok() {
            break;
        }
        for p in &mut processes {
            if let Some(status) = p.child.try_wait()? {
                let log = std::fs::read_to_string(cp.dir().join(format!("{}.log", p.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                anyhow::bail!(
                    "{} exited: {status}; its log, last lines first:\n{}",
                    p.name,
                    tail.join("\n")
                );
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "Kyverno's policy webhook not ready after 3 minutes (logs in {})",
            cp.dir().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Running::Kyverno(processes))
}
