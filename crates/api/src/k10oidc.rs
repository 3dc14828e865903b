//! What K10, as configured now, presents to the API server for a signed-in member, and whether
//! that is the group an AzureGroupBinding binds: the chain from a token's `groups` claim to RBAC.
//! Pure: the settings come from K10's live OIDC Secret (read by the controller) or a file.
//!
//! K10 keeps its OIDC settings in a Secret that its `auth-svc` Deployment mounts as volume
//! `k10-oidc-auth`. Only the keys below are ever taken from it; the rest (`client-secret`
//! among them) is never read into this type.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;

/// The keys of K10's OIDC Secret that groupbinder reads; nothing else is taken.
pub const KEYS: [&str; 6] = [
    "provider-url",
    "usernameClaim",
    "usernamePrefix",
    "groupClaim",
    "groupPrefix",
    "groupAllowList",
];

/// The Deployment whose volume says which Secret K10 reads its OIDC settings from.
pub const AUTH_DEPLOYMENT: &str = "auth-svc";
/// The volume of [`AUTH_DEPLOYMENT`] that mounts K10's OIDC Secret.
pub const OIDC_VOLUME: &str = "k10-oidc-auth";
/// The ConfigMap that holds K10's `version` and `apiDomain`.
pub const K10_CONFIG: &str = "k10-config";

/// The Secret that K10's `auth-svc` `deployment` mounts as [`OIDC_VOLUME`], if any: the one K10
/// reads (its `auth.oidcAuth.secretName`, or `k10-oidc-auth`).
pub fn mounted_oidc_secret(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == OIDC_VOLUME)?
        .secret
        .as_ref()?
        .secret_name
        .as_deref()
}

/// K10's OIDC settings that decide which group name it presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K10Oidc {
    /// `provider-url`: the issuer.
    pub provider_url: String,
    /// `usernameClaim`.
    pub username_claim: String,
    /// `usernamePrefix`, if set.
    pub username_prefix: Option<String>,
    /// `groupClaim`: empty means K10 presents no groups at all.
    pub group_claim: String,
    /// `groupPrefix`: "" (or absent) means no prefix.
    pub group_prefix: String,
    /// `groupAllowList`, one group a line: when not empty, K10 drops every other group.
    pub group_allow_list: Vec<String>,
}

impl K10Oidc {
    /// Reads the settings from K10's OIDC `secret`, taking only [`KEYS`]; the rest of it
    /// (`client-secret` among them) is dropped here, with the Secret.
    pub fn from_secret(secret: Secret) -> Self {
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k, v.0))
            .collect();
        K10Oidc::from_data(&data)
    }

    /// Reads the settings from a Secret's `data`, taking only [`KEYS`]; values that are not
    /// UTF-8 count as absent.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Self {
        let text = |key: &str| {
            data.get(key)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
        };
        K10Oidc {
            provider_url: text("provider-url").unwrap_or_default(),
            username_claim: text("usernameClaim").unwrap_or_default(),
            username_prefix: text("usernamePrefix"),
            group_claim: text("groupClaim").unwrap_or_default(),
            group_prefix: text("groupPrefix").unwrap_or_default(),
            group_allow_list: text("groupAllowList")
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// What is known of K10's live OIDC settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum K10Live {
    /// Read.
    Known(K10Oidc),
    /// No `auth-svc` Deployment in K10's namespace: K10 is not installed (or not yet).
    NotInstalled,
    /// `auth-svc` mounts no `k10-oidc-auth` Secret: K10 does not sign users in with OIDC.
    OidcOff,
    /// They could not be read: why, and how to fix it.
    Unreadable(String),
}

/// How sure a [`Verdict`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presents {
    /// K10 presents the object's group.
    Yes,
    /// K10, as configured now, will not present it: the bindings reach nobody.
    No,
    /// It cannot be told.
    Unknown,
}

