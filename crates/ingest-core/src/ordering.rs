//! Ordered ingest per table: a backlog and a lock kept in the object store.
//!
//! File names and meaning are those of the Python function, so existing buckets keep working:
//!
//! | object | meaning |
//! | --- | --- |
//! | `<table>/_backlog/<batch suffix>/<marker>` | a batch waiting to be applied; items are applied in lexicographic order |
//! | `<table>/_BACKFILL` | its finalize event runs the table's subscriber; it exists while a subscriber is responsible for the table |
//! | `<table>/_bqlock` | the job(s) the subscriber is waiting on (JSON; a plain job id from the Python function is understood) |
//! | `<table>/<START_BACKFILL_FILENAME>` | the start gate: nothing is applied before it exists |
//!
//! ## The protocol
//!
//! **Publisher** (a success marker of an ordered table): write the backlog item, then — unless
//! the start gate is closed — create `_BACKFILL` if absent (create-only).
//!
//! **Subscriber** (a `_BACKFILL` event), in a loop:
//! 1. No lock: take the first backlog item; none → the exit protocol. Otherwise plan its jobs
//!    (deterministic ids), create the lock (create-only) naming them, submit them.
//! 2. A lock of ours: if another holder's heartbeat is younger than the lease, answer
//!    "running" (the event is redelivered later); an older one is taken over (a job still
//!    running is followed, never replaced). Follow the jobs. Success: record, delete the item,
//!    delete the lock (generation precondition), go on. Failure: write the error into the lock,
//!    record it and stop the table; other tables go on.
//! 3. Before the deadline (`RESTART_BUFFER_SECONDS`), hand over: release the holder and rewrite
//!    `_BACKFILL`, whose new event continues.
//!
//! **Exit protocol**: delete `_BACKFILL` (only the generation that triggered this run), list the
//! backlog again, and re-create `_BACKFILL` if an item arrived meanwhile. With the publisher
//! writing its item *before* creating `_BACKFILL`, an item is either seen by the second listing
//! or its publisher's create succeeds: nothing is stranded.
//!
//! Every step is idempotent (deterministic job ids, create-only and generation-checked writes),
//! so an instance may die anywhere: the redelivered event, or any other instance, continues.
//! With `WAIT_FOR_VALIDATION`, the subscriber stops after each batch and leaves `_BACKFILL` in
//! place, so nothing continues (a publisher's create-only `_BACKFILL` fails) until a validator
//! drops a new `_BACKFILL`; a run that then finds the backlog empty removes it as usual.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::destination::table_prefix;
use crate::event::ObjectEvent;
use crate::ingest::{chrono_duration, IngestError, Ingestor, Outcome, PreparedBatch, Step};
use crate::plan::{LoadPlan, PlanMode};
use crate::ports::{JobRef, JobState, JobStatus, LoadRecord, PutMode, StoreError};
use crate::settings::BACKFILL_FILENAME;

/// The lock object's name at the table prefix.
pub const LOCK_FILENAME: &str = "_bqlock";
/// The backlog folder's name at the table prefix.
pub const BACKLOG_DIR: &str = "_backlog";

/// The content of `_bqlock` as bq-ingest writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    /// The backlog item being applied.
    pub item: String,
    /// Its success marker.
    pub marker: String,
    /// The marker's generation the jobs were planned for.
    pub marker_generation: i64,
    /// The jobs the table waits on (all parts of the batch).
    pub job_ids: Vec<String>,
    /// Their project.
    pub project: String,
    /// Their location.
    #[serde(default)]
    pub location: Option<String>,
    /// The subscriber run holding the lock; `None` when released for a hand-over.
    #[serde(default)]
    pub holder: Option<String>,
    /// When the holder last showed progress.
    pub heartbeat: DateTime<Utc>,
    /// Set when the batch failed for good: the table is stopped until an operator resumes it.
    #[serde(default)]
    pub error: Option<String>,
}

/// What `_bqlock` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockContent {
    /// Written by bq-ingest.
    Ours(LockState),
    /// A bare job id with the job prefix: written by the Python function.
    Legacy(String),
    /// A bare job id without the prefix (or anything else): an operator's lock, respected.
    Manual(String),
}

impl LockContent {
    /// Parses the lock object's content.
    pub fn parse(content: &[u8], job_prefix: &str) -> LockContent {
        if let Ok(state) = serde_json::from_slice::<LockState>(content) {
            return LockContent::Ours(state);
        }
        // Later versions of the Python function write `{"job_id": …, "table": …,
        // "retry_attempt_cnt": …}`; earlier ones the bare job id.
        let text = match serde_json::from_slice::<serde_json::Value>(content) {
            Ok(v) => match v.get("job_id").and_then(|j| j.as_str()) {
                Some(job) => job.trim().to_string(),
                None => String::from_utf8_lossy(content).trim().to_string(),
            },
            Err(_) => String::from_utf8_lossy(content).trim().to_string(),
        };
        if !job_prefix.is_empty()
            && text.starts_with(job_prefix)
            && !text.contains(char::is_whitespace)
        {
            LockContent::Legacy(text)
        } else {
            LockContent::Manual(text)
        }
    }
}

