//! Bookkeeping per AzureGroupBinding that forgets objects once they are gone.
//!
//! An object deleted while it has an entry (a status written, failures counted) is never
//! reconciled again, so nothing would remove its entry: when the map holds more than twice as
//! many entries as there are objects, the entries of objects no longer cached are dropped. That
//! costs O(entries) once per O(objects) inserts. An entry is for one uid: an object recreated
//! under the same name does not inherit it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingStatus};
use kube::ResourceExt;

/// Values by object name, for one uid each.
#[derive(Debug)]
pub(crate) struct PerObject<V> {
    by_name: HashMap<String, (String, V)>,
}

impl<V> Default for PerObject<V> {
    fn default() -> Self {
        PerObject {
            by_name: HashMap::new(),
        }
    }
}

impl<V> PerObject<V> {
    /// The value of the object `name` with `uid`.
    pub(crate) fn get(&self, name: &str, uid: &str) -> Option<&V> {
        self.by_name
            .get(name)
            .filter(|(held, _)| held == uid)
            .map(|(_, v)| v)
    }

    /// Forgets `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// Sets the value of `name` with `uid`; drops the entries of objects that no longer
    /// `exist` when there are more than twice as many entries as `objects` (plus some slack).
    pub(crate) fn insert(
        &mut self,
        name: &str,
        uid: &str,
        value: V,
        objects: usize,
        exists: impl Fn(&str) -> bool,
    ) {
        self.by_name
            .insert(name.to_owned(), (uid.to_owned(), value));
        if self.by_name.len() > 2 * objects + 64 {
            self.by_name.retain(|name, _| exists(name));
        }
    }

    /// How many entries are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// Consecutive failed reconciles per object, for per-object exponential backoff.
#[derive(Debug, Default)]
pub(crate) struct Failures(PerObject<u32>);

impl Failures {
    /// Counts one more failure of `name` (with `uid`); returns how long to wait before retrying.
    pub(crate) fn record(
        &mut self,
        name: &str,
        uid: &str,
        objects: usize,
        exists: impl Fn(&str) -> bool,
    ) -> (u32, Duration) {
        let attempts = self
            .0
            .get(name, uid)
            .copied()
            .unwrap_or(0)
            .saturating_add(1);
        self.0.insert(name, uid, attempts, objects, exists);
        (attempts, retry_delay(attempts))
    }

    /// `name` was reconciled: it starts from the shortest delay again.
    pub(crate) fn clear(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// How many objects are counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The delay before attempt `attempts + 1`: 0.5 s, doubling per consecutive failure, at most
/// 5 minutes.
pub(crate) fn retry_delay(attempts: u32) -> Duration {
    let base = Duration::from_millis(500);
    base.saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(Duration::from_secs(300))
}

/// The statuses this process wrote that the watch cache may not show yet, by object.
///
/// The bindings a reconcile creates trigger the next reconcile of their owner before the owner's
/// status update has come back through the watch: without this, that reconcile would see no
/// status and write the same one again.
#[derive(Debug, Default)]
pub(crate) struct Written(PerObject<WrittenStatus>);

/// A status written, and the version of the object it was written over.
#[derive(Debug)]
struct WrittenStatus {
    over: Option<String>,
    status: AzureGroupBindingStatus,
}

impl Written {
    /// `agb` with the status last written to it while the cache still shows the version it was
    /// written over; `agb` itself once the cache has moved on (the entry is then dropped).
    pub(crate) fn apply<'a>(&mut self, agb: &'a AzureGroupBinding) -> Cow<'a, AzureGroupBinding> {
        let name = agb.name_any();
        let uid = agb.uid().unwrap_or_default();
        let Some(entry) = self.0.get(&name, &uid) else {
            self.0.remove(&name);
            return Cow::Borrowed(agb);
        };
        if entry.over == agb.metadata.resource_version {
            let mut newer = agb.clone();
            newer.status = Some(entry.status.clone());
            return Cow::Owned(newer);
        }
        self.0.remove(&name);
        Cow::Borrowed(agb)
    }