/// Whether K10 presents an object's group, why, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Yes, no or unknown.
    pub presents: Presents,
    /// A CamelCase reason (see [`reason`]).
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// The reasons of the `K10Presents` condition.
pub mod reason {
    /// K10 presents the group.
    pub const PRESENTED: &str = "Presented";
    /// The object's prefix differs from K10's `groupPrefix`.
    pub const PREFIX_MISMATCH: &str = "PrefixMismatch";
    /// K10's `groupClaim` is empty: it presents no groups.
    pub const NO_GROUP_CLAIM: &str = "NoGroupClaim";
    /// K10's `groupAllowList` drops the group, read either way.
    pub const NOT_IN_GROUP_ALLOW_LIST: &str = "NotInGroupAllowList";
    /// K10's `groupAllowList` holds the group under one reading only.
    pub const GROUP_ALLOW_LIST_AMBIGUOUS: &str = "GroupAllowListAmbiguous";
    /// K10's settings could not be read.
    pub const K10_CONFIG_UNREADABLE: &str = "K10ConfigUnreadable";
    /// K10 is not installed.
    pub const K10_NOT_INSTALLED: &str = "K10NotInstalled";
    /// K10 does not use OIDC.
    pub const K10_OIDC_OFF: &str = "K10OidcOff";
    /// K10 signs users in through its Dex (LDAP, OpenShift): the groups come from there.
    pub const K10_DEX_MODE: &str = "K10DexMode";
    /// K10's provider is Entra ID's multi-tenant endpoint: any tenant's groups.
    pub const MULTI_TENANT_PROVIDER: &str = "MultiTenantProvider";
    /// The object says its group is for someone other than K10: not checked.
    pub const NOT_CHECKED: &str = "NotChecked";
}

/// Whether K10, as `live` says, presents `group` (`<the object's prefix><object ID>`) for a
/// member of the Entra ID group `object_id`.
pub fn presents(group: &str, object_id: &str, live: &K10Live) -> Verdict {
    let verdict = |presents, reason, message: String| Verdict {
        presents,
        reason,
        message,
    };
    let oidc = match live {
        K10Live::Known(oidc) => oidc,
        K10Live::NotInstalled => {
            return verdict(
                Presents::Unknown,
                reason::K10_NOT_INSTALLED,
                "K10's auth-svc Deployment was not found in K10's namespace: cannot check what K10 presents".into(),
            );
        }
        K10Live::OidcOff => {
            return verdict(
                Presents::Unknown,
                reason::K10_OIDC_OFF,
                "K10's auth-svc mounts no OIDC Secret: K10 does not sign users in with OIDC".into(),
            );
        }
        K10Live::Unreadable(why) => {
            return verdict(
                Presents::Unknown,
                reason::K10_CONFIG_UNREADABLE,
                why.clone(),
            );
        }
    };
    let url = oidc.provider_url.trim_end_matches('/');
    if url.ends_with("/dex") {
        return verdict(
            Presents::Unknown,
            reason::K10_DEX_MODE,
            format!(
                "K10 signs users in through its Dex ({url}): the groups come from Dex, not from Entra ID directly"
            ),
        );
    }
    if ["/common", "/organizations"]
        .iter()
        .any(|t| url.contains(&format!("{t}/")) || url.ends_with(t))
    {
        return verdict(
            Presents::Unknown,
            reason::MULTI_TENANT_PROVIDER,
            format!(
                "K10's provider-url {url} is Entra ID's multi-tenant endpoint: group object IDs of any tenant reach it"
            ),
        );
    }
    if oidc.group_claim.is_empty() {
        return verdict(
            Presents::No,
            reason::NO_GROUP_CLAIM,
            "K10's groupClaim is empty: it presents no groups at all; set auth.oidcAuth.groupClaim to groups in K10's Helm values".into(),
        );
    }
    let presented = format!("{}{object_id}", oidc.group_prefix);
    if presented != group {
        let ours = group.strip_suffix(object_id).unwrap_or(group);
        return verdict(
            Presents::No,
            reason::PREFIX_MISMATCH,
            format!(
                "K10 presents {presented} (its groupPrefix {:?}), this object binds {group} (prefix {ours:?}): set spec.groupPrefix (or the operator's default) to {:?}, or K10's auth.oidcAuth.groupPrefix to {ours:?}",
                oidc.group_prefix, oidc.group_prefix
            ),
        );
    }
    if !oidc.group_allow_list.is_empty() {
        let list = &oidc.group_allow_list;
        let (raw, prefixed) = (
            list.iter().any(|g| g == object_id),
            list.contains(&presented),
        );
        match (raw, prefixed) {
            (false, false) => {
                return verdict(
                    Presents::No,
                    reason::NOT_IN_GROUP_ALLOW_LIST,
                    format!(
                        "K10's groupAllowList holds neither {object_id} nor {presented}: K10 drops the group; add it to auth.groupAllowList"
                    ),
                );
            }
            (true, true) => {}
            _ => {
                return verdict(
                    Presents::Unknown,
                    reason::GROUP_ALLOW_LIST_AMBIGUOUS,
                    format!(
                        "K10's groupAllowList holds {} only; K10 does not document whether it compares before or after adding groupPrefix: list both forms to be sure",
                        if raw { object_id } else { &presented }
                    ),
                );
            }
        }
    }
    verdict(
        Presents::Yes,
        reason::PRESENTED,
        format!(
            "K10 presents {presented} for members (groupClaim {:?})",
            oidc.group_claim
        ),
    )
}

