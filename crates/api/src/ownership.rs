//! What makes a binding groupbinder's: the one rule the controller acts on and the CLI reports
//! (`audit`'s MANAGED BY, `import`'s hand-written bindings). Pure: it reads metadata only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::names::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};
use crate::v1alpha1::AzureGroupBinding;

/// The controller ownerReference of `meta` (the one with `controller: true`), if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Whether `owner` refers to an AzureGroupBinding: API group `groupbinder.dev` (any version) and
/// kind `AzureGroupBinding`. A uid alone proves nothing: it is readable by anyone who may read the
/// object, and can be written into an ownerReference of another kind.
pub fn is_azure_group_binding(owner: &OwnerReference) -> bool {
    let group = owner.api_version.split_once('/').map(|(group, _)| group);
    owner.kind == AzureGroupBinding::kind(&())
        && group == Some(AzureGroupBinding::group(&()).as_ref())
}

/// Whether `meta` carries groupbinder's managed-by label.
pub fn labelled_as_ours(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// Who a binding belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim<'a> {
    /// Its controller ownerReference is an AzureGroupBinding with this uid.
    Controlled(&'a str),
    /// It is labelled as groupbinder's but has no controller ownerReference (it was removed, by
    /// hand or by the garbage collector orphaning it): the uid label, if any, names the object it
    /// was made for.
    Orphaned(Option<&'a str>),
    /// Not groupbinder's: another controller, or neither label nor controller.
    Foreign,
}

/// Who the binding with `meta` belongs to (see [`Claim`]).
pub fn claim(meta: &ObjectMeta) -> Claim<'_> {
    match controller_of(meta) {
        Some(owner) if is_azure_group_binding(owner) => Claim::Controlled(&owner.uid),
        Some(_) => Claim::Foreign,
        None if labelled_as_ours(meta) => Claim::Orphaned(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(OWNER_UID_LABEL))
                .map(String::as_str),
        ),
        None => Claim::Foreign,
    }
}

/// The uid of the AzureGroupBinding a binding belongs to: its controller, or for an orphan the
/// object named by its uid label.
pub fn claimed_by(meta: &ObjectMeta) -> Option<&str> {
    match claim(meta) {
        Claim::Controlled(uid) | Claim::Orphaned(Some(uid)) => Some(uid),
        Claim::Orphaned(None) | Claim::Foreign => None,
    }
}

/// The name of the AzureGroupBinding that controls the binding with `meta`, for reports; `None`
/// for a binding that is not groupbinder's or whose ownerReference is gone.
pub fn controller_name(meta: &ObjectMeta) -> Option<&str> {
    match claim(meta) {
        Claim::Controlled(_) => controller_of(meta).map(|o| o.name.as_str()),
        Claim::Orphaned(_) | Claim::Foreign => None,
    }
}
