//! Kubernetes events (events.k8s.io/v1) about AzureGroupBindings: one per reconcile that changed
//! something, shown by `kubectl describe agb` and `kubectl events`.
//!
//! Repeats are aggregated as events.k8s.io does it, with a `series`: the same reason about the same
//! object within ten minutes updates the first event (count, last time) instead of creating
//! another, and at most once per [`SERIES_WRITE_INTERVAL`]; the repeats in between are counted,
//! not written. A writer that keeps reverting a binding (another controller, a GitOps tool with the
//! old binding in Git) so costs one event, not one per repair. kube's `Recorder` scans every event
//! of the last minutes on each publish; this keeps one small entry per object and reason.

use groupbinder_api::desired::BindingKey;
use groupbinder_api::names::event_name;
use groupbinder_api::text::shown;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// The API server refuses event notes longer than this (bytes).
pub const NOTE_LIMIT: usize = 1024;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// Something went as it should.
    Normal,
    /// Something needs attention.
    Warning,
}

/// What one reconcile changed, told in one event at its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// One line per binding created, put back or deleted.
    done: Vec<String>,
    /// Whether something that existed was changed (drift), not only created or deleted.
    repaired: bool,
}

/// The event a reconcile publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Normal or Warning.
    pub type_: Type,
    /// CamelCase reason: the `Ready` reason, `Repaired` or `Changed`.
    pub reason: String,
    /// What happened, for people.
    pub note: String,
}

impl Changes {
    /// `binding` was created.
    pub fn created(&mut self, binding: &BindingKey) {
        self.done.push(format!("created {binding}"));
    }

    /// `binding` had drifted and was put back.
    pub fn put_back(&mut self, binding: &BindingKey) {
        self.done.push(format!("put {binding} back as declared"));
        self.repaired = true;
    }

    /// `binding` was deleted: the spec and the allowlist no longer give it.
    pub fn deleted(&mut self, binding: &BindingKey) {
        self.done.push(format!(
            "deleted {binding}: no longer given by the spec and allowlist"
        ));
    }

    /// `binding` had lost its ownerReference (it would have outlived this object) and got it back.
    pub fn adopted(&mut self, binding: &BindingKey) {
        self.done
            .push(format!("put the ownerReference of {binding} back"));
        self.repaired = true;
    }

    /// Someone had given `binding` another controller, which would have kept it (and its grant)
    /// past this object; it was taken back.
    pub fn taken_back(&mut self, binding: &BindingKey) {
        self.done.push(format!(
            "took {binding} back: someone had given it another controller ownerReference"
        ));
        self.repaired = true;
    }

    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// The one event for a reconcile: the new `Ready` condition if it changed (`became`), with
    /// what was changed on the way; otherwise what was changed; nothing if nothing was.
    pub fn announcement(&self, became: Option<&Condition>) -> Option<Announcement> {
        let done = self.done.join("; ");
        let (type_, reason, note) = match became {
            Some(ready) => {
                let type_ = if ready.status == "True" {
                    Type::Normal
                } else {
                    Type::Warning
                };
                let note = if done.is_empty() {
                    ready.message.clone()
                } else {
                    format!("{done}. {}", ready.message)
                };
                (type_, ready.reason.as_str(), note)
            }
            None if done.is_empty() => return None,
            None if self.repaired => (Type::Normal, "Repaired", done),
            None => (Type::Normal, "Changed", done),
        };
        Some(Announcement {
            type_,
            reason: reason.to_owned(),
            note,
        })
    }
}

/// How long a series lives: a repeat after this starts a new event (as client-go's 6-10 minutes).
pub const SERIES_LIFETIME: Duration = Duration::from_secs(600);
/// A series is written at most this often; repeats in between are only counted.
pub const SERIES_WRITE_INTERVAL: Duration = Duration::from_secs(10);

/// Creates events for one controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    series: Arc<Mutex<Series>>,
}

/// The events published lately, by object and reason.
#[derive(Debug, Default)]
pub struct Series {
    by_key: HashMap<(String, String), Seen>,
}

#[derive(Debug)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
    written: Instant,
}

