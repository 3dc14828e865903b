//! Observe: what a reconcile needs to know about the world, read into values before anything is
//! written: the bindings to revoke ([`stale`]), then the roles, namespaces and names the plan
//! needs ([`observe`]). The watch caches answer almost everything; the API server is asked only
//! about a planned name missing from the cache of an object already in conflict (foreign
//! bindings are not cached).

use std::collections::BTreeSet;
use std::sync::Arc;

use groupbinder_api::desired::{BindingKey, Planned};
use groupbinder_api::{Allowlist, Plan, RoleKind};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};

use super::outcome::Problem;
use crate::kinds::{Binding, api};
use crate::watch::caches::Caches;
use crate::watch::owners::{Claim, OwnerIndex, claim_binding, controller_of};
use groupbinder_api::ownership::{binds_allowed_role, labelled_as_ours};

/// What has a planned binding's name now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Found<B> {
    /// Nothing.
    Absent,
    /// The object's own binding.
    Ours {
        /// As it is.
        current: Arc<B>,
        /// It lost its controller ownerReference (it still carries the object's uid label).
        orphaned: bool,
    },
    /// Someone else's binding: it is never written to.
    Foreign {
        /// Who controls it, for the status.
        holder: String,
    },
}

impl<B: Binding> Found<B> {
    /// What `current`, found at a name the AzureGroupBinding with `uid` plans, is to that object
    /// under `allowed` (see [`crate::watch::owners::claim_binding`]).
    pub(crate) fn of(current: Option<Arc<B>>, uid: &str, allowed: &Allowlist) -> Self {
        let Some(current) = current else {
            return Found::Absent;
        };
        let orphaned = match claim_binding(&*current, allowed) {
            Claim::Controlled(owner) if owner == uid => false,
            Claim::Orphaned(Some(owner)) if owner == uid => true,
            // At a name only this object plans, groupbinder's binding (labelled, of an allowed
            // role) that someone gave to another object, or to none: taken back.
            _ if labelled_as_ours(current.meta()) && binds_allowed_role(&*current, allowed) => true,
            Claim::Controlled(_) | Claim::Orphaned(_) | Claim::Foreign => {
                let holder = match controller_of(current.meta()) {
                    Some(o) => format!("controlled by {} {}", o.kind, o.name),
                    None => "no controller ownerReference".to_owned(),
                };
                return Found::Foreign { holder };
            }
        };
        Found::Ours { current, orphaned }
    }
}

/// Bindings an object claims that its plan does not hold: to be deleted.
#[derive(Debug, Default)]
pub(crate) struct Stale {
    /// ClusterRoleBindings.
    pub(crate) cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
    /// RoleBindings.
    pub(crate) role_bindings: Vec<Arc<RoleBinding>>,
}

impl Stale {
    /// Whether there is nothing to delete.
    pub(crate) fn is_empty(&self) -> bool {
        self.cluster_role_bindings.is_empty() && self.role_bindings.is_empty()
    }
}

