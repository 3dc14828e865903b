//! What K10's Helm values say about who gets in, and what groupbinder cannot fix for them.
//!
//! K10's chart binds its own admins (`auth.k10AdminUsers`, `auth.k10AdminGroups`, or — when that
//! is empty — every group of `auth.groupAllowList`) by the names as written: `groupPrefix` is not
//! applied. K10 also drops every group not in `auth.groupAllowList` (when set) before it
//! impersonates. Both decide access before any AzureGroupBinding does.

use serde_json::Value;

use crate::token::{Identity, Mapping, Warning};

/// The K10 Helm values that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K10Values {
    /// `auth.k10AdminGroups`.
    pub admin_groups: Vec<String>,
    /// `auth.groupAllowList`.
    pub group_allow_list: Vec<String>,
    /// `useNamespacedAPI`.
    pub namespaced_api: bool,
    /// `auth.oidcAuth.secretName`: the OIDC settings are in that Secret, not in the values.
    pub oidc_secret: Option<String>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(one) if !one.is_empty() => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// K10's Helm values from `file`.
pub fn read(file: &std::path::Path) -> anyhow::Result<Value> {
    let text = crate::manifests::text(file)?;
    serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not YAML: {e}", file.display()))
}

/// `auth.oidcAuth.groupPrefix` of K10's values, if set.
pub fn group_prefix(values: &Value) -> Option<String> {
    values["auth"]["oidcAuth"]["groupPrefix"]
        .as_str()
        .map(str::to_owned)
}

/// Flags for the group prefix K10 uses: from its values file, from the cluster, or the
/// operator's setting.
#[derive(Debug, clap::Args)]
pub struct PrefixArgs {
    /// Take K10's groupPrefix from its Helm values file (auth.oidcAuth.groupPrefix) instead of
    /// K10's live settings in the cluster or --default-group-prefix.
    #[arg(long)]
    k10_values: Option<std::path::PathBuf>,
    #[command(flatten)]
    cluster: crate::k10cluster::K10ClusterArgs,
}

impl PrefixArgs {
    /// The prefix: from the values file when given (and set there); else, when the command reads
    /// the cluster (`client`), K10's live `groupPrefix`; else `settings`' default.
    pub async fn prefix(
        &self,
        settings: &groupbinder_api::Settings,
        client: Option<&kube::Client>,
    ) -> anyhow::Result<String> {
        let default = &settings.default_group_prefix;
        if let Some(file) = &self.k10_values {
            return Ok(group_prefix(&read(file)?).unwrap_or_else(|| default.clone()));
        }
        if let Some(client) = client {
            let live = crate::k10cluster::read(self.cluster, client, &settings.k10_namespace).await;
            if let Some(oidc) = live.as_ref().and_then(|l| l.oidc()) {
                return Ok(oidc.group_prefix.clone());
            }
        }
        Ok(default.clone())
    }
}

