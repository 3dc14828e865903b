//! What makes a binding groupbinder's: the one rule the controller acts on and the CLI reports
//! (`audit`'s MANAGED BY, `import`'s hand-written bindings). Pure.
//!
//! A binding is groupbinder's when its controller ownerReference is an AzureGroupBinding, or when
//! it carries groupbinder's managed-by label and either has no controller or binds a role the
//! allowlist permits (the only roles groupbinder binds), whatever its ownerReferences say
//! ([`claim_binding`]): changing ownerReferences skips RBAC's escalation check, so a user who may
//! only patch bindings could otherwise re-parent one to, say, `Namespace kube-system` and keep
//! the grant for ever.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::allowlist::Allowlist;
use crate::binding::RbacBinding;
use crate::names::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};
use crate::v1alpha1::{AzureGroupBinding, RoleKind};

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
        None if labelled_as_ours(meta) => Claim::Orphaned(uid_label(meta)),
        None => Claim::Foreign,
    }
}

impl<'a> Claim<'a> {
    /// The uid of the AzureGroupBinding claimed: the controller's, or an orphan's uid label.
    pub fn owner_uid(self) -> Option<&'a str> {
        match self {
            Claim::Controlled(uid) | Claim::Orphaned(Some(uid)) => Some(uid),
            Claim::Orphaned(None) | Claim::Foreign => None,
        }
    }
}

/// The uid label of `meta`, naming the object a binding was made for.
fn uid_label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(OWNER_UID_LABEL))
        .map(String::as_str)
}

/// The uid of the AzureGroupBinding a binding belongs to: its controller, or for an orphan the
/// object named by its uid label.
pub fn claimed_by(meta: &ObjectMeta) -> Option<&str> {
    claim(meta).owner_uid()
}

/// The name of the AzureGroupBinding that controls the binding with `meta`, for reports; `None`
/// for a binding that is not groupbinder's or whose ownerReference is gone.
pub fn controller_name(meta: &ObjectMeta) -> Option<&str> {
    match claim(meta) {
        Claim::Controlled(_) => controller_of(meta).map(|o| o.name.as_str()),
        Claim::Orphaned(_) | Claim::Foreign => None,
    }
}

/// Whether `binding` binds a role the allowlist permits, where it grants.
pub fn binds_allowed_role<B: RbacBinding>(binding: &B, allowed: &Allowlist) -> bool {
    let role = binding.role_ref();
    let kind = match role.kind.as_str() {
        "ClusterRole" => RoleKind::ClusterRole,
        "Role" => RoleKind::Role,
        _ => return false,
    };
    role.api_group.as_deref() == Some("rbac.authorization.k8s.io")
        && allowed.permits(kind, binding.namespace(), &role.name)
}

/// Who `binding` belongs to under groupbinder's rule (the module documentation): as [`claim`],
/// and a labelled binding with another controller that binds an allowed role is
/// [`Claim::Orphaned`]: groupbinder's, to take back for the object its uid label names, or to
/// delete when none plans it.
pub fn claim_binding<'a, B: RbacBinding>(binding: &'a B, allowed: &Allowlist) -> Claim<'a> {
    let meta = binding.meta();
    match claim(meta) {
        Claim::Foreign if labelled_as_ours(meta) && binds_allowed_role(binding, allowed) => {
            Claim::Orphaned(uid_label(meta))
        }
        claimed => claimed,
    }
}

/// The uid of the AzureGroupBinding `binding` belongs to under [`claim_binding`].
pub fn claimed_binding_by<'a, B: RbacBinding>(
    binding: &'a B,
    allowed: &Allowlist,
) -> Option<&'a str> {
    claim_binding(binding, allowed).owner_uid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef};
    use std::collections::BTreeMap;

    fn binding(role: &str, controller: Option<(&str, &str)>, labelled: bool) -> ClusterRoleBinding {
        let mut b = ClusterRoleBinding {
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            ..ClusterRoleBinding::default()
        };
        b.metadata.name = Some("x".into());
        if labelled {
            b.metadata.labels = Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (OWNER_UID_LABEL.to_owned(), "u".to_owned()),
            ]));
        }
        b.metadata.owner_references = controller.map(|(api_version, kind)| {
            vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: "kube-system".into(),
                uid: "other".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]
        });
        b
    }

    #[test]
    fn a_labelled_binding_of_an_allowed_role_is_ours_whatever_its_owner() {
        let allowed = Allowlist::k10("k10", "kasten-io");
        // Re-parented to a Namespace: still ours, for the object its uid label names.
        let hijacked = binding("k10-admin", Some(("v1", "Namespace")), true);
        assert_eq!(
            claim_binding(&hijacked, &allowed),
            Claim::Orphaned(Some("u"))
        );
        assert_eq!(
            claim(&hijacked.metadata),
            Claim::Foreign,
            "by ownerReferences alone"
        );
        // A role outside the allowlist, with another controller: never ours.
        let team = binding("admin", Some(("example.com/v1", "Widget")), true);
        assert_eq!(claim_binding(&team, &allowed), Claim::Foreign);
        // Unlabelled: never ours.
        let plain = binding("k10-admin", Some(("v1", "Namespace")), false);
        assert_eq!(claim_binding(&plain, &allowed), Claim::Foreign);
    }
}
