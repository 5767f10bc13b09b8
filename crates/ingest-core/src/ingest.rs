//! The ingest path: from an object event to BigQuery jobs followed to completion.
//!
//! [`Ingestor::handle`] is what every front end (Pub/Sub pull, HTTP push, CloudEvents, the
//! backfill CLI) calls. Its contract:
//!
//! - A final outcome ([`Outcome::is_final`]) means the notification may be acknowledged: the
//!   batch is done, failed for good (and recorded), or there was nothing to do.
//! - [`Outcome::Running`] means the jobs were submitted and are still running at the deadline:
//!   handling the same event again follows the same jobs (their ids are deterministic).
//! - `Err(IngestError)` is transient (throttling, server errors): redeliver later.
//!
//! Requests, for a batch seen for the first time: one `jobs.get` of part 0 (not found), one
//! listing per ancestor `_config/` folder, one `read` per config file not already cached at its
//! generation, one listing of the batch (which also yields the batch's own `_config/`), one
//! `jobs.insert` per part, and polls. A duplicate delivery of a finished batch costs one
//! `jobs.get` per part and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{config_prefixes, files_to_read, BatchConfig, ConfigDir, ConfigFile};
use crate::destination::{resolve_batch, Batch};
use crate::event::ObjectEvent;
use crate::plan::{job_id, job_id_hint, plan_load, select_data_files, LoadPlan, PlanMode};
use crate::ports::{
    Clock, FailureReport, FailureSink, JobError, JobRef, JobRequest, JobState, JobStatus,
    LoadRecord, ObjectMeta, ObjectStore, StoreError, TableRef, Warehouse, WarehouseError,
};
use crate::settings::Settings;
use crate::trigger::{classify, Trigger};

pub use crate::plan::PARTS_LABEL;

/// What handling one event came to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to do.
    Ignored {
        /// Why.
        reason: String,
    },
    /// The batch was queued on its table's ordered backlog.
    Queued {
        /// The backlog item written.
        backlog_item: String,
    },
    /// The jobs are still running at the deadline; handling the same event again follows them.
    Running {
        /// The jobs.
        jobs: Vec<JobRef>,
    },
    /// Every job of the batch succeeded.
    Done {
        /// The jobs.
        jobs: Vec<JobRef>,
        /// Rows written.
        rows: u64,
        /// Bytes read.
        bytes: u64,
    },
    /// The batch failed for good; the failure was recorded.
    Failed {
        /// What failed, naming the object or job.
        error: String,
    },
    /// The notification names a marker that cannot be a batch — its path gives an invalid
    /// destination — and no request was made for it: nothing was read, submitted or recorded.
    /// Front ends log it at ERROR and do not ask for it again.
    Rejected {
        /// Why, naming the object.
        error: String,
    },
}

/// What a front end does with a notification once it was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Final: acknowledge it (Pub/Sub ack, HTTP 200).
    Acknowledge,
    /// Not final: hand it back so that it comes again after about this long (Pub/Sub nack
    /// with that delay, HTTP 503 with `Retry-After`). Handling it again is safe.
    RetryAfter(Duration),
    /// Final, but the notification itself cannot be processed: do not ask for it again and log
    /// it at ERROR (Pub/Sub pull: ack; HTTP: 400, which a push subscription's dead-letter policy
    /// routes to its dead-letter topic).
    Reject,
}

/// How long a notification handed back with [`Disposition::RetryAfter`] should wait before it
/// comes again, unless a front end is configured otherwise.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

impl Outcome {
    /// Whether the outcome is final: the notification is not needed again.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Running { .. })
    }

    /// What the front end does with the notification: the one place this policy lives.
    ///
    /// ```
    /// use ingest_core::ingest::{Disposition, Outcome, DEFAULT_RETRY_AFTER};
    /// assert_eq!(Outcome::Failed { error: "e".into() }.disposition(), Disposition::Acknowledge);
    /// assert_eq!(Outcome::Running { jobs: vec![] }.disposition(), Disposition::RetryAfter(DEFAULT_RETRY_AFTER));
    /// assert_eq!(Outcome::Rejected { error: "e".into() }.disposition(), Disposition::Reject);
    /// ```
    pub fn disposition(&self) -> Disposition {
        match self {
            Outcome::Running { .. } => Disposition::RetryAfter(DEFAULT_RETRY_AFTER),
            Outcome::Rejected { .. } => Disposition::Reject,
            Outcome::Ignored { .. }
            | Outcome::Queued { .. }
            | Outcome::Done { .. }
            | Outcome::Failed { .. } => Disposition::Acknowledge,
        }
    }

    /// The jobs the outcome names (running or done), else none.
    pub fn jobs(&self) -> &[JobRef] {
        match self {
            Outcome::Running { jobs } | Outcome::Done { jobs, .. } => jobs,
            Outcome::Ignored { .. }
            | Outcome::Queued { .. }
            | Outcome::Failed { .. }
            | Outcome::Rejected { .. } => &[],
        }
    }

    /// A short name: `ignored`, `queued`, `running`, `done`, `failed`, `rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ignored { .. } => "ignored",
            Outcome::Queued { .. } => "queued",
            Outcome::Running { .. } => "running",
            Outcome::Done { .. } => "done",
            Outcome::Failed { .. } => "failed",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// A transient failure: the event should be delivered again later
/// ([`IngestError::disposition`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The object store failed transiently.
    #[error("{event}: {source}")]
    Store {
        /// `gs://bucket/name` of the event.
        event: String,
        /// The store's error.
        source: StoreError,
    },
    /// The warehouse failed transiently.
    #[error("{event}: {source}")]
    Warehouse {
        /// `gs://bucket/name` of the event.
        event: String,
        /// The warehouse's error.
        source: WarehouseError,
    },
}

