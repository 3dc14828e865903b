//! `groupbinder import`: the AzureGroupBindings that reproduce the hand-written bindings of K10's
//! roles to groups, one object per group, ready to commit. It never deletes anything: with
//! `--redundant` it prints the hand-written bindings that groupbinder's now make redundant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use groupbinder_api::ownership::Standing;
use groupbinder_api::v1alpha1::MAX_ROLES;
use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec, NamespacedRole, RoleKind};

use crate::entra::EntraArgs;
use crate::grants::{self, Binding, GroupName, group_name, is_k10_role, role_kind, subject_name};
use crate::k10values::PrefixArgs;
use crate::output::{self, is_plain, reference_list, shown};
use crate::settings::SettingsArgs;

/// Flags of `groupbinder import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Read bindings from these files instead of the cluster (as `kubectl get
    /// azuregroupbindings,clusterrolebindings,rolebindings,namespaces -A -o yaml` prints them:
    /// a binding counts as managed only with the object that plans it).
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Write one file per AzureGroupBinding into this directory instead of standard output.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Print the hand-written bindings whose every grant a groupbinder-managed binding now gives,
    /// as a List of references for `kubectl delete -f -`, instead of AzureGroupBindings. A name
    /// with white space, control or non-ASCII characters is not listed but reported on standard
    /// error.
    #[arg(long)]
    redundant: bool,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    prefix: PrefixArgs,
    #[command(flatten)]
    entra: EntraArgs,
}

/// One grant that cannot be expressed as an AzureGroupBinding, and why.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotImported {
    /// The binding and subject.
    pub what: String,
    /// Why.
    pub why: String,
}

/// The AzureGroupBindings for the hand-written grants of K10 roles in `bindings`, and what
/// cannot be imported. `prefix` is K10's groupPrefix; `names`, the groups' display names where
/// Entra ID was asked (the objects are named after them).
pub fn import(
    bindings: &[Binding],
    settings: &groupbinder_api::Settings,
    prefix: &str,
    names: &BTreeMap<String, String>,
) -> (Vec<AzureGroupBinding>, Vec<NotImported>) {
    // object ID → (cluster role → its source bindings, (namespace, role, kind) → its sources)
    type Grants = (
        BTreeMap<String, BTreeSet<String>>,
        BTreeMap<(String, String, RoleKind), BTreeSet<String>>,
    );
    let mut by_group: BTreeMap<String, Grants> = BTreeMap::new();
    let mut refused = Vec::new();
    let allowed = &settings.allowed;
    for b in bindings
        .iter()
        .filter(|b| b.standing == Standing::Unmanaged && is_k10_role(settings, &b.role_ref))
    {
        for s in &b.subjects {
            let what = format!("{} → {}", b.display(), subject_name(s));
            let mut refuse = |why: String| {
                refused.push(NotImported {
                    what: what.clone(),
                    why,
                })
            };
            if s.kind != "Group" {
                refuse(format!(
                    "a {} cannot be an AzureGroupBinding's subject (groups only)",
                    s.kind
                ));
                continue;
            }
            let id = match group_name(&s.name, prefix) {
                GroupName::ObjectId(id) => id,
                GroupName::UpperCase(id) => {
                    refuse(format!(
                        "typo: the object ID is upper case, K10 presents {prefix}{id}: this binding grants nothing"
                    ));
                    continue;
                }
                GroupName::OtherPrefix { prefix: found, .. } => {
                    refuse(format!(
                        "typo: prefix {found:?} is not K10's groupPrefix {prefix:?}: this binding grants nothing"
                    ));
                    continue;
                }
                GroupName::TextAfter { .. } => {
                    refuse(format!(
                        "typo: characters follow the object ID; K10 presents {prefix}<object ID> exactly: this binding grants nothing"
                    ));
                    continue;
                }
                GroupName::NotAnObjectId => {
                    refuse(format!(
                        "not <groupPrefix><object ID> (groupPrefix {prefix:?})"
                    ));
                    continue;
                }
            };
            let kind = role_kind(&b.role_ref);
            if !allowed.permits(kind, b.namespace.as_deref(), &b.role_ref.name) {
                let place = b
                    .namespace
                    .as_deref()
                    .map(|ns| format!(" in {ns}"))
                    .unwrap_or_default();
                refuse(format!(
                    "{} {}{place} is not in the operator's allowlist ({allowed})",
                    b.role_ref.kind, b.role_ref.name
                ));
                continue;
            }
            let entry = by_group.entry(id).or_default();
            let sources = match &b.namespace {
                None => entry.0.entry(b.role_ref.name.clone()).or_default(),
                Some(ns) => entry
                    .1
                    .entry((ns.clone(), b.role_ref.name.clone(), kind))
                    .or_default(),
            };
            sources.insert(b.display());
        }
    }
    let agbs = by_group
        .into_iter()
        .flat_map(|(id, (cluster, namespaced))| {
            let name =
                groupbinder_api::names::group_object_name(names.get(&id).map(String::as_str), &id);
            objects((&id, &name), prefix, cluster, namespaced)
        })
        .collect();
    refused.sort();
    (agbs, refused)
}

