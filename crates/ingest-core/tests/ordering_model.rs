//! Deterministic interleavings of the ordered-ingest protocol, with crashes.
//!
//! Every store and warehouse operation is a yield point: the harness polls the handlers of
//! in-flight events by hand (no runtime) and, from a seeded generator, picks which handler takes
//! its next step, when a new notification starts, and when a handler "crashes" (its future is
//! dropped between two operations; its notification is delivered again, as Pub/Sub does for an
//! unacknowledged message). Writes of `_BACKFILL` produce notifications like GCS would.
//!
//! After each run: every batch applied exactly once, in lexicographic order; no backlog item,
//! no `_BACKFILL` and no lock left behind.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{IngestError, Ingestor, Outcome};
use ingest_core::ports::{
    JobRef, JobRequest, JobStatus, ListPage, LoadRecord, ObjectMeta, ObjectStore, PutMode,
    StoreError, TableRef, Warehouse, WarehouseError,
};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};

const BUCKET: &str = "b";

/// A future that is pending exactly once: one scheduling point.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

fn step() -> YieldOnce {
    YieldOnce(false)
}

/// The memory store with a yield point before every operation, and GCS-like notifications for
/// `_BACKFILL` writes.
#[derive(Debug)]
struct SteppedStore {
    inner: Arc<MemoryStore>,
    notifications: Arc<Mutex<VecDeque<ObjectEvent>>>,
    log: History,
}

/// What happened, in order, to which batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Happened {
    /// Its backlog item was written.
    Queued,
    /// The subscriber committed to it (created the lock naming it).
    Locked,
    /// Its load job was accepted.
    Loaded,
}

type History = Arc<Mutex<Vec<(Happened, usize)>>>;

fn batch_index(text: &str) -> Option<usize> {
    let at = text.find("batch_")? + "batch_".len();
    text.get(at..at + 3)?.parse().ok()
}

#[async_trait]
impl ObjectStore for SteppedStore {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        step().await;
        self.inner
            .list(bucket, prefix, page_token, max_results)
            .await
    }
    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        step().await;
        self.inner.read(bucket, name).await
    }
    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        step().await;
        self.inner.stat(bucket, name).await
    }
    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        step().await;
        let lock_content = content.clone();
        let result = self.inner.put(bucket, name, content, mode).await;
        if let Ok(meta) = &result {
            if name.contains("/_backlog/") {
                if let Some(i) = batch_index(name) {
                    self.log.lock().unwrap().push((Happened::Queued, i));
                }
            }
            if name.ends_with("/_bqlock") && mode == PutMode::Create {
                if let Some(i) = batch_index(&String::from_utf8_lossy(&lock_content)) {
                    self.log.lock().unwrap().push((Happened::Locked, i));
                }
            }
            if name.ends_with("/_BACKFILL") {
                self.notifications
                    .lock()
                    .unwrap()
                    .push_back(ObjectEvent::finalized(bucket, name, meta.generation));
            }
        }
        result
    }
    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        step().await;
        self.inner.delete(bucket, name, if_generation).await
    }
}

/// The memory warehouse with a yield point before every operation.
#[derive(Debug)]
struct SteppedWarehouse(Arc<MemoryWarehouse>, History);

