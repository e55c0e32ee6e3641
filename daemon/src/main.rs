//! `flaskbbd`: parses the command line and hands it to the library (`flaskbbd::cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    flaskbbd::cli::main(flaskbbd::cli::Cli::parse())
}
