//! One batch of a million data files (issue 12, §2): `Ingestor::handle` of its success marker,
//! timed once, with the peak resident memory of the process.
//!
//! The store generates the listing on the fly (`gs://acme/big/part-0000000.csv` …, 1,000 per
//! page, each file 1 MiB), so that the figure is bq-ingest's own memory and not the double's;
//! the warehouse keeps each job's status and counts its URIs, and drops the request. Both
//! count their calls.
//!
//! Run: `cargo bench -p ingest-core --bench big_batch` (`-- 25000` for another size). Prints
//! the time, the list calls, the jobs and the peak RSS (`VmHWM`) before and after.
//! Targets: peak RSS under 150 MiB for 1,000,000 files; jobs and ids as `plan_load` gives them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::executor::block_on;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ports::{
    JobKind, JobRef, JobRequest, JobState, JobStatus, ListPage, LoadRecord, ObjectMeta,
    ObjectStore, PutMode, StoreError, TableRef, TimePartitioning, Warehouse, WarehouseError,
};
use ingest_core::settings::Settings;
use ingest_memory::MemoryClock;

const BUCKET: &str = "acme";
const PREFIX: &str = "big/t/";
const MARKER: &str = "big/t/_SUCCESS";
const PAGE: usize = 1_000;

/// A bucket whose only batch is `big/t/` with `files` data files, listed on the fly.
#[derive(Debug)]
struct GeneratedBatch {
    files: usize,
    lists: AtomicUsize,
}

impl GeneratedBatch {
    /// Object `i` of the listing: the marker first (`_` sorts before `p`), then the files.
    fn object(&self, i: usize) -> ObjectMeta {
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
}

#[async_trait]
impl ObjectStore for GeneratedBatch {
    async fn list(
        &self,
        _bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        if prefix != PREFIX {
            return Ok(ListPage::default());
        }
        let start: usize = page_token.map_or(0, |t| t.parse().expect("a token we gave"));
        let end = (start + max_results.unwrap_or(PAGE).min(PAGE)).min(self.files + 1);
        Ok(ListPage {
            objects: (start..end).map(|i| self.object(i)).collect(),
            next_page_token: (end <= self.files).then(|| end.to_string()),
        })
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        Err(StoreError::NotFound {
            bucket: bucket.into(),
            name: name.into(),
        })
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        match name {
            MARKER => Ok(self.object(0)),
            _ => self.read(bucket, name).await.map(|(m, _)| m),
        }
    }

    async fn put(
        &self,
        bucket: &str,
        name: &str,
        _: Vec<u8>,
        _: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        Err(StoreError::Other {
            bucket: bucket.into(),
            name: name.into(),
            message: "read-only".into(),
        })
    }

    async fn delete(&self, bucket: &str, name: &str, _: Option<i64>) -> Result<(), StoreError> {
        self.put(bucket, name, Vec::new(), PutMode::Overwrite)
            .await
            .map(|_| ())
    }
}

/// Finishes every job at once; keeps statuses, not requests.
#[derive(Debug, Default)]
struct LeanWarehouse {
    jobs: Mutex<HashMap<String, JobStatus>>,
    uris: AtomicU64,
    rows: AtomicUsize,
}

#[async_trait]
impl Warehouse for LeanWarehouse {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        if let JobKind::Load { source_uris, .. } = &request.kind {
            self.uris
                .fetch_add(source_uris.len() as u64, Ordering::Relaxed);
        }
        let job = JobRef {
            project: request.project.clone(),
            job_id: request.job_id.clone(),
            location: request.location.clone(),
        };
        let mut status = JobStatus::new(job, JobState::Done);
        status.labels = request.labels.clone();
        let mut jobs = self.jobs.lock().unwrap();
        if jobs.contains_key(&request.job_id) {
            return Err(WarehouseError::AlreadyExists {
                job_id: request.job_id.clone(),
            });
        }
        jobs.insert(request.job_id.clone(), status.clone());
        Ok(status)
    }

    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        Ok(self.jobs.lock().unwrap().get(&job.job_id).cloned())
    }

    async fn child_jobs(&self, _: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        Ok(Vec::new())
    }

    async fn record_outcome(&self, _: &TableRef, _: &LoadRecord) -> Result<(), WarehouseError> {
        self.rows.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn recorded_outcomes(
        &self,
        _: &TableRef,
        _: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        Ok(Vec::new())
    }

    async fn time_partitioning(
        &self,
        _: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        Ok(None)
    }

    async fn create_table(
        &self,
        _: &TableRef,
        _: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        Ok(true)
    }

    async fn table_schema(
        &self,
        _: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        Ok(None)
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
    let store = Arc::new(GeneratedBatch {
        files,
        lists: AtomicUsize::new(0),
    });
    let warehouse = Arc::new(LeanWarehouse::default());
    let settings = Settings {
        bq_project: Some("acme-analytics".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(
        settings,
        store.clone(),
        warehouse.clone(),
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
    let jobs = warehouse.jobs.lock().unwrap().len();
    let uris = warehouse.uris.load(Ordering::Relaxed);
    println!(
        "big_batch: {files} files -> {jobs} jobs ({uris} URIs), {} list calls, {:.2} s, \
         peak RSS {before:.1} MiB before, {after:.1} MiB after",
        store.lists.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
    );
    assert_eq!(uris, files as u64, "every file in exactly one job");
}
