//! `groupbinder`: the AzureGroupBinding controller and its tools; installed as
//! `kubectl-groupbinder`, the kubectl plugin `kubectl groupbinder`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let mut command = groupbinder::Cli::command();
    let as_plugin = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("kubectl-"))
        })
        .unwrap_or(false);
    if as_plugin {
        // Usage and errors name the command as the user typed it.
        command = command.bin_name("kubectl groupbinder");
    }
    let cli = match groupbinder::Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match groupbinder::main(cli) {
        Ok(code) => code,
        Err(error) => {
            // The one way a command's error goes out: escaped like every other line, whatever
            // input or API server answer it quotes.
            eprintln!(
                "error: {}",
                groupbinder_api::text::shown(&format!("{error:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
