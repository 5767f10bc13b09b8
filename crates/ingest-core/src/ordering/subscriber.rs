//! The subscriber side: one run over a table's backlog, applying its items strictly in
//! order under the lock, handing over before the deadline, and leaving the table by the exit
//! protocol (see the [module](super) documentation for the protocol).

use chrono::{DateTime, Utc};

use super::publisher::start_gate_open;
use super::{
    age_of, first_backlog_item, marker_of_item, resume_steps, table_of, BacklogEntry, LockContent,
    LockState, LOCK_FILENAME, PARKED_PREFIX,
};
use crate::destination::resolve_batch;
use crate::event::ObjectEvent;
use crate::outcome::{IngestError, Outcome};
use crate::pipeline::after_success;
use crate::pipeline::jobs::{
    attempt_of, create_destination, follow, is_load_quota_message, quota_parts, retriable_parts,
    retry_id, submit_one, SubmitError,
};
use crate::pipeline::prepare::{job_hint, job_project, plan_batch, prepare_batch};
use crate::pipeline::record::{self, first_job_error, mode_of};
use crate::pipeline::{chrono_duration, store_error, warehouse_error, Context, Fatal, Step};
use crate::plan::{JobIdStem, LoadPlan, PlanMode};
use crate::ports::{JobRef, JobState, JobStatus, PutMode, StoreError};
use crate::settings::BACKFILL_FILENAME;
use std::sync::atomic::Ordering;

fn transient(event: &ObjectEvent, e: StoreError) -> IngestError {
    store_error(event, e)
}

/// One subscriber run.
struct Subscriber<'a> {
    ctx: Context<'a>,
    event: &'a ObjectEvent,
    bucket: &'a str,
    table: String,
    holder: String,
    deadline: DateTime<Utc>,
    /// How long before the deadline to hand over: `RESTART_BUFFER_SECONDS`, but never more
    /// than a third of the time this run has, so a short deadline still makes progress.
    buffer: chrono::Duration,
    applied: Vec<String>,
    /// Whether this run submitted jobs: a batch whose jobs then hit the table's load quota is
    /// parked; one found at the quota by a later run gets its next attempt first.
    submitted: std::sync::atomic::AtomicBool,
}

