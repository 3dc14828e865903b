//! The groupbinder controller: watches `AzureGroupBinding`s and keeps the K10 RBAC bindings they
//! declare in place. [`run`] is the whole runtime; the reconcile logic is in [`reconcile`], the
//! decisions in the pure [`status`] module and in [`groupbinder_api::plan`].

pub mod apply;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod orphans;
pub mod owners;
pub mod reconcile;
pub mod relist;
pub mod server;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use groupbinder_api::names::MANAGED_SELECTOR;
use groupbinder_api::{AzureGroupBinding, Settings, desired::requested_roles};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

pub use leader::LeaderElection;
pub use metrics::Metrics;
pub use owners::OwnerIndex;
pub use server::Health;

use reconcile::{Caches, Context, Guarded};

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
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    let mut holder = None;
    if let Some(election) = config.leader_election.clone() {
        // A standby is ready: it serves probes and waits for the lease.
        health.set_ready(true);
        let elector = leader::Elector::new(client.clone(), election);
        if elector.acquire(&shutdown).await.is_none() {
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
    let (controller, caches) = build_controller(
        &client,
        &config,
        stop.clone(),
        (crb_orphans_tx, rb_orphans_tx),
    );
    let events = events::Publisher::new(client.clone(), "groupbinder", &config.instance);
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let sweeper = orphans::Sweeper {
        client: client.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        synced: synced.clone(),
        stop: stop.clone(),
    };
    tokio::spawn(
        sweeper
            .clone()
            .run(caches.cluster_role_bindings.clone(), crb_orphans),
    );
    tokio::spawn(sweeper.run(caches.role_bindings.clone(), rb_orphans));
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.settings.clone(),
        caches.clone(),
        metrics,
        events,
        synced,
        lost.clone(),
    ));
    let ready_health = health.clone();
    tokio::spawn(async move {
        caches.wait_ready().await;
        let _ = synced_tx.send(true);
        ready_health.set_ready(true);
        tracing::info!("caches synced; reconciling");
    });
    controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(object = %object.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(..)) => {} // logged by the error policy
                Err(error) => tracing::debug!(%error, "controller event"),
            }
        })
        .await;
    health.set_ready(false);
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

/// Exponential backoff with jitter from `min` to `max`, reset after 60 s without errors.
fn backoff(
    min: Duration,
    max: Duration,
) -> kube::runtime::utils::ResetTimerBackoff<kube::runtime::watcher::ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(exponential.into(), Duration::from_secs(60))
}

/// Backoff of a failed watch: 250 ms doubling to 5 s (kube's default goes up to 30 s, and an API
/// server back after 20 s then stays unwatched for up to a minute).
fn watch_backoff()
-> kube::runtime::utils::ResetTimerBackoff<kube::runtime::watcher::ExponentialBackoff> {
    backoff(Duration::from_millis(250), Duration::from_secs(5))
}

/// What no reconcile reads: managedFields and annotations (kubectl's last-applied copy) are most
/// of an object's size.
fn unread<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
}