/// The backlog item of a marker: `<table>/_backlog/<marker path below the table>`.
///
/// ```
/// use ingest_core::ordering::backlog_item;
/// assert_eq!(backlog_item("ds/t", "ds/t/$2020/b1/_SUCCESS"), "ds/t/_backlog/$2020/b1/_SUCCESS");
/// assert_eq!(backlog_item("ds/t", "ds/t/_SUCCESS"), "ds/t/_backlog/_SUCCESS");
/// ```
pub fn backlog_item(table_prefix: &str, marker: &str) -> String {
    let suffix = marker
        .strip_prefix(table_prefix)
        .map(|s| s.trim_start_matches('/'))
        .unwrap_or(marker);
    format!("{table_prefix}/{BACKLOG_DIR}/{suffix}")
}

/// The marker a backlog item stands for (the inverse of [`backlog_item`]).
///
/// ```
/// use ingest_core::ordering::marker_of_item;
/// assert_eq!(marker_of_item("ds/t/_backlog/$2020/b1/_SUCCESS").as_deref(), Some("ds/t/$2020/b1/_SUCCESS"));
/// ```
pub fn marker_of_item(item: &str) -> Option<String> {
    let (table, suffix) = item.split_once(&format!("/{BACKLOG_DIR}/"))?;
    Some(format!("{table}/{suffix}"))
}

/// What a backlog item holds: the marker's generation when bq-ingest wrote it. Items written by
/// the Python function are empty; the marker is then looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BacklogEntry {
    marker: String,
    generation: i64,
}

fn table_level_files(ingestor: &Ingestor) -> Vec<&str> {
    let mut files = vec![BACKFILL_FILENAME, LOCK_FILENAME];
    if let Some(start) = ingestor.settings().start_backfill_filename.as_deref() {
        files.push(start);
    }
    files
}

fn transient(event: &ObjectEvent, e: StoreError) -> IngestError {
    IngestError::Store {
        event: event.uri(),
        source: e,
    }
}

/// Queues a batch of an ordered table on its backlog, and makes sure a subscriber runs.
pub(crate) async fn publish(
    ingestor: &Ingestor,
    event: &ObjectEvent,
    prepared: &PreparedBatch,
) -> Result<Outcome, IngestError> {
    let store = ingestor.store();
    let table = &prepared.batch.table_prefix;
    let item = backlog_item(table, &event.name);
    let entry = BacklogEntry {
        marker: event.name.clone(),
        generation: event.generation.unwrap_or_default(),
    };
    let content = serde_json::to_vec(&entry).unwrap_or_default();
    store
        .put(&event.bucket, &item, content, PutMode::Overwrite)
        .await
        .map_err(|e| transient(event, e))?;
    if !start_gate_open(ingestor, event, table).await? {
        tracing::info!(object = %event.uri(), item = %item, "queued; the start gate of {table} is closed");
        return Ok(Outcome::Queued { backlog_item: item });
    }
    let backfill = format!("{table}/{BACKFILL_FILENAME}");
    match store
        .put(&event.bucket, &backfill, Vec::new(), PutMode::Create)
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(transient(event, e)),
    }
    Ok(Outcome::Queued { backlog_item: item })
}

async fn start_gate_open(
    ingestor: &Ingestor,
    event: &ObjectEvent,
    table: &str,
) -> Result<bool, IngestError> {
    let Some(gate) = ingestor.settings().start_backfill_filename.as_deref() else {
        return Ok(true);
    };
    match ingestor
        .store()
        .stat(&event.bucket, &format!("{table}/{gate}"))
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(transient(event, e)),
    }
}

/// Opens the start gate of one table's backlog: rewrites `_BACKFILL`, whose event starts the
/// subscriber.
pub(crate) async fn open_start_gate(
    ingestor: &Ingestor,
    event: &ObjectEvent,
) -> Result<Outcome, IngestError> {
    let Some(table) = table_prefix(
        &ingestor.settings().destination_regex,
        &event.name,
        &table_level_files(ingestor),
    ) else {
        return Ok(Outcome::Failed {
            error: format!("{}: no table prefix for this start marker", event.uri()),
        });
    };
    let backfill = format!("{table}/{BACKFILL_FILENAME}");
    ingestor
        .store()
        .put(&event.bucket, &backfill, Vec::new(), PutMode::Overwrite)
        .await
        .map_err(|e| transient(event, e))?;
    Ok(Outcome::Queued {
        backlog_item: backfill,
    })
}

/// One subscriber run.
struct Subscriber<'a> {
    ingestor: &'a Ingestor,
    event: &'a ObjectEvent,
    bucket: &'a str,
    table: String,
    holder: String,
    deadline: DateTime<Utc>,
    /// How long before the deadline to hand over: `RESTART_BUFFER_SECONDS`, but never more
    /// than a third of the time this run has, so a short deadline still makes progress.
    buffer: chrono::Duration,
    applied: Vec<String>,
}

