//! Apply: the writes, and nothing else. It carries out what [`super::observe`] found against the
//! plan, without touching anyone else's bindings, and returns what it did, typed.
//!
//! A binding that is already right costs no request at all. A new binding is created with POST,
//! which fails rather than adopts if the name was taken meanwhile (then the name is read once:
//! ours with the cache behind, or someone else's). A binding that drifted is put back by
//! server-side apply with force, which also takes back fields that `kubectl edit` took over; a
//! changed roleRef (immutable) replaces the binding.

use std::sync::Arc;

use groupbinder_api::Allowlist;
use groupbinder_api::desired::{BindingKey, Planned};
use groupbinder_api::is_satisfied;
use groupbinder_api::names::FIELD_MANAGER;
use groupbinder_api::ownership::controller_of;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};

use super::observe::{Found, Observed, Stale, look};
pub(crate) use super::outcome::{Ensured, EnsuredBinding};
use crate::kinds::{Binding, api};
use crate::metrics::{Metrics, WriteAction};

/// A write (or the read after a 409) failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {binding}: {source}")]
pub struct ApplyError {
    /// What was attempted: create, apply, get, delete, remove the finalizers of.
    pub action: &'static str,
    /// Which binding.
    pub binding: BindingKey,
    /// The API server's answer.
    #[source]
    pub source: kube::Error,
}

impl ApplyError {
    /// Makes the error of `action` on `binding` from the API server's answer.
    fn of(action: &'static str, binding: &BindingKey) -> impl FnOnce(kube::Error) -> Self {
        let binding = binding.clone();
        move |source| ApplyError {
            action,
            binding,
            source,
        }
    }
}

/// The write a planned binding needs, given what has its name. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// None: it is as planned, or someone else's.
    Nothing(Ensured),
    /// POST it.
    Create,
    /// Server-side apply over ours; the outcome if it succeeds.
    Patch(Ensured),
    /// Delete ours (this very object: uid precondition) and create it: its roleRef changed.
    Replace(Ensured),
    /// Put ours back as planned, ownerReferences included, with an update that holds only if
    /// nobody changed it since it was read (resourceVersion): someone gave it another
    /// controller. Not server-side apply, which would merge the ownerReferences and keep
    /// theirs (and two controllers are refused).
    TakeBack(Ensured),
}

/// The [`Step`] that makes `planned` true where `found` is.
pub(crate) fn step<B: Binding>(planned: &Planned<B>, found: &Found<B>) -> Step {
    let desired = &planned.object;
    match found {
        Found::Absent => Step::Create,
        Found::Foreign { holder } => Step::Nothing(Ensured::Conflict {
            holder: holder.clone(),
        }),
        Found::Ours { current, orphaned } => {
            let done = if *orphaned {
                Ensured::Adopted
            } else {
                Ensured::PutBack
            };
            let theirs = controller_of(current.meta()).map(|o| &o.uid);
            let ours = controller_of(desired.meta()).map(|o| &o.uid);
            if is_satisfied(desired, current) && theirs == ours {
                Step::Nothing(Ensured::Unchanged)
            } else if current.role_ref() != desired.role_ref() {
                Step::Replace(done)
            } else if theirs.is_some() && theirs != ours {
                Step::TakeBack(Ensured::TakenBack)
            } else {
                Step::Patch(done)
            }
        }
    }
}

/// Makes every observed planned binding true, all at once; stops at the first error.
pub(crate) async fn ensure_all(
    client: &Client,
    metrics: &Metrics,
    (uid, allowed): (&str, &Allowlist),
    observed: &Observed<'_>,
) -> Result<Vec<EnsuredBinding>, ApplyError> {
    let cluster =
        futures::future::try_join_all(observed.cluster_role_bindings.iter().map(
            |(planned, found)| ensure(client, metrics, (uid, allowed), planned, found.clone()),
        ));
    let namespaced =
        futures::future::try_join_all(observed.role_bindings.iter().map(|(planned, found)| {
            ensure(client, metrics, (uid, allowed), planned, found.clone())
        }));
    let (cluster, namespaced) = tokio::try_join!(cluster, namespaced)?;
    Ok(cluster.into_iter().chain(namespaced).collect())
}

