//! The entry point of every front end: [`Ingestor::handle`] classifies an object event and
//! dispatches it — a success marker to the unordered path or, for an ordered table, to the
//! backlog; a `_BACKFILL` to the table's subscriber; a start marker to its start gate.
//!
//! Its contract (Pub/Sub pull, HTTP push, CloudEvents, the backfill CLI all rely on it):
//!
//! - A final outcome ([`Outcome::is_final`]) means the notification may be acknowledged: the
//!   batch is done, failed for good (and recorded), or there was nothing to do.
//! - [`Outcome::Running`] means the jobs were submitted and are still running at the deadline:
//!   handling the same event again follows the same jobs (their ids are deterministic).
//! - `Err(IngestError)` is transient (throttling, server errors): redeliver later.
//!
//! [`Outcome::disposition`] says what a front end does with each.
//!
//! Requests, for a batch seen for the first time: one `jobs.get` of part 0 (not found), one
//! listing per ancestor `_config/` folder, one `read` per config file not already cached at its
//! generation, one listing of the batch (which also yields the batch's own `_config/`), one
//! `jobs.insert` per part, polls, and the state-table row. A duplicate delivery of a finished
//! batch costs one `jobs.get` per part and the row again (same identity).

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::destination::Batch;
use crate::event::ObjectEvent;
use crate::pipeline::jobs::{InFlight, MarkerJobs};
use crate::pipeline::prepare::{
    job_hint, job_project, plan_batch, prepare_batch, prepare_batch_from, ConfigCache, PathBatch,
};
use crate::pipeline::{chrono_duration, record, warehouse_error, Context, Fatal, Ports, Step};
use crate::plan::{JobIdStem, LoadPlan};
use crate::ports::{
    Clock, FailureSink, JobRef, ObjectStore, Observer, StoreError, TableRef, Warehouse,
};
use crate::settings::Settings;
use crate::trigger::{classify, Trigger};
use crate::unordered::BatchRun;

pub use crate::outcome::{Disposition, IngestError, Outcome, DEFAULT_RETRY_AFTER};
pub use crate::pipeline::jobs::{is_load_quota_error, is_retriable_job_error, poll_delay};
pub use crate::plan::PARTS_LABEL;

/// Applies batches: the entry point of every front end.
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
    ports: Ports,
    cache: ConfigCache,
    in_flight: InFlight,
}

impl Ingestor {
    /// A new ingestor over the given ports.
    pub fn new(
        settings: Settings,
        store: Arc<dyn ObjectStore>,
        warehouse: Arc<dyn Warehouse>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Ingestor::with_ports(settings, Ports::new(store, warehouse, clock))
    }

    /// A new ingestor over `ports`.
    pub fn with_ports(settings: Settings, ports: Ports) -> Self {
        Ingestor {
            settings: Arc::new(settings),
            ports,
            cache: ConfigCache::default(),
            in_flight: InFlight::default(),
        }
    }

    /// Also announces every failed batch to `sink` (`FAILURE_TOPIC`).
    pub fn with_failure_sink(mut self, sink: Arc<dyn FailureSink>) -> Self {
        self.ports.failures = Some(sink);
        self
    }

    /// Also reports what happens to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.ports.observer = observer;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The ports.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.ports.store
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Arc<dyn Warehouse> {
        &self.ports.warehouse
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.ports.clock
    }

    /// The load-state table, when configured.
    pub fn state_table(&self) -> Option<TableRef> {
        record::state_table(&self.settings)
    }