impl IngestError {
    /// Always [`Disposition::RetryAfter`]: the store or the warehouse may answer later.
    pub fn disposition(&self) -> Disposition {
        Disposition::RetryAfter(DEFAULT_RETRY_AFTER)
    }
}

/// A failure that is final for this event; turned into [`Outcome::Failed`] and recorded.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

/// Internal result: transient errors propagate, fatal ones become an outcome.
pub(crate) enum Step<T> {
    Ok(T),
    Fatal(Fatal),
}

/// How long to wait between two polls of a running job: 50 ms, doubling, at most 5 s.
///
/// ```
/// use std::time::Duration;
/// use ingest_core::ingest::poll_delay;
/// assert_eq!(poll_delay(0), Duration::from_millis(50));
/// assert_eq!(poll_delay(1), Duration::from_millis(100));
/// assert_eq!(poll_delay(20), Duration::from_secs(5));
/// ```
pub fn poll_delay(attempt: u32) -> Duration {
    let ms = 50u64.saturating_mul(1u64 << attempt.min(16));
    Duration::from_millis(ms.min(5_000))
}

/// Config file contents already read, keyed by (bucket, name, generation): a generation never
/// changes content, so entries never go stale; the cache is bounded and cleared when full.
#[derive(Debug, Default)]
struct ConfigCache {
    entries: Mutex<HashMap<CacheKey, Arc<Vec<u8>>>>,
}

/// (bucket, object name, generation).
type CacheKey = (String, String, i64);

const CONFIG_CACHE_CAPACITY: usize = 4096;

impl ConfigCache {
    fn get(&self, bucket: &str, name: &str, generation: i64) -> Option<Arc<Vec<u8>>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(bucket.to_string(), name.to_string(), generation))
            .cloned()
    }

    fn put(&self, bucket: &str, name: &str, generation: i64, content: Arc<Vec<u8>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CONFIG_CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert((bucket.to_string(), name.to_string(), generation), content);
    }
}

/// The job ids whose submission is under way in this process.
#[derive(Debug, Default)]
struct InFlight(Arc<Mutex<std::collections::HashSet<String>>>);

/// A turn taken with [`InFlight::take_turn`]; released when dropped (also when the future
/// holding it is cancelled).
#[derive(Debug)]
struct Turn {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    key: Option<String>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.set
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
    }
}

impl InFlight {
    /// Waits (polling the clock from 10 ms) until no other handler of this process holds
    /// `key`, then holds it. At `deadline` it goes ahead without the turn: deterministic job ids
    /// keep that safe, the turn only saves requests and emulator quirks.
    async fn take_turn(&self, key: &str, clock: &dyn Clock, deadline: DateTime<Utc>) -> Turn {
        let mut attempt = 0u32;
        loop {
            if self
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string())
            {
                return Turn {
                    set: self.0.clone(),
                    key: Some(key.to_string()),
                };
            }
            if clock.now() >= deadline {
                return Turn {
                    set: self.0.clone(),
                    key: None,
                };
            }
            clock
                .sleep(Duration::from_millis(10u64 << attempt.min(5)))
                .await;
            attempt += 1;
        }
    }
}

/// Applies batches: the unordered path, and the entry point of every front end.
///
/// ```
/// # use std::sync::Arc;
/// # use ingest_core::{event::ObjectEvent, ingest::{Ingestor, Outcome}, settings::Settings};
/// # use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
/// # futures::executor::block_on(async {
/// let store = Arc::new(MemoryStore::new());
/// store.create_bucket("b");
/// store.insert("b", "ds/t/part-0.csv", b"1,a\n2,b\n".to_vec());
/// let marker = store.insert("b", "ds/t/_SUCCESS", Vec::new());
/// let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
/// let mut settings = Settings::default();
/// settings.bq_project = Some("my-project".into());
/// let ingestor = Ingestor::new(settings, store, warehouse.clone(), Arc::new(MemoryClock::new()));
///
/// let event = ObjectEvent::finalized("b", "ds/t/_SUCCESS", marker.generation);
/// let outcome = ingestor.handle(&event).await.unwrap();
/// assert!(matches!(outcome, Outcome::Done { rows: 2, .. }));
/// # });
/// ```
#[derive(Debug)]
pub struct Ingestor {
    settings: Arc<Settings>,
    store: Arc<dyn ObjectStore>,
    warehouse: Arc<dyn Warehouse>,
    clock: Arc<dyn Clock>,
    cache: ConfigCache,
    failures: Option<Arc<dyn FailureSink>>,
    in_flight: InFlight,
}

/// Everything known about a batch once its configuration is read.
#[derive(Debug, Clone)]
pub(crate) struct PreparedBatch {
    pub(crate) batch: Batch,
    pub(crate) config: BatchConfig,
    pub(crate) listing: Vec<ObjectMeta>,
}

impl Ingestor {
    /// A new ingestor over the given ports.
    pub fn new(
        settings: Settings,
        store: Arc<dyn ObjectStore>,
        warehouse: Arc<dyn Warehouse>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Ingestor {
            settings: Arc::new(settings),
            store,
            warehouse,
            clock,
            cache: ConfigCache::default(),
            failures: None,
            in_flight: InFlight::default(),
        }
    }

