//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! acquire the lease when it is free or expired, renew it while leading, give it up on shutdown so
//! a standby takes over at once, and stop leading when it cannot be renewed in time.
//!
//! Expiry is judged by this replica's own clock only: a lease held by another replica expires a
//! lease duration after this replica last *saw its record change*, never by comparing the remote
//! `renewTime` with the local clock. Replicas' clocks differ; with a holder whose clock is a
//! minute behind, that comparison made two leaders, and with one an hour ahead, a dead holder
//! kept the lease for an hour.
//!
//! Nor is a remote lease duration trusted beyond this replica's own: anyone who may update the
//! Lease could write `leaseDurationSeconds: 2147483647` (and another holder), and every replica
//! would then wait for ever while nothing reconciles. All replicas run with the same duration
//! (the chart's value), so the shorter of the two is the holder's real promise.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use groupbinder_api::names::FIELD_MANAGER;

use crate::metrics::Metrics;

/// How to elect a leader.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews, and a standby retries.
    pub retry_period: Duration,
}

/// A failed Lease request.
#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

/// The elector of one replica.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaderElection,
    /// The lease record last read or written, and when (this replica's monotonic clock) it was
    /// first seen as it is.
    observed: std::sync::Mutex<Option<(LeaseSpec, tokio::time::Instant)>>,
}

impl Elector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaderElection) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: std::sync::Mutex::new(None),
        }
    }

    /// Waits until this replica holds the lease; `None` if `shutdown` came first. `metrics` show
    /// how long it has waited, and that it leads once it does.
    pub async fn acquire(&self, shutdown: &CancellationToken, metrics: &Metrics) -> Option<()> {
        let started = tokio::time::Instant::now();
        metrics.leading.set(0);
        loop {
            metrics.lease_wait.set(started.elapsed().as_secs_f64());
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, waited = ?started.elapsed(), "became leader");
                    metrics.lease_wait.set(0.0);
                    metrics.leading.set(1);
                    return Some(());
                }
                Ok(false) => {
                    tracing::debug!(lease = %self.config.name, "lease held by another replica")
                }
                Err(error) => tracing::warn!(%error, "could not acquire the lease"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// Renews the lease until `shutdown`, then releases it. Cancels `lost` and returns if the lease
    /// could not be renewed before it expired (someone else may be leading now).
    pub async fn hold(&self, shutdown: &CancellationToken, lost: &CancellationToken) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.config.name, "lost the lease to another replica");
                    lost.cancel();
                    return;
                }
                Err(error) => tracing::warn!(%error, "could not renew the lease"),
            }
            // Stop leading a little before the lease expires for the others.
            if last_renewal.elapsed() + self.config.retry_period >= self.config.lease_duration {
                tracing::error!(lease = %self.config.name, "could not renew the lease in time");
                lost.cancel();
                return;
            }
        }
        self.release().await;
    }

    /// Takes the lease if it is free, expired or already ours; `Ok(false)` if someone else holds it.
    async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let now = Timestamp::now();
        let me = &self.config.identity;
        let duration = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&self.post_params(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(self.error(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(me.as_str());
        let remote = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(duration)).unwrap_or(0),
        );
        let valid = remote.min(self.config.lease_duration);
        let seen_since = self.observe(spec);
        if !ours && holder.is_some() && seen_since.elapsed() < valid {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(me.clone());
        spec.lease_duration_seconds = Some(duration);
        spec.renew_time = Some(MicroTime(now));
        // replace() sends the resourceVersion we read: if another replica wrote in between, the
        // API server refuses with 409 and we did not take the lease.
        match self
            .api
            .replace(&self.config.name, &self.post_params(), &lease)
            .await
        {
            Ok(written) => {
                if let Some(spec) = &written.spec {
                    self.observe(spec);
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Notes `record` as read now; returns when this replica first saw it as it is.
    fn observe(&self, record: &LeaseSpec) -> tokio::time::Instant {
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match observed.as_ref() {
            Some((seen, since)) if seen == record => *since,
            _ => {
                let now = tokio::time::Instant::now();
                *observed = Some((record.clone(), now));
                now
            }
        }
    }

    /// Gives the lease up, so that a standby replica takes over without waiting for it to expire.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.config.name, &self.post_params(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the lease"),
            Err(error) => tracing::warn!(%error, "could not release the lease"),
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        }
    }

    fn error(&self, source: kube::Error) -> LeaseError {
        LeaseError {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }
}