/// The prefix an object that sets none uses when the operator follows K10's `groupPrefix`: K10's
/// live one when it is known and valid; else the last known good, which the object's status
/// `group` (`<prefix><object ID>`) still holds; else none (the object then changes nothing).
/// Never a fallback to "": that would grant the bare object ID.
pub fn followed_prefix(
    live: Option<&K10Live>,
    status_group: Option<&str>,
    object_id: &str,
) -> Option<String> {
    match live {
        Some(K10Live::Known(oidc)) if crate::desired::is_valid_prefix(&oidc.group_prefix) => {
            Some(oidc.group_prefix.clone())
        }
        _ => status_group
            .and_then(|g| g.strip_suffix(object_id))
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";

    fn live(edit: impl FnOnce(&mut K10Oidc)) -> K10Live {
        let mut oidc = K10Oidc {
            provider_url: "https://login.microsoftonline.com/tenant/v2.0".into(),
            group_claim: "groups".into(),
            group_prefix: "michael_azure_".into(),
            ..K10Oidc::default()
        };
        edit(&mut oidc);
        K10Live::Known(oidc)
    }

    #[test]
    fn only_the_chain_k10_really_has_is_presented() {
        let group = format!("michael_azure_{ID}");
        let is = |live: &K10Live| {
            let v = presents(&group, ID, live);
            (v.presents, v.reason)
        };
        assert_eq!(is(&live(|_| {})), (Presents::Yes, reason::PRESENTED));
        assert_eq!(
            is(&live(|o| o.group_prefix = "azure:".into())),
            (Presents::No, reason::PREFIX_MISMATCH)
        );
        assert_eq!(
            is(&live(|o| o.group_claim.clear())),
            (Presents::No, reason::NO_GROUP_CLAIM)
        );
        assert_eq!(
            is(&live(|o| o.group_allow_list = vec!["other".into()])),
            (Presents::No, reason::NOT_IN_GROUP_ALLOW_LIST)
        );
        assert_eq!(
            is(&live(|o| o.group_allow_list = vec![ID.into()])),
            (Presents::Unknown, reason::GROUP_ALLOW_LIST_AMBIGUOUS)
        );
        assert_eq!(
            is(&live(
                |o| o.group_allow_list = vec![ID.into(), group.clone()]
            )),
            (Presents::Yes, reason::PRESENTED)
        );
        assert_eq!(
            is(&live(
                |o| o.provider_url = "https://k10.example.com/k10/dex/".into()
            )),
            (Presents::Unknown, reason::K10_DEX_MODE)
        );
        assert_eq!(
            is(&live(|o| o.provider_url =
                "https://login.microsoftonline.com/organizations/v2.0"
                    .into())),
            (Presents::Unknown, reason::MULTI_TENANT_PROVIDER)
        );
        assert_eq!(is(&K10Live::NotInstalled).0, Presents::Unknown);
        let mismatch = presents(&group, ID, &live(|o| o.group_prefix = String::new()));
        assert!(
            mismatch.message.contains(&format!("K10 presents {ID}")),
            "{}",
            mismatch.message
        );
    }

    #[test]
    fn a_followed_prefix_holds_while_k10_cannot_be_read() {
        let group = format!("k10:{ID}");
        let known = live(|o| o.group_prefix = "azure:".into());
        assert_eq!(
            followed_prefix(Some(&known), Some(&group), ID).as_deref(),
            Some("azure:")
        );
        for unknown in [
            K10Live::NotInstalled,
            K10Live::Unreadable("x".into()),
            live(|o| o.group_prefix = "system:x".into()),
        ] {
            assert_eq!(
                followed_prefix(Some(&unknown), Some(&group), ID).as_deref(),
                Some("k10:"),
                "{unknown:?}"
            );
        }
        assert_eq!(
            followed_prefix(None, None, ID),
            None,
            "never a fallback to \"\""
        );
    }

    #[test]
    fn only_the_settings_it_needs_are_taken_from_the_secret() {
        let data = BTreeMap::from([
            ("groupClaim".to_owned(), b"groups".to_vec()),
            ("groupPrefix".to_owned(), b"p_\n".to_vec()),
            ("groupAllowList".to_owned(), b"a\n\n b \n".to_vec()),
            ("client-secret".to_owned(), b"hunter2".to_vec()),
        ]);
        let oidc = K10Oidc::from_data(&data);
        assert_eq!(oidc.group_prefix, "p_");
        assert_eq!(oidc.group_allow_list, ["a", "b"]);
        assert!(!format!("{oidc:?}").contains("hunter2"));
    }
}
