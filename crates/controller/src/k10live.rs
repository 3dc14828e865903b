//! K10's live OIDC settings, read as K10 reads them and watched: Deployment `auth-svc` in K10's
//! namespace, its volume `k10-oidc-auth`, the Secret that volume mounts.
//!
//! Only [`groupbinder_api::k10oidc::KEYS`] are taken from the Secret, the moment it arrives; the
//! Secret itself (`client-secret` included) is never kept, logged, or sent anywhere. Without
//! permission to read these objects, or without K10, the operator works as before and every
//! object's `K10Presents` condition says that it cannot tell.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use groupbinder_api::k10oidc::{
    AUTH_DEPLOYMENT, K10_CONFIG, K10Live, K10Oidc, mounted_oidc_secret,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use groupbinder_api::text::bounded;

use crate::events::{Publisher, Type};
use crate::metrics::{K10InfoLabels, Metrics};
use crate::watch::jittered_backoff;

/// What a watch of one object has found so far.
#[derive(Clone, Debug, PartialEq)]
enum Seen<T> {
    /// Nothing yet.
    Pending,
    /// It does not exist.
    Absent,
    /// It exists, as read.
    Present(T),
    /// It cannot be read: why.
    Failed(String),
}

/// What `k10-config` says: K10's version and API domain; its uid, for the event about it.
#[derive(Clone, Debug, PartialEq)]
struct K10Config {
    version: String,
    api_domain: String,
    uid: Option<String>,
}

/// The longest K10 version or API domain shown in the `k10_info` metric.
const LABEL_MAX: usize = 64;

/// Keeps `live` up to date with K10 in `namespace` until `stop`.
pub(crate) async fn run(
    client: Client,
    namespace: String,
    (live, metrics, events): (watch::Sender<Option<K10Live>>, Arc<Metrics>, Publisher),
    stop: CancellationToken,
) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let mut config_events = one(configs, K10_CONFIG, |c: ConfigMap| {
        let mut data = c.data.unwrap_or_default();
        K10Config {
            version: data.remove("version").unwrap_or_default(),
            api_domain: data.remove("apiDomain").unwrap_or_default(),
            uid: c.metadata.uid,
        }
    });
    let mut info: Option<K10InfoLabels> = None;
    // The last groupPrefix read, kept while K10 cannot be read: a change is counted once.
    let mut last_prefix: Option<String> = None;
    let mut deployment_events = one(deployments, AUTH_DEPLOYMENT, |d: Deployment| {
        mounted_oidc_secret(&d).map(str::to_owned)
    });
    let mut deployment = Seen::Pending;
    let mut secret_name: Option<String> = None;
    let mut secret_events: Option<BoxStream<'static, Seen<K10Oidc>>> = None;
    let mut secret = Seen::Pending;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(seen) = deployment_events.next() => {
                deployment = seen;
                let name = match &deployment {
                    Seen::Present(name) => name.clone(),
                    _ => None,
                };
                if name != secret_name {
                    secret_name = name.clone();
                    secret = Seen::Pending;
                    secret_events = name.map(|n| {
                        one(secrets.clone(), &n, K10Oidc::from_secret)
                    });
                }
            }
            Some(seen) = next(&mut secret_events) => secret = seen,
            Some(seen) = config_events.next() => {
                let was = info.clone();
                let uid = match &seen {
                    Seen::Present(config) => config.uid.clone(),
                    _ => None,
                };
                info = k10_version(seen, info, &metrics);
                if info != was
                    && let Some(labels) = &info
                    && groupbinder_api::k10::newer_than_covered(&labels.version) != Some(false)
                {
                    tokio::spawn(warn_newer(events.clone(), (namespace.clone(), uid), labels.version.clone()));
                }
                continue;
            }
        }
        if let Some(now) = judged(&deployment, secret_name.as_deref(), &secret, &namespace) {
            if let K10Live::Known(oidc) = &now {
                if last_prefix
                    .as_ref()
                    .is_some_and(|p| *p != oidc.group_prefix)
                {
                    metrics.k10_prefix_changes.inc();
                    tracing::warn!(from = ?last_prefix, to = %oidc.group_prefix, "K10's groupPrefix changed");
                }
                last_prefix = Some(oidc.group_prefix.clone());
            }
            metrics.k10_settings_are(&now);
            live.send_if_modified(|was| {
                let changed = was.as_ref() != Some(&now);
                if changed {
                    tracing::info!(k10 = %summary(&now), "K10's OIDC settings");
                    *was = Some(now);
                }
                changed
            });
        }
    }
}

