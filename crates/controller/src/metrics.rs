//! Prometheus metrics. Labels are low-cardinality by design: an error *category*, a binding kind,
//! a condition reason — never an object name or an error message.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, text::encode};
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

/// One write request the controller sends to the API server, counted where it is sent.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum WriteAction {
    /// POST of a binding.
    Create,
    /// Forced server-side apply of a binding that drifted or lost its ownerReference.
    Apply,
    /// One of the two requests (DELETE, then POST) that replace a binding whose roleRef
    /// changed: a roleRef is immutable.
    Replace,
    /// DELETE of a binding (revoked, or an orphan).
    Delete,
    /// Update of a binding someone gave another controller: taken back as planned.
    TakeBack,
    /// The merge patch that removes the finalizers holding back a revoked binding.
    Finalizers,
    /// Server-side apply of an AzureGroupBinding's status.
    Status,
}

/// Labels of a write request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// What the request did.
    pub action: WriteAction,
}

/// Labels of K10's version, as its `k10-config` ConfigMap says: one series at a time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct K10InfoLabels {
    /// `version`, e.g. `8.0.15`.
    pub version: String,
    /// `apiDomain`, e.g. `kio.kasten.io`.
    pub api_domain: String,
}

/// Labels of an Entra ID lookup's result: `group`, `not_a_group`, or an error category
/// (`throttled`, `token`, `denied`, `transport`, `unexpected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// The result.
    pub result: &'static str,
}

/// Labels of what was done with an orphaned binding: `adopted`, `taken_back` or `deleted`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrphanLabels {
    /// `adopted`, `taken_back` or `deleted`.
    pub action: &'static str,
}

/// Labels naming what is known of K10's live OIDC settings.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct K10SettingsLabels {
    /// `read`, `not_installed`, `oidc_off` or `unreadable`.
    pub state: &'static str,
}

/// Every error category a failed reconcile is counted under (`ReconcileError::category`),
/// every orphan action and binding kind: their series exist from the start, at 0, so that an
/// alert's `rate` or `increase` sees the first one.
pub const ERROR_CATEGORIES: [&str; 6] = [
    "forbidden",
    "observe",
    "apply",
    "status",
    "invalid_object",
    "abandoned",
];
/// See [`ERROR_CATEGORIES`].
pub const ORPHAN_ACTIONS: [&str; 3] = ["adopted", "taken_back", "deleted"];
/// See [`ERROR_CATEGORIES`].
pub const BINDING_KINDS: [&str; 2] = ["ClusterRoleBinding", "RoleBinding"];

