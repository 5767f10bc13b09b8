//! The whole path in process (issue 12, §1): `Ingestor::handle` over the memory ports.
//!
//! Each timed iteration handles a fresh bucket of 1,000 batches: a shuffled stream of 10,000
//! notifications, 90 % data files (each a no-op) and 10 % success markers at the default
//! regex's depths (`ds<d>/t<t>/<yyyy>/<mm>/<dd>/<hh>/_SUCCESS`, 10 datasets × 10 tables), with a
//! bucket-level `_config/load.json`. Each marker looks up its part-0 job (absent), lists the
//! `_config/` folders on its way (their one file read once, then from the cache), lists its
//! batch of 10 files, plans, derives the job id, submits to the memory warehouse (which finishes
//! the job at once, without reading the files: `MemoryWarehouse::new`) and writes its state
//! row. One thread, one core; the store and warehouse are set up outside the timing.
//!
//! Targets on one core: ≥ 100,000 markers/s on the whole path, ≥ 500,000 mixed events/s.
//!
//! Run: `cargo bench -p ingest-core --bench whole_path` (`-- markers` or `-- mixed` for one
//! group).

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use futures::executor::block_on;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};

const BUCKET: &str = "acme-datalake-landing";
/// Batches (markers) per timed iteration.
const BATCHES: usize = 1_000;
/// Data files per batch; 9 of them are notified, so that markers are 10 % of the stream.
const FILES_PER_BATCH: usize = 10;
const NOTIFIED_FILES: usize = 9;

/// Knuth's MMIX linear congruential generator (deterministic shuffles, no `rand`).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

/// The folder of batch `i`: 10 datasets × 10 tables, an hour each.
fn batch_dir(i: usize) -> String {
    let hour = i % 24;
    let day = 1 + (i / 24) % 28;
    let month = 1 + (i / (24 * 28)) % 12;
    let year = 2020 + i / (24 * 28 * 12);
    format!(
        "ds{}/t{}/{year}/{month:02}/{day:02}/{hour:02}",
        i % 10,
        (i / 10) % 10
    )
}

/// A fresh bucket with `BATCHES` batches, an ingestor over it, and the notifications: every
/// marker, and `NOTIFIED_FILES` data files per batch unless `markers_only`, shuffled (each
/// batch's marker after its files, as GCS would notify them).
fn fresh(markers_only: bool) -> (Ingestor, Vec<ObjectEvent>) {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(BUCKET);
    store.put_str(BUCKET, "_config/load.json", r#"{"fieldDelimiter": "|"}"#);
    // A warehouse that finishes every job at once without reading its sources (row counting is
    // the double's stand-in for BigQuery's work, not bq-ingest's).
    let warehouse = Arc::new(MemoryWarehouse::new().with_clock(clock.clone()));
    let settings = Settings {
        bq_project: Some("acme-analytics".into()),
        ..Settings::default()
    };
    let mut per_batch: Vec<Vec<ObjectEvent>> = Vec::with_capacity(BATCHES);
    for i in 0..BATCHES {
        let dir = batch_dir(i);
        let mut events = Vec::with_capacity(NOTIFIED_FILES + 1);
        for f in 0..FILES_PER_BATCH {
            let meta = store.insert(
                BUCKET,
                &format!("{dir}/part-{f:05}.csv"),
                b"1|ALGERIA|0|x\n2|ARGENTINA|1|y\n".to_vec(),
            );
            if !markers_only && f < NOTIFIED_FILES {
                events.push(ObjectEvent::finalized(BUCKET, &meta.name, meta.generation));
            }
        }
        let marker = store.insert(BUCKET, &format!("{dir}/_SUCCESS"), Vec::new());
        events.push(ObjectEvent::finalized(
            BUCKET,
            &marker.name,
            marker.generation,
        ));
        per_batch.push(events);
    }
    // Interleave the batches at random, each batch's events in order (marker last).
    let mut rng = Lcg(7);
    let mut stream = Vec::with_capacity(BATCHES * (NOTIFIED_FILES + 1));
    let mut open: Vec<std::vec::IntoIter<ObjectEvent>> =
        per_batch.into_iter().map(Vec::into_iter).collect();
    while !open.is_empty() {
        let k = rng.below(open.len());
        match open[k].next() {
            Some(event) => stream.push(event),
            None => {
                open.swap_remove(k);
            }
        }
    }
    let ingestor = Ingestor::new(settings, store, warehouse, Arc::new(clock));
    (ingestor, stream)
}

/// Handles every event; panics unless every marker ended `done` (so the bench measures the
/// path it claims to). Gives the ingestor and the events back, so that criterion drops them
/// (the whole bucket) outside the timing.
fn handle_all((ingestor, events): (Ingestor, Vec<ObjectEvent>)) -> (Ingestor, Vec<ObjectEvent>) {
    let mut done = 0;
    for event in &events {
        match block_on(ingestor.handle(event)) {
            Ok(Outcome::Done { .. }) => done += 1,
            Ok(Outcome::Ignored { .. }) => {}
            other => panic!("{}: {other:?}", event.uri()),
        }
    }
    assert_eq!(done, BATCHES, "every marker loaded");
    (ingestor, events)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("whole_path");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(BATCHES as u64));
    group.bench_function("markers", |b| {
        b.iter_batched(|| fresh(true), handle_all, BatchSize::PerIteration)
    });
    group.throughput(Throughput::Elements(
        (BATCHES * (NOTIFIED_FILES + 1)) as u64,
    ));
    group.bench_function("mixed", |b| {
        b.iter_batched(|| fresh(false), handle_all, BatchSize::PerIteration)
    });
    group.finish();
}

criterion_group!(benches, bench);

/// `WHOLE_PATH_ONCE=markers|mixed` handles one fresh bucket's stream once, without criterion:
/// run it under `valgrind --tool=callgrind --toggle-collect='*handle_all*'` for the
/// instructions of the path alone (`scripts/bench-whole-path-instructions.sh`).
fn main() {
    if let Ok(which) = std::env::var("WHOLE_PATH_ONCE") {
        let input = fresh(which == "markers");
        let events = input.1.len();
        let _ = handle_all(input);
        println!("{which}: handled {events} events, {BATCHES} markers");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