    /// Also announces every failed batch to `sink` (`FAILURE_TOPIC`).
    pub fn with_failure_sink(mut self, sink: Arc<dyn FailureSink>) -> Self {
        self.failures = Some(sink);
        self
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Arc<dyn Warehouse> {
        &self.warehouse
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Handles one event, waiting for its jobs at most `WAIT_FOR_JOB_SECONDS`.
    pub async fn handle(&self, event: &ObjectEvent) -> Result<Outcome, IngestError> {
        let deadline = self.clock.now() + chrono_duration(self.settings.wait_for_job);
        self.handle_until(event, deadline).await
    }

    /// Handles one event, waiting for its jobs until `deadline` at the latest (and at most
    /// `WAIT_FOR_JOB_SECONDS`). The ordered subscriber (a `_BACKFILL` event) works until
    /// `deadline` less `RESTART_BUFFER_SECONDS` and then hands over.
    pub async fn handle_until(
        &self,
        event: &ObjectEvent,
        deadline: DateTime<Utc>,
    ) -> Result<Outcome, IngestError> {
        let own = self.clock.now() + chrono_duration(self.settings.wait_for_job);
        let job_deadline = deadline.min(own);
        let trigger = classify(&self.settings, event);
        let event = match trigger {
            Trigger::Success | Trigger::Backfill | Trigger::StartBackfill
                if event.generation.is_none() =>
            {
                match self.with_generation(event).await? {
                    Ok(e) => std::borrow::Cow::Owned(e),
                    Err(ignored) => return Ok(ignored),
                }
            }
            _ => std::borrow::Cow::Borrowed(event),
        };
        let event = event.as_ref();
        match trigger {
            Trigger::Ignore(reason) => Ok(Outcome::Ignored {
                reason: reason.to_string(),
            }),
            Trigger::Backlog => Ok(Outcome::Ignored {
                reason: "backlog item (written by bq-ingest)".to_string(),
            }),
            Trigger::Success => self.handle_success(event, job_deadline).await,
            Trigger::Backfill => crate::ordering::run_subscriber(self, event, deadline).await,
            Trigger::StartBackfill => crate::ordering::open_start_gate(self, event).await,
        }
    }

    /// A trigger whose notification names no generation (the Python function's `backfill.py`
    /// sends only `bucketId` and `objectId`): its live generation, by one `stat`, or — when the
    /// object is gone — the outcome that says so.
    async fn with_generation(
        &self,
        event: &ObjectEvent,
    ) -> Result<Result<ObjectEvent, Outcome>, IngestError> {
        match self.store.stat(&event.bucket, &event.name).await {
            Ok(meta) => Ok(Ok(ObjectEvent {
                generation: Some(meta.generation),
                size: event.size.or(Some(meta.size)),
                ..event.clone()
            })),
            Err(StoreError::NotFound { .. }) => Ok(Err(Outcome::Ignored {
                reason: format!(
                    "{} no longer exists (the notification named no generation)",
                    event.uri()
                ),
            })),
            Err(e) if e.is_transient() => Err(IngestError::Store {
                event: event.uri(),
                source: e,
            }),
            Err(e) => self
                .fail(event, None, None, Fatal(format!("{}: {e}", event.uri())))
                .await
                .map(Err),
        }
    }

    /// The project that runs jobs.
    pub(crate) fn job_project(&self, event: &ObjectEvent) -> Result<String, Fatal> {
        self.settings
            .job_project()
            .map(str::to_string)
            .ok_or_else(|| {
                Fatal(format!(
                    "{}: no project to run jobs in: set BQ_PROJECT or GOOGLE_CLOUD_PROJECT",
                    event.uri()
                ))
            })
    }

    /// A marker whose path, read with `DESTINATION_REGEX`, names an invalid project, dataset,
    /// table or partition is rejected before any request: no config, listing, job or row can
    /// make its path a valid destination. (A path the regex does not match, or matches without
    /// a dataset or table, goes on: a `_config/load.json` `destinationTable` may supply them.)
    fn reject_invalid_destination(&self, event: &ObjectEvent) -> Option<Outcome> {
        let resolved = resolve_batch(
            &self.settings.destination_regex,
            None,
            self.settings
                .storage_project()
                .or(Some("placeholder-project")),
            self.settings.timestamp_regex.as_ref(),
            &event.bucket,
            &event.name,
        );
        match resolved {
            Err(e @ crate::destination::DestinationError::Invalid { .. }) => {
                let error =
                    format!("{e}; rejected before any request (nothing was read or recorded)");
                tracing::error!(object = %event.uri(), error = %error, "{error}");
                Some(Outcome::Rejected { error })
            }
            _ => None,
        }
    }

    /// The readable part of the batch's job ids: from the path with `DESTINATION_REGEX`
    /// (no config needed, so a duplicate can be recognised before anything is listed), else
    /// the marker's directory.
    pub(crate) fn job_hint(&self, bucket: &str, marker: &str) -> String {
        match resolve_batch(
            &self.settings.destination_regex,
            None,
            self.settings
                .storage_project()
                .or(Some("placeholder-project")),
            None,
            bucket,
            marker,
        ) {
            Ok(b) => job_id_hint(
                &b.destination.dataset,
                &b.destination.table,
                b.destination.partition.as_deref(),
            ),
            Err(_) => marker
                .rsplit_once('/')
                .map(|(dir, _)| dir.to_string())
                .unwrap_or_default(),
        }
    }

    async fn handle_success(
        &self,
        event: &ObjectEvent,
        deadline: DateTime<Utc>,
    ) -> Result<Outcome, IngestError> {
        let project = match self.job_project(event) {
            Ok(p) => p,
            Err(f) => return self.fail(event, None, None, f).await,
        };
        if let Some(rejected) = self.reject_invalid_destination(event) {
            return Ok(rejected);
        }
        // `handle_until` looked the generation up when the notification had none.
        let generation = event.generation.unwrap_or_default();
        let hint = self.job_hint(&event.bucket, &event.name);
        let first = JobRef {
            project: project.clone(),
            job_id: job_id(
                &self.settings.job_prefix,
                &hint,
                &event.bucket,
                &event.name,
                generation,
                0,
            ),
            location: self.settings.bq_location.clone(),
        };

        // Deliveries of one marker handled at once in this process take turns until its jobs
        // are submitted: the later ones then find the jobs and follow them.
        let _turn = self
            .in_flight
            .take_turn(&first.job_id, self.clock.as_ref(), deadline)
            .await;

        // A duplicate delivery: the first part exists, so the batch was planned before.
        match self.existing_jobs(event, &first, &hint, generation).await {
            Ok(Some(existing)) => {
                drop(_turn);
                let ctx = BatchRun {
                    event,
                    project: &project,
                    hint: &hint,
                    generation,
                    deadline,
                };
                return self.run_batch(&ctx, None, existing, None).await;
            }
            Ok(None) => {}
            Err(e) => return Err(self.transient_warehouse(event, e)),
        }

        let prepared = match self.prepare(event).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => return self.fail(event, None, Some(generation), f).await,
        };
        if prepared.config.ordered || self.settings.order_per_table {
            return crate::ordering::publish(self, event, &prepared).await;
        }
        let plan = match self.plan(event, &prepared, &project, &hint, generation) {
            Ok(p) => p,
            Err(f) => {
                return self
                    .fail(event, Some(&prepared.batch), Some(generation), f)
                    .await
            }
        };
        let submitted_at = self.clock.now();
        let submitted = self.submit_all(event, &plan).await;
        drop(_turn);
        let statuses = match submitted {
            Ok(s) => s,
            Err(SubmitError::Transient(e)) => return Err(self.transient_warehouse(event, e)),
            Err(SubmitError::Rejected(e)) => {
                return self
                    .fail(event, Some(&prepared.batch), Some(generation), Fatal(e))
                    .await
            }
        };
        let attempts = statuses
            .iter()
            .map(|s| (attempt_of(&s.job.job_id), s.clone()))
            .collect();
        let ctx = BatchRun {
            event,
            project: &project,
            hint: &hint,
            generation,
            deadline,
        };
        self.run_batch(&ctx, Some((prepared, plan)), attempts, Some(submitted_at))
            .await
    }

    /// Follows a batch's jobs to the end, resubmitting a part whose job failed with a
    /// retriable error under a new id (`<id>-r<n>`), at most `MAX_RETRIES_ON_BIGQUERY_ERROR`
    /// times; then records the outcome.
    async fn run_batch(
        &self,
        ctx: &BatchRun<'_>,
        mut planned: Option<(PreparedBatch, LoadPlan)>,
        parts: Vec<(u32, JobStatus)>,
        submitted_at: Option<DateTime<Utc>>,
    ) -> Result<Outcome, IngestError> {
        let event = ctx.event;
        let (mut attempts, mut statuses): (Vec<u32>, Vec<JobStatus>) = parts.into_iter().unzip();
        loop {
            statuses = match self.follow(statuses, ctx.deadline).await {
                Ok(s) => s,
                Err(e) => return Err(self.transient_warehouse(event, e)),
            };
            if statuses.iter().any(|s| s.state != JobState::Done) {
                let jobs = statuses.iter().map(|s| s.job.clone()).collect();
                return Ok(Outcome::Running { jobs });
            }
            let max = self.settings.max_retries_on_bigquery_error;
            let retry: Vec<usize> = (0..statuses.len())
                .filter(|&i| {
                    attempts[i] < max
                        && statuses[i]
                            .error
                            .as_ref()
                            .is_some_and(is_retriable_job_error)
                })
                .collect();
            if retry.is_empty() {
                let batch = planned.as_ref().map(|(p, plan)| (&p.batch, plan.mode));
                return self.finish(event, batch, statuses, submitted_at).await;
            }
            if planned.is_none() {
                let prepared = match self.prepare(event).await? {
                    Step::Ok(p) => p,
                    Step::Fatal(f) => return self.fail(event, None, Some(ctx.generation), f).await,
                };
                match self.plan(event, &prepared, ctx.project, ctx.hint, ctx.generation) {
                    Ok(plan) => planned = Some((prepared, plan)),
                    Err(f) => {
                        return self
                            .fail(event, Some(&prepared.batch), Some(ctx.generation), f)
                            .await
                    }
                }
            }
            let Some((prepared, plan)) = planned.as_ref() else {
                continue;
            };
            for i in retry {
                let Some(base) = plan.jobs.get(i) else {
                    continue;
                };
                let failed = &statuses[i];
                attempts[i] += 1;
                let mut job = base.clone();
                job.job_id = crate::ordering::retry_id(&base.job_id, attempts[i]);
                tracing::warn!(
                    object = %event.uri(),
                    job = %failed.job.job_id,
                    retry = %job.job_id,
                    "job {} failed with a retriable error; retrying as {}",
                    failed.job.job_id,
                    job.job_id
                );
                let mut record = self.record_of(
                    event,
                    Some((&prepared.batch, plan.mode)),
                    std::slice::from_ref(failed),
                    submitted_at,
                );
                record.state = "retried".to_string();
                self.record(&record)
                    .await
                    .map_err(|e| self.transient_warehouse(event, e))?;
                statuses[i] = match self.submit_one(event, &job).await {
                    Ok(s) => s,
                    Err(SubmitError::Transient(e)) => {
                        return Err(self.transient_warehouse(event, e))
                    }
                    Err(SubmitError::Rejected(e)) => {
                        return self
                            .fail(event, Some(&prepared.batch), Some(ctx.generation), Fatal(e))
                            .await
                    }
                };
            }
        }
    }

    /// What handling a success marker would do, without submitting or writing anything: the
    /// batch, whether its table is ordered, and the plan (or why there is none). Reads the
    /// bucket like [`Ingestor::handle`] does.
    pub async fn dry_run(&self, event: &ObjectEvent) -> Result<DryRun, IngestError> {
        let mut out = DryRun {
            marker: event.uri(),
            batch: None,
            ordered: false,
            plan: None,
            error: None,
        };
        let project = match self.job_project(event) {
            Ok(p) => p,
            Err(f) => {
                out.error = Some(f.0);
                return Ok(out);
            }
        };
        let prepared = match self.prepare(event).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => {
                out.error = Some(f.0);
                return Ok(out);
            }
        };
        out.ordered = prepared.config.ordered || self.settings.order_per_table;
        let hint = self.job_hint(&event.bucket, &event.name);
        let generation = event.generation.unwrap_or_default();
        match self.plan(event, &prepared, &project, &hint, generation) {
            Ok(plan) => out.plan = Some(plan),
            Err(f) => out.error = Some(f.0),
        }
        out.batch = Some(prepared.batch);
        Ok(out)
    }

