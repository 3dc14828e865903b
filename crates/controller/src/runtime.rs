//! Runtime wiring: the start-up check, leader election, the watches, the orphan sweepers and the
//! controller loop, started and stopped together.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use groupbinder_api::AzureGroupBinding;
use groupbinder_api::Settings;
use groupbinder_api::names::MANAGED_SELECTOR;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Stopping};
use crate::kinds::Guarded;
use crate::reconcile;
use crate::watch::caches::Caches;
use crate::watch::references::ReferenceIndex;
use crate::watch::triggers;
use crate::watch::{
    cached, identity_and_labels, identity_only, jittered_backoff, unread, watch_events,
};
use crate::{Health, LeaderElection, Metrics, OwnerIndex, events, k10live, leader, orphans};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where K10 is, what may be bound, the default group prefix.
    pub settings: Settings,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Reconcile every object this often even without a change (`None`: only on changes).
    pub resync: Option<Duration>,
    /// Leader election, for more than one replica.
    pub leader_election: Option<LeaderElection>,
    /// Name of this instance in events (pod name).
    pub instance: String,
    /// Whether and how to ask Entra ID about each object's group (`None`: never).
    pub entra: Option<EntraSetup>,
}

/// How the controller asks Entra ID.
#[derive(Clone, Debug)]
pub struct EntraSetup {
    /// The Graph client.
    pub directory: Arc<dyn groupbinder_entra::Lookup>,
    /// The tenant, for messages.
    pub tenant: String,
    /// How long an answer is kept.
    pub ttl: Duration,
    /// How long a group may be missing before `Ready` says so.
    pub window: Duration,
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The CRD is not installed.
    #[error(
        "the AzureGroupBinding CRD (azuregroupbindings.groupbinder.dev) is not installed: install it with `groupbinder crd | kubectl apply -f -`, `kubectl apply -f crds/`, or the Helm chart"
    )]
    CrdMissing,
    /// The API server could not be reached or refused the start-up check.
    #[error("checking the AzureGroupBinding API: {0}")]
    Api(#[source] kube::Error),
    /// Leadership was lost: another replica may be leading now. Exit and let the replica restart.
    #[error("lost the leader election lease; stopping so that only one replica reconciles")]
    LostLease,
}

