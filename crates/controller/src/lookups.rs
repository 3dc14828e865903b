//! Entra ID lookups beside the reconciles, never in front of them: a reconcile reads what is
//! known ([`Lookups::known`], no waiting) and, when nothing or something old is known, starts a
//! lookup; when the answer changes what is known, the objects naming that ID are reconciled
//! again (through [`Lookups::changes`]). A binding change is so as fast with Entra ID down as
//! with it up, and no answer, failed or partial, ever changes a binding.
//!
//! Bounded: one answer per object ID per TTL, shared by every object naming it, and asked again
//! when the TTL is up (through the objects naming it, while any does); at most
//! [`CONCURRENCY`] requests at once; after a 429 nothing is asked before `Retry-After` has passed;
//! a failed refresh keeps the last answer (marked stale) and is tried again later. A breaker: when
//! every one of the last [`BREAKER_WINDOW`] answers is "not a group", the tenant is probably wrong,
//! and no object is told its group is missing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use groupbinder_api::entra::{Answer, Known};
use groupbinder_entra::{Lookup, LookupError};
use tokio::sync::{Semaphore, mpsc};

use crate::metrics::{LookupLabels, Metrics};

/// Requests to Graph at once.
pub const CONCURRENCY: usize = 4;
/// How many answers the breaker looks at.
pub const BREAKER_WINDOW: usize = 10;
/// The wait before a failed lookup is tried again (unless Graph asks for longer).
pub const RETRY: Duration = Duration::from_secs(30);

/// The lookup service.
pub struct Lookups {
    directory: Arc<dyn Lookup>,
    /// How long an answer is kept before it is asked again.
    pub ttl: Duration,
    /// How long a missing group may be missing before `Ready` says so.
    pub window: Duration,
    /// The tenant, for messages.
    pub tenant: String,
    state: Mutex<State>,
    limit: Semaphore,
    changed: mpsc::UnboundedSender<String>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("ttl", &self.ttl)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    in_flight: HashSet<String>,
    /// Nothing is asked before this (Graph's `Retry-After`).
    not_before: Option<Instant>,
    /// Whether each of the last answers found a group.
    recent: VecDeque<bool>,
}

#[derive(Debug, Clone)]
struct Entry {
    answer: Option<Answer>,
    /// Why the last lookup failed, if it did.
    failure: Option<String>,
    /// When to ask again.
    next: Instant,
    /// Since when the ID has answered "not a group" without a break.
    missing_since: Option<Instant>,
}

