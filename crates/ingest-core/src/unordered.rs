//! The unordered path: a batch's jobs submitted at once, followed to the end, parts that
//! failed with a retriable error resubmitted under their next attempt's id, the outcome
//! recorded.

use chrono::{DateTime, Utc};

use crate::destination::Batch;
use crate::event::ObjectEvent;
use crate::outcome::{IngestError, Outcome};
use crate::pipeline::after_success;
pub(crate) use crate::pipeline::jobs::BatchRun;
use crate::pipeline::jobs::{
    attempt_of, follow, is_load_quota_message, quota_parts, retriable_parts, retry_id, submit_all,
    submit_one, SubmitError, Turn,
};
use crate::pipeline::prepare::{plan_batch, prepare_batch, PartlyListed, PreparedBatch};
use crate::pipeline::record::{self, first_job_error, with_batch};
use crate::pipeline::streamed::{self, Halt};
use crate::pipeline::{warehouse_error, Context, Fatal, Step};
use crate::plan::{LoadPlan, PlanMode};
use crate::ports::{JobRef, JobState, JobStatus};

/// A batch seen for the first time: plans it, submits every part (then gives `turn` back, so
/// that concurrent deliveries of the marker find the jobs and follow them too) and follows
/// them. A big load whose listing is still being read submits its parts as they fill
/// (`pipeline::streamed`); any other batch is listed to its end first.
pub(crate) async fn apply_new(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    partly: PartlyListed,
    turn: Turn,
) -> Result<Outcome, IngestError> {
    let event = run.event;
    let submitted_at;
    let (prepared, plan, submitted) = if streamed::streamable(ctx.settings, &partly) {
        submitted_at = ctx.ports.clock.now();
        let s = streamed::plan_and_submit(ctx, run, partly).await?;
        (s.prepared, s.plan, s.submitted)
    } else {
        let prepared = match partly.finish(ctx, event).await? {
            Step::Ok(p) => p,
            Step::Fatal(f) => return record::fail(ctx, event, None, Some(run.generation), f).await,
        };
        let plan = match plan_batch(ctx.settings, &prepared, run.project, run.stem) {
            Ok(p) => p,
            Err(f) => {
                let batch = Some(&prepared.batch);
                return record::fail(ctx, event, batch, Some(run.generation), f).await;
            }
        };
        submitted_at = ctx.ports.clock.now();
        let submitted = submit_all(ctx.ports, event, &plan).await;
        (prepared, plan, submitted.map_err(Halt::Submit))
    };
    drop(turn);
    let statuses = match submitted {
        Ok(s) => s,
        Err(Halt::Submit(SubmitError::Transient(e))) => return Err(warehouse_error(event, e)),
        Err(Halt::Submit(SubmitError::Rejected(e))) if is_load_quota_message(&e) => {
            let batch = Some((&prepared.batch, plan.mode));
            return park(ctx, event, batch, &[], &[], Some(submitted_at)).await;
        }
        Err(Halt::Submit(SubmitError::Rejected(e))) => {
            let batch = Some(&prepared.batch);
            return record::fail(ctx, event, batch, Some(run.generation), Fatal(e)).await;
        }
        Err(Halt::Fatal(f)) => {
            let batch = Some(&prepared.batch);
            return record::fail(ctx, event, batch, Some(run.generation), f).await;
        }
    };
    follow_batch(
        ctx,
        run,
        Some((prepared, plan)),
        statuses,
        Some(submitted_at),
    )
    .await
}

