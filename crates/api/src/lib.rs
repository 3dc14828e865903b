//! groupbinder's API: the `AzureGroupBinding` custom resource, its status conditions, and the pure
//! function from a spec to the RBAC bindings it asks for. Nothing here talks to a cluster.

pub mod allowlist;
pub mod binding;
pub mod conditions;
pub mod desired;
pub mod entra;
pub mod k10;
pub mod k10oidc;
pub mod names;
pub mod ownership;
pub mod selector;
pub mod text;
pub mod v1alpha1;

pub use allowlist::{Allowlist, AllowlistError};
pub use binding::{RbacBinding, is_satisfied};
pub use desired::{BindingKey, BoundRole, Plan, PlanError, Planned, RefusedRole, Settings, plan};
pub use selector::Namespaces;
pub use v1alpha1::{
    AzureGroupBinding, AzureGroupBindingSpec, AzureGroupBindingStatus, BindingStatus,
    NamespaceSelector, NamespacedRole, PresentedBy, RoleKind, RoleName, SelectedNamespaces,
    SelectorOperator, SelectorRequirement, Target,
};