impl K10Values {
    /// Reads them from parsed values.
    pub fn from_values(values: &Value) -> Self {
        let auth = &values["auth"];
        K10Values {
            admin_groups: strings(&auth["k10AdminGroups"]),
            group_allow_list: strings(&auth["groupAllowList"]),
            namespaced_api: values["useNamespacedAPI"].as_bool().unwrap_or(false),
            oidc_secret: auth["oidcAuth"]["secretName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }
    }

    /// Warnings about these values for `identity` under `mapping`.
    pub fn warnings(&self, identity: &Identity, mapping: &Mapping) -> Vec<Warning> {
        let mut warnings = Vec::new();
        let prefix = mapping.groups_prefix.as_str();
        if let Some(secret) = &self.oidc_secret {
            warnings.push(Warning {
                code: "OidcSettingsInSecret",
                message: format!(
                    "auth.oidcAuth.secretName is {secret:?}: K10 reads its OIDC settings (claims, prefixes) from that Secret, which this command does not read, so the prefix and claims above come from the flags and defaults, not from K10"
                ),
                fix: "pass the Secret's values with --groups-prefix, --groups-claim, --username-claim and --username-prefix".into(),
            });
        }
        // The groups K10's chart makes admins, as it binds them.
        let (admins, source) = if self.admin_groups.is_empty() {
            (&self.group_allow_list, "auth.groupAllowList")
        } else {
            (&self.admin_groups, "auth.k10AdminGroups")
        };
        if !prefix.is_empty() {
            let bare: Vec<&str> = admins
                .iter()
                .filter(|g| groupbinder_api::desired::is_lower_guid(g))
                .map(String::as_str)
                .collect();
            if !bare.is_empty() {
                warnings.push(Warning {
                    code: "AdminGroupWithoutPrefix",
                    message: format!(
                        "{source} lists {}: K10's chart binds these names as written, without groupPrefix {prefix:?}, and K10 presents {prefix}<id>: they match nobody",
                        bare.join(", ")
                    ),
                    fix: format!(
                        "write them as {prefix}<object ID> in {source}, or leave K10's admins to an AzureGroupBinding"
                    ),
                });
            }
        }
        if self.admin_groups.is_empty() && !self.group_allow_list.is_empty() {
            warnings.push(Warning {
                code: "AllowListMakesAdmins",
                message: "auth.groupAllowList is set and auth.k10AdminGroups is empty: K10's chart then makes every group of the allow list a K10 administrator".into(),
                fix: "set auth.k10AdminGroups to the administrators' groups, so that groupAllowList only filters".into(),
            });
        }
        if !self.group_allow_list.is_empty() {
            let dropped: Vec<&str> = identity
                .groups
                .iter()
                .filter(|g| {
                    let raw = g.strip_prefix(prefix).unwrap_or(g);
                    !self
                        .group_allow_list
                        .iter()
                        .any(|allowed| allowed == *g || allowed == raw)
                })
                .map(String::as_str)
                .collect();
            if !dropped.is_empty() {
                warnings.push(Warning {
                    code: "GroupNotInAllowList",
                    message: format!(
                        "K10 drops the groups not in auth.groupAllowList before it impersonates: {} reach Kubernetes from no K10 session, whatever groupbinder binds to them",
                        dropped.join(", ")
                    ),
                    fix: "add the group object IDs to auth.groupAllowList".into(),
                });
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";

    fn identity(groups: &[&str]) -> Identity {
        Identity {
            version: None,
            issuer: None,
            audience: Vec::new(),
            expires: None,
            expired: false,
            username: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            warnings: Vec::new(),
        }
    }

    fn mapping(prefix: &str) -> Mapping {
        Mapping {
            groups_prefix: prefix.into(),
            ..Mapping::default()
        }
    }

    fn codes(values: Value, groups: &[&str], prefix: &str) -> Vec<&'static str> {
        K10Values::from_values(&values)
            .warnings(&identity(groups), &mapping(prefix))
            .into_iter()
            .map(|w| w.code)
            .collect()
    }

    #[test]
    fn bare_object_ids_in_admin_lists_match_nobody_when_a_prefix_is_set() {
        let member = format!("michael_azure_{ID}");
        let values = json!({"auth": {"k10AdminGroups": [ID]}});
        assert_eq!(
            codes(values.clone(), &[&member], "michael_azure_"),
            ["AdminGroupWithoutPrefix"]
        );
        assert!(codes(values, &[ID], "").is_empty(), "no prefix: they match");
        let prefixed = json!({"auth": {"k10AdminGroups": [member.clone()]}});
        assert!(codes(prefixed, &[&member], "michael_azure_").is_empty());
    }

    #[test]
    fn an_allow_list_without_admin_groups_makes_every_listed_group_admin() {
        let member = format!("michael_azure_{ID}");
        let values = json!({"auth": {"groupAllowList": [ID]}});
        assert_eq!(
            codes(values, &[&member], "michael_azure_"),
            ["AdminGroupWithoutPrefix", "AllowListMakesAdmins"]
        );
        let values = json!({"auth": {"groupAllowList": [ID], "k10AdminGroups": ["k10:admins"]}});
        assert!(codes(values, &[&member], "michael_azure_").is_empty());
    }

    #[test]
    fn a_group_not_in_the_allow_list_is_dropped_by_k10() {
        let other = "michael_azure_00000000-0000-4000-8000-000000000001";
        let values = json!({"auth": {"groupAllowList": [ID], "k10AdminGroups": ["k10:admins"]}});
        assert_eq!(
            codes(values, &[other], "michael_azure_"),
            ["GroupNotInAllowList"]
        );
    }

    #[test]
    fn settings_in_a_secret_are_said_to_be_unread() {
        let values =
            json!({"auth": {"oidcAuth": {"secretName": "my-oidc"}}, "useNamespacedAPI": true});
        let read = K10Values::from_values(&values);
        assert!(read.namespaced_api);
        assert_eq!(codes(values, &[], ""), ["OidcSettingsInSecret"]);
    }
}