/// Runs the subscriber of one table's backlog until the backlog is empty, the table stops,
/// validation is awaited, or the deadline comes near (then it hands over).
pub(crate) async fn run_subscriber(
    ingestor: &Ingestor,
    event: &ObjectEvent,
    deadline: DateTime<Utc>,
) -> Result<Outcome, IngestError> {
    let Some(table) = table_prefix(
        &ingestor.settings().destination_regex,
        &event.name,
        &table_level_files(ingestor),
    ) else {
        return Ok(Outcome::Failed {
            error: format!("{}: no table prefix for this _BACKFILL", event.uri()),
        });
    };
    // The subscriber hands over before the caller's deadline, not before WAIT_FOR_JOB_SECONDS.
    let now = ingestor.clock().now();
    let holder = format!(
        "{}-{}",
        event.generation.unwrap_or_default(),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let available = (deadline - now).max(chrono::Duration::zero());
    let buffer = chrono_duration(ingestor.settings().restart_buffer).min(available / 3);
    let mut run = Subscriber {
        ingestor,
        event,
        bucket: &event.bucket,
        table,
        holder,
        deadline,
        buffer,
        applied: Vec::new(),
    };
    if !start_gate_open(ingestor, event, &run.table).await? {
        return Ok(Outcome::Ignored {
            reason: format!("the start gate of {} is closed", run.table),
        });
    }
    run.run().await
}

enum Next {
    Continue,
    Return(Outcome),
}

impl Subscriber<'_> {
    fn lock_name(&self) -> String {
        format!("{}/{LOCK_FILENAME}", self.table)
    }

    fn backfill_name(&self) -> String {
        format!("{}/{BACKFILL_FILENAME}", self.table)
    }

    fn done(&self, note: impl Into<String>) -> Outcome {
        let note = note.into();
        tracing::info!(table = %self.table, applied = self.applied.len(), "subscriber: {note}");
        Outcome::Ignored {
            reason: format!(
                "{}: applied {} batch(es) in order; {note}",
                self.table,
                self.applied.len()
            ),
        }
    }

    async fn run(&mut self) -> Result<Outcome, IngestError> {
        // Bounded: each iteration applies a batch, takes over a lock, or returns.
        for _ in 0..100_000 {
            if self.ingestor.clock().now() + self.buffer >= self.deadline {
                return self.hand_over(None).await;
            }
            match self.step().await? {
                Next::Continue => continue,
                Next::Return(o) => return Ok(o),
            }
        }
        self.hand_over(None).await
    }

    async fn read_lock(&self) -> Result<Option<(i64, LockContent)>, IngestError> {
        match self
            .ingestor
            .store()
            .read(self.bucket, &self.lock_name())
            .await
        {
            Ok((meta, content)) => Ok(Some((
                meta.generation,
                LockContent::parse(&content, &self.ingestor.settings().job_prefix),
            ))),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(transient(self.event, e)),
        }
    }

    async fn step(&mut self) -> Result<Next, IngestError> {
        match self.read_lock().await? {
            None => self.acquire_next().await,
            Some((_, LockContent::Manual(text))) => Ok(Next::Return(Outcome::Ignored {
                reason: format!(
                    "{}/{LOCK_FILENAME} holds {text:?}, not a bq-ingest job: the table is locked by hand; delete the lock to resume",
                    self.table
                ),
            })),
            Some((generation, LockContent::Legacy(job_id))) => {
                self.follow_legacy(generation, job_id).await
            }
            Some((generation, LockContent::Ours(state))) => self.follow_lock(generation, state).await,
        }
    }

    /// The first backlog item in lexicographic order.
    async fn first_item(&self) -> Result<Option<String>, IngestError> {
        let prefix = format!("{}/{BACKLOG_DIR}/", self.table);
        let success = &self.ingestor.settings().success_filename;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ingestor
                .store()
                .list(self.bucket, &prefix, token.as_deref(), Some(100))
                .await
                .map_err(|e| transient(self.event, e))?;
            if let Some(o) = page
                .objects
                .iter()
                .find(|o| o.name.rsplit('/').next() == Some(success.as_str()))
            {
                return Ok(Some(o.name.clone()));
            }
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(None),
            }
        }
    }

    async fn acquire_next(&mut self) -> Result<Next, IngestError> {
        let Some(item) = self.first_item().await? else {
            return self.exit_protocol().await.map(Next::Return);
        };
        let (marker_event, plan) = match self.plan_item(&item).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => {
                return self
                    .stop_table(None, &item, None, Vec::new(), f.0)
                    .await
                    .map(Next::Return)
            }
        };
        let attempt = self.attempt(&plan).await?;
        let job_ids: Vec<String> = plan
            .jobs
            .iter()
            .map(|j| retry_id(&j.job_id, attempt))
            .collect();
        let first = &plan.jobs[0];
        let state = LockState {
            item: item.clone(),
            marker: marker_event.name.clone(),
            marker_generation: marker_event.generation.unwrap_or_default(),
            job_ids: job_ids.clone(),
            project: first.project.clone(),
            location: first.location.clone(),
            holder: Some(self.holder.clone()),
            heartbeat: self.ingestor.clock().now(),
            error: None,
        };
        let lock_generation = match self.write_lock(&state, PutMode::Create).await? {
            Some(g) => g,
            // Someone else took the lock first: look at it again.
            None => return Ok(Next::Continue),
        };
        // The lock is the commit point: an item published between the listing and the lock
        // that sorts first must go first, so look once more before submitting anything.
        if self.first_item().await?.as_deref() != Some(item.as_str()) {
            match self
                .ingestor
                .store()
                .delete(self.bucket, &self.lock_name(), Some(lock_generation))
                .await
            {
                Ok(())
                | Err(StoreError::NotFound { .. })
                | Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(transient(self.event, e)),
            }
            return Ok(Next::Continue);
        }
        if let Some(rejected) = self.submit_as(&marker_event, &plan, &job_ids).await? {
            let Some((generation, _)) = self.read_lock().await? else {
                return Ok(Next::Continue);
            };
            return self
                .stop_table(
                    Some(generation),
                    &item,
                    Some(&state),
                    job_ids.clone(),
                    rejected,
                )
                .await
                .map(Next::Return);
        }
        Ok(Next::Continue)
    }

    /// Submits the plan's jobs under the lock's ids (an id that exists is the same job);
    /// `Some(message)` when the warehouse rejected one.
    async fn submit_as(
        &self,
        marker_event: &ObjectEvent,
        plan: &LoadPlan,
        job_ids: &[String],
    ) -> Result<Option<String>, IngestError> {
        for (job, id) in plan.jobs.iter().zip(job_ids) {
            let mut job = job.clone();
            job.job_id = id.clone();
            match self.ingestor.submit_one(marker_event, &job).await {
                Ok(_) => {}
                Err(crate::ingest::SubmitError::Transient(e)) => {
                    return Err(IngestError::Warehouse {
                        event: self.event.uri(),
                        source: e,
                    })
                }
                Err(crate::ingest::SubmitError::Rejected(msg)) => return Ok(Some(msg)),
            }
        }
        Ok(None)
    }

    /// The event of an item's marker and the plan of its jobs.
    async fn plan_item(&self, item: &str) -> Result<Step<(ObjectEvent, LoadPlan)>, IngestError> {
        let store = self.ingestor.store();
        let Some(marker) = marker_of_item(item) else {
            return Ok(Step::Fatal(crate::ingest::Fatal(format!(
                "gs://{}/{item}: not a backlog item",
                self.bucket
            ))));
        };
        let entry = match store.read(self.bucket, item).await {
            Ok((_, content)) => serde_json::from_slice::<BacklogEntry>(&content).ok(),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(transient(self.event, e)),
        };
        let generation = match entry.filter(|e| e.marker == marker && e.generation != 0) {
            Some(e) => e.generation,
            None => match store.stat(self.bucket, &marker).await {
                Ok(meta) => meta.generation,
                Err(StoreError::NotFound { .. }) => {
                    return Ok(Step::Fatal(crate::ingest::Fatal(format!(
                        "gs://{}/{marker}: the success marker of backlog item {item} no longer exists",
                        self.bucket
                    ))))
                }
                Err(e) => return Err(transient(self.event, e)),
            },
        };
        let marker_event = ObjectEvent::finalized(self.bucket, &marker, generation);
        let prepared = match self.ingestor.prepare(&marker_event).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => return Ok(Step::Fatal(f)),
        };
        let project = match self.ingestor.job_project(&marker_event) {
            Ok(p) => p,
            Err(f) => return Ok(Step::Fatal(f)),
        };
        let hint = self.ingestor.job_hint(self.bucket, &marker);
        match self
            .ingestor
            .plan(&marker_event, &prepared, &project, &hint, generation)
        {
            Ok(plan) => Ok(Step::Ok((marker_event, plan))),
            Err(f) => Ok(Step::Fatal(f)),
        }
    }

    /// The attempt whose job ids to use: the first whose part 0 does not exist, or has not
    /// failed. Attempt 0 uses the plain ids; a failed attempt with no lock means an operator
    /// resumed the table after fixing something, so the next attempt gets new ids.
    async fn attempt(&self, plan: &LoadPlan) -> Result<u32, IngestError> {
        let first = &plan.jobs[0];
        for attempt in 0..1000 {
            let job = JobRef {
                project: first.project.clone(),
                job_id: retry_id(&first.job_id, attempt),
                location: first.location.clone(),
            };
            match self.ingestor.warehouse().job_status(&job).await {
                Ok(Some(s)) if s.state == JobState::Done && s.error.is_some() => continue,
                Ok(_) => return Ok(attempt),
                Err(e) => {
                    return Err(IngestError::Warehouse {
                        event: self.event.uri(),
                        source: e,
                    })
                }
            }
        }
        Ok(1000)
    }

    /// Writes the lock; `None` when the precondition failed.
    async fn write_lock(
        &self,
        state: &LockState,
        mode: PutMode,
    ) -> Result<Option<i64>, IngestError> {
        let content = serde_json::to_vec_pretty(state).unwrap_or_default();
        match self
            .ingestor
            .store()
            .put(self.bucket, &self.lock_name(), content, mode)
            .await
        {
            Ok(meta) => Ok(Some(meta.generation)),
            Err(StoreError::AlreadyExists { .. }) | Err(StoreError::PreconditionFailed { .. }) => {
                Ok(None)
            }
            Err(e) => Err(transient(self.event, e)),
        }
    }

    async fn follow_lock(
        &mut self,
        generation: i64,
        state: LockState,
    ) -> Result<Next, IngestError> {
        let settings = self.ingestor.settings();
        let jobs: Vec<JobRef> = state
            .job_ids
            .iter()
            .map(|id| JobRef {
                project: state.project.clone(),
                job_id: id.clone(),
                location: state.location.clone(),
            })
            .collect();
        if let Some(error) = &state.error {
            return Ok(Next::Return(Outcome::Failed {
                error: format!(
                    "{}: stopped at {}: {error}. {}",
                    self.table,
                    state.item,
                    resume_steps(self.bucket, &self.table, &state.item)
                ),
            }));
        }
        let now = self.ingestor.clock().now();
        let mut generation = generation;
        if state.holder.as_deref() != Some(self.holder.as_str()) {
            let lease = chrono_duration(settings.lock_lease);
            if state.holder.is_some() && now - state.heartbeat < lease {
                // A live holder: the event comes back later.
                return Ok(Next::Return(Outcome::Running { jobs }));
            }
            let mut taken = state.clone();
            taken.holder = Some(self.holder.clone());
            taken.heartbeat = now;
            match self.write_lock(&taken, PutMode::Update(generation)).await? {
                Some(g) => generation = g,
                None => return Ok(Next::Continue),
            }
            tracing::warn!(table = %self.table, item = %state.item, previous = ?state.holder, "took over the lock of {}", self.table);
        }
        // Every job must exist: a holder may have died between the lock and a submission.
        let mut statuses = Vec::with_capacity(jobs.len());
        for (part, job) in jobs.iter().enumerate() {
            let status = self
                .ingestor
                .warehouse()
                .job_status(job)
                .await
                .map_err(|e| IngestError::Warehouse {
                    event: self.event.uri(),
                    source: e,
                })?;
            match status {
                Some(s) => statuses.push(s),
                None if part == 0 => return self.revalidate(generation, &state).await,
                None => return self.resubmit(generation, &state).await,
            }
        }
        // Follow until the hand-over point, refreshing the heartbeat every third of the lease.
        let buffer = self.buffer;
        let beat = chrono_duration(settings.lock_lease / 3);
        loop {
            let now = self.ingestor.clock().now();
            let until = (self.deadline - buffer).min(now + beat);
            statuses = self.ingestor.follow(statuses, until).await.map_err(|e| {
                IngestError::Warehouse {
                    event: self.event.uri(),
                    source: e,
                }
            })?;
            if statuses.iter().all(|s| s.state == JobState::Done) {
                break;
            }
            if self.ingestor.clock().now() + buffer >= self.deadline {
                return self
                    .hand_over(Some((generation, state)))
                    .await
                    .map(Next::Return);
            }
            let mut beat_state = state.clone();
            beat_state.heartbeat = self.ingestor.clock().now();
            match self
                .write_lock(&beat_state, PutMode::Update(generation))
                .await?
            {
                Some(g) => generation = g,
                None => return Ok(Next::Continue),
            }
        }
        self.finish(generation, &state, statuses).await
    }

    /// Nothing of the lock's batch was submitted (its holder died before that): the decision
    /// is only good if its item still sorts first, as when the lock was taken.
    async fn revalidate(
        &mut self,
        generation: i64,
        state: &LockState,
    ) -> Result<Next, IngestError> {
        if self.first_item().await?.as_deref() == Some(state.item.as_str()) {
            return self.resubmit(generation, state).await;
        }
        match self
            .ingestor
            .store()
            .delete(self.bucket, &self.lock_name(), Some(generation))
            .await
        {
            Ok(())
            | Err(StoreError::NotFound { .. })
            | Err(StoreError::PreconditionFailed { .. }) => Ok(Next::Continue),
            Err(e) => Err(transient(self.event, e)),
        }
    }

    async fn resubmit(&mut self, generation: i64, state: &LockState) -> Result<Next, IngestError> {
        let (marker_event, plan) = match self.plan_item(&state.item).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => return self.stop_at(generation, state, f.0).await.map(Next::Return),
        };
        if let Some(rejected) = self.submit_as(&marker_event, &plan, &state.job_ids).await? {
            return self
                .stop_at(generation, state, rejected)
                .await
                .map(Next::Return);
        }
        Ok(Next::Continue)
    }

    async fn finish(
        &mut self,
        generation: i64,
        state: &LockState,
        statuses: Vec<JobStatus>,
    ) -> Result<Next, IngestError> {
        let max = self.ingestor.settings().max_retries_on_bigquery_error;
        let retry: Vec<usize> = (0..statuses.len())
            .filter(|&i| {
                crate::ingest::attempt_of(&statuses[i].job.job_id) < max
                    && statuses[i]
                        .error
                        .as_ref()
                        .is_some_and(crate::ingest::is_retriable_job_error)
            })
            .collect();
        if !retry.is_empty() {
            return self.retry(generation, state, &statuses, &retry).await;
        }
        let failure = statuses.iter().find_map(|s| {
            s.error
                .as_ref()
                .map(|e| format!("job {} failed: {}: {}", s.job.job_id, e.reason, e.message))
        });
        let transform = statuses
            .iter()
            .any(|s| s.statement_type.is_some() || s.dml_affected_rows.is_some());
        let failure = match failure {
            Some(f) => Some(f),
            None if transform && self.ingestor.settings().fail_on_zero_dml_rows_affected => {
                crate::transform::check_dml_rows(self.ingestor.warehouse().as_ref(), &statuses)
                    .await
                    .map_err(|e| IngestError::Warehouse {
                        event: self.event.uri(),
                        source: e,
                    })?
            }
            None => None,
        };
        if let Some(error) = failure {
            return self
                .stop_at(generation, state, error)
                .await
                .map(Next::Return);
        }
        let mode = if transform {
            PlanMode::Transform
        } else {
            PlanMode::Load
        };
        self.record_batch(state, state.job_ids.clone(), mode, "done", None, &statuses)
            .await?;
        let store = self.ingestor.store();
        match store.delete(self.bucket, &state.item, None).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(transient(self.event, e)),
        }
        match store
            .delete(self.bucket, &self.lock_name(), Some(generation))
            .await
        {
            Ok(())
            | Err(StoreError::NotFound { .. })
            | Err(StoreError::PreconditionFailed { .. }) => {}
            Err(e) => return Err(transient(self.event, e)),
        }
        tracing::info!(table = %self.table, item = %state.item, jobs = ?state.job_ids, "applied {}", state.item);
        self.applied.push(state.item.clone());
        if self.ingestor.settings().wait_for_validation {
            // Leave _BACKFILL in place: only a new one, dropped by the validator, continues
            // (and a publisher's create-only _BACKFILL fails meanwhile).
            return Ok(Next::Return(
                self.done("waiting for validation (WAIT_FOR_VALIDATION)"),
            ));
        }
        Ok(Next::Continue)
    }

    /// Resubmits the parts whose jobs failed with a retriable error under their next
    /// attempt's id; the lock names the new jobs before they are submitted.
    async fn retry(
        &mut self,
        generation: i64,
        state: &LockState,
        statuses: &[JobStatus],
        parts: &[usize],
    ) -> Result<Next, IngestError> {
        let plan = match self.plan_item(&state.item).await? {
            Step::Ok((_, plan)) => plan,
            Step::Fatal(f) => return self.stop_at(generation, state, f.0).await.map(Next::Return),
        };
        let mut next = state.clone();
        for &i in parts {
            let attempt = crate::ingest::attempt_of(&statuses[i].job.job_id) + 1;
            if let (Some(id), Some(job)) = (next.job_ids.get_mut(i), plan.jobs.get(i)) {
                *id = retry_id(&job.job_id, attempt);
            }
        }
        next.heartbeat = self.ingestor.clock().now();
        next.holder = Some(self.holder.clone());
        if self
            .write_lock(&next, PutMode::Update(generation))
            .await?
            .is_none()
        {
            return Ok(Next::Continue);
        }
        tracing::warn!(table = %self.table, item = %state.item, jobs = ?next.job_ids, "retrying {} after a retriable job error", state.item);
        let failed: Vec<&JobStatus> = parts.iter().filter_map(|&i| statuses.get(i)).collect();
        let error = failed
            .iter()
            .find_map(|s| s.error.as_ref())
            .map(|e| format!("{}: {}", e.reason, e.message));
        let job_ids = failed.iter().map(|s| s.job.job_id.clone()).collect();
        self.record_batch(state, job_ids, PlanMode::Load, "retried", error, &[])
            .await?;
        // The lock names the new ids: following it submits them (they do not exist yet).
        Ok(Next::Continue)
    }

    /// Stops the table at the batch of the lock `state` (its job ids kept).
    async fn stop_at(
        &mut self,
        generation: i64,
        state: &LockState,
        error: String,
    ) -> Result<Outcome, IngestError> {
        self.stop_table(
            Some(generation),
            &state.item,
            Some(state),
            state.job_ids.clone(),
            error,
        )
        .await
    }

    /// Appends the state-table row of the batch of the lock `state`: rows, bytes and times from
    /// `statuses` (none for a failure or a retry), the destination from the marker's path.
    async fn record_batch(
        &self,
        state: &LockState,
        job_ids: Vec<String>,
        mode: PlanMode,
        outcome: &str,
        error: Option<String>,
        statuses: &[JobStatus],
    ) -> Result<(), IngestError> {
        let sum = |f: fn(&JobStatus) -> Option<u64>| -> Option<u64> {
            (!statuses.is_empty()).then(|| statuses.iter().filter_map(f).sum())
        };
        let record = LoadRecord {
            marker_uri: format!("gs://{}/{}", self.bucket, state.marker),
            marker_generation: state.marker_generation,
            destination: String::new(),
            batch_id: None,
            job_ids,
            mode: mode.as_str().to_string(),
            state: outcome.to_string(),
            error,
            rows: sum(|s| s.output_rows),
            bytes: sum(|s| s.input_bytes),
            submitted_at: statuses.iter().filter_map(|s| s.created).min(),
            started_at: statuses.iter().filter_map(|s| s.started).min(),
            ended_at: statuses
                .iter()
                .filter_map(|s| s.ended)
                .max()
                .unwrap_or_else(|| self.ingestor.clock().now()),
        };
        let record = self.with_destination(record).await;
        self.ingestor
            .record(&record)
            .await
            .map_err(|e| IngestError::Warehouse {
                event: self.event.uri(),
                source: e,
            })
    }

    async fn with_destination(&self, mut record: LoadRecord) -> LoadRecord {
        let marker = record
            .marker_uri
            .strip_prefix(&format!("gs://{}/", self.bucket))
            .unwrap_or_default()
            .to_string();
        if let Ok(batch) = crate::destination::resolve_batch(
            &self.ingestor.settings().destination_regex,
            None,
            self.ingestor.settings().storage_project(),
            None,
            self.bucket,
            &marker,
        ) {
            record.destination = batch.destination.to_string();
            record.batch_id = batch.batch_id;
        }
        record
    }

    /// Stops the table on a failed batch: the lock keeps the job ids and the error.
    async fn stop_table(
        &mut self,
        generation: Option<i64>,
        item: &str,
        state: Option<&LockState>,
        job_ids: Vec<String>,
        error: String,
    ) -> Result<Outcome, IngestError> {
        let now = self.ingestor.clock().now();
        let marker = marker_of_item(item).unwrap_or_else(|| item.to_string());
        let mut stopped = state.cloned().unwrap_or(LockState {
            item: item.to_string(),
            marker: marker.clone(),
            marker_generation: 0,
            job_ids: job_ids.clone(),
            project: self
                .ingestor
                .settings()
                .job_project()
                .unwrap_or_default()
                .to_string(),
            location: self.ingestor.settings().bq_location.clone(),
            holder: None,
            heartbeat: now,
            error: None,
        });
        stopped.error = Some(error.clone());
        stopped.holder = None;
        stopped.heartbeat = now;
        let mode = match generation {
            Some(g) => PutMode::Update(g),
            None => PutMode::Create,
        };
        // The row first: once the lock shows the error, no later run records the failure.
        self.record_batch(
            &stopped,
            job_ids.clone(),
            PlanMode::Load,
            "failed",
            Some(error.clone()),
            &[],
        )
        .await?;
        if self.write_lock(&stopped, mode).await?.is_none() {
            // The lock changed under us: someone else decides now.
            return Ok(Outcome::Running { jobs: Vec::new() });
        }
        let steps = resume_steps(self.bucket, &self.table, item);
        tracing::error!(
            table = %self.table,
            item = %item,
            jobs = ?job_ids,
            error = %error,
            "ordered table {} stopped at {item}: {error}. {steps}",
            self.table
        );
        Ok(Outcome::Failed {
            error: format!("{}: stopped at {item}: {error}. {steps}", self.table),
        })
    }

    async fn follow_legacy(
        &mut self,
        generation: i64,
        job_id: String,
    ) -> Result<Next, IngestError> {
        let project = self
            .ingestor
            .settings()
            .job_project()
            .unwrap_or_default()
            .to_string();
        let job = JobRef {
            project: project.clone(),
            job_id: job_id.clone(),
            location: self.ingestor.settings().bq_location.clone(),
        };
        let status = self
            .ingestor
            .warehouse()
            .job_status(&job)
            .await
            .map_err(|e| IngestError::Warehouse {
                event: self.event.uri(),
                source: e,
            })?;
        let item = self.first_item().await?.unwrap_or_default();
        let state = LockState {
            item: item.clone(),
            marker: marker_of_item(&item).unwrap_or_default(),
            marker_generation: 0,
            job_ids: vec![job_id],
            project,
            location: job.location.clone(),
            holder: Some(self.holder.clone()),
            heartbeat: self.ingestor.clock().now(),
            error: None,
        };
        match status {
            // The Python function's job is gone: convert the lock and apply the item afresh.
            None => match self
                .ingestor
                .store()
                .delete(self.bucket, &self.lock_name(), Some(generation))
                .await
            {
                Ok(())
                | Err(StoreError::NotFound { .. })
                | Err(StoreError::PreconditionFailed { .. }) => Ok(Next::Continue),
                Err(e) => Err(transient(self.event, e)),
            },
            Some(_) => match self.write_lock(&state, PutMode::Update(generation)).await? {
                Some(_) => Ok(Next::Continue),
                None => Ok(Next::Continue),
            },
        }
    }

    /// Releases the holder and rewrites `_BACKFILL` so that a new event continues. Without a
    /// lock in hand, the lock is read: one this run holds is released too, so the next run
    /// takes over at once instead of waiting for the lease.
    async fn hand_over(&mut self, lock: Option<(i64, LockState)>) -> Result<Outcome, IngestError> {
        let lock = match lock {
            Some(l) => Some(l),
            None => match self.read_lock().await? {
                Some((generation, LockContent::Ours(state)))
                    if state.holder.as_deref() == Some(self.holder.as_str()) =>
                {
                    Some((generation, state))
                }
                _ => None,
            },
        };
        if let Some((generation, mut state)) = lock {
            state.holder = None;
            let _ = self.write_lock(&state, PutMode::Update(generation)).await?;
        }
        self.ingestor
            .store()
            .put(
                self.bucket,
                &self.backfill_name(),
                Vec::new(),
                PutMode::Overwrite,
            )
            .await
            .map_err(|e| transient(self.event, e))?;
        Ok(self.done("handed over before the deadline"))
    }

    /// The backlog is empty: remove `_BACKFILL`, then look again so that an item published
    /// meanwhile is not stranded.
    async fn exit_protocol(&mut self) -> Result<Outcome, IngestError> {
        let store = self.ingestor.store();
        match store
            .delete(self.bucket, &self.backfill_name(), self.event.generation)
            .await
        {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            // A newer _BACKFILL exists: its own event is responsible for the table.
            Err(StoreError::PreconditionFailed { .. }) => {
                return Ok(self.done("a newer _BACKFILL takes over"))
            }
            Err(e) => return Err(transient(self.event, e)),
        }
        if self.first_item().await?.is_some() {
            match store
                .put(
                    self.bucket,
                    &self.backfill_name(),
                    Vec::new(),
                    PutMode::Create,
                )
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(transient(self.event, e)),
            }
            return Ok(self.done("an item arrived while exiting; _BACKFILL re-created"));
        }
        Ok(self.done("backlog empty"))
    }
}

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

