//! Prometheus metrics. Labels are low-cardinality by design: an error *category*, a binding kind,
//! a condition reason — never an object name or an error message.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    /// The category.
    pub category: &'static str,
}

/// Labels naming a binding kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `ClusterRoleBinding` or `RoleBinding`.
    pub kind: &'static str,
}

/// Labels of a write the controller made.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `create`, `apply`, `delete` or `status`; for orphans `adopted` or `deleted`.
    pub action: &'static str,
}

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Reconciles run.
    pub reconciles: Counter,
    /// Failed reconciles, by category.
    pub errors: Family<CategoryLabels, Counter>,
    /// Ready=False outcomes, by reason.
    pub not_ready: Family<CategoryLabels, Counter>,
    /// Reconcile duration in seconds.
    pub duration: Histogram,
    /// Managed bindings, by kind.
    pub bindings: Family<KindLabels, Gauge>,
    /// Writes sent to the API server, by action.
    pub writes: Family<WriteLabels, Counter>,
    /// Bindings found without their AzureGroupBinding's ownerReference, by what was done.
    pub orphans: Family<WriteLabels, Counter>,
    /// Bindings put back after someone else changed them, by kind: a count that keeps rising is
    /// another writer fighting the operator.
    pub repairs: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new set of metrics in its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("groupbinder");
        let reconciles = Counter::default();
        let errors = Family::<CategoryLabels, Counter>::default();
        let not_ready = Family::<CategoryLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let bindings = Family::<KindLabels, Gauge>::default();
        let writes = Family::<WriteLabels, Counter>::default();
        let orphans = Family::<WriteLabels, Counter>::default();
        let repairs = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of AzureGroupBindings",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by error category",
            errors.clone(),
        );
        registry.register(
            "not_ready",
            "Reconciles that ended with Ready=False, by reason",
            not_ready.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "managed_bindings",
            "Bindings managed by groupbinder, by kind",
            bindings.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server, by action",
            writes.clone(),
        );
        registry.register(
            "orphaned_bindings",
            "Bindings labelled as groupbinder's found without their AzureGroupBinding's ownerReference, by action: adopted (ownerReference put back) or deleted",
            orphans.clone(),
        );
        registry.register(
            "repairs",
            "Bindings put back as declared after another writer changed them, by kind; a count that keeps rising is a fight",
            repairs.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            reconciles,
            errors,
            not_ready,
            duration,
            bindings,
            writes,
            orphans,
            repairs,
        }
    }

    /// Counts one binding of `kind` put back.
    pub fn repair(&self, kind: &'static str) {
        self.repairs.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts one orphaned binding `adopted` or `deleted`.
    pub fn orphan(&self, action: &'static str) {
        self.orphans.get_or_create(&WriteLabels { action }).inc();
    }

    /// Counts one write.
    pub fn write(&self, action: &'static str) {
        self.writes.get_or_create(&WriteLabels { action }).inc();
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
