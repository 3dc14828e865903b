//! Helpers shared by the end-to-end tests, by concern:
//!
//! - [`wait`]: polling until something holds, an object's `Ready` condition;
//! - [`access`]: what the RBAC authorizer answers (SubjectAccessReview);
//! - [`cluster`]: applying fixtures, CRDs, namespaces, K10's roles, `kubectl apply`;
//! - [`operator`]: the operator in this process or as a process;
//! - [`requests`]: the API server's own request counts;
//! - [`fixtures`], [`handmade`], [`k10`], [`oidc`]: the objects the scenarios use.

pub mod access;
pub mod cluster;
pub mod entra;
pub mod fixtures;
pub mod handmade;
pub mod k10;
pub mod oidc;
pub mod operator;
pub mod requests;
pub mod soak;
pub mod tls;
pub mod wait;

pub use access::*;
pub use cluster::*;
pub use fixtures::*;
pub use handmade::{assert_hand_made_untouched, foreign_binding, plant_hand_made};
pub use operator::*;
pub use requests::*;
pub use wait::*;

/// Field manager of test fixtures (not the operator's).
pub const TEST_MANAGER: &str = "groupbinder-tests";

/// The seed scenario's group object ID.
pub const SEED_GUID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
/// The seed scenario's K10 `auth.oidcAuth.groupPrefix`.
pub const SEED_PREFIX: &str = "michael_azure_";
