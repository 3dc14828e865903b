//! Kubernetes events (events.k8s.io/v1) about AzureGroupBindings: one per reconcile that changed
//! something, shown by `kubectl describe agb` and `kubectl events`.
//!
//! kube's `Recorder` keeps every event of the last minutes in memory to count repeats as a series
//! and scans that cache on every publish; with thousands of objects that is megabytes held and
//! O(n) per event, for repeats this controller does not produce (it reports transitions). This
//! publisher just creates each event.

use groupbinder_api::desired::BindingKey;
use groupbinder_api::names::event_name;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
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

/// Creates events for one controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
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
        }
    }

    /// Creates the event. Events about cluster-scoped objects go to the `default` namespace.
    pub async fn publish(
        &self,
        regarding: ObjectReference,
        type_: Type,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let event = build(
            regarding,
            type_,
            reason,
            note,
            &self.controller,
            &self.instance,
            Timestamp::now(),
        );
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
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
        note: Some(truncate(note, NOTE_LIMIT)),
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
}