/// Shows K10's version and API domain in the `k10_info` metric (and the log: a warning when no
/// fixture covers it); returns what the metric now holds.
fn k10_version(
    seen: Seen<K10Config>,
    was: Option<K10InfoLabels>,
    metrics: &Metrics,
) -> Option<K10InfoLabels> {
    let now = match seen {
        // Whoever may write k10-config chooses these: bounded, like every metric label.
        Seen::Present(config) => Some(K10InfoLabels {
            version: bounded(&config.version, LABEL_MAX),
            api_domain: bounded(&config.api_domain, LABEL_MAX),
        }),
        Seen::Absent | Seen::Failed(_) | Seen::Pending => None,
    };
    if now == was {
        return was;
    }
    if let Some(old) = &was {
        metrics.k10_info.remove(old);
    }
    if let Some(labels) = &now {
        metrics.k10_info.get_or_create(labels).set(1);
        let newer = groupbinder_api::k10::newer_than_covered(&labels.version);
        if newer != Some(false) {
            tracing::warn!(version = %labels.version, covered = groupbinder_api::k10::NEWEST_COVERED, "K10 is newer than (or not comparable with) the newest release this groupbinder is tested against: its roles may have changed");
        } else {
            tracing::info!(version = %labels.version, api_domain = %labels.api_domain, "K10 version");
        }
    }
    now
}

/// A warning event about `k10-config` (`kubectl events -n <K10's namespace>`): K10 `version` is
/// newer than the newest release this groupbinder's fixtures cover.
async fn warn_newer(
    events: Publisher,
    (namespace, uid): (String, Option<String>),
    version: String,
) {
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("ConfigMap".to_owned()),
        namespace: Some(namespace),
        name: Some(K10_CONFIG.to_owned()),
        uid,
        ..Default::default()
    };
    let note = format!(
        "K10 {version} is newer than {}, the newest release groupbinder is tested against: the rules of K10's roles may have changed. Bindings are made as before; check what a member may do (`kubectl auth can-i --as-group`) and upgrade groupbinder",
        groupbinder_api::k10::NEWEST_COVERED
    );
    if let Err(error) = events
        .publish(
            regarding,
            Type::Warning,
            groupbinder_api::k10::NEWER_THAN_TESTED,
            note,
        )
        .await
    {
        tracing::warn!(%error, "cannot publish the event about K10's version");
    }
}

async fn next<T>(stream: &mut Option<BoxStream<'static, T>>) -> Option<T> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// What K10's settings are, given what the watches found; `None` until both have answered.
fn judged(
    deployment: &Seen<Option<String>>,
    secret_name: Option<&str>,
    secret: &Seen<K10Oidc>,
    namespace: &str,
) -> Option<K10Live> {
    Some(match deployment {
        Seen::Pending => return None,
        Seen::Absent => K10Live::NotInstalled,
        Seen::Failed(why) => K10Live::Unreadable(why.clone()),
        Seen::Present(None) => K10Live::OidcOff,
        Seen::Present(Some(_)) => match secret {
            Seen::Pending => return None,
            Seen::Present(oidc) => K10Live::Known(oidc.clone()),
            Seen::Failed(why) => K10Live::Unreadable(why.clone()),
            Seen::Absent => K10Live::Unreadable(format!(
                "K10's {AUTH_DEPLOYMENT} mounts Secret {namespace}/{}, which does not exist",
                secret_name.unwrap_or_default()
            )),
        },
    })
}

/// For logs: never a value from the Secret beyond the settings taken.
fn summary(live: &K10Live) -> String {
    match live {
        K10Live::Known(o) => format!(
            "groupClaim {:?}, groupPrefix {:?}, {} groups allowed",
            o.group_claim,
            o.group_prefix,
            o.group_allow_list.len()
        ),
        K10Live::NotInstalled => "not installed".into(),
        K10Live::OidcOff => "OIDC off".into(),
        K10Live::Unreadable(why) => format!("unreadable: {why}"),
    }
}

/// What a watch of the one object `name` of `api` finds, each time it changes: `read` takes
/// what is needed of it at once (the object itself is dropped there).
fn one<K, T>(api: Api<K>, name: &str, read: fn(K) -> T) -> BoxStream<'static, Seen<T>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    T: Send + 'static,
{
    let kind = K::kind(&()).into_owned();
    let (namespace, name) = (
        api.namespace().unwrap_or_default().to_owned(),
        name.to_owned(),
    );
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let backoff = jittered_backoff(Duration::from_millis(500), Duration::from_secs(30));
    kube::runtime::WatchStreamExt::backoff(watcher::watcher(api, config), backoff)
        .scan(false, move |found, event| {
            let seen = match event {
                Ok(Event::Apply(object) | Event::InitApply(object)) => {
                    *found = true;
                    Some(Seen::Present(read(object)))
                }
                Ok(Event::Delete(_)) => {
                    *found = false;
                    Some(Seen::Absent)
                }
                Ok(Event::Init) => {
                    *found = false;
                    None
                }
                Ok(Event::InitDone) => (!*found).then_some(Seen::Absent),
                Err(error) => Some(Seen::Failed(unreadable(&kind, &namespace, &name, &error))),
            };
            futures::future::ready(Some(seen))
        })
        .filter_map(futures::future::ready)
        .boxed()
}

/// Why `kind namespace/name` cannot be read, and how to fix it.
fn unreadable(kind: &str, namespace: &str, name: &str, error: &watcher::Error) -> String {
    let forbidden = matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s))
            if s.code == 403
    );
    if forbidden {
        format!(
            "the operator may not read {kind} {namespace}/{name} (K10's OIDC settings): grant it get, list and watch on that object by name (the chart does, for the Secret named by k10.oidcSecretName)"
        )
    } else {
        format!("reading {kind} {namespace}/{name} failed: {error}")
    }
}
