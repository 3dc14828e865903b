//! `groupbinder plan -f FILE|DIR`: the bindings the controller would create, offline, from the same
//! pure function the controller runs ([`groupbinder_api::plan`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use groupbinder_api::Namespaces;
use groupbinder_api::desired::refusal_message;
use kube::Resource;

use crate::manifests::{self, ManifestError};
use crate::namespaces::NamespaceArgs;
use crate::output::{self, shown};
use crate::settings::SettingsArgs;

/// Flags of `groupbinder plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Files or directories (read recursively, *.yaml, *.yml, *.json) holding AzureGroupBindings,
    /// alone or in Lists (`kubectl get agb -o yaml`); other documents are skipped. `-` reads
    /// standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    namespaces: NamespaceArgs,
    #[command(flatten)]
    cluster: crate::k10cluster::K10ClusterArgs,
}

/// Why a document could not be planned.
#[derive(Debug, thiserror::Error)]
enum PlanFailure {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("AzureGroupBinding {name}: {reason}: {message}")]
    Refused {
        name: String,
        reason: &'static str,
        message: String,
    },
}

/// Prints the planned bindings as YAML on standard output and every refusal on standard error.
/// Exits 1 if any AzureGroupBinding would be refused, as the controller would refuse it.
pub async fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings.settings();
    let namespaces = args.namespaces.read(false).await?;
    let namespaces = namespaces.as_ref().map(|n| n as &dyn Namespaces);
    // With the cluster at hand, K10's live settings: whether K10 presents each planned group.
    let k10 = if args.namespaces.reads_cluster() {
        let client = crate::connection::client().await?;
        crate::k10cluster::read(args.cluster, &client, &settings.k10_namespace).await
    } else {
        None
    };
    let (agbs, failures) = manifests::azure_group_bindings(&args.files);
    let mut failures: Vec<PlanFailure> = failures.into_iter().map(PlanFailure::from).collect();
    let mut out = Vec::new();
    for agb in agbs {
        let name = agb.meta().name.clone().unwrap_or_default();
        match groupbinder_api::plan(&agb, &settings, namespaces) {
            Ok(plan) => {
                for crb in &plan.cluster_role_bindings {
                    out.push(output::yaml(&crb.object)?);
                }
                for rb in &plan.role_bindings {
                    out.push(output::yaml(&rb.object)?);
                }
                let verdict = k10.as_ref().map(|k| {
                    groupbinder_api::k10oidc::presents(
                        &plan.group,
                        &agb.spec.group_object_id,
                        &k.live,
                    )
                });
                if let Some(v) =
                    verdict.filter(|v| v.presents == groupbinder_api::k10oidc::Presents::No)
                {
                    eprintln!(
                        "warning: AzureGroupBinding {}: {}: {}",
                        shown(&name),
                        v.reason,
                        shown(&v.message)
                    );
                }
                for warning in groupbinder_api::desired::warnings(&plan, &settings) {
                    eprintln!(
                        "warning: AzureGroupBinding {}: {}",
                        shown(&name),
                        shown(&warning)
                    );
                }
                // The controller binds the rest and refuses these, as here.
                if !plan.refused.is_empty() {
                    failures.push(PlanFailure::Refused {
                        name,
                        reason: groupbinder_api::conditions::reason::ROLE_NOT_ALLOWED,
                        message: refusal_message(&plan.refused, &settings.allowed),
                    });
                }
            }
            Err(error) => failures.push(PlanFailure::Refused {
                name,
                reason: error.reason(),
                message: error.to_string(),
            }),
        }
    }
    for doc in &out {
        print!("---\n{doc}");
    }
    for failure in &failures {
        eprintln!("error: {}", shown(&failure.to_string()));
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