    /// When part 0 exists: the latest attempt of every part, or `None` when some part is
    /// missing (a crash between two submissions) so the batch must be planned again.
    async fn existing_jobs(
        &self,
        event: &ObjectEvent,
        first: &JobRef,
        hint: &str,
        generation: i64,
    ) -> Result<Option<Vec<(u32, JobStatus)>>, WarehouseError> {
        let Some(status) = self.latest_attempt(first).await? else {
            return Ok(None);
        };
        let parts: usize = status
            .1
            .labels
            .get(PARTS_LABEL)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let mut statuses = vec![status];
        for part in 1..parts {
            let job = JobRef {
                job_id: job_id(
                    &self.settings.job_prefix,
                    hint,
                    &event.bucket,
                    &event.name,
                    generation,
                    part,
                ),
                ..first.clone()
            };
            match self.latest_attempt(&job).await? {
                Some(s) => statuses.push(s),
                None => return Ok(None),
            }
        }
        Ok(Some(statuses))
    }

    /// The latest attempt of a job: the job itself, or its retries `-r1`, `-r2`, … as long as
    /// each one failed with a retriable error and a later one exists.
    async fn latest_attempt(
        &self,
        job: &JobRef,
    ) -> Result<Option<(u32, JobStatus)>, WarehouseError> {
        let Some(mut status) = self.warehouse.job_status(job).await? else {
            return Ok(None);
        };
        let mut attempt = 0;
        while attempt < self.settings.max_retries_on_bigquery_error
            && status.error.as_ref().is_some_and(is_retriable_job_error)
        {
            let next = JobRef {
                job_id: crate::ordering::retry_id(&job.job_id, attempt + 1),
                ..job.clone()
            };
            match self.warehouse.job_status(&next).await? {
                Some(s) => {
                    status = s;
                    attempt += 1;
                }
                None => break,
            }
        }
        Ok(Some((attempt, status)))
    }

