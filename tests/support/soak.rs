//! A randomized soak: a seeded, reproducible history of changes, hand edits and faults against
//! the real control plane, the real operator binary and the Entra ID stand-in, checked all along
//! by a model of its guarantees that shares no code with the operator's `plan` ([`model`]).
//!
//! The roles are the soak's own ClusterRoles, each granting one made-up permission no other role
//! has (`get <role>-witness.soak.groupbinder.test`), so that a SubjectAccessReview answers
//! exactly whether a group holds that role there. Checked ([`checks`]): (a) a grant the model
//! does not allow, held longer than the revocation bound; (b) a grant the model requires,
//! missing longer than the convergence bound; (c) an object that is not groupbinder's, changed
//! or deleted; (d) `Ready=True` on an object whose grants are not all in place, or for a group
//! its spec does not give now; (e) no running replica holding the Lease for longer than leader
//! election promises; (f) `Ready=True` while K10, as its live settings say, would not present
//! the group (another prefix, no groups claim, left out of its allow list); (g) `Ready=True`
//! while the object ID has named no group in Entra ID for longer than the replication window,
//! once the operator could have asked. (d), (f) and (g) are the README's promise: what `Ready`
//! says is what a signed-in member really gets.
//!
//! The bounds count the time since the change while the operator could act: not while the API
//! server or etcd was away, nor while no running replica held the Lease, as the Lease itself
//! shows. A grant only bindings that are not groupbinder's give (by the README's rule:
//! controlled by an AzureGroupBinding, or labelled as groupbinder's and bound to an allowlisted
//! role) is not held against it; nor one in a namespace being deleted, which goes with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::OperatorProcess;
use crate::entra::Entra;
use groupbinder_api::AzureGroupBinding;
use groupbinder_testenv::ControlPlane;

mod checks;
pub mod model;
mod ops;

pub use model::{Grant, Hold, K10, Place, Rng, Spec, World};

/// The soak's roles; the last is never in the allowlist.
pub const ROLES: [&str; 4] = ["soak-a", "soak-b", "soak-c", "soak-x"];
/// The operator's default prefix, and K10's at the start (the operator follows K10's).
pub const DEFAULT_PREFIX: &str = "soak:";
/// The groupPrefix K10's live OIDC settings take in turn.
const K10_PREFIXES: [&str; 2] = ["soak:", "k10:"];
const K10_NAMESPACE: &str = "kasten-io";
const K10_SECRET: &str = "k10-oidc-auth";
const K10_PROVIDER: &str =
    "https://login.microsoftonline.com/00000000-0000-4000-8000-000000000001/v2.0";
/// A group no spec names: what an attacker writes into a managed binding.
pub const INTRUDER: &str = "soak:intruder";
const WITNESS_GROUP: &str = "soak.groupbinder.test";
const NAMES: usize = 6;
const IDS: usize = 5;
const NAMESPACES: usize = 4;
const TEAMS: [&str; 2] = ["a", "b"];
/// A namespace the soak never deletes, for the object that is not groupbinder's.
const FIXED_NAMESPACE: &str = "soak-fixed";
/// An object no operation edits or deletes, naming a group never deleted from Entra ID: its
/// lookups keep the operator's breaker (ten missing answers in a row) closed.
const ANCHOR: &str = "soak-anchor";
/// Beyond the election promise, for a loaded machine, before (e) is recorded.
const ELECTION_SLACK: Duration = Duration::from_secs(5);
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "groupbinder");
const UID_LABEL: &str = "groupbinder.dev/azuregroupbinding-uid";
const OWNER_LABEL: &str = "groupbinder.dev/azuregroupbinding";
/// Marks the bindings the soak took out of groupbinder's hands, for `reset`.
const SQUATTER_LABEL: &str = "soak.groupbinder.test/squatter";
/// The Entra ID tenant of the stand-in.
const TENANT: &str = "50a5e000-0000-4000-8000-00000000e1d0";
/// The replicas' answer TTL and replication window (seconds): short, so that a history sees
/// groups go missing and objects told so.
const ENTRA_TTL: Duration = Duration::from_secs(3);
const ENTRA_WINDOW: Duration = Duration::from_secs(4);
/// How long the operator waits before asking again after a failed lookup (the README's 30 s).
const ENTRA_RETRY: Duration = Duration::from_secs(30);
/// How long past the moment the operator must know that a group is missing (the TTL and the
/// window after it could ask) an object may still say `Ready=True`: when the window closes, the
/// objects naming the ID are reconciled at once.
const ENTRA_BOUND: Duration = Duration::from_secs(10);
/// At most this many groups are missing from Entra ID at once.
const MAX_MISSING: usize = 1;

