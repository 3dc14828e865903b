//! The soak's model, pure: from the world as the soak made it, which group must and which may
//! hold which role where, and whether K10 presents an object's group. Written from the README;
//! it shares no code with the operator's `plan` or with `groupbinder_api::k10oidc`.
//!
//! An object grants `<prefix><groupObjectId>` each cluster role it names cluster-wide, and each
//! namespaced entry in its namespace or in every namespace its selector selects — only roles the
//! allowlist permits, only while the role and the namespace exist. The prefix is the spec's, or
//! K10's live `groupPrefix` (the operator follows it). While K10's settings cannot be read, an
//! object keeps the prefix its status held for its current spec; one edited (or created)
//! meanwhile grants nothing. A name squatted by a binding that is not groupbinder's cannot be
//! bound: that grant is not required (and the object must not say `Ready=True`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A grant: group, role, and namespace (`None`: cluster-wide).
pub type Grant = (String, String, Option<String>);

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

/// K10's live OIDC settings, as the soak writes them into K10's Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K10 {
    /// The Secret is there: the operator can read K10's settings.
    pub readable: bool,
    /// `groupPrefix`: what an object that sets none uses (the operator follows it).
    pub prefix: String,
    /// `groupClaim` is `groups` (`false`: empty, and K10 presents no group at all).
    pub group_claim: bool,
    /// `groupAllowList` (empty: K10 keeps every group).
    pub allow_list: Vec<String>,
}

/// What an object that sets no prefix grants while K10's settings cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Its status was written for its current spec with this prefix: it keeps granting under it.
    Prefix(String),
    /// It was not reconciled under K10's last settings yet: any of these, or nothing.
    Maybe(BTreeSet<String>),
    /// Edited or created since: nothing, until K10's settings are read again.
    Nothing,
}

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
    /// K10's live OIDC settings.
    pub k10: K10,
    /// While K10's settings cannot be read: what each object that sets no prefix holds.
    pub holds: BTreeMap<String, Hold>,
    /// Binding names (namespace, name) squatted by bindings that are not groupbinder's.
    pub squatted: BTreeSet<(Option<String>, String)>,
}

/// The grants the world gives: those that must be held (once the operator has caught up) and
/// those that may be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Missing one of these for long is a violation.
    pub required: BTreeSet<Grant>,
    /// Holding anything else for long is a violation (a superset of `required`).
    pub allowed: BTreeSet<Grant>,
}

impl Expected {
    /// Whether `grant` (or, for a namespace, the same role cluster-wide) is in `set`.
    fn covers(set: &BTreeSet<Grant>, (group, role, namespace): &Grant) -> bool {
        set.contains(&(group.clone(), role.clone(), namespace.clone()))
            || (namespace.is_some() && set.contains(&(group.clone(), role.clone(), None)))
    }

    /// Whether holding `grant` is allowed.
    pub fn may_hold(&self, grant: &Grant) -> bool {
        Self::covers(&self.allowed, grant)
    }

    /// Whether `grant` must be held.
    pub fn must_hold(&self, grant: &Grant) -> bool {
        Self::covers(&self.required, grant)
    }
}

/// The prefixes `name`'s grants may use, and the one they must use (if any).
pub fn prefixes(world: &World, name: &str, spec: &Spec) -> (BTreeSet<String>, Option<String>) {
    if let Some(prefix) = &spec.prefix {
        return ([prefix.clone()].into(), Some(prefix.clone()));
    }
    if world.k10.readable {
        return (
            [world.k10.prefix.clone()].into(),
            Some(world.k10.prefix.clone()),
        );
    }
    match world.holds.get(name) {
        Some(Hold::Prefix(prefix)) => ([prefix.clone()].into(), Some(prefix.clone())),
        Some(Hold::Maybe(prefixes)) => (prefixes.clone(), None),
        Some(Hold::Nothing) | None => (BTreeSet::new(), None),
    }
}

