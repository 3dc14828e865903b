//! The groupbinder controller: watches `AzureGroupBinding`s and keeps the K10 RBAC bindings they
//! declare in place. [`run`] is the whole runtime.
//!
//! - [`runtime`](crate::run): wiring — start-up check, leader election, watches, controller loop;
//! - `watch`, `relist`, `owners`, `triggers`, `references`: watch plumbing, caches, the owner
//!   index, and which object a change of a binding, role or namespace concerns;
//! - `reconcile`: the driver of one reconcile, a pipeline of `observe` (caches → one value),
//!   [`groupbinder_api::plan`] (pure), `apply` (writes only), [`status`] (pure) and `report`
//!   (status and event writes), each step with its own error type;
//! - `orphans`: the sweeper of bindings whose object is gone; [`events`], [`metrics`],
//!   [`server`] (health and metrics endpoints), [`leader`] (leader election).

mod apply;
mod context;
pub mod events;
pub mod leader;
pub mod metrics;
mod observe;
mod orphans;
mod owners;
mod per_object;
mod reconcile;
mod references;
mod relist;
mod report;
mod runtime;
pub mod server;
pub mod status;
mod triggers;
mod watch;

#[cfg(test)]
mod fakes;

pub use leader::LeaderElection;
pub use metrics::Metrics;
pub use owners::OwnerIndex;
pub use reconcile::ReconcileError;
pub use runtime::{Config, RunError, run};
pub use server::Health;
pub use watch::{Watched, cached};