/// The states of K10's live settings, as `groupbinder_k10_settings` names them.
pub const K10_SETTINGS_STATES: [&str; 4] = ["read", "not_installed", "oidc_off", "unreadable"];

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
    pub orphans: Family<OrphanLabels, Counter>,
    /// Bindings put back after someone else changed them, by kind: a count that keeps rising is
    /// another writer fighting the operator.
    pub repairs: Family<KindLabels, Counter>,
    /// 1 while this replica holds the lease (or runs without leader election), else 0.
    pub leading: Gauge,
    /// Seconds this replica has waited for the lease so far; 0 while it leads.
    pub lease_wait: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// 1 for K10's version and API domain, as `k10-config` says (no series without K10).
    pub k10_info: Family<K10InfoLabels, Gauge>,
    /// Changes of K10's live `groupPrefix` seen (what objects that follow it then use).
    pub k10_prefix_changes: Counter,
    /// 1 for what is known of K10's live OIDC settings now, 0 for the other states.
    pub k10_settings: Family<K10SettingsLabels, Gauge>,
    /// Entra ID lookups, by result.
    pub entra_lookups: Family<LookupLabels, Counter>,
    /// Entra ID lookup latency in seconds (both Graph requests of one lookup).
    pub entra_latency: Histogram,
    /// Answers 429 (or 503) from Graph.
    pub entra_throttled: Counter,
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
        let orphans = Family::<OrphanLabels, Counter>::default();
        let repairs = Family::<KindLabels, Counter>::default();
        let leading = Gauge::default();
        let lease_wait = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let k10_info = Family::<K10InfoLabels, Gauge>::default();
        let k10_prefix_changes = Counter::default();
        let k10_settings = Family::<K10SettingsLabels, Gauge>::default();
        let entra_lookups = Family::<LookupLabels, Counter>::default();
        let entra_latency = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let entra_throttled = Counter::default();
        registry.register(
            "entra_lookups",
            "Entra ID lookups of object IDs, by result: group, not_a_group, throttled, token, denied, transport, unexpected",
            entra_lookups.clone(),
        );
        registry.register(
            "entra_lookup_duration_seconds",
            "Time one Entra ID lookup took",
            entra_latency.clone(),
        );
        registry.register(
            "entra_throttled",
            "Graph answers asking to wait (429, 503)",
            entra_throttled.clone(),
        );
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
            "Write requests for bindings and statuses sent to the API server, by action: create, apply, replace, delete, finalizers, status",
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
        registry.register(
            "leading",
            "1 while this replica leads (holds the lease, or runs without leader election), else 0",
            leading.clone(),
        );
        registry.register(
            "lease_wait_seconds",
            "How long this replica has waited for the lease so far; 0 while it leads",
            lease_wait.clone(),
        );
        registry.register(
            "k10_info",
            "1 for the K10 version and API domain its k10-config ConfigMap names",
            k10_info.clone(),
        );
        registry.register(
            "k10_group_prefix_changes",
            "Changes of K10's live groupPrefix seen (objects that follow it move their subjects)",
            k10_prefix_changes.clone(),
        );
        registry.register(
            "k10_settings",
            "1 for what is known of K10's live OIDC settings: read, not_installed, oidc_off or unreadable (none before the first look)",
            k10_settings.clone(),
        );
        for category in ERROR_CATEGORIES {
            let _ = errors.get_or_create(&CategoryLabels { category });
        }
        for action in ORPHAN_ACTIONS {
            let _ = orphans.get_or_create(&OrphanLabels { action });
        }
        for kind in BINDING_KINDS {
            let _ = repairs.get_or_create(&KindLabels { kind });
        }
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
            leading,
            lease_wait,
            k10_info,
            k10_prefix_changes,
            k10_settings,
            entra_lookups,
            entra_latency,
            entra_throttled,
        }
    }

    /// Says what is known of K10's live settings now.
    pub fn k10_settings_are(&self, live: &groupbinder_api::k10oidc::K10Live) {
        use groupbinder_api::k10oidc::K10Live;
        let [read, not_installed, oidc_off, unreadable] = K10_SETTINGS_STATES;
        let state = match live {
            K10Live::Known(_) => read,
            K10Live::NotInstalled => not_installed,
            K10Live::OidcOff => oidc_off,
            K10Live::Unreadable(_) => unreadable,
        };
        for each in K10_SETTINGS_STATES {
            self.k10_settings
                .get_or_create(&K10SettingsLabels { state: each })
                .set(i64::from(each == state));
        }
    }

    /// Adds `collector`'s metrics to every scrape.
    pub(crate) fn register_collector(
        &self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_collector(collector);
    }

    /// Counts one binding of `kind` put back.
    pub fn repair(&self, kind: &'static str) {
        self.repairs.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts one orphaned binding `adopted`, `taken_back` or `deleted`.
    pub fn orphan(&self, action: &'static str) {
        self.orphans.get_or_create(&OrphanLabels { action }).inc();
    }

    /// Counts one write request, sent whatever the answer.
    pub fn write(&self, action: WriteAction) {
        self.writes.get_or_create(&WriteLabels { action }).inc();
    }

    /// `request`, counted as one `write` once it has been sent, whatever the answer.
    pub(crate) async fn counted<T>(
        &self,
        write: WriteAction,
        request: impl std::future::Future<Output = T>,
    ) -> T {
        let answer = request.await;
        self.write(write);
        answer
    }

    /// The write requests of `action` counted so far.
    pub fn writes_of(&self, action: WriteAction) -> u64 {
        self.writes.get_or_create(&WriteLabels { action }).get()
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
