//! One reconcile of an `AzureGroupBinding`, as a pipeline:
//!
//! 1. **plan** (pure, [`groupbinder_api::plan`]): the bindings the spec and allowlist give;
//! 2. **revoke** ([`observe::stale`] then [`apply::revoke`]): delete every binding the object
//!    claims that the plan does not hold — first, whatever else goes wrong;
//! 3. **observe** ([`observe::observe`]): roles and namespaces missing, what has each planned name;
//! 4. **apply** ([`apply::ensure_all`]): the writes, typed outcomes;
//! 5. **status** (pure, [`status::outcome`], [`status::desired_status`]) and **report**
//!    ([`report`]): the status if it changed, one event if something happened.
//!
//! Fail closed: a binding exists only while the object's *current* spec names it and the
//! *current* allowlist permits it. A spec whose group cannot be computed, an object that cannot be
//! decoded, and an object being deleted keep no binding at all.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use groupbinder_api::conditions::reason;
use groupbinder_api::desired::BindingKey;
use groupbinder_api::entra::{GroupVerdict, Known};
use groupbinder_api::k10oidc::{Presents, Verdict, presents, reason as k10reason};
use groupbinder_api::{AzureGroupBinding, PresentedBy};
use kube::ResourceExt;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;

pub(crate) mod apply;
pub(crate) mod observe;
pub(crate) mod outcome;
pub(crate) mod report;
pub(crate) mod status;

use crate::context::Context;
use crate::events::Changes;
use crate::kinds::Guarded;
use crate::metrics::CategoryLabels;
use apply::{ApplyError, Ensured, EnsuredBinding};
use observe::{ObserveError, Stale};
use outcome::Outcome;
use report::StatusError;

/// Why a reconcile failed. Each is retried with per-object exponential backoff; a spec that is
/// wrong is not an error but a `Ready=False` status, and is not retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A binding could not be read.
    #[error(transparent)]
    Observe(#[from] ObserveError),
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
        let forbidden = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 403);
        let category = match self {
            ReconcileError::Observe(e) if forbidden(&e.source) => "forbidden",
            ReconcileError::Apply(e) if forbidden(&e.source) => "forbidden",
            ReconcileError::Observe(_) => "observe",
            ReconcileError::Apply(_) => "apply",
            ReconcileError::Status(_) => "status",
            ReconcileError::NoUid(_) => "invalid_object",
            ReconcileError::Abandoned => "abandoned",
        };
        debug_assert!(crate::metrics::ERROR_CATEGORIES.contains(&category));
        category
    }
}

