//! `groupbinder`: the AzureGroupBinding controller and its tools.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = groupbinder::Cli::parse();
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