/// The grants of object `name` under `prefix`, and which of them a squatter blocks.
pub fn spec_grants(
    world: &World,
    name: &str,
    spec: &Spec,
    prefix: &str,
) -> (BTreeSet<Grant>, BTreeSet<Grant>) {
    let group = format!("{prefix}{}", spec.id);
    let usable = |role: &str| world.allowed.contains(role) && world.roles.contains(role);
    let squatted = |role: &str, namespace: Option<&String>| {
        world
            .squatted
            .contains(&(namespace.cloned(), format!("{name}:{role}")))
    };
    let (mut grants, mut blocked) = (BTreeSet::new(), BTreeSet::new());
    let mut add = |grant: Grant, squatted: bool| {
        if squatted {
            blocked.insert(grant.clone());
        }
        grants.insert(grant);
    };
    for role in spec.cluster_roles.iter().filter(|r| usable(r)) {
        add((group.clone(), role.clone(), None), squatted(role, None));
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
            add(
                (group.clone(), role.clone(), Some(ns.clone())),
                squatted(role, Some(ns)),
            );
        }
    }
    (grants, blocked)
}

/// The model: every grant `world` requires and allows.
pub fn model(world: &World) -> Expected {
    let mut expected = Expected::default();
    for (name, spec) in &world.specs {
        let (may, must) = prefixes(world, name, spec);
        for prefix in &may {
            let (grants, blocked) = spec_grants(world, name, spec, prefix);
            if must.as_ref() == Some(prefix) {
                expected
                    .required
                    .extend(grants.difference(&blocked).cloned());
            }
            expected.allowed.extend(grants);
        }
    }
    expected
}

/// Whether K10 presents a group, as the README's `K10Presents` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presents {
    /// A signed-in member carries `group`.
    Yes,
    /// K10, as configured now, will not present it.
    No,
    /// It cannot be told.
    Unknown,
}

/// Whether K10 with `k10` presents `group` for a member of Entra ID group `id`: it takes the
/// `groups` claim (object IDs), adds its prefix, and drops what its allow list does not hold
/// (compared before or after the prefix: undocumented, so both forms or neither decide).
pub fn presents(k10: &K10, group: &str, id: &str) -> Presents {
    if !k10.readable {
        return Presents::Unknown;
    }
    let presented = format!("{}{id}", k10.prefix);
    if !k10.group_claim || presented != group {
        return Presents::No;
    }
    if k10.allow_list.is_empty() {
        return Presents::Yes;
    }
    let listed = |entry: &str| k10.allow_list.iter().any(|e| e == entry);
    match (listed(id), listed(&presented)) {
        (true, true) => Presents::Yes,
        (false, false) => Presents::No,
        _ => Presents::Unknown,
    }
}

