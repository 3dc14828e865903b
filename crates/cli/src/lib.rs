//! The `groupbinder` command line.
//!
//! Every command lives in [`commands`] and imports only the shared modules beside it, never
//! another command: [`manifests`] is the one way manifests come in, [`output`] the one way
//! anything goes out (formats, tables, escaping), [`settings`] the operator's settings flags.

mod commands;
mod entra;
mod grants;
mod k10cluster;
mod k10values;
mod manifests;
mod namespaces;
mod output;
mod settings;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{audit, crd, explain, import, plan, run, unmanage};

/// Maps Entra ID (Azure AD) groups to Kasten K10 roles through Kubernetes RBAC: runs the
/// controller, plans and explains its bindings offline, audits and imports hand-written ones.
#[derive(Debug, Parser)]
#[command(name = "groupbinder", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<run::RunArgs>),
    /// Print the AzureGroupBinding CustomResourceDefinition as YAML.
    Crd,
    /// Print the bindings the controller would create for AzureGroupBindings in files, offline.
    Plan(plan::PlanArgs),
    /// Show what K10 and kube-apiserver see for an ID token, and what access it gets.
    ExplainToken(Box<explain::ExplainArgs>),
    /// Write the AzureGroupBindings that reproduce hand-written bindings of K10's roles.
    Import(import::ImportArgs),
    /// Who has which K10 access, from RBAC as the API server sees it; exit code 1 on warnings.
    Audit(audit::AuditArgs),
    /// Leave groupbinder without losing access: turn the bindings of AzureGroupBindings into
    /// hand-written ones (run with the operator stopped and the chart uninstalled).
    Unmanage(unmanage::UnmanageArgs),
}

/// Runs the command line, every command on one runtime.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    // One thread: the commands and the controller wait on the API server most of the time (a
    // quarter of a core while the controller converges 5000 objects), and one thread keeps one
    // malloc arena: 5 to 10 % less memory than a thread per core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(*args).await,
            Command::Plan(args) => plan::run(&args).await,
            Command::ExplainToken(args) => explain::run(&args).await,
            Command::Import(args) => import::run(&args).await,
            Command::Audit(args) => audit::run(&args).await,
            Command::Unmanage(args) => unmanage::run(&args).await,
            Command::Crd => {
                print!("{}", crd::yaml()?);
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

pub use commands::crd::yaml as crd_yaml;