/// The object ID of the soak's `n`th group.
fn object_id(n: usize) -> String {
    format!("50a50000-0000-4000-8000-{n:012}")
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `groupbinder` binary.
    pub binary: PathBuf,
    /// The seed: the same seed, the same history of operations.
    pub seed: u64,
    /// How long to run operations (then the soak waits for convergence and checks once more).
    pub duration: Duration,
    /// A grant the model does not give may be seen this long (a revocation under load).
    pub revoke_bound: Duration,
    /// A grant the model gives may be missing this long after the last change; `Ready` may be
    /// wrong this long.
    pub converge_bound: Duration,
    /// The replicas' log level (`warn`; `info` shows each election and how long it waited).
    pub log_level: String,
}

/// One broken guarantee.
#[derive(Clone, Debug)]
pub struct Violation {
    /// `(a) kept`, `(b) missing`, `(c) foreign changed`, `(d) ready but missing`,
    /// `(e) no leader`, `(f) ready but K10 would not present it`, `(g) ready but no such group`,
    /// `(h) crashed`, `final`.
    pub kind: &'static str,
    /// The step after which it was first seen.
    pub step: usize,
    /// What.
    pub what: String,
    /// For how long it was seen.
    pub seen_for: Duration,
}

/// What a run did and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Operations done, by kind.
    pub operations: BTreeMap<&'static str, usize>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// SubjectAccessReviews asked.
    pub reviews: usize,
    /// Objects' `Ready=True` checked against the model (per check round).
    pub ready_checks: usize,
    /// Objects seen `Ready=False` (per check round), by reason.
    pub not_ready: BTreeMap<String, usize>,
    /// Replicas that ended by themselves (and were replaced), by exit code: a leader that could
    /// not renew its lease in time stops.
    pub exits: BTreeMap<String, usize>,
    /// Broken guarantees.
    pub violations: Vec<Violation>,
    /// The longest a grant the model does not give was seen.
    pub worst_revocation: Duration,
    /// The longest a grant the model gives was missing.
    pub worst_convergence: Duration,
    /// The longest an object said `Ready=True` wrongly (for (d), (f) or (g)), not a violation.
    pub worst_ready: Duration,
    /// The longest no running replica held the Lease (not counted against the bounds above).
    pub worst_leaderless: Duration,
    /// Grants the model does not give that only bindings no longer groupbinder's gave (by the
    /// rule; re-parented, then the allowlist narrowed; or taken out of its hands): not held
    /// against it.
    pub not_groupbinders: BTreeSet<Grant>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum = |m: &BTreeMap<&str, usize>| m.values().sum::<usize>();
        writeln!(
            f,
            "seed {}: {} operations {:?}; {} faults {:?}; {} SubjectAccessReviews; {} Ready=True checked, Ready=False seen {:?}; replicas that ended by themselves {:?}; worst revocation {:.1} s, worst convergence {:.1} s, worst wrong Ready {:.1} s (outages not counted); longest without a leader {:.1} s; {} grants given only by bindings no longer groupbinder's; {} violations",
            self.seed,
            sum(&self.operations),
            self.operations,
            sum(&self.faults),
            self.faults,
            self.reviews,
            self.ready_checks,
            self.not_ready,
            self.exits,
            self.worst_revocation.as_secs_f64(),
            self.worst_convergence.as_secs_f64(),
            self.worst_ready.as_secs_f64(),
            self.worst_leaderless.as_secs_f64(),
            self.not_groupbinders.len(),
            self.violations.len()
        )?;
        for v in &self.violations {
            writeln!(
                f,
                "  violation {} at step {} (seed {}), seen {:.1} s: {}",
                v.kind,
                v.step,
                self.seed,
                v.seen_for.as_secs_f64(),
                v.what
            )?;
        }
        Ok(())
    }
}