    /// Lists and merges the `_config/` folders on the way to the batch, derives the
    /// destination and lists the batch.
    pub(crate) async fn prepare(
        &self,
        event: &ObjectEvent,
    ) -> Result<Step<PreparedBatch>, IngestError> {
        let bucket = &event.bucket;
        let batch_prefix = match event.name.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => String::new(),
        };
        let prefixes = config_prefixes(&batch_prefix);
        let own_config = format!("{batch_prefix}_config/");
        let mut dirs = Vec::with_capacity(prefixes.len());
        for prefix in &prefixes {
            if *prefix == own_config {
                continue;
            }
            let objects = match self.list_all(bucket, prefix).await {
                Ok(o) => o,
                Err(e) => return store_failure(event, e),
            };
            match self.config_dir(event, prefix, &objects).await? {
                Step::Ok(d) => dirs.push(d),
                Step::Fatal(f) => return Ok(Step::Fatal(f)),
            }
        }
        let listing = match self.list_all(bucket, &batch_prefix).await {
            Ok(o) => o,
            Err(e) => return store_failure(event, e),
        };
        let own: Vec<ObjectMeta> = listing
            .iter()
            .filter(|o| o.name.starts_with(&own_config))
            .cloned()
            .collect();
        match self.config_dir(event, &own_config, &own).await? {
            Step::Ok(d) => dirs.push(d),
            Step::Fatal(f) => return Ok(Step::Fatal(f)),
        }
        let config = match BatchConfig::merge(bucket, &dirs) {
            Ok(c) => c,
            Err(e) => return Ok(Step::Fatal(Fatal(e.to_string()))),
        };
        let regex = config
            .destination_regex
            .as_ref()
            .unwrap_or(&self.settings.destination_regex);
        let batch = match resolve_batch(
            regex,
            config.destination_table.as_ref(),
            self.settings.storage_project(),
            self.settings.timestamp_regex.as_ref(),
            bucket,
            &event.name,
        ) {
            Ok(b) => b,
            Err(e) => return Ok(Step::Fatal(Fatal(e.to_string()))),
        };
        Ok(Step::Ok(PreparedBatch {
            batch,
            config,
            listing,
        }))
    }

    async fn config_dir(
        &self,
        event: &ObjectEvent,
        prefix: &str,
        objects: &[ObjectMeta],
    ) -> Result<Step<ConfigDir>, IngestError> {
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        let (to_read, orderme) = files_to_read(prefix, &names);
        let mut dir = ConfigDir {
            prefix: prefix.to_string(),
            orderme,
            ..ConfigDir::default()
        };
        for name in to_read {
            let Some(meta) = objects.iter().find(|o| o.name == name) else {
                continue;
            };
            let content = match self.cache.get(&event.bucket, &name, meta.generation) {
                Some(c) => c,
                None => match self.store.read(&event.bucket, &name).await {
                    Ok((m, bytes)) => {
                        let bytes = Arc::new(bytes);
                        self.cache
                            .put(&event.bucket, &name, m.generation, bytes.clone());
                        bytes
                    }
                    // Deleted between the listing and the read: as if it were not there.
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return store_failure(event, e),
                },
            };
            let file = ConfigFile {
                name: name.clone(),
                generation: meta.generation,
                content: content.as_ref().clone(),
            };
            let base = name.rsplit('/').next().unwrap_or("");
            if base == "load.json" {
                dir.load_json = Some(file);
            } else if base == "external.json" {
                dir.external_json = Some(file);
            } else if base.ends_with(".sql") {
                dir.sql.push(file);
            }
        }
        Ok(Step::Ok(dir))
    }

    /// Every object under `prefix`, following pages.
    pub(crate) async fn list_all(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .store
                .list(bucket, prefix, token.as_deref(), None)
                .await?;
            out.extend(page.objects);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Plans the jobs of a prepared batch (load or transform).
    pub(crate) fn plan(
        &self,
        event: &ObjectEvent,
        prepared: &PreparedBatch,
        project: &str,
        hint: &str,
        generation: i64,
    ) -> Result<LoadPlan, Fatal> {
        let files = select_data_files(
            &prepared.batch,
            &self.settings.success_filename,
            &prepared.listing,
        );
        let _ = event;
        let mut plan = if prepared.config.transform_sql.is_some() {
            crate::transform::plan_transform(
                &self.settings,
                &prepared.batch,
                &prepared.config,
                &files,
                project,
                hint,
                generation,
            )
            .map_err(|e| Fatal(e.to_string()))?
        } else {
            plan_load(
                &self.settings,
                &prepared.batch,
                &prepared.config,
                &files,
                &prepared.listing,
                project,
                hint,
                generation,
            )
            .map_err(|e| Fatal(e.to_string()))?
        };
        let parts = plan.jobs.len().to_string();
        for job in &mut plan.jobs {
            job.labels.insert(PARTS_LABEL.to_string(), parts.clone());
        }
        Ok(plan)
    }

    /// Submits every job; an id that exists already is the same batch and is followed.
    pub(crate) async fn submit_all(
        &self,
        event: &ObjectEvent,
        plan: &LoadPlan,
    ) -> Result<Vec<JobStatus>, SubmitError> {
        let mut statuses = Vec::with_capacity(plan.jobs.len());
        for job in &plan.jobs {
            statuses.push(self.submit_one(event, job).await?);
        }
        Ok(statuses)
    }

    pub(crate) async fn submit_one(
        &self,
        event: &ObjectEvent,
        job: &JobRequest,
    ) -> Result<JobStatus, SubmitError> {
        let job_ref = JobRef {
            project: job.project.clone(),
            job_id: job.job_id.clone(),
            location: job.location.clone(),
        };
        match self.warehouse.submit(job).await {
            Ok(s) => Ok(s),
            Err(WarehouseError::AlreadyExists { .. }) => {
                match self.warehouse.job_status(&job_ref).await {
                    Ok(Some(s)) => Ok(s),
                    Ok(None) => Ok(JobStatus::new(job_ref, JobState::Pending)),
                    Err(e) if e.is_transient() => Err(SubmitError::Transient(e)),
                    Err(e) => Err(SubmitError::Rejected(format!("{}: {e}", event.uri()))),
                }
            }
            Err(e) if e.is_transient() => Err(SubmitError::Transient(e)),
            Err(e) => {
                // A rejected insert of an id that exists is a duplicate all the same (some
                // emulators answer a concurrent duplicate with 400 instead of 409).
                if let Ok(Some(existing)) = self.warehouse.job_status(&job_ref).await {
                    return Ok(existing);
                }
                Err(SubmitError::Rejected(format!(
                    "{}: job {} rejected: {e}",
                    event.uri(),
                    job.job_id
                )))
            }
        }
    }

    /// Polls the jobs until all are done or the deadline passes.
    pub(crate) async fn follow(
        &self,
        mut statuses: Vec<JobStatus>,
        deadline: DateTime<Utc>,
    ) -> Result<Vec<JobStatus>, WarehouseError> {
        let mut attempt = 0;
        loop {
            if statuses.iter().all(|s| s.state == JobState::Done) {
                return Ok(statuses);
            }
            let now = self.clock.now();
            if now >= deadline {
                return Ok(statuses);
            }
            let left = (deadline - now).to_std().unwrap_or_default();
            self.clock.sleep(poll_delay(attempt).min(left)).await;
            attempt += 1;
            for s in statuses.iter_mut() {
                if s.state != JobState::Done {
                    if let Some(new) = self.warehouse.job_status(&s.job).await? {
                        *s = new;
                    }
                }
            }
        }
    }

    /// The state-table row of a batch's jobs (state and error filled by the caller).
    fn record_of(
        &self,
        event: &ObjectEvent,
        batch: Option<(&Batch, PlanMode)>,
        statuses: &[JobStatus],
        submitted_at: Option<DateTime<Utc>>,
    ) -> LoadRecord {
        let error = statuses.iter().find_map(|s| {
            s.error
                .as_ref()
                .map(|e| format!("job {} failed: {}: {}", s.job.job_id, e.reason, e.message))
        });
        LoadRecord {
            marker_uri: event.uri(),
            marker_generation: event.generation.unwrap_or_default(),
            destination: batch
                .map(|(b, _)| b.destination.to_string())
                .unwrap_or_default(),
            batch_id: batch.and_then(|(b, _)| b.batch_id.clone()),
            job_ids: statuses.iter().map(|s| s.job.job_id.clone()).collect(),
            mode: batch
                .map(|(_, m)| m)
                .unwrap_or_else(|| mode_of(statuses))
                .as_str()
                .to_string(),
            state: if error.is_some() { "failed" } else { "done" }.to_string(),
            error,
            rows: Some(statuses.iter().filter_map(|s| s.output_rows).sum()),
            bytes: Some(statuses.iter().filter_map(|s| s.input_bytes).sum()),
            submitted_at: submitted_at.or_else(|| statuses.iter().filter_map(|s| s.created).min()),
            started_at: statuses.iter().filter_map(|s| s.started).min(),
            ended_at: statuses
                .iter()
                .filter_map(|s| s.ended)
                .max()
                .unwrap_or_else(|| self.clock.now()),
        }
    }

    /// Every job is done: checks DML row counts in transform mode, records the outcome.
    ///
    /// Every delivery that sees the end writes the row, a duplicate too: the row's `insertId`
    /// is deterministic (marker, generation, outcome), so BigQuery drops a repeat within its
    /// deduplication window, and `docs/operations.md` gives the query that deduplicates beyond
    /// it. Otherwise a delivery that died between the jobs' end and the row would leave the
    /// batch loaded with no row, and the redelivery could not tell.
    async fn finish(
        &self,
        event: &ObjectEvent,
        batch: Option<(&Batch, PlanMode)>,
        statuses: Vec<JobStatus>,
        submitted_at: Option<DateTime<Utc>>,
    ) -> Result<Outcome, IngestError> {
        let jobs: Vec<JobRef> = statuses.iter().map(|s| s.job.clone()).collect();
        let mut record = self.record_of(event, batch, &statuses, submitted_at);
        if record.error.is_none()
            && record.mode == PlanMode::Transform.as_str()
            && self.settings.fail_on_zero_dml_rows_affected
        {
            match crate::transform::check_dml_rows(self.warehouse.as_ref(), &statuses).await {
                Ok(Some(msg)) => {
                    record.error = Some(msg);
                    record.state = "failed".to_string();
                }
                Ok(None) => {}
                Err(e) => return Err(self.transient_warehouse(event, e)),
            }
        }
        if let Some(error) = &mut record.error {
            *error = format!("{}: {error}", event.uri());
            tracing::error!(object = %event.uri(), jobs = ?record.job_ids, error = %error, "batch failed: {error}");
        }
        self.record(&record)
            .await
            .map_err(|e| self.transient_warehouse(event, e))?;
        Ok(match record.error {
            Some(error) => Outcome::Failed { error },
            None => Outcome::Done {
                jobs,
                rows: record.rows.unwrap_or_default(),
                bytes: record.bytes.unwrap_or_default(),
            },
        })
    }

    /// Appends a row to the load-state table (and announces a failure to the failure sink).
    ///
    /// A transient error is returned, so that the notification is delivered again and the
    /// redelivery writes the row; a rejected write (no permission, a table of another schema)
    /// is logged at ERROR and the outcome stands, as redelivery would not help.
    pub(crate) async fn record(&self, record: &LoadRecord) -> Result<(), WarehouseError> {
        if record.state == "failed" {
            self.announce(record).await;
        }
        let Some(table) = self.state_table() else {
            return Ok(());
        };
        match self.warehouse.record_outcome(&table, record).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    marker = %record.marker_uri,
                    state = %record.state,
                    error = %e,
                    "could not write the load-state row for {} (the notification is handed back so that a redelivery writes it): {e}",
                    record.marker_uri
                );
                Err(e)
            }
            Err(e) => {
                tracing::error!(
                    marker = %record.marker_uri,
                    state = %record.state,
                    error = %e,
                    "could not write the load-state row for {}: {e}",
                    record.marker_uri
                );
                Ok(())
            }
        }
    }

    async fn announce(&self, record: &LoadRecord) {
        let Some(sink) = &self.failures else { return };
        let (bucket, object) = record
            .marker_uri
            .strip_prefix("gs://")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or(("", ""));
        let report = FailureReport {
            bucket: bucket.to_string(),
            object: object.to_string(),
            generation: record.marker_generation,
            marker_uri: record.marker_uri.clone(),
            destination: record.destination.clone(),
            job_ids: record.job_ids.clone(),
            error: record.error.clone().unwrap_or_default(),
            failed_at: record.ended_at,
            replay: if record.job_ids.is_empty() {
                // Nothing ran: publishing the notification again retries the batch.
                format!(
                    "fix the cause, then run: bq-ingest backfill {} --mode notifications",
                    record.marker_uri
                )
            } else {
                // Its jobs exist: the same notification would only follow them again.
                format!(
                    "fix the cause, then re-upload {} (a new generation gets new job ids)",
                    record.marker_uri
                )
            },
        };
        if let Err(e) = sink.announce(&report).await {
            tracing::error!(marker = %record.marker_uri, error = %e, "could not announce the failure of {}: {e}", record.marker_uri);
        }
    }

    /// The load-state table, when configured.
    pub fn state_table(&self) -> Option<TableRef> {
        let spec = self.settings.load_state_table.as_deref()?;
        let parts: Vec<&str> = spec.split('.').collect();
        let (project, dataset, table) = match parts.as_slice() {
            [d, t] => (self.settings.storage_project()?.to_string(), *d, *t),
            [p, d, t] => (p.to_string(), *d, *t),
            _ => return None,
        };
        Some(TableRef {
            project,
            dataset: dataset.to_string(),
            table: table.to_string(),
            partition: None,
        })
    }

    /// Records a final failure and turns it into an outcome (a transient error when the row
    /// could not be written).
    pub(crate) async fn fail(
        &self,
        event: &ObjectEvent,
        batch: Option<&Batch>,
        generation: Option<i64>,
        fatal: Fatal,
    ) -> Result<Outcome, IngestError> {
        tracing::error!(object = %event.uri(), error = %fatal.0, "batch failed: {}", fatal.0);
        let record = LoadRecord {
            marker_uri: event.uri(),
            marker_generation: generation.or(event.generation).unwrap_or_default(),
            destination: batch.map(|b| b.destination.to_string()).unwrap_or_default(),
            batch_id: batch.and_then(|b| b.batch_id.clone()),
            job_ids: Vec::new(),
            mode: PlanMode::Load.as_str().to_string(),
            state: "failed".to_string(),
            error: Some(fatal.0.clone()),
            rows: None,
            bytes: None,
            submitted_at: None,
            started_at: None,
            ended_at: self.clock.now(),
        };
        self.record(&record)
            .await
            .map_err(|e| self.transient_warehouse(event, e))?;
        Ok(Outcome::Failed { error: fatal.0 })
    }

    fn transient_warehouse(&self, event: &ObjectEvent, e: WarehouseError) -> IngestError {
        IngestError::Warehouse {
            event: event.uri(),
            source: e,
        }
    }
}

