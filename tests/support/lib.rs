//! Helpers shared by the end-to-end tests.

use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what} (last error: {last_error:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) until the RBAC authorizer allows `user` in `groups` to do `verb` on
/// `group/resource` in `namespace`: it reads bindings from its own watch cache, so a binding
/// counts a moment after it is written.
pub async fn granted(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    answered(
        true,
        client,
        user,
        groups,
        (verb, group, resource, namespace),
    )
    .await
}

/// Waits (up to 10 s) until the RBAC authorizer refuses what [`granted`] waits for: a deleted
/// binding leaves the authorizer's cache a moment after it is deleted.
pub async fn denied(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    answered(
        false,
        client,
        user,
        groups,
        (verb, group, resource, namespace),
    )
    .await
}

async fn answered(
    expected: bool,
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    (verb, group, resource, namespace): (&str, &str, &str, Option<&str>),
) -> anyhow::Result<()> {
    let answer = if expected { "allowed" } else { "refused" };
    let what =
        format!("{user} {groups:?} to be {answer} {verb} {group}/{resource} in {namespace:?}");
    eventually(&what, Duration::from_secs(10), || async {
        let allowed = can(client, user, groups, verb, group, resource, namespace).await?;
        Ok((allowed == expected).then_some(()))
    })
    .await
}

/// What the API server's RBAC authorizer answers for `user` in `groups` doing `verb` on
/// `group/resource` in `namespace` (a real SubjectAccessReview).
pub async fn can(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

pub mod fixtures;
pub mod handmade;
pub mod k10;

pub use fixtures::*;
pub use handmade::{assert_hand_made_untouched, foreign_binding, plant_hand_made};
pub mod oidc;

use std::sync::Arc;

use groupbinder_api::{AzureGroupBinding, Settings};
use groupbinder_controller::{Config, Health, Metrics};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// Field manager of test fixtures (not the operator's).
pub const TEST_MANAGER: &str = "groupbinder-tests";

/// The seed scenario's group object ID and K10 group prefix.
pub const SEED_GUID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
/// The seed scenario's K10 `auth.oidcAuth.groupPrefix`.
pub const SEED_PREFIX: &str = "michael_azure_";

/// Server-side applies `object` as the test fixture manager.
pub async fn apply<K>(client: &kube::Client, object: &K) -> anyhow::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K::Scope: ApiFor<K>,
{
    let api = <K::Scope as ApiFor<K>>::api(client, object.meta().namespace.as_deref());
    let name = object.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?)
}

/// The right `Api` for a resource's scope.
pub trait ApiFor<K: Resource> {
    /// The API of `K` in `namespace` (ignored for cluster-scoped `K`).
    fn api(client: &kube::Client, namespace: Option<&str>) -> Api<K>;
}

impl<K: Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>> ApiFor<K>
    for kube::core::ClusterResourceScope
{
    fn api(client: &kube::Client, _: Option<&str>) -> Api<K> {
        Api::all(client.clone())
    }
}

impl<K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>> ApiFor<K>
    for kube::core::NamespaceResourceScope
{
    fn api(client: &kube::Client, namespace: Option<&str>) -> Api<K> {
        Api::namespaced(client.clone(), namespace.unwrap_or("default"))
    }
}

/// Creates namespace `name` if it does not exist.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns = Namespace {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Namespace::default()
    };
    apply(client, &ns).await?;
    Ok(())
}

/// Installs the AzureGroupBinding CRD and waits until it is established.
pub async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    apply_crd(client, &AzureGroupBinding::crd()).await
}

/// Applies `crd` and waits until it is established and listed by aggregated discovery, which is
/// what kubectl reads (it lags the `Established` condition a little).
pub async fn apply_crd(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
) -> anyhow::Result<()> {
    apply(client, crd).await?;
    let needle = format!("\"resource\":\"{}\"", crd.spec.names.plural);
    eventually(
        "the CRD to appear in discovery",
        Duration::from_secs(30),
        || async {
            let mut request = groupbinder_testenv::http_get("/apis");
            request.headers_mut().insert(
                "Accept",
                http::HeaderValue::from_static(
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                ),
            );
            Ok(client
                .request_text(request)
                .await?
                .contains(&needle)
                .then_some(()))
        },
    )
    .await
}

/// Installs K10's fixture roles for `release` in `namespace` (creating the namespace).
pub async fn install_k10(
    client: &kube::Client,
    release: &str,
    namespace: &str,
) -> anyhow::Result<()> {
    ensure_namespace(client, namespace).await?;
    apply_crd(client, &k10::backup_action_crd()).await?;
    for role in k10::cluster_roles(release) {
        apply(client, &role).await?;
    }
    apply(client, &k10::ns_admin(release, namespace)).await?;
    Ok(())
}

/// The operator settings of the seed scenario: release `k10` in `kasten-io`, prefix `michael_azure_`.
pub fn seed_settings() -> Settings {
    Settings::for_k10("k10", "kasten-io", SEED_PREFIX)
}

/// An operator configuration for tests.
pub fn config(settings: Settings) -> Config {
    Config {
        settings,
        concurrency: 8,
        resync: None,
        leader_election: None,
        instance: "e2e".into(),
    }
}