/// What the soak does to Entra ID, and since when the operator could ask it unhindered.
struct EntraState {
    /// The stand-in.
    standin: Entra,
    /// The environment that points the replicas at it.
    env: Vec<(String, String)>,
    /// Groups deleted, since when.
    missing: BTreeMap<String, Instant>,
    /// A fault going on (down, throttled, reads denied) and when it ends.
    fault: Option<(Instant, &'static str)>,
    /// Lookups are unhindered from here on (the last fault's end and the retry after it).
    clear_from: Instant,
}

struct Soak<'a> {
    client: kube::Client,
    cp: &'a ControlPlane,
    kubeconfig: &'a std::path::Path,
    log: PathBuf,
    started: Instant,
    options: &'a Options,
    rng: Rng,
    world: World,
    entra: EntraState,
    /// The running replicas (leader election on), by identity.
    replicas: BTreeMap<String, OperatorProcess>,
    /// Replicas started so far (their identities are `soak-<n>`).
    started_replicas: usize,
    /// When each replica was started, by identity.
    replica_starts: BTreeMap<String, Instant>,
    /// Since when (and after which step) no running replica has held the Lease.
    leaderless_since: Option<(Instant, usize)>,
    /// Since when the current leader has led (its lookups start then), and which it is.
    leading_since: Instant,
    holder: Option<String>,
    /// The current stretch without a leader was already recorded as (e).
    stuck_election: bool,
    /// kube-controller-manager stopped until then.
    kcm_down_until: Option<Instant>,
    /// Namespaces deleted and maybe not gone yet: their grants go with them.
    leaving: BTreeSet<String>,
    /// When the operator could not act (the API server or etcd away, no replica leading):
    /// not counted against the bounds. A stretch without a leader still going on is added by
    /// `credited`.
    outages: Vec<(Instant, Instant)>,
    /// The uid of namespace kube-system, for ownerReferences moved to it.
    kube_system: String,
    report: Report,
    /// Per grant: since when it has been wrong, and the step that was last before.
    wrong: BTreeMap<Grant, (Instant, usize, bool)>,
    /// Per Ready object and what is wrong with it: since when, and the step.
    ready_wrong: BTreeMap<(String, String), (Instant, usize)>,
    /// Every grant ever expected or seen: checked until the end.
    history: BTreeSet<Grant>,
    /// The bindings giving each grant at the last check, for the trace of a violation.
    givers: BTreeMap<Grant, Vec<String>>,
    /// The objects that are not groupbinder's: (kind, namespace, name) → (uid, resourceVersion).
    foreign: BTreeMap<(String, Option<String>, String), (String, String)>,
    last_change: (Instant, usize),
    step: usize,
}

