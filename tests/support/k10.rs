//! K10's RBAC objects as its Helm chart installs them, per chart version (6.0.3, 7.5.10, 8.0.15,
//! 9.0.7: the rules as `../shared/reference/k10-and-entra-facts.md` lists them from the chart
//! templates; 9.0.7's user roles are 8.0.15's: its `rbac.yaml` is unchanged, and its API lists
//! in `_definitions.tpl` name the same groups — 9.0 moved only K10's own service roles, to
//! `clusterroles.yaml` and `roles.yaml`). groupbinder binds roles by name and never copies rules; these fixtures exist so that
//! the access a binding gives is what a real K10 of that version would give.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A K10 chart version whose RBAC objects are reproduced here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 6.0.3.
    V6_0_3,
    /// 7.5.10.
    V7_5_10,
    /// 8.0.15.
    V8_0_15,
    /// 9.0.7.
    V9_0_7,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 4] = [
        Version::V6_0_3,
        Version::V7_5_10,
        Version::V8_0_15,
        Version::V9_0_7,
    ];
    /// The newest: what the demo and most tests install.
    pub const NEWEST: Version = Version::V9_0_7;

    /// `6.0.3`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V6_0_3 => "6.0.3",
            Version::V7_5_10 => "7.5.10",
            Version::V8_0_15 => "8.0.15",
            Version::V9_0_7 => "9.0.7",
        }
    }
}

/// One K10 installation: chart version, Helm release, namespace, and whether its API is
/// namespaced (`useNamespacedAPI`).
#[derive(Clone, Debug)]
pub struct K10 {
    /// Chart version.
    pub version: Version,
    /// Helm release name: the roles are `<release>-admin`, ...
    pub release: String,
    /// Namespace K10 is installed in.
    pub namespace: String,
    /// `useNamespacedAPI: true`: API groups end in the namespace, not `kasten.io`.
    pub namespaced_api: bool,
}

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

const ALL: &[&str] = &["*"];

impl K10 {
    /// K10 `version` as release `release` in `namespace`, with K10's default API groups.
    pub fn new(version: Version, release: &str, namespace: &str) -> Self {
        K10 {
            version,
            release: release.to_owned(),
            namespace: namespace.to_owned(),
            namespaced_api: false,
        }
    }

    /// The API group `<x>.kio.kasten.io`, or with `useNamespacedAPI`
    /// `<x>.kio.<namespace, '-' → '.'>`.
    pub fn group(&self, x: &str) -> String {
        groupbinder_api::k10::api_group(x, &self.namespace, self.namespaced_api)
    }

