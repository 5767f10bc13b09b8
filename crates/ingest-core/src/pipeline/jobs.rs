//! Jobs: their attempts and ids, which errors are worth another attempt, submitting them
//! (a duplicate id is the same job), and following them to the end.
//!
//! A part of a batch has attempt 0 under the id [`crate::plan::job_id`] gives it, and attempt
//! *n* under `<id>-r<n>` ([`retry_id`]); [`attempt_of`] reads *n* back from an id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Ports;
use crate::event::ObjectEvent;
use crate::plan::{JobIdStem, LoadPlan, PARTS_LABEL};
use crate::ports::{
    Clock, JobError, JobRef, JobRequest, JobState, JobStatus, Warehouse, WarehouseError,
};
use crate::settings::Settings;

/// One batch being applied: what it needs to plan (again) and until when it waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchRun<'a> {
    pub(crate) event: &'a ObjectEvent,
    pub(crate) project: &'a str,
    pub(crate) hint: &'a str,
    /// What the ids of the batch's jobs share (made from `event`, `hint` and `generation`).
    pub(crate) stem: &'a JobIdStem,
    pub(crate) generation: i64,
    pub(crate) deadline: DateTime<Utc>,
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

/// Whether a failed job (or a refused `jobs.insert`, by its message) hit BigQuery's daily
/// quota of load jobs per table ("Quota exceeded: Your table exceeded quota for imports or
/// query appends per table"): not a failure of the batch but a pause — the batch is parked and
/// loaded under its next attempt's ids once the quota allows.
///
/// ```
/// use ingest_core::ingest::is_load_quota_error;
/// use ingest_core::ports::JobError;
/// let e = |reason: &str, message: &str| JobError { reason: reason.into(), message: message.into() };
/// assert!(is_load_quota_error(&e("quotaExceeded", "Quota exceeded: Your table exceeded quota for imports or query appends per table.")));
/// assert!(is_load_quota_error(&e("quotaExceeded", "Quota exceeded: table imports per day")));
/// assert!(!is_load_quota_error(&e("quotaExceeded", "Too many concurrent queries")));
/// assert!(!is_load_quota_error(&e("invalid", "imports per table")));
/// ```
pub fn is_load_quota_error(error: &JobError) -> bool {
    error.reason == "quotaExceeded" && is_load_quota_message(&error.message)
}

/// Whether an error message is the per-table load quota's (see [`is_load_quota_error`]).
pub(crate) fn is_load_quota_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("quota")
        && (message.contains("imports or query appends per table")
            || message.contains("imports per table")
            || message.contains("table imports per day")
            || message.contains("load jobs per table"))
}

/// The parts whose job hit the per-table load quota ([`is_load_quota_error`]).
pub(crate) fn quota_parts(statuses: &[JobStatus]) -> Vec<usize> {
    (0..statuses.len())
        .filter(|&i| statuses[i].error.as_ref().is_some_and(is_load_quota_error))
        .collect()
}

/// At most this many attempts of a part are made for the load quota (one per park and
/// redelivery or `reconcile`: about a month of hourly sweeps).
pub(crate) const MAX_QUOTA_ATTEMPTS: u32 = 1000;

/// The id of attempt `attempt` of a job: the plain id for attempt 0, `<id>-r<attempt>` after.
///
/// ```
/// use ingest_core::ordering::retry_id;
/// assert_eq!(retry_id("gcf-ingest-x_0", 0), "gcf-ingest-x_0");
/// assert_eq!(retry_id("gcf-ingest-x_0", 2), "gcf-ingest-x_0-r2");
/// ```
pub fn retry_id(job_id: &str, attempt: u32) -> String {
    if attempt == 0 {
        job_id.to_string()
    } else {
        format!("{job_id}-r{attempt}")
    }
}

/// The attempt number in a job id (`…-r2` → 2; 0 without suffix): the inverse of [`retry_id`].
pub(crate) fn attempt_of(job_id: &str) -> u32 {
    job_id
        .rsplit_once("-r")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The parts whose job failed with a retriable error and that have attempts left
/// (`MAX_RETRIES_ON_BIGQUERY_ERROR`).
pub(crate) fn retriable_parts(settings: &Settings, statuses: &[JobStatus]) -> Vec<usize> {
    let max = settings.max_retries_on_bigquery_error;
    (0..statuses.len())
        .filter(|&i| {
            attempt_of(&statuses[i].job.job_id) < max
                && statuses[i]
                    .error
                    .as_ref()
                    .is_some_and(is_retriable_job_error)
        })
        .collect()
}

/// The reference of a job to submit.
pub(crate) fn job_ref(job: &JobRequest) -> JobRef {
    JobRef {
        project: job.project.clone(),
        job_id: job.job_id.clone(),
        location: job.location.clone(),
    }
}

/// Why submitting failed.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// Retry later.
    Transient(WarehouseError),
    /// The warehouse refused the job: the batch fails (the message names the job).
    Rejected(String),
}