/// The breaker of the README's Entra ID lookups: after ten answers in a row that name no group,
/// no object is told its group is missing. `answers`: the leader's answers in order (found or
/// not); whether the breaker may be open after them.
pub fn breaker_may_be_open(answers: &[bool]) -> bool {
    answers.len() >= 10 && answers[answers.len() - 10..].iter().all(|found| !found)
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

/// The replicas' lease duration (the operator's default, as the chart runs it).
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a standby asks for the lease (the operator's: a third of the lease duration).
pub const RETRY: Duration = Duration::from_secs(5);

/// When a replica should lead at the latest, counting only time the operator could act, after
/// the leader went at `since`, the first replica still running having started at `first_start`.
/// A standby takes the lease once it has seen the dead leader's record unchanged for a lease
/// duration (from when *it* first saw it), asking every retry period: one retry to see it, the
/// lease, one retry to take it.
pub fn election_promise(since: Instant, first_start: Instant) -> Instant {
    since.max(first_start) + LEASE + 2 * RETRY
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    fn world() -> World {
        let mut world = World {
            roles: ["soak-a", "soak-b", "soak-x"].map(String::from).into(),
            allowed: ["soak-a", "soak-b", "soak-c"].map(String::from).into(),
            k10: K10 {
                readable: true,
                prefix: s("soak:"),
                group_claim: true,
                allow_list: vec![],
            },
            ..World::default()
        };
        world.namespaces.insert(s("n1"), Some(s("a")));
        world.namespaces.insert(s("n2"), Some(s("b")));
        world.specs.insert(
            s("o"),
            Spec {
                id: s("i"),
                prefix: None,
                cluster_roles: vec![s("soak-a"), s("soak-c"), s("soak-x")],
                roles: vec![
                    (s("soak-b"), Place::Team(s("a"))),
                    (s("soak-b"), Place::Namespace(s("gone"))),
                ],
            },
        );
        world
    }

    #[test]
    fn the_model_gives_only_allowed_existing_roles_where_they_apply() {
        let grants: BTreeSet<Grant> = [
            (s("soak:i"), s("soak-a"), None),
            (s("soak:i"), s("soak-b"), Some(s("n1"))),
        ]
        .into();
        let expected = model(&world());
        assert_eq!(expected.required, grants);
        assert_eq!(expected.allowed, grants);
        assert!(expected.must_hold(&(s("soak:i"), s("soak-a"), Some(s("n2")))));
        assert!(!expected.may_hold(&(s("soak:i"), s("soak-b"), Some(s("n2")))));
    }

    #[test]
    fn unreadable_k10_settings_hold_the_status_prefix_and_nothing_for_an_edited_spec() {
        let mut world = world();
        world.k10.readable = false;
        // Edited since, or never reconciled: nothing is required, nothing allowed.
        assert_eq!(model(&world), Expected::default());
        world.holds.insert(s("o"), Hold::Maybe([s("soak:")].into()));
        let maybe = model(&world);
        assert!(maybe.required.is_empty());
        assert!(maybe.may_hold(&(s("soak:i"), s("soak-a"), None)));
        world.holds.insert(s("o"), Hold::Prefix(s("k10:")));
        assert!(model(&world).must_hold(&(s("k10:i"), s("soak-a"), None)));
        assert!(!model(&world).may_hold(&(s("soak:i"), s("soak-a"), None)));
        // An explicit prefix needs nothing of K10.
        world.specs.get_mut("o").unwrap().prefix = Some(s("other:"));
        assert!(model(&world).must_hold(&(s("other:i"), s("soak-a"), None)));
    }

    #[test]
    fn a_squatted_name_is_not_required_but_may_be_held() {
        let mut world = world();
        world.squatted.insert((Some(s("n1")), s("o:soak-b")));
        let expected = model(&world);
        let blocked = (s("soak:i"), s("soak-b"), Some(s("n1")));
        assert!(!expected.must_hold(&blocked));
        assert!(expected.may_hold(&blocked));
        assert!(expected.must_hold(&(s("soak:i"), s("soak-a"), None)));
    }

    #[test]
    fn k10_presents_only_its_prefix_with_the_groups_claim_and_the_allow_list_both_ways() {
        let mut k10 = world().k10;
        assert_eq!(presents(&k10, "soak:i", "i"), Presents::Yes);
        assert_eq!(presents(&k10, "other:i", "i"), Presents::No);
        k10.allow_list = vec![s("j"), s("soak:j")];
        assert_eq!(presents(&k10, "soak:i", "i"), Presents::No);
        k10.allow_list.push(s("i"));
        assert_eq!(presents(&k10, "soak:i", "i"), Presents::Unknown);
        k10.allow_list.push(s("soak:i"));
        assert_eq!(presents(&k10, "soak:i", "i"), Presents::Yes);
        k10.group_claim = false;
        assert_eq!(presents(&k10, "soak:i", "i"), Presents::No);
        k10.readable = false;
        assert_eq!(presents(&k10, "soak:i", "i"), Presents::Unknown);
    }

    #[test]
    fn the_breaker_opens_after_ten_missing_in_a_row() {
        let mut answers = vec![true];
        answers.extend([false; 9]);
        assert!(!breaker_may_be_open(&answers));
        answers.push(false);
        assert!(breaker_may_be_open(&answers));
        answers.push(true);
        assert!(!breaker_may_be_open(&answers));
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
}
