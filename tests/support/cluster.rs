//! Putting things into the cluster as a test fixture (or a user with kubectl) would.

use std::time::Duration;

use groupbinder_api::AzureGroupBinding;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{TEST_MANAGER, eventually, k10};

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

/// Installs the newest K10 fixture's roles for `release` in `namespace` (creating the namespace).
pub async fn install_k10(
    client: &kube::Client,
    release: &str,
    namespace: &str,
) -> anyhow::Result<()> {
    install(
        client,
        &k10::K10::new(k10::Version::NEWEST, release, namespace),
    )
    .await
}

/// Installs `k10`'s RBAC objects (creating its namespace) and a stand-in for its backup actions.
pub async fn install(client: &kube::Client, k10: &k10::K10) -> anyhow::Result<()> {
    ensure_namespace(client, &k10.namespace).await?;
    apply_crd(client, &k10.backup_action_crd()).await?;
    for role in k10.cluster_roles() {
        apply(client, &role).await?;
    }
    apply(client, &k10.ns_admin()).await?;
    Ok(())
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

/// The chart's directory, `charts/groupbinder`.
pub fn chart_dir() -> String {
    repo().join("charts/groupbinder").display().to_string()
}

/// The standard output of a command that `out` says succeeded; otherwise an error naming `what`
/// with everything it printed.
pub fn succeeded(out: std::process::Output, what: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The image tarball `make image` builds (or `$GROUPBINDER_IMAGE`), for a node to import.
pub fn image_tarball() -> anyhow::Result<std::path::PathBuf> {
    let tarball = std::env::var_os("GROUPBINDER_IMAGE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join("target/image/groupbinder.tar"));
    anyhow::ensure!(
        tarball.is_file(),
        "{} is missing: build the image first with `make image` (`make test-node` and `make demo-node` do)",
        tarball.display()
    );
    Ok(tarball)
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
    succeeded(out, &format!("kubectl apply -f {}", file.display())).map(drop)
}

/// Runs `write` until the API server admits it: after a CRD's schema is replaced, the old one
/// still validates for a moment (422), however established the CRD looks.
pub async fn admitted<T, F, Fut>(what: &str, mut write: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let started = std::time::Instant::now();
    loop {
        match write().await {
            Err(kube::Error::Api(status))
                if status.code == 422 && started.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(anyhow::anyhow!("{what}: {error}")),
            Ok(value) => return Ok(value),
        }
    }
}

/// The OIDC settings of a K10 that signs users in with Entra ID and presents their groups with
/// `group_prefix`: what [`install_k10_oidc`] most often gets.
pub fn entra_oidc(group_prefix: &str) -> [(&'static str, &str); 3] {
    [
        (
            "provider-url",
            "https://login.microsoftonline.com/00000000-0000-4000-8000-000000000001/v2.0",
        ),
        ("groupClaim", "groups"),
        ("groupPrefix", group_prefix),
    ]
}

/// A client secret planted in every fixture OIDC Secret: no output of the operator may hold it.
pub const CLIENT_SECRET: &str = "k10-client-secret-never-shown-7c1f";

/// K10's OIDC settings as a running K10 keeps them: Secret `secret` in `namespace` holding
/// `settings` (keys as K10's chart writes them) and [`CLIENT_SECRET`], and Deployment `auth-svc`
/// mounting it as volume `k10-oidc-auth` (the Deployment need not run). Replaces what was there.
pub async fn install_k10_oidc(
    client: &kube::Client,
    namespace: &str,
    secret: &str,
    settings: &[(&str, &str)],
) -> anyhow::Result<()> {
    install_k10_oidc_of(client, (namespace, K10_FIXTURE_VERSION), secret, settings).await
}

/// K10 in `kasten-io` signing users in with Entra ID under the seed's prefix, its Secret the
/// chart's default `k10-oidc-auth`: [`install_k10_oidc`] as most tests want it.
pub async fn install_seed_k10_oidc(client: &kube::Client) -> anyhow::Result<()> {
    install_k10_oidc(
        client,
        "kasten-io",
        "k10-oidc-auth",
        &entra_oidc(crate::SEED_PREFIX),
    )
    .await
}

/// [`install_k10_oidc`] for K10 `version` (what `k10-config` says).
pub async fn install_k10_oidc_of(
    client: &kube::Client,
    (namespace, version): (&str, &str),
    secret: &str,
    settings: &[(&str, &str)],
) -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    ensure_namespace(client, namespace).await?;
    let data: std::collections::BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([
            ("client-id".to_owned(), "k10".to_owned()),
            ("client-secret".to_owned(), CLIENT_SECRET.to_owned()),
        ])
        .collect();
    let secret_object: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret, "namespace": namespace, "labels": {"app": "k10"}},
        "stringData": data,
    }))?;
    // Replace, so that keys left out now are gone (server-side apply of stringData would merge).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let _ = secrets.delete(secret, &Default::default()).await;
    secrets.create(&Default::default(), &secret_object).await?;
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "auth-svc", "namespace": namespace,
                     "labels": {"app": "k10", "component": "auth"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"component": "auth"}},
            "template": {
                "metadata": {"labels": {"component": "auth"}},
                "spec": {
                    "containers": [{"name": "auth-svc", "image": "gcr.io/kasten-images/auth:9.0.7",
                        "volumeMounts": [{"name": "k10-oidc-auth",
                            "mountPath": "/var/run/secrets/kasten.io/k10-oidc-auth"}]}],
                    "volumes": [{"name": "k10-oidc-auth", "secret": {"secretName": secret}}],
                },
            },
        },
    }))?;
    apply(client, &deployment).await?;
    let config: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "k10-config", "namespace": namespace, "labels": {"app": "k10"}},
            "data": {"version": version, "apiDomain": "kio.kasten.io"},
        }))?;
    apply(client, &config).await?;
    Ok(())
}

/// The resourceVersion of every ClusterRoleBinding labelled as groupbinder's, by name: what a
/// test compares to tell that no binding was written.
pub async fn managed_binding_versions(
    client: &kube::Client,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    use kube::ResourceExt;
    let listed = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .list(&kube::api::ListParams::default().labels(groupbinder_api::names::MANAGED_SELECTOR))
        .await?;
    Ok(listed
        .items
        .iter()
        .map(|b| (b.name_any(), b.resource_version().unwrap_or_default()))
        .collect())
}

/// The version [`install_k10_oidc`] writes in `k10-config`.
pub const K10_FIXTURE_VERSION: &str = "9.0.7";