    fn groups(&self, xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| self.group(x)).collect()
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.release)
    }

    /// The ClusterRoles: `admin`, `basic`, `config-view`, `mc-admin`, and from 7.5
    /// `virtualmachines-admin`.
    pub fn cluster_roles(&self) -> Vec<ClusterRole> {
        let v = self.version;
        let cluster_role = |suffix: &str, rules: Vec<PolicyRule>| ClusterRole {
            metadata: meta(self.name(suffix), None),
            rules: Some(rules),
            ..ClusterRole::default()
        };
        let g = |x: &str| self.group(x);

        let mut admin_groups = vec!["actions", "apps", "config", "reporting", "vault"];
        if v >= Version::V7_5_10 {
            admin_groups.extend(["dr", "repositories"]);
        }
        if v >= Version::V8_0_15 {
            admin_groups.push("datamover");
        }
        let admin_groups = self.groups(&admin_groups);
        let admin_groups: Vec<&str> = admin_groups.iter().map(String::as_str).collect();
        let admin = cluster_role(
            "admin",
            vec![
                rule(&admin_groups, ALL, ALL),
                rule(&["cr.kanister.io"], ALL, ALL),
                rule(&[""], &["namespaces"], &["create", "get", "list"]),
            ],
        );

        let mut actions = vec![
            "backupactions",
            "backupactions/details",
            "restoreactions",
            "restoreactions/details",
            "exportactions",
            "exportactions/details",
            "cancelactions",
        ];
        if v >= Version::V7_5_10 {
            actions.extend(["runactions", "runactions/details"]);
        }
        if v >= Version::V8_0_15 {
            actions.extend(["validateactions", "validateactions/details"]);
        }
        let mut basic_rules = vec![
            rule(&[&g("actions")], &actions, ALL),
            rule(
                &[&g("apps")],
                &[
                    "restorepoints",
                    "restorepoints/details",
                    "applications",
                    "applications/details",
                ],
                ALL,
            ),
            rule(&[&g("config")], &["policies"], ALL),
            rule(&[""], &["namespaces"], &["get"]),
        ];
        if v >= Version::V8_0_15 {
            basic_rules.push(rule(&[&g("datamover")], &["filerecoverysessions"], ALL));
        }
        let basic = cluster_role("basic", basic_rules);

        let mut viewed = vec![
            "profiles",
            "policies",
            "policypresets",
            "transformsets",
            "blueprintbindings",
        ];
        if v >= Version::V7_5_10 {
            viewed.extend([
                "auditconfigs",
                "storagesecuritycontexts",
                "storagesecuritycontextbindings",
            ]);
        }
        let config_view = cluster_role(
            "config-view",
            vec![rule(&[&g("config")], &viewed, &["get", "list"])],
        );

        let mc_groups = self.groups(&["auth", "config", "dist"]);
        let mc_groups: Vec<&str> = mc_groups.iter().map(String::as_str).collect();
        let mc_admin = cluster_role(
            "mc-admin",
            vec![rule(&mc_groups, ALL, ALL), rule(&[""], &["secrets"], ALL)],
        );

        let mut roles = vec![admin, basic, config_view, mc_admin];
        if v >= Version::V7_5_10 {
            roles.push(cluster_role(
                "virtualmachines-admin",
                vec![rule(
                    &["kubevirt.io"],
                    &["virtualmachines"],
                    &["get", "list", "patch"],
                )],
            ));
        }
        roles
    }

    /// The Role `<release>-ns-admin` in K10's namespace.
    pub fn ns_admin(&self) -> Role {
        let rules = if self.version == Version::V6_0_3 {
            vec![
                rule(&["", "apps"], &["deployments", "pods"], &["get", "list"]),
                rule(
                    &[""],
                    &["secrets"],
                    &["create", "delete", "get", "list", "update"],
                ),
                rule(&[""], &["configmaps"], &["get"]),
                rule(&["batch"], &["jobs"], &["get"]),
            ]
        } else {
            let crud = &["create", "delete", "get", "list", "update"];
            vec![
                rule(
                    &["apps"],
                    &["deployments"],
                    &["get", "update", "watch", "list"],
                ),
                rule(&[""], &["pods"], &["get", "create", "delete", "list"]),
                rule(&["apik10.kasten.io"], &["k10s"], &["list", "patch"]),
                rule(&[""], &["persistentvolumeclaims"], &["get"]),
                rule(&[""], &["secrets", "configmaps"], crud),
                rule(&["batch"], &["jobs"], &["get"]),
                rule(&[""], &["services"], &["create", "get", "delete"]),
                rule(
                    &["networking.k8s.io"],
                    &["networkpolicies"],
                    &["get", "create", "list", "delete"],
                ),
                rule(&[""], &["endpoints"], &["list", "get"]),
            ]
        };
        Role {
            metadata: meta(self.name("ns-admin"), Some(&self.namespace)),
            rules: Some(rules),
        }
    }

    /// A stand-in for K10's `backupactions` (served by K10's aggregated API server), so that
    /// `kubectl auth can-i create backupactions.<group>` finds the resource in discovery as it
    /// would with K10 installed.
    pub fn backup_action_crd(&self) -> CustomResourceDefinition {
        crate::stand_in_crd(
            &self.group("actions"),
            "v1alpha1",
            "BackupAction",
            "backupactions",
        )
    }
}

/// The newest K10's ClusterRoles for `release` (installed in `kasten-io`).
pub fn cluster_roles(release: &str) -> Vec<ClusterRole> {
    K10::new(Version::NEWEST, release, "kasten-io").cluster_roles()
}

/// The newest K10's `<release>-ns-admin` in `namespace`.
pub fn ns_admin(release: &str, namespace: &str) -> Role {
    K10::new(Version::NEWEST, release, namespace).ns_admin()
}

/// A stand-in for the newest K10's `backupactions.actions.kio.kasten.io`.
pub fn backup_action_crd() -> CustomResourceDefinition {
    K10::new(Version::NEWEST, "k10", "kasten-io").backup_action_crd()
}
