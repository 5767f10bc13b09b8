//! `backfill` of 100,000 success markers (issue 12, §3): [`drive`] over the markers of a
//! generated bucket, `--dry-run` and `local`, with the peak resident memory of each run.
//!
//! The store ([`GeneratedStore`]) generates its listing on the fly (`ds/t/b0000000/_SUCCESS` and `…/part-0.csv` per
//! batch, 1,000 objects per page), and the warehouse ([`ForgetfulWarehouse`]) finishes each job
//! at once and keeps nothing, so that the figures are the backfill's own: listing the bucket
//! page by page, and for each marker what `bq-ingest backfill` does (four `_config/` and batch
//! listings, the plan, the part-0 lookup; and for `local` the job and its state row).
//! Eight markers in flight, one thread.
//!
//! Run: `cargo bench -p ingest-service --bench backfill` (`-- 10000` for another count).
//! Target: ≥ 5,000 markers/s for `--dry-run`, and memory independent of the marker count.

use std::sync::Arc;
use std::time::Instant;

use futures::executor::block_on;
use futures::StreamExt;
use ingest_core::ingest::Ingestor;
use ingest_core::ports::ObjectMeta;
use ingest_core::settings::Settings;
use ingest_memory::{ForgetfulWarehouse, GeneratedStore, MemoryClock};
use ingest_service::backfill::{drive, markers, Action, MarkerResult};

const BUCKET: &str = "acme";
const TABLE: &str = "ds/t/";
const CONCURRENCY: usize = 8;

fn batch_prefix(i: usize) -> String {
    format!("{TABLE}b{i:07}/")
}

/// Object `k` of the bucket's listing: batch `k / 2`'s marker (`_` sorts before `p`), then its
/// data file.
fn object(k: usize) -> ObjectMeta {
    let prefix = batch_prefix(k / 2);
    let (name, size) = match k % 2 {
        0 => (format!("{prefix}_SUCCESS"), 0),
        _ => (format!("{prefix}part-0.csv"), 1_024),
    };
    ObjectMeta {
        name,
        size,
        generation: 1,
        updated: None,
    }
}

/// The objects under `prefix` in a bucket of `batches` batches: everything for a prefix of
/// `ds/t/`, one batch's two for its folder, nothing else (the `_config/` folders are empty).
fn range(batches: usize, prefix: &str) -> std::ops::Range<usize> {
    if TABLE.starts_with(prefix) {
        return 0..2 * batches;
    }
    let batch = prefix
        .strip_prefix(TABLE)
        .and_then(|p| p.strip_prefix('b'))
        .and_then(|p| p.strip_suffix('/'))
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|&i| i < batches && batch_prefix(i) == prefix);
    match batch {
        Some(i) => 2 * i..2 * i + 2,
        None => 0..0,
    }
}

/// Peak resident set size of this process since the last [`reset_peak_rss`], in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Resets `VmHWM` to the current RSS (Linux's `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// How the markers reach [`drive`]: listed as they are needed, or all listed first (what
/// `backfill` did before it streamed, for comparison).
#[derive(Clone, Copy, PartialEq)]
enum Listing {
    Streamed,
    CollectedFirst,
}

fn run(action: &Action<'_>, name: &str, batches: usize, how: Listing) {
    let store = Arc::new(GeneratedStore::new(
        move |prefix| range(batches, prefix),
        object,
    ));
    let warehouse = Arc::new(ForgetfulWarehouse::default());
    let settings = Settings {
        bq_project: Some("acme-analytics".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(
        settings.clone(),
        store.clone(),
        warehouse.clone(),
        Arc::new(MemoryClock::new()),
    );
    reset_peak_rss();
    let before = peak_rss_mib();
    let started = Instant::now();
    let mut ok = 0;
    let listed = match how {
        Listing::Streamed => markers(store.as_ref(), &settings, BUCKET, "ds/").boxed(),
        Listing::CollectedFirst => {
            let all = block_on(ingest_core::operate::list_markers(
                store.as_ref(),
                &settings,
                BUCKET,
                "ds/",
            ))
            .expect("the listing");
            futures::stream::iter(all.into_iter().map(Ok)).boxed()
        }
    };
    let summary = block_on(drive(
        &ingestor,
        action,
        listed,
        CONCURRENCY,
        |event, result| match result {
            MarkerResult::Planned(plan) if plan.error.is_none() => ok += 1,
            MarkerResult::Ingested => ok += 1,
            other => panic!("{}: {other:?}", event.uri()),
        },
    ))
    .expect("the listing");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!((summary.markers, ok), (batches, batches));
    println!(
        "backfill {name}: {batches} markers in {elapsed:.2} s = {:.0} markers/s, {} list \
         calls, {} jobs, peak RSS {:.1} MiB (from {before:.1} MiB)",
        batches as f64 / elapsed,
        store.list_calls(),
        warehouse.submits(),
        peak_rss_mib(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the count.
    let batches = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse::<usize>().ok())
        .unwrap_or(100_000);
    run(&Action::DryRun, "--dry-run", batches, Listing::Streamed);
    run(&Action::Local, "local", batches, Listing::Streamed);
    run(
        &Action::DryRun,
        "--dry-run, all markers listed first",
        batches,
        Listing::CollectedFirst,
    );
}
