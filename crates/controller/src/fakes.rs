//! Fakes for unit tests: a scripted API server ([`FakeApi`], a `tower::Service` behind a real
//! `kube::Client`) and watch caches filled by hand ([`FakeCaches`]). Each test answers requests
//! with a function of the request and reads back the requests it got, so the branches of the I/O
//! code run in milliseconds, with no control plane. Whether the API server would really answer
//! so is for the end-to-end tests to prove.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec, Plan, Settings};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::client::Body;
use kube::core::error_boundary::DeserializeGuard;
use kube::core::{ObjectMeta, PartialObjectMetaExt};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use crate::kinds::Guarded;
use crate::metrics::{Metrics, WriteAction};
use crate::watch::caches::Caches;
use crate::watch::owners::OwnerIndex;

/// One request as the fake API server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// `GET`, `POST`, `PATCH`, `DELETE`, ...
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query string, if any.
    pub(crate) query: String,
    /// The body as JSON (`null` when empty).
    pub(crate) body: Value,
}

impl Seen {
    /// `METHOD path`, for assertions.
    pub(crate) fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

type Answer = dyn Fn(&Seen) -> (u16, Value) + Send + Sync;

/// The fake API server.
#[derive(Clone)]
pub(crate) struct FakeApi {
    answer: Arc<Answer>,
    seen: Arc<Mutex<Vec<Seen>>>,
    metrics: Arc<Metrics>,
}

impl FakeApi {
    /// A server that answers each request with `answer(request)`: a status code and a body.
    pub(crate) fn new(answer: impl Fn(&Seen) -> (u16, Value) + Send + Sync + 'static) -> Self {
        FakeApi {
            answer: Arc::new(answer),
            seen: Arc::default(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The metrics the code under test counts its writes in.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Fails unless [`Self::metrics`] counted exactly the write requests for bindings and
    /// statuses this server got, each as what it was (the DELETE and the POST of a replace are
    /// both counted `replace`). Events are not counted there.
    pub(crate) fn assert_writes_counted(&self) {
        let (mut post, mut delete, mut apply, mut finalizers, mut status) = (0, 0, 0, 0, 0);
        for r in self.requests() {
            if r.path.starts_with("/apis/events.k8s.io/") {
                continue;
            }
            let unpins = r.body["metadata"]
                .as_object()
                .is_some_and(|m| m.get("finalizers") == Some(&Value::Null));
            match r.method.as_str() {
                "POST" => post += 1,
                "DELETE" => delete += 1,
                "PATCH" if r.path.ends_with("/status") => status += 1,
                "PATCH" if unpins => finalizers += 1,
                "PATCH" => apply += 1,
                _ => {}
            }
        }
        let counted = |action| self.metrics.writes_of(action);
        let lines = self.lines();
        let (create, remove) = (counted(WriteAction::Create), counted(WriteAction::Delete));
        // A replace's DELETE or POST is counted `replace`, every other one as itself.
        assert_eq!(
            create + remove + counted(WriteAction::Replace),
            post + delete,
            "{lines:?}"
        );
        assert!(create <= post && remove <= delete, "{lines:?}");
        assert_eq!(counted(WriteAction::Apply), apply, "{lines:?}");
        assert_eq!(counted(WriteAction::Finalizers), finalizers, "{lines:?}");
        assert_eq!(counted(WriteAction::Status), status, "{lines:?}");
    }

    /// A client of this server.
    pub(crate) fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// The requests so far, as `METHOD path`.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Seen::line).collect()
    }

    /// The requests so far.
    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The first request to `path`, if any.
    pub(crate) fn request_to(&self, path: &str) -> Option<Seen> {
        self.requests().into_iter().find(|r| r.path == path)
    }
}

/// The seed's uid.
pub(crate) const UID: &str = "0a6c6f1e-0000-4000-8000-000000000001";
/// The seed's group object ID.
pub(crate) const GUID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
/// The path of ClusterRoleBindings.
pub(crate) const CRBS: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
/// The path of RoleBindings in K10's namespace.
pub(crate) const RBS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/kasten-io/rolebindings";

/// The seed scenario's settings: K10 release `k10` in `kasten-io`, prefix `michael_azure_`.
pub(crate) fn settings() -> Settings {
    Settings::for_k10("k10", "kasten-io", "michael_azure_")
}

/// The seed AzureGroupBinding `k10-admins` (K10's admin profile) for `group_object_id`, as the
/// API server would hand it over (uid, generation 1).
pub(crate) fn seed(group_object_id: &str) -> AzureGroupBinding {
    let spec = AzureGroupBindingSpec {
        group_object_id: group_object_id.into(),
        ..AzureGroupBindingSpec::default()
    };
    let mut agb = AzureGroupBinding::new("k10-admins", spec);
    agb.metadata.uid = Some(UID.into());
    agb.metadata.generation = Some(1);
    agb.metadata.resource_version = Some("1".into());
    agb
}

/// The seed's plan.
pub(crate) fn seed_plan() -> Plan {
    groupbinder_api::plan(&seed(GUID), &settings(), None).unwrap()
}

/// A `metav1.Status` failure with `code` and `reason`, as the API server sends it.
pub(crate) fn failure(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": format!("fake: {reason}"),
            "reason": reason,
            "code": code,
        }),
    )
}