    /// Notes that `status` was written over `agb`. Entries of objects deleted before their next
    /// reconcile are dropped when there are more than twice as many as `objects`, keeping those
    /// for which `exists`.
    pub(crate) fn remember(
        &mut self,
        agb: &AzureGroupBinding,
        status: AzureGroupBindingStatus,
        objects: usize,
        exists: impl Fn(&str) -> bool,
    ) {
        let entry = WrittenStatus {
            over: agb.metadata.resource_version.clone(),
            status,
        };
        let uid = agb.uid().unwrap_or_default();
        self.0.insert(&agb.name_any(), &uid, entry, objects, exists);
    }

    /// How many statuses are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is held.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::AzureGroupBindingSpec;

    #[test]
    fn retry_delay_doubles_up_to_five_minutes() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(5), Duration::from_secs(8));
        assert_eq!(retry_delay(30), Duration::from_secs(300));
    }

    #[test]
    fn failures_back_off_per_object_and_reset_on_success() {
        let mut failures = Failures::default();
        let always = |_: &str| true;
        assert_eq!(failures.record("a", "u", 2, always).0, 1);
        assert_eq!(failures.record("a", "u", 2, always).0, 2);
        assert_eq!(
            failures.record("b", "v", 2, always),
            (1, Duration::from_millis(500))
        );
        failures.clear("a");
        assert_eq!(failures.record("a", "u", 2, always).0, 1);
        // Recreated under the same name: a new object, a new count.
        assert_eq!(failures.record("a", "u2", 2, always).0, 1);
    }

    #[test]
    fn failures_of_deleted_objects_are_forgotten() {
        // Every object failed once, then all but one were deleted (never reconciled again).
        let mut failures = Failures::default();
        for n in 0..1000 {
            failures.record(&format!("o{n}"), "u", 1000, |_| true);
        }
        assert_eq!(failures.len(), 1000);
        let alive = |name: &str| name == "o0";
        for n in 0..200 {
            failures.record(&format!("new{n}"), "u", 1, alive);
        }
        assert!(failures.len() <= 2 + 64 + 1, "{} entries", failures.len());
        assert_eq!(failures.record("o0", "u", 1, alive).0, 2, "o0 still exists");
    }

    fn versioned(name: &str, uid: &str, rv: &str) -> AzureGroupBinding {
        let mut agb = AzureGroupBinding::new(name, AzureGroupBindingSpec::default());
        agb.metadata.uid = Some(uid.into());
        agb.metadata.resource_version = Some(rv.into());
        agb
    }

    fn status(group: &str) -> AzureGroupBindingStatus {
        AzureGroupBindingStatus {
            group: Some(group.into()),
            ..AzureGroupBindingStatus::default()
        }
    }

    #[test]
    fn a_written_status_stands_in_until_the_cache_moves_on() {
        let mut written = Written::default();
        let cached = versioned("a", "uid-a", "10");
        written.remember(&cached, status("g"), 1, |_| true);
        // The cache still shows version 10: the status written over it stands in.
        let seen = written.apply(&cached);
        assert_eq!(seen.status, Some(status("g")));
        // Version 11 (our write, or anything later) is in the cache: it is the truth again.
        let newer = versioned("a", "uid-a", "11");
        assert_eq!(written.apply(&newer).status, None);
        assert!(written.is_empty());
    }

    #[test]
    fn a_recreated_object_does_not_get_the_old_status() {
        let mut written = Written::default();
        written.remember(&versioned("a", "uid-1", "10"), status("g"), 1, |_| true);
        let recreated = versioned("a", "uid-2", "10");
        assert_eq!(written.apply(&recreated).status, None);
    }

    #[test]
    fn entries_of_deleted_objects_are_dropped() {
        let mut written = Written::default();
        for n in 0..200 {
            let agb = versioned(&format!("o{n}"), "u", "1");
            written.remember(&agb, status("g"), 10, |name| name == "o199");
        }
        assert!(written.len() <= 2 * 10 + 64 + 1, "{}", written.len());
    }
}