/// Serializes the tests of one binary that run an operator: two operators watching the same
/// cluster would both reconcile every object.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The controller running in this process, as `groupbinder run` runs it.
pub struct Operator {
    client: kube::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), groupbinder_controller::RunError>>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Its readiness.
    pub health: Arc<Health>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("finished", &self.task.is_finished())
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// Starts the controller with `config` against the cluster of `client`.
    pub fn start(client: &kube::Client, config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let task = tokio::spawn(groupbinder_controller::run(
            client.clone(),
            config,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        Operator {
            client: client.clone(),
            shutdown,
            task,
            metrics,
            health,
        }
    }

    /// Stops it gracefully and returns how it ended; fails if it touched the hand-made binding
    /// (where one was planted).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        handmade::assert_hand_made_untouched_if_planted(&self.client).await
    }

    /// Whether it has stopped by itself.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// A `groupbinder run` process (the binary at `binary`) against the cluster of `kubeconfig`, with
/// its metrics on a free loopback port, `env` added and stdout discarded. Killed (SIGKILL) and
/// reaped when dropped, also when a test fails half-way.
#[derive(Debug)]
pub struct OperatorProcess {
    child: std::process::Child,
}

impl OperatorProcess {
    /// Starts it.
    pub fn spawn(
        binary: &std::path::Path,
        kubeconfig: &std::path::Path,
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = std::process::Command::new(binary);
        command
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("GROUPBINDER_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        Ok(OperatorProcess {
            child: command.spawn()?,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The process, to kill or wait for it.
    pub fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for the cluster of `kubeconfig` that counts the requests it sends, answered or not:
/// how hard an operator using it tries while the API server or etcd is away.
pub async fn counting_client(
    kubeconfig: &std::path::Path,
) -> anyhow::Result<(kube::Client, Arc<std::sync::atomic::AtomicU64>)> {
    let config = groupbinder_testenv::config_from_kubeconfig(kubeconfig).await?;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            request
        });
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build();
    Ok((client, sent))
}

/// The `Ready` condition of `agb`, if any.
pub fn ready(agb: &AzureGroupBinding) -> Option<&Condition> {
    agb.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Waits until AzureGroupBinding `name` reports `Ready` with `status` and `reason` for its current
/// generation, and returns it; fails after 30 seconds.
pub async fn wait_for_reason(
    client: &kube::Client,
    name: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<AzureGroupBinding> {
    wait_for_reason_within(client, name, status, reason, Duration::from_secs(30)).await
}

/// Like [`wait_for_reason`], with another time limit.
pub async fn wait_for_reason_within(
    client: &kube::Client,
    name: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> anyhow::Result<AzureGroupBinding> {
    let api: Api<AzureGroupBinding> = Api::all(client.clone());
    eventually(
        &format!("{name} to be Ready={status} ({reason})"),
        timeout,
        || async {
            let agb = api.get(name).await?;
            let done = ready(&agb).is_some_and(|c| {
                c.status == status
                    && c.reason == reason
                    && c.observed_generation == agb.metadata.generation
            }) && agb.status.as_ref().and_then(|s| s.observed_generation)
                == agb.metadata.generation;
            Ok(done.then_some(agb))
        },
    )
    .await
}

/// `apiserver_request_total` from the API server's own `/metrics`, by verb and resource (with
/// its subresource after a slash): what every client, the operator included, requested.
pub async fn apiserver_requests(
    client: &kube::Client,
) -> anyhow::Result<std::collections::BTreeMap<(String, String), f64>> {
    let text = client
        .request_text(groupbinder_testenv::http_get("/metrics"))
        .await?;
    let mut totals = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = line[start..].find('"')? + start;
            Some(&line[start..end])
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else {
            continue;
        };
        let resource = match label("subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *totals.entry((verb.to_owned(), resource)).or_default() += count;
    }
    Ok(totals)
}

/// Sum of [`apiserver_requests`] over write verbs for `resources` (subresources included).
pub async fn apiserver_writes(client: &kube::Client, resources: &[&str]) -> anyhow::Result<f64> {
    Ok(apiserver_requests(client)
        .await?
        .into_iter()
        .filter(|((verb, resource), _)| {
            matches!(
                verb.as_str(),
                "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
            ) && resources.contains(&resource.split('/').next().unwrap_or_default())
        })
        .map(|(_, count)| count)
        .sum())
}

/// Sends logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=groupbinder_controller=debug`).
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A namespaced CRD that accepts any object: a stand-in for another product's API (K10's actions,
/// Argo CD's Application, Flux's kinds) so that manifests for it can be applied and checked.
pub fn stand_in_crd(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
        CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
    };
    CustomResourceDefinition {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("{plural}.{group}")),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: group.into(),
            names: CustomResourceDefinitionNames {
                kind: kind.into(),
                plural: plural.into(),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Namespaced".into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: version.into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(JSONSchemaProps {
                        type_: Some("object".into()),
                        x_kubernetes_preserve_unknown_fields: Some(true),
                        ..JSONSchemaProps::default()
                    }),
                }),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// The repository's root directory (for `crds/`, `examples/`, `charts/`).
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl apply --server-side -f <file or directory>` as the admin, failing with kubectl's own
/// message: files are applied as a user would apply them.
pub fn kubectl_apply(
    cp: &groupbinder_testenv::ControlPlane,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let out = cp
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(file)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl apply -f {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
