//! Bindings labelled as groupbinder's that no living AzureGroupBinding claims.
//!
//! A binding normally goes with its AzureGroupBinding through the garbage collector. Two ways
//! around that would leave access with nothing to show for it: `kubectl delete agb --cascade=orphan`
//! (the garbage collector then removes the ownerReference instead of the binding), and anyone
//! with patch rights on bindings removing the ownerReference (that change skips RBAC's escalation
//! check), or giving it another controller (`Namespace kube-system`, say: the garbage collector
//! then keeps it for ever). A binding whose AzureGroupBinding still exists is put right by that
//! object's reconcile (adopted or taken back if still planned, deleted if not); this sweeper
//! deletes the ones whose object is gone, unless another living object plans them (someone moved
//! them away from it: it takes them back): those reported by the binding watches, and every
//! binding of an object the moment its deletion is seen (at the operator's pace, not the garbage
//! collector's). The watches also report the bindings held back by a finalizer while being
//! deleted: if their object went while no replica led, nobody saw it go, and the garbage
//! collector's delete never completes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use groupbinder_api::desired::BindingKey;
use groupbinder_api::names::OWNER_LABEL;
use groupbinder_api::{Allowlist, AzureGroupBinding};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::ListParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{Publisher, Type};
use crate::kinds::Binding;
use crate::metrics::Metrics;
use crate::reconcile::apply;
use crate::watch::caches::Caches;
use crate::watch::owners::{Claim, claim_binding};

/// Where a watch sends the bindings it saw orphaned.
pub(crate) type Sender<B> = mpsc::UnboundedSender<ObjectRef<B>>;

/// What the sweeper needs.
#[derive(Clone)]
pub(crate) struct Sweeper {
    /// Client for the confirming list and the deletes.
    pub client: Client,
    /// Events about what was deleted.
    pub events: Publisher,
    /// Counts what was deleted.
    pub metrics: Arc<Metrics>,
    /// `true` once the caches hold their initial lists.
    pub synced: tokio::sync::watch::Receiver<bool>,
    /// Stops the sweeper (shutdown or lost leadership).
    pub stop: CancellationToken,
    /// The caches: the allowlist that makes a labelled binding with another owner ours, and the
    /// objects that may plan a binding (see [`Caches::planner`]).
    pub caches: Caches,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper").finish_non_exhaustive()
    }
}

impl Sweeper {
    /// Deletes the orphans of kind `B` reported on `orphans` whose AzureGroupBinding does not
    /// exist, until `stop`.
    pub(crate) async fn run<B: Binding>(
        self,
        cache: Store<B>,
        mut orphans: mpsc::UnboundedReceiver<ObjectRef<B>>,
    ) {
        loop {
            let first = tokio::select! {
                () = self.stop.cancelled() => return,
                first = orphans.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
            };
            let mut synced = self.synced.clone();
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = synced.wait_for(|s| *s) => {}
            }
            // Gather what else came with it (a start reports every orphan at once).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut batch = HashSet::from([first]);
            while let Ok(more) = orphans.try_recv() {
                batch.insert(more);
            }
            // Transient errors (the API server away) retry the same batch.
            while let Err(error) = self.sweep(&cache, &batch).await {
                tracing::warn!(%error, "could not list AzureGroupBindings to sweep orphaned bindings; retrying");
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }

    async fn sweep<B: Binding>(
        &self,
        cache: &Store<B>,
        batch: &HashSet<ObjectRef<B>>,
    ) -> Result<(), kube::Error> {
        let candidates: Vec<Arc<B>> = batch
            .iter()
            .filter_map(|r| cache.get(r))
            .filter(|b| !matches!(claim_binding(&**b, &self.caches.allowed), Claim::Foreign))
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        // Ask the API server, not the cache, which AzureGroupBindings exist: a binding is deleted
        // only when its object certainly is not there. One list per batch; orphans are rare.
        let living: HashSet<String> = Api::<AzureGroupBinding>::all(self.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .filter_map(|o| o.metadata.uid)
            .collect();
        for binding in candidates {
            let uid = match claim_binding(&*binding, &self.caches.allowed) {
                Claim::Controlled(uid) => Some(uid),
                Claim::Orphaned(uid) => uid,
                Claim::Foreign => continue,
            };
            if uid.is_some_and(|uid| living.contains(uid)) {
                continue; // its object's reconcile adopts or deletes it
            }
            let Some(key) = binding.key() else { continue };
            if let Some(planner) = self.caches.planner(&key, uid) {
                // Moved away from the object that plans it: that one takes it back (the same
                // change to the binding triggered its reconcile).
                tracing::info!(binding = %key, planner = %planner.name, "not deleting a binding another object plans");
                continue;
            }
            if let Err(error) =
                apply::delete::<B>(&self.client, &self.metrics, &key, binding.meta()).await
            {
                tracing::warn!(%error, "could not delete an orphaned binding");
                continue;
            }
            self.metrics.orphan("deleted");
            tracing::info!(binding = %key, owner_uid = ?uid, "deleted a binding whose AzureGroupBinding is gone");
            self.announce(&key, binding.meta(), uid).await;
        }
        Ok(())
    }

    /// One event, about the AzureGroupBinding the binding was made for (gone, but named by the
    /// binding's labels), so that `kubectl get events` shows what was revoked.
    async fn announce(&self, key: &BindingKey, meta: &kube::core::ObjectMeta, uid: Option<&str>) {
        let name = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .cloned()
            .unwrap_or_else(|| key.name().to_owned());
        let regarding = ObjectReference {
            api_version: Some(AzureGroupBinding::api_version(&()).into_owned()),
            kind: Some(AzureGroupBinding::kind(&()).into_owned()),
            name: Some(name),
            uid: uid.map(str::to_owned),
            ..ObjectReference::default()
        };
        let note = format!(
            "deleted {key}: it had lost its ownerReference and its AzureGroupBinding is gone, so nothing grants it any more"
        );
        if let Err(error) = self
            .events
            .publish(regarding, Type::Warning, "OrphanDeleted", note)
            .await
        {
            tracing::debug!(%error, "could not publish an event");
        }
    }
}

/// Sends `binding` to `orphans` if it is an orphan (see [`crate::watch::owners::Claim::Orphaned`]),
/// or groupbinder's and pinned: being deleted, held back by a finalizer. Anyone who may patch
/// bindings can add one, and RBAC does not look at `deletionTimestamp`, so a pinned binding goes
/// on granting; when its object is gone without the operator seeing it go (deleted while no
/// replica led), the garbage collector's delete never completes and only the sweeper ends it.
pub(crate) fn report<B: Binding>(orphans: &Sender<B>, binding: &B, allowed: &Allowlist) {
    let meta = binding.meta();
    let pinned = meta.deletion_timestamp.is_some()
        && meta.finalizers.as_ref().is_some_and(|f| !f.is_empty());
    let sweep = match claim_binding(binding, allowed) {
        Claim::Orphaned(_) => true,
        Claim::Controlled(_) => pinned,
        Claim::Foreign => false,
    };
    if sweep {
        let _ = orphans.send(ObjectRef::from_obj(binding));
    }
}