/// The objects for one group: `name` (see [`groupbinder_api::names::group_object_name`]), and
/// `name-2`, `-3`, ... when its roles are more than one object may list (the schema's
/// [`MAX_ROLES`] of each kind), each with the sources of its own roles in its description.
fn objects(
    (id, base): (&str, &str),
    prefix: &str,
    cluster: BTreeMap<String, BTreeSet<String>>,
    namespaced: BTreeMap<(String, String, RoleKind), BTreeSet<String>>,
) -> Vec<AzureGroupBinding> {
    let cluster: Vec<_> = cluster.into_iter().collect();
    let namespaced: Vec<_> = namespaced.into_iter().collect();
    let count = cluster
        .len()
        .div_ceil(MAX_ROLES)
        .max(namespaced.len().div_ceil(MAX_ROLES))
        .max(1);
    (0..count)
        .map(|k| {
            let part = |len: usize| (k * MAX_ROLES).min(len)..((k + 1) * MAX_ROLES).min(len);
            let cluster = &cluster[part(cluster.len())];
            let namespaced = &namespaced[part(namespaced.len())];
            let sources: BTreeSet<String> = cluster
                .iter()
                .flat_map(|(_, s)| s)
                .chain(namespaced.iter().flat_map(|(_, s)| s))
                .cloned()
                .collect();
            let spec = AzureGroupBindingSpec {
                group_object_id: id.to_owned(),
                group_prefix: Some(prefix.to_owned()),
                description: Some(description(&sources)),
                cluster_roles: (!cluster.is_empty())
                    .then(|| cluster.iter().map(|(r, _)| r.as_str().into()).collect()),
                roles: (!namespaced.is_empty()).then(|| {
                    namespaced
                        .iter()
                        .map(|((ns, name, kind), _)| NamespacedRole::in_namespace(name, ns, *kind))
                        .collect()
                }),
                presented_by: None,
            };
            let name = match k {
                0 => base.to_owned(),
                k => format!("{base}-{}", k + 1),
            };
            AzureGroupBinding::new(&name, spec)
        })
        .collect()
}

/// `imported from <binding>, <binding>, ...` within the schema's limit on `spec.description`:
/// as many sources as fit, then how many more there were.
fn description(sources: &BTreeSet<String>) -> String {
    let limit = groupbinder_api::v1alpha1::DESCRIPTION_MAX_CHARS;
    let mut text = String::from("imported from ");
    let mut chars = text.chars().count();
    for (i, source) in sources.iter().enumerate() {
        let more = sources.len() - i - 1;
        let tail = if more == 0 {
            String::new()
        } else {
            format!(" and {more} more")
        };
        let sep = if i == 0 { "" } else { ", " };
        let piece = source.chars().count() + sep.len();
        if chars + piece + tail.chars().count() > limit {
            let rest = format!(" and {} more", sources.len() - i);
            if i == 0 {
                let n = sources.len();
                return format!("imported from {n} binding{}", if n == 1 { "" } else { "s" });
            }
            text.push_str(&rest);
            return text;
        }
        text.push_str(sep);
        text.push_str(source);
        chars += piece;
    }
    text
}