    fn context(&self) -> Context<'_> {
        Context {
            settings: &self.settings,
            ports: &self.ports,
            cache: &self.cache,
        }
    }

    /// Handles one event, waiting for its jobs at most `WAIT_FOR_JOB_SECONDS`.
    pub async fn handle(&self, event: &ObjectEvent) -> Result<Outcome, IngestError> {
        let deadline = self.ports.clock.now() + chrono_duration(self.settings.wait_for_job);
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
        let trigger = classify(&self.settings, event);
        self.handle_trigger_until(event, trigger, deadline).await
    }

    /// [`Ingestor::handle_until`] of an event whose trigger the caller classified already (the
    /// HTTP reader routes no-ops while it parses: `ingest_core::notification`).
    pub async fn handle_trigger_until(
        &self,
        event: &ObjectEvent,
        trigger: Trigger,
        deadline: DateTime<Utc>,
    ) -> Result<Outcome, IngestError> {
        let own = self.ports.clock.now() + chrono_duration(self.settings.wait_for_job);
        let job_deadline = deadline.min(own);
        let event = match trigger {
            Trigger::Success | Trigger::Backfill | Trigger::StartBackfill
                if event.generation.is_none() =>
            {
                match self.with_generation(event).await? {
                    Ok(e) => Cow::Owned(e),
                    Err(ignored) => return Ok(ignored),
                }
            }
            _ => Cow::Borrowed(event),
        };
        let event = event.as_ref();
        let ctx = self.context();
        match trigger {
            Trigger::Ignore(reason) => Ok(Outcome::Ignored {
                reason: reason.to_string(),
            }),
            Trigger::Backlog => Ok(Outcome::Ignored {
                reason: "backlog item (written by bq-ingest)".to_string(),
            }),
            Trigger::Success => self.handle_success(event, job_deadline).await,
            Trigger::Backfill => crate::ordering::run_subscriber(ctx, event, deadline).await,
            Trigger::StartBackfill => crate::ordering::open_start_gate(ctx, event).await,
        }
    }

    /// A trigger whose notification names no generation (the Python function's `backfill.py`
    /// sends only `bucketId` and `objectId`): its live generation, by one `stat`, or — when the
    /// object is gone — the outcome that says so.
    async fn with_generation(
        &self,
        event: &ObjectEvent,
    ) -> Result<Result<ObjectEvent, Outcome>, IngestError> {
        match self.ports.store.stat(&event.bucket, &event.name).await {
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
            Err(e) if e.is_transient() => Err(crate::pipeline::store_error(event, e)),
            Err(e) => {
                let fatal = Fatal(format!("{}: {e}", event.uri()));
                record::fail(self.context(), event, None, None, fatal)
                    .await
                    .map(Err)
            }
        }
    }

    /// A success marker: rejected at once when its path can never be a destination; followed
    /// when its jobs exist (a duplicate); else prepared, then queued (ordered table) or applied.
    async fn handle_success(
        &self,
        event: &ObjectEvent,
        deadline: DateTime<Utc>,
    ) -> Result<Outcome, IngestError> {
        let ctx = self.context();
        let project = match job_project(&self.settings, event) {
            Ok(p) => p,
            Err(f) => return record::fail(ctx, event, None, None, f).await,
        };
        let path = PathBatch::read(&self.settings, event);
        if let Some(error) = path.invalid() {
            tracing::error!(object = %event.uri(), error = %error, "{error}");
            return Ok(Outcome::Rejected { error });
        }
        // `handle_until` looked the generation up when the notification had none.
        let generation = event.generation.unwrap_or_default();
        let hint = path.job_hint(&self.settings, event);
        let marker = self.marker_jobs(event, &project, &hint, generation);
        let run = BatchRun {
            event,
            project: &project,
            hint: &hint,
            stem: &marker.stem,
            generation,
            deadline,
        };
        // Deliveries of one marker handled at once in this process take turns until its jobs
        // are submitted: the later ones then find the jobs and follow them.
        let turn = self
            .in_flight
            .take_turn(&marker.first.job_id, self.ports.clock.as_ref(), deadline)
            .await;
        // A duplicate delivery: the first part exists, so the batch was planned before.
        let existing = marker
            .existing(self.ports.warehouse.as_ref(), &self.settings)
            .await
            .map_err(|e| warehouse_error(event, e))?;
        if let Some(existing) = existing {
            drop(turn);
            let statuses = existing.into_iter().map(|(_, s)| s).collect();
            return crate::unordered::follow_batch(ctx, run, None, statuses, None).await;
        }
        let path_batch = path.into_batch(&self.settings);
        let partly = match prepare_batch_from(ctx, event, path_batch).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => return record::fail(ctx, event, None, Some(generation), f).await,
        };
        if partly.prepared.config.ordered || self.settings.order_per_table {
            // The backlog takes the marker; its batch is listed and planned in its turn.
            return crate::ordering::publish(ctx, event, &partly.prepared).await;
        }
        crate::unordered::apply_new(ctx, run, partly, turn).await
    }

    /// The jobs a marker's batch has (or would have), by their deterministic ids.
    fn marker_jobs(
        &self,
        event: &ObjectEvent,
        project: &str,
        hint: &str,
        generation: i64,
    ) -> MarkerJobs {
        let stem = JobIdStem::new(
            &self.settings.job_prefix,
            hint,
            &event.bucket,
            &event.name,
            generation,
        );
        let first = JobRef {
            project: project.to_string(),
            job_id: stem.part(0),
            location: self.settings.bq_location.clone(),
        };
        MarkerJobs { stem, first }
    }

    /// The latest attempt of part 0's job of a success marker's batch, found by its
    /// deterministic id (one `job_status` per attempt), or `None` when no job exists — nor can
    /// (no job project).
    pub async fn first_job(
        &self,
        event: &ObjectEvent,
    ) -> Result<Option<crate::ports::JobStatus>, crate::ports::WarehouseError> {
        let Ok(project) = job_project(&self.settings, event) else {
            return Ok(None);
        };
        let hint = job_hint(&self.settings, &event.bucket, &event.name);
        let generation = event.generation.unwrap_or_default();
        let jobs = self.marker_jobs(event, &project, &hint, generation);
        let found = crate::pipeline::jobs::latest_attempt(
            self.ports.warehouse.as_ref(),
            &self.settings,
            &jobs.first,
        )
        .await?;
        Ok(found.map(|(_, status)| status))
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
            after_success: None,
            quarantine: None,
            error: None,
        };
        let project = match job_project(&self.settings, event) {
            Ok(p) => p,
            Err(f) => {
                out.error = Some(f.0);
                return Ok(out);
            }
        };
        let prepared = match prepare_batch(self.context(), event).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => {
                out.error = Some(f.0);
                return Ok(out);
            }
        };
        out.ordered = prepared.config.ordered || self.settings.order_per_table;
        out.after_success = prepared.config.ingest.describe_after_success();
        out.quarantine = prepared
            .config
            .ingest
            .quarantine
            .as_ref()
            .map(|q| match &q.to {
                Some((bucket, prefix)) => format!(
                    "bad files to gs://{bucket}/{prefix}<name>, at most {} halving rounds",
                    q.max_rounds
                ),
                None => format!(
                    "bad files to {}/_quarantine/<batch>/, at most {} halving rounds",
                    prepared.batch.table_prefix, q.max_rounds
                ),
            });
        let hint = job_hint(&self.settings, &event.bucket, &event.name);
        let generation = event.generation.unwrap_or_default();
        let stem = JobIdStem::of_batch(&self.settings, &hint, &prepared.batch, generation);
        match plan_batch(&self.settings, &prepared, &project, &stem) {
            Ok(plan) => out.plan = Some(plan),
            Err(f) => out.error = Some(f.0),
        }
        out.batch = Some(prepared.batch);
        Ok(out)
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
    /// What happens to the batch's files once it is done (`ingest.json`), when anything does.
    pub after_success: Option<String>,
    /// Where bad files would go if a load failed because of them (`quarantine`), when on.
    pub quarantine: Option<String>,
    /// Why the batch cannot be applied.
    pub error: Option<String>,
}
