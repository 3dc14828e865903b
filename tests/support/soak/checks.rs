//! What the soak checks, every few steps: the Lease, every grant ever expected or seen against
//! the model (SubjectAccessReviews and a LIST of every binding), the objects that are not
//! groupbinder's, and what each object's `Ready=True` claims.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::model::{self, Grant, Hold, Presents};
use super::{
    ELECTION_SLACK, ENTRA_BOUND, ENTRA_TTL, ENTRA_WINDOW, MANAGED_BY, ROLES, Soak, Violation,
    WITNESS_GROUP,
};
use crate::Who;
use groupbinder_api::AzureGroupBinding;

impl Soak<'_> {
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
        let leading = holder
            .as_ref()
            .is_some_and(|h| self.replicas.contains_key(h));
        let now = Instant::now();
        // Another replica leads (a standby took over before a check saw no leader): its Entra
        // ID lookups start afresh.
        if leading && holder != self.holder {
            self.leading_since = now;
        }
        self.holder = holder.filter(|_| leading);
        match (leading, self.leaderless_since) {
            (true, Some((since, _))) => {
                self.outage(since, now);
                self.report.worst_leaderless = self.report.worst_leaderless.max(now - since);
                self.leaderless_since = None;
                self.leading_since = now;
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
                let promise = model::election_promise(since, first_start);
                let base = since.max(first_start);
                let waited = model::credited(&self.outages, base, now);
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
    async fn bound(&mut self) -> anyhow::Result<BTreeMap<Grant, bool>> {
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
        let mut givers: BTreeMap<Grant, Vec<String>> = BTreeMap::new();
        let mut add = |grant: Grant, ours: bool, meta: &kube::api::ObjectMeta| {
            let entry = bound.entry(grant.clone()).or_insert(false);
            *entry |= ours;
            givers.entry(grant).or_default().push(described(meta));
        };
        for b in crbs.list(&ListParams::default()).await?.items {
            let role = &b.role_ref.name;
            if ROLES.contains(&role.as_str()) {
                let ours = groupbinders(&b.metadata, role);
                for s in b.subjects.iter().flatten().filter(|s| s.kind == "Group") {
                    add((s.name.clone(), role.clone(), None), ours, &b.metadata);
                }
            }
        }
        for b in rbs.list(&ListParams::default()).await?.items {
            let role = &b.role_ref.name;
            if ROLES.contains(&role.as_str()) {
                let ours = groupbinders(&b.metadata, role);
                for s in b.subjects.iter().flatten().filter(|s| s.kind == "Group") {
                    add(
                        (s.name.clone(), role.clone(), b.namespace()),
                        ours,
                        &b.metadata,
                    );
                }
            }
        }
        self.givers = givers;
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

    /// While K10's settings cannot be read: an object whose status, written for its spec with
    /// K10's settings unreadable, names a group under one of the prefixes it may hold, holds that
    /// one from now on (the README: the last known prefix holds, never a revocation).
    fn settle_holds(&mut self, listed: &[AzureGroupBinding]) {
        if self.world.k10.readable {
            return;
        }
        for agb in listed {
            let name = agb.name_any();
            let (Some(spec), Some(Hold::Maybe(prefixes))) =
                (self.world.specs.get(&name), self.world.holds.get(&name))
            else {
                continue;
            };
            let Some(status) = agb.status.as_ref() else {
                continue;
            };
            let unreadable = status
                .conditions
                .iter()
                .any(|c| c.type_ == "K10Presents" && c.reason == "K10ConfigUnreadable");
            let held = status
                .group
                .as_deref()
                .and_then(|g| g.strip_suffix(&spec.id))
                .filter(|p| prefixes.contains(*p));
            if let (true, true, Some(prefix)) = (
                status.observed_generation == agb.metadata.generation,
                unreadable,
                held,
            ) {
                let hold = Hold::Prefix(prefix.to_owned());
                self.world.holds.insert(name, hold);
            }
        }
    }

    /// Compares the model with what the authorizer answers; `strict`: every difference is a
    /// violation now (the final check, after convergence).
    pub(super) async fn check(&mut self, strict: bool) -> anyhow::Result<()> {
        self.replace_exited()?;
        self.follow_the_lease().await;
        self.prune_leaving().await?;
        let listed = Api::<AzureGroupBinding>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        self.settle_holds(&listed);
        let expected = model::model(&self.world);
        let bound = self.bound().await?;
        self.history.extend(expected.allowed.iter().cloned());
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
            let has = self.holds(&key).await?;
            answers.insert(key.clone(), has);
            let entry = self.wrong.get(&key).copied();
            // Given only by bindings that are not groupbinder's (re-parented, say, and then the
            // allowlist narrowed, or taken out of its hands: never touched, by the rule), or
            // going with its namespace.
            let givers = |ours: bool| {
                let gives = |g: &Grant| bound.get(g).is_some_and(|o| *o || !ours);
                gives(&key) || (namespace.is_some() && gives(&(group.clone(), role.clone(), None)))
            };
            let not_groupbinders =
                has && !expected.may_hold(&key) && givers(false) && !givers(true);
            let leaving = namespace.as_ref().is_some_and(|n| self.leaving.contains(n));
            if not_groupbinders || leaving {
                if not_groupbinders {
                    self.report.not_groupbinders.insert(key.clone());
                }
                self.wrong.remove(&key);
                continue;
            }
            let right = if has {
                expected.may_hold(&key)
            } else {
                !expected.must_hold(&key)
            };
            if right {
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
                let given_by = self
                    .givers
                    .get(&key)
                    .map(|g| format!(" (given by {})", g.join("; ")))
                    .unwrap_or_default();
                self.violate(
                    kind,
                    step,
                    format!(
                        "{group} {} {role} {}{given_by}",
                        if has { "holds" } else { "lacks" },
                        namespace
                            .as_deref()
                            .map_or("cluster-wide".to_owned(), |n| format!("in {n}"))
                    ),
                    seen,
                );
                // Once a bound: the next violation of it only after another.
                self.wrong.insert(key.clone(), (now, self.step, has));
            }
        }
        self.check_foreign().await?;
        self.check_ready(&listed, &answers, now, strict).await
    }

    pub(super) fn violate(
        &mut self,
        kind: &'static str,
        step: usize,
        what: String,
        seen_for: Duration,
    ) {
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
                    format!(
                        "{kind} {name}{} was changed or deleted",
                        namespace.map_or(String::new(), |n| format!(" in {n}"))
                    ),
                    Duration::ZERO,
                );
                self.foreign.clear();
                return Ok(());
            }
        }
        Ok(())
    }

    /// Since when the operator should have told that `id` names no group (it may ask once the
    /// current leader leads and Entra ID answers; the answer is kept a TTL, then the window),
    /// if it names none and the breaker (ten missing answers in a row) cannot be open.
    fn entra_should_know(&self, id: &str) -> Option<Instant> {
        let missing = *self.entra.missing.get(id)?;
        let answers = self.entra.standin.group_answers_since(self.leading_since);
        if model::breaker_may_be_open(&answers) {
            return None;
        }
        // A new leader asks at its first reconcile of every object; a leader that had an
        // answer asks again when its TTL is up.
        Some(
            (missing + ENTRA_TTL)
                .max(self.leading_since)
                .max(self.entra.clear_from)
                + ENTRA_WINDOW,
        )
    }

    /// (d), (f) and (g): an object saying `Ready=True` for its current spec must hold every
    /// grant of its spec under the group its spec gives now, K10 must not say it will not
    /// present that group, and Entra ID must not have said for long that it names no group.
    async fn check_ready(
        &mut self,
        listed: &[AzureGroupBinding],
        answers: &BTreeMap<Grant, bool>,
        now: Instant,
        strict: bool,
    ) -> anyhow::Result<()> {
        let mut seen_now = BTreeSet::new();
        for agb in listed {
            let name = agb.name_any();
            let Some(spec) = self.world.specs.get(&name).cloned() else {
                continue;
            };
            let Some(status) = agb.status.as_ref() else {
                continue;
            };
            let current = status.observed_generation == agb.metadata.generation;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            match ready {
                Some(c) if current && c.status == "True" => {}
                Some(c) if current => {
                    *self.report.not_ready.entry(c.reason.clone()).or_default() += 1;
                    continue;
                }
                _ => continue,
            }
            self.report.ready_checks += 1;
            let group = status.group.clone().unwrap_or_default();
            // What is wrong: (kind, key, what, since).
            let mut wrong: Vec<(&'static str, String, String, Option<Instant>)> = Vec::new();
            let (may, _) = model::prefixes(&self.world, &name, &spec);
            match group.strip_suffix(&spec.id).filter(|p| may.contains(*p)) {
                None => wrong.push((
                    "(d) ready but missing",
                    format!("group {group}"),
                    format!("{name} says Ready=True for group {group:?}, which its spec does not give now"),
                    None,
                )),
                Some(prefix) => {
                    let (grants, _) = model::spec_grants(&self.world, &name, &spec, prefix);
                    for grant in grants {
                        let has = match answers.get(&grant) {
                            Some(has) => *has,
                            None => self.holds(&grant).await?,
                        };
                        if !has {
                            wrong.push((
                                "(d) ready but missing",
                                format!("{grant:?}"),
                                format!(
                                    "{name} says Ready=True, but {} lacks {} {}",
                                    grant.0,
                                    grant.1,
                                    grant.2.as_deref().unwrap_or("cluster-wide")
                                ),
                                None,
                            ));
                        }
                    }
                }
            }
            if model::presents(&self.world.k10, &group, &spec.id) == Presents::No {
                wrong.push((
                    "(f) ready but K10 would not present it",
                    "k10".to_owned(),
                    format!(
                        "{name} says Ready=True for {group}, but K10 as configured ({:?}) would not present it",
                        self.world.k10
                    ),
                    None,
                ));
            }
            if let Some(since) = self.entra_should_know(&spec.id).filter(|s| *s <= now) {
                wrong.push((
                    "(g) ready but no such group",
                    "entra".to_owned(),
                    format!(
                        "{name} says Ready=True, but {} has named no group in Entra ID since {:.1} s into the run",
                        spec.id,
                        (self.entra.missing[&spec.id] - self.started).as_secs_f64()
                    ),
                    Some(since),
                ));
            }
            for (kind, what_key, what, since) in wrong {
                let key = (name.clone(), what_key);
                seen_now.insert(key.clone());
                // (g) is counted from when the operator must know; the others from the change.
                let bound = if since.is_some() {
                    ENTRA_BOUND
                } else {
                    self.options.converge_bound
                };
                let (since, step) = *self.ready_wrong.entry(key.clone()).or_insert(match since {
                    Some(since) => (since, self.step),
                    None => self.last_change,
                });
                let seen = self.credited(since, now);
                self.report.worst_ready = self.report.worst_ready.max(seen);
                if strict || seen > bound {
                    self.violate(kind, step, what, seen);
                    // Once a bound: the next violation of it only after another.
                    self.ready_wrong.insert(key, (now, self.step));
                }
            }
        }
        self.ready_wrong.retain(|k, _| seen_now.contains(k));
        Ok(())
    }
}

/// A binding as the trace shows it: where, its name, groupbinder's labels, its controller, and
/// whether it is being deleted.
fn described(meta: &kube::api::ObjectMeta) -> String {
    let label = |key: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map_or("-", String::as_str)
            .to_owned()
    };
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map_or("none".to_owned(), |o| {
            format!("{} {} {}", o.kind, o.name, o.uid)
        });
    format!(
        "{}/{} managed-by={} uid-label={} controller={controller}{}",
        meta.namespace.as_deref().unwrap_or("-"),
        meta.name.as_deref().unwrap_or_default(),
        label(MANAGED_BY.0),
        label(super::UID_LABEL),
        if meta.deletion_timestamp.is_some() {
            " deleting"
        } else {
            ""
        },
    )
}
