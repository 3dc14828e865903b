//! What the operator may bind: ClusterRoles by name, Roles only as `namespace/name`.
//!
//! A Role is namespaced: anyone who may create Roles in a namespace can make one called
//! `k10-ns-admin` there. Allowing Roles by name alone would let an AzureGroupBinding grant
//! whatever such a Role holds, in any namespace, so a Role is allowed in one namespace only.
//! A ClusterRole is cluster-scoped (creating one takes cluster-wide rights), so its name is
//! enough: it may be bound cluster-wide, or in a namespace by a RoleBinding.

use std::collections::BTreeSet;

use crate::k10;
use crate::v1alpha1::RoleKind;

/// The roles an AzureGroupBinding may bind. Nothing else is ever bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// ClusterRoles, by name: bound cluster-wide or in a namespace.
    cluster_roles: BTreeSet<String>,
    /// Roles, by (namespace, name).
    roles: BTreeSet<(String, String)>,
}

/// An allowlist entry that is neither a name nor `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "allowlist entry {0:?}: write a ClusterRole as its name (k10-admin) and a Role as namespace/name (kasten-io/k10-ns-admin)"
)]
pub struct AllowlistError(pub String);

impl Allowlist {
    /// Parses entries: `name` allows the ClusterRole `name`, `namespace/name` the Role `name` in
    /// `namespace`. Blank entries are skipped.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, AllowlistError> {
        let mut allowlist = Allowlist::default();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let valid = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
            match entry.split_once('/') {
                None if valid(entry) => {
                    allowlist.cluster_roles.insert(entry.to_owned());
                }
                Some((namespace, name))
                    if valid(namespace) && valid(name) && !name.contains('/') =>
                {
                    allowlist
                        .roles
                        .insert((namespace.to_owned(), name.to_owned()));
                }
                _ => return Err(AllowlistError(entry.to_owned())),
            }
        }
        Ok(allowlist)
    }

    /// K10's own roles for Helm release `release` installed in `namespace`: the ClusterRoles
    /// `<release>-admin`, `<release>-basic`, `<release>-config-view` and `<release>-mc-admin`,
    /// and the Role `<namespace>/<release>-ns-admin`.
    pub fn k10(release: &str, namespace: &str) -> Self {
        Allowlist {
            cluster_roles: k10::cluster_roles(release).collect(),
            roles: BTreeSet::from([(
                namespace.to_owned(),
                k10::role(release, k10::NS_ADMIN_SUFFIX),
            )]),
        }
    }

    /// Whether it names at least one of K10's roles for Helm release `release` installed in
    /// `namespace` (see [`Allowlist::k10`]). One that names none grants nothing K10 uses: an empty
    /// list or a typo, which would revoke every grant in the cluster at the next rollout.
    pub fn names_a_k10_role(&self, release: &str, namespace: &str) -> bool {
        let k10 = Allowlist::k10(release, namespace);
        self.cluster_roles
            .iter()
            .any(|r| k10.cluster_roles.contains(r))
            || self.roles.iter().any(|r| k10.roles.contains(r))
    }

    /// Whether a binding to role `name` of `kind` may be made: cluster-wide (`namespace` is
    /// `None`, a ClusterRole) or in `namespace`.
    pub fn permits(&self, kind: RoleKind, namespace: Option<&str>, name: &str) -> bool {
        match (kind, namespace) {
            (RoleKind::ClusterRole, _) => self.cluster_roles.contains(name),
            (RoleKind::Role, Some(namespace)) => self
                .roles
                .contains(&(namespace.to_owned(), name.to_owned())),
            (RoleKind::Role, None) => false,
        }
    }

    /// The allowed ClusterRoles' names.
    pub fn cluster_roles(&self) -> impl Iterator<Item = &str> {
        self.cluster_roles.iter().map(String::as_str)
    }

    /// The allowed Roles, as (namespace, name).
    pub fn roles(&self) -> impl Iterator<Item = (&str, &str)> {
        self.roles.iter().map(|(ns, n)| (ns.as_str(), n.as_str()))
    }

    /// The entries as they are written on the command line, ClusterRoles first.
    pub fn entries(&self) -> Vec<String> {
        self.cluster_roles()
            .map(str::to_owned)
            .chain(self.roles().map(|(ns, n)| format!("{ns}/{n}")))
            .collect()
    }
}

impl std::fmt::Display for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.entries().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowlist_of_no_k10_role_is_told_apart() {
        let names = |entries: &[&str]| {
            Allowlist::parse(entries.iter().copied())
                .unwrap()
                .names_a_k10_role("k10", "kasten-io")
        };
        assert!(names(&["k10-admin"]));
        assert!(names(&["kasten-io/k10-ns-admin", "view"]));
        assert!(Allowlist::k10("k10", "kasten-io").names_a_k10_role("k10", "kasten-io"));
        assert!(!names(&[]));
        assert!(!names(&[""]));
        assert!(!names(&["k10-adnim"]));
        assert!(!names(&["shop/k10-ns-admin", "k10-ns-admin"]));
        assert!(!names(&["backup-admin"]));
    }

    #[test]
    fn names_are_cluster_roles_and_namespace_slash_name_are_roles() {
        let list = Allowlist::parse(["k10-admin", " kasten-io/k10-ns-admin ", ""]).unwrap();
        assert!(list.permits(RoleKind::ClusterRole, None, "k10-admin"));
        assert!(list.permits(RoleKind::ClusterRole, Some("shop"), "k10-admin"));
        assert!(list.permits(RoleKind::Role, Some("kasten-io"), "k10-ns-admin"));
        assert_eq!(list.entries(), ["k10-admin", "kasten-io/k10-ns-admin"]);
    }

    #[test]
    fn a_role_name_allows_nothing_in_another_namespace_or_as_another_kind() {
        let list = Allowlist::k10("k10", "kasten-io");
        // A namespace admin of team-a can create a Role called k10-ns-admin there.
        assert!(!list.permits(RoleKind::Role, Some("team-a"), "k10-ns-admin"));
        assert!(!list.permits(RoleKind::Role, Some("kube-system"), "k10-ns-admin"));
        // ... or a Role called k10-admin.
        assert!(!list.permits(RoleKind::Role, Some("team-a"), "k10-admin"));
        // The Role is not a ClusterRole either.
        assert!(!list.permits(RoleKind::ClusterRole, None, "k10-ns-admin"));
        assert!(list.permits(RoleKind::Role, Some("kasten-io"), "k10-ns-admin"));
        assert!(list.permits(RoleKind::ClusterRole, Some("shop"), "k10-basic"));
    }

    #[test]
    fn malformed_entries_are_refused_with_the_form_to_use() {
        for bad in ["a/b/c", "/x", "x/", "k10 admin"] {
            let error = Allowlist::parse([bad]).unwrap_err();
            assert!(error.to_string().contains("namespace/name"), "{error}");
        }
    }
}