/// What an operator does to resume a stopped table.
pub fn resume_steps(bucket: &str, table: &str, item: &str) -> String {
    format!(
        "To resume: fix the batch (or skip it: gsutil rm gs://{bucket}/{item}), then \
         gsutil rm gs://{bucket}/{table}/{LOCK_FILENAME} and drop a new \
         gs://{bucket}/{table}/{BACKFILL_FILENAME}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_content_of_every_writer_is_understood() {
        let ours = LockState {
            item: "ds/t/_backlog/b1/_SUCCESS".into(),
            marker: "ds/t/b1/_SUCCESS".into(),
            marker_generation: 7,
            job_ids: vec!["gcf-ingest-ds_t_ab_0".into()],
            project: "my-project".into(),
            location: None,
            holder: Some("h".into()),
            heartbeat: chrono::DateTime::UNIX_EPOCH,
            error: None,
        };
        let bytes = serde_json::to_vec(&ours).unwrap();
        assert_eq!(
            LockContent::parse(&bytes, "gcf-ingest-"),
            LockContent::Ours(ours)
        );
        assert_eq!(
            LockContent::parse(b"gcf-ingest-ds-t-123\n", "gcf-ingest-"),
            LockContent::Legacy("gcf-ingest-ds-t-123".into())
        );
        assert_eq!(
            LockContent::parse(
                br#"{"job_id": "gcf-ingest-x", "table": "p.ds.t", "retry_attempt_cnt": 0}"#,
                "gcf-ingest-"
            ),
            LockContent::Legacy("gcf-ingest-x".into())
        );
        assert_eq!(
            LockContent::parse(b"bquxjob_1234", "gcf-ingest-"),
            LockContent::Manual("bquxjob_1234".into())
        );
    }

    #[test]
    fn backlog_items_and_markers_map_both_ways() {
        for marker in [
            "ds/t/_SUCCESS",
            "ds/t/$2020010203/_SUCCESS",
            "ds/t/2020/01/02/03/b1/_SUCCESS",
        ] {
            let item = backlog_item("ds/t", marker);
            assert!(item.starts_with("ds/t/_backlog/"), "{item}");
            assert_eq!(marker_of_item(&item).as_deref(), Some(marker));
        }
    }
}
