//! One reconcile of an `AzureGroupBinding`, as a pipeline:
//! read the caches → plan (pure, [`groupbinder_api::plan`]) → revoke what the plan does not hold →
//! apply → write status if it changed.
//!
//! Fail closed: a binding exists only while the object's *current* spec names it and the
//! *current* allowlist permits it. Revoking comes first and happens whatever else goes wrong: a
//! spec whose group cannot be computed, an object that cannot be decoded, and an object being
//! deleted keep no binding at all.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use groupbinder_api::conditions::READY;
use groupbinder_api::desired::{BindingKey, key_of};
use groupbinder_api::names::FIELD_MANAGER;
use groupbinder_api::{AzureGroupBinding, AzureGroupBindingStatus, Plan, RoleKind, Settings};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::apply::{self, Applied, ApplyError, Binding};
use crate::events::{Changes, Publisher, Type as EventType};
use crate::metrics::{CategoryLabels, KindLabels, Metrics};
use crate::owners::OwnerIndex;
use crate::status::{Outcome, Problem, binding_status, desired_status};

/// The watched object: an `AzureGroupBinding`, or what could be read of one that does not decode.
pub type Guarded = DeserializeGuard<AzureGroupBinding>;

/// The watch caches a reconcile reads instead of the API server.
#[derive(Clone)]
pub struct Caches {
    /// AzureGroupBindings.
    pub agbs: Store<Guarded>,
    /// ClusterRoleBindings labelled as managed by groupbinder.
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    /// The cached ClusterRoleBindings by controller.
    pub cluster_role_binding_owners: OwnerIndex<ClusterRoleBinding>,
    /// RoleBindings labelled as managed by groupbinder.
    pub role_bindings: Store<RoleBinding>,
    /// The cached RoleBindings by controller.
    pub role_binding_owners: OwnerIndex<RoleBinding>,
    /// Every ClusterRole (metadata only).
    pub cluster_roles: Store<PartialObjectMeta<ClusterRole>>,
    /// Every Role (metadata only).
    pub roles: Store<PartialObjectMeta<Role>>,
    /// Every Namespace (metadata only).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl Caches {
    /// Waits until the caches of bindings, roles and namespaces hold their initial lists (the
    /// controller itself waits for the AzureGroupBinding cache before any reconcile).
    ///
    /// Call it from one task only: kube's `Store::wait_until_ready` wakes only the last of several
    /// concurrent waiters of one store. Reconciles wait on [`Context`]'s `synced` signal instead,
    /// which that one task sets.
    pub async fn wait_ready(&self) {
        let _ = tokio::join!(
            self.cluster_role_bindings.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.cluster_roles.wait_until_ready(),
            self.roles.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        );
    }

    fn cluster_role_exists(&self, name: &str) -> bool {
        self.cluster_roles.get(&ObjectRef::new(name)).is_some()
    }

    fn role_exists(&self, namespace: &str, name: &str) -> bool {
        self.roles
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    fn namespace_exists(&self, name: &str) -> bool {
        self.namespaces.get(&ObjectRef::new(name)).is_some()
    }
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

/// Everything a reconcile needs.
pub struct Context {
    /// Client for writes and for lookups of uncached names.
    pub client: Client,
    /// The operator's settings (K10 release, allowlist, ...).
    pub settings: Settings,
    /// Watch caches.
    pub caches: Caches,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events.
    pub events: Publisher,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
    /// Statuses written that the cache may not show yet.
    written: Mutex<crate::status::Written>,
    /// `true` once every cache holds its initial list. Until then a reconcile could mistake a role
    /// for missing or a binding for absent, and write for nothing.
    synced: tokio::sync::watch::Receiver<bool>,
    /// How long to wait before looking at a conflict again (the foreign binding is not watched).
    pub conflict_retry: Duration,
    /// Cancelled when this replica stops leading: running reconciles are abandoned at once, so no
    /// write is started after another replica may have taken over.
    lost: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context.
    pub fn new(
        client: Client,
        settings: Settings,
        caches: Caches,
        metrics: Arc<Metrics>,
        events: Publisher,
        synced: tokio::sync::watch::Receiver<bool>,
        lost: tokio_util::sync::CancellationToken,
    ) -> Self {
        Context {
            client,
            settings,
            caches,
            metrics,
            events,
            failures: Mutex::default(),
            written: Mutex::default(),
            synced,
            conflict_retry: Duration::from_secs(60),
            lost,
        }
    }

    /// `agb` with the status this process last wrote to it, if the cache does not show it yet.
    fn with_written_status<'a>(&self, agb: &'a AzureGroupBinding) -> Cow<'a, AzureGroupBinding> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(agb)
    }