/// Runs the controller until `shutdown` is cancelled (then it finishes running reconciles and
/// returns `Ok`), or until leadership is lost.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    check_crd(&client).await?;
    metrics
        .leading
        .set(i64::from(config.leader_election.is_none()));
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    let mut holder = None;
    if let Some(election) = config.leader_election.clone() {
        // A standby is ready: it serves probes and waits for the lease.
        health.set_ready(true);
        let elector = leader::Elector::new(client.clone(), election);
        if elector.acquire(&shutdown, &metrics).await.is_none() {
            return Ok(());
        }
        health.set_ready(false);
        let (shutdown, lost) = (shutdown.clone(), lost.clone());
        holder = Some(tokio::spawn(
            async move { elector.hold(&shutdown, &lost).await },
        ));
    }
    {
        let (shutdown, lost, stop) = (shutdown.clone(), lost.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = lost.cancelled() => {}
            }
            stop.cancel();
        });
    }

    let (crb_orphans_tx, crb_orphans) = tokio::sync::mpsc::unbounded_channel();
    let (rb_orphans_tx, rb_orphans) = tokio::sync::mpsc::unbounded_channel();
    // K10's live OIDC settings: every object is reconciled again when they change.
    let events = events::Publisher::new(client.clone(), "groupbinder", &config.instance);
    let (k10_tx, k10) = tokio::sync::watch::channel(None);
    tokio::spawn(k10live::run(
        client.clone(),
        config.settings.k10_namespace.clone(),
        (k10_tx, metrics.clone(), events.clone()),
        stop.clone(),
    ));
    let (mut controller, caches) = build_controller(
        &client,
        &config,
        stop.clone(),
        (crb_orphans_tx, rb_orphans_tx),
    );
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    controller = controller.reconcile_all_on(k10_changes(k10.clone(), synced.clone()));
    metrics.register_collector(Box::new(crate::objects::ObjectsByReady(
        caches.agbs.clone(),
    )));
    let entra = config.entra.as_ref().map(|setup| {
        let (lookups, changes) = crate::lookups::Lookups::new(
            setup.directory.clone(),
            (setup.tenant.clone(), setup.ttl, setup.window),
            metrics.clone(),
        );
        (lookups, changes)
    });
    let entra = match entra {
        Some((lookups, changes)) => {
            controller = controller.reconcile_on(entra_changes(changes, caches.agbs.clone()));
            Some(lookups)
        }
        None => None,
    };
    let sweeper = orphans::Sweeper {
        client: client.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        synced: synced.clone(),
        stop: stop.clone(),
        caches: caches.clone(),
    };
    tokio::spawn(
        sweeper
            .clone()
            .run(caches.cluster_role_bindings.clone(), crb_orphans),
    );
    tokio::spawn(sweeper.run(caches.role_bindings.clone(), rb_orphans));
    let leading = metrics.clone();
    let mut ctx = Context::new(
        client.clone(),
        config.settings.clone(),
        caches.clone(),
        metrics,
        events,
        synced,
        Stopping {
            lost: lost.clone(),
            stop: stop.clone(),
        },
    );
    ctx.k10 = k10.clone();
    ctx.entra = entra;
    let ctx = Arc::new(ctx);
    let ready_health = health.clone();
    let listed = caches.agbs.clone();
    tokio::spawn(async move {
        caches.wait_ready().await;
        // K10's settings too, so that a start does not write every status twice; not for
        // ever: a K10 watch that never answers leaves them unknown.
        let mut k10 = k10;
        let first = k10.wait_for(Option::is_some);
        let _ = tokio::time::timeout(Duration::from_secs(10), first).await;
        let _ = synced_tx.send(true);
        ready_health.set_ready(true);
        tracing::info!("caches synced; reconciling");
    });
    let running = controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(object = %object.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(..)) => {} // logged by the error policy
                Err(error) => tracing::debug!(%error, "controller event"),
            }
        });
    // kube-runtime's graceful shutdown stops polling the AzureGroupBinding watch and then waits
    // for its store to be ready before it lets the (empty) runner end: stopped before the first
    // list completed, it would wait for ever (seen in CI: a standby stopped just after it took
    // the lease). No reconcile starts before that list, so there is nothing to wait for.
    let stopped_unlisted = async {
        stop.cancelled().await;
        if listed.wait_until_ready().now_or_never().is_some() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = running => {}
        () = stopped_unlisted => tracing::info!("stopped before the first list; nothing was reconciled"),
    }
    health.set_ready(false);
    leading.leading.set(0);
    if let Some(holder) = holder {
        let _ = holder.await;
    }
    if lost.is_cancelled() && !shutdown.is_cancelled() {
        return Err(RunError::LostLease);
    }
    tracing::info!("controller stopped");
    Ok(())
}

async fn check_crd(client: &Client) -> Result<(), RunError> {
    let api: Api<AzureGroupBinding> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(RunError::CrdMissing),
        Err(error) => Err(RunError::Api(error)),
    }
}

