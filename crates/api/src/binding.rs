//! ClusterRoleBindings and RoleBindings as one kind of thing: what a binding grants (its role and
//! subjects) and when an existing binding already is what a planned one asks for.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::desired::BindingKey;

/// A ClusterRoleBinding or a RoleBinding.
pub trait RbacBinding: Resource<DynamicType = ()> {
    /// The binding's role.
    fn role_ref(&self) -> &RoleRef;
    /// The binding's subjects.
    fn subjects(&self) -> &Option<Vec<Subject>>;
    /// Its key; `None` if it lacks a name (or a RoleBinding a namespace): never guessed.
    fn key(&self) -> Option<BindingKey>;
    /// Where it grants: a RoleBinding's namespace; `None` for a ClusterRoleBinding (cluster-wide,
    /// whatever namespace a manifest wrote into its metadata).
    fn namespace(&self) -> Option<&str>;
}

impl RbacBinding for ClusterRoleBinding {
    fn role_ref(&self) -> &RoleRef {
        &self.role_ref
    }
    fn subjects(&self) -> &Option<Vec<Subject>> {
        &self.subjects
    }
    fn key(&self) -> Option<BindingKey> {
        BindingKey::of_cluster_role_binding(&self.metadata)
    }
    fn namespace(&self) -> Option<&str> {
        None
    }
}

impl RbacBinding for RoleBinding {
    fn role_ref(&self) -> &RoleRef {
        &self.role_ref
    }
    fn subjects(&self) -> &Option<Vec<Subject>> {
        &self.subjects
    }
    fn key(&self) -> Option<BindingKey> {
        BindingKey::of_role_binding(&self.metadata)
    }
    fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }
}

/// Whether `actual` already has everything `desired` sets: the same role, subjects, our labels
/// and our ownerReference. Fields that other managers added are ignored, as server-side apply
/// leaves them alone too. When this holds, applying `desired` would change nothing.
pub fn is_satisfied<B: RbacBinding>(desired: &B, actual: &B) -> bool {
    let (want, have) = (desired.meta(), actual.meta());
    let labels_present = want
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| have.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let owners_present = want.owner_references.iter().flatten().all(|o| {
        have.owner_references
            .iter()
            .flatten()
            .any(|a| same_owner(a, o))
    });
    desired.role_ref() == actual.role_ref()
        && desired.subjects() == actual.subjects()
        && labels_present
        && owners_present
}

fn same_owner(a: &OwnerReference, b: &OwnerReference) -> bool {
    a.uid == b.uid
        && a.controller == b.controller
        && a.kind == b.kind
        && a.api_version == b.api_version
}