    fn remember_status(&self, agb: &AzureGroupBinding, status: AzureGroupBindingStatus) {
        let agbs = &self.caches.agbs;
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remember(agb, status, agbs.len(), |name| {
                agbs.get(&ObjectRef::new(name)).is_some()
            });
    }
}

/// Writing the status failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the status of AzureGroupBinding {name}: {source}")]
pub struct StatusError {
    name: String,
    #[source]
    source: kube::Error,
}

/// Why a reconcile failed. Each is retried with per-object exponential backoff; a spec that is
/// wrong is not an error but a `Ready=False` status, and is not retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A binding could not be written.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The status could not be written.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The object came without a uid (cannot happen for objects read from the API server).
    #[error("AzureGroupBinding {0} has no uid")]
    NoUid(String),
    /// Leadership was lost while the reconcile ran; it was abandoned.
    #[error("abandoned: this replica is no longer the leader")]
    Abandoned,
}

impl ReconcileError {
    /// A low-cardinality category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Apply(e) if matches!(&e.source, kube::Error::Api(s) if s.code == 403) => {
                "forbidden"
            }
            ReconcileError::Apply(_) => "apply",
            ReconcileError::Status(_) => "status",
            ReconcileError::NoUid(_) => "invalid_object",
            ReconcileError::Abandoned => "abandoned",
        }
    }
}

/// Reconciles one object.
pub async fn reconcile(object: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    // An error means the controller is shutting down; the reconcile then runs on what is cached.
    let _ = ctx.synced.clone().wait_for(|synced| *synced).await;
    ctx.metrics.reconciles.inc();
    let work = async {
        match &object.0 {
            Ok(agb) => reconcile_valid(agb, &ctx).await,
            Err(invalid) => report_undecodable(invalid, &ctx).await,
        }
    };
    let result = tokio::select! {
        biased;
        () = ctx.lost.cancelled() => Err(ReconcileError::Abandoned),
        result = work => result,
    };
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ObjectRef::from_obj(&*object));
    }
    result
}

/// Backoff for failed reconciles: 0.5 s, doubling per consecutive failure of the same object, at
/// most 5 minutes. Other objects are not slowed down.
pub fn error_policy(object: Arc<Guarded>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .get_or_create(&CategoryLabels {
            category: error.category(),
        })
        .inc();
    let mut failures = ctx
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let attempts = failures.entry(ObjectRef::from_obj(&*object)).or_insert(0);
    *attempts = attempts.saturating_add(1);
    let delay = backoff(*attempts);
    tracing::warn!(object = %object.name_any(), %error, attempts = *attempts, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The delay before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_millis(500);
    base.saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(Duration::from_secs(300))
}

async fn reconcile_valid(agb: &AzureGroupBinding, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = agb.name_any();
    let uid = agb
        .uid()
        .ok_or_else(|| ReconcileError::NoUid(name.clone()))?;
    if agb.metadata.deletion_timestamp.is_some() {
        return reconcile_deleting(agb, &uid, ctx).await;
    }
    let agb = &*ctx.with_written_status(agb);
    let mut changes = Changes::default();
    let result = match groupbinder_api::plan(agb, &ctx.settings) {
        // No group: nothing may stay bound.
        Err(refused) => revoke(&uid, &BTreeSet::new(), &mut changes, ctx)
            .await
            .map(|()| Outcome::Refused(refused)),
        Ok(plan) => apply_plan(agb, &uid, &plan, &mut changes, ctx).await,
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            // Say so in the status (a 403 here usually means the operator may not bind the
            // role), then retry with backoff.
            announce(agb, &changes, None, ctx).await;
            write_apply_failure(agb, &error, ctx).await;
            return Err(error.into());
        }
    };
    let became = write_status(agb, &outcome, ctx).await?;
    announce(agb, &changes, became.as_ref(), ctx).await;
    let conflict = matches!(&outcome, Outcome::Applied { problems, .. }
        if problems.iter().any(|p| matches!(p, Problem::Conflict { .. })));
    Ok(if conflict {
        Action::requeue(ctx.conflict_retry)
    } else {
        Action::await_change()
    })
}

