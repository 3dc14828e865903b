//! Watch plumbing: every watch the controller runs relists at once on 410, backs off on other
//! errors, and drops what no reconcile reads before it is cached. Below it: the caches a
//! reconcile reads, the 410 relists, the owner index, and the indexes of which object a change
//! concerns.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};

pub(crate) mod caches;
pub(crate) mod owners;
pub(crate) mod planners;
pub(crate) mod references;
pub(crate) mod relist;
pub(crate) mod triggers;

use crate::kinds::Watched;

/// Exponential backoff with jitter from `min` to `max`, reset after 60 s without errors.
pub(crate) fn jittered_backoff(
    min: Duration,
    max: Duration,
) -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(60))
}

/// Backoff of a failed watch: 250 ms doubling to 5 s (kube's default goes up to 30 s, and an API
/// server back after 20 s then stays unwatched for up to a minute).
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    jittered_backoff(Duration::from_millis(250), Duration::from_secs(5))
}

/// What no reconcile reads: managedFields and annotations (kubectl's last-applied copy) are most
/// of an object's size.
pub(crate) fn unread<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
}

/// Metadata down to the object's identity (name, uid, versions, timestamps): for caches that only
/// say whether something exists, and for AzureGroupBindings, whose reconcile reads nothing else of
/// their metadata (GitOps tools label them; those labels would otherwise be held for nothing).
pub(crate) fn identity_only<K: Resource>(object: &mut K) {
    identity_and_labels(object);
    object.meta_mut().labels = None;
}

/// Metadata down to the object's identity and labels: for namespaces, whose labels selectors
/// read.
pub(crate) fn identity_and_labels<K: Resource>(object: &mut K) {
    unread(object);
    let meta = object.meta_mut();
    meta.owner_references = None;
    meta.finalizers = None;
}

/// The events of a watch of every `K` (or those matching `config`): a 410 relists at once (see
/// [`relist`]), other errors back off, and what is never read is taken off by `trim`.
pub(crate) fn watch_events<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    relist::relist_at_once_when_expired(watcher(api, config))
        .backoff(watch_backoff())
        .modify(trim)
}

/// The [`watch_events`] of every `K` (or those matching `config`), kept in a cache, each event
/// shown to `index` first (an [`owners::OwnerIndex`]'s `apply`, or nothing). Objects deleted while the
/// watch was down come out as deleted too (see [`relist`]).
pub fn cached<K, I>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    index: I,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
    I: Fn(&watcher::Event<K>) + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watch_events(api, config, trim);
    let stream = relist::deletes_missed_in_relists(reader.clone(), events)
        .inspect(move |event| {
            if let Ok(event) = event {
                index(event);
            }
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn an_azure_group_binding_is_cached_with_what_a_reconcile_reads() {
        let mut agb = AzureGroupBinding::new("k10-admins", AzureGroupBindingSpec::default());
        let meta = &mut agb.metadata;
        meta.uid = Some("uid-1".into());
        meta.resource_version = Some("42".into());
        meta.generation = Some(3);
        meta.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        meta.labels = Some([("kustomize.toolkit.fluxcd.io/name".into(), "rbac".into())].into());
        meta.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{}".into(),
            )]
            .into(),
        );
        meta.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        meta.finalizers = Some(vec!["example.com/hold".into()]);
        let kept = agb.clone();

        identity_only(&mut agb);

        let (meta, was) = (&agb.metadata, &kept.metadata);
        assert_eq!(meta.name, was.name);
        assert_eq!(meta.uid, was.uid);
        assert_eq!(meta.resource_version, was.resource_version);
        assert_eq!(meta.generation, was.generation);
        assert_eq!(meta.deletion_timestamp, was.deletion_timestamp);
        assert_eq!(agb.spec, kept.spec);
        assert_eq!(
            (
                &meta.labels,
                &meta.annotations,
                &meta.managed_fields,
                &meta.finalizers
            ),
            (&None, &None, &None, &None)
        );
    }
}
