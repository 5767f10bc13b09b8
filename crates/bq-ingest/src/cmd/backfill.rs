//! `bq-ingest backfill`: ingest the success markers that landed before notifications were set
//! up — in this process, or by publishing the notifications GCS would have sent.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use futures::stream::{BoxStream, StreamExt};
use ingest_core::destination::DestinationRegex;
use ingest_core::event::ObjectEvent;
use ingest_core::explain::split_path;
use ingest_core::ingest::{DryRun, Ingestor};
use ingest_core::ports::{JobKind, StoreError};
use ingest_core::settings::Settings;
use ingest_pubsub::Publisher;
use ingest_service::backfill::{drive, markers, Action, MarkerResult};
use ingest_service::Runtime;
use serde_json::{json, Value};

use super::Format;

/// How to backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Run the ingest of each batch in this process (not for ordered tables).
    Local,
    /// Publish, for each marker, the notification GCS would have sent.
    Notifications,
}

/// Arguments of `backfill`. The flags of the Python function's `backfill.py` are accepted too:
/// `--gcs-path`/`-p`, `--mode`/`-m` in any case, `--pubsub_topic`/`-t`, `--success-filename`/`-f`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// `gs://bucket/prefix`: every success marker under it (never those under `_backlog/`).
    #[arg(required_unless_present = "gcs_path")]
    uri: Option<String>,
    /// The same as URI, as `backfill.py` names it.
    #[arg(
        long = "gcs-path",
        short = 'p',
        conflicts_with = "uri",
        value_name = "URI"
    )]
    gcs_path: Option<String>,
    /// Where the batches are applied (`backfill.py`'s LOCAL and NOTIFICATIONS are accepted;
    /// its default was NOTIFICATIONS, this one is local).
    #[arg(long, short = 'm', value_enum, ignore_case = true, default_value_t = Mode::Local)]
    mode: Mode,
    /// The notification topic, for `--mode notifications` (an id or `projects/P/topics/T`).
    #[arg(
        long,
        short = 't',
        env = "INGEST_TOPIC",
        visible_alias = "pubsub_topic",
        alias = "pubsub-topic"
    )]
    topic: Option<String>,
    /// The success marker's name for this run (default: `SUCCESS_FILENAME`, else `_SUCCESS`).
    #[arg(long, short = 'f')]
    success_filename: Option<String>,
    /// The destination regex for this run (default: `DESTINATION_REGEX`, else the built-in one).
    #[arg(long)]
    destination_regex: Option<String>,
    /// Batches handled (or, with `--dry-run`, planned) at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print the plan of each batch (destination, job ids, files, bytes) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output format of `--dry-run`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl BackfillArgs {
    /// The settings of the environment with this run's overrides.
    fn settings(&self) -> Result<Settings, String> {
        let mut settings = Settings::from_env().map_err(|e| e.to_string())?;
        if let Some(name) = &self.success_filename {
            settings.success_filename = name.clone();
        }
        if let Some(pattern) = &self.destination_regex {
            settings.destination_regex = DestinationRegex::new(pattern, false)
                .map_err(|e| format!("--destination-regex: {e}"))?;
        }
        Ok(settings)
    }
}

