//! `bq-ingest`: the service (`serve`, `pull`) and the operator's CLI (`explain`, `backfill`).

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cmd;

/// Event-driven ingest from Google Cloud Storage into BigQuery.
#[derive(Debug, Parser)]
#[command(name = "bq-ingest", version, about)]
struct Cli {
    /// Log format: Cloud Logging JSON on stdout, or text on stderr (default: json for `serve`
    /// and `pull`, text otherwise).
    #[arg(long, global = true, value_enum, env = "LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP: Pub/Sub push, Eventarc CloudEvents, Cloud Functions events (Cloud Run).
    Serve(cmd::serve::ServeArgs),
    /// Consume GCS notifications from a Pub/Sub pull subscription.
    Pull(cmd::pull::PullArgs),
    /// Ingest the success markers under a prefix that landed before notifications existed.
    Backfill(cmd::backfill::BackfillArgs),
    /// Print what the service would do with each object path, without touching anything.
    Explain(cmd::explain::ExplainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = matches!(cli.command, Command::Serve(_) | Command::Pull(_));
    let json = match cli.log_format {
        Some(f) => f == LogFormat::Json,
        None => service,
    };
    if let Command::Explain(args) = cli.command {
        return cmd::explain::run(args);
    }
    let project = ["BQ_PROJECT", "GOOGLE_CLOUD_PROJECT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let service_name = std::env::var("K_SERVICE").unwrap_or_else(|_| "bq-ingest".to_string());
    ingest_service::logging::init(json, project, service_name);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bq-ingest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Pull(args) => cmd::pull::run(args).await,
            Command::Backfill(args) => cmd::backfill::run(args).await,
            Command::Explain(_) => ExitCode::SUCCESS,
        }
    })
}