/// A store error met while reading a batch: transient errors are handed back for redelivery;
/// anything else is final for this notification — a missing bucket or a permission problem
/// does not go away by redelivering, so it is recorded (with how to replay it once fixed)
/// instead of answering "retry" until the subscription dead-letters it.
fn store_failure<T>(event: &ObjectEvent, e: StoreError) -> Result<Step<T>, IngestError> {
    match e {
        e if e.is_transient() => Err(IngestError::Store {
            event: event.uri(),
            source: e,
        }),
        StoreError::NotFound { bucket, .. } => Ok(Step::Fatal(Fatal(format!(
            "{}: bucket gs://{bucket} does not exist, or this service's account may not list \
             it (it needs roles/storage.objectViewer on the bucket)",
            event.uri()
        )))),
        e => Ok(Step::Fatal(Fatal(format!(
            "{}: cannot read the batch: {e} (is the bucket readable by this service's \
             account?)",
            event.uri()
        )))),
    }
}

/// Whether a failed job is worth retrying under a new id: BigQuery's transient reasons
/// (`backendError`, `internalError`, `rateLimitExceeded`, `jobBackendError`,
/// `jobInternalError`) and `quotaExceeded` on concurrency; any other error fails the batch.
///
/// ```
/// use ingest_core::ingest::is_retriable_job_error;
/// use ingest_core::ports::JobError;
/// let e = |reason: &str, message: &str| JobError { reason: reason.into(), message: message.into() };
/// assert!(is_retriable_job_error(&e("backendError", "")));
/// assert!(is_retriable_job_error(&e("quotaExceeded", "Too many concurrent queries")));
/// assert!(!is_retriable_job_error(&e("quotaExceeded", "Quota exceeded: table imports per day")));
/// assert!(!is_retriable_job_error(&e("invalid", "Provided Schema does not match Table")));
/// ```
pub fn is_retriable_job_error(error: &JobError) -> bool {
    match error.reason.as_str() {
        "backendError" | "internalError" | "rateLimitExceeded" | "jobBackendError"
        | "jobInternalError" => true,
        "quotaExceeded" => error.message.to_ascii_lowercase().contains("concurren"),
        _ => false,
    }
}

