//! Who has K10 access through RBAC, as bindings say it: the facts `audit` reports and `import`
//! turns into AzureGroupBindings. Pure: the bindings come from the cluster or from files.

use std::path::PathBuf;

use std::collections::HashMap;

use groupbinder_api::desired::is_lower_guid;
use groupbinder_api::ownership::{Claimed, Standing};
use groupbinder_api::{
    Allowlist, AzureGroupBinding, Namespaces, Plan, RbacBinding, RoleKind, Settings, k10, ownership,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::manifests::{self, ManifestError};
use crate::namespaces::Listed;
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
    /// What it is to groupbinder ([`ownership::standing`]).
    pub standing: Standing,
}

/// The AzureGroupBindings that exist, by uid, with their current plans: what a binding's claim
/// is checked against.
#[derive(Debug, Default)]
pub struct Owners {
    by_uid: HashMap<String, (String, Option<Plan>)>,
    allowed: Allowlist,
}

impl Owners {
    /// The living objects among `agbs`, planned under `settings` with `namespaces` (for
    /// selectors).
    pub fn new(
        agbs: &[AzureGroupBinding],
        settings: &Settings,
        namespaces: Option<&dyn Namespaces>,
    ) -> Self {
        let by_uid = agbs
            .iter()
            .filter(|a| a.metadata.deletion_timestamp.is_none())
            .filter_map(|a| {
                let plan = groupbinder_api::plan(a, settings, namespaces).ok();
                Some((a.metadata.uid.clone()?, (a.metadata.name.clone()?, plan)))
            })
            .collect();
        Owners {
            by_uid,
            allowed: settings.allowed.clone(),
        }
    }

    fn standing<B: RbacBinding>(&self, binding: &B) -> Standing {
        ownership::standing(binding, &self.allowed, |uid| {
            self.by_uid.get(uid).map(|(name, plan)| Claimed {
                name,
                plan: plan.as_ref(),
            })
        })
    }
}

impl Binding {
    /// What `binding` grants, and what it is to groupbinder against `owners`.
    pub fn of<B: RbacBinding>(binding: &B, owners: &Owners) -> Self {
        let meta = binding.meta();
        Binding {
            namespace: RbacBinding::namespace(binding).map(str::to_owned),
            name: meta.name.clone().unwrap_or_default(),
            role_ref: binding.role_ref().clone(),
            subjects: binding.subjects().clone().unwrap_or_default(),
            standing: owners.standing(binding),
        }
    }