impl Lookups {
    /// A service asking `directory`; `changes` (see [`Lookups::changes`]) receives each object ID
    /// whose answer changed.
    pub fn new(
        directory: Arc<dyn Lookup>,
        (tenant, ttl, window): (String, Duration, Duration),
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (changed, changes) = mpsc::unbounded_channel();
        let lookups = Arc::new(Lookups {
            directory,
            ttl,
            window,
            tenant,
            state: Mutex::default(),
            limit: Semaphore::new(CONCURRENCY),
            changed,
            metrics,
        });
        (lookups, changes)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is known about `object_id` now; starts a lookup when nothing, or something older than
    /// the TTL, is known. Never waits.
    pub fn known(self: &Arc<Self>, object_id: &str) -> Known {
        let now = Instant::now();
        let (known, ask) = {
            let mut state = self.state();
            let entry = state.entries.get(object_id).cloned();
            let due = entry.as_ref().is_none_or(|e| e.next <= now);
            let ask = due && state.in_flight.insert(object_id.to_owned());
            let breaker = breaker_open(&state.recent);
            (self.judge(entry.as_ref(), breaker, now), ask)
        };
        if ask {
            tokio::spawn(self.clone().ask(object_id.to_owned()));
        }
        known
    }

    fn judge(&self, entry: Option<&Entry>, breaker: bool, now: Instant) -> Known {
        let Some(entry) = entry else {
            return Known::Pending;
        };
        match &entry.answer {
            Some(Answer::NotAGroup(_)) if breaker => Known::Unavailable(format!(
                "each of the last {BREAKER_WINDOW} object IDs looked up is unknown to tenant {}: is the operator's --entra-tenant-id the tenant of these groups? No object is said to name a missing group until one is found",
                self.tenant
            )),
            Some(answer) => Known::Answered {
                answer: answer.clone(),
                stale: entry.failure.is_some(),
                missing_for: entry
                    .missing_since
                    .map_or(Duration::ZERO, |since| now.duration_since(since)),
            },
            None => Known::Unavailable(format!(
                "Entra ID could not be asked: {}",
                entry.failure.as_deref().unwrap_or("no answer yet")
            )),
        }
    }

    /// Looks `object_id` up (within the concurrency bound, after any `Retry-After`), records the
    /// answer, and tells whether it changed what is known.
    async fn ask(self: Arc<Self>, object_id: String) {
        let Ok(_permit) = self.limit.acquire().await else {
            return;
        };
        let wait = self
            .state()
            .not_before
            .map(|t| t.saturating_duration_since(Instant::now()));
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        let started = Instant::now();
        let result = self.directory.lookup(&object_id).await;
        self.metrics
            .entra_latency
            .observe(started.elapsed().as_secs_f64());
        let result_label = match &result {
            Ok(Answer::Group(_)) => "group",
            Ok(Answer::NotAGroup(_)) => "not_a_group",
            Err(e) => e.category(),
        };
        self.metrics
            .entra_lookups
            .get_or_create(&LookupLabels {
                result: result_label,
            })
            .inc();
        let now = Instant::now();
        let (changed, missing_since) = {
            let mut state = self.state();
            state.in_flight.remove(&object_id);
            let before = state.entries.get(&object_id).cloned();
            let breaker_before = breaker_open(&state.recent);
            let entry = match result {
                Ok(answer) => {
                    state.recent.push_back(matches!(answer, Answer::Group(_)));
                    while state.recent.len() > BREAKER_WINDOW {
                        state.recent.pop_front();
                    }
                    let missing_since = match (&answer, &before) {
                        (Answer::NotAGroup(_), Some(b)) => b.missing_since.or(Some(now)),
                        (Answer::NotAGroup(_), None) => Some(now),
                        (Answer::Group(_), _) => None,
                    };
                    Entry {
                        answer: Some(answer),
                        failure: None,
                        next: now + self.ttl,
                        missing_since,
                    }
                }
                Err(error) => {
                    let retry = match &error {
                        LookupError::Throttled { retry_after } => {
                            self.metrics.entra_throttled.inc();
                            state.not_before = Some(now + *retry_after);
                            *retry_after
                        }
                        _ => RETRY,
                    };
                    tracing::warn!(object_id, %error, retry_in = ?retry, "Entra ID lookup failed; the last answer, if any, holds");
                    Entry {
                        answer: before.as_ref().and_then(|b| b.answer.clone()),
                        failure: Some(error.to_string()),
                        next: now + retry,
                        missing_since: before.as_ref().and_then(|b| b.missing_since),
                    }
                }
            };
            // Asked again when due, whatever else happens (a group deleted in Entra ID changes
            // nothing in the cluster): the objects naming it are reconciled then, which asks;
            // with none left, nothing is asked.
            let (sender, id, due) = (
                self.changed.clone(),
                object_id.clone(),
                entry.next.saturating_duration_since(now),
            );
            tokio::spawn(async move {
                tokio::time::sleep(due).await;
                let _ = sender.send(id);
            });
            let breaker_after = breaker_open(&state.recent);
            let changed = before.as_ref().map(|b| (&b.answer, b.failure.is_some()))
                != Some((&entry.answer, entry.failure.is_some()))
                || breaker_before != breaker_after;
            let missing_since = entry.missing_since;
            state.entries.insert(object_id.clone(), entry);
            if breaker_before != breaker_after {
                // Every object naming a missing ID is told again.
                let missing: Vec<String> = state
                    .entries
                    .iter()
                    .filter(|(_, e)| matches!(e.answer, Some(Answer::NotAGroup(_))))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in missing {
                    let _ = self.changed.send(id);
                }
            }
            (changed, missing_since)
        };
        if changed {
            let _ = self.changed.send(object_id.clone());
        }
        // When the replication window closes, the objects are told that the group is missing.
        if let Some(since) = missing_since {
            let closes = since + self.window;
            if closes > now && changed {
                let (sender, id) = (self.changed.clone(), object_id);
                tokio::spawn(async move {
                    tokio::time::sleep_until(closes.into()).await;
                    let _ = sender.send(id);
                });
            }
        }
    }
}

/// Whether the last answers were all "not a group" (a wrong tenant, most likely).
fn breaker_open(recent: &VecDeque<bool>) -> bool {
    recent.len() >= BREAKER_WINDOW && recent.iter().all(|found| !found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::entra::GroupFacts;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Fake {
        calls: AtomicUsize,
        groups: Vec<String>,
        throttle: bool,
    }

    #[async_trait::async_trait]
    impl Lookup for Fake {
        async fn lookup(&self, id: &str) -> Result<Answer, LookupError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.throttle {
                return Err(LookupError::Throttled {
                    retry_after: Duration::from_secs(60),
                });
            }
            Ok(if self.groups.iter().any(|g| g == id) {
                Answer::Group(GroupFacts {
                    display_name: "g".into(),
                    security_enabled: true,
                    unified: false,
                })
            } else {
                Answer::NotAGroup(None)
            })
        }
    }

    fn service(fake: Arc<Fake>) -> (Arc<Lookups>, mpsc::UnboundedReceiver<String>) {
        Lookups::new(
            fake,
            (
                "t".into(),
                Duration::from_secs(600),
                Duration::from_secs(600),
            ),
            Arc::new(Metrics::default()),
        )
    }

    #[tokio::test]
    async fn an_answer_is_asked_again_when_its_ttl_is_up_whatever_else_happens() {
        let fake = Arc::new(Fake {
            groups: vec!["a".into()],
            ..Fake::default()
        });
        let (lookups, mut changes) = Lookups::new(
            fake.clone(),
            (
                "t".into(),
                Duration::from_millis(50),
                Duration::from_secs(600),
            ),
            Arc::new(Metrics::default()),
        );
        assert_eq!(lookups.known("a"), Known::Pending);
        assert_eq!(changes.recv().await.as_deref(), Some("a"), "answered");
        // Nobody reconciles: the TTL's end alone has the objects naming "a" reconciled, which asks.
        let due = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await;
        assert_eq!(due.ok().flatten().as_deref(), Some("a"), "due again");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        assert!(matches!(lookups.known("a"), Known::Answered { .. }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "asked again when due");
    }

    #[tokio::test]
    async fn one_request_per_id_per_ttl_whoever_asks() {
        let fake = Arc::new(Fake {
            groups: vec!["a".into()],
            ..Fake::default()
        });
        let (lookups, mut changes) = service(fake.clone());
        for _ in 0..50 {
            assert_eq!(lookups.known("a"), Known::Pending);
        }
        assert_eq!(changes.recv().await.as_deref(), Some("a"));
        for _ in 0..50 {
            assert!(matches!(lookups.known("a"), Known::Answered { .. }));
        }
        tokio::task::yield_now().await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn throttling_without_an_answer_is_unavailable_and_changes_nothing_after() {
        let fake = Arc::new(Fake {
            throttle: true,
            ..Fake::default()
        });
        let (lookups, mut changes) = service(fake.clone());
        assert_eq!(lookups.known("a"), Known::Pending);
        assert_eq!(changes.recv().await.as_deref(), Some("a"));
        assert!(matches!(lookups.known("a"), Known::Unavailable(_)));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn ten_missing_ids_in_a_row_open_the_breaker() {
        let fake = Arc::new(Fake::default());
        let (lookups, mut changes) = service(fake);
        for i in 0..BREAKER_WINDOW {
            let _ = lookups.known(&i.to_string());
        }
        for _ in 0..BREAKER_WINDOW {
            let _ = changes.recv().await;
        }
        tokio::task::yield_now().await;
        assert!(matches!(lookups.known("0"), Known::Unavailable(m) if m.contains("tenant t")));
    }
}