impl Soak<'_> {
    fn op(&mut self, kind: &'static str) {
        *self.report.operations.entry(kind).or_default() += 1;
        self.last_change = (Instant::now(), self.step);
        self.trace(&format!("op {kind}"));
    }

    fn fault(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
        self.trace(&format!("fault {kind}"));
    }

    /// The operator could not act from `from` to `to`.
    fn outage(&mut self, from: Instant, to: Instant) {
        self.outages.push((from, to));
    }

    /// How long from `since` to `now` the operator could act.
    fn credited(&self, since: Instant, now: Instant) -> Duration {
        match self.leaderless_since {
            Some((from, _)) => {
                let mut outages = self.outages.clone();
                outages.push((from, now));
                model::credited(&outages, since, now)
            }
            None => model::credited(&self.outages, since, now),
        }
    }

    /// One line of the trace (`<operator log>.trace`): seconds since the start, step, what;
    /// with the world the model then saw, to replay a violation's history.
    fn trace(&self, what: &str) {
        use std::io::Write as _;
        let path = self.log.with_extension("trace");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(
                file,
                "{:9.3} step {:5} {what} | allowed {:?} K10 {:?} holds {:?} squatted {:?} missing in Entra {:?} roles {:?} namespaces {:?} specs {:?}",
                self.started.elapsed().as_secs_f64(),
                self.step,
                self.world.allowed,
                self.world.k10,
                self.world.holds,
                self.world.squatted,
                self.entra.missing.keys().collect::<Vec<_>>(),
                self.world.roles,
                self.world.namespaces,
                self.world.specs
            );
        }
    }

    /// Starts one more replica (leader election on, the chart's lease duration and resync),
    /// asking the Entra ID stand-in.
    fn start_replica(&mut self) -> anyhow::Result<()> {
        let allowed: Vec<&str> = self.world.allowed.iter().map(String::as_str).collect();
        let allowed = allowed.join(",");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.started_replicas += 1;
        let identity = format!("soak-{}", self.started_replicas);
        let (ttl, window) = (
            ENTRA_TTL.as_secs().to_string(),
            ENTRA_WINDOW.as_secs().to_string(),
        );
        let mut env: Vec<(&str, &str)> = vec![
            ("GROUPBINDER_ALLOWED_ROLES", &allowed),
            ("GROUPBINDER_ALLOW_NON_K10_ROLES", "true"),
            ("GROUPBINDER_DEFAULT_GROUP_PREFIX", DEFAULT_PREFIX),
            ("GROUPBINDER_LOG_LEVEL", &self.options.log_level),
            ("GROUPBINDER_LEADER_ELECTION", "true"),
            ("GROUPBINDER_FOLLOW_K10_GROUP_PREFIX", "true"),
            ("GROUPBINDER_ENTRA_TTL_SECONDS", &ttl),
            ("GROUPBINDER_ENTRA_REPLICATION_WINDOW_SECONDS", &window),
            ("POD_NAME", &identity),
        ];
        env.extend(self.entra.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process =
            OperatorProcess::spawn(&self.options.binary, self.kubeconfig, &env, log.into())?;
        self.replica_starts.insert(identity.clone(), Instant::now());
        self.replicas.insert(identity, process);
        Ok(())
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        let cluster_roles: Api<ClusterRole> = Api::all(self.client.clone());
        for role in ROLES {
            self.create_role(&cluster_roles, role).await?;
        }
        self.world.allowed = ROLES[..3].iter().map(|r| (*r).to_owned()).collect();
        self.world.k10 = K10 {
            readable: true,
            prefix: DEFAULT_PREFIX.to_owned(),
            group_claim: true,
            allow_list: Vec::new(),
        };
        crate::install_k10_oidc(
            &self.client,
            K10_NAMESPACE,
            K10_SECRET,
            &[
                ("provider-url", K10_PROVIDER),
                ("groupClaim", "groups"),
                ("groupPrefix", DEFAULT_PREFIX),
            ],
        )
        .await?;
        for n in 0..=IDS {
            self.entra
                .standin
                .add_group(&object_id(n), &format!("soak group {n}"), true);
        }
        crate::ensure_namespace(&self.client, FIXED_NAMESPACE).await?;
        // Objects that are not groupbinder's, to allowlisted roles: never to be touched.
        let crbs: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let rbs: Api<RoleBinding> = Api::namespaced(self.client.clone(), FIXED_NAMESPACE);
        let binding = |kind: &str, name: &str, namespace: Option<&str>| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "soak-a"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "foreign:team"}]})
        };
        let crb: ClusterRoleBinding =
            serde_json::from_value(binding("ClusterRoleBinding", "soak-foreign", None))?;
        let crb = crbs.create(&PostParams::default(), &crb).await?;
        let rb: RoleBinding = serde_json::from_value(binding(
            "RoleBinding",
            "soak-foreign",
            Some(FIXED_NAMESPACE),
        ))?;
        let rb = rbs.create(&PostParams::default(), &rb).await?;
        self.foreign_is("ClusterRoleBinding", &crb.metadata);
        self.foreign_is("RoleBinding", &rb.metadata);
        self.kube_system = Api::<Namespace>::all(self.client.clone())
            .get("kube-system")
            .await?
            .uid()
            .unwrap_or_default();
        let anchor = Spec {
            id: object_id(IDS),
            prefix: None,
            cluster_roles: vec![ROLES[0].to_owned()],
            roles: Vec::new(),
        };
        let object: AzureGroupBinding = serde_json::from_value(spec_json(ANCHOR, &anchor))?;
        Api::<AzureGroupBinding>::all(self.client.clone())
            .create(&PostParams::default(), &object)
            .await?;
        self.world.specs.insert(ANCHOR.to_owned(), anchor);
        self.start_replica()
    }

    /// Records an object that is not groupbinder's as it is now: never to change.
    fn foreign_is(&mut self, kind: &str, meta: &kube::api::ObjectMeta) {
        self.foreign.insert(
            (
                kind.to_owned(),
                meta.namespace.clone(),
                meta.name.clone().unwrap_or_default(),
            ),
            (
                meta.uid.clone().unwrap_or_default(),
                meta.resource_version.clone().unwrap_or_default(),
            ),
        );
    }

    async fn create_role(&mut self, api: &Api<ClusterRole>, role: &str) -> anyhow::Result<()> {
        let object: ClusterRole = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [{"apiGroups": [WITNESS_GROUP], "resources": [format!("{role}-witness")], "verbs": ["get"]}],
        }))?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        self.world.roles.insert(role.to_owned());
        Ok(())
    }
}