/// The controller and the caches its reconciles read.
fn build_controller(
    client: &Client,
    config: &Config,
    stop: CancellationToken,
    (crb_orphans, rb_orphans): (
        orphans::Sender<ClusterRoleBinding>,
        orphans::Sender<RoleBinding>,
    ),
) -> (Controller<Guarded>, Caches) {
    let managed = watcher::Config::default()
        .streaming_lists()
        .labels(MANAGED_SELECTOR);
    let settings = Arc::new(config.settings.clone());
    let (agb_reader, agb_writer) = reflector::store::<Guarded>();
    let references = ReferenceIndex::new(settings.clone(), agb_reader.clone());
    let allowed = Arc::new(config.settings.allowed.clone());
    let crb_owners = OwnerIndex::new(allowed.clone());
    let rb_owners = OwnerIndex::new(allowed.clone());
    let agbs = watch_events(
        Api::<Guarded>::all(client.clone()),
        watcher::Config::default().streaming_lists(),
        identity_only,
    )
    .inspect({
        let index = references.clone();
        let (crb_owners, rb_owners) = (crb_owners.clone(), rb_owners.clone());
        let (crb_orphans, rb_orphans) = (crb_orphans.clone(), rb_orphans.clone());
        move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
            // A deleted object's bindings go to the sweeper at once: it deletes them itself,
            // at the operator's pace, those that another ownerReference would keep from the
            // garbage collector included.
            if let Ok(watcher::Event::Delete(deleted)) = event
                && let Some(uid) = deleted.uid()
            {
                for binding in crb_owners.owned_by(&uid) {
                    let _ = crb_orphans.send(binding);
                }
                for binding in rb_owners.owned_by(&uid) {
                    let _ = rb_orphans.send(binding);
                }
            }
        }
    })
    .reflect(agb_writer)
    .applied_objects();
    let (crbs, crb_events) = cached(
        Api::<ClusterRoleBinding>::all(client.clone()),
        managed.clone(),
        unread,
        {
            let index = crb_owners.clone();
            move |event: &watcher::Event<ClusterRoleBinding>| index.apply(event)
        },
    );
    let (rbs, rb_events) = cached(Api::<RoleBinding>::all(client.clone()), managed, unread, {
        let index = rb_owners.clone();
        move |event: &watcher::Event<RoleBinding>| index.apply(event)
    });
    // Orphans (labelled as ours, without an AzureGroupBinding controller) go to the sweeper too:
    // it deletes those whose AzureGroupBinding is gone; the mapper below sends the others to
    // their object's reconcile.
    let crb_events = crb_events.inspect({
        let allowed = allowed.clone();
        move |b| {
            if let Ok(b) = b {
                orphans::report(&crb_orphans, b, &allowed);
            }
        }
    });
    let rb_events = rb_events.inspect({
        let allowed = allowed.clone();
        move |b| {
            if let Ok(b) = b {
                orphans::report(&rb_orphans, b, &allowed);
            }
        }
    });
    // Only whether roles and namespaces exist matters: watch their metadata.
    let everything = || watcher::Config::default().streaming_lists();
    let (cluster_roles, cluster_role_events) = cached(
        Api::<PartialObjectMeta<ClusterRole>>::all(client.clone()),
        everything(),
        identity_only,
        |_| {},
    );
    let (roles, role_events) = cached(
        Api::<PartialObjectMeta<Role>>::all(client.clone()),
        everything(),
        identity_only,
        |_| {},
    );
    // Namespaces with their labels, which selectors read.
    let (namespaces, namespace_events) = cached(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        everything(),
        identity_and_labels,
        |_| {},
    );
    let caches = Caches {
        agbs: agb_reader.clone(),
        cluster_role_bindings: crbs,
        cluster_role_binding_owners: crb_owners,
        role_bindings: rbs,
        role_binding_owners: rb_owners,
        cluster_roles,
        roles,
        namespaces,
        allowed: allowed.clone(),
        settings: settings.clone(),
    };

    // Roles and namespaces go to the objects that refer to them, found in the index.
    let by_cluster_role = {
        let index = references.clone();
        move |r: PartialObjectMeta<ClusterRole>| index.by_cluster_role(&r.name_any())
    };
    let by_role = {
        let index = references.clone();
        move |r: PartialObjectMeta<Role>| {
            index.by_role(&r.namespace().unwrap_or_default(), &r.name_any())
        }
    };
    // A namespace being deleted (every deleted namespace is first) selects nothing. Not the
    // cache: during a (re)list it is filled only once the list is complete.
    let by_namespace = move |n: PartialObjectMeta<Namespace>| {
        let labels = n
            .metadata
            .deletion_timestamp
            .is_none()
            .then(|| n.metadata.labels.clone().unwrap_or_default());
        let concerned = references.changed(&n.name_any(), labels);
        tracing::debug!(namespace = %n.name_any(), concerned = concerned.len(), "namespace event");
        concerned
    };

    let mut controller = Controller::for_stream(agbs, agb_reader.clone())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        // The controller also backs off its merged trigger streams (up to 30 s by default), on an
        // error from any of them: after an outage each watch's one 410 "too old resource version"
        // would add up. Every watch has its own backoff already, so this one stays short.
        .trigger_backoff(jittered_backoff(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ))
        // Bindings go to the object that claims them (see `triggers::concerned` for why not
        // `owns_stream`).
        .watches_stream(crb_events, {
            let (agbs, allowed) = (agb_reader.clone(), allowed.clone());
            move |b| triggers::concerned(&b, &allowed, &agbs)
        })
        .watches_stream(rb_events, {
            let (agbs, allowed) = (agb_reader.clone(), allowed.clone());
            move |b| triggers::concerned(&b, &allowed, &agbs)
        })
        .watches_stream(cluster_role_events, by_cluster_role)
        .watches_stream(role_events, by_role)
        .watches_stream(namespace_events, by_namespace)
        .graceful_shutdown_on(async move { stop.cancelled().await });
    if let Some(every) = config.resync {
        let ticks = tokio_stream_interval(every);
        controller = controller.reconcile_all_on(ticks);
    }
    (controller, caches)
}