/// Reconciles one object. Its log lines carry the object's name (span `reconcile`).
#[tracing::instrument(name = "reconcile", skip_all, fields(object = %object.name_any()))]
pub(crate) async fn reconcile(
    object: Arc<Guarded>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    // Not before every cache holds its initial list; a controller stopping before that (its
    // watches no longer polled) abandons the reconcile rather than waiting for ever.
    let mut synced = ctx.synced.clone();
    tokio::select! {
        biased;
        _ = synced.wait_for(|synced| *synced) => {}
        () = ctx.stop.cancelled() => return Err(ReconcileError::Abandoned),
    }
    ctx.metrics.reconciles.inc();
    let work = async {
        match &object.0 {
            Ok(agb) if agb.metadata.deletion_timestamp.is_some() => deleting(agb, &ctx).await,
            Ok(agb) => reconcile_valid(agb, &ctx).await,
            Err(invalid) => undecodable(invalid, &ctx).await,
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
        ctx.clear_failures(&object);
    }
    tracing::debug!(ok = result.is_ok(), "reconciled");
    result
}

/// Backoff for failed reconciles: 0.5 s, doubling per consecutive failure of the same object, at
/// most 5 minutes. Other objects are not slowed down.
pub(crate) fn error_policy(
    object: Arc<Guarded>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let category = error.category();
    ctx.metrics
        .errors
        .get_or_create(&CategoryLabels { category })
        .inc();
    let (attempts, delay) = ctx.record_failure(&object);
    tracing::warn!(object = %object.name_any(), %error, category, attempts, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_valid(agb: &AzureGroupBinding, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = agb
        .uid()
        .ok_or_else(|| ReconcileError::NoUid(agb.name_any()))?;
    let agb = &*ctx.with_written_status(agb);
    let mut changes = Changes::default();
    let outcome = match carry_out(agb, &uid, &mut changes, ctx).await {
        Ok(outcome) => outcome,
        Err(error) => {
            // Say so in the status (a 403 here usually means the operator may not bind the
            // role), then retry with backoff.
            report::announce(agb, &changes, None, ctx).await;
            report::failure(agb, &error, ctx).await;
            return Err(error);
        }
    };
    let became = report::status(agb, &outcome, ctx).await?;
    report::announce(agb, &changes, became.as_ref(), ctx).await;
    Ok(if outcome.has_conflict() {
        Action::requeue(ctx.conflict_retry)
    } else {
        Action::await_change()
    })
}

/// plan → revoke → observe → apply, noting each change in `changes`.
async fn carry_out(
    agb: &AzureGroupBinding,
    uid: &str,
    changes: &mut Changes,
    ctx: &Context,
) -> Result<Outcome, ReconcileError> {
    let prefix = match default_prefix(agb, ctx) {
        Some(prefix) => prefix,
        None if status_is_of_this_spec(agb) => {
            return Ok(Outcome::Held(
                held_message(),
                k10_verdict(agb, "", ctx),
                true,
            ));
        }
        None => {
            // The spec changed since its bindings were made: they are not its grants (an old
            // explicit prefix, other roles). When in doubt, revoke.
            revoke(
                &observe::stale(&ctx.caches, uid, &BTreeSet::new()),
                changes,
                ctx,
            )
            .await?;
            return Ok(Outcome::Held(
                held_revoked_message(),
                k10_verdict(agb, "", ctx),
                false,
            ));
        }
    };
    let plan = groupbinder_api::desired::plan_with_default_prefix(
        agb,
        &ctx.settings,
        Some(&ctx.caches),
        &prefix,
    );
    let keep = plan.as_ref().map(|p| p.keys()).unwrap_or_default();
    revoke(&observe::stale(&ctx.caches, uid, &keep), changes, ctx).await?;
    let plan = match plan {
        Ok(plan) => plan,
        Err(refused) => return Ok(Outcome::Refused(refused)),
    };
    let observed = observe::observe(
        &ctx.caches,
        &ctx.client,
        uid,
        &plan,
        status::in_conflict(agb),
        ctx.settings.max_role_bindings,
    )
    .await?;
    let ensured = apply::ensure_all(
        &ctx.client,
        &ctx.metrics,
        (uid, &ctx.caches.allowed),
        &observed,
    )
    .await?;
    note(&ensured, changes, ctx);
    let notes = groupbinder_api::desired::prefix_warning(&plan)
        .into_iter()
        .chain(groupbinder_api::desired::all_secrets_note(
            &plan,
            &ctx.settings,
        ))
        .collect();
    let notes = (
        notes,
        Some(k10_verdict(agb, &plan.group, ctx)),
        entra_verdict(agb, ctx),
    );
    Ok(status::outcome(
        &plan,
        observed.missing,
        notes,
        &ensured,
        &ctx.settings.allowed,
    ))
}

/// The prefix `agb` gets when its spec sets none: the operator's default, or, when it follows
/// K10's (`--follow-k10-group-prefix`), K10's live one or the last known good; `None` when that
/// is not known yet (the object then changes nothing: never a fallback to "").
fn default_prefix<'c>(agb: &AzureGroupBinding, ctx: &'c Context) -> Option<Cow<'c, str>> {
    if !ctx.settings.follow_k10_group_prefix || agb.spec.group_prefix.is_some() {
        return Some(Cow::Borrowed(&ctx.settings.default_group_prefix));
    }
    // The last known good prefix, from a status written for this very spec only: after an
    // edit (an explicit prefix taken out, say) the status's group is the old spec's.
    let status_group = agb
        .status
        .as_ref()
        .filter(|_| status_is_of_this_spec(agb))
        .and_then(|s| s.group.as_deref());
    groupbinder_api::k10oidc::followed_prefix(
        ctx.k10.borrow().as_ref(),
        status_group,
        &agb.spec.group_object_id,
    )
    .map(Cow::Owned)
}

/// Whether `agb`'s status was written for its current spec (generation).
fn status_is_of_this_spec(agb: &AzureGroupBinding) -> bool {
    agb.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == agb.metadata.generation)
}

fn held_revoked_message() -> String {
    "the operator follows K10's groupPrefix (--follow-k10-group-prefix) and has not read it yet (see condition K10Presents), and the spec changed since its bindings were made: they were revoked; once K10's OIDC settings are readable this object is bound".into()
}

fn held_message() -> String {
    "the operator follows K10's groupPrefix (--follow-k10-group-prefix) and has not read it yet (see condition K10Presents): nothing was changed; once K10's OIDC settings are readable this object is bound".into()
}

/// Whether K10, as its live settings say now, presents `group` for `agb`'s members.
fn k10_verdict(agb: &AzureGroupBinding, group: &str, ctx: &Context) -> Verdict {
    if agb.spec.presented_by == Some(PresentedBy::Other) {
        return Verdict {
            presents: Presents::Unknown,
            reason: k10reason::NOT_CHECKED,
            message: "spec.presentedBy is Other: something other than K10 presents this group; not checked".into(),
        };
    }
    match &*ctx.k10.borrow() {
        Some(live) => presents(group, &agb.spec.group_object_id, live),
        None => Verdict {
            presents: Presents::Unknown,
            reason: k10reason::K10_CONFIG_UNREADABLE,
            message: "K10's OIDC settings have not been read yet".into(),
        },
    }
}

