//! The `groupbinder` command line.
//!
//! Every command lives in [`commands`] and imports only the shared modules beside it, never
//! another command: [`manifests`] is the one way manifests come in, [`output`] the one way
//! anything goes out (formats, tables, escaping), [`settings`] the operator's settings flags,
//! [`connection`] the one way to the cluster (kubectl's connection flags: the binary is also the
//! kubectl plugin `kubectl groupbinder`).

mod commands;
mod connection;
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
    #[command(flatten)]
    connection: connection::ConnectionArgs,
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
    connection::set(cli.connection);
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn every_flag_parses_without_a_clash() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectls_flags_are_taken_after_the_command_as_kubectl_passes_them() {
        let cli = Cli::try_parse_from([
            "kubectl-groupbinder",
            "audit",
            "-n",
            "k10-elsewhere",
            "--context",
            "prod",
            "--as",
            "alice",
            "--as-group",
            "g1",
            "--as-group",
            "g2",
        ])
        .expect("parses");
        let Command::Audit(audit) = &cli.command else {
            panic!("not audit: {cli:?}");
        };
        assert!(format!("{audit:?}").contains("k10_namespace: \"k10-elsewhere\""));
        let flags = format!("{:?}", cli.connection);
        for expected in ["Some(\"prod\")", "Some(\"alice\")", "[\"g1\", \"g2\"]"] {
            assert!(flags.contains(expected), "{flags}");
        }
        assert!(
            Cli::try_parse_from(["groupbinder", "audit", "--as-group", "g1"]).is_err(),
            "--as-group without --as"
        );
    }
}
