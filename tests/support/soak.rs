//! A randomized soak: a seeded, reproducible history of changes, hand edits and faults against
//! the real control plane and the real operator binary, checked all along by a model of its
//! guarantees that shares no code with the operator's `plan`.
//!
//! The model (from the README): an object grants `<groupPrefix or K10's live one><groupObjectId>`
//! each cluster role it names cluster-wide, and each namespaced entry in its namespace or in every
//! namespace its selector selects — only roles the allowlist permits, only while the role and the
//! namespace exist. Nothing else: no other subject, no other role, nowhere else.
//!
//! The roles are the soak's own ClusterRoles, each granting one made-up permission no other role
//! has (`get <role>-witness.soak.groupbinder.test`), so that a SubjectAccessReview answers
//! exactly whether a group holds that role there. Checked: (a) a grant the model does not give,
//! held longer than the revocation bound; (b) a grant the model gives, missing longer than the
//! convergence bound; (c) an object that is not groupbinder's, changed or deleted; (d)
//! `Ready=True` on an object whose grants are not all in place, longer than the convergence bound.
//!
//! The bounds count the time since the change while the operator could act: not while the API
//! server or etcd was away, nor while no running replica held the Lease, as the Lease itself
//! shows. How long that lasts is measured, not assumed: a standby waits a lease duration from
//! when it first saw the dead leader's record, so a replacement started late waits longer. A
//! stretch without a leader longer than that promise is a violation of its own, (e). A grant only bindings that are not groupbinder's give (by the README's rule:
//! controlled by an AzureGroupBinding, or labelled as groupbinder's and bound to an allowlisted
//! role) is not held against it; nor one in a namespace being deleted, which goes with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::{OperatorProcess, Who};
use groupbinder_api::AzureGroupBinding;
use groupbinder_testenv::ControlPlane;

/// The soak's roles; the last is never in the allowlist.
pub const ROLES: [&str; 4] = ["soak-a", "soak-b", "soak-c", "soak-x"];
/// The operator's default prefix, and K10's at the start (the operator follows K10's).
pub const DEFAULT_PREFIX: &str = "soak:";
/// The groupPrefix K10's live OIDC settings take in turn.
const K10_PREFIXES: [&str; 2] = ["soak:", "k10:"];
const K10_NAMESPACE: &str = "kasten-io";
const K10_SECRET: &str = "k10-oidc-auth";
/// A group no spec names: what an attacker writes into a managed binding.
pub const INTRUDER: &str = "soak:intruder";
const WITNESS_GROUP: &str = "soak.groupbinder.test";
const NAMES: usize = 6;
const IDS: usize = 5;
const NAMESPACES: usize = 4;
const TEAMS: [&str; 2] = ["a", "b"];
/// A namespace the soak never deletes, for the object that is not groupbinder's.
const FIXED_NAMESPACE: &str = "soak-fixed";
/// The replicas' lease duration (the operator's default, as the chart runs it).
const LEASE: Duration = Duration::from_secs(15);
/// How often a standby asks for the lease (the operator's: a third of the lease duration).
const RETRY: Duration = Duration::from_secs(5);
/// Beyond the election promise, for a loaded machine, before (e) is recorded.
const ELECTION_SLACK: Duration = Duration::from_secs(5);
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "groupbinder");
const UID_LABEL: &str = "groupbinder.dev/azuregroupbinding-uid";

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
    /// A grant the model gives may be missing this long after the last change.
    pub converge_bound: Duration,
    /// The replicas' log level (`warn`; `info` shows each election and how long it waited).
    pub log_level: String,
}

/// One broken guarantee.
#[derive(Clone, Debug)]
pub struct Violation {
    /// `(a) kept`, `(b) missing`, `(c) foreign changed`, `(d) ready but missing`,
    /// `(e) no leader`, `final`.
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
    /// Broken guarantees.
    pub violations: Vec<Violation>,
    /// The longest a grant the model does not give was seen.
    pub worst_revocation: Duration,
    /// The longest a grant the model gives was missing.
    pub worst_convergence: Duration,
    /// The longest no running replica held the Lease (not counted against the bounds above).
    pub worst_leaderless: Duration,
    /// Grants the model does not give that only bindings no longer groupbinder's gave (by the
    /// rule; re-parented, then the allowlist narrowed): not held against it.
    pub not_groupbinders: BTreeSet<Grant>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum = |m: &BTreeMap<&str, usize>| m.values().sum::<usize>();
        writeln!(
            f,
            "seed {}: {} operations {:?}; {} faults {:?}; {} SubjectAccessReviews; worst revocation {:.1} s, worst convergence {:.1} s (outages not counted); longest without a leader {:.1} s; {} grants given only by bindings no longer groupbinder's; {} violations",
            self.seed,
            sum(&self.operations),
            self.operations,
            sum(&self.faults),
            self.faults,
            self.reviews,
            self.worst_revocation.as_secs_f64(),
            self.worst_convergence.as_secs_f64(),
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

/// SplitMix64: small, seeded, the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// From `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Where a namespaced entry binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// One namespace.
    Namespace(String),
    /// Every namespace labelled `team=<team>`.
    Team(String),
}

/// A spec as the soak writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Object ID.
    pub id: String,
    /// `groupPrefix`, or the default.
    pub prefix: Option<String>,
    /// `clusterRoles`.
    pub cluster_roles: Vec<String>,
    /// `roles` (ClusterRoles bound in namespaces).
    pub roles: Vec<(String, Place)>,
}

