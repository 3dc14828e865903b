//! The groupbinder controller: watches `AzureGroupBinding`s and keeps the K10 RBAC bindings they
//! declare in place. [`run`] is the whole runtime.
//!
//! Every import runs one way (`tests/layout.rs` holds it):
//!
//! - [`runtime`](crate::run): wiring — start-up check, leader election, watches, controller loop;
//! - `reconcile`: the driver of one reconcile over its steps, each in `reconcile/` and importing
//!   only the steps before it: `observe` (caches → one value), [`groupbinder_api::plan`] (pure),
//!   `apply` (writes only), `status` (pure) and `report` (status and event writes), each with its
//!   own error type; `reconcile/outcome` (pure, a leaf) holds the values they pass on;
//! - `watch`: watch plumbing, and in `watch/` the caches, 410 relists, the owner index, and which
//!   object a change of a binding, role or namespace concerns (`triggers`, `references`);
//! - `kinds` (a leaf): the kinds watched and written; `context`: what a reconcile reads;
//!   `per_object`: backoff and statuses written, forgotten once an object is gone;
//! - `orphans`: the sweeper of bindings whose object is gone; `events`, [`metrics`],
//!   [`server`] (health and metrics endpoints), [`leader`] (leader election).

mod context;
mod events;
mod k10live;
mod kinds;
pub mod leader;
pub mod lookups;
pub mod metrics;
mod objects;
mod orphans;
mod per_object;
mod reconcile;
mod runtime;
pub mod server;
mod watch;

#[cfg(test)]
mod fakes;

pub use kinds::Watched;
pub use leader::LeaderElection;
pub use metrics::Metrics;
pub use reconcile::ReconcileError;
pub use runtime::{Config, EntraSetup, RunError, run};
pub use server::Health;
pub use watch::cached;
pub use watch::owners::OwnerIndex;

/// What the benchmark builds the operator's own write set with, to measure a floor: not an API.
#[doc(hidden)]
pub mod bench {
    pub use crate::events::{Changes, Publisher};
    pub use crate::reconcile::outcome::Outcome;
    pub use crate::reconcile::status::{binding_status, desired_status};
}