/// Runs the backfill; exit status 1 if any batch failed.
pub async fn run(args: BackfillArgs) -> ExitCode {
    let uri = args
        .uri
        .as_deref()
        .or(args.gcs_path.as_deref())
        .unwrap_or_default();
    let Some((bucket, prefix)) = bucket_and_prefix(uri) else {
        eprintln!("bq-ingest backfill: {uri:?} is not gs://bucket[/prefix]");
        return ExitCode::FAILURE;
    };
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bq-ingest backfill: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match Runtime::build(settings).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bq-ingest backfill: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = runtime.ingestor.settings();
    let listed = markers(runtime.store.as_ref(), settings, &bucket, &prefix).boxed();
    let code = if args.dry_run {
        print_plans(&runtime.ingestor, listed, args.format, args.concurrency).await
    } else {
        let how = Apply {
            mode: args.mode,
            topic: args.topic.as_deref(),
            concurrency: args.concurrency,
        };
        how.run("backfill", &runtime, listed, None).await
    };
    match code {
        Ok(ran) => {
            eprintln!(
                "{} success marker(s) under gs://{bucket}/{prefix}",
                ran.markers
            );
            ran.code
        }
        Err((markers, e)) => {
            eprintln!(
                "bq-ingest backfill: listing gs://{bucket}/{prefix} failed after {markers} \
                 marker(s): {e}"
            );
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a run, and how many markers it went through.
pub(super) struct Ran {
    pub(super) code: ExitCode,
    pub(super) markers: usize,
}

/// How markers are driven through the normal path: `backfill` and `reconcile --apply`.
pub(super) struct Apply<'a> {
    pub(super) mode: Mode,
    pub(super) topic: Option<&'a str>,
    pub(super) concurrency: usize,
}

impl Apply<'_> {
    /// Ingests or publishes every marker, then prints the report; exit status 1 if any failed.
    /// `total` is the number of markers when known (for the progress bar).
    pub(super) async fn run(
        &self,
        command: &str,
        runtime: &Runtime,
        markers: BoxStream<'_, Result<ObjectEvent, StoreError>>,
        total: Option<usize>,
    ) -> Result<Ran, (usize, StoreError)> {
        let publisher = match publisher(self.mode, self.topic, runtime).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("bq-ingest {command}: {e}");
                return Ok(Ran {
                    code: ExitCode::FAILURE,
                    markers: 0,
                });
            }
        };
        let action = match &publisher {
            Some(p) => Action::Publish(p),
            None => Action::Local,
        };
        let bar = progress_bar(total);
        let mut report = Report::default();
        let driven = drive(
            &runtime.ingestor,
            &action,
            markers,
            self.concurrency,
            |event, result| {
                report.add(event, result);
                if let Some(b) = &bar {
                    b.inc(1);
                }
            },
        )
        .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let verb = if publisher.is_some() {
            "published"
        } else {
            "ingested"
        };
        let markers = report.markers();
        let code = report.print(verb);
        match driven {
            Ok(_) => Ok(Ran { code, markers }),
            Err(e) => Err((markers, e)),
        }
    }
}

/// A bar over `total` markers, or a counter when the total is not known; only on a terminal.
fn progress_bar(total: Option<usize>) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| match total {
        Some(total) => {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }
        None => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} marker(s) {elapsed} ({per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        }
    })
}

/// `gs://bucket/prefix` or `gs://bucket`.
pub(super) fn bucket_and_prefix(uri: &str) -> Option<(String, String)> {
    split_path(uri)
        .map(|(b, p)| (b.to_string(), p.to_string()))
        .or_else(|| {
            let b = uri.strip_prefix("gs://")?.trim_end_matches('/');
            (!b.is_empty() && !b.contains('/')).then(|| (b.to_string(), String::new()))
        })
}

/// `--dry-run`: the plan of every batch, printed in listing order (`concurrency` planned at
/// once); failure when any has an error.
async fn print_plans(
    ingestor: &Ingestor,
    markers: BoxStream<'_, Result<ObjectEvent, StoreError>>,
    format: Format,
    concurrency: usize,
) -> Result<Ran, (usize, StoreError)> {
    let (mut failed, mut planned) = (false, 0);
    let driven = drive(
        ingestor,
        &Action::DryRun,
        markers,
        concurrency,
        |event, result| {
            planned += 1;
            match result {
                MarkerResult::Planned(d) => {
                    failed |= d.error.is_some();
                    match format {
                        Format::Text => print_plan(&d),
                        Format::Json => println!("{}", plan_json(&d)),
                    }
                }
                MarkerResult::Failed(e) => {
                    failed = true;
                    match format {
                        Format::Text => println!("{}\n  error: {e}", event.uri()),
                        Format::Json => {
                            println!("{}", json!({"marker": event.uri(), "error": e}))
                        }
                    }
                }
                other => println!("{}: {other:?}", event.uri()),
            }
        },
    )
    .await;
    let code = if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    match driven {
        Ok(summary) => Ok(Ran {
            code,
            markers: summary.markers,
        }),
        Err(e) => Err((planned, e)),
    }
}

/// The publisher of `--mode notifications`, `None` for `--mode local`.
async fn publisher(
    mode: Mode,
    topic: Option<&str>,
    runtime: &Runtime,
) -> Result<Option<Publisher>, String> {
    if mode != Mode::Notifications {
        return Ok(None);
    }
    let topic = topic.ok_or("--mode notifications needs --topic (or INGEST_TOPIC)")?;
    let client = runtime.pubsub().await.map_err(|e| e.to_string())?;
    Ok(Some(Publisher::new(&client, topic)))
}

/// The counts of a run, and every skipped or failed batch.
#[derive(Debug, Default)]
struct Report {
    ok: usize,
    skipped: Vec<(String, String)>,
    failed: Vec<(String, String)>,
}