/// Submits one job; an id that exists already is the same batch and is followed.
pub(crate) async fn submit_one(
    ports: &Ports,
    event: &ObjectEvent,
    job: &JobRequest,
) -> Result<JobStatus, SubmitError> {
    let warehouse = ports.warehouse.as_ref();
    let job_ref = job_ref(job);
    match warehouse.submit(job).await {
        Ok(s) => {
            ports
                .observer
                .job_submitted(job.kind.name(), attempt_of(&job.job_id) > 0);
            if let crate::ports::JobKind::Load { destination, .. } = &job.kind {
                let table = format!(
                    "{}.{}.{}",
                    destination.project, destination.dataset, destination.table
                );
                ports.observer.load_job_created(&table, ports.clock.now());
            }
            Ok(s)
        }
        Err(WarehouseError::AlreadyExists { .. }) => match warehouse.job_status(&job_ref).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Ok(JobStatus::new(job_ref, JobState::Pending)),
            Err(e) if e.is_transient() => Err(SubmitError::Transient(e)),
            Err(e) => Err(SubmitError::Rejected(format!("{}: {e}", event.uri()))),
        },
        Err(e) if e.is_transient() => Err(SubmitError::Transient(e)),
        Err(e) => {
            // A rejected insert of an id that exists is a duplicate all the same (some
            // emulators answer a concurrent duplicate with 400 instead of 409).
            if let Ok(Some(existing)) = warehouse.job_status(&job_ref).await {
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

/// Creates the table the plan needs first ([`LoadPlan::create_table`]), unless it exists
/// (racing creators all go on).
pub(crate) async fn create_destination(
    ports: &Ports,
    event: &ObjectEvent,
    plan: &LoadPlan,
) -> Result<(), SubmitError> {
    let Some((table, resource)) = &plan.create_table else {
        return Ok(());
    };
    match ports.warehouse.create_table(table, resource).await {
        Ok(created) => {
            if created {
                tracing::info!(object = %event.uri(), table = %table, "created {table} from its table.json");
            }
            Ok(())
        }
        Err(e) if e.is_transient() => Err(SubmitError::Transient(e)),
        Err(e) => Err(SubmitError::Rejected(format!(
            "{}: creating {table} from its table.json: {e}",
            event.uri()
        ))),
    }
}

/// Submits every job of a plan, in order (after creating the table it needs).
pub(crate) async fn submit_all(
    ports: &Ports,
    event: &ObjectEvent,
    plan: &LoadPlan,
) -> Result<Vec<JobStatus>, SubmitError> {
    create_destination(ports, event, plan).await?;
    let mut statuses = Vec::with_capacity(plan.jobs.len());
    for job in &plan.jobs {
        statuses.push(submit_one(ports, event, job).await?);
    }
    Ok(statuses)
}

/// Polls the jobs (from [`poll_delay`]) until all are done or the deadline passes.
pub(crate) async fn follow(
    ports: &Ports,
    mut statuses: Vec<JobStatus>,
    deadline: DateTime<Utc>,
) -> Result<Vec<JobStatus>, WarehouseError> {
    let mut attempt = 0;
    loop {
        if statuses.iter().all(|s| s.state == JobState::Done) {
            return Ok(statuses);
        }
        let now = ports.clock.now();
        if now >= deadline {
            return Ok(statuses);
        }
        let left = (deadline - now).to_std().unwrap_or_default();
        ports.clock.sleep(poll_delay(attempt).min(left)).await;
        attempt += 1;
        for s in statuses.iter_mut() {
            if s.state != JobState::Done {
                if let Some(new) = ports.warehouse.job_status(&s.job).await? {
                    *s = new;
                }
            }
        }
    }
}

/// The latest attempt of a job: the job itself, or its retries `-r1`, `-r2`, … as long as each
/// one failed with a retriable error (or the load quota) and a later one exists.
pub(crate) async fn latest_attempt(
    warehouse: &dyn Warehouse,
    settings: &Settings,
    job: &JobRef,
) -> Result<Option<(u32, JobStatus)>, WarehouseError> {
    let Some(mut status) = warehouse.job_status(job).await? else {
        return Ok(None);
    };
    let mut attempt = 0;
    let another_attempt = |attempt: u32, status: &JobStatus| match &status.error {
        Some(e) if is_load_quota_error(e) => attempt < MAX_QUOTA_ATTEMPTS,
        Some(e) => is_retriable_job_error(e) && attempt < settings.max_retries_on_bigquery_error,
        None => false,
    };
    while another_attempt(attempt, &status) {
        let next = JobRef {
            job_id: retry_id(&job.job_id, attempt + 1),
            ..job.clone()
        };
        match warehouse.job_status(&next).await? {
            Some(s) => {
                status = s;
                attempt += 1;
            }
            None => break,
        }
    }
    Ok(Some((attempt, status)))
}

/// The batch of a marker as far as the warehouse knows it, from the ids alone.
#[derive(Debug, Clone)]
pub(crate) struct MarkerJobs {
    /// What every part's id shares.
    pub(crate) stem: JobIdStem,
    /// Part 0's reference (project, location).
    pub(crate) first: JobRef,
}

impl MarkerJobs {
    /// The reference of part `part` (attempt 0).
    pub(crate) fn part(&self, part: usize) -> JobRef {
        JobRef {
            job_id: self.stem.part(part),
            ..self.first.clone()
        }
    }

    /// When part 0 exists: the latest attempt of every part, or `None` when some part is
    /// missing (a crash between two submissions) so the batch must be planned again.
    pub(crate) async fn existing(
        &self,
        warehouse: &dyn Warehouse,
        settings: &Settings,
    ) -> Result<Option<Vec<(u32, JobStatus)>>, WarehouseError> {
        let Some(status) = latest_attempt(warehouse, settings, &self.first).await? else {
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
            match latest_attempt(warehouse, settings, &self.part(part)).await? {
                Some(s) => statuses.push(s),
                None => return Ok(None),
            }
        }
        Ok(Some(statuses))
    }
}

/// The job ids whose submission is under way in this process.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Arc<Mutex<HashSet<String>>>);

/// A turn taken with [`InFlight::take_turn`]; released when dropped (also when the future
/// holding it is cancelled).
#[derive(Debug)]
pub(crate) struct Turn {
    set: Arc<Mutex<HashSet<String>>>,
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
    pub(crate) async fn take_turn(
        &self,
        key: &str,
        clock: &dyn Clock,
        deadline: DateTime<Utc>,
    ) -> Turn {
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