/// What to do with one more event about an object and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create a new event.
    Create,
    /// Update the series of the event `namespace/name` to `count`.
    Update {
        /// The event's namespace.
        namespace: String,
        /// The event's name.
        name: String,
        /// How many times it happened.
        count: i32,
    },
    /// Only count it: the series was written moments ago.
    Count,
}

impl Series {
    /// Decides about one more event with `key` (object, reason) at `now`.
    pub fn decide(&mut self, key: &(String, String), now: Instant) -> Decision {
        let Some(seen) = self.by_key.get_mut(key) else {
            return Decision::Create;
        };
        if now.duration_since(seen.first) > SERIES_LIFETIME {
            return Decision::Create;
        }
        seen.count = seen.count.saturating_add(1);
        if now.duration_since(seen.written) < SERIES_WRITE_INTERVAL {
            return Decision::Count;
        }
        seen.written = now;
        Decision::Update {
            namespace: seen.namespace.clone(),
            name: seen.name.clone(),
            count: seen.count,
        }
    }

    /// Notes that the event `namespace/name` was created for `key` at `now`; forgets series past
    /// their lifetime.
    pub fn created(&mut self, key: (String, String), namespace: &str, name: &str, now: Instant) {
        self.by_key
            .retain(|_, seen| now.duration_since(seen.first) <= SERIES_LIFETIME);
        self.by_key.insert(
            key,
            Seen {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                count: 1,
                first: now,
                written: now,
            },
        );
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Events reported by `controller` (e.g. `groupbinder`) from `instance` (the pod).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Publisher {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            series: Arc::default(),
        }
    }

    /// Creates the event, or counts it in the series of the same reason about the same object
    /// (see the module documentation). Events about cluster-scoped objects go to the `default`
    /// namespace.
    pub async fn publish(
        &self,
        regarding: ObjectReference,
        type_: Type,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = (
            regarding
                .uid
                .clone()
                .or_else(|| regarding.name.clone())
                .unwrap_or_default(),
            reason.to_owned(),
        );
        let now = Instant::now();
        let decision = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .decide(&key, now);
        match decision {
            Decision::Count => return Ok(()),
            Decision::Update {
                namespace,
                name,
                count,
            } => {
                // Only the series may change: the API server keeps an event's note immutable.
                let patch = serde_json::json!({
                    "series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())},
                });
                tracing::warn!(object = ?regarding.name, reason, count, "the same event again: if the count keeps rising, another writer keeps undoing what groupbinder does");
                let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Err(kube::Error::Api(status)) if status.code == 404 => {} // expired: create
                    other => return other.map(|_| ()),
                }
            }
            Decision::Create => {}
        }
        let event = build(
            regarding,
            type_,
            reason,
            note,
            &self.controller,
            &self.instance,
            Timestamp::now(),
        );
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .created(key, &namespace, &name, now);
        Ok(())
    }
}

