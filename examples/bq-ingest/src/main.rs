//! `bq-ingest`: the service (`serve`, `pull`) and the operator's CLI (`explain`, `backfill`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Event-driven ingest from Google Cloud Storage into BigQuery.
#[derive(Debug, Parser)]
#[command(name = "bq-ingest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what the service would do with each object path, without touching anything.
    Explain(cmd::explain::ExplainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Explain(args) => cmd::explain::run(args),
    }
}
