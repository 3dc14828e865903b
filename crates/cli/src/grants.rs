//! Who has K10 access through RBAC, as bindings say it: the facts `audit` reports and `import`
//! turns into AzureGroupBindings. Pure: the bindings come from the cluster or from files.

use std::path::PathBuf;

use groupbinder_api::desired::is_lower_guid;
use groupbinder_api::{RbacBinding, RoleKind, Settings, k10, ownership};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::manifests::{self, ManifestError};
use crate::output::shown;

/// A ClusterRoleBinding or RoleBinding, as far as access goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// Namespace of a RoleBinding; `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The role it binds.
    pub role_ref: RoleRef,
    /// Who it binds.
    pub subjects: Vec<Subject>,
    /// The AzureGroupBinding that controls it, if one does.
    pub managed_by: Option<String>,
}

impl Binding {
    /// What `binding` grants, and the AzureGroupBinding that controls it by groupbinder's
    /// ownership rule ([`groupbinder_api::ownership`]).
    pub fn of<B: RbacBinding>(binding: &B) -> Self {
        let meta = binding.meta();
        Binding {
            namespace: RbacBinding::namespace(binding).map(str::to_owned),
            name: meta.name.clone().unwrap_or_default(),
            role_ref: binding.role_ref().clone(),
            subjects: binding.subjects().clone().unwrap_or_default(),
            managed_by: ownership::controller_name(meta).map(str::to_owned),
        }
    }

    /// `ClusterRoleBinding NAME` or `RoleBinding NS/NAME`.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("RoleBinding {ns}/{}", self.name),
            None => format!("ClusterRoleBinding {}", self.name),
        }
    }

    /// `ClusterRoleBinding` or `RoleBinding`.
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        }
    }
}

/// The bindings in `files` (YAML or JSON documents, or Lists, as `kubectl get
/// clusterrolebindings,rolebindings -A -o yaml` prints); other kinds are skipped.
pub fn from_files(files: &[PathBuf]) -> Result<Vec<Binding>, ManifestError> {
    let documents = manifests::read_all(files)?;
    let mut bindings = Vec::new();
    for document in &documents {
        if document.is(None, "ClusterRoleBinding") {
            let b: ClusterRoleBinding = document.decode("ClusterRoleBinding")?;
            bindings.push(Binding::of(&b));
        } else if document.is(None, "RoleBinding") {
            let b: RoleBinding = document.decode("RoleBinding")?;
            if b.metadata.namespace.is_none() {
                return Err(ManifestError::Decode {
                    origin: document.describe(),
                    kind: "RoleBinding".into(),
                    error: "no metadata.namespace".into(),
                });
            }
            bindings.push(Binding::of(&b));
        }
    }
    Ok(bindings)
}

/// Every ClusterRoleBinding and RoleBinding of the cluster.
pub async fn from_cluster(client: &kube::Client) -> anyhow::Result<Vec<Binding>> {
    let (crb_api, rb_api) = (
        Api::<ClusterRoleBinding>::all(client.clone()),
        Api::<RoleBinding>::all(client.clone()),
    );
    let params = ListParams::default();
    let (crbs, rbs) = tokio::try_join!(crb_api.list(&params), rb_api.list(&params))?;
    Ok(crbs
        .items
        .iter()
        .map(Binding::of)
        .chain(rbs.items.iter().map(Binding::of))
        .collect())
}

/// What a group subject's name says about the Entra ID group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupName {
    /// `<expected prefix><lower-case GUID>`.
    ObjectId(String),
    /// `<expected prefix><GUID with upper case>`: K10 presents lower case, this grants nothing.
    UpperCase(String),
    /// `<other prefix><GUID>`: K10 presents the expected prefix, this grants nothing.
    OtherPrefix {
        /// The prefix found.
        prefix: String,
        /// The object ID.
        object_id: String,
    },
    /// `<something><GUID><more>`: characters after the object ID (a trailing space, U+200B),
    /// which K10 never presents: this grants nothing.
    TextAfter {
        /// The object ID.
        object_id: String,
    },
    /// Not a prefixed object ID at all.
    NotAnObjectId,
}

