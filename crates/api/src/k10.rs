//! Facts about Kasten K10 that groupbinder relies on: the names of the roles its Helm chart
//! creates (they follow the release name; their rules change between versions, so groupbinder
//! binds them by name and never copies them) and the names of its API groups.

use crate::v1alpha1::RoleKind;

/// The suffixes of K10's ClusterRoles: `<release>-admin`, `-basic`, `-config-view`, `-mc-admin`.
pub const CLUSTER_ROLE_SUFFIXES: [&str; 4] = ["admin", "basic", "config-view", "mc-admin"];

/// The suffix of K10's Role in its own namespace: `<release>-ns-admin`.
pub const NS_ADMIN_SUFFIX: &str = "ns-admin";

/// `<release>-<suffix>`.
pub fn role(release: &str, suffix: &str) -> String {
    format!("{release}-{suffix}")
}

/// K10's ClusterRoles for Helm release `release`.
pub fn cluster_roles(release: &str) -> impl Iterator<Item = String> + '_ {
    CLUSTER_ROLE_SUFFIXES.iter().map(move |s| role(release, s))
}

/// Whether a roleRef of `kind` to `name` is one of K10's roles for `release` (a ClusterRole of
/// [`CLUSTER_ROLE_SUFFIXES`], or the Role `<release>-ns-admin`).
pub fn is_k10_role(release: &str, kind: RoleKind, name: &str) -> bool {
    let suffix = name
        .strip_prefix(release)
        .and_then(|rest| rest.strip_prefix('-'));
    match (kind, suffix) {
        (RoleKind::ClusterRole, Some(s)) => CLUSTER_ROLE_SUFFIXES.contains(&s),
        (RoleKind::Role, Some(s)) => s == NS_ADMIN_SUFFIX,
        (_, None) => false,
    }
}

/// K10's API group `<x>.kio.kasten.io`, or with K10's `useNamespacedAPI`
/// `<x>.kio.<namespace with '-' replaced by '.'>`.
pub fn api_group(x: &str, k10_namespace: &str, namespaced_api: bool) -> String {
    if namespaced_api {
        format!("{x}.kio.{}", k10_namespace.replace('-', "."))
    } else {
        format!("{x}.kio.kasten.io")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k10s_roles_follow_the_release_name() {
        let cluster: Vec<String> = cluster_roles("k10").collect();
        assert_eq!(
            cluster,
            ["k10-admin", "k10-basic", "k10-config-view", "k10-mc-admin"]
        );
        assert!(is_k10_role("k10", RoleKind::ClusterRole, "k10-mc-admin"));
        assert!(is_k10_role("k10", RoleKind::Role, "k10-ns-admin"));
        assert!(!is_k10_role("k10", RoleKind::Role, "k10-admin"));
        assert!(!is_k10_role("k10", RoleKind::ClusterRole, "k10-ns-admin"));
        assert!(!is_k10_role("k10", RoleKind::ClusterRole, "k10admin"));
        assert!(!is_k10_role("k10", RoleKind::ClusterRole, "other-admin"));
        assert!(is_k10_role("backup", RoleKind::ClusterRole, "backup-basic"));
    }

    #[test]
    fn namespaced_api_groups_take_k10s_namespace() {
        assert_eq!(api_group("actions", "my-k10", true), "actions.kio.my.k10");
        assert_eq!(
            api_group("actions", "my-k10", false),
            "actions.kio.kasten.io"
        );
    }
}

/// The newest K10 release whose chart the project's fixtures reproduce (`tests/support/k10.rs`).
pub const NEWEST_COVERED: &str = "9.0.7";

/// The reason of the warning event about `k10-config` when K10 is newer than
/// [`NEWEST_COVERED`] (or its version cannot be compared).
pub const NEWER_THAN_TESTED: &str = "K10NewerThanTested";

/// Whether K10 `version` (`k10-config`'s `version`, e.g. `8.0.15`) is newer than
/// [`NEWEST_COVERED`]: its roles' rules may have changed in ways no test has seen. `None` for a
/// version that is not `major.minor.patch` numbers.
pub fn newer_than_covered(version: &str) -> Option<bool> {
    let parse = |v: &str| -> Option<Vec<u64>> {
        v.trim_start_matches('v')
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    Some(parse(version)? > parse(NEWEST_COVERED)?)
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(newer_than_covered("9.0.7"), Some(false));
        assert_eq!(newer_than_covered("8.0.15"), Some(false));
        assert_eq!(newer_than_covered("9.0.10"), Some(true));
        assert_eq!(newer_than_covered("10.0.1"), Some(true));
        assert_eq!(newer_than_covered("latest"), None);
    }
}