fn spec_json(name: &str, spec: &Spec) -> serde_json::Value {
    let roles: Vec<serde_json::Value> = spec
        .roles
        .iter()
        .map(|(role, place)| match place {
            Place::Namespace(ns) => json!({"name": role, "kind": "ClusterRole", "namespace": ns}),
            Place::Team(team) => json!({"name": role, "kind": "ClusterRole",
                "namespaceSelector": {"matchLabels": {"team": team}}}),
        })
        .collect();
    let mut body = json!({"groupObjectId": spec.id});
    if let Some(prefix) = &spec.prefix {
        body["groupPrefix"] = json!(prefix);
    }
    if !spec.cluster_roles.is_empty() {
        body["clusterRoles"] = json!(spec.cluster_roles);
    }
    if !roles.is_empty() {
        body["roles"] = json!(roles);
    }
    json!({"apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
        "metadata": {"name": name}, "spec": body})
}

/// A role for a spec: now and then the one the allowlist never permits.
fn random_role(rng: &mut Rng) -> String {
    let n = if rng.chance(8) { 3 } else { rng.below(3) };
    ROLES[n].to_owned()
}

/// A random spec: mostly one that can be Ready, so that what `Ready` says is checked often.
fn random_spec(rng: &mut Rng) -> Spec {
    let id = object_id(rng.below(IDS));
    let prefix = match rng.below(10) {
        0 => Some("other:".to_owned()),
        1 | 2 => Some(DEFAULT_PREFIX.to_owned()),
        _ => None,
    };
    let mut cluster_roles: Vec<String> = ROLES[..3]
        .iter()
        .filter(|_| rng.chance(30))
        .map(|r| (*r).to_owned())
        .collect();
    if rng.chance(8) {
        cluster_roles.push(ROLES[3].to_owned());
    }
    let mut roles = Vec::new();
    for _ in 0..rng.below(3) {
        let role = random_role(rng);
        let place = if rng.chance(50) {
            Place::Namespace(format!("soak-ns-{}", rng.below(NAMESPACES)))
        } else {
            Place::Team(TEAMS[rng.below(TEAMS.len())].to_owned())
        };
        if !roles.contains(&(role.clone(), place.clone())) {
            roles.push((role, place));
        }
    }
    if cluster_roles.is_empty() && roles.is_empty() {
        cluster_roles.push(ROLES[rng.below(3)].to_owned());
    }
    Spec {
        id,
        prefix,
        cluster_roles,
        roles,
    }
}