/// Reads `name` as `<prefix><object ID>` against the `expected` prefix. The object ID is the
/// first GUID in the name, in any case; anything after it is [`GroupName::TextAfter`].
pub fn group_name(name: &str, expected: &str) -> GroupName {
    let found = name.char_indices().find_map(|(at, _)| {
        let id = name.get(at..at + 36)?;
        is_lower_guid(&id.to_lowercase()).then_some((at, id))
    });
    let Some((at, id)) = found else {
        return GroupName::NotAnObjectId;
    };
    let (prefix, lower) = (&name[..at], id.to_lowercase());
    if at + 36 != name.len() {
        return GroupName::TextAfter { object_id: lower };
    }
    match (prefix == expected, id == lower) {
        (true, true) => GroupName::ObjectId(lower),
        (true, false) => GroupName::UpperCase(lower),
        (false, _) => GroupName::OtherPrefix {
            prefix: prefix.to_owned(),
            object_id: lower,
        },
    }
}

/// Whether `role_ref` is one of K10's roles for the settings' release (see
/// [`groupbinder_api::k10::is_k10_role`]).
pub fn is_k10_role(settings: &Settings, role_ref: &RoleRef) -> bool {
    (role_ref.kind == "ClusterRole" || role_ref.kind == "Role")
        && k10::is_k10_role(&settings.k10_release, role_kind(role_ref), &role_ref.name)
}

/// The role's kind, typed.
pub fn role_kind(role_ref: &RoleRef) -> RoleKind {
    if role_ref.kind == "ClusterRole" {
        RoleKind::ClusterRole
    } else {
        RoleKind::Role
    }
}

/// Something worth fixing about one grant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Warning {
    /// No AzureGroupBinding manages it: nothing keeps it as declared or shows it.
    NotManaged,
    /// The group's prefix is not K10's: K10 never presents that name.
    PrefixMismatch,
    /// The group's GUID is upper case: K10 presents it lower case.
    UpperCaseGuid,
    /// Characters after the group's object ID (a trailing space, U+200B): K10 never presents it.
    TextAfterObjectId,
    /// The group's prefix holds a character outside ASCII: a look-alike letter (Cyrillic `а`)
    /// makes a name no token carries.
    NonAsciiPrefix,
    /// `<release>-basic` in K10's own namespace: its users manage K10's policies and actions.
    BasicInK10Namespace,
    /// A ServiceAccount (other than K10's own, in K10's namespace) or a `system:` group: K10
    /// never presents it for a signed-in user.
    NotPresentedByK10,
}

impl Warning {
    /// What it means and how to fix it.
    pub fn explain(&self) -> &'static str {
        match self {
            Warning::NotManaged => {
                "hand-written: run `groupbinder import` and let an AzureGroupBinding keep it"
            }
            Warning::PrefixMismatch => {
                "the group prefix is not K10's groupPrefix: it matches nobody"
            }
            Warning::UpperCaseGuid => {
                "the object ID is upper case; K10 presents it lower case: it matches nobody"
            }
            Warning::TextAfterObjectId => {
                "characters follow the object ID (a space, an invisible character): K10 presents <prefix><object ID> exactly: it matches nobody"
            }
            Warning::NonAsciiPrefix => {
                "the prefix holds a character outside ASCII, perhaps a look-alike letter: compare it with K10's groupPrefix"
            }
            Warning::BasicInK10Namespace => {
                "basic in K10's own namespace lets users manage K10 itself: bind it in application namespaces"
            }
            Warning::NotPresentedByK10 => "K10 never presents this subject for a signed-in user",
        }
    }
}

/// One subject's access through one binding to a K10 role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// `ClusterRoleBinding NAME` or `RoleBinding NS/NAME`.
    pub binding: String,
    /// `ClusterRole NAME` or `Role NAME`.
    pub role: String,
    /// `Group NAME`, `User NAME` or `ServiceAccount NS/NAME`.
    pub subject: String,
    /// The Entra ID object ID, when the subject is a group named `<prefix><GUID>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The AzureGroupBinding that manages the binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// What is worth fixing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// Every grant of a K10 role in `bindings`, sorted, with its warnings; `prefix` is K10's