/// The hand-written bindings to K10 roles whose every subject gets the same role, in the same
/// place, from a binding an AzureGroupBinding manages.
pub fn redundant<'a>(
    bindings: &'a [Binding],
    settings: &groupbinder_api::Settings,
) -> Vec<&'a Binding> {
    let managed: BTreeSet<(Option<&str>, &str, &str, &str, &str)> = bindings
        .iter()
        .filter(|b| b.managed_by().is_some())
        .flat_map(|b| {
            b.subjects.iter().map(move |s| {
                (
                    b.namespace.as_deref(),
                    b.role_ref.kind.as_str(),
                    b.role_ref.name.as_str(),
                    s.kind.as_str(),
                    s.name.as_str(),
                )
            })
        })
        .collect();
    bindings
        .iter()
        .filter(|b| {
            b.standing == Standing::Unmanaged
                && is_k10_role(settings, &b.role_ref)
                && !b.subjects.is_empty()
        })
        .filter(|b| {
            b.subjects.iter().all(|s| {
                managed.contains(&(
                    b.namespace.as_deref(),
                    b.role_ref.kind.as_str(),
                    b.role_ref.name.as_str(),
                    s.kind.as_str(),
                    s.name.as_str(),
                ))
            })
        })
        .collect()
}

/// Runs `groupbinder import`. Exit code 2 when the bindings cannot be read.
pub async fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings.settings();
    let Some((bindings, client)) = grants::load(&args.files, &settings).await? else {
        return Ok(ExitCode::from(2));
    };
    if args.redundant {
        let (plain, odd): (Vec<&Binding>, Vec<&Binding>) = redundant(&bindings, &settings)
            .into_iter()
            .partition(|b| is_plain(&b.name) && b.namespace.as_deref().is_none_or(is_plain));
        print!(
            "{}",
            reference_list(plain.iter().map(|b| {
                (
                    "rbac.authorization.k8s.io/v1",
                    b.kind(),
                    b.namespace.as_deref(),
                    b.name.as_str(),
                )
            }))?
        );
        for b in odd {
            eprintln!(
                "not listed: {} is redundant, but its name holds white space, control or non-ASCII characters: look at it (kubectl get {} -A -o yaml) and delete it yourself",
                shown(&b.display()),
                b.kind().to_lowercase()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = args.prefix.prefix(&settings, client.as_ref()).await?;
    let names = display_names(&args.entra, &bindings, &settings, &prefix).await?;
    let (agbs, refused) = import(&bindings, &settings, &prefix, &names);
    let mut out = String::new();
    for agb in &agbs {
        let yaml = output::yaml(&manifest(agb)?)?;
        match &args.output_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let name = agb.metadata.name.as_deref().unwrap_or("azuregroupbinding");
                std::fs::write(dir.join(format!("{name}.yaml")), &yaml)?;
            }
            None => out.push_str(&format!("---\n{yaml}")),
        }
    }
    print!("{out}");
    for r in &refused {
        eprintln!("not imported: {}: {}", shown(&r.what), shown(&r.why));
    }
    Ok(ExitCode::SUCCESS)
}