/// The event object (pure).
pub fn build(
    regarding: ObjectReference,
    type_: Type,
    reason: &str,
    note: String,
    controller: &str,
    instance: &str,
    now: Timestamp,
) -> Event {
    // `<object>.<time in hex>`, valid even for objects whose own name is 253 characters long.
    let object = regarding.name.as_deref().unwrap_or(controller);
    let name = event_name(object, &format!(".{:x}", now.as_nanosecond()));
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(
                regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
            ),
            ..ObjectMeta::default()
        },
        action: Some("Reconcile".to_owned()),
        reason: Some(reason.to_owned()),
        note: Some(truncate(shown(&note), NOTE_LIMIT)),
        type_: Some(
            match type_ {
                Type::Normal => "Normal",
                Type::Warning => "Warning",
            }
            .to_owned(),
        ),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding),
        reporting_controller: Some(controller.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        ..Event::default()
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary, marked with "…" when cut.
pub fn truncate(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("groupbinder.dev/v1alpha1".into()),
            kind: Some("AzureGroupBinding".into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        }
    }

    fn ready(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
            observed_generation: Some(1),
        }
    }

    fn binding(name: &str) -> BindingKey {
        BindingKey::Namespaced {
            namespace: "kasten-io".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_reconcile_that_changed_nothing_says_nothing() {
        assert_eq!(Changes::default().announcement(None), None);
    }

    #[test]
    fn becoming_ready_tells_what_was_created_and_the_ready_message() {
        let mut changes = Changes::default();
        changes.created(&binding("a:k10-ns-admin"));
        let became = ready("True", "Reconciled", "group g is bound");
        let event = changes.announcement(Some(&became));
        assert_eq!(
            event,
            Some(Announcement {
                type_: Type::Normal,
                reason: "Reconciled".into(),
                note: "created RoleBinding kasten-io/a:k10-ns-admin. group g is bound".into(),
            })
        );
    }

    #[test]
    fn becoming_not_ready_is_a_warning_with_its_reason() {
        let became = ready(
            "False",
            "RoleNotFound",
            "ClusterRole k10-admin does not exist",
        );
        let event = Changes::default().announcement(Some(&became));
        let event = event.expect("an event");
        assert_eq!(event.type_, Type::Warning);
        assert_eq!(event.reason, "RoleNotFound");
        assert_eq!(event.note, "ClusterRole k10-admin does not exist");
    }

    #[test]
    fn without_a_transition_drift_is_repaired_and_deletions_are_changes() {
        let mut repaired = Changes::default();
        repaired.put_back(&binding("a:k10-ns-admin"));
        repaired.deleted(&binding("a:k10-basic"));
        let event = repaired.announcement(None).expect("an event");
        assert_eq!(
            (event.type_, event.reason.as_str()),
            (Type::Normal, "Repaired")
        );
        assert_eq!(
            event.note,
            "put RoleBinding kasten-io/a:k10-ns-admin back as declared; \
             deleted RoleBinding kasten-io/a:k10-basic: no longer given by the spec and allowlist"
        );

        let mut deleted = Changes::default();
        deleted.deleted(&binding("a:k10-basic"));
        let event = deleted.announcement(None).expect("an event");
        assert_eq!(event.reason, "Changed");
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short".into(), 1024), "short");
        let long = "é".repeat(600); // 1200 bytes
        let cut = truncate(long, 1024);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn an_event_about_a_cluster_scoped_object_goes_to_default() {
        let event = build(
            reference("k10-admins"),
            Type::Warning,
            "RoleNotFound",
            "ClusterRole k10-admin does not exist".into(),
            "groupbinder",
            "pod-1",
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(event.metadata.name.as_deref(), Some("k10-admins.0"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reason.as_deref(), Some("RoleNotFound"));
        assert_eq!(event.reporting_instance.as_deref(), Some("pod-1"));
    }

    #[test]
    fn the_name_stays_valid_for_a_253_character_object_name() {
        let long = "a".repeat(253);
        let event = build(
            reference(&long),
            Type::Normal,
            "Reconciled",
            String::new(),
            "groupbinder",
            "pod-1",
            Timestamp::now(),
        );
        let name = event.metadata.name.unwrap_or_default();
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.starts_with("aaaa"));
    }

    #[test]
    fn repeats_are_counted_and_written_at_most_every_interval() {
        let mut series = Series::default();
        let key = ("uid-1".to_owned(), "Repaired".to_owned());
        let t0 = Instant::now();
        assert_eq!(series.decide(&key, t0), Decision::Create);
        series.created(key.clone(), "default", "x.1", t0);
        // A fight: many repeats within the interval are only counted.
        for ms in 1..100 {
            let at = t0 + Duration::from_millis(ms * 50);
            assert_eq!(series.decide(&key, at), Decision::Count);
        }
        let later = t0 + SERIES_WRITE_INTERVAL + Duration::from_secs(1);
        assert_eq!(
            series.decide(&key, later),
            Decision::Update {
                namespace: "default".into(),
                name: "x.1".into(),
                count: 101
            }
        );
        // Another object, or another reason, is another series.
        let other = ("uid-2".to_owned(), "Repaired".to_owned());
        assert_eq!(series.decide(&other, later), Decision::Create);
        // After the series' lifetime, a new event.
        let much_later = t0 + SERIES_LIFETIME + Duration::from_secs(1);
        assert_eq!(series.decide(&key, much_later), Decision::Create);
        series.created(other, "default", "y.1", much_later);
        assert_eq!(series.by_key.len(), 1, "expired series are forgotten");
    }
}
