//! `groupbinder`: the AzureGroupBinding controller and its tools.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = groupbinder::Cli::parse();
    match groupbinder::main(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
