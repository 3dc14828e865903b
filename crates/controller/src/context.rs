//! What a reconcile reads and holds: the watch caches, the client, the settings, and the
//! bookkeeping per object (backoff, statuses written).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingStatus, Settings};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use crate::events::Publisher;
use crate::kinds::Guarded;
use crate::metrics::Metrics;
use crate::per_object::{Failures, Written};
use crate::watch::caches::Caches;

/// Everything a reconcile needs.
pub(crate) struct Context {
    /// Client for writes and for lookups of uncached names.
    pub client: Client,
    /// The operator's settings (K10 release, allowlist, ...).
    pub settings: Settings,
    /// Watch caches.
    pub caches: Caches,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events.
    pub events: Publisher,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<Failures>,
    /// Statuses written that the cache may not show yet.
    written: Mutex<Written>,
    /// `true` once every cache holds its initial list. Until then a reconcile could mistake a role
    /// for missing or a binding for absent, and write for nothing.
    pub(crate) synced: tokio::sync::watch::Receiver<bool>,
    /// How long to wait before looking at a conflict again (the foreign binding is not watched).
    pub conflict_retry: Duration,
    /// Cancelled when this replica stops leading: running reconciles are abandoned at once, so no
    /// write is started after another replica may have taken over.
    pub(crate) lost: tokio_util::sync::CancellationToken,
    /// Cancelled when the controller stops (shutdown or lost leadership). A reconcile still
    /// waiting for the caches then gives up: the caches are no longer fed, and waiting would hold
    /// up the graceful shutdown for ever.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// K10's live OIDC settings (see [`crate::k10live`]); `None` until first read.
    pub(crate) k10: tokio::sync::watch::Receiver<Option<groupbinder_api::k10oidc::K10Live>>,
    /// Entra ID lookups (see [`crate::lookups`]); `None` when the operator does not ask.
    pub(crate) entra: Option<Arc<crate::lookups::Lookups>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// When reconciles stop: `lost` when leadership is lost (running ones are abandoned), `stop` when
/// the controller stops for any reason.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stopping {
    /// Leadership lost.
    pub(crate) lost: tokio_util::sync::CancellationToken,
    /// Shutdown or leadership lost.
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Context {
    /// A context.
    pub(crate) fn new(
        client: Client,
        settings: Settings,
        caches: Caches,
        metrics: Arc<Metrics>,
        events: Publisher,
        synced: tokio::sync::watch::Receiver<bool>,
        Stopping { lost, stop }: Stopping,
    ) -> Self {
        Context {
            client,
            settings,
            caches,
            metrics,
            events,
            failures: Mutex::default(),
            written: Mutex::default(),
            synced,
            conflict_retry: Duration::from_secs(60),
            lost,
            stop,
            k10: tokio::sync::watch::channel(None).1,
            entra: None,
        }
    }

    /// `agb` with the status this process last wrote to it, if the cache does not show it yet.
    pub(crate) fn with_written_status<'a>(
        &self,
        agb: &'a AzureGroupBinding,
    ) -> Cow<'a, AzureGroupBinding> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(agb)
    }

    pub(crate) fn remember_status(&self, agb: &AzureGroupBinding, status: AzureGroupBindingStatus) {
        let agbs = &self.caches.agbs;
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remember(agb, status, agbs.len(), |name| {
                agbs.get(&ObjectRef::new(name)).is_some()
            });
    }

    /// Counts a failed reconcile of `object`; returns the attempts so far and the delay before
    /// the next.
    pub(crate) fn record_failure(&self, object: &Guarded) -> (u32, Duration) {
        let agbs = &self.caches.agbs;
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(
                &object.name_any(),
                &object.uid().unwrap_or_default(),
                agbs.len(),
                |name| agbs.get(&ObjectRef::new(name)).is_some(),
            )
    }

    /// How many objects' failures are held.
    #[cfg(test)]
    pub(crate) fn failures_held(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// `object` was reconciled: its backoff starts over.
    pub(crate) fn clear_failures(&self, object: &Guarded) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear(&object.name_any());
    }
}