/// The success `metav1.Status` a DELETE answers with once the object is gone.
pub(crate) fn deleted() -> (u16, Value) {
    (
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
    )
}

/// The request body echoed back with a uid, as a create or apply answers.
pub(crate) fn echo(seen: &Seen) -> (u16, Value) {
    let mut body = seen.body.clone();
    body["metadata"]["uid"] = json!("new-uid");
    (if seen.method == "POST" { 201 } else { 200 }, body)
}

impl tower_service::Service<http::Request<Body>> for FakeApi {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            this.seen.lock().unwrap().push(seen.clone());
            let (code, value) = (this.answer)(&seen);
            let response = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap();
            Ok(response)
        })
    }
}

/// Watch caches filled by hand.
pub(crate) struct FakeCaches {
    /// The caches, as a reconcile reads them.
    pub(crate) caches: Caches,
    agbs: Writer<Guarded>,
    cluster_role_bindings: Writer<ClusterRoleBinding>,
    role_bindings: Writer<RoleBinding>,
    cluster_roles: Writer<kube::core::PartialObjectMeta<ClusterRole>>,
    roles: Writer<kube::core::PartialObjectMeta<Role>>,
    namespaces: Writer<kube::core::PartialObjectMeta<Namespace>>,
}

impl FakeCaches {
    /// Empty caches.
    pub(crate) fn new() -> Self {
        let (agbs_r, agbs) = reflector::store();
        let (crbs_r, cluster_role_bindings) = reflector::store();
        let (rbs_r, role_bindings) = reflector::store();
        let (cluster_roles_r, cluster_roles) = reflector::store();
        let (roles_r, roles) = reflector::store();
        let (namespaces_r, namespaces) = reflector::store();
        // The default allowlist of release `k10` in `kasten-io`, as the tests' settings.
        let allowed = Arc::new(groupbinder_api::Allowlist::k10("k10", "kasten-io"));
        FakeCaches {
            caches: Caches {
                agbs: agbs_r,
                cluster_role_bindings: crbs_r,
                cluster_role_binding_owners: OwnerIndex::new(allowed.clone()),
                role_bindings: rbs_r,
                role_binding_owners: OwnerIndex::new(allowed.clone()),
                cluster_roles: cluster_roles_r,
                roles: roles_r,
                namespaces: namespaces_r,
                allowed,
                settings: Arc::new(settings()),
            },
            agbs,
            cluster_role_bindings,
            role_bindings,
            cluster_roles,
            roles,
            namespaces,
        }
    }

    /// K10's roles (release `k10` in `kasten-io`) and its namespace.
    pub(crate) fn with_k10() -> Self {
        let mut caches = FakeCaches::new();
        for role in ["k10-admin", "k10-basic", "k10-config-view", "k10-mc-admin"] {
            caches.cluster_role(role);
        }
        caches.namespace("kasten-io");
        caches.role("kasten-io", "k10-ns-admin");
        caches
    }

    /// Caches `agb`.
    pub(crate) fn agb(&mut self, agb: &AzureGroupBinding) {
        self.agbs
            .apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(agb.clone()))));
    }

    /// Caches the ClusterRole `name`.
    pub(crate) fn cluster_role(&mut self, name: &str) {
        self.cluster_roles
            .apply_watcher_event(&Event::Apply(identity(None, name)));
    }

    /// Caches the Role `namespace/name`.
    pub(crate) fn role(&mut self, namespace: &str, name: &str) {
        self.roles
            .apply_watcher_event(&Event::Apply(identity(Some(namespace), name)));
    }

    /// Caches the Namespace `name`.
    pub(crate) fn namespace(&mut self, name: &str) {
        self.namespaces
            .apply_watcher_event(&Event::Apply(identity(None, name)));
    }

    /// Caches (and indexes) a ClusterRoleBinding.
    pub(crate) fn cluster_role_binding(&mut self, binding: &ClusterRoleBinding) {
        let event = Event::Apply(binding.clone());
        self.caches.cluster_role_binding_owners.apply(&event);
        self.cluster_role_bindings.apply_watcher_event(&event);
    }

    /// Caches (and indexes) a RoleBinding.
    pub(crate) fn role_binding(&mut self, binding: &RoleBinding) {
        let event = Event::Apply(binding.clone());
        self.caches.role_binding_owners.apply(&event);
        self.role_bindings.apply_watcher_event(&event);
    }
}

/// The metadata-only object `namespace/name`, as a metadata watch caches it.
fn identity<K: kube::Resource<DynamicType = ()>>(
    namespace: Option<&str>,
    name: &str,
) -> kube::core::PartialObjectMeta<K> {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
    .into_request_partial()
}
