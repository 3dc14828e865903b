//! The kinds the controller watches and writes, a leaf that every other module may import:
//! the watched AzureGroupBinding ([`Guarded`]), what a watch can cache ([`Watched`]) and the
//! two kinds of binding ([`Binding`], with the [`api`] that addresses one).

use groupbinder_api::desired::BindingKey;
use groupbinder_api::{AzureGroupBinding, RbacBinding};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::core::error_boundary::DeserializeGuard;
use kube::{Api, Client, Resource};
use serde::Serialize;

/// The watched object: an `AzureGroupBinding`, or what could be read of one that does not decode.
pub type Guarded = DeserializeGuard<AzureGroupBinding>;

/// What a watch can cache: a cluster-known kind that decodes from the API server's answers.
pub trait Watched:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// ClusterRoleBinding or RoleBinding, as the controller watches and writes it.
pub(crate) trait Binding: Watched + Serialize + RbacBinding {
    /// The API for the binding `key` (see [`api`]).
    fn api_for(client: Client, key: &BindingKey) -> Api<Self>;
}

impl Binding for ClusterRoleBinding {
    fn api_for(client: Client, _: &BindingKey) -> Api<Self> {
        Api::all(client)
    }
}

impl Binding for RoleBinding {
    fn api_for(client: Client, key: &BindingKey) -> Api<Self> {
        match key.namespace() {
            Some(namespace) => Api::namespaced(client, namespace),
            // Never "default": a ClusterRoleBinding's key given for a RoleBinding addresses no
            // namespace, and the API server refuses every write to it.
            None => Api::all(client),
        }
    }
}

/// The API for the binding `key`: in the key's namespace for a RoleBinding. Keys come from a
/// plan or from [`Binding::key`], so a RoleBinding's key always has its namespace.
pub(crate) fn api<B: Binding>(client: &Client, key: &BindingKey) -> Api<B> {
    B::api_for(client.clone(), key)
}