/// The attempt number in a job id (`…-r2` → 2; 0 without suffix).
pub(crate) fn attempt_of(job_id: &str) -> u32 {
    job_id
        .rsplit_once("-r")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn mode_of(statuses: &[JobStatus]) -> PlanMode {
    if statuses
        .iter()
        .any(|s| s.statement_type.is_some() || s.dml_affected_rows.is_some())
    {
        PlanMode::Transform
    } else {
        PlanMode::Load
    }
}

/// What [`Ingestor::dry_run`] found for one marker.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// `gs://bucket/marker`.
    pub marker: String,
    /// The batch, when its path and config resolve.
    pub batch: Option<Batch>,
    /// Whether its table is applied in order (through the backlog).
    pub ordered: bool,
    /// The jobs that would run.
    pub plan: Option<LoadPlan>,
    /// Why the batch cannot be applied.
    pub error: Option<String>,
}

/// What a batch run needs to re-plan.
struct BatchRun<'a> {
    event: &'a ObjectEvent,
    project: &'a str,
    hint: &'a str,
    generation: i64,
    deadline: DateTime<Utc>,
}

/// Why submitting failed.
#[derive(Debug)]
pub(crate) enum SubmitError {
    Transient(WarehouseError),
    Rejected(String),
}

pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The labels a job of this batch carries, for tests.
#[allow(dead_code)]
pub(crate) fn labels_of(job: &JobRequest) -> &BTreeMap<String, String> {
    &job.labels
}
