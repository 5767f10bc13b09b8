//! `bq-ingest`: the service (`serve`, `pull`) and the operator's CLI (`explain`, `backfill`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

mod cmd;

/// Event-driven ingest from Google Cloud Storage into BigQuery.
#[derive(Debug, Parser)]
#[command(
    name = "bq-ingest",
    version,
    about,
    long_about = "bq-ingest loads batches of files from Google Cloud Storage into BigQuery when \
their success marker (_SUCCESS) lands: it receives the bucket's notifications, derives the \
destination from the object path, merges the _config/ files, plans and follows load jobs with \
deterministic ids (a duplicate never loads twice), applies ordered tables' batches in order, and \
records every outcome in a state table. Settings are environment variables \
(docs/configuration.md).",
    after_help = "Docs: docs/operations.md (commands), docs/configuration.md (settings), docs/deploy.md."
)]
struct Cli {
    /// Log format: Cloud Logging JSON on stdout, or text on stderr (default: json for `serve`
    /// and `pull`, text otherwise).
    #[arg(long, global = true, value_enum, env = "LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// The project that runs the jobs (sets `BQ_PROJECT` for this run).
    #[arg(long, global = true)]
    project: Option<String>,
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
    /// What loaded, what failed, what is stuck, what was missed (exit status 1: needs a person).
    Status(cmd::status::StatusArgs),
    /// Find markers without a final state row (missed notifications); `--apply` ingests them once.
    Reconcile(cmd::reconcile::ReconcileArgs),
    /// Restart a stopped ordered table: skip or retry its failed batch, remove the lock, drop `_BACKFILL`.
    Resume(cmd::resume::ResumeArgs),
    /// Print a shell completion script: `bq-ingest completions bash > /etc/bash_completion.d/bq-ingest`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from the same definitions as --help.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(project) = &cli.project {
        // Before any thread exists: the settings read it like any other variable.
        std::env::set_var("BQ_PROJECT", project);
    }
    let service = matches!(cli.command, Command::Serve(_) | Command::Pull(_));
    let json = match cli.log_format {
        Some(f) => f == LogFormat::Json,
        None => service,
    };
    match cli.command {
        Command::Explain(args) => return cmd::explain::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "bq-ingest",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man => return print_man_page(),
        _ => {}
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
            Command::Resume(args) => cmd::resume::run(args).await,
            Command::Status(args) => cmd::status::run(args).await,
            Command::Reconcile(args) => cmd::reconcile::run(args).await,
            Command::Explain(_) | Command::Completions { .. } | Command::Man => ExitCode::SUCCESS,
        }
    })
}

/// `bq-ingest man`: the page of the top-level command, with every subcommand's as a section.
fn print_man_page() -> ExitCode {
    let command = Cli::command();
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .and_then(|()| {
            for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
                page.extend_from_slice(b".SH \"COMMAND: ");
                page.extend_from_slice(sub.get_name().to_uppercase().as_bytes());
                page.extend_from_slice(b"\"\n");
                let sub = sub
                    .clone()
                    .bin_name(format!("bq-ingest {}", sub.get_name()));
                let man = clap_mangen::Man::new(sub);
                man.render_synopsis_section(&mut page)?;
                man.render_description_section(&mut page)?;
                man.render_options_section(&mut page)?;
            }
            Ok(())
        })
        .and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &page));
    match rendered {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bq-ingest man: {e}");
            ExitCode::FAILURE
        }
    }
}