/// An object being deleted grants nothing from that moment: its bindings are deleted at once,
/// without waiting for the garbage collector (which a `--cascade=orphan` deletion or a foreign
/// finalizer would hold back, or stop altogether), whatever its spec says meanwhile.
async fn reconcile_deleting(
    agb: &AzureGroupBinding,
    uid: &str,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let mut changes = Changes::default();
    let revoked = revoke(uid, &BTreeSet::new(), &mut changes, ctx).await;
    if !changes.is_empty() {
        let condition = groupbinder_api::conditions::condition(
            &[],
            READY,
            false,
            groupbinder_api::conditions::reason::DELETING,
            "being deleted: its bindings were deleted and it grants nothing".to_owned(),
            agb.metadata.generation,
            &Time(Timestamp::now()),
        );
        announce(agb, &changes, Some(&condition), ctx).await;
        // Best effort: the object may be gone by now.
        let status = serde_json::json!({
            "observedGeneration": agb.metadata.generation,
            "conditions": [condition],
        });
        if let Err(error) = patch_status(&agb.name_any(), status, ctx).await {
            tracing::debug!(%error, "could not record the deletion in the status");
        }
    }
    revoked?;
    Ok(Action::await_change())
}

/// Deletes every binding `uid` claims whose key is not in `keep`: its controller's bindings, and
/// those that lost their ownerReference but still carry its uid label.
async fn revoke(
    uid: &str,
    keep: &BTreeSet<BindingKey>,
    changes: &mut Changes,
    ctx: &Context,
) -> Result<(), ApplyError> {
    let caches = &ctx.caches;
    let crbs = (
        &caches.cluster_role_bindings,
        &caches.cluster_role_binding_owners,
    );
    let rbs = (&caches.role_bindings, &caches.role_binding_owners);
    let (crbs, rbs) = tokio::join!(
        delete_stale(uid, keep, crbs, ctx),
        delete_stale(uid, keep, rbs, ctx)
    );
    for result in [&crbs, &rbs] {
        let (Ok(keys) | Err((keys, _))) = result;
        for key in keys {
            changes.deleted(key);
        }
    }
    match (crbs, rbs) {
        (Err((_, error)), _) | (_, Err((_, error))) => Err(error),
        _ => Ok(()),
    }
}