/// Metadata down to the object's identity (name, uid, versions, timestamps): for caches that only
/// say whether something exists, and for AzureGroupBindings, whose reconcile reads nothing else of
/// their metadata (GitOps tools label them; those labels would otherwise be held for nothing).
fn identity_only<K: Resource>(object: &mut K) {
    unread(object);
    let meta = object.meta_mut();
    meta.labels = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

/// What a watch can cache: a cluster-known kind that decodes from the API server's answers.
pub trait Watched:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The events of a watch of every `K` (or those matching `config`): a 410 relists at once (see
/// [`relist`]), other errors back off, and what is never read is taken off by `trim`.
fn watch_events<K>(
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

/// The [`watch_events`] of every `K` (or those matching `config`), kept in a cache and, with
/// `owners`, indexed by controller. Objects deleted while the watch was down come out as deleted
/// too (see [`relist`]).
pub fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    owners: Option<OwnerIndex<K>>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store();
    let events = watch_events(api, config, trim);
    let stream = relist::deletes_missed_in_relists(reader.clone(), events)
        .inspect(move |event| {
            if let (Some(owners), Ok(event)) = (&owners, event) {
                owners.apply(event);
            }
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

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
    let (agb_reader, agb_writer) = reflector::store::<Guarded>();
    let agbs = watch_events(
        Api::<Guarded>::all(client.clone()),
        watcher::Config::default().streaming_lists(),
        identity_only,
    )
    .reflect(agb_writer)
    .applied_objects();
    let crb_owners = OwnerIndex::default();
    let rb_owners = OwnerIndex::default();
    let (crbs, crb_events) = cached(
        Api::<ClusterRoleBinding>::all(client.clone()),
        managed.clone(),
        unread,
        Some(crb_owners.clone()),
    );
    let (rbs, rb_events) = cached(
        Api::<RoleBinding>::all(client.clone()),
        managed,
        unread,
        Some(rb_owners.clone()),
    );
    // Orphans (labelled as ours, no controller) go to the sweeper too: it deletes those whose
    // AzureGroupBinding is gone; the mapper below sends the others to their object's reconcile.
    let crb_events = crb_events.inspect(move |b| {
        if let Ok(b) = b {
            orphans::report(&crb_orphans, b);
        }
    });
    let rb_events = rb_events.inspect(move |b| {
        if let Ok(b) = b {
            orphans::report(&rb_orphans, b);
        }
    });
    // Only whether roles and namespaces exist matters: watch their metadata.
    let everything = || watcher::Config::default().streaming_lists();
    let (cluster_roles, cluster_role_events) = cached(
        Api::<PartialObjectMeta<ClusterRole>>::all(client.clone()),
        everything(),
        identity_only,
        None,
    );
    let (roles, role_events) = cached(
        Api::<PartialObjectMeta<Role>>::all(client.clone()),
        everything(),
        identity_only,
        None,
    );
    let (namespaces, namespace_events) = cached(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        everything(),
        identity_only,
        None,
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
    };

    let settings = Arc::new(config.settings.clone());
    let referring =
        |store: Store<Guarded>,
         settings: Arc<Settings>,
         refers: fn(&AzureGroupBinding, &Settings, &str, Option<&str>) -> bool| {
            move |name: String, namespace: Option<String>| -> Vec<ObjectRef<Guarded>> {
                store
                    .state()
                    .iter()
                    .filter(|g| {
                        g.0.as_ref()
                            .is_ok_and(|agb| refers(agb, &settings, &name, namespace.as_deref()))
                    })
                    .map(|g| ObjectRef::from_obj(&**g))
                    .collect()
            }
        };
    let by_cluster_role = referring(agb_reader.clone(), settings.clone(), refers_to_cluster_role);
    let by_role = referring(agb_reader.clone(), settings.clone(), refers_to_role);
    let by_namespace = referring(agb_reader.clone(), settings, refers_to_namespace);

    let mut controller = Controller::for_stream(agbs, agb_reader.clone())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        // The controller also backs off its merged trigger streams (up to 30 s by default), on an
        // error from any of them: after an outage each watch's one 410 "too old resource version"
        // would add up. Every watch has its own backoff already, so this one stays short.
        .trigger_backoff(backoff(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ))
        // Not `owns_stream`: kube maps an ownerReference to the owner's name *in the child's
        // namespace*, and for a cluster-scoped owner of a RoleBinding that is another key than the
        // owner's own, so two reconciles of one object could run at once (and write twice).
        .watches_stream(crb_events, {
            let agbs = agb_reader.clone();
            move |b| agb_claiming(b.meta(), &agbs)
        })
        .watches_stream(rb_events, {
            let agbs = agb_reader.clone();
            move |b| agb_claiming(b.meta(), &agbs)
        })
        .watches_stream(cluster_role_events, move |r| {
            by_cluster_role(r.name_any(), None)
        })
        .watches_stream(role_events, move |r| by_role(r.name_any(), r.namespace()))
        .watches_stream(namespace_events, move |n| by_namespace(n.name_any(), None))
        .graceful_shutdown_on(async move { stop.cancelled().await });
    if let Some(every) = config.resync {
        let ticks = tokio_stream_interval(every);
        controller = controller.reconcile_all_on(ticks);
    }
    (controller, caches)
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

/// The AzureGroupBinding that claims the binding with `meta` (see [`owners::claim`]), if any
/// (cluster-scoped: no namespace in the reference). An orphan is found by its uid label among
/// the cached objects.
fn agb_claiming(
    meta: &kube::core::ObjectMeta,
    agbs: &Store<Guarded>,
) -> Option<ObjectRef<Guarded>> {
    match owners::claim(meta) {
        owners::Claim::Controlled(_) => {
            owners::controller_of(meta).map(|o| ObjectRef::new(&o.name))
        }
        owners::Claim::Orphaned(Some(uid)) => agbs
            .find(|g| g.uid().as_deref() == Some(uid))
            .map(|g| ObjectRef::from_obj(&*g)),
        owners::Claim::Orphaned(None) | owners::Claim::Foreign => None,
    }
}

/// Whether `agb` binds the ClusterRole `name` (cluster-wide or in a namespace).
fn refers_to_cluster_role(
    agb: &AzureGroupBinding,
    settings: &Settings,
    name: &str,
    _: Option<&str>,
) -> bool {
    let (cluster_roles, roles) = requested_roles(agb, settings);
    cluster_roles.iter().any(|r| r.as_str() == name)
        || roles
            .iter()
            .any(|r| r.kind == groupbinder_api::RoleKind::ClusterRole && r.name.as_str() == name)
}

/// Whether `agb` binds the Role `namespace/name`.
fn refers_to_role(
    agb: &AzureGroupBinding,
    settings: &Settings,
    name: &str,
    namespace: Option<&str>,
) -> bool {
    let (_, roles) = requested_roles(agb, settings);
    roles.iter().any(|r| {
        r.kind == groupbinder_api::RoleKind::Role
            && r.name.as_str() == name
            && Some(r.namespace.as_str()) == namespace
    })
}

/// Whether `agb` binds anything in namespace `name`.
fn refers_to_namespace(
    agb: &AzureGroupBinding,
    settings: &Settings,
    name: &str,
    _: Option<&str>,
) -> bool {
    let (_, roles) = requested_roles(agb, settings);
    roles.iter().any(|r| r.namespace == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::AzureGroupBindingSpec;
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