/// `groupPrefix`.
pub fn grants(bindings: &[Binding], settings: &Settings, prefix: &str) -> Vec<Grant> {
    let basic = k10::role(&settings.k10_release, "basic");
    let mut out = Vec::new();
    for b in bindings
        .iter()
        .filter(|b| is_k10_role(settings, &b.role_ref))
    {
        for s in &b.subjects {
            let mut warnings = Vec::new();
            if b.managed_by.is_none() {
                warnings.push(Warning::NotManaged);
            }
            if b.role_ref.name == basic && b.namespace.as_deref() == Some(&settings.k10_namespace) {
                warnings.push(Warning::BasicInK10Namespace);
            }
            let mut object_id = None;
            let subject = match s.kind.as_str() {
                "Group" => {
                    match group_name(&s.name, prefix) {
                        GroupName::ObjectId(id) => object_id = Some(id),
                        GroupName::UpperCase(id) => {
                            object_id = Some(id);
                            warnings.push(Warning::UpperCaseGuid);
                        }
                        GroupName::OtherPrefix {
                            object_id: id,
                            prefix: found,
                        } => {
                            object_id = Some(id);
                            warnings.push(Warning::PrefixMismatch);
                            if groupbinder_api::text::non_ascii_in(&found).is_some() {
                                warnings.push(Warning::NonAsciiPrefix);
                            }
                        }
                        GroupName::TextAfter { object_id: id } => {
                            object_id = Some(id);
                            warnings.push(Warning::TextAfterObjectId);
                        }
                        GroupName::NotAnObjectId if s.name.starts_with("system:") => {
                            warnings.push(Warning::NotPresentedByK10);
                        }
                        GroupName::NotAnObjectId => {}
                    }
                    format!("Group {}", s.name)
                }
                "ServiceAccount" => {
                    let ns = s.namespace.clone().unwrap_or_default();
                    if ns != settings.k10_namespace {
                        warnings.push(Warning::NotPresentedByK10);
                    }
                    format!("ServiceAccount {ns}/{}", s.name)
                }
                kind => format!("{kind} {}", s.name),
            };
            warnings.sort();
            out.push(Grant {
                binding: b.display(),
                role: format!("{} {}", b.role_ref.kind, b.role_ref.name),
                subject,
                object_id,
                managed_by: b.managed_by.clone(),
                warnings,
            });
        }
    }
    out.sort_by(|a, b| (&a.binding, &a.subject).cmp(&(&b.binding, &b.subject)));
    out
}

/// Reads the bindings from `files`, or the cluster when there are none; prints the error and
/// returns `None` (exit code 2) when files cannot be read.
pub async fn load(files: &[PathBuf]) -> anyhow::Result<Option<Vec<Binding>>> {
    if !files.is_empty() {
        return match from_files(files) {
            Ok(bindings) => Ok(Some(bindings)),
            Err(error) => {
                eprintln!("error: {}", shown(&error.to_string()));
                Ok(None)
            }
        };
    }
    Ok(Some(
        from_cluster(&kube::Client::try_default().await?).await?,
    ))
}

/// The name of a binding's subject list entry, for messages.
pub fn subject_name(s: &Subject) -> String {
    match &s.namespace {
        Some(ns) if s.kind == "ServiceAccount" => format!("ServiceAccount {ns}/{}", s.name),
        _ => format!("{} {}", s.kind, s.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";

    #[test]
    fn group_names_are_read_against_k10s_prefix() {
        let p = "michael_azure_";
        assert_eq!(
            group_name(&format!("{p}{ID}"), p),
            GroupName::ObjectId(ID.into())
        );
        assert_eq!(
            group_name(&format!("{p}{}", ID.to_uppercase()), p),
            GroupName::UpperCase(ID.into())
        );
        assert_eq!(
            group_name(&format!("azure:{ID}"), p),
            GroupName::OtherPrefix {
                prefix: "azure:".into(),
                object_id: ID.into()
            }
        );
        assert_eq!(group_name(ID, ""), GroupName::ObjectId(ID.into()));
        assert_eq!(group_name("k10:admins", p), GroupName::NotAnObjectId);
        assert_eq!(group_name("ü", p), GroupName::NotAnObjectId);
        for after in [" ", "\u{200B}", "-x"] {
            assert_eq!(
                group_name(&format!("{p}{ID}{after}"), p),
                GroupName::TextAfter {
                    object_id: ID.into()
                },
                "{after:?}"
            );
        }
        assert_eq!(
            group_name(&format!("mich\u{430}el_azure_{ID}"), p),
            GroupName::OtherPrefix {
                prefix: "mich\u{430}el_azure_".into(),
                object_id: ID.into()
            }
        );
    }
}
