//! `bq-ingest reconcile`: the sweep for markers whose notification never arrived (or was
//! dropped): it finds markers with no final state row, reports them, and with `--apply` drives
//! each through the normal path — exactly once, like a duplicate delivery, by the
//! deterministic job ids.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest_core::event::ObjectEvent;
use ingest_core::explain::split_path;
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
    let found = match scan(&runtime, &bucket, &prefix, args.since, args.grace).await {
        Ok(f) => f.unrecorded,
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
    if !args.apply {
        return if found.is_empty() {
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
    how.run("reconcile", &runtime, &markers).await
}