/// A grant: group, role, and namespace (`None`: cluster-wide).
pub type Grant = (String, String, Option<String>);

/// What the world is, as far as the model needs.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Objects by name.
    pub specs: BTreeMap<String, Spec>,
    /// Namespaces that exist, with their `team` label.
    pub namespaces: BTreeMap<String, Option<String>>,
    /// Roles that exist.
    pub roles: BTreeSet<String>,
    /// Roles the allowlist permits.
    pub allowed: BTreeSet<String>,
    /// K10's live `groupPrefix`: what an object that sets none grants (the operator follows it).
    pub k10_prefix: String,
}

/// The model: every grant `world` gives.
pub fn model(world: &World) -> BTreeSet<Grant> {
    world
        .specs
        .values()
        .flat_map(|spec| spec_grants(world, spec))
        .collect()
}

/// The grants of one spec.
pub fn spec_grants(world: &World, spec: &Spec) -> BTreeSet<Grant> {
    let group = format!(
        "{}{}",
        spec.prefix.as_deref().unwrap_or(&world.k10_prefix),
        spec.id
    );
    let usable = |role: &str| world.allowed.contains(role) && world.roles.contains(role);
    let mut grants = BTreeSet::new();
    for role in spec.cluster_roles.iter().filter(|r| usable(r)) {
        grants.insert((group.clone(), role.clone(), None));
    }
    for (role, place) in spec.roles.iter().filter(|(r, _)| usable(r)) {
        let namespaces: Vec<&String> = match place {
            Place::Namespace(ns) => world.namespaces.keys().filter(|n| *n == ns).collect(),
            Place::Team(team) => world
                .namespaces
                .iter()
                .filter(|(_, t)| t.as_deref() == Some(team))
                .map(|(n, _)| n)
                .collect(),
        };
        for ns in namespaces {
            grants.insert((group.clone(), role.clone(), Some(ns.clone())));
        }
    }
    grants
}

/// How long from `since` to `now` lies outside every one of `outages` (which may overlap).
pub fn credited(outages: &[(Instant, Instant)], since: Instant, now: Instant) -> Duration {
    let mut clipped: Vec<(Instant, Instant)> = outages
        .iter()
        .map(|(from, to)| ((*from).max(since), (*to).min(now)))
        .filter(|(from, to)| from < to)
        .collect();
    clipped.sort();
    let (mut away, mut covered) = (Duration::ZERO, since);
    for (from, to) in clipped {
        let from = from.max(covered);
        if to > from {
            away += to - from;
            covered = to;
        }
    }
    now.saturating_duration_since(since).saturating_sub(away)
}

