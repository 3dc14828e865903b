//! Which AzureGroupBinding a change to a binding concerns: the object that claims it (roles and
//! namespaces: see [`crate::watch::references`]).

use groupbinder_api::names::planner_of;
use groupbinder_api::{Allowlist, RbacBinding};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::kinds::Guarded;
use crate::watch::owners::{self, Claim};

/// The AzureGroupBindings a change to `binding` concerns: the one that claims it (see
/// [`owners::claim_binding`]), and the one whose name its name carries
/// ([`groupbinder_api::names::planner_of`]), if they exist (cluster-scoped: no namespace in the
/// reference). An orphan's claimant is found by its uid label among the cached objects.
///
/// Both: when someone moves a binding to another object, to none or to another controller, the
/// object that plans it is reconciled too, and takes it back. Without it, that object would not
/// hear of the change, and would go on reporting `Ready` for a binding it no longer has.
///
/// Not kube's `owns_stream`: it maps an ownerReference to the owner's name *in the child's
/// namespace*, and for a cluster-scoped owner of a RoleBinding that is another key than the
/// owner's own, so two reconciles of one object could run at once (and write twice).
pub(crate) fn concerned<B: RbacBinding>(
    binding: &B,
    allowed: &Allowlist,
    agbs: &Store<Guarded>,
) -> Vec<ObjectRef<Guarded>> {
    let meta = binding.meta();
    let claimant = match owners::claim_binding(binding, allowed) {
        Claim::Controlled(_) => owners::controller_of(meta).map(|o| ObjectRef::new(&o.name)),
        Claim::Orphaned(Some(uid)) => agbs
            .find(|g| g.uid().as_deref() == Some(uid))
            .map(|g| ObjectRef::from_obj(&*g)),
        Claim::Orphaned(None) | Claim::Foreign => None,
    };
    let planner = meta
        .name
        .as_deref()
        .and_then(planner_of)
        .map(ObjectRef::new)
        .filter(|r| agbs.get(r).is_some());
    let mut concerned: Vec<_> = claimant.into_iter().chain(planner).collect();
    concerned.dedup();
    concerned
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::names::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};
    use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::core::ObjectMeta;
    use kube::core::error_boundary::DeserializeGuard;
    use kube::runtime::watcher::Event;

    fn object(name: &str, uid: &str, spec: AzureGroupBindingSpec) -> Guarded {
        let mut agb = AzureGroupBinding::new(name, spec);
        agb.metadata.uid = Some(uid.into());
        DeserializeGuard(Ok(agb))
    }

    fn store(objects: Vec<Guarded>) -> Store<Guarded> {
        let (reader, mut writer) = kube::runtime::reflector::store();
        for o in objects {
            writer.apply_watcher_event(&Event::Apply(o));
        }
        reader
    }

    fn binding_meta(owner: Option<OwnerReference>, uid_label: Option<&str>) -> ObjectMeta {
        let mut labels = std::collections::BTreeMap::from([(
            MANAGED_BY_LABEL.to_owned(),
            MANAGED_BY.to_owned(),
        )]);
        if let Some(uid) = uid_label {
            labels.insert(OWNER_UID_LABEL.to_owned(), uid.to_owned());
        }
        ObjectMeta {
            name: Some("x:k10-admin".into()),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    fn k10_admin() -> k8s_openapi::api::rbac::v1::RoleRef {
        k8s_openapi::api::rbac::v1::RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "k10-admin".into(),
        }
    }

    fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            ..OwnerReference::default()
        }
    }

    /// The names of the objects a ClusterRoleBinding of `k10-admin` with `metadata` concerns.
    fn concerned_names(agbs: &Store<Guarded>, metadata: ObjectMeta) -> Vec<String> {
        let binding = ClusterRoleBinding {
            metadata,
            role_ref: k10_admin(),
            ..ClusterRoleBinding::default()
        };
        let allowed = Allowlist::k10("k10", "kasten-io");
        concerned(&binding, &allowed, agbs)
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn a_binding_maps_to_the_object_that_claims_it_and_the_one_that_plans_it() {
        let agbs = store(vec![object(
            "admins",
            "u1",
            AzureGroupBindingSpec::default(),
        )]);
        let ours = owner(
            "AzureGroupBinding",
            "groupbinder.dev/v1alpha1",
            "admins",
            "u1",
        );
        let claimed = |metadata| concerned_names(&agbs, metadata);
        let names = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            claimed(binding_meta(Some(ours.clone()), None)),
            names(&["admins"])
        );
        // An orphan goes to the object its uid label names, if it is cached.
        assert_eq!(claimed(binding_meta(None, Some("u1"))), names(&["admins"]));
        assert_eq!(claimed(binding_meta(None, Some("gone"))), names(&[]));
        assert_eq!(claimed(binding_meta(None, None)), names(&[]));
        // Given another controller, a labelled binding of an allowed role is still groupbinder's:
        // it goes to the object its uid label names, which takes it back.
        let forged = owner("Widget", "example.com/v1", "admins", "u1");
        assert_eq!(
            claimed(binding_meta(Some(forged.clone()), Some("u1"))),
            names(&["admins"])
        );
        // A binding whose name an object plans goes to that object too, whoever claims it.
        let named = |owner: Option<OwnerReference>| {
            let mut meta = binding_meta(owner, Some("u2"));
            meta.name = Some("planner:k10-admin".into());
            meta
        };
        let agbs = store(vec![
            object("admins", "u1", AzureGroupBindingSpec::default()),
            object("planner", "u2", AzureGroupBindingSpec::default()),
        ]);
        let claimed = |metadata| concerned_names(&agbs, metadata);
        assert_eq!(claimed(named(Some(ours))), names(&["admins", "planner"]));
        assert_eq!(claimed(named(Some(forged))), names(&["planner"]));
        assert_eq!(claimed(named(None)), names(&["planner"]));
    }
}
