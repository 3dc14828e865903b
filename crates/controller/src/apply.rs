//! The apply step: make the planned bindings exist, as planned, without touching anyone else's.
//!
//! Bindings are compared with the watch cache first, so a binding that is already right costs no
//! request at all. A binding missing from the cache (which only holds bindings labelled as ours)
//! is looked up once: if something else has that name, it is a conflict and is left alone.
//! New bindings are created with POST, which fails rather than adopts if the name was taken
//! meanwhile; bindings that drifted are put back by server-side apply with force, which also takes
//! back fields that `kubectl edit` took over.

use std::fmt::Debug;

use groupbinder_api::desired::{BindingKey, is_satisfied, key_of};
use groupbinder_api::names::FIELD_MANAGER;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde::Serialize;

use crate::owners::{Claim, claim, claimed_by, controller_of};

/// ClusterRoleBinding or RoleBinding.
pub trait Binding: crate::Watched + Serialize {
    /// The binding's role.
    fn role_ref(&self) -> &RoleRef;
    /// The binding's subjects.
    fn subjects(&self) -> &Option<Vec<Subject>>;
    /// The API for bindings of this kind in `namespace` (ignored for ClusterRoleBindings).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
}

impl Binding for ClusterRoleBinding {
    fn role_ref(&self) -> &RoleRef {
        &self.role_ref
    }
    fn subjects(&self) -> &Option<Vec<Subject>> {
        &self.subjects
    }
    fn api(client: Client, _: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

impl Binding for RoleBinding {
    fn role_ref(&self) -> &RoleRef {
        &self.role_ref
    }
    fn subjects(&self) -> &Option<Vec<Subject>> {
        &self.subjects
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client, namespace.unwrap_or("default"))
    }
}

/// A request to the API server failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {binding}: {source}")]
pub struct ApplyError {
    /// What was attempted: create, apply, get or delete.
    pub action: &'static str,
    /// Which binding.
    pub binding: BindingKey,
    /// The API server's answer.
    #[source]
    pub source: kube::Error,
}

/// What happened to one planned binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It was already as planned: no request was made.
    Unchanged,
    /// It did not exist and was created.
    Created,
    /// It had drifted and was put back.
    Updated,
    /// It was labelled as this object's but had lost its controller ownerReference: the
    /// ownerReference was put back (with anything else that had drifted).
    Adopted,
    /// The name is taken by a binding this object does not control; it was left untouched.
    Conflict {
        /// Who controls it.
        holder: String,
    },
}

fn holder(meta: &ObjectMeta) -> String {
    match controller_of(meta) {
        Some(o) => format!("controlled by {} {}", o.kind, o.name),
        None => "no controller ownerReference".to_owned(),
    }
}

/// Whether the binding with `meta` belongs to the AzureGroupBinding with `uid` (see
/// [`crate::owners::claim`]).
pub fn claimed(meta: &ObjectMeta, uid: &str) -> bool {
    claimed_by(meta) == Some(uid)
}

/// Makes `desired` exist as planned (see the module documentation).
///
/// A binding missing from the cache is created straight away; if the name turns out to be taken
/// (409), it is looked at (ours, with the cache behind, or someone else's). With `look_first`, for
/// objects already in conflict, it is looked at before any write, so that a conflict retried every
/// minute costs a read, not a failed write.
pub async fn ensure<B: Binding>(
    client: &Client,
    cache: &Store<B>,
    owner_uid: &str,
    desired: &B,
    look_first: bool,
) -> Result<Applied, ApplyError> {
    let key = key_of(desired.meta());
    let mut reference = ObjectRef::<B>::new(&key.name);
    if let Some(namespace) = &key.namespace {
        reference = reference.within(namespace);
    }
    let api = B::api(client.clone(), key.namespace.as_deref());
    let fail = |action: &'static str| {
        let binding = key.clone();
        move |source| ApplyError {
            action,
            binding,
            source,
        }
    };
    let actual = match cache.get(&reference) {
        Some(cached) => Some(cached),
        // Not labelled as ours (or not cached yet): foreign objects are not cached, so ask.
        None if look_first => api
            .get_opt(&key.name)
            .await
            .map_err(fail("get"))?
            .map(std::sync::Arc::new),
        None => None,
    };
    let Some(actual) = actual else {
        return match api.create(&post_params(), desired).await {
            Ok(_) => Ok(Applied::Created),
            Err(kube::Error::Api(status)) if status.code == 409 && !look_first => {
                Box::pin(ensure(client, cache, owner_uid, desired, true)).await
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Applied::Conflict {
                holder: "created by someone else just now".to_owned(),
            }),
            Err(source) => Err(fail("create")(source)),
        };
    };
    if !claimed(actual.meta(), owner_uid) {
        return Ok(Applied::Conflict {
            holder: holder(actual.meta()),
        });
    }
    let done = if matches!(claim(actual.meta()), Claim::Orphaned(_)) {
        Applied::Adopted
    } else {
        Applied::Updated
    };
    if is_satisfied(
        desired.meta(),
        desired.role_ref(),
        desired.subjects(),
        actual.meta(),
        actual.role_ref(),
        actual.subjects(),
    ) {
        return Ok(Applied::Unchanged);
    }
    if actual.role_ref() != desired.role_ref() {
        // roleRef is immutable: replace the binding. The precondition makes sure only the object we
        // looked at is deleted.
        delete(&api, &key, actual.meta()).await?;
        api.create(&post_params(), desired)
            .await
            .map_err(fail("create"))?;
        return Ok(done);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&key.name, &params, &Patch::Apply(desired))
        .await
        .map_err(fail("apply"))?;
    Ok(done)
}

/// Deletes the binding described by `meta`, only if it is still that very object (uid
/// precondition). A binding that is already gone counts as deleted.
///
/// A binding held back by finalizers would keep granting while it waits: RBAC does not look at
/// `deletionTimestamp`. Anyone who may patch bindings can add a finalizer (that change skips
/// RBAC's escalation check), so the finalizers of a binding being revoked are removed.
pub async fn delete<B: Binding>(
    api: &Api<B>,
    key: &BindingKey,
    meta: &ObjectMeta,
) -> Result<(), ApplyError> {
    let fail = |action: &'static str| {
        move |source| ApplyError {
            action,
            binding: key.clone(),
            source,
        }
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let lingering = match api.delete(&key.name, &params).await {
        Ok(either) => either.left(),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => None,
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
    match api
        .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(fail("remove the finalizers of")(source)),
    }
}

/// The cached bindings claimed by `owner_uid` whose keys are not in `keep`.
pub fn stale<B: Binding>(
    cache: &Store<B>,
    owners: &crate::OwnerIndex<B>,
    owner_uid: &str,
    keep: &std::collections::BTreeSet<BindingKey>,
) -> Vec<std::sync::Arc<B>> {
    owners
        .owned_by(owner_uid)
        .iter()
        .filter_map(|reference| cache.get(reference))
        .filter(|b| claimed(b.meta(), owner_uid) && !keep.contains(&key_of(b.meta())))
        .collect()
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    }
}