    /// The AzureGroupBinding that manages it ([`Standing::Managed`]), if one does.
    pub fn managed_by(&self) -> Option<&str> {
        match &self.standing {
            Standing::Managed(name) => Some(name),
            _ => None,
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
/// azuregroupbindings,clusterrolebindings,rolebindings,namespaces -A -o yaml` prints), checked
/// against the AzureGroupBindings (and, for their selectors, the Namespaces) among them; other
/// kinds are skipped.
pub fn from_files(files: &[PathBuf], settings: &Settings) -> Result<Vec<Binding>, ManifestError> {
    let documents = manifests::read_all(files)?;
    let first = |failures: Vec<ManifestError>| failures.into_iter().next().map_or(Ok(()), Err);
    let (agbs, failures) = manifests::of_kind::<AzureGroupBinding>(
        &documents,
        Some("groupbinder.dev/v1alpha1"),
        "AzureGroupBinding",
    );
    first(failures)?;
    let (namespaces, failures) = manifests::of_kind::<Namespace>(&documents, None, "Namespace");
    first(failures)?;
    let namespaces: Listed = namespaces
        .into_iter()
        .filter_map(|ns| Some((ns.metadata.name?, ns.metadata.labels.unwrap_or_default())))
        .collect();
    let owners = Owners::new(&agbs, settings, Some(&namespaces));
    let mut bindings = Vec::new();
    for document in &documents {
        if document.is(None, "ClusterRoleBinding") {
            let b: ClusterRoleBinding = document.decode("ClusterRoleBinding")?;
            bindings.push(Binding::of(&b, &owners));
        } else if document.is(None, "RoleBinding") {
            let b: RoleBinding = document.decode("RoleBinding")?;
            if b.metadata.namespace.is_none() {
                return Err(ManifestError::Decode {
                    origin: document.describe(),
                    kind: "RoleBinding".into(),
                    error: "no metadata.namespace".into(),
                });
            }
            bindings.push(Binding::of(&b, &owners));
        }
    }
    Ok(bindings)
}

/// Every ClusterRoleBinding and RoleBinding of the cluster, checked against its
/// AzureGroupBindings and Namespaces.
pub async fn from_cluster(
    client: &kube::Client,
    settings: &Settings,
) -> anyhow::Result<Vec<Binding>> {
    let (crb_api, rb_api, agb_api) = (
        Api::<ClusterRoleBinding>::all(client.clone()),
        Api::<RoleBinding>::all(client.clone()),
        Api::<AzureGroupBinding>::all(client.clone()),
    );
    let params = ListParams::default();
    let (crbs, rbs, agbs, namespaces) = tokio::try_join!(
        async { Ok(crb_api.list(&params).await?) },
        async { Ok(rb_api.list(&params).await?) },
        async { Ok(agb_api.list(&params).await?) },
        crate::namespaces::from_cluster(client),
    )?;
    let owners = Owners::new(&agbs.items, settings, Some(&namespaces));
    Ok(crbs
        .items
        .iter()
        .map(|b| Binding::of(b, &owners))
        .chain(rbs.items.iter().map(|b| Binding::of(b, &owners)))
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
    /// It claims an AzureGroupBinding that groupbinder did not give it (see
    /// [`Standing::ForgedOwner`]).
    ForgedOwner,
    /// groupbinder's, but no current plan holds it as it is (see [`Standing::NotPlanned`]).
    NotPlanned,
    /// Labelled as groupbinder's but bound to a role outside the allowlist (see
    /// [`Standing::OutsideAllowlist`]).
    OutsideAllowlist,
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
    /// Entra ID has no group with this object ID.
    NotAGroup,
}

impl Warning {
    /// What it means and how to fix it.
    pub fn explain(&self) -> &'static str {
        match self {
            Warning::NotManaged => {
                "hand-written: run `groupbinder import` and let an AzureGroupBinding keep it"
            }
            Warning::ForgedOwner => {
                "it claims an AzureGroupBinding that does not exist with that uid, or lacks groupbinder's labels: groupbinder did not make it so; find who wrote its ownerReferences, and delete it"
            }
            Warning::NotPlanned => {
                "no current AzureGroupBinding plans it as it is (its object is gone, no longer asks for it, or its subjects were changed): the operator deletes it or puts it back; if it stays, the operator is not running"
            }
            Warning::OutsideAllowlist => {
                "labelled as groupbinder's but bound to a role outside the allowlist: groupbinder never made it and never touches it; remove the label or the binding"
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
            Warning::NotAGroup => {
                "Entra ID has no group with this object ID (a user's or an application's ID, a deleted group, another tenant's): the binding grants nobody; bind the group's Object ID"
            }
        }
    }
}

/// Names each grant's group with what Entra ID `answers` say, and warns about an object ID that
/// names no group.
pub fn name_groups(
    grants: &mut [Grant],
    answers: &std::collections::BTreeMap<String, groupbinder_api::entra::Answer>,
) {
    use groupbinder_api::entra::Answer;
    for grant in grants {
        match grant.object_id.as_deref().and_then(|id| answers.get(id)) {
            Some(Answer::Group(group)) => {
                grant.group_display_name = Some(group.display_name.clone());
            }
            Some(Answer::NotAGroup(_)) => grant.warnings.push(Warning::NotAGroup),
            None => {}
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
    /// The group's display name in Entra ID (escaped, bounded), when Entra ID was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_display_name: Option<String>,
    /// The AzureGroupBinding that manages the binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// What is worth fixing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// What is worth knowing (no fix needed: they do not change `audit`'s exit code).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// Something worth knowing about one grant, that needs no fix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Note {
    /// `<release>-mc-admin`: every verb on Secrets in every namespace.
    AllSecrets,
}

impl Note {
    /// What it means.
    pub fn explain(&self) -> &'static str {
        match self {
            Note::AllSecrets => {
                "mc-admin grants every Secret in every namespace (service-account tokens too): only K10's multi-cluster primary needs it"
            }
        }
    }
}

/// Every grant of a K10 role in `bindings`, sorted, with its warnings; `prefix` is K10's
/// `groupPrefix`.
pub fn grants(bindings: &[Binding], settings: &Settings, prefix: &str) -> Vec<Grant> {
    let basic = k10::role(&settings.k10_release, "basic");
    let mc_admin = k10::role(&settings.k10_release, "mc-admin");
    let mut out = Vec::new();
    // Every binding to a K10 role, and every other one that claims to be groupbinder's.
    for b in bindings
        .iter()
        .filter(|b| is_k10_role(settings, &b.role_ref) || b.standing != Standing::Unmanaged)
    {
        for s in &b.subjects {
            let (mut warnings, mut notes) = (Vec::new(), Vec::new());
            match &b.standing {
                Standing::Managed(_) => {}
                Standing::ForgedOwner => warnings.push(Warning::ForgedOwner),
                Standing::NotPlanned => warnings.push(Warning::NotPlanned),
                Standing::OutsideAllowlist => warnings.push(Warning::OutsideAllowlist),
                Standing::Unmanaged => warnings.push(Warning::NotManaged),
            }
            if b.role_ref.name == mc_admin {
                notes.push(Note::AllSecrets);
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
                managed_by: b.managed_by().map(str::to_owned),
                group_display_name: None,
                warnings,
                notes,
            });
        }
    }
    out.sort_by(|a, b| (&a.binding, &a.subject).cmp(&(&b.binding, &b.subject)));
    out
}

/// Reads the bindings from `files`, or the cluster when there are none, checked against the
/// AzureGroupBindings found there, and returns the cluster's client with them when it was read;
/// prints the error and returns `None` (exit code 2) when files cannot be read.
pub async fn load(
    files: &[PathBuf],
    settings: &Settings,
) -> anyhow::Result<Option<(Vec<Binding>, Option<kube::Client>)>> {
    if !files.is_empty() {
        return match from_files(files, settings) {
            Ok(bindings) => Ok(Some((bindings, None))),
            Err(error) => {
                eprintln!("error: {}", shown(&error.to_string()));
                Ok(None)
            }
        };
    }
    let client = crate::connection::client().await?;
    let bindings = from_cluster(&client, settings).await?;
    Ok(Some((bindings, Some(client))))
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