/// When a replica should lead at the latest, counting only time the operator could act, after
/// the leader went at `since`, the first replica still running having started at `first_start`.
/// A standby takes the lease once it has seen the dead leader's record unchanged for a lease
/// duration (from when *it* first saw it), asking every retry period: one retry to see it, the
/// lease, one retry to take it.
pub fn election_promise(since: Instant, first_start: Instant) -> Instant {
    since.max(first_start) + LEASE + 2 * RETRY
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

fn random_spec(rng: &mut Rng) -> Spec {
    let id = format!("50a50000-0000-4000-8000-{:012}", rng.below(IDS));
    let prefix = match rng.below(4) {
        0 => Some("other:".to_owned()),
        1 => Some(DEFAULT_PREFIX.to_owned()),
        _ => None,
    };
    let mut cluster_roles: Vec<String> = ROLES
        .iter()
        .filter(|_| rng.chance(30))
        .map(|r| (*r).to_owned())
        .collect();
    let mut roles = Vec::new();
    for _ in 0..rng.below(3) {
        let role = ROLES[rng.below(ROLES.len())].to_owned();
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

struct Soak<'a> {
    client: kube::Client,
    cp: &'a ControlPlane,
    kubeconfig: &'a std::path::Path,
    log: PathBuf,
    started: Instant,
    options: &'a Options,
    rng: Rng,
    world: World,
    /// The running replicas (leader election on), by identity.
    replicas: BTreeMap<String, OperatorProcess>,
    /// Replicas started so far (their identities are `soak-<n>`).
    started_replicas: usize,
    /// When each replica was started, by identity.
    replica_starts: BTreeMap<String, Instant>,
    /// Since when (and after which step) no running replica has held the Lease.
    leaderless_since: Option<(Instant, usize)>,
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
    /// Per Ready object and grant: since when it has been missing.
    ready_wrong: BTreeMap<(String, Grant), (Instant, usize)>,
    /// Every grant ever expected or seen: checked until the end.
    history: BTreeSet<Grant>,
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
                credited(&outages, since, now)
            }
            None => credited(&self.outages, since, now),
        }
    }

    /// Reads the Lease: a stretch without a leader starts when no running replica holds it and
    /// ends (an outage, credited) when one does; one longer than the election promise is (e).
    async fn follow_the_lease(&mut self) {
        let Ok(lease) = Api::<Lease>::namespaced(self.client.clone(), "default")
            .get_opt("groupbinder-leader")
            .await
        else {
            return; // the API server away: that outage is counted where it is made
        };
        let holder = lease.and_then(|l| l.spec?.holder_identity);
        let leading = holder.is_some_and(|h| self.replicas.contains_key(&h));
        let now = Instant::now();
        match (leading, self.leaderless_since) {
            (true, Some((since, _))) => {
                self.outage(since, now);
                self.report.worst_leaderless = self.report.worst_leaderless.max(now - since);
                self.leaderless_since = None;
                self.stuck_election = false;
                self.trace(&format!(
                    "leader again after {:.1} s",
                    (now - since).as_secs_f64()
                ));
            }
            (false, None) => self.leaderless_since = Some((now, self.step)),
            (false, Some((since, step))) => {
                let first_start = self
                    .replica_starts
                    .iter()
                    .filter(|(identity, _)| self.replicas.contains_key(*identity))
                    .map(|(_, started)| *started)
                    .min();
                let Some(first_start) = first_start else {
                    return;
                };
                let promise = election_promise(since, first_start);
                let base = since.max(first_start);
                let waited = credited(&self.outages, base, now);
                if !self.stuck_election && waited > promise - base + ELECTION_SLACK {
                    self.stuck_election = true;
                    self.violate(
                        "(e) no leader",
                        step,
                        format!(
                            "no running replica has held the Lease for {:.1} s ({:.1} s since the first running replica started)",
                            (now - since).as_secs_f64(),
                            waited.as_secs_f64()
                        ),
                        now - since,
                    );
                }
            }
            (true, None) => {}
        }
    }

    /// The leader (or every replica) stopped now: no leader from here until the Lease says so.
    fn leader_gone(&mut self) {
        if self.leaderless_since.is_none() {
            self.leaderless_since = Some((Instant::now(), self.step));
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
                "{:9.3} step {:5} {what} | allowed {:?} K10 prefix {:?} roles {:?} namespaces {:?} specs {:?}",
                self.started.elapsed().as_secs_f64(),
                self.step,
                self.world.allowed,
                self.world.k10_prefix,
                self.world.roles,
                self.world.namespaces,
                self.world.specs
            );
        }
    }

    /// Starts one more replica (leader election on, the chart's lease duration and resync).
    fn start_replica(&mut self) -> anyhow::Result<()> {
        let allowed: Vec<&str> = self.world.allowed.iter().map(String::as_str).collect();
        let allowed = allowed.join(",");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.started_replicas += 1;
        let identity = format!("soak-{}", self.started_replicas);
        let process = OperatorProcess::spawn(
            &self.options.binary,
            self.kubeconfig,
            &[
                ("GROUPBINDER_ALLOWED_ROLES", &allowed),
                ("GROUPBINDER_ALLOW_NON_K10_ROLES", "true"),
                ("GROUPBINDER_DEFAULT_GROUP_PREFIX", DEFAULT_PREFIX),
                ("GROUPBINDER_LOG_LEVEL", &self.options.log_level),
                ("GROUPBINDER_LEADER_ELECTION", "true"),
                ("GROUPBINDER_FOLLOW_K10_GROUP_PREFIX", "true"),
                ("POD_NAME", &identity),
            ],
            log.into(),
        )?;
        self.replica_starts.insert(identity.clone(), Instant::now());
        self.replicas.insert(identity, process);
        Ok(())
    }

    /// The identity of the replica holding the lease, if it runs.
    async fn leader(&self) -> Option<String> {
        let lease = Api::<Lease>::namespaced(self.client.clone(), "default")
            .get_opt("groupbinder-leader")
            .await
            .ok()??;
        let holder = lease.spec?.holder_identity?;
        self.replicas.contains_key(&holder).then_some(holder)
    }

    /// SIGKILLs the leader (any replica when none leads): no replica leads until the Lease,
    /// left to expire, says one does (`follow_the_lease` measures how long that takes).
    async fn kill_leader(&mut self) {
        let victim = match self.leader().await {
            Some(leader) => Some(leader),
            None => self.replicas.keys().next().cloned(),
        };
        if let Some(mut process) = victim.and_then(|v| self.replicas.remove(&v)) {
            let _ = process.child().kill();
            let _ = process.child().wait();
            self.leader_gone();
        }
    }

    /// Stops every replica gracefully (each gives its lease up) and starts as many again.
    fn restart_replicas(&mut self) -> anyhow::Result<()> {
        let count = self.replicas.len().max(1);
        self.replicas.clear(); // SIGTERM
        self.leader_gone();
        for _ in 0..count {
            self.start_replica()?;
        }
        Ok(())
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        let cluster_roles: Api<ClusterRole> = Api::all(self.client.clone());
        for role in ROLES {
            self.create_role(&cluster_roles, role).await?;
        }
        self.world.allowed = ROLES[..3].iter().map(|r| (*r).to_owned()).collect();
        self.world.k10_prefix = DEFAULT_PREFIX.to_owned();
        crate::install_k10_oidc(
            &self.client,
            K10_NAMESPACE,
            K10_SECRET,
            &crate::entra_oidc(DEFAULT_PREFIX),
        )
        .await?;
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
        for (kind, namespace, object) in [
            ("ClusterRoleBinding", None, crb.metadata.clone()),
            (
                "RoleBinding",
                Some(FIXED_NAMESPACE.to_owned()),
                rb.metadata.clone(),
            ),
        ] {
            self.foreign.insert(
                (
                    kind.to_owned(),
                    namespace,
                    object.name.clone().unwrap_or_default(),
                ),
                (
                    object.uid.clone().unwrap_or_default(),
                    object.resource_version.clone().unwrap_or_default(),
                ),
            );
        }
        self.kube_system = Api::<Namespace>::all(self.client.clone())
            .get("kube-system")
            .await?
            .uid()
            .unwrap_or_default();
        self.start_replica()
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

    /// One random operation or fault.
    async fn act(&mut self) -> anyhow::Result<()> {
        if self
            .kcm_down_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.kcm_down_until = None;
            self.cp.start_controller_manager()?;
        }
        let agbs: Api<AzureGroupBinding> = Api::all(self.client.clone());
        let roll = self.rng.below(100);
        let name = format!("soak-{}", self.rng.below(NAMES));
        match roll {
            0..=29 => {
                // Create or edit (server-side apply: a whole new spec).
                let spec = random_spec(&mut self.rng);
                let object: AzureGroupBinding = serde_json::from_value(spec_json(&name, &spec))?;
                let params = PatchParams::apply("soak").force();
                agbs.patch(&name, &params, &Patch::Apply(&object)).await?;
                let kind = if self.world.specs.contains_key(&name) {
                    "edit"
                } else {
                    "create"
                };
                self.world.specs.insert(name, spec);
                self.op(kind);
            }
            30..=39 => {
                if self.world.specs.remove(&name).is_some() {
                    let _ = agbs.delete(&name, &DeleteParams::default()).await?;
                    self.op("delete");
                    if self.rng.chance(50) {
                        // Delete and recreate under one name, at once.
                        let spec = random_spec(&mut self.rng);
                        let object: AzureGroupBinding =
                            serde_json::from_value(spec_json(&name, &spec))?;
                        let mut tries = 0;
                        loop {
                            match agbs.create(&PostParams::default(), &object).await {
                                Ok(_) => break,
                                Err(kube::Error::Api(s)) if s.code == 409 && tries < 50 => {
                                    tries += 1;
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                Err(e) => return Err(e.into()),
                            }
                        }
                        self.world.specs.insert(name, spec);
                        self.op("recreate");
                    }
                }
            }
            40..=53 => self.namespace_op().await?,
            54..=58 => {
                // A role deleted, or created again.
                let role = ROLES[self.rng.below(3)];
                let api: Api<ClusterRole> = Api::all(self.client.clone());
                if self.world.roles.contains(role) {
                    api.delete(role, &DeleteParams::default()).await?;
                    self.world.roles.remove(role);
                    self.op("role deleted");
                } else {
                    self.create_role(&api, role).await?;
                    self.op("role created");
                }
            }
            59..=80 => self.hand_edit().await?,
            81..=82 => {
                // K10's groupPrefix changed (K10 reconfigured): objects that set none follow it.
                let prefix = K10_PREFIXES[self.rng.below(K10_PREFIXES.len())];
                let patch = json!({"stringData": {"groupPrefix": prefix}});
                Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
                    self.client.clone(),
                    K10_NAMESPACE,
                )
                .patch(K10_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
                self.world.k10_prefix = prefix.to_owned();
                self.op("K10 groupPrefix changed");
            }
            83..=86 => {
                // Narrow or widen the allowlist: every replica restarted.
                let role = ROLES[self.rng.below(3)].to_owned();
                if !self.world.allowed.remove(&role) {
                    self.world.allowed.insert(role);
                }
                if self.world.allowed.is_empty() {
                    self.world.allowed.insert(ROLES[0].to_owned());
                }
                self.restart_replicas()?;
                self.fault("allowlist changed (restart)");
            }
            87 => {
                // The API server restarted: every watch breaks, every request fails meanwhile.
                let from = Instant::now();
                self.cp.stop_apiserver();
                tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2500) as u64)).await;
                self.cp.start_apiserver().await?;
                self.outage(from, Instant::now());
                self.fault("API server restart");
            }
            88 => {
                // etcd away: the API server answers errors meanwhile.
                let from = Instant::now();
                self.cp.stop_etcd();
                tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2500) as u64)).await;
                self.cp.start_etcd()?;
                crate::eventually(
                    "the API server to answer again",
                    Duration::from_secs(60),
                    || async {
                        Ok(Api::<Namespace>::all(self.client.clone())
                            .list_metadata(&ListParams::default().limit(1))
                            .await
                            .ok()
                            .map(drop))
                    },
                )
                .await?;
                self.outage(from, Instant::now());
                self.fault("etcd stopped");
            }
            89 => {
                // kube-controller-manager away for a while: no garbage collection, namespaces
                // stay Terminating. Revocation must not depend on it.
                if self.kcm_down_until.is_none() {
                    self.cp.stop_controller_manager();
                    let away = Duration::from_secs(3 + self.rng.below(18) as u64);
                    self.kcm_down_until = Some(Instant::now() + away);
                    self.fault("kube-controller-manager stopped");
                }
            }
            90..=92 => {
                // The leader SIGKILLed, and a replacement started (as a Deployment would).
                self.kill_leader().await;
                tokio::time::sleep(Duration::from_millis(self.rng.below(2000) as u64)).await;
                self.start_replica()?;
                self.fault("leader SIGKILLed");
            }
            93..=95 => {
                // A second replica started, or the standby SIGKILLed.
                if self.replicas.len() < 2 {
                    self.start_replica()?;
                    self.fault("standby started");
                } else if let Some(leader) = self.leader().await {
                    let standby = self.replicas.keys().find(|r| **r != leader).cloned();
                    if let Some(mut process) = standby.and_then(|s| self.replicas.remove(&s)) {
                        let _ = process.child().kill();
                        let _ = process.child().wait();
                        self.fault("standby SIGKILLed");
                    }
                }
            }
            _ => {
                // The leader SIGTERMed (it gives its lease up), and a replacement started.
                if let Some(leader) = self.leader().await {
                    self.replicas.remove(&leader);
                    self.leader_gone();
                }
                if self.replicas.is_empty() {
                    self.start_replica()?;
                }
                self.fault("leader SIGTERMed");
            }
        }
        Ok(())
    }

    async fn namespace_op(&mut self) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = format!("soak-ns-{}", self.rng.below(NAMESPACES));
        let exists = self.world.namespaces.contains_key(&ns);
        let terminating = api
            .get_opt(&ns)
            .await?
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some());
        if terminating {
            return Ok(());
        }
        let team = if self.rng.chance(70) {
            Some(TEAMS[self.rng.below(TEAMS.len())].to_owned())
        } else {
            None
        };
        if !exists {
            let object: Namespace = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": team.as_ref().map(|t| json!({"team": t})).unwrap_or(json!({}))},
            }))?;
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()), // still terminating
                Err(e) => return Err(e.into()),
            }
            self.world.namespaces.insert(ns, team);
            self.op("namespace created");
        } else if self.rng.chance(25) {
            api.delete(&ns, &DeleteParams::default()).await?;
            self.world.namespaces.remove(&ns);
            self.leaving.insert(ns);
            self.op("namespace deleted");
        } else {
            let patch = json!({"metadata": {"labels": {"team": team}}});
            api.patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            self.world.namespaces.insert(ns, team);
            self.op("namespace relabelled");
        }
        Ok(())
    }

    /// What someone with `patch` on bindings does to a managed one.
    async fn hand_edit(&mut self) -> anyhow::Result<()> {
        let selector = ListParams::default().labels("app.kubernetes.io/managed-by=groupbinder");
        let crbs: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let rbs: Api<RoleBinding> = Api::all(self.client.clone());
        let mut targets: Vec<(Option<String>, String)> = crbs
            .list_metadata(&selector)
            .await?
            .items
            .iter()
            .map(|b| (None, b.name_any()))
            .collect();
        targets.extend(
            rbs.list_metadata(&selector)
                .await?
                .items
                .iter()
                .map(|b| (b.namespace(), b.name_any())),
        );
        if targets.is_empty() {
            return Ok(());
        }
        let (namespace, name) = targets[self.rng.below(targets.len())].clone();
        let controller = |api_version: &str, kind: &str, name: &str, uid: &str| {
            json!({"metadata": {"ownerReferences": [{"apiVersion": api_version, "kind": kind,
                "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": false}]}})
        };
        let (patch, kind): (serde_json::Value, &'static str) = match self.rng.below(7) {
            // Re-parented: the garbage collector would keep it for ever; the labels still say
            // groupbinder's.
            4 => (
                controller("v1", "Namespace", "kube-system", &self.kube_system),
                "controller moved to kube-system",
            ),
            5 => {
                let other = format!("soak-{}", self.rng.below(NAMES));
                let Some(other) = Api::<AzureGroupBinding>::all(self.client.clone())
                    .get_opt(&other)
                    .await?
                else {
                    return Ok(());
                };
                (
                    controller(
                        "groupbinder.dev/v1alpha1",
                        "AzureGroupBinding",
                        &other.name_any(),
                        &other.uid().unwrap_or_default(),
                    ),
                    "controller moved to another object",
                )
            }
            6 => (
                json!({"metadata": {"ownerReferences": null,
                    "labels": {UID_LABEL: "00000000-0000-4000-8000-00000000f0f0"}}}),
                "uid label forged",
            ),
            0 => (json!(null), "binding deleted"),
            1 => (
                json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": INTRUDER}]}),
                "subjects changed",
            ),
            2 => (
                json!({"metadata": {"ownerReferences": null}}),
                "ownerReferences stripped",
            ),
            _ => (
                json!({"metadata": {"finalizers": ["soak.groupbinder.test/hold"]}}),
                "finalizer added",
            ),
        };
        let result = match (&namespace, patch.is_null()) {
            (None, true) => crbs.delete(&name, &DeleteParams::default()).await.map(drop),
            (None, false) => crbs
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop),
            (Some(ns), true) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
            (Some(ns), false) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop),
        };
        match result {
            Ok(()) => self.op(kind),
            // Gone meanwhile (the operator deleted it): nothing was done.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Does the RBAC authorizer say `group` holds `role` there?
    async fn holds(&mut self, (group, role, namespace): &Grant) -> anyhow::Result<bool> {
        self.report.reviews += 1;
        let groups = [group.as_str()];
        Who::new(&self.client, "soak-user", &groups)
            .can(
                "get",
                WITNESS_GROUP,
                &format!("{role}-witness"),
                namespace.as_deref(),
            )
            .await
    }

    /// Every grant bound now, from a LIST of every binding to a soak role (Group subjects), and
    /// whether a binding that is groupbinder's gives it (the README's rule, written here anew:
    /// its controller is an AzureGroupBinding, or it is labelled as groupbinder's and binds a role
    /// the allowlist permits).
    async fn bound(&self) -> anyhow::Result<BTreeMap<Grant, bool>> {
        let crbs: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let rbs: Api<RoleBinding> = Api::all(self.client.clone());
        let groupbinders = |meta: &kube::api::ObjectMeta, role: &str| {
            let controller = meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true));
            let labelled = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY.0))
                .is_some_and(|v| v == MANAGED_BY.1);
            match controller {
                Some(o) => {
                    (o.kind == "AzureGroupBinding" && o.api_version.starts_with("groupbinder.dev/"))
                        || (labelled && self.world.allowed.contains(role))
                }
                None => labelled && self.world.allowed.contains(role),
            }
        };
        let mut bound = BTreeMap::new();
        let mut add = |grant: Grant, ours: bool| {
            let entry = bound.entry(grant).or_insert(false);
            *entry |= ours;
        };
        for b in crbs.list(&ListParams::default()).await?.items {
            let role = &b.role_ref.name;
            if ROLES.contains(&role.as_str()) {
                let ours = groupbinders(&b.metadata, role);
                for s in b.subjects.iter().flatten().filter(|s| s.kind == "Group") {
                    add((s.name.clone(), role.clone(), None), ours);
                }
            }
        }
        for b in rbs.list(&ListParams::default()).await?.items {
            let role = &b.role_ref.name;
            if ROLES.contains(&role.as_str()) {
                let ours = groupbinders(&b.metadata, role);
                for s in b.subjects.iter().flatten().filter(|s| s.kind == "Group") {
                    add((s.name.clone(), role.clone(), b.namespace()), ours);
                }
            }
        }
        Ok(bound)
    }

    /// Forgets the deleted namespaces that are gone.
    async fn prune_leaving(&mut self) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        for ns in self.leaving.clone() {
            if api.get_opt(&ns).await?.is_none() {
                self.leaving.remove(&ns);
            }
        }
        Ok(())
    }

    /// Compares the model with what the authorizer answers; `strict`: every difference is a
    /// violation now (the final check, after convergence).
    async fn check(&mut self, strict: bool) -> anyhow::Result<()> {
        self.follow_the_lease().await;
        self.prune_leaving().await?;
        let expected = model(&self.world);
        let bound = self.bound().await?;
        self.history.extend(expected.iter().cloned());
        self.history.extend(
            bound
                .keys()
                .filter(|(g, _, _)| !g.starts_with("foreign:"))
                .cloned(),
        );
        let now = Instant::now();
        let keys: Vec<Grant> = self.history.iter().cloned().collect();
        // What the authorizer answered this round, for the Ready check to read, not ask again.
        let mut answers = BTreeMap::new();
        for key in keys {
            let (group, role, namespace) = &key;
            let want = expected.contains(&key)
                || (namespace.is_some() && expected.contains(&(group.clone(), role.clone(), None)));
            let has = self.holds(&key).await?;
            answers.insert(key.clone(), has);
            let entry = self.wrong.get(&key).copied();
            // Given only by bindings that are not groupbinder's (re-parented, say, and then the
            // allowlist narrowed: never touched, by the rule), or going with its namespace.
            let givers = |ours: bool| {
                let gives = |g: &Grant| bound.get(g).is_some_and(|o| *o || !ours);
                gives(&key) || (namespace.is_some() && gives(&(group.clone(), role.clone(), None)))
            };
            let not_groupbinders = has && !want && givers(false) && !givers(true);
            let leaving = namespace.as_ref().is_some_and(|n| self.leaving.contains(n));
            if not_groupbinders || leaving {
                if not_groupbinders {
                    self.report.not_groupbinders.insert(key.clone());
                }
                self.wrong.remove(&key);
                continue;
            }
            if has == want {
                if let Some((since, _, kept)) = entry {
                    let took = self.credited(since, now);
                    if kept {
                        self.report.worst_revocation = self.report.worst_revocation.max(took);
                    } else {
                        self.report.worst_convergence = self.report.worst_convergence.max(took);
                    }
                    self.wrong.remove(&key);
                }
                continue;
            }
            let (since, step, kept) =
                entry.unwrap_or((self.last_change.0, self.last_change.1, has));
            self.wrong.insert(key.clone(), (since, step, has));
            let seen = self.credited(since, now);
            let bound_for = if has {
                self.options.revoke_bound
            } else {
                self.options.converge_bound
            };
            if strict || seen > bound_for {
                let kind = match (strict, kept) {
                    (true, _) => "final",
                    (false, true) => "(a) kept",
                    (false, false) => "(b) missing",
                };
                self.violate(
                    kind,
                    step,
                    format!(
                        "{group} {} {role} {}",
                        if has { "holds" } else { "lacks" },
                        namespace
                            .as_deref()
                            .map_or("cluster-wide".to_owned(), |n| format!("in {n}"))
                    ),
                    seen,
                );
                self.wrong.remove(&key);
            }
        }
        self.check_foreign().await?;
        self.check_ready(&answers, now, strict).await
    }

    fn violate(&mut self, kind: &'static str, step: usize, what: String, seen_for: Duration) {
        self.trace(&format!(
            "VIOLATION {kind} (since step {step}, {seen_for:?}): {what}"
        ));
        eprintln!(
            "soak: violation {kind} at step {step} (seed {}): {what}",
            self.report.seed
        );
        self.report.violations.push(Violation {
            kind,
            step,
            what,
            seen_for,
        });
    }

    async fn check_foreign(&mut self) -> anyhow::Result<()> {
        let foreign = self.foreign.clone();
        for ((kind, namespace, name), (uid, version)) in foreign {
            let meta = match &namespace {
                None => Api::<ClusterRoleBinding>::all(self.client.clone())
                    .get_opt(&name)
                    .await?
                    .map(|b| b.metadata),
                Some(ns) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                    .get_opt(&name)
                    .await?
                    .map(|b| b.metadata),
            };
            let same = meta.is_some_and(|m| {
                m.uid.as_deref() == Some(uid.as_str())
                    && m.resource_version.as_deref() == Some(version.as_str())
            });
            if !same {
                let step = self.step;
                self.violate(
                    "(c) foreign changed",
                    step,
                    format!("{kind} {name} was changed or deleted"),
                    Duration::ZERO,
                );
                self.foreign.clear();
                return Ok(());
            }
        }
        Ok(())
    }

    /// (d): an object saying Ready=True for its current spec while a grant of it is missing.
    async fn check_ready(
        &mut self,
        answers: &BTreeMap<Grant, bool>,
        now: Instant,
        strict: bool,
    ) -> anyhow::Result<()> {
        let agbs: Api<AzureGroupBinding> = Api::all(self.client.clone());
        let listed = agbs.list(&ListParams::default()).await?;
        let mut seen_now = BTreeSet::new();
        for agb in listed.items {
            let name = agb.name_any();
            let Some(spec) = self.world.specs.get(&name).cloned() else {
                continue;
            };
            let current =
                agb.status.as_ref().and_then(|s| s.observed_generation) == agb.metadata.generation;
            let ready = agb
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if !(current && ready) {
                continue;
            }
            for grant in spec_grants(&self.world, &spec) {
                let has = match answers.get(&grant) {
                    Some(has) => *has,
                    None => self.holds(&grant).await?,
                };
                let key = (name.clone(), grant.clone());
                if has {
                    self.ready_wrong.remove(&key);
                    continue;
                }
                seen_now.insert(key.clone());
                let (since, step) = *self.ready_wrong.entry(key).or_insert(self.last_change);
                let seen = self.credited(since, now);
                if strict || seen > self.options.converge_bound {
                    self.violate(
                        "(d) ready but missing",
                        step,
                        format!(
                            "{name} says Ready=True, but {} lacks {} {}",
                            grant.0,
                            grant.1,
                            grant.2.as_deref().unwrap_or("cluster-wide")
                        ),
                        seen,
                    );
                }
            }
        }
        self.ready_wrong.retain(|k, _| seen_now.contains(k));
        Ok(())
    }
}