/// Runs the subscriber of one table's backlog until the backlog is empty, the table stops,
/// validation is awaited, or the deadline comes near (then it hands over).
pub(crate) async fn run_subscriber(
    ctx: Context<'_>,
    event: &ObjectEvent,
    deadline: DateTime<Utc>,
) -> Result<Outcome, IngestError> {
    let table = match table_of(&ctx, event, "_BACKFILL") {
        Ok(table) => table,
        Err(failed) => return Ok(failed),
    };
    // The subscriber hands over before the caller's deadline, not before WAIT_FOR_JOB_SECONDS.
    let now = ctx.ports.clock.now();
    let holder = format!(
        "{}-{}",
        event.generation.unwrap_or_default(),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let available = (deadline - now).max(chrono::Duration::zero());
    let buffer = chrono_duration(ctx.settings.restart_buffer).min(available / 3);
    let mut run = Subscriber {
        ctx,
        event,
        bucket: &event.bucket,
        table,
        holder,
        deadline,
        buffer,
        applied: Vec::new(),
        submitted: std::sync::atomic::AtomicBool::new(false),
    };
    if !start_gate_open(ctx, event, &run.table).await? {
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
            if self.ctx.ports.clock.now() + self.buffer >= self.deadline {
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
        let ports = self.ctx.ports;
        let job_prefix = &self.ctx.settings.job_prefix;
        let lock = super::read_lock(ports.store.as_ref(), self.bucket, &self.table, job_prefix)
            .await
            .map_err(|e| transient(self.event, e))?;
        let age = lock
            .as_ref()
            .map(|(meta, ..)| age_of(meta, ports.clock.now()));
        ports.observer.ordered_lock_observed(&self.table, age);
        Ok(lock.map(|(meta, _, content)| (meta.generation, content)))
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
        let ports = self.ctx.ports;
        let success = &self.ctx.settings.success_filename;
        let (first, items) =
            first_backlog_item(ports.store.as_ref(), success, self.bucket, &self.table)
                .await
                .map_err(|e| transient(self.event, e))?;
        ports.observer.ordered_backlog_observed(&self.table, items);
        Ok(first.map(|o| o.name))
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
            heartbeat: self.ctx.ports.clock.now(),
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
                .ctx
                .ports
                .store
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
        match create_destination(self.ctx.ports, marker_event, plan).await {
            Ok(()) => {}
            Err(SubmitError::Transient(e)) => return Err(warehouse_error(self.event, e)),
            Err(SubmitError::Rejected(msg)) => return Ok(Some(msg)),
        }
        for (job, id) in plan.jobs.iter().zip(job_ids) {
            let mut job = job.clone();
            job.job_id = id.clone();
            match submit_one(self.ctx.ports, marker_event, &job).await {
                Ok(_) => self.submitted.store(true, Ordering::Relaxed),
                Err(SubmitError::Transient(e)) => return Err(warehouse_error(self.event, e)),
                Err(SubmitError::Rejected(msg)) => return Ok(Some(msg)),
            }
        }
        Ok(None)
    }

    /// The event of an item's marker and the plan of its jobs.
    async fn plan_item(&self, item: &str) -> Result<Step<(ObjectEvent, LoadPlan)>, IngestError> {
        let store = &self.ctx.ports.store;
        let Some(marker) = marker_of_item(item) else {
            return Ok(Step::Fatal(Fatal(format!(
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
                    return Ok(Step::Fatal(Fatal(format!(
                    "gs://{}/{marker}: the success marker of backlog item {item} no longer exists",
                    self.bucket
                ))))
                }
                Err(e) => return Err(transient(self.event, e)),
            },
        };
        let marker_event = ObjectEvent::finalized(self.bucket, &marker, generation);
        let prepared = match prepare_batch(self.ctx, &marker_event).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => return Ok(Step::Fatal(f)),
        };
        let project = match job_project(self.ctx.settings, &marker_event) {
            Ok(p) => p,
            Err(f) => return Ok(Step::Fatal(f)),
        };
        let hint = job_hint(self.ctx.settings, self.bucket, &marker);
        let stem = JobIdStem::of_batch(self.ctx.settings, &hint, &prepared.batch, generation);
        match plan_batch(self.ctx.settings, &prepared, &project, &stem) {
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
            match self.ctx.ports.warehouse.job_status(&job).await {
                Ok(Some(s)) if s.state == JobState::Done && s.error.is_some() => continue,
                Ok(_) => return Ok(attempt),
                Err(e) => return Err(warehouse_error(self.event, e)),
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
            .ctx
            .ports
            .store
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
        let settings = self.ctx.settings;
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
        let now = self.ctx.ports.clock.now();
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
                .ctx
                .ports
                .warehouse
                .job_status(job)
                .await
                .map_err(|e| warehouse_error(self.event, e))?;
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
            let now = self.ctx.ports.clock.now();
            let until = (self.deadline - buffer).min(now + beat);
            statuses = follow(self.ctx.ports, statuses, until)
                .await
                .map_err(|e| warehouse_error(self.event, e))?;
            if statuses.iter().all(|s| s.state == JobState::Done) {
                break;
            }
            if self.ctx.ports.clock.now() + buffer >= self.deadline {
                return self
                    .hand_over(Some((generation, state)))
                    .await
                    .map(Next::Return);
            }
            let mut beat_state = state.clone();
            beat_state.heartbeat = self.ctx.ports.clock.now();
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
        self.drop_lock(generation).await
    }

    /// Deletes the lock at `generation`; gone already or replaced is as good.
    async fn drop_lock(&self, generation: i64) -> Result<Next, IngestError> {
        match self
            .ctx
            .ports
            .store
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
        let retry = retriable_parts(self.ctx.settings, &statuses);
        if !retry.is_empty() {
            return self.retry(generation, state, &statuses, &retry).await;
        }
        let quota = quota_parts(&statuses);
        if !quota.is_empty() {
            if self.submitted.swap(true, Ordering::Relaxed) {
                return self
                    .park(generation, state, &statuses, &quota)
                    .await
                    .map(Next::Return);
            }
            return self.retry(generation, state, &statuses, &quota).await;
        }
        let failure = first_job_error(&statuses);
        let mode = mode_of(&statuses);
        let transform = mode == PlanMode::Transform;
        let failure = match failure {
            Some(f) => Some(f),
            None if transform && self.ctx.settings.fail_on_zero_dml_rows_affected => {
                crate::transform::check_dml_rows(self.ctx.ports.warehouse.as_ref(), &statuses)
                    .await
                    .map_err(|e| warehouse_error(self.event, e))?
            }
            None => None,
        };
        if let Some(error) = failure {
            return self
                .stop_at(generation, state, error)
                .await
                .map(Next::Return);
        }
        self.record_batch(state, state.job_ids.clone(), mode, "done", None, &statuses)
            .await?;
        if after_success::labelled(&statuses) {
            self.clean_up(state).await?;
        }
        let store = &self.ctx.ports.store;
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
        if self.ctx.settings.wait_for_validation {
            // Leave _BACKFILL in place: only a new one, dropped by the validator, continues
            // (and a publisher's create-only _BACKFILL fails meanwhile).
            return Ok(Next::Return(
                self.done("waiting for validation (WAIT_FOR_VALIDATION)"),
            ));
        }
        Ok(Next::Continue)
    }

    /// The post-success actions of the batch just applied (`pipeline::after_success`), before
    /// its backlog item goes: a subscriber that dies half-way finishes them when it follows the
    /// lock's jobs again.
    async fn clean_up(&self, state: &LockState) -> Result<(), IngestError> {
        let marker = ObjectEvent::finalized(self.bucket, &state.marker, state.marker_generation);
        match prepare_batch(self.ctx, &marker).await? {
            Step::Ok(prepared) => after_success::run(self.ctx, &marker, &prepared).await,
            Step::Fatal(f) => {
                tracing::error!(object = %marker.uri(), error = %f.0, "after success: the batch cannot be read again; its files stay: {}", f.0);
                Ok(())
            }
        }
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
            let attempt = attempt_of(&statuses[i].job.job_id) + 1;
            if let (Some(id), Some(job)) = (next.job_ids.get_mut(i), plan.jobs.get(i)) {
                *id = retry_id(&job.job_id, attempt);
            }
        }
        next.heartbeat = self.ctx.ports.clock.now();
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
        let mut row = record::row(
            format!("gs://{}/{}", self.bucket, state.marker),
            state.marker_generation,
            statuses,
            outcome,
            error,
            self.ctx.ports.clock.now(),
        );
        row.job_ids = job_ids;
        row.mode = mode.as_str().to_string();
        // For ordered tables the destination comes from the path alone (DESTINATION_REGEX).
        if let Ok(batch) = resolve_batch(
            &self.ctx.settings.destination_regex,
            None,
            self.ctx.settings.storage_project(),
            None,
            self.bucket,
            &state.marker,
        ) {
            row = record::with_batch(row, &batch);
        }
        record::write(self.ctx.settings, self.ctx.ports, &row)
            .await
            .map_err(|e| warehouse_error(self.event, e))
    }

    /// The table's load quota stopped the batch of the lock `state` (see [`Self::stop_table`]).
    async fn park(
        &mut self,
        generation: i64,
        state: &LockState,
        statuses: &[JobStatus],
        quota: &[usize],
    ) -> Result<Outcome, IngestError> {
        let reason = quota
            .iter()
            .find_map(|&i| statuses[i].error.as_ref())
            .map_or(String::new(), |e| format!("{}: {}", e.reason, e.message));
        self.stop_at(generation, state, reason).await
    }

    /// Stops the table on a failed batch: the lock keeps the job ids and the error.
    ///
    /// The table's daily load quota is a pause, not a failure: the batch is recorded `parked`,
    /// the lock's error starts with [`PARKED_PREFIX`], and `bq-ingest reconcile --apply` (or
    /// `resume`) continues the table once the quota allows; its next attempt gets new ids.
    async fn stop_table(
        &mut self,
        generation: Option<i64>,
        item: &str,
        state: Option<&LockState>,
        job_ids: Vec<String>,
        error: String,
    ) -> Result<Outcome, IngestError> {
        if !is_load_quota_message(&error) {
            return self
                .stop_table_as(generation, item, state, job_ids, error, "failed")
                .await;
        }
        let jobs = job_ids
            .iter()
            .map(|id| JobRef {
                project: state.map(|s| s.project.clone()).unwrap_or_default(),
                job_id: id.clone(),
                location: state.and_then(|s| s.location.clone()),
            })
            .collect();
        let error = format!("{PARKED_PREFIX}{error}");
        let outcome = self
            .stop_table_as(generation, item, state, job_ids, error, "parked")
            .await?;
        Ok(match outcome {
            Outcome::Failed { error } => Outcome::Parked { jobs, error },
            other => other,
        })
    }

    /// [`Self::stop_table`], recording the batch with `row_state` (`failed`, `parked`).
    async fn stop_table_as(
        &mut self,
        generation: Option<i64>,
        item: &str,
        state: Option<&LockState>,
        job_ids: Vec<String>,
        error: String,
        row_state: &str,
    ) -> Result<Outcome, IngestError> {
        let now = self.ctx.ports.clock.now();
        let marker = marker_of_item(item).unwrap_or_else(|| item.to_string());
        let mut stopped = state.cloned().unwrap_or(LockState {
            item: item.to_string(),
            marker: marker.clone(),
            marker_generation: 0,
            job_ids: job_ids.clone(),
            project: self
                .ctx
                .settings
                .job_project()
                .unwrap_or_default()
                .to_string(),
            location: self.ctx.settings.bq_location.clone(),
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
            row_state,
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
            .ctx
            .settings
            .job_project()
            .unwrap_or_default()
            .to_string();
        let job = JobRef {
            project: project.clone(),
            job_id: job_id.clone(),
            location: self.ctx.settings.bq_location.clone(),
        };
        let status = self
            .ctx
            .ports
            .warehouse
            .job_status(&job)
            .await
            .map_err(|e| warehouse_error(self.event, e))?;
        let item = self.first_item().await?.unwrap_or_default();
        let state = LockState {
            item: item.clone(),
            marker: marker_of_item(&item).unwrap_or_default(),
            marker_generation: 0,
            job_ids: vec![job_id],
            project,
            location: job.location.clone(),
            holder: Some(self.holder.clone()),
            heartbeat: self.ctx.ports.clock.now(),
            error: None,
        };
        match status {
            // The Python function's job is gone: convert the lock and apply the item afresh.
            None => self.drop_lock(generation).await,
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
        self.ctx
            .ports
            .store
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
        let store = &self.ctx.ports.store;
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
