//! The `groupbinder` command line.

mod audit;
mod crd;
mod explain;
mod grants;
mod import;
mod k10values;
mod namespaces;
mod plan;
mod run;
mod settings;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Maps Entra ID (Azure AD) groups to Kasten K10 roles through Kubernetes RBAC.
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
}

/// Runs the command line.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Plan(args) => plan::run(&args),
        Command::ExplainToken(args) => explain::run(&args),
        Command::Import(args) => import::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Crd => {
            print!("{}", crd::yaml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub use crd::yaml as crd_yaml;