/// Runs one soak against `cp` (which it restarts parts of), its operator's log in `log`.
pub async fn run(cp: &ControlPlane, log: PathBuf, options: &Options) -> anyhow::Result<Report> {
    let mut soak = Soak {
        client: cp.client().await?,
        cp,
        kubeconfig: cp.kubeconfig(),
        log,
        options,
        rng: Rng::new(options.seed),
        world: World::default(),
        replicas: BTreeMap::new(),
        started_replicas: 0,
        replica_starts: BTreeMap::new(),
        leaderless_since: None,
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
    if soak.kcm_down_until.take().is_some() {
        cp.start_controller_manager()?;
    }
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
    // Bindings moved out of groupbinder's hands (re-parented, then the allowlist narrowed) are
    // the soak's to remove.
    let labelled = ListParams::default().labels("app.kubernetes.io/managed-by=groupbinder");
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
            let selector = ListParams::default().labels("app.kubernetes.io/managed-by=groupbinder");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_gives_only_allowed_existing_roles_where_they_apply() {
        let mut world = World {
            roles: ["soak-a", "soak-b", "soak-x"].map(String::from).into(),
            allowed: ["soak-a", "soak-b", "soak-c"].map(String::from).into(),
            k10_prefix: "soak:".into(),
            ..World::default()
        };
        world.namespaces.insert("n1".into(), Some("a".into()));
        world.namespaces.insert("n2".into(), Some("b".into()));
        let spec = Spec {
            id: "i".into(),
            prefix: None,
            cluster_roles: vec!["soak-a".into(), "soak-c".into(), "soak-x".into()],
            roles: vec![
                ("soak-b".into(), Place::Team("a".into())),
                ("soak-b".into(), Place::Namespace("gone".into())),
            ],
        };
        world.specs.insert("o".into(), spec);
        let grants = model(&world);
        assert_eq!(
            grants,
            [
                ("soak:i".to_owned(), "soak-a".to_owned(), None),
                (
                    "soak:i".to_owned(),
                    "soak-b".to_owned(),
                    Some("n1".to_owned())
                ),
            ]
            .into()
        );
    }

    #[test]
    fn overlapping_outages_are_subtracted_once() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        // 0..100 s, away 10..20 and 15..30 (overlapping) and 90..120 (past the end).
        let outages = [(at(10), at(20)), (at(15), at(30)), (at(90), at(120))];
        assert_eq!(credited(&outages, at(0), at(100)), Duration::from_secs(70));
        assert_eq!(credited(&outages, at(25), at(40)), Duration::from_secs(10));
        assert_eq!(credited(&[], at(5), at(6)), Duration::from_secs(1));
    }

    #[test]
    fn a_replacement_started_after_the_leader_died_gets_a_lease_of_its_own() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        // A standby already running: the dead leader's lease, then a retry either side.
        assert_eq!(election_promise(at(10), at(0)), at(35));
        // A replacement started 8 s after the kill first sees the record then, and waits from there.
        assert_eq!(election_promise(at(10), at(18)), at(43));
    }

    #[test]
    fn the_same_seed_gives_the_same_specs() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..20 {
            assert_eq!(random_spec(&mut a), random_spec(&mut b));
        }
    }
}