/// Follows a batch's jobs to the end, resubmitting a part whose job failed with a retriable
/// error under a new id (`<id>-r<n>`), at most `MAX_RETRIES_ON_BIGQUERY_ERROR` times; then
/// records the outcome. `planned` is `None` for a duplicate delivery: the batch is planned
/// again only when a part needs another attempt.
pub(crate) async fn follow_batch(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    mut planned: Option<(PreparedBatch, LoadPlan)>,
    mut statuses: Vec<JobStatus>,
    submitted_at: Option<DateTime<Utc>>,
) -> Result<Outcome, IngestError> {
    let event = run.event;
    // Whether this delivery submitted jobs: a part that then hits the load quota is parked; one
    // found at the quota from an earlier delivery gets its next attempt first.
    let mut submitted_here = submitted_at.is_some();
    let mut quarantined_here = false;
    loop {
        statuses = follow(ctx.ports, statuses, run.deadline)
            .await
            .map_err(|e| warehouse_error(event, e))?;
        if statuses.iter().any(|s| s.state != JobState::Done) {
            let jobs = statuses.iter().map(|s| s.job.clone()).collect();
            return Ok(Outcome::Running { jobs });
        }
        let mut retry = retriable_parts(ctx.settings, &statuses);
        let quota = quota_parts(&statuses);
        if retry.is_empty() && !quota.is_empty() {
            if submitted_here {
                let batch = planned.as_ref().map(|(p, plan)| (&p.batch, plan.mode));
                return park(ctx, event, batch, &statuses, &quota, submitted_at).await;
            }
            submitted_here = true;
            retry = quota;
        }
        if retry.is_empty() && !quarantined_here && wants_quarantine(&planned, &statuses) {
            quarantined_here = true;
            if planned.is_none() {
                planned = match plan_again(ctx, run).await? {
                    Ok(p) => Some(p),
                    Err(outcome) => return Ok(outcome),
                };
            }
            if let Some((prepared, plan)) = planned.take() {
                let rest =
                    crate::quarantine::quarantine(ctx, run, &prepared, &plan, &statuses).await?;
                planned = Some(match rest {
                    Some(rest) => {
                        statuses = rest.statuses;
                        (prepared, rest.plan)
                    }
                    None => (prepared, plan),
                });
                continue;
            }
        }
        if retry.is_empty() {
            let labelled = after_success::labelled(&statuses);
            let batch = planned.as_ref().map(|(p, plan)| (&p.batch, plan.mode));
            let outcome = finish(ctx, event, batch, statuses, submitted_at).await?;
            if matches!(outcome, Outcome::Done { .. }) {
                let prepared = planned.as_ref().map(|(p, _)| p);
                clean_up(ctx, event, prepared, labelled).await?;
            }
            return Ok(outcome);
        }
        if planned.is_none() {
            planned = match plan_again(ctx, run).await? {
                Ok(p) => Some(p),
                Err(outcome) => return Ok(outcome),
            };
        }
        let Some((prepared, plan)) = planned.as_ref() else {
            continue;
        };
        for i in retry {
            match resubmit(ctx, run, prepared, plan, &statuses[i], i, submitted_at).await? {
                Ok(status) => statuses[i] = status,
                Err(outcome) => return Ok(outcome),
            }
        }
    }
}

/// The post-success actions of a done batch (see `pipeline::after_success`): with the batch
/// this delivery prepared, or, for a duplicate delivery whose jobs carry the label, with the
/// batch prepared again (a first delivery may have died before it finished them).
async fn clean_up(
    ctx: Context<'_>,
    event: &ObjectEvent,
    prepared: Option<&PreparedBatch>,
    labelled: bool,
) -> Result<(), IngestError> {
    match prepared {
        Some(prepared) => after_success::run(ctx, event, prepared).await,
        None if labelled => match prepare_batch(ctx, event).await? {
            Step::Ok(prepared) => after_success::run(ctx, event, &prepared).await,
            Step::Fatal(f) => {
                tracing::error!(object = %event.uri(), error = %f.0, "after success: the batch cannot be read again; its files stay: {}", f.0);
                Ok(())
            }
        },
        None => Ok(()),
    }
}

/// Whether a batch whose jobs ended may quarantine bad files: some job failed, and the batch
/// has `quarantine` on (its config, or for a duplicate delivery its jobs' label).
fn wants_quarantine(planned: &Option<(PreparedBatch, LoadPlan)>, statuses: &[JobStatus]) -> bool {
    let on = match planned {
        Some((prepared, _)) => prepared.config.ingest.quarantine.is_some(),
        None => crate::quarantine::labelled(statuses),
    };
    on && statuses.iter().any(|s| s.error.is_some())
}

/// The plan of a batch that a duplicate delivery must resubmit a part of, or the recorded
/// failure when it cannot be planned any more.
async fn plan_again(
    ctx: Context<'_>,
    run: BatchRun<'_>,
) -> Result<Result<(PreparedBatch, LoadPlan), Outcome>, IngestError> {
    let prepared = match prepare_batch(ctx, run.event).await? {
        Step::Ok(p) => p,
        Step::Fatal(f) => {
            return record::fail(ctx, run.event, None, Some(run.generation), f)
                .await
                .map(Err)
        }
    };
    match plan_batch(ctx.settings, &prepared, run.project, run.stem) {
        Ok(plan) => Ok(Ok((prepared, plan))),
        Err(f) => record::fail(
            ctx,
            run.event,
            Some(&prepared.batch),
            Some(run.generation),
            f,
        )
        .await
        .map(Err),
    }
}

/// Records the `retried` row of part `part` and submits its next attempt: the new status, or
/// the recorded failure when the warehouse refuses it.
async fn resubmit(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    plan: &LoadPlan,
    failed: &JobStatus,
    part: usize,
    submitted_at: Option<DateTime<Utc>>,
) -> Result<Result<JobStatus, Outcome>, IngestError> {
    let event = run.event;
    let Some(base) = plan.jobs.get(part) else {
        return Ok(Ok(failed.clone()));
    };
    let mut job = base.clone();
    job.job_id = retry_id(&base.job_id, attempt_of(&failed.job.job_id) + 1);
    tracing::warn!(
        object = %event.uri(),
        job = %failed.job.job_id,
        retry = %job.job_id,
        "job {} failed with a retriable error; retrying as {}",
        failed.job.job_id,
        job.job_id
    );
    let mut row = batch_row(
        ctx,
        event,
        Some((&prepared.batch, plan.mode)),
        std::slice::from_ref(failed),
        submitted_at,
    );
    row.state = "retried".to_string();
    record::write(ctx.settings, ctx.ports, &row)
        .await
        .map_err(|e| warehouse_error(event, e))?;
    match submit_one(ctx.ports, event, &job).await {
        Ok(s) => Ok(Ok(s)),
        Err(SubmitError::Transient(e)) => Err(warehouse_error(event, e)),
        Err(SubmitError::Rejected(e)) => {
            let batch = Some(&prepared.batch);
            record::fail(ctx, event, batch, Some(run.generation), Fatal(e))
                .await
                .map(Err)
        }
    }
}

