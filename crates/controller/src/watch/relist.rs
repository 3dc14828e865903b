//! Deletions that happen while a watch is down must still be seen.
//!
//! When a watch cannot resume (after an API server restart its resource version is "too old",
//! 410), the watcher lists everything again and the cache is replaced by the new list. An object
//! deleted in the gap then just vanishes from the cache: no `Delete` event, so nothing reconciles
//! the AzureGroupBinding that owned a deleted binding, or those that refer to a deleted Role, and
//! the binding stays missing until some unrelated change. client-go's informers report such
//! objects as deleted ("DeletedFinalStateUnknown"); [`deletes_missed_in_relists`] does the same for
//! kube's watcher.
//!
//! And such a relist should start at once: [`relist_at_once_when_expired`] keeps the 410 from the
//! backoff, which after an outage has grown to its maximum.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};

/// Passes `events` through and, after each relist, adds a `Delete` event for every object that
/// `cache` held before the relist and the new list no longer has.
///
/// Put it between the watcher and the reflector that writes `cache`: at `InitDone` the cache
/// still holds what was there before the relist.
pub fn deletes_missed_in_relists<K, S>(
    cache: Store<K>,
    events: S,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let mut listed: Option<HashSet<ObjectRef<K>>> = None;
    events.flat_map(move |event| {
        let mut out = Vec::new();
        match &event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(object)) => {
                if let Some(listed) = &mut listed {
                    listed.insert(ObjectRef::from_obj(object));
                }
            }
            Ok(Event::InitDone) => {
                if let Some(listed) = listed.take() {
                    out.extend(
                        cache
                            .state()
                            .into_iter()
                            .filter(|o| !listed.contains(&ObjectRef::from_obj(&**o)))
                            .map(|o| Ok(Event::Delete((*o).clone()))),
                    );
                    if !out.is_empty() {
                        tracing::info!(
                            kind = %K::kind(&()),
                            deleted = out.len(),
                            "relisted after the watch was interrupted; some objects were deleted meanwhile"
                        );
                    }
                }
            }
            _ => {}
        }
        out.insert(0, event);
        futures::stream::iter(out)
    })
}

/// Drops the first "410 Gone" (resource version too old) error of a watch, so that the backoff
/// after it does not delay the relist the watcher starts on its own: client-go relists at once
/// too. A second 410 before any live event goes through, and is backed off like any error, so that
/// a server answering 410 to every watch is not hammered with lists.
pub fn relist_at_once_when_expired<K, S>(
    events: S,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let mut expired_before = false;
    events.filter_map(move |event| {
        let pass = match &event {
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                let first = !expired_before;
                expired_before = true;
                if first {
                    tracing::debug!(kind = %K::kind(&()), "watch expired (410); listing again");
                }
                !first
            }
            Ok(Event::Apply(_) | Event::Delete(_)) => {
                expired_before = false;
                true
            }
            _ => true,
        };
        futures::future::ready(pass.then_some(event))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::ResourceExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector;

    fn crb(name: &str) -> ClusterRoleBinding {
        let mut b = ClusterRoleBinding::default();
        b.metadata.name = Some(name.to_owned());
        b
    }

    /// An event as "kind name" (or "error").
    fn describe(event: Result<Event<ClusterRoleBinding>, watcher::Error>) -> String {
        match event {
            Ok(Event::Apply(o)) => format!("apply {}", o.name_any()),
            Ok(Event::Delete(o)) => format!("delete {}", o.name_any()),
            Ok(Event::Init) => "init".to_owned(),
            Ok(Event::InitApply(o)) => format!("initapply {}", o.name_any()),
            Ok(Event::InitDone) => "initdone".to_owned(),
            Err(_) => "error".to_owned(),
        }
    }

    /// What comes out of the adapter, described, and the cache afterwards.
    async fn run(events: Vec<Event<ClusterRoleBinding>>) -> (Vec<String>, Vec<String>) {
        let (reader, writer) = reflector::store();
        let input = futures::stream::iter(events.into_iter().map(Ok));
        let out: Vec<String> = deletes_missed_in_relists(reader.clone(), input)
            .reflect(writer)
            .map(describe)
            .collect()
            .await;
        let mut cached: Vec<String> = reader.state().iter().map(|o| o.name_any()).collect();
        cached.sort();
        (out, cached)
    }

    #[tokio::test]
    async fn an_object_gone_from_a_relist_is_reported_deleted() {
        let (out, cached) = run(vec![
            Event::Init,
            Event::InitApply(crb("a")),
            Event::InitApply(crb("b")),
            Event::InitDone,
            Event::Apply(crb("c")),
            // The watch breaks, "b" is deleted meanwhile, the watcher lists again.
            Event::Init,
            Event::InitApply(crb("a")),
            Event::InitApply(crb("c")),
            Event::InitDone,
        ])
        .await;
        assert_eq!(out[out.len() - 2..], ["initdone", "delete b"]);
        assert_eq!(cached, ["a", "c"]);
    }

    fn gone() -> Result<Event<ClusterRoleBinding>, watcher::Error> {
        let mut status = kube::core::Status::failure("too old resource version", "Expired");
        status.code = 410;
        Err(watcher::Error::WatchError(Box::new(status)))
    }

    async fn passed(events: Vec<Result<Event<ClusterRoleBinding>, watcher::Error>>) -> Vec<String> {
        relist_at_once_when_expired(futures::stream::iter(events))
            .map(describe)
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_410_after_live_events_skips_the_backoff_a_second_one_does_not() {
        let out = passed(vec![
            Ok(Event::Apply(crb("a"))),
            gone(),
            Ok(Event::Init),
            Ok(Event::InitDone),
            gone(),
            Ok(Event::Init),
            Ok(Event::InitDone),
            Ok(Event::Apply(crb("b"))),
            gone(),
        ])
        .await;
        assert_eq!(
            out,
            [
                "apply a", "init", "initdone", "error", "init", "initdone", "apply b"
            ]
        );
    }

    #[tokio::test]
    async fn the_first_list_and_an_unchanged_relist_add_nothing() {
        let (out, _) = run(vec![
            Event::Init,
            Event::InitApply(crb("a")),
            Event::InitDone,
            Event::Init,
            Event::InitApply(crb("a")),
            Event::InitDone,
        ])
        .await;
        assert!(!out.iter().any(|e| e.starts_with("delete")), "{out:?}");
    }

    #[tokio::test]
    async fn objects_added_during_the_gap_are_not_reported_deleted() {
        let (out, cached) = run(vec![
            Event::Init,
            Event::InitDone,
            Event::Init,
            Event::InitApply(crb("new")),
            Event::InitDone,
        ])
        .await;
        assert!(!out.iter().any(|e| e.starts_with("delete")), "{out:?}");
        assert_eq!(cached, ["new"]);
    }
}