#[async_trait]
impl Warehouse for SteppedWarehouse {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        step().await;
        let result = self.0.submit(request).await;
        if result.is_ok() {
            if let ingest_core::ports::JobKind::Load { source_uris, .. } = &request.kind {
                if let Some(i) = batch_index(&source_uris.join(",")) {
                    self.1.lock().unwrap().push((Happened::Loaded, i));
                }
            }
        }
        result
    }
    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        step().await;
        self.0.job_status(job).await
    }
    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        step().await;
        self.0.child_jobs(parent).await
    }
    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        self.0.record_outcome(table, record).await
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        self.0.recorded_outcomes(table, since).await
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<ingest_core::ports::TimePartitioning>, WarehouseError> {
        self.0.time_partitioning(table).await
    }
    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        self.0.create_table(table, resource).await
    }
    async fn table_schema(
        &self,
        table: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        self.0.table_schema(table).await
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

type Handler<'a> = Pin<Box<dyn Future<Output = Result<Outcome, IngestError>> + 'a>>;

struct Scenario {
    seed: u64,
    batches: usize,
    /// Batches arrive in random order behind a start gate that opens at the end.
    gated: bool,
    /// Percent chance, per step of a handler, that it crashes there.
    crash_percent: u64,
    /// How many notifications are handled at once at most.
    concurrency: usize,
    /// Polls a job stays running.
    job_polls: u32,
    wait_for_validation: bool,
}

struct Report {
    steps: usize,
    crashes: usize,
    handler_runs: usize,
}

fn batch_name(i: usize) -> String {
    format!("ds/t/batch_{i:03}")
}

fn run(s: &Scenario) -> Report {
    let mut rng = Rng(s.seed);
    let clock = MemoryClock::new();
    let memory = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    memory.create_bucket(BUCKET);
    let warehouse = Arc::new(MemoryWarehouse::with_store(memory.clone()).with_clock(clock.clone()));
    warehouse.set_job_duration(s.job_polls);
    let notifications = Arc::new(Mutex::new(VecDeque::new()));
    let log: History = Arc::default();
    let store = Arc::new(SteppedStore {
        inner: memory.clone(),
        notifications: notifications.clone(),
        log: log.clone(),
    });
    let settings = Settings {
        bq_project: Some("my-project".into()),
        order_per_table: true,
        lock_lease: Duration::from_secs(5),
        restart_buffer: Duration::from_secs(2),
        wait_for_job: Duration::from_secs(30),
        wait_for_validation: s.wait_for_validation,
        start_backfill_filename: s.gated.then(|| "_HISTORYDONE".to_string()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(
        settings,
        store,
        Arc::new(SteppedWarehouse(warehouse.clone(), log.clone())),
        Arc::new(clock.clone()),
    );

    // The batches upstream will write, in the order they arrive.
    let mut arrivals: Vec<usize> = (0..s.batches).collect();
    if s.gated {
        for i in (1..arrivals.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            arrivals.swap(i, j);
        }
    }
    let mut arrivals: VecDeque<usize> = arrivals.into();
    let mut gate_written = !s.gated;

    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut running: Vec<(ObjectEvent, Handler<'_>)> = Vec::new();
    let mut report = Report {
        steps: 0,
        crashes: 0,
        handler_runs: 0,
    };
    let mut validations = 0;

    for _ in 0..2_000_000 {
        report.steps += 1;
        clock.advance(Duration::from_millis(20));
        // Upstream writes the next batch now and then.
        if !arrivals.is_empty() && rng.chance(10) {
            let i = arrivals.pop_front().unwrap();
            let dir = batch_name(i);
            memory.insert(
                BUCKET,
                &format!("{dir}/data.csv"),
                format!("{i},x\n").into_bytes(),
            );
            let marker = memory.insert(BUCKET, &format!("{dir}/_SUCCESS"), Vec::new());
            notifications
                .lock()
                .unwrap()
                .push_back(ObjectEvent::finalized(
                    BUCKET,
                    &marker.name,
                    marker.generation,
                ));
        }
        // The start marker comes once the history's notifications were handled.
        let history_queued =
            arrivals.is_empty() && running.is_empty() && notifications.lock().unwrap().is_empty();
        if history_queued && !gate_written && rng.chance(10) {
            gate_written = true;
            let gate = memory.insert(BUCKET, "ds/t/_HISTORYDONE", Vec::new());
            notifications
                .lock()
                .unwrap()
                .push_back(ObjectEvent::finalized(BUCKET, &gate.name, gate.generation));
        }
        // A validator drops a new _BACKFILL when the subscriber waits for it.
        if s.wait_for_validation
            && running.is_empty()
            && notifications.lock().unwrap().is_empty()
            && memory.meta(BUCKET, "ds/t/_BACKFILL").is_some()
            && memory.meta(BUCKET, "ds/t/_bqlock").is_none()
            && rng.chance(20)
        {
            validations += 1;
            let b = memory.insert(BUCKET, "ds/t/_BACKFILL", Vec::new());
            notifications
                .lock()
                .unwrap()
                .push_back(ObjectEvent::finalized(BUCKET, &b.name, b.generation));
        }
        // Start handling a delivered notification (in any order: Pub/Sub does not order).
        let pending = notifications.lock().unwrap().len();
        if pending > 0 && running.len() < s.concurrency && (running.is_empty() || rng.chance(30)) {
            let k = rng.below(pending as u64) as usize;
            let event = notifications.lock().unwrap().remove(k).unwrap();
            let deadline = clock_now(&clock) + chrono::Duration::seconds(20);
            let ingestor = &ingestor;
            let e2 = event.clone();
            let fut: Handler<'_> =
                Box::pin(async move { ingestor.handle_until(&e2, deadline).await });
            running.push((event, fut));
            report.handler_runs += 1;
            continue;
        }
        if running.is_empty() {
            if pending == 0 && arrivals.is_empty() && gate_written {
                let quiet =
                    !(s.wait_for_validation && memory.meta(BUCKET, "ds/t/_BACKFILL").is_some());
                if quiet {
                    break;
                }
            }
            continue;
        }
        let k = rng.below(running.len() as u64) as usize;
        if rng.chance(s.crash_percent) {
            // The instance dies between two operations; the message comes back.
            let (event, fut) = running.swap_remove(k);
            drop(fut);
            report.crashes += 1;
            notifications.lock().unwrap().push_back(event);
            continue;
        }
        if let Poll::Ready(result) = running[k].1.as_mut().poll(&mut cx) {
            let (event, _) = running.swap_remove(k);
            match result {
                Ok(outcome) if outcome.is_final() => {
                    assert!(
                        !matches!(outcome, Outcome::Failed { .. }),
                        "seed {}: {} failed: {outcome:?}",
                        s.seed,
                        event.name
                    );
                }
                // Running or transient: Pub/Sub delivers it again.
                _ => notifications.lock().unwrap().push_back(event),
            }
        }
    }

    // Every batch applied exactly once.
    let mut loads: Vec<String> = warehouse
        .submitted()
        .iter()
        .map(|j| match &j.kind {
            ingest_core::ports::JobKind::Load { source_uris, .. } => source_uris.join(","),
            other => panic!("unexpected job {other:?}"),
        })
        .collect();
    let in_submission_order = loads.clone();
    loads.sort();
    let expected: Vec<String> = (0..s.batches)
        .map(|i| format!("gs://{BUCKET}/{}/data.csv", batch_name(i)))
        .collect();
    assert_eq!(
        loads, expected,
        "seed {}: every batch loaded exactly once ({} crashes)",
        s.seed, report.crashes
    );
    // In order: once the subscriber commits to batch j (its lock), every smaller batch that
    // was already queued has been loaded before j. Pub/Sub does not order notifications, so a
    // batch whose notification comes late is applied when it arrives — which is why history
    // goes behind the start gate, where the order must be total.
    let history = log.lock().unwrap().clone();
    let loaded_at = |i: usize| history.iter().position(|&h| h == (Happened::Loaded, i));
    for (at, &(what, j)) in history.iter().enumerate() {
        if what != Happened::Locked {
            continue;
        }
        for &(earlier, i) in &history[..at] {
            if earlier == Happened::Queued && i < j {
                assert!(
                    loaded_at(i) < loaded_at(j),
                    "seed {}: batch {j} applied while batch {i} waited in the backlog: {history:?}",
                    s.seed
                );
            }
        }
    }
    if s.gated {
        assert_eq!(
            in_submission_order, expected,
            "seed {}: gated history in order",
            s.seed
        );
    }
    let table = TableRef {
        project: "my-project".into(),
        dataset: "ds".into(),
        table: "t".into(),
        partition: None,
    };
    assert_eq!(
        warehouse.table_rows(&table),
        s.batches as u64,
        "seed {}",
        s.seed
    );
    let left: Vec<String> = memory
        .names(BUCKET)
        .into_iter()
        .filter(|n| {
            n.contains("/_backlog/") || n.ends_with("/_bqlock") || n.ends_with("/_BACKFILL")
        })
        .collect();
    assert!(left.is_empty(), "seed {}: left behind: {left:?}", s.seed);
    if s.wait_for_validation {
        assert!(
            validations >= s.batches - 1,
            "seed {}: {validations} validations",
            s.seed
        );
    }
    report
}

fn clock_now(clock: &MemoryClock) -> chrono::DateTime<chrono::Utc> {
    use ingest_core::ports::Clock;
    clock.now()
}

#[test]
fn in_order_exactly_once_without_crashes() {
    for seed in 0..200 {
        run(&Scenario {
            seed,
            batches: 6,
            gated: false,
            crash_percent: 0,
            concurrency: 4,
            job_polls: (seed % 3) as u32,
            wait_for_validation: false,
        });
    }
}

#[test]
fn in_order_exactly_once_with_crashes_between_any_two_operations() {
    let mut crashes = 0;
    for seed in 1000..1400 {
        let r = run(&Scenario {
            seed,
            batches: 5,
            gated: false,
            crash_percent: 3,
            concurrency: 3,
            job_polls: (seed % 4) as u32,
            wait_for_validation: false,
        });
        crashes += r.crashes;
    }
    assert!(
        crashes > 400,
        "the sample must really crash handlers: {crashes}"
    );
}

#[test]
fn start_gate_applies_out_of_order_uploads_in_order() {
    for seed in 2000..2200 {
        run(&Scenario {
            seed,
            batches: 6,
            gated: true,
            crash_percent: 2,
            concurrency: 4,
            job_polls: 1,
            wait_for_validation: false,
        });
    }
}

#[test]
fn wait_for_validation_stops_after_each_batch() {
    for seed in 3000..3100 {
        run(&Scenario {
            seed,
            batches: 4,
            gated: false,
            crash_percent: 1,
            concurrency: 2,
            job_polls: 0,
            wait_for_validation: true,
        });
    }
}