/// The state-table row of a batch's jobs: `done`, or `failed` with the first job error.
fn batch_row(
    ctx: Context<'_>,
    event: &ObjectEvent,
    batch: Option<(&Batch, PlanMode)>,
    statuses: &[JobStatus],
    submitted_at: Option<DateTime<Utc>>,
) -> crate::ports::LoadRecord {
    let error = first_job_error(statuses);
    let state = if error.is_some() { "failed" } else { "done" };
    let mut row = record::row(
        event.uri(),
        event.generation.unwrap_or_default(),
        statuses,
        state,
        error,
        ctx.ports.clock.now(),
    );
    if let Some((batch, mode)) = batch {
        row = with_batch(row, batch);
        row.mode = mode.as_str().to_string();
    }
    if submitted_at.is_some() {
        row.submitted_at = submitted_at;
    }
    row
}

/// The batch hit its table's daily load-job quota: recorded as `parked` (with the quota
/// error), not failed; handling the marker again (`reconcile --apply`, a redelivery) submits
/// the parked parts under their next attempt's ids.
async fn park(
    ctx: Context<'_>,
    event: &ObjectEvent,
    batch: Option<(&Batch, PlanMode)>,
    statuses: &[JobStatus],
    quota: &[usize],
    submitted_at: Option<DateTime<Utc>>,
) -> Result<Outcome, IngestError> {
    let mut row = batch_row(ctx, event, batch, statuses, submitted_at);
    let reason = quota
        .iter()
        .find_map(|&i| statuses[i].error.as_ref())
        .map_or("the table's quota of load jobs per day".to_string(), |e| {
            format!("{}: {}", e.reason, e.message)
        });
    let error = format!(
        "{}: parked: {reason}; `bq-ingest reconcile --apply` (or a redelivery) loads it under \
         new job ids once the quota allows",
        event.uri()
    );
    row.state = "parked".to_string();
    row.error = Some(error.clone());
    tracing::warn!(object = %event.uri(), jobs = ?row.job_ids, error = %error, "batch parked: {error}");
    record::write(ctx.settings, ctx.ports, &row)
        .await
        .map_err(|e| warehouse_error(event, e))?;
    let jobs = quota.iter().map(|&i| statuses[i].job.clone()).collect();
    Ok(Outcome::Parked { jobs, error })
}

/// Every job is done: checks DML row counts in transform mode, records the outcome.
///
/// Every delivery that sees the end writes the row, a duplicate too: the row's `insertId`
/// is deterministic (marker, generation, outcome), so BigQuery drops a repeat within its
/// deduplication window, and `docs/operations.md` gives the query that deduplicates beyond
/// it. Otherwise a delivery that died between the jobs' end and the row would leave the
/// batch loaded with no row, and the redelivery could not tell.
async fn finish(
    ctx: Context<'_>,
    event: &ObjectEvent,
    batch: Option<(&Batch, PlanMode)>,
    statuses: Vec<JobStatus>,
    submitted_at: Option<DateTime<Utc>>,
) -> Result<Outcome, IngestError> {
    let jobs: Vec<JobRef> = statuses.iter().map(|s| s.job.clone()).collect();
    let mut row = batch_row(ctx, event, batch, &statuses, submitted_at);
    if row.error.is_none()
        && row.mode == PlanMode::Transform.as_str()
        && ctx.settings.fail_on_zero_dml_rows_affected
    {
        let checked = crate::transform::check_dml_rows(ctx.ports.warehouse.as_ref(), &statuses)
            .await
            .map_err(|e| warehouse_error(event, e))?;
        if let Some(msg) = checked {
            row.error = Some(msg);
            row.state = "failed".to_string();
        }
    }
    if let Some(error) = &mut row.error {
        *error = format!("{}: {error}", event.uri());
        tracing::error!(object = %event.uri(), jobs = ?row.job_ids, error = %error, "batch failed: {error}");
    }
    record::write(ctx.settings, ctx.ports, &row)
        .await
        .map_err(|e| warehouse_error(event, e))?;
    if let (None, Some(at)) = (&row.error, event.event_time) {
        let latency = (row.ended_at - at).to_std().unwrap_or_default();
        ctx.ports.observer.marker_done(latency);
    }
    Ok(match row.error {
        Some(error) => Outcome::Failed { error },
        None => Outcome::Done {
            jobs,
            rows: row.rows.unwrap_or_default(),
            bytes: row.bytes.unwrap_or_default(),
        },
    })
}
