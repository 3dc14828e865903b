//! `groupbinder unmanage`: leave groupbinder without losing access. The bindings of the named
//! AzureGroupBindings (or of all) become hand-written ones: their ownerReferences and
//! groupbinder's labels are removed, so neither the garbage collector nor the operator deletes
//! them when the objects (or the CRD) go. Run it with the operator stopped and the chart
//! uninstalled: the chart's ownership policy lets nobody else change groupbinder's ownership.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Args;
use groupbinder_api::names::{MANAGED_BY_LABEL, MANAGED_SELECTOR, OWNER_LABEL, OWNER_UID_LABEL};
use groupbinder_api::ownership::claimed_binding_by;
use groupbinder_api::{AzureGroupBinding, RbacBinding};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::output::shown;
use crate::settings::SettingsArgs;

/// Flags of `groupbinder unmanage`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["names", "all"])))]
pub struct UnmanageArgs {
    /// The AzureGroupBindings whose bindings become hand-written.
    names: Vec<String>,
    /// Every AzureGroupBinding's.
    #[arg(long)]
    all: bool,
    /// Say what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

/// Runs `groupbinder unmanage`: exit code 1 when a binding could not be changed (nothing else is
/// undone), 2 when a named object does not exist.
pub async fn run(args: &UnmanageArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings.settings();
    let client = crate::connection::client().await?;
    let objects = Api::<AzureGroupBinding>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut chosen = Vec::new();
    for name in &args.names {
        match objects.iter().find(|o| &o.name_any() == name) {
            Some(object) => chosen.push(object),
            None => {
                eprintln!("error: AzureGroupBinding {} not found", shown(name));
                return Ok(ExitCode::from(2));
            }
        }
    }
    if args.all {
        chosen = objects.iter().collect();
    }
    // uid → name of the objects whose bindings change.
    let owners: HashMap<String, String> = chosen
        .iter()
        .filter_map(|o| Some((o.uid()?, o.name_any())))
        .collect();
    let crbs = Api::<ClusterRoleBinding>::all(client.clone());
    let rbs = Api::<RoleBinding>::all(client.clone());
    let (mut done, mut failed) = (0, 0);
    for outcome in [
        each(
            &crbs,
            |_| crbs.clone(),
            &owners,
            &settings.allowed,
            args.dry_run,
        )
        .await?,
        each(
            &rbs,
            |ns| Api::namespaced(client.clone(), ns.unwrap_or_default()),
            &owners,
            &settings.allowed,
            args.dry_run,
        )
        .await?,
    ] {
        done += outcome.0;
        failed += outcome.1;
    }
    let verb = if args.dry_run {
        "would become"
    } else {
        "are now"
    };
    println!(
        "{done} bindings {verb} hand-written: deleting their AzureGroupBindings, or the CRD, leaves them; `groupbinder audit` lists them as NotManaged"
    );
    if failed > 0 {
        eprintln!(
            "error: {failed} bindings were not changed; if the chart's ownership policy refused them, uninstall the chart first (`helm uninstall <release>`: the CRD, the objects and their bindings stay), then run this again"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Unmanages every labelled binding of kind `B` that claims one of `owners` (uid → name);
/// (changed, failed).
async fn each<B>(
    all: &Api<B>,
    api: impl Fn(Option<&str>) -> Api<B>,
    owners: &HashMap<String, String>,
    allowed: &groupbinder_api::Allowlist,
    dry_run: bool,
) -> anyhow::Result<(usize, usize)>
where
    B: RbacBinding + Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let (mut done, mut failed) = (0, 0);
    let listed = all
        .list(&ListParams::default().labels(MANAGED_SELECTOR))
        .await?;
    for binding in &listed.items {
        let Some(object) = claimed_binding_by(binding, allowed).and_then(|uid| owners.get(uid))
        else {
            continue;
        };
        let meta = binding.meta();
        let what = match &meta.namespace {
            Some(ns) => format!(
                "{} {}/{}",
                B::kind(&()),
                shown(ns),
                shown(&binding.name_any())
            ),
            None => format!("{} {}", B::kind(&()), shown(&binding.name_any())),
        };
        let object = shown(object);
        if dry_run {
            println!("would unmanage {what} (AzureGroupBinding {object})");
            done += 1;
            continue;
        }
        // Only if it is still the binding read: uid and resourceVersion are preconditions.
        let patch = serde_json::json!({"metadata": {
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
            "ownerReferences": null,
            "labels": {MANAGED_BY_LABEL: null, OWNER_LABEL: null, OWNER_UID_LABEL: null},
        }});
        let params = PatchParams::default();
        match api(meta.namespace.as_deref())
            .patch(&binding.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                println!("unmanaged {what} (AzureGroupBinding {object})");
                done += 1;
            }
            Err(error) => {
                eprintln!("error: {what}: {}", shown(&error.to_string()));
                failed += 1;
            }
        }
    }
    Ok((done, failed))
}
