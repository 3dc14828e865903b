//! Fixture K10 roles, as K10's Helm chart installs them (rules from the public K10 docs; groupbinder
//! itself binds roles by name and never copies rules).

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn meta(name: String, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: namespace.map(str::to_owned),
        labels: Some(
            [(
                "k10.kasten.io/default-rbac-object".to_owned(),
                "true".to_owned(),
            )]
            .into(),
        ),
        ..ObjectMeta::default()
    }
}

/// `<release>-admin`, `<release>-basic` and `<release>-config-view`.
pub fn cluster_roles(release: &str) -> Vec<ClusterRole> {
    let k10_groups = [
        "actions.kio.kasten.io",
        "apps.kio.kasten.io",
        "config.kio.kasten.io",
        "reporting.kio.kasten.io",
        "vault.kio.kasten.io",
        "cr.kanister.io",
    ];
    let admin = ClusterRole {
        metadata: meta(format!("{release}-admin"), None),
        rules: Some(vec![
            rule(&k10_groups, &["*"], &["*"]),
            rule(&[""], &["namespaces"], &["create", "get", "list"]),
        ]),
        ..ClusterRole::default()
    };
    let basic = ClusterRole {
        metadata: meta(format!("{release}-basic"), None),
        rules: Some(vec![
            rule(
                &["actions.kio.kasten.io"],
                &[
                    "backupactions",
                    "backupactions/details",
                    "restoreactions",
                    "restoreactions/details",
                    "exportactions",
                    "exportactions/details",
                    "cancelactions",
                ],
                &["*"],
            ),
            rule(
                &["apps.kio.kasten.io"],
                &[
                    "restorepoints",
                    "restorepoints/details",
                    "applications",
                    "applications/details",
                ],
                &["*"],
            ),
            rule(&["config.kio.kasten.io"], &["policies"], &["*"]),
            rule(&[""], &["namespaces"], &["get"]),
        ]),
        ..ClusterRole::default()
    };
    let config_view = ClusterRole {
        metadata: meta(format!("{release}-config-view"), None),
        rules: Some(vec![rule(
            &["config.kio.kasten.io"],
            &[
                "profiles",
                "policies",
                "policypresets",
                "transformsets",
                "blueprintbindings",
            ],
            &["get", "list"],
        )]),
        ..ClusterRole::default()
    };
    vec![admin, basic, config_view]
}

/// `<release>-ns-admin` in `namespace`.
pub fn ns_admin(release: &str, namespace: &str) -> Role {
    Role {
        metadata: meta(format!("{release}-ns-admin"), Some(namespace)),
        rules: Some(vec![
            rule(&["", "apps"], &["deployments", "pods"], &["get", "list"]),
            rule(
                &[""],
                &["secrets"],
                &["create", "delete", "get", "list", "update"],
            ),
            rule(&["batch"], &["jobs"], &["get"]),
            rule(
                &[""],
                &["configmaps"],
                &["create", "delete", "get", "list", "update"],
            ),
        ]),
    }
}

/// A stand-in for K10's `backupactions.actions.kio.kasten.io` (served by K10's aggregated API
/// server), so that `kubectl auth can-i create backupactions.actions.kio.kasten.io` finds the
/// resource in discovery as it would with K10 installed.
pub fn backup_action_crd() -> CustomResourceDefinition {
    crate::stand_in_crd(
        "actions.kio.kasten.io",
        "v1alpha1",
        "BackupAction",
        "backupactions",
    )
}
