//! A ClusterRoleBinding made by hand under a name the operator plans: it must survive every test
//! untouched (not adopted, not edited, not deleted and made again).

use std::collections::BTreeMap;
use std::sync::Mutex;

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;

use crate::{SEED_PREFIX, apply};

/// The AzureGroupBinding whose admin-profile plan collides with the hand-made binding.
pub const HAND_MADE_AGB: &str = "handmade";
/// The hand-made binding: the name `handmade` plans for K10's `k10-admin` ClusterRole.
pub const HAND_MADE_BINDING: &str = "handmade:k10-admin";

/// uid → resourceVersion of every hand-made binding planted by this process.
static PLANTED: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

fn planted() -> std::sync::MutexGuard<'static, BTreeMap<String, String>> {
    PLANTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A ClusterRoleBinding as someone might make it by hand: K10's basic role for the group
/// `hand-made`, no labels, no owner.
pub fn foreign_binding(name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "k10-basic".into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: "hand-made".into(),
            namespace: None,
        }]),
    }
}

/// Makes the hand-made binding ([`foreign_binding`]) and the AzureGroupBinding that collides with
/// it. Idempotent.
pub async fn plant_hand_made(client: &kube::Client) -> anyhow::Result<()> {
    let made = apply(client, &foreign_binding(HAND_MADE_BINDING)).await?;
    planted().insert(
        made.metadata.uid.unwrap_or_default(),
        made.metadata.resource_version.unwrap_or_default(),
    );
    let spec = AzureGroupBindingSpec {
        group_object_id: "0000000a-0000-4000-8000-00000000000a".into(),
        group_prefix: Some(SEED_PREFIX.into()),
        ..AzureGroupBindingSpec::default()
    };
    apply(client, &AzureGroupBinding::new(HAND_MADE_AGB, spec)).await?;
    Ok(())
}

/// Fails unless the hand-made binding is there, the very object planted, never written since.
pub async fn assert_hand_made_untouched(client: &kube::Client) -> anyhow::Result<()> {
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get_opt(HAND_MADE_BINDING)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the hand-made binding {HAND_MADE_BINDING} was deleted"))?;
    check(&binding)
}

/// Like [`assert_hand_made_untouched`] where the binding was planted; nothing where it was not.
pub async fn assert_hand_made_untouched_if_planted(client: &kube::Client) -> anyhow::Result<()> {
    match Api::<ClusterRoleBinding>::all(client.clone())
        .get_opt(HAND_MADE_BINDING)
        .await?
    {
        Some(binding) => check(&binding),
        None => Ok(()),
    }
}

fn check(binding: &ClusterRoleBinding) -> anyhow::Result<()> {
    let uid = binding.metadata.uid.clone().unwrap_or_default();
    let planted = planted().get(&uid).cloned().ok_or_else(|| {
        anyhow::anyhow!("{HAND_MADE_BINDING} is not the binding made by hand (uid {uid})")
    })?;
    anyhow::ensure!(
        binding.metadata.resource_version.as_deref() == Some(planted.as_str()),
        "the hand-made binding {HAND_MADE_BINDING} was written to: {binding:?}"
    );
    Ok(())
}
