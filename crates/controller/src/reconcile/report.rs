//! Report: the status and the event a reconcile leaves behind. The status is written by
//! server-side apply under the operator's one field manager, and only when it changed: no write at
//! all in the steady state.

use groupbinder_api::conditions::{self, READY, reason};
use groupbinder_api::names::FIELD_MANAGER;
use groupbinder_api::{AzureGroupBinding, AzureGroupBindingStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;

use super::outcome::Outcome;
use super::status::desired_status;
use crate::context::Context;
use crate::events::Changes;
use crate::metrics::{CategoryLabels, KindLabels, WriteAction};

/// Writing the status failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the status of AzureGroupBinding {name}: {source}")]
pub struct StatusError {
    name: String,
    #[source]
    source: kube::Error,
}

/// Writes the status `outcome` calls for, unless the object already has it. Returns the new
/// `Ready` condition if it changed reason or status.
pub(crate) async fn status(
    agb: &AzureGroupBinding,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<Option<Condition>, StatusError> {
    let status = desired_status(agb, outcome, &Time(Timestamp::now()));
    record_metrics(ctx, &status);
    if agb.status.as_ref() == Some(&status) {
        return Ok(None);
    }
    patch_status(&agb.name_any(), &status, ctx).await?;
    let now = ready(&status).cloned();
    ctx.remember_status(agb, status);
    let was = agb.status.as_ref().and_then(ready);
    Ok(now.filter(|r| was.is_none_or(|w| w.reason != r.reason || w.status != r.status)))
}

/// Best effort: says in the status that a reconcile failed (`error`), keeping what is in place.
pub(crate) async fn failure(
    agb: &AzureGroupBinding,
    error: &(dyn std::fmt::Display + Sync),
    ctx: &Context,
) {
    let mut status = agb.status.clone().unwrap_or_default();
    let previous = std::mem::take(&mut status.conditions);
    status.observed_generation = agb.metadata.generation;
    status.conditions = vec![conditions::condition(
        &previous,
        READY,
        false,
        reason::APPLY_FAILED,
        format!("{error}; retrying with backoff"),
        agb.metadata.generation,
        &Time(Timestamp::now()),
    )];
    if agb.status.as_ref() == Some(&status) {
        return;
    }
    if let Err(e) = patch_status(&agb.name_any(), &status, ctx).await {
        tracing::debug!(error = %e, "could not record the failure in the status");
    }
}

/// A status with only a `Ready=False` condition, for an object that grants nothing: no group, no
/// binding.
pub(crate) fn grants_nothing(
    generation: Option<i64>,
    reason: &str,
    message: String,
) -> AzureGroupBindingStatus {
    AzureGroupBindingStatus {
        observed_generation: generation,
        conditions: vec![conditions::condition(
            &[],
            READY,
            false,
            reason,
            message,
            generation,
            &Time(Timestamp::now()),
        )],
        ..AzureGroupBindingStatus::default()
    }
}

/// Publishes the one event for a reconcile, if it has something to tell
/// ([`Changes::announcement`]).
pub(crate) async fn announce(
    agb: &AzureGroupBinding,
    changes: &Changes,
    became: Option<&Condition>,
    ctx: &Context,
) {
    let Some(event) = changes.announcement(became) else {
        return;
    };
    let regarding = agb.object_ref(&());
    if let Err(error) = ctx
        .events
        .publish(regarding, event.type_, &event.reason, event.note)
        .await
    {
        tracing::debug!(%error, "could not publish an event");
    }
}

/// The `Ready` condition of `status`.
fn ready(status: &AzureGroupBindingStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == READY)
}

/// The status subresource as server-side apply takes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a> {
    api_version: &'a str,
    kind: &'a str,
    status: &'a AzureGroupBindingStatus,
}

/// Server-side applies `status` (typed: a status that cannot be serialized is an error, never a
/// `null` written over the object's status).
pub(crate) async fn patch_status(
    name: &str,
    status: &AzureGroupBindingStatus,
    ctx: &Context,
) -> Result<(), StatusError> {
    let api: Api<AzureGroupBinding> = Api::all(ctx.client.clone());
    let patch = StatusPatch {
        api_version: &AzureGroupBinding::api_version(&()),
        kind: &AzureGroupBinding::kind(&()),
        status,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&patch);
    let request = api.patch_status(name, &params, &patch);
    ctx.metrics
        .counted(WriteAction::Status, request)
        .await
        .map(|_| ())
        .map_err(|source| StatusError {
            name: name.to_owned(),
            source,
        })
}

fn record_metrics(ctx: &Context, status: &AzureGroupBindingStatus) {
    if let Some(ready) = ready(status).filter(|c| c.status == "False") {
        let category = groupbinder_api::conditions::reason_label(&ready.reason);
        ctx.metrics
            .not_ready
            .get_or_create(&CategoryLabels { category })
            .inc();
    }
    for (kind, count) in [
        ("ClusterRoleBinding", ctx.caches.cluster_role_bindings.len()),
        ("RoleBinding", ctx.caches.role_bindings.len()),
    ] {
        ctx.metrics
            .bindings
            .get_or_create(&KindLabels { kind })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