/// What a reconcile found for its plan.
#[derive(Debug)]
pub(crate) struct Observed<'p> {
    /// Each planned ClusterRoleBinding and what has its name.
    pub(crate) cluster_role_bindings:
        Vec<(&'p Planned<ClusterRoleBinding>, Found<ClusterRoleBinding>)>,
    /// Each planned RoleBinding whose namespace exists, and what has its name.
    pub(crate) role_bindings: Vec<(&'p Planned<RoleBinding>, Found<RoleBinding>)>,
    /// Roles that do not exist, namespaces that do not exist (their RoleBindings wait).
    pub(crate) missing: Vec<Problem>,
}

/// Reading a binding from the API server failed.
#[derive(Debug, thiserror::Error)]
#[error("reading {binding}: {source}")]
pub struct ObserveError {
    /// Which binding.
    pub binding: BindingKey,
    /// The API server's answer.
    #[source]
    pub source: kube::Error,
}

/// The bindings the object with `uid` claims whose keys `keep` does not hold, and which no other
/// living object plans (that one takes them back: see [`Caches::planner`]): found through the
/// owner index, so this costs O(bindings of this object).
pub(crate) fn stale(caches: &Caches, uid: &str, keep: &BTreeSet<BindingKey>) -> Stale {
    Stale {
        cluster_role_bindings: claimed_except(
            caches,
            &caches.cluster_role_bindings,
            &caches.cluster_role_binding_owners,
            uid,
            keep,
        ),
        role_bindings: claimed_except(
            caches,
            &caches.role_bindings,
            &caches.role_binding_owners,
            uid,
            keep,
        ),
    }
}

fn claimed_except<B: Binding>(
    caches: &Caches,
    cache: &Store<B>,
    owners: &OwnerIndex<B>,
    uid: &str,
    keep: &BTreeSet<BindingKey>,
) -> Vec<Arc<B>> {
    owners
        .owned_by(uid)
        .iter()
        .filter_map(|reference| cache.get(reference))
        .filter(|b| {
            matches!(
                Found::of(Some(b.clone()), uid, owners.allowed()),
                Found::Ours { .. }
            ) && b.key().is_some_and(|key| {
                !keep.contains(&key) && caches.planner(&key, Some(uid)).is_none()
            })
        })
        .collect()
}

/// Observes what `plan` (of the object with `uid`) needs. With `look_first` (the object is in
/// conflict), a planned name missing from the cache is read from the API server, so that a
/// conflict retried every minute costs a read, not a failed write.
///
/// More planned RoleBindings than `cap`: only those already in place (or whose name someone else
/// holds) are observed, so apply keeps them and adds none, and a `TooManyRoleBindings` problem
/// says so.
pub(crate) async fn observe<'p>(
    caches: &Caches,
    client: &Client,
    uid: &str,
    plan: &'p Plan,
    look_first: bool,
    cap: usize,
) -> Result<Observed<'p>, ObserveError> {
    let mut missing = Vec::new();
    for planned in &plan.cluster_role_bindings {
        if caches.cluster_role_exists(&planned.role.name) {
            continue;
        }
        missing.push(role_not_found(planned, None));
    }
    let mut role_bindings = Vec::new();
    for planned in &plan.role_bindings {
        let Some(namespace) = planned.key.namespace() else {
            continue; // a RoleBinding's key always has one
        };
        if !caches.namespace_exists(namespace) {
            missing.push(Problem::NamespaceNotFound {
                namespace: namespace.to_owned(),
            });
            continue;
        }
        let exists = match planned.role.kind {
            RoleKind::ClusterRole => caches.cluster_role_exists(&planned.role.name),
            RoleKind::Role => caches.role_exists(namespace, &planned.role.name),
        };
        if !exists {
            let role_namespace = (planned.role.kind == RoleKind::Role).then_some(namespace);
            missing.push(role_not_found(planned, role_namespace));
        }
        role_bindings.push(planned);
    }
    let cluster = futures::future::try_join_all(plan.cluster_role_bindings.iter().map(|p| {
        found(
            client,
            caches,
            &caches.cluster_role_bindings,
            uid,
            p,
            look_first,
        )
    }));
    let namespaced = futures::future::try_join_all(
        role_bindings
            .into_iter()
            .map(|p| found(client, caches, &caches.role_bindings, uid, p, look_first)),
    );
    let (cluster_role_bindings, mut role_bindings) = tokio::try_join!(cluster, namespaced)?;
    if role_bindings.len() > cap {
        let planned = role_bindings.len();
        role_bindings.retain(|(_, found)| !matches!(found, Found::Absent));
        missing.push(Problem::TooManyRoleBindings {
            planned,
            cap,
            kept: role_bindings.len(),
        });
    }
    Ok(Observed {
        cluster_role_bindings,
        role_bindings,
        missing,
    })
}

fn role_not_found<B>(planned: &Planned<B>, namespace: Option<&str>) -> Problem {
    Problem::RoleNotFound {
        kind: planned.role.kind,
        namespace: namespace.map(str::to_owned),
        name: planned.role.name.clone(),
    }
}

async fn found<'p, B: Binding>(
    client: &Client,
    caches: &Caches,
    cache: &Store<B>,
    uid: &str,
    planned: &'p Planned<B>,
    look_first: bool,
) -> Result<(&'p Planned<B>, Found<B>), ObserveError> {
    let key = &planned.key;
    let mut reference = ObjectRef::<B>::new(key.name());
    if let Some(namespace) = key.namespace() {
        reference = reference.within(namespace);
    }
    let current = match cache.get(&reference) {
        Some(cached) => Some(cached),
        // Not labelled as ours (or not cached yet): foreign objects are not cached, so ask.
        None if look_first => look(client, key).await.map_err(|source| ObserveError {
            binding: key.clone(),
            source,
        })?,
        None => None,
    };
    Ok((planned, Found::of(current, uid, &caches.allowed)))
}

/// Reads the binding `key` from the API server.
pub(crate) async fn look<B: Binding>(
    client: &Client,
    key: &BindingKey,
) -> Result<Option<Arc<B>>, kube::Error> {
    Ok(api::<B>(client, key)
        .get_opt(key.name())
        .await?
        .map(Arc::new))
}

#[cfg(test)]
mod tests;
