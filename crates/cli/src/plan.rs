//! `groupbinder plan -f FILE|DIR`: the bindings the controller would create, offline, from the same
//! pure function the controller runs ([`groupbinder_api::plan`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use groupbinder_api::desired::refusal_message;
use groupbinder_api::{AzureGroupBinding, Namespaces};
use kube::Resource;

use crate::namespaces::NamespaceArgs;
use crate::settings::SettingsArgs;

/// Flags of `groupbinder plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Files or directories (read recursively, *.yaml, *.yml, *.json) holding AzureGroupBindings;
    /// other documents are skipped. `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    namespaces: NamespaceArgs,
}

/// Why a document could not be planned.
#[derive(Debug, thiserror::Error)]
enum PlanFailure {
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: a directory link that loops back to {1}: not followed")]
    Loop(String, String),
    #[error("{0}: not YAML: {1}")]
    Parse(String, String),
    #[error("{0}: InvalidSpec: the AzureGroupBinding cannot be read: {1}")]
    Decode(String, serde_json::Error),
    #[error("AzureGroupBinding {name}: {reason}: {message}")]
    Refused {
        name: String,
        reason: &'static str,
        message: String,
    },
}

/// Prints the planned bindings as YAML on standard output and every refusal on standard error.
/// Exits 1 if any AzureGroupBinding would be refused, as the controller would refuse it.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings.settings();
    let namespaces = if args.namespaces.wants_cluster() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Some(runtime.block_on(async {
            crate::namespaces::from_cluster(&kube::Client::try_default().await?).await
        })?)
    } else {
        args.namespaces.read_file()?
    };
    let namespaces = namespaces.as_ref().map(|n| n as &dyn Namespaces);
    let (agbs, mut failures) = load(&args.files);
    let mut out = Vec::new();
    for agb in agbs {
        let name = agb.meta().name.clone().unwrap_or_default();
        match groupbinder_api::plan(&agb, &settings, namespaces) {
            Ok(plan) => {
                for crb in &plan.cluster_role_bindings {
                    out.push(serde_saphyr::to_string(&crb.object)?);
                }
                for rb in &plan.role_bindings {
                    out.push(serde_saphyr::to_string(&rb.object)?);
                }
                for warning in groupbinder_api::desired::warnings(&plan, &settings) {
                    eprintln!("warning: AzureGroupBinding {name}: {warning}");
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
        eprintln!("error: {failure}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The AzureGroupBindings in `paths` (files or directories), and what could not be read.
fn load(paths: &[PathBuf]) -> (Vec<AzureGroupBinding>, Vec<PlanFailure>) {
    let mut agbs = Vec::new();
    let mut failures = Vec::new();
    let mut found = Vec::new();
    for path in paths {
        let (files, loops) = files(path);
        found.extend(files);
        failures.extend(loops);
    }
    for path in found {
        match read(&path) {
            Ok(documents) => {
                for (origin, document) in documents {
                    match serde_json::from_value(document) {
                        Ok(agb) => agbs.push(agb),
                        Err(e) => failures.push(PlanFailure::Decode(origin, e)),
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }
    (agbs, failures)
}

/// The AzureGroupBindings in `paths`, or the first reason one could not be read.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<AzureGroupBinding>> {
    let (agbs, failures) = load(paths);
    match failures.into_iter().next() {
        Some(failure) => Err(failure.into()),
        None => Ok(agbs),
    }
}

/// `path` itself, or the manifest files below it, sorted; and the directory links that loop
/// (a directory is entered once: a link back to one already entered is reported, not followed).
fn files(path: &Path) -> (Vec<PathBuf>, Vec<PlanFailure>) {
    if !path.is_dir() {
        return (vec![path.to_owned()], Vec::new());
    }
    let mut found = Vec::new();
    let mut loops = Vec::new();
    let mut entered: std::collections::HashMap<PathBuf, PathBuf> = std::collections::HashMap::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(real) = std::fs::canonicalize(&dir) else {
            continue;
        };
        if let Some(first) = entered.get(&real) {
            loops.push(PlanFailure::Loop(
                dir.display().to_string(),
                first.display().to_string(),
            ));
            continue;
        }
        entered.insert(real, dir.clone());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                found.push(p);
            }
        }
    }
    found.sort();
    (found, loops)
}

/// The AzureGroupBinding documents of one file, with where each came from.
fn read(path: &Path) -> Result<Vec<(String, serde_json::Value)>, PlanFailure> {
    let name = path.display().to_string();
    let text = if name == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| PlanFailure::Read(name.clone(), e))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text)
        .map_err(|e| PlanFailure::Parse(name.clone(), e.to_string()))?;
    Ok(docs
        .into_iter()
        .enumerate()
        .filter(|(_, d)| {
            d["kind"] == "AzureGroupBinding" && d["apiVersion"] == "groupbinder.dev/v1alpha1"
        })
        .map(|(i, d)| (format!("{name} (document {})", i + 1), d))
        .collect())
}