impl Report {
    fn add(&mut self, event: &ObjectEvent, result: MarkerResult) {
        match result {
            MarkerResult::Skipped(why) => self.skipped.push((event.uri(), why)),
            MarkerResult::Failed(why) => self.failed.push((event.uri(), why)),
            _ => self.ok += 1,
        }
    }

    fn markers(&self) -> usize {
        self.ok + self.skipped.len() + self.failed.len()
    }

    /// Prints the counts and every skipped or failed batch; failure when any failed.
    fn print(&self, verb: &str) -> ExitCode {
        println!(
            "{verb}: {}, skipped: {}, failed: {}",
            self.ok,
            self.skipped.len(),
            self.failed.len()
        );
        for (m, why) in &self.skipped {
            println!("  skipped {m}: {why}");
        }
        for (m, why) in &self.failed {
            println!("  failed  {m}: {why}");
        }
        if self.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// A batch's plan as one JSON object: what `--dry-run --format json` prints per marker and
/// `explain --live --format json` puts under `live`.
pub(super) fn plan_json(d: &DryRun) -> Value {
    let jobs: Vec<Value> = d
        .plan
        .iter()
        .flat_map(|p| &p.jobs)
        .map(|job| match &job.kind {
            JobKind::Load {
                destination,
                source_uris,
                config,
            } => json!({
                "job_id": job.job_id, "kind": "load", "destination": destination.to_string(),
                "source_uris": source_uris, "config": config,
            }),
            JobKind::Query {
                sql,
                table_definitions,
                ..
            } => json!({
                "job_id": job.job_id, "kind": "query", "sql": sql,
                "table_definitions": table_definitions,
            }),
        })
        .collect();
    json!({
        "marker": d.marker,
        "destination": d.batch.as_ref().map(|b| b.destination.to_string()),
        "batch_id": d.batch.as_ref().and_then(|b| b.batch_id.clone()),
        "ordered": d.ordered,
        "mode": d.plan.as_ref().map(|p| p.mode.as_str()),
        "files": d.plan.as_ref().map(|p| p.files),
        "bytes": d.plan.as_ref().map(|p| p.bytes),
        "jobs": jobs,
        "after_success": d.after_success,
        "quarantine": d.quarantine,
        "error": d.error,
    })
}

/// A batch's plan as text: destination, batch, mode, files, bytes, each job.
pub(super) fn print_plan(d: &DryRun) {
    println!("{}", d.marker);
    // Writing to stdout fails only when it is closed; the report is then lost either way.
    let _ = write_plan(&mut std::io::stdout(), d, "  ", false);
}

/// The lines of a batch's plan under its marker, each after `indent`; with `config`, each load
/// job's merged configuration too (`explain --live`).
pub(super) fn write_plan(
    out: &mut impl std::io::Write,
    d: &DryRun,
    indent: &str,
    config: bool,
) -> std::io::Result<()> {
    if let Some(b) = &d.batch {
        writeln!(out, "{indent}destination: {}", b.destination)?;
        if let Some(id) = &b.batch_id {
            writeln!(out, "{indent}batch:       {id}")?;
        }
    }
    if d.ordered {
        writeln!(
            out,
            "{indent}ordered:     yes (applied through the table's backlog)"
        )?;
    }
    if let Some(plan) = &d.plan {
        writeln!(
            out,
            "{indent}mode:        {} ({} file(s), {} bytes, {} job(s))",
            plan.mode.as_str(),
            plan.files,
            plan.bytes,
            plan.jobs.len()
        )?;
        for job in &plan.jobs {
            let (uris, into) = match &job.kind {
                JobKind::Load {
                    source_uris,
                    destination,
                    ..
                } => (
                    source_uris.len(),
                    destination.partition.as_ref().map(|_| destination),
                ),
                JobKind::Query { .. } => (1, None),
            };
            // A job into a partition of its own (fileTimestampRegex) says which.
            let into = match (into, &d.batch) {
                (Some(t), Some(b)) if *t != b.destination => format!(" into {t}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{indent}job:         {} ({uris} source URI(s)){into}",
                job.job_id
            )?;
            if let (true, JobKind::Load { config: load, .. }) = (config, &job.kind) {
                writeln!(out, "{indent}  config:    {}", Value::Object(load.clone()))?;
            }
        }
    }
    if let (Some(after), None) = (&d.after_success, &d.error) {
        writeln!(out, "{indent}after:       {after}")?;
    }
    if let (Some(quarantine), None) = (&d.quarantine, &d.error) {
        writeln!(out, "{indent}quarantine:  {quarantine}")?;
    }
    if let Some(e) = &d.error {
        writeln!(out, "{indent}error:       {e}")?;
    }
    Ok(())
}
