//! Bookkeeping per AzureGroupBinding that forgets objects once they are gone.
//!
//! An object deleted while it has an entry (a status written, failures counted) is never
//! reconciled again, so nothing would remove its entry: when the map holds more than twice as
//! many entries as there are objects, the entries of objects no longer cached are dropped. That
//! costs O(entries) once per O(objects) inserts. An entry is for one uid: an object recreated
//! under the same name does not inherit it.

use std::collections::HashMap;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