/// What Entra ID says of `agb`'s object ID (`None` when the operator does not ask). Never waits:
/// until a first answer, the object keeps what its status said (a restart does not flap it).
fn entra_verdict(agb: &AzureGroupBinding, ctx: &Context) -> Option<GroupVerdict> {
    let lookups = ctx.entra.as_ref()?;
    let id = &agb.spec.group_object_id;
    let mut known = lookups.known(id);
    let kept = kept_verdict(agb);
    if known == Known::Pending
        && let Some(kept) = kept
    {
        return Some(kept);
    }
    // Missing long enough already before a restart: still so (the window does not start over).
    if let Known::Answered {
        answer: groupbinder_api::entra::Answer::NotAGroup(_),
        missing_for,
        ..
    } = &mut known
        && kept.is_some_and(|k| k.not_ready)
    {
        *missing_for = (*missing_for).max(lookups.window);
    }
    Some(groupbinder_api::entra::verdict(id, &known, lookups.window))
}

/// The `GroupFound` verdict `agb`'s status holds, while nothing newer is known.
fn kept_verdict(agb: &AzureGroupBinding) -> Option<GroupVerdict> {
    use groupbinder_api::entra::reason as r;
    let status = agb.status.as_ref()?;
    let found = status
        .conditions
        .iter()
        .find(|c| c.type_ == groupbinder_api::entra::GROUP_FOUND)?;
    let reason = [
        r::FOUND,
        r::NOT_SECURITY_ENABLED,
        r::GROUP_NOT_FOUND,
        r::ENTRA_UNAVAILABLE,
    ]
    .into_iter()
    .find(|known| *known == found.reason)?;
    let status_value = ["True", "False", "Unknown"]
        .into_iter()
        .find(|s| *s == found.status)?;
    let not_ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == groupbinder_api::conditions::READY && c.reason == r::GROUP_NOT_FOUND);
    Some(GroupVerdict {
        status: status_value,
        reason,
        message: found.message.clone(),
        display_name: status.group_display_name.clone(),
        not_ready,
    })
}

/// An object being deleted grants nothing from that moment: its bindings are deleted at once,
/// without waiting for the garbage collector (which a `--cascade=orphan` deletion or a foreign
/// finalizer would hold back, or stop altogether), whatever its spec says meanwhile.
async fn deleting(agb: &AzureGroupBinding, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = agb
        .uid()
        .ok_or_else(|| ReconcileError::NoUid(agb.name_any()))?;
    let mut changes = Changes::default();
    let revoked = revoke(
        &observe::stale(&ctx.caches, &uid, &BTreeSet::new()),
        &mut changes,
        ctx,
    )
    .await;
    if !changes.is_empty() {
        let status = report::grants_nothing(
            agb.metadata.generation,
            reason::DELETING,
            "being deleted: its bindings were deleted and it grants nothing".to_owned(),
        );
        report::announce(agb, &changes, status.conditions.first(), ctx).await;
        // Best effort: the object may be gone by now.
        if let Err(error) = report::patch_status(&agb.name_any(), &status, ctx).await {
            tracing::debug!(%error, "could not record the deletion in the status");
        }
    }
    revoked?;
    Ok(Action::await_change())
}

/// An object the API server holds but this version cannot decode: whatever it granted before,
/// it grants nothing now. Reported, not retried (a change to the object triggers a new
/// reconcile), and the watch goes on.
async fn undecodable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    tracing::warn!(error = %invalid.error, "AzureGroupBinding cannot be decoded");
    if let Some(uid) = invalid.metadata.uid.as_deref() {
        let stale = observe::stale(&ctx.caches, uid, &BTreeSet::new());
        revoke(&stale, &mut Changes::default(), ctx).await?;
    }
    let status = report::grants_nothing(
        invalid.metadata.generation,
        reason::INVALID_SPEC,
        format!(
            "the spec cannot be read: {}; fix it (see `kubectl explain azuregroupbinding.spec`); this object grants nothing until it is fixed",
            invalid.error
        ),
    );
    report::patch_status(&name, &status, ctx).await?;
    Ok(Action::await_change())
}

/// Deletes the stale bindings; each one deleted is counted and noted, even if a later one fails.
async fn revoke(stale: &Stale, changes: &mut Changes, ctx: &Context) -> Result<(), ApplyError> {
    if stale.is_empty() {
        return Ok(());
    }
    let (deleted, result) = apply::revoke(&ctx.client, &ctx.metrics, stale).await;
    for key in &deleted {
        changes.deleted(key);
    }
    result
}

/// Notes what apply did, and counts the repairs and adoptions.
fn note(ensured: &[EnsuredBinding], changes: &mut Changes, ctx: &Context) {
    for done in ensured {
        let key: &BindingKey = &done.key;
        match done.ensured {
            Ensured::Created => changes.created(key),
            Ensured::PutBack => {
                ctx.metrics.repair(key.kind());
                changes.put_back(key);
            }
            Ensured::Adopted => {
                ctx.metrics.orphan("adopted");
                ctx.metrics.repair(key.kind());
                changes.adopted(key);
            }
            Ensured::TakenBack => {
                ctx.metrics.orphan("taken_back");
                ctx.metrics.repair(key.kind());
                changes.taken_back(key);
            }
            Ensured::Unchanged | Ensured::Conflict { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
