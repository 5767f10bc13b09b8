//! `bq-ingest status`: one screen on what loaded, what failed, what is stuck and what was
//! missed, from the state table and the bucket.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest_core::operate::{
    last_success_per_table, list_markers, ordered_tables, state_table, still_failed, unrecorded,
    OrderedTable, Unrecorded,
};
use ingest_core::ports::LoadRecord;
use ingest_service::Runtime;
use serde_json::json;

use super::backfill::bucket_and_prefix;
use super::Format;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// `gs://bucket[/prefix]`: the markers and ordered tables to look at.
    uri: String,
    /// How far back to look: rows that ended, and markers written, in this window (`90m`,
    /// `24h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// A marker younger than this without a final row is in flight, not missed.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// What `status` found.
pub(super) struct Findings {
    pub(super) failed: Vec<LoadRecord>,
    pub(super) ordered: Vec<OrderedTable>,
    pub(super) unrecorded: Vec<Unrecorded>,
    pub(super) last_success: Vec<LoadRecord>,
}

impl Findings {
    /// Whether a person must act: a failed batch, a stopped or waiting ordered table, or a
    /// marker with no row and no job.
    fn needs_a_person(&self) -> bool {
        !self.failed.is_empty()
            || self.ordered.iter().any(OrderedTable::needs_a_person)
            || self.unrecorded.iter().any(|u| u.job.is_none())
    }
}

/// Prints the status; exit status 1 when something needs a person (or the scan failed).
pub async fn run(args: StatusArgs) -> ExitCode {
    let Some((bucket, prefix)) = bucket_and_prefix(&args.uri) else {
        eprintln!(
            "bq-ingest status: {:?} is not gs://bucket[/prefix]",
            args.uri
        );
        return ExitCode::FAILURE;
    };
    let runtime = match super::runtime_for("status").await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let findings = match scan(&runtime, &bucket, &prefix, args.since, args.grace).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bq-ingest status: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        Format::Json => println!("{}", to_json(&findings)),
        Format::Text => print_text(&args.uri, args.since, &findings),
    }
    if findings.needs_a_person() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads the state table since `since` ago and the bucket under the prefix.
pub(super) async fn scan(
    runtime: &Runtime,
    bucket: &str,
    prefix: &str,
    since: Duration,
    grace: Duration,
) -> Result<Findings, String> {
    let ingestor = &runtime.ingestor;
    let settings = ingestor.settings();
    let now = ingestor.clock().now();
    let from = now - chrono::Duration::from_std(since).map_err(|e| format!("--since: {e}"))?;
    let rows = match state_table(settings) {
        Some(table) => {
            let read = ingestor.warehouse().recorded_outcomes(&table, from).await;
            let mut rows = read.map_err(|e| format!("reading the state table {table}: {e}"))?;
            let under = format!("gs://{bucket}/{prefix}");
            rows.retain(|r| r.marker_uri.starts_with(&under));
            rows
        }
        None => Vec::new(),
    };
    let store = ingestor.store().as_ref();
    let listing = format!("listing gs://{bucket}/{prefix}");
    let mut markers = list_markers(store, settings, bucket, prefix)
        .await
        .map_err(|e| format!("{listing}: {e}"))?;
    markers.retain(|m| m.event_time.is_none_or(|t| t >= from));
    let unrecorded = unrecorded(ingestor, &markers, &rows, now, grace)
        .await
        .map_err(|e| format!("looking up jobs: {e}"))?;
    let ordered = ordered_tables(store, settings, bucket, prefix, now)
        .await
        .map_err(|e| format!("{listing}: {e}"))?;
    Ok(Findings {
        failed: still_failed(&rows).into_iter().cloned().collect(),
        last_success: last_success_per_table(&rows).into_iter().cloned().collect(),
        ordered,
        unrecorded,
    })
}

fn to_json(f: &Findings) -> serde_json::Value {
    let row = |r: &LoadRecord| {
        json!({
            "marker": r.marker_uri, "generation": r.marker_generation, "destination": r.destination,
            "state": r.state, "error": r.error, "job_ids": r.job_ids, "rows": r.rows,
            "ended_at": r.ended_at.to_rfc3339(),
        })
    };
    json!({
        "needs_a_person": f.needs_a_person(),
        "failed": f.failed.iter().map(row).collect::<Vec<_>>(),
        "ordered_tables": f.ordered,
        "unrecorded": f.unrecorded,
        "last_success": f.last_success.iter().map(row).collect::<Vec<_>>(),
    })
}

fn print_text(uri: &str, since: Duration, f: &Findings) {
    println!(
        "{uri}, last {}: {}",
        humantime::format_duration(since),
        if f.needs_a_person() {
            "NEEDS A PERSON"
        } else {
            "ok"
        }
    );
    println!("failed batches: {}", f.failed.len());
    for r in &f.failed {
        let error = r.error.as_deref().unwrap_or("");
        println!(
            "  {} ({}) {}: {error}",
            r.marker_uri,
            r.marker_generation,
            r.ended_at.to_rfc3339()
        );
    }
    println!("ordered tables: {}", f.ordered.len());
    for t in &f.ordered {
        let lock = t.lock.as_ref().map_or(String::new(), |l| {
            let age = l
                .age_seconds
                .map_or(String::new(), |s| format!(", {s} s old"));
            let what = l.item.as_deref().or(l.text.as_deref()).unwrap_or("");
            format!("; lock ({}{age}) at {what}", l.kind)
        });
        let gate = match t.start_gate_open {
            Some(false) => "; start gate closed",
            _ => "",
        };
        println!(
            "  {} {}: backlog {}{lock}{gate}",
            t.state, t.table, t.backlog
        );
        if let Some(error) = t.lock.as_ref().and_then(|l| l.error.as_deref()) {
            println!("    error: {error}");
            println!("    resume: bq-ingest resume {} [--skip BATCH]", t.table);
        }
    }
    println!("markers without a final row: {}", f.unrecorded.len());
    for u in &f.unrecorded {
        match (&u.job, &u.job_state) {
            (Some(job), Some(state)) => {
                println!("  {} ({}): job {job} {state}", u.marker, u.generation)
            }
            _ => println!(
                "  {} ({}): no job (missed notification; bq-ingest reconcile)",
                u.marker, u.generation
            ),
        }
    }
    println!("last success per table: {}", f.last_success.len());
    for r in &f.last_success {
        let table = r.destination.split('$').next().unwrap_or_default();
        println!(
            "  {table} {} ({} rows)",
            r.ended_at.to_rfc3339(),
            r.rows.unwrap_or_default()
        );
    }
}
