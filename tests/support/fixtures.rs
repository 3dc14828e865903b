//! Fixtures of the controller tests: the shared control plane with K10's roles, seed-shaped
//! AzureGroupBindings, and short-hands for the APIs they touch.

use std::time::Duration;

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use groupbinder_testenv::ControlPlane;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use kube::Api;

use crate::{
    SEED_GUID, SEED_PREFIX, apply, eventually, install_crd, install_k10, logs, plant_hand_made,
    wait_for_reason,
};

const RBAC: &str = "rbac.authorization.k8s.io";

/// The shared control plane with the CRD, K10's roles and the hand-made binding, and an admin
/// client.
pub async fn setup() -> anyhow::Result<(&'static ControlPlane, kube::Client)> {
    logs();
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    // Every operator run checks, when it stops, that this one was left alone.
    plant_hand_made(&client).await?;
    Ok((cp, client))
}

/// An AzureGroupBinding named `name` with `spec`.
pub fn agb(name: &str, spec: AzureGroupBindingSpec) -> AzureGroupBinding {
    AzureGroupBinding::new(name, spec)
}

/// The seed's spec: its group object ID and K10 prefix, the admin profile.
pub fn seed_spec() -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: SEED_GUID.into(),
        group_prefix: Some(SEED_PREFIX.into()),
        ..Default::default()
    }
}

/// Applies a seed-shaped AzureGroupBinding (group `guid(n)`, the seed's prefix, the admin
/// profile) and waits until it is Ready.
pub async fn seeded(
    client: &kube::Client,
    name: &str,
    n: u32,
) -> anyhow::Result<AzureGroupBinding> {
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(n),
        ..seed_spec()
    };
    apply(client, &agb(name, spec)).await?;
    wait_for_reason(client, name, "True", "Reconciled").await
}

/// Waits until the admin-profile bindings of `name` (`<name>:k10-admin` and
/// `kasten-io/<name>:k10-ns-admin`) are gone.
pub async fn admin_bindings_gone(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    eventually(
        &format!("the bindings of {name} to be gone"),
        timeout,
        || async {
            let gone = crbs(client)
                .get_opt(&format!("{name}:k10-admin"))
                .await?
                .is_none()
                && rbs(client, "kasten-io")
                    .get_opt(&format!("{name}:k10-ns-admin"))
                    .await?
                    .is_none();
            Ok(gone.then_some(()))
        },
    )
    .await
}

/// A distinct valid group object ID per `n`.
pub fn guid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// ClusterRoleBindings.
pub fn crbs(client: &kube::Client) -> Api<ClusterRoleBinding> {
    Api::all(client.clone())
}

/// RoleBindings in `namespace`.
pub fn rbs(client: &kube::Client, namespace: &str) -> Api<RoleBinding> {
    Api::namespaced(client.clone(), namespace)
}

/// AzureGroupBindings.
pub fn agbs(client: &kube::Client) -> Api<AzureGroupBinding> {
    Api::all(client.clone())
}

/// The subjects of a binding to the RBAC group `name`.
pub fn group_subject(name: &str) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        kind: "Group".into(),
        api_group: Some(RBAC.into()),
        name: name.into(),
        namespace: None,
    }])
}

/// The AzureGroupBinding CRD with a schema that admits anything: an older or hand-edited CRD,
/// through which objects reach the controller that admission would refuse.
pub fn loose_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceValidation, JSONSchemaProps,
    };
    use kube::CustomResourceExt;
    let mut loose = AzureGroupBinding::crd();
    for version in &mut loose.spec.versions {
        let schema = JSONSchemaProps {
            type_: Some("object".into()),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..Default::default()
        };
        version.schema = Some(CustomResourceValidation {
            open_api_v3_schema: Some(schema),
        });
        version.additional_printer_columns = None;
    }
    loose
}