/// Revokes what the plan does not hold, then makes every planned binding exist (all of one
/// object's at once), noting each change in `changes`.
async fn apply_plan(
    agb: &AzureGroupBinding,
    uid: &str,
    plan: &Plan,
    changes: &mut Changes,
    ctx: &Context,
) -> Result<Outcome, ApplyError> {
    // Bindings this object claims but no longer plans (its spec or the operator's settings
    // changed): found through the owner index, so this costs O(bindings of this object).
    revoke(uid, &plan.keys(), changes, ctx).await?;

    let caches = &ctx.caches;
    let mut problems = Vec::new();
    if !plan.refused.is_empty() {
        problems.push(Problem::RoleNotAllowed {
            message: groupbinder_api::desired::refusal_message(
                &plan.refused,
                &ctx.settings.allowed,
            ),
        });
    }
    for crb in &plan.cluster_role_bindings {
        let role = &crb.role_ref.name;
        if !caches.cluster_role_exists(role) {
            problems.push(Problem::RoleNotFound {
                kind: RoleKind::ClusterRole,
                namespace: None,
                name: role.clone(),
            });
        }
    }
    let mut role_bindings = Vec::new();
    for rb in &plan.role_bindings {
        let namespace = rb.metadata.namespace.clone().unwrap_or_default();
        if !caches.namespace_exists(&namespace) {
            problems.push(Problem::NamespaceNotFound { namespace });
            continue;
        }
        let role = &rb.role_ref.name;
        let (kind, exists) = match rb.role_ref.kind.as_str() {
            "ClusterRole" => (RoleKind::ClusterRole, caches.cluster_role_exists(role)),
            _ => (RoleKind::Role, caches.role_exists(&namespace, role)),
        };
        if !exists {
            let namespace = (kind == RoleKind::Role).then(|| namespace.clone());
            problems.push(Problem::RoleNotFound {
                kind,
                namespace,
                name: role.clone(),
            });
        }
        role_bindings.push(rb);
    }

    // An object already in conflict looks before it writes (see apply::ensure).
    let in_conflict = agb
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == READY && c.reason == groupbinder_api::conditions::reason::CONFLICT);
    let cluster = futures::future::try_join_all(plan.cluster_role_bindings.iter().map(|b| {
        ensure_one(
            &ctx.client,
            &caches.cluster_role_bindings,
            uid,
            b,
            in_conflict,
        )
    }));
    let namespaced = futures::future::try_join_all(
        role_bindings
            .iter()
            .map(|b| ensure_one(&ctx.client, &caches.role_bindings, uid, *b, in_conflict)),
    );
    let (cluster, namespaced) = tokio::try_join!(cluster, namespaced)?;

    let mut bindings = Vec::new();
    for (key, role, applied) in cluster.into_iter().chain(namespaced) {
        match applied {
            Applied::Conflict { holder } => {
                problems.push(Problem::Conflict {
                    binding: key,
                    holder,
                });
                continue;
            }
            Applied::Created => {
                ctx.metrics.write("create");
                changes.created(&key);
            }
            Applied::Updated => {
                ctx.metrics.write("apply");
                changes.put_back(&key);
            }
            Applied::Adopted => {
                ctx.metrics.write("apply");
                ctx.metrics.orphan("adopted");
                changes.adopted(&key);
            }
            Applied::Unchanged => {}
        }
        bindings.push(binding_status(&key, &role));
    }
    Ok(Outcome::Applied {
        group: plan.group.clone(),
        bindings,
        problems,
    })
}

/// Ensures one binding; returns its key, its role and what was done.
async fn ensure_one<B: Binding>(
    client: &Client,
    cache: &Store<B>,
    uid: &str,
    desired: &B,
    look_first: bool,
) -> Result<(BindingKey, String, Applied), ApplyError> {
    let applied = apply::ensure(client, cache, uid, desired, look_first).await?;
    Ok((
        key_of(desired.meta()),
        desired.role_ref().name.clone(),
        applied,
    ))
}

/// Deletes the cached bindings of kind `B` that `uid` claims and `keep` does not hold; returns
/// the keys deleted, and the error that stopped it, if any.
async fn delete_stale<B: Binding>(
    uid: &str,
    keep: &BTreeSet<BindingKey>,
    (cache, owners): (&Store<B>, &OwnerIndex<B>),
    ctx: &Context,
) -> Result<Vec<BindingKey>, (Vec<BindingKey>, ApplyError)> {
    let mut deleted = Vec::new();
    for stale in apply::stale(cache, owners, uid, keep) {
        let key = key_of(stale.meta());
        let api = B::api(ctx.client.clone(), key.namespace.as_deref());
        if let Err(error) = apply::delete(&api, &key, stale.meta()).await {
            return Err((deleted, error));
        }
        ctx.metrics.write("delete");
        deleted.push(key);
    }
    Ok(deleted)
}

