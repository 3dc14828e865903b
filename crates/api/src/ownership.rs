//! What makes a binding groupbinder's: the one rule the controller acts on and the CLI reports
//! (`audit`'s MANAGED BY, `import`'s hand-written bindings). Pure.
//!
//! A binding is groupbinder's when its controller ownerReference is an AzureGroupBinding, or when
//! it carries groupbinder's managed-by label and binds a role the allowlist permits (the only
//! roles groupbinder binds), whatever its ownerReferences say ([`claim_binding`]): changing ownerReferences skips RBAC's escalation check, so a user who may
//! only patch bindings could otherwise re-parent one to, say, `Namespace kube-system` and keep
//! the grant for ever.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::allowlist::Allowlist;
use crate::binding::RbacBinding;
use crate::desired::Plan;
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

/// Who `binding` belongs to under groupbinder's rule (the module documentation): its
/// AzureGroupBinding controller if it has one; else, labelled and bound to an allowed role,
/// [`Claim::Orphaned`] whatever other controller it has: groupbinder's, to take back for the
/// object its uid label names, or to delete when none plans it; else [`Claim::Foreign`] (a
/// labelled binding of a role outside the allowlist included: groupbinder never made it).
pub fn claim_binding<'a, B: RbacBinding>(binding: &'a B, allowed: &Allowlist) -> Claim<'a> {
    let meta = binding.meta();
    match claim(meta) {
        Claim::Controlled(uid) => Claim::Controlled(uid),
        Claim::Orphaned(_) | Claim::Foreign
            if labelled_as_ours(meta) && binds_allowed_role(binding, allowed) =>
        {
            Claim::Orphaned(uid_label(meta))
        }
        Claim::Orphaned(_) | Claim::Foreign => Claim::Foreign,
    }
}

/// The uid of the AzureGroupBinding `binding` belongs to under [`claim_binding`].
pub fn claimed_binding_by<'a, B: RbacBinding>(
    binding: &'a B,
    allowed: &Allowlist,
) -> Option<&'a str> {
    claim_binding(binding, allowed).owner_uid()
}

/// What a binding is to groupbinder, for reports (`audit`, `import`): [`claim_binding`] checked
/// against the AzureGroupBindings that exist and what their current plans hold. A binding is
/// managed by an object only if that object exists with the uid the binding claims, the binding
/// carries groupbinder's labels, and the object's plan holds exactly this binding (its name, role
/// and subjects).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// Managed by the living AzureGroupBinding with this name, which plans it as it is.
    Managed(String),
    /// It claims an AzureGroupBinding that groupbinder did not give it: a controller
    /// ownerReference to one without groupbinder's labels, or to a uid no object has. Anyone who
    /// may patch bindings can write an ownerReference; groupbinder did not make it so.
    ForgedOwner,
    /// groupbinder's (labelled, of an allowed role), but no current plan holds it as it is: its
    /// object is gone, or no longer asks for it, or someone changed its subjects. The operator
    /// deletes it, or puts it back as planned.
    NotPlanned,
    /// Labelled as groupbinder's, but it binds a role outside the allowlist: not groupbinder's,
    /// and never touched by it.
    OutsideAllowlist,
    /// Not groupbinder's: hand-written, or another controller's.
    Unmanaged,
}

/// An AzureGroupBinding a binding claims, as a report sees it.
#[derive(Clone, Copy, Debug)]
pub struct Claimed<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its current plan; `None` when the spec is refused (then it plans nothing).
    pub plan: Option<&'a Plan>,
}

/// The [`Standing`] of `binding` under `allowed`, where `object` finds the AzureGroupBinding
/// with a uid, if one exists (and is not being deleted).
pub fn standing<'a, B: RbacBinding>(
    binding: &B,
    allowed: &Allowlist,
    object: impl FnOnce(&str) -> Option<Claimed<'a>>,
) -> Standing {
    let meta = binding.meta();
    let claimed = match claim_binding(binding, allowed) {
        Claim::Foreign if labelled_as_ours(meta) && !binds_allowed_role(binding, allowed) => {
            return Standing::OutsideAllowlist;
        }
        Claim::Foreign => return Standing::Unmanaged,
        Claim::Controlled(_) if !labelled_as_ours(meta) => return Standing::ForgedOwner,
        Claim::Controlled(uid) => match object(uid) {
            Some(claimed) => claimed,
            None => return Standing::ForgedOwner,
        },
        Claim::Orphaned(Some(uid)) => match object(uid) {
            Some(claimed) => claimed,
            None => return Standing::NotPlanned,
        },
        Claim::Orphaned(None) => return Standing::NotPlanned,
    };
    if claimed.plan.is_some_and(|plan| plan.holds(binding)) {
        Standing::Managed(claimed.name.to_owned())
    } else {
        Standing::NotPlanned
    }
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
        // Labelled, no controller, a role outside the allowlist: never ours either.
        let labelled_admin = binding("admin", None, true);
        assert_eq!(claim_binding(&labelled_admin, &allowed), Claim::Foreign);
        assert_eq!(
            claim_binding(&binding("k10-admin", None, true), &allowed),
            Claim::Orphaned(Some("u"))
        );
    }

    #[test]
    fn a_binding_is_managed_only_by_a_living_object_that_plans_it_as_it_is() {
        use crate::desired::plan;
        use crate::v1alpha1::AzureGroupBindingSpec;
        let settings = crate::Settings::for_k10("k10", "kasten-io", "p_");
        let mut agb = AzureGroupBinding::new(
            "admins",
            AzureGroupBindingSpec {
                group_object_id: "a318b1eb-8b78-4715-98ad-ffc8670ac79d".into(),
                ..AzureGroupBindingSpec::default()
            },
        );
        agb.metadata.uid = Some("u".into());
        let planned = plan(&agb, &settings, None).unwrap();
        let ours = planned.cluster_role_bindings[0].object.clone();
        let living = |uid: &str| {
            (uid == "u").then_some(Claimed {
                name: "admins",
                plan: Some(&planned),
            })
        };
        let allowed = &settings.allowed;
        assert_eq!(
            standing(&ours, allowed, living),
            Standing::Managed("admins".into())
        );
        // Someone added a subject: no plan holds it as it is.
        let mut widened = ours.clone();
        widened
            .subjects
            .get_or_insert_default()
            .push(Default::default());
        assert_eq!(standing(&widened, allowed, living), Standing::NotPlanned);
        // Its object is gone.
        assert_eq!(standing(&ours, allowed, |_| None), Standing::ForgedOwner);
        // Unlabelled, with a controller ownerReference to the living object: forged.
        let mut unlabelled = ours.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(
            standing(&unlabelled, allowed, living),
            Standing::ForgedOwner
        );
        // Labelled, of a role outside the allowlist.
        assert_eq!(
            standing(&binding("admin", None, true), allowed, living),
            Standing::OutsideAllowlist
        );
        assert_eq!(
            standing(&binding("admin", None, false), allowed, living),
            Standing::Unmanaged
        );
    }
}