/// One `()` each time K10's settings change after they were first read, and when they are first
/// read only after the reconciles began (`synced`: the start stopped waiting for them): the
/// objects reconciled meanwhile held or revoked their bindings, not knowing K10's prefix.
fn k10_changes(
    k10: tokio::sync::watch::Receiver<Option<groupbinder_api::k10oidc::K10Live>>,
    synced: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((k10, synced), |(mut k10, synced)| async move {
        loop {
            let before = k10.borrow_and_update().is_some();
            k10.changed().await.ok()?;
            if before || *synced.borrow() {
                return Some(((), (k10, synced)));
            }
        }
    })
}

/// The objects naming each object ID whose Entra ID answer changed.
fn entra_changes(
    changes: tokio::sync::mpsc::UnboundedReceiver<String>,
    agbs: kube::runtime::reflector::Store<Guarded>,
) -> impl Stream<Item = kube::runtime::reflector::ObjectRef<Guarded>> + Send + 'static {
    futures::stream::unfold(changes, |mut changes| async move {
        let id = changes.recv().await?;
        Some((id, changes))
    })
    .flat_map(move |id| {
        let concerned: Vec<_> = agbs
            .state()
            .iter()
            .filter(|g| g.0.as_ref().is_ok_and(|agb| agb.spec.group_object_id == id))
            .map(|g| kube::runtime::reflector::ObjectRef::from_obj(&**g))
            .collect();
        futures::stream::iter(concerned)
    })
}

fn tokio_stream_interval(every: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        |mut interval| async {
            interval.tick().await;
            Some(((), interval))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::k10oidc::K10Live;

    /// How many reconciles-of-everything are due by now.
    fn due(stream: &mut (impl Stream<Item = ()> + Unpin)) -> usize {
        let mut n = 0;
        while let Some(Some(())) = stream.next().now_or_never() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn k10s_settings_read_late_reconcile_everything_read_early_do_not() {
        // Read before the reconciles began: the reconciles read them anyway.
        let (k10, rx) = tokio::sync::watch::channel(None);
        let (synced, synced_rx) = tokio::sync::watch::channel(false);
        let mut changes = Box::pin(k10_changes(rx, synced_rx));
        assert_eq!(due(&mut changes), 0);
        k10.send_replace(Some(K10Live::NotInstalled));
        assert_eq!(due(&mut changes), 0);
        synced.send_replace(true);
        k10.send_replace(Some(K10Live::OidcOff));
        assert_eq!(due(&mut changes), 1, "a change after the first read");

        // Read only after the start stopped waiting for them (the soak's seed 20261203).
        let (k10, rx) = tokio::sync::watch::channel(None);
        let (_synced, synced_rx) = tokio::sync::watch::channel(true);
        let mut changes = Box::pin(k10_changes(rx, synced_rx));
        assert_eq!(due(&mut changes), 0);
        k10.send_replace(Some(K10Live::NotInstalled));
        assert_eq!(due(&mut changes), 1, "the first read, late");
    }
}
