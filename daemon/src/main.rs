//! The `flaskbbd` command: the daemon and its operator CLI.

use std::{collections::HashMap, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use flaskbbd::{
    config::Config,
    generation::{render_chains, Generation},
    loader::Loader,
    password::Verifier,
};

/// FlaskBB's plugin hooks and authentication pipeline as a native daemon.
#[derive(Parser)]
#[command(name = "flaskbbd", version)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, default_value = "flaskbb.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration, load every plugin, and print each chain in call order.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
    ).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flaskbbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check => {
            let config = Arc::new(Config::load(&cli.config)?);
            let verifier = Arc::new(Verifier::new(config.auth.bcrypt_cost)?);
            let generation = Generation::build(1, config.clone(), &Loader::default(), verifier, &HashMap::new())?;
            print!("{}", render_chains(&generation.describe()));
            println!("{}: OK", config.path.display());
            Ok(())
        }
    }
}