/// Makes `planned` true where `found` is (see the module documentation).
pub(crate) async fn ensure<B: Binding>(
    client: &Client,
    metrics: &Metrics,
    (uid, allowed): (&str, &Allowlist),
    planned: &Planned<B>,
    mut found: Found<B>,
) -> Result<EnsuredBinding, ApplyError> {
    let key = &planned.key;
    let api = api::<B>(client, key);
    let fail = |action| ApplyError::of(action, key);
    // A 409 on create means the cache was behind or someone took the name: read it, decide
    // again, and create at most once more.
    let mut creates_left = 2;
    let ensured = loop {
        match step(planned, &found) {
            Step::Nothing(ensured) => break ensured,
            Step::Create => match metrics
                .counted(
                    WriteAction::Create,
                    api.create(&post_params(), &planned.object),
                )
                .await
            {
                Ok(_) => break Ensured::Created,
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    creates_left -= 1;
                    if creates_left == 0 {
                        break Ensured::Conflict {
                            holder: "created by someone else just now".to_owned(),
                        };
                    }
                    found = Found::of(look(client, key).await.map_err(fail("get"))?, uid, allowed);
                }
                Err(source) => return Err(fail("create")(source)),
            },
            Step::Patch(done) => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                metrics
                    .counted(
                        WriteAction::Apply,
                        api.patch(key.name(), &params, &Patch::Apply(&planned.object)),
                    )
                    .await
                    .map_err(fail("apply"))?;
                break done;
            }
            Step::TakeBack(done) => {
                let mut object = planned.object.clone();
                if let Found::Ours { current, .. } = &found {
                    object.meta_mut().resource_version = current.meta().resource_version.clone();
                }
                match metrics
                    .counted(
                        WriteAction::TakeBack,
                        api.replace(key.name(), &post_params(), &object),
                    )
                    .await
                {
                    Ok(_) => break done,
                    // Changed since it was read: read it and decide again.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        found =
                            Found::of(look(client, key).await.map_err(fail("get"))?, uid, allowed);
                    }
                    Err(source) => return Err(fail("take back")(source)),
                }
            }
            Step::Replace(done) => {
                if let Found::Ours { current, .. } = &found {
                    delete_as::<B>(client, metrics, WriteAction::Replace, key, current.meta())
                        .await?;
                }
                metrics
                    .counted(
                        WriteAction::Replace,
                        api.create(&post_params(), &planned.object),
                    )
                    .await
                    .map_err(fail("create"))?;
                break done;
            }
        }
    };
    Ok(EnsuredBinding {
        key: key.clone(),
        role: planned.role.clone(),
        ensured,
    })
}

/// Deletes the stale bindings, ClusterRoleBindings and RoleBindings at once. Returns the keys
/// deleted, and the first error, if any (what was deleted before it stays deleted).
pub(crate) async fn revoke(
    client: &Client,
    metrics: &Metrics,
    stale: &Stale,
) -> (Vec<BindingKey>, Result<(), ApplyError>) {
    let (crbs, rbs) = tokio::join!(
        delete_each(client, metrics, &stale.cluster_role_bindings),
        delete_each(client, metrics, &stale.role_bindings)
    );
    let (mut deleted, first) = crbs;
    let (more, second) = rbs;
    deleted.extend(more);
    (deleted, first.and(second))
}

async fn delete_each<B: Binding>(
    client: &Client,
    metrics: &Metrics,
    bindings: &[Arc<B>],
) -> (Vec<BindingKey>, Result<(), ApplyError>) {
    let mut deleted = Vec::new();
    for binding in bindings {
        let Some(key) = binding.key() else { continue };
        if let Err(error) = delete::<B>(client, metrics, &key, binding.meta()).await {
            return (deleted, Err(error));
        }
        deleted.push(key);
    }
    (deleted, Ok(()))
}

/// Deletes the binding `key` described by `meta`, only if it is still that very object *as
/// read* (uid and resourceVersion preconditions): a decision made on a cached copy never applies
/// to a binding someone changed since (re-labelled as theirs, say). If it changed, it is read
/// from the API server: gone, or another object by now, counts as deleted; the same object,
/// changed, is an error, and the reconcile decides again on what it is now.
///
/// A binding held back by finalizers would keep granting while it waits: RBAC does not look at
/// `deletionTimestamp`. Anyone who may patch bindings can add a finalizer (that change skips
/// RBAC's escalation check), so the finalizers of a binding being revoked are removed.
pub(crate) async fn delete<B: Binding>(
    client: &Client,
    metrics: &Metrics,
    key: &BindingKey,
    meta: &ObjectMeta,
) -> Result<(), ApplyError> {
    delete_as::<B>(client, metrics, WriteAction::Delete, key, meta).await
}

/// [`delete`], its DELETE counted as `write`.
async fn delete_as<B: Binding>(
    client: &Client,
    metrics: &Metrics,
    write: WriteAction,
    key: &BindingKey,
    meta: &ObjectMeta,
) -> Result<(), ApplyError> {
    let api = api::<B>(client, key);
    let fail = |action| ApplyError::of(action, key);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    let lingering = match metrics
        .counted(write, api.delete(key.name(), &params))
        .await
    {
        Ok(either) => either.left(),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let now = api.get_opt(key.name()).await.map_err(fail("get"))?;
            if now.is_some_and(|b| b.meta().uid == meta.uid) {
                return Err(fail("delete")(kube::Error::Api(status)));
            }
            None
        }
        Err(source) => return Err(fail("delete")(source)),
    };
    let Some(lingering) = lingering.filter(|b| {
        b.meta().finalizers.as_ref().is_some_and(|f| !f.is_empty()) && b.meta().uid == meta.uid
    }) else {
        return Ok(());
    };
    tracing::warn!(binding = %key, finalizers = ?lingering.meta().finalizers, "removing the finalizers that hold back a revoked binding");
    let patch = serde_json::json!({
        "metadata": {"finalizers": null, "uid": lingering.meta().uid}
    });
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let unpinned = api.patch(key.name(), &params, &patch);
    match metrics.counted(WriteAction::Finalizers, unpinned).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(fail("remove the finalizers of")(source)),
    }
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    }
}

#[cfg(test)]
mod tests;
