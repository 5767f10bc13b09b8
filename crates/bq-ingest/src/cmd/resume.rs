//! `bq-ingest resume`: restart a stopped ordered table, safely.

use std::process::ExitCode;

use clap::Args;
use ingest_core::explain::split_path;
use ingest_core::ordering::{apply_resume, plan_resume, ResumePlan, ResumeStep};

use super::Format;

/// Arguments of `resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The ordered table: `gs://bucket/dataset/table` (its prefix, where `_bqlock` is).
    table: String,
    /// Skip the batch the table stopped at instead of retrying it: its directory under the
    /// table (`2024/01/02/batch-7`), its marker or its backlog item.
    #[arg(long, value_name = "BATCH")]
    skip: Option<String>,
    /// Print the steps and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Plans the resume, prints it, and (unless `--dry-run`) does it; exit status 1 when refused
/// or failed.
pub async fn run(args: ResumeArgs) -> ExitCode {
    let Some((bucket, prefix)) = split_path(&args.table) else {
        eprintln!(
            "bq-ingest resume: {:?} is not gs://bucket/table-prefix",
            args.table
        );
        return ExitCode::FAILURE;
    };
    let runtime = match super::runtime_for("resume").await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ports = runtime.ingestor.ports();
    let settings = runtime.ingestor.settings();
    let plan = match plan_resume(ports, settings, bucket, prefix, args.skip.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bq-ingest resume: {e}");
            return ExitCode::FAILURE;
        }
    };
    let applied = if args.dry_run {
        Ok(false)
    } else {
        apply_resume(ports, settings, bucket, &plan)
            .await
            .map(|()| true)
    };
    match args.format {
        Format::Json => {
            let done = matches!(applied, Ok(true));
            let line = serde_json::json!({"plan": plan, "applied": done, "error": applied.as_ref().err().map(ToString::to_string)});
            println!("{line}");
        }
        Format::Text => print_text(bucket, &plan, &applied),
    }
    match applied {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bq-ingest resume: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_text<E>(bucket: &str, plan: &ResumePlan, applied: &Result<bool, E>) {
    match (&plan.stopped_at, &plan.error) {
        (Some(item), Some(error)) => println!("{}: stopped at {item}: {error}", plan.table),
        (Some(item), None) => println!("{}: locked at {item}", plan.table),
        _ => println!("{}: no lock", plan.table),
    }
    let prefix = plan.table.as_str();
    for step in &plan.steps {
        match step {
            ResumeStep::SkipItem {
                item, generation, ..
            } => {
                println!("  skip   gs://{bucket}/{item} (generation {generation}): the batch is not applied")
            }
            ResumeStep::RemoveLock { generation, .. } => {
                println!("  remove {prefix}/_bqlock (generation {generation})")
            }
            ResumeStep::DropBackfill => {
                println!(
                    "  drop   {prefix}/_BACKFILL: its notification starts the table's subscriber"
                )
            }
        }
    }
    match applied {
        Ok(true) => println!("done"),
        Ok(false) => println!("dry run: nothing changed"),
        Err(_) => {
            println!("stopped: the table changed meanwhile or the store failed (see the error)")
        }
    }
}
