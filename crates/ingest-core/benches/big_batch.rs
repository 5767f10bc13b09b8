//! One batch of a million data files (issue 12, §2): `Ingestor::handle` of its success marker,
//! timed once, with the peak resident memory of the process.
//!
//! The store ([`GeneratedStore`]) generates the listing on the fly (`gs://acme/big/part-0000000.csv` …, 1,000 per
//! page, each file 1 MiB), so that the figure is bq-ingest's own memory and not the double's;
//! the warehouse ([`ForgetfulWarehouse`]) finishes each job at once, counts its URIs and keeps
//! nothing. The store counts its list calls.
//!
//! Run: `cargo bench -p ingest-core --bench big_batch` (`-- 25000` for another size). Prints
//! the time, the list calls (and how many were made when the first job went out), the jobs and
//! the peak RSS (`VmHWM`) before and after.
//! Targets: peak RSS under 150 MiB for 1,000,000 files; jobs and ids as `plan_load` gives them.

use std::sync::Arc;
use std::time::Instant;

use futures::executor::block_on;
use ingest_core::decorators::{FaultyWarehouse, WarehouseMethod};
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ports::ObjectMeta;
use ingest_core::settings::Settings;
use ingest_memory::{ForgetfulWarehouse, GeneratedStore, MemoryClock};

const BUCKET: &str = "acme";
const PREFIX: &str = "big/t/";
const MARKER: &str = "big/t/_SUCCESS";

/// Object `i` of the batch's listing: the marker first (`_` sorts before `p`), then the files.
fn object(i: usize) -> ObjectMeta {
    let (name, size) = match i {
        0 => (MARKER.to_string(), 0),
        i => (format!("{PREFIX}part-{:07}.csv", i - 1), 1 << 20),
    };
    ObjectMeta {
        name,
        size,
        generation: 1,
        updated: None,
    }
}

/// Peak resident set size of this process, in MiB (`VmHWM` of `/proc/self/status`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the size.
    let files = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse::<usize>().ok())
        .unwrap_or(1_000_000);
    // The batch folder holds the marker and the files; every other prefix (the `_config/`
    // folders) is empty.
    let store = Arc::new(GeneratedStore::new(
        move |prefix| if prefix == PREFIX { 0..files + 1 } else { 0..0 },
        object,
    ));
    let warehouse = Arc::new(ForgetfulWarehouse::default());
    // The list calls made when the first job went out (parts are submitted as they fill).
    let first_job_after = Arc::new(std::sync::OnceLock::new());
    let seen = (store.clone(), first_job_after.clone());
    let faulty = FaultyWarehouse::new(warehouse.clone());
    faulty.set_rule(Box::new(move |method, _| {
        if method == WarehouseMethod::Submit {
            seen.1.get_or_init(|| seen.0.list_calls());
        }
        None
    }));
    let settings = Settings {
        bq_project: Some("acme-analytics".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(
        settings,
        store.clone(),
        Arc::new(faulty),
        Arc::new(MemoryClock::new()),
    );
    let before = peak_rss_mib();
    let started = Instant::now();
    let outcome = block_on(ingestor.handle(&ObjectEvent::finalized(BUCKET, MARKER, 1)));
    let elapsed = started.elapsed();
    let after = peak_rss_mib();
    match outcome {
        Ok(Outcome::Done { .. }) => {}
        other => panic!("gs://{BUCKET}/{MARKER}: {other:?}"),
    }
    let (jobs, uris) = (warehouse.submits(), warehouse.source_uris());
    println!(
        "big_batch: {files} files -> {jobs} jobs ({uris} URIs), {} list calls (the first job \
         after {}), {:.2} s, peak RSS {before:.1} MiB before, {after:.1} MiB after",
        store.list_calls(),
        first_job_after.get().copied().unwrap_or_default(),
        elapsed.as_secs_f64(),
    );
    assert_eq!(uris, files as u64, "every file in exactly one job");
}
