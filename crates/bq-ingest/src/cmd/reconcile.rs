//! `bq-ingest reconcile`: the sweep for markers whose notification never arrived (or was
//! dropped): it finds markers with no final state row, reports them, and with `--apply` drives
//! each through the normal path — exactly once, like a duplicate delivery, by the
//! deterministic job ids. Batches parked by their table's daily load quota are among them (a
//! `parked` row is not final), and `--apply` also resumes the ordered tables the quota parked.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest_core::event::ObjectEvent;
use ingest_core::explain::split_path;
use ingest_core::ordering::{apply_resume, plan_resume};
use serde_json::json;

use super::backfill::{bucket_and_prefix, Apply, Mode};
use super::status::scan;
use super::Format;

/// Arguments of `reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// `gs://bucket[/prefix]`: the markers to sweep.
    uri: String,
    /// How far back to look (`90m`, `24h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// A marker younger than this is in flight, not missed.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Drive every marker found through the normal path (default: only report them).
    #[arg(long)]
    apply: bool,
    /// How `--apply` drives them: here, or by publishing the notification GCS would have sent
    /// (needed for ordered tables).
    #[arg(long, value_enum, default_value_t = Mode::Local)]
    mode: Mode,
    /// The notification topic, for `--mode notifications`.
    #[arg(long, env = "INGEST_TOPIC")]
    topic: Option<String>,
    /// Markers handled at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Reports (and with `--apply` handles) the markers without a final row; exit status 1 when
/// any is found and not applied, or any application failed.
pub async fn run(args: ReconcileArgs) -> ExitCode {
    let Some((bucket, prefix)) = bucket_and_prefix(&args.uri) else {
        eprintln!(
            "bq-ingest reconcile: {:?} is not gs://bucket[/prefix]",
            args.uri
        );
        return ExitCode::FAILURE;
    };
    let runtime = match super::runtime_for("reconcile").await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (found, parked) = match scan(&runtime, &bucket, &prefix, args.since, args.grace).await {
        Ok(f) => {
            let parked: Vec<String> = f
                .ordered
                .iter()
                .filter(|t| t.state == "parked")
                .map(|t| t.table.clone())
                .collect();
            (f.unrecorded, parked)
        }
        Err(e) => {
            eprintln!("bq-ingest reconcile: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        Format::Json => {
            for u in &found {
                println!("{}", json!(u));
            }
        }
        Format::Text => {
            println!(
                "{} marker(s) without a final row under {}",
                found.len(),
                args.uri
            );
            for u in &found {
                let job = match (&u.job, &u.job_state) {
                    (Some(j), Some(s)) => format!("job {j} {s}"),
                    _ => "no job".to_string(),
                };
                println!("  {} ({}): {job}", u.marker, u.generation);
            }
        }
    }
    if matches!(args.format, Format::Text) && !parked.is_empty() {
        println!(
            "{} ordered table(s) parked by their daily load quota",
            parked.len()
        );
        for table in &parked {
            println!("  {table}");
        }
    }
    let resumed = if args.apply {
        resume_parked(&runtime, &parked).await
    } else {
        true
    };
    if !args.apply {
        return if found.is_empty() && parked.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let markers: Vec<ObjectEvent> = found
        .iter()
        .filter_map(|u| {
            let (bucket, name) = split_path(&u.marker)?;
            let mut event = ObjectEvent::finalized(bucket, name, u.generation);
            event.event_time = u.written_at;
            Some(event)
        })
        .collect();
    let how = Apply {
        mode: args.mode,
        topic: args.topic.as_deref(),
        concurrency: args.concurrency,
    };
    let total = markers.len();
    let listed =
        futures::stream::StreamExt::boxed(futures::stream::iter(markers.into_iter().map(Ok)));
    // The markers are already listed: no error can come from the stream.
    let code = match how.run("reconcile", &runtime, listed, Some(total)).await {
        Ok(ran) => ran.code,
        Err((_, e)) => {
            eprintln!("bq-ingest reconcile: {e}");
            ExitCode::FAILURE
        }
    };
    if resumed {
        code
    } else {
        ExitCode::FAILURE
    }
}

/// Resumes each ordered table that its daily load quota parked (`resume` without `--skip`): its
/// batch gets its next attempt. `false` when any could not be resumed (each is printed).
async fn resume_parked(runtime: &ingest_service::Runtime, tables: &[String]) -> bool {
    let ports = runtime.ingestor.ports();
    let settings = runtime.ingestor.settings();
    let mut all = true;
    for table in tables {
        let Some((bucket, prefix)) = split_path(table) else {
            continue;
        };
        let resumed = match plan_resume(ports, settings, bucket, prefix, None).await {
            Ok(plan) => apply_resume(ports, settings, bucket, &plan).await,
            Err(e) => Err(e),
        };
        match resumed {
            Ok(()) => println!("resumed {table} (parked by its load quota)"),
            Err(e) => {
                all = false;
                eprintln!("bq-ingest reconcile: {e}");
            }
        }
    }
    all
}