/// The display names of the groups `import` would write objects for, when Entra ID is asked.
async fn display_names(
    entra: &EntraArgs,
    bindings: &[Binding],
    settings: &groupbinder_api::Settings,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let (planned, _) = import(bindings, settings, prefix, &BTreeMap::new());
    let ids = planned.iter().map(|a| a.spec.group_object_id.as_str());
    let Some(answers) = entra.answers(ids).await? else {
        return Ok(BTreeMap::new());
    };
    let mut names = BTreeMap::new();
    for (id, answer) in answers {
        match answer {
            groupbinder_api::entra::Answer::Group(group) => {
                names.insert(id, group.display_name);
            }
            groupbinder_api::entra::Answer::NotAGroup(kind) => eprintln!(
                "warning: Entra ID has no group {id}{}: its imported object grants nobody",
                kind.map(|k| format!(" ({})", k.described()))
                    .unwrap_or_default()
            ),
        }
    }
    Ok(names)
}

/// `agb` as a manifest to commit: apiVersion, kind, name and spec; nothing the server sets.
fn manifest(agb: &AzureGroupBinding) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(agb)?;
    value["metadata"] = serde_json::json!({"name": agb.metadata.name});
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject};

    const ID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";

    fn binding(
        ns: Option<&str>,
        name: &str,
        kind: &str,
        role: &str,
        subjects: &[(&str, &str)],
    ) -> Binding {
        Binding {
            namespace: ns.map(str::to_owned),
            name: name.into(),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: kind.into(),
                name: role.into(),
            },
            subjects: subjects
                .iter()
                .map(|(k, n)| Subject {
                    kind: (*k).into(),
                    name: (*n).into(),
                    api_group: None,
                    namespace: None,
                })
                .collect(),
            standing: Standing::Unmanaged,
        }
    }

    #[test]
    fn a_description_of_many_sources_fits_the_schema() {
        let limit = groupbinder_api::v1alpha1::DESCRIPTION_MAX_CHARS;
        let long: BTreeSet<String> = (0..40)
            .map(|i| format!("RoleBinding team-{i}/{}", "x".repeat(200)))
            .collect();
        let text = description(&long);
        assert!(text.chars().count() <= limit, "{}", text.chars().count());
        assert!(text.ends_with(" and 38 more"), "{text}");
        let huge: BTreeSet<String> = [format!("ClusterRoleBinding {}", "y".repeat(600))].into();
        assert_eq!(description(&huge), "imported from 1 binding");
        let few: BTreeSet<String> = [
            "ClusterRoleBinding a".to_owned(),
            "RoleBinding b/c".to_owned(),
        ]
        .into();
        assert_eq!(
            description(&few),
            "imported from ClusterRoleBinding a, RoleBinding b/c"
        );
    }

    #[test]
    fn the_seeds_hand_written_pair_becomes_one_object() {
        let settings = groupbinder_api::Settings::for_k10("k10", "kasten-io", "michael_azure_");
        let group = format!("michael_azure_{ID}");
        let bindings = [
            binding(
                None,
                "k10-admins",
                "ClusterRole",
                "k10-admin",
                &[("Group", &group)],
            ),
            binding(
                Some("kasten-io"),
                "k10-admins",
                "Role",
                "k10-ns-admin",
                &[("Group", &group)],
            ),
            binding(
                None,
                "ops",
                "ClusterRole",
                "cluster-admin",
                &[("Group", &group)],
            ),
        ];
        let (agbs, refused) = import(&bindings, &settings, "michael_azure_", &BTreeMap::new());
        assert!(refused.is_empty(), "{refused:?}");
        let [agb] = agbs.as_slice() else {
            panic!("{agbs:?}")
        };
        assert_eq!(agb.metadata.name.as_deref(), Some(&*format!("azure-{ID}")));
        let plan = groupbinder_api::plan(agb, &settings, None).unwrap();
        let grants: Vec<String> = plan
            .cluster_role_bindings
            .iter()
            .map(|b| b.grant())
            .chain(plan.role_bindings.iter().map(|b| b.grant()))
            .collect();
        assert_eq!(
            grants,
            ["ClusterRole k10-admin", "Role k10-ns-admin in kasten-io"]
        );
    }
}