/// Writes the status `outcome` calls for, unless the object already has it: no write at all in
/// the steady state. Returns the new `Ready` condition if it changed reason or status.
async fn write_status(
    agb: &AzureGroupBinding,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<Option<Condition>, StatusError> {
    let now = Time(Timestamp::now());
    let status = desired_status(agb, outcome, &now);
    record_metrics(ctx, &status);
    if agb.status.as_ref() == Some(&status) {
        return Ok(None);
    }
    let ready = status.conditions.iter().find(|c| c.type_ == READY).cloned();
    patch_status(
        &agb.name_any(),
        serde_json::to_value(&status).unwrap_or_default(),
        ctx,
    )
    .await?;
    ctx.metrics.write("status");
    ctx.remember_status(agb, status.clone());

    let was = agb
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    Ok(ready.filter(|r| was.is_none_or(|w| w.reason != r.reason || w.status != r.status)))
}

/// Publishes the one event for a reconcile, if it has something to tell
/// ([`Changes::announcement`]).
async fn announce(
    agb: &AzureGroupBinding,
    changes: &Changes,
    became: Option<&Condition>,
    ctx: &Context,
) {
    if let Some(event) = changes.announcement(became) {
        publish(ctx, agb, event.type_, &event.reason, event.note).await;
    }
}

async fn patch_status(
    name: &str,
    status: serde_json::Value,
    ctx: &Context,
) -> Result<(), StatusError> {
    let api: Api<AzureGroupBinding> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": AzureGroupBinding::api_version(&()),
        "kind": AzureGroupBinding::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(patch))
        .await
        .map(|_| ())
        .map_err(|source| StatusError {
            name: name.to_owned(),
            source,
        })
}

fn record_metrics(ctx: &Context, status: &groupbinder_api::AzureGroupBindingStatus) {
    if let Some(ready) = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.status == "False")
    {
        let category = crate::status::reason_label(&ready.reason);
        ctx.metrics
            .not_ready
            .get_or_create(&CategoryLabels { category })
            .inc();
    }
    let crbs = ctx.caches.cluster_role_bindings.len();
    let rbs = ctx.caches.role_bindings.len();
    ctx.metrics
        .bindings
        .get_or_create(&KindLabels {
            kind: "ClusterRoleBinding",
        })
        .set(i64::try_from(crbs).unwrap_or(i64::MAX));
    ctx.metrics
        .bindings
        .get_or_create(&KindLabels {
            kind: "RoleBinding",
        })
        .set(i64::try_from(rbs).unwrap_or(i64::MAX));
}

/// Best effort: say in the status that a write failed, keeping what is in place.
async fn write_apply_failure(agb: &AzureGroupBinding, error: &ApplyError, ctx: &Context) {
    let now = Time(Timestamp::now());
    let mut status = agb.status.clone().unwrap_or_default();
    let previous = std::mem::take(&mut status.conditions);
    status.observed_generation = agb.metadata.generation;
    status.conditions = vec![groupbinder_api::conditions::condition(
        &previous,
        READY,
        false,
        groupbinder_api::conditions::reason::APPLY_FAILED,
        format!("{error}; retrying with backoff"),
        agb.metadata.generation,
        &now,
    )];
    if agb.status.as_ref() == Some(&status) {
        return;
    }
    let value = serde_json::to_value(&status).unwrap_or_default();
    if let Err(e) = patch_status(&agb.name_any(), value, ctx).await {
        tracing::debug!(error = %e, "could not record the apply failure in the status");
    }
}

/// An object the API server holds but this version cannot decode: report it, do not fail the
/// watch, do not retry (a change to the object triggers a new reconcile).
async fn report_undecodable(
    invalid: &InvalidObject,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    tracing::warn!(object = %name, error = %invalid.error, "AzureGroupBinding cannot be decoded");
    // Whatever it granted before, it grants nothing now.
    if let Some(uid) = invalid.metadata.uid.as_deref() {
        let mut changes = Changes::default();
        revoke(uid, &BTreeSet::new(), &mut changes, ctx).await?;
    }
    let generation = invalid.metadata.generation;
    let condition = groupbinder_api::conditions::condition(
        &[],
        READY,
        false,
        groupbinder_api::conditions::reason::INVALID_SPEC,
        format!(
            "the spec cannot be read: {}; fix it (see `kubectl explain azuregroupbinding.spec`); this object grants nothing until it is fixed",
            invalid.error
        ),
        generation,
        &Time(Timestamp::now()),
    );
    let status = serde_json::json!({ "observedGeneration": generation, "conditions": [condition] });
    patch_status(&name, status, ctx).await?;
    ctx.metrics.write("status");
    Ok(Action::await_change())
}

async fn publish(
    ctx: &Context,
    agb: &AzureGroupBinding,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let regarding = agb.object_ref(&());
    if let Err(error) = ctx.events.publish(regarding, type_, reason, note).await {
        tracing::debug!(%error, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(5), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
