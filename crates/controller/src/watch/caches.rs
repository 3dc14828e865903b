//! The watch caches a reconcile reads instead of the API server.

use groupbinder_api::Namespaces;
use groupbinder_api::selector::Labels;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::kinds::Guarded;
use crate::watch::owners::OwnerIndex;

/// The watch caches a reconcile reads instead of the API server.
#[derive(Clone)]
pub(crate) struct Caches {
    /// AzureGroupBindings.
    pub agbs: Store<Guarded>,
    /// ClusterRoleBindings labelled as managed by groupbinder.
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    /// The cached ClusterRoleBindings by controller.
    pub cluster_role_binding_owners: OwnerIndex<ClusterRoleBinding>,
    /// RoleBindings labelled as managed by groupbinder.
    pub role_bindings: Store<RoleBinding>,
    /// The cached RoleBindings by controller.
    pub role_binding_owners: OwnerIndex<RoleBinding>,
    /// Every ClusterRole (metadata only).
    pub cluster_roles: Store<PartialObjectMeta<ClusterRole>>,
    /// Every Role (metadata only).
    pub roles: Store<PartialObjectMeta<Role>>,
    /// Every Namespace (metadata only).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The operator's allowlist, by which a labelled binding with another owner is ours.
    pub allowed: std::sync::Arc<groupbinder_api::Allowlist>,
    /// The operator's settings, to plan other objects (see [`Caches::planner`]).
    pub settings: std::sync::Arc<groupbinder_api::Settings>,
}

impl Caches {
    /// Waits until the caches of bindings, roles and namespaces hold their initial lists (the
    /// controller itself waits for the AzureGroupBinding cache before any reconcile).
    ///
    /// Call it from one task only: kube's `Store::wait_until_ready` wakes only the last of several
    /// concurrent waiters of one store. Reconciles wait on [`Context`]'s `synced` signal instead,
    /// which that one task sets.
    pub async fn wait_ready(&self) {
        let _ = tokio::join!(
            self.cluster_role_bindings.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.cluster_roles.wait_until_ready(),
            self.roles.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        );
    }

    pub(crate) fn cluster_role_exists(&self, name: &str) -> bool {
        self.cluster_roles.get(&ObjectRef::new(name)).is_some()
    }

    pub(crate) fn role_exists(&self, namespace: &str, name: &str) -> bool {
        self.roles
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    pub(crate) fn namespace_exists(&self, name: &str) -> bool {
        self.namespaces.get(&ObjectRef::new(name)).is_some()
    }
}

/// The cached namespaces, with their labels, for selectors; one being deleted is not selected
/// (no RoleBinding can be created in it).
impl Namespaces for Caches {
    fn for_each(&self, each: &mut dyn FnMut(&str, Option<&Labels>)) {
        for namespace in self.namespaces.state() {
            if namespace.metadata.deletion_timestamp.is_none() {
                each(&namespace.name_any(), namespace.metadata.labels.as_ref());
            }
        }
    }
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}
