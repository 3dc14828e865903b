//! Which AzureGroupBindings a change to another object concerns: a binding goes to the object
//! that claims it, a role to every object that binds it (namespaces: see [`crate::namespaces`]).

use std::sync::Arc;

use groupbinder_api::desired::requested_roles;
use groupbinder_api::{AzureGroupBinding, RoleKind, Settings};
use kube::ResourceExt;
use kube::core::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::owners::{self, Claim};
use crate::reconcile::Guarded;

/// The AzureGroupBinding that claims the binding with `meta` (see [`owners::claim`]), if any
/// (cluster-scoped: no namespace in the reference). An orphan is found by its uid label among
/// the cached objects.
///
/// Not kube's `owns_stream`: it maps an ownerReference to the owner's name *in the child's
/// namespace*, and for a cluster-scoped owner of a RoleBinding that is another key than the
/// owner's own, so two reconciles of one object could run at once (and write twice).
pub(crate) fn claiming(meta: &ObjectMeta, agbs: &Store<Guarded>) -> Option<ObjectRef<Guarded>> {
    match owners::claim(meta) {
        Claim::Controlled(_) => owners::controller_of(meta).map(|o| ObjectRef::new(&o.name)),
        Claim::Orphaned(Some(uid)) => agbs
            .find(|g| g.uid().as_deref() == Some(uid))
            .map(|g| ObjectRef::from_obj(&*g)),
        Claim::Orphaned(None) | Claim::Foreign => None,
    }
}

/// A role that AzureGroupBindings may refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Referent<'a> {
    /// The ClusterRole with this name, bound cluster-wide or in a namespace.
    ClusterRole(&'a str),
    /// The Role `namespace/name`.
    Role {
        /// Its namespace.
        namespace: &'a str,
        /// Its name.
        name: &'a str,
    },
}

impl Referent<'_> {
    /// Whether `agb` (with `settings` filling in the default profile) refers to this.
    pub(crate) fn is_referred_to_by(&self, agb: &AzureGroupBinding, settings: &Settings) -> bool {
        let (cluster_roles, roles) = requested_roles(agb, settings);
        match *self {
            Referent::ClusterRole(name) => {
                cluster_roles.iter().any(|r| r.as_str() == name)
                    || roles
                        .iter()
                        .any(|r| r.kind == RoleKind::ClusterRole && r.name.as_str() == name)
            }
            // A Role named by a selector entry: wherever the selector may select it.
            Referent::Role { namespace, name } => roles.iter().any(|r| {
                r.kind == RoleKind::Role
                    && r.name.as_str() == name
                    && r.namespace.as_deref().is_none_or(|n| n == namespace)
            }),
        }
    }
}

/// Every cached AzureGroupBinding that refers to `referent`. Objects that do not decode refer to
/// nothing.
pub(crate) fn referring(
    agbs: &Store<Guarded>,
    settings: &Arc<Settings>,
    referent: Referent<'_>,
) -> Vec<ObjectRef<Guarded>> {
    agbs.state()
        .iter()
        .filter(|g| {
            g.0.as_ref()
                .is_ok_and(|agb| referent.is_referred_to_by(agb, settings))
        })
        .map(|g| ObjectRef::from_obj(&**g))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::names::{MANAGED_BY, MANAGED_BY_LABEL, OWNER_UID_LABEL};
    use groupbinder_api::{AzureGroupBindingSpec, NamespacedRole};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::core::error_boundary::DeserializeGuard;
    use kube::runtime::watcher::Event;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings::for_k10("k10", "kasten-io", "michael_azure_"))
    }

    fn object(name: &str, uid: &str, spec: AzureGroupBindingSpec) -> Guarded {
        let mut agb = AzureGroupBinding::new(name, spec);
        agb.metadata.uid = Some(uid.into());
        DeserializeGuard(Ok(agb))
    }

    fn viewers() -> AzureGroupBindingSpec {
        AzureGroupBindingSpec {
            cluster_roles: Some(vec!["k10-config-view".into()]),
            roles: Some(vec![
                NamespacedRole::in_namespace("k10-basic", "app", RoleKind::ClusterRole),
                NamespacedRole::in_namespace("team-role", "team-a", RoleKind::Role),
            ]),
            ..AzureGroupBindingSpec::default()
        }
    }

    fn store(objects: Vec<Guarded>) -> Store<Guarded> {
        let (reader, mut writer) = kube::runtime::reflector::store();
        for o in objects {
            writer.apply_watcher_event(&Event::Apply(o));
        }
        reader
    }

    fn names(refs: Vec<ObjectRef<Guarded>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn roles_and_namespaces_map_to_the_objects_that_bind_them() {
        let agbs = store(vec![
            object("admins", "u1", AzureGroupBindingSpec::default()),
            object("viewers", "u2", viewers()),
            DeserializeGuard(Err(kube::core::error_boundary::InvalidObject {
                error: "bad".into(),
                metadata: ObjectMeta {
                    name: Some("broken".into()),
                    ..ObjectMeta::default()
                },
            })),
        ]);
        let settings = settings();
        let find = |r| names(referring(&agbs, &settings, r));
        // The default profile refers to K10's roles through the settings.
        assert_eq!(find(Referent::ClusterRole("k10-admin")), ["admins"]);
        assert_eq!(
            find(Referent::Role {
                namespace: "kasten-io",
                name: "k10-ns-admin"
            }),
            ["admins"]
        );
        // A ClusterRole bound in a namespace counts; a Role of that name elsewhere does not.
        assert_eq!(find(Referent::ClusterRole("k10-basic")), ["viewers"]);
        assert_eq!(find(Referent::ClusterRole("k10-config-view")), ["viewers"]);
        assert_eq!(
            find(Referent::Role {
                namespace: "app",
                name: "k10-basic"
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            find(Referent::Role {
                namespace: "team-a",
                name: "team-role"
            }),
            ["viewers"]
        );
        assert_eq!(
            find(Referent::ClusterRole("team-role")),
            Vec::<String>::new()
        );
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

    #[test]
    fn a_binding_maps_to_the_object_that_claims_it() {
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
        let claimed = |meta: ObjectMeta| claiming(&meta, &agbs).map(|r| r.name);
        assert_eq!(
            claimed(binding_meta(Some(ours), None)),
            Some("admins".into())
        );
        // An orphan goes to the object its uid label names, if it is cached.
        assert_eq!(
            claimed(binding_meta(None, Some("u1"))),
            Some("admins".into())
        );
        assert_eq!(claimed(binding_meta(None, Some("gone"))), None);
        assert_eq!(claimed(binding_meta(None, None)), None);
        // Another controller's binding (even with an AzureGroupBinding's uid) goes nowhere.
        let forged = owner("Widget", "example.com/v1", "admins", "u1");
        assert_eq!(claimed(binding_meta(Some(forged), Some("u1"))), None);
    }
}