/// Runs one soak against `cp` (which it restarts parts of), its operator's log in `log`.
pub async fn run(cp: &ControlPlane, log: PathBuf, options: &Options) -> anyhow::Result<Report> {
    let standin = Entra::start(TENANT)?;
    let env = standin.env(&cp.dir().join("soak-entra"))?;
    let mut soak = Soak {
        client: cp.client().await?,
        cp,
        kubeconfig: cp.kubeconfig(),
        log,
        options,
        rng: Rng::new(options.seed),
        world: World::default(),
        entra: EntraState {
            standin,
            env,
            missing: BTreeMap::new(),
            fault: None,
            clear_from: Instant::now(),
        },
        replicas: BTreeMap::new(),
        started_replicas: 0,
        replica_starts: BTreeMap::new(),
        leaderless_since: None,
        leading_since: Instant::now(),
        holder: None,
        stuck_election: false,
        kcm_down_until: None,
        leaving: BTreeSet::new(),
        outages: Vec::new(),
        kube_system: String::new(),
        report: Report {
            seed: options.seed,
            ..Report::default()
        },
        wrong: BTreeMap::new(),
        ready_wrong: BTreeMap::new(),
        history: BTreeSet::new(),
        givers: BTreeMap::new(),
        foreign: BTreeMap::new(),
        last_change: (Instant::now(), 0),
        started: Instant::now(),
        step: 0,
    };
    reset(&soak.client).await?;
    soak.setup().await?;
    let started = Instant::now();
    while started.elapsed() < options.duration {
        soak.step += 1;
        soak.act().await?;
        if soak.step.is_multiple_of(3) {
            soak.check(false).await?;
        }
        tokio::time::sleep(Duration::from_millis(100 + soak.rng.below(300) as u64)).await;
    }
    // Quiet: every difference must go within the convergence bound, then none may remain.
    soak.end_faults()?;
    let quiet = Instant::now();
    loop {
        soak.check(false).await?;
        if soak.wrong.is_empty() && soak.ready_wrong.is_empty() && soak.leaderless_since.is_none() {
            break;
        }
        if quiet.elapsed() > options.converge_bound {
            soak.check(true).await?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Cleared while the operator runs: it deletes the bindings of deleted objects at once.
    reset(&soak.client).await?;
    soak.replicas.clear();
    Ok(soak.report)
}

/// Deletes what a soak made (objects, namespaces, roles, foreign bindings) and waits until the
/// objects and their bindings are gone, so that the next seed starts from nothing.
pub async fn reset(client: &kube::Client) -> anyhow::Result<()> {
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    agbs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces
        .list_metadata(&ListParams::default())
        .await?
        .items
    {
        if ns.name_any().starts_with("soak-ns-") {
            let _ = namespaces
                .delete(&ns.name_any(), &DeleteParams::default())
                .await;
        }
    }
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let rbs: Api<RoleBinding> = Api::all(client.clone());
    // The soak's finalizers hold bindings it left behind.
    let release = json!({"metadata": {"finalizers": null}});
    for b in crbs.list_metadata(&ListParams::default()).await?.items {
        if b.metadata.finalizers.is_some() {
            let _ = crbs
                .patch(
                    &b.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&release),
                )
                .await;
        }
    }
    for b in rbs.list_metadata(&ListParams::default()).await?.items {
        if b.metadata.finalizers.is_some() {
            let ns = b.namespace().unwrap_or_default();
            let _ = Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .patch(
                    &b.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&release),
                )
                .await;
        }
    }
    // Bindings moved out of groupbinder's hands (re-parented, then the allowlist narrowed, or
    // squatted) are the soak's to remove.
    for selector in [MANAGED_SELECTOR_LABEL, SQUATTER_LABEL] {
        let labelled = ListParams::default().labels(selector);
        for b in crbs.list(&labelled).await?.items {
            if ROLES.contains(&b.role_ref.name.as_str()) {
                let _ = crbs.delete(&b.name_any(), &DeleteParams::default()).await;
            }
        }
        for b in rbs.list(&labelled).await?.items {
            if ROLES.contains(&b.role_ref.name.as_str()) {
                let ns = b.namespace().unwrap_or_default();
                let _ = Api::<RoleBinding>::namespaced(client.clone(), &ns)
                    .delete(&b.name_any(), &DeleteParams::default())
                    .await;
            }
        }
    }
    let _ = crbs.delete("soak-foreign", &DeleteParams::default()).await;
    let _ = Api::<RoleBinding>::namespaced(client.clone(), FIXED_NAMESPACE)
        .delete("soak-foreign", &DeleteParams::default())
        .await;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for role in ROLES {
        let _ = roles.delete(role, &DeleteParams::default()).await;
    }
    crate::eventually(
        "the soak's objects and bindings gone",
        Duration::from_secs(180),
        || async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let selector = ListParams::default().labels(MANAGED_SELECTOR_LABEL);
            let left = agbs
                .list_metadata(&ListParams::default())
                .await?
                .items
                .len()
                + crbs.list_metadata(&selector).await?.items.len()
                + rbs.list_metadata(&selector).await?.items.len();
            Ok((left == 0).then_some(()))
        },
    )
    .await
}

/// The label selector of groupbinder's bindings.
const MANAGED_SELECTOR_LABEL: &str = "app.kubernetes.io/managed-by=groupbinder";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_specs() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..20 {
            assert_eq!(random_spec(&mut a), random_spec(&mut b));
        }
    }
}
