//! What is recorded of a batch: its state-table row ([`LoadRecord`]) and, for a failure, the
//! announcement on the failure sink with what is needed to replay it.

use chrono::{DateTime, Utc};

use super::{Context, Fatal, Ports};
use crate::destination::Batch;
use crate::event::ObjectEvent;
use crate::outcome::{IngestError, Outcome};
use crate::plan::PlanMode;
use crate::ports::{FailureReport, JobStatus, LoadRecord, TableRef, WarehouseError};
use crate::settings::Settings;

/// The load-state table, when configured (`BQ_LOAD_STATE_TABLE`, `dataset.table` in the
/// storage project or `project.dataset.table`).
pub(crate) fn state_table(settings: &Settings) -> Option<TableRef> {
    let spec = settings.load_state_table.as_deref()?;
    let parts: Vec<&str> = spec.split('.').collect();
    let (project, dataset, table) = match parts.as_slice() {
        [d, t] => (settings.storage_project()?.to_string(), *d, *t),
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

/// The first job error of `statuses`, as the row and the logs say it.
pub(crate) fn first_job_error(statuses: &[JobStatus]) -> Option<String> {
    statuses.iter().find_map(|s| {
        s.error
            .as_ref()
            .map(|e| format!("job {} failed: {}: {}", s.job.job_id, e.reason, e.message))
    })
}

/// Whether the jobs ran a transform (a query reports a statement type or DML rows).
pub(crate) fn mode_of(statuses: &[JobStatus]) -> PlanMode {
    if statuses
        .iter()
        .any(|s| s.statement_type.is_some() || s.dml_affected_rows.is_some())
    {
        PlanMode::Transform
    } else {
        PlanMode::Load
    }
}

/// A state-table row for the jobs `statuses` of a marker: rows and bytes summed (none without
/// jobs), times from the jobs (`ended_at` is now when no job says), `state` and `error` as
/// given.
pub(crate) fn row(
    marker_uri: String,
    marker_generation: i64,
    statuses: &[JobStatus],
    state: &str,
    error: Option<String>,
    now: DateTime<Utc>,
) -> LoadRecord {
    let sum = |f: fn(&JobStatus) -> Option<u64>| -> Option<u64> {
        (!statuses.is_empty()).then(|| statuses.iter().filter_map(f).sum())
    };
    LoadRecord {
        marker_uri,
        marker_generation,
        destination: String::new(),
        batch_id: None,
        job_ids: statuses.iter().map(|s| s.job.job_id.clone()).collect(),
        mode: mode_of(statuses).as_str().to_string(),
        state: state.to_string(),
        error,
        rows: sum(|s| s.output_rows),
        bytes: sum(|s| s.input_bytes),
        submitted_at: statuses.iter().filter_map(|s| s.created).min(),
        started_at: statuses.iter().filter_map(|s| s.started).min(),
        ended_at: statuses.iter().filter_map(|s| s.ended).max().unwrap_or(now),
    }
}

/// `record` with the destination and batch id of `batch`.
pub(crate) fn with_batch(mut record: LoadRecord, batch: &Batch) -> LoadRecord {
    record.destination = batch.destination.to_string();
    record.batch_id = batch.batch_id.clone();
    record
}

/// Appends a row to the load-state table (and announces a failure to the failure sink).
///
/// A transient error is returned, so that the notification is delivered again and the
/// redelivery writes the row; a rejected write (no permission, a table of another schema) is
/// logged at ERROR and the outcome stands, as redelivery would not help.
pub(crate) async fn write(
    settings: &Settings,
    ports: &Ports,
    record: &LoadRecord,
) -> Result<(), WarehouseError> {
    if record.state == "failed" || record.state == "quarantined" {
        announce(ports, record).await;
    }
    let table_name = record.destination.split('$').next().unwrap_or_default();
    ports.observer.batch_recorded(table_name, &record.state);
    let Some(table) = state_table(settings) else {
        return Ok(());
    };
    match ports.warehouse.record_outcome(&table, record).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_transient() => {
            ports.observer.state_row_failed(true);
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
            ports.observer.state_row_failed(false);
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

/// Announces a failed batch on the failure sink, with how to replay it; an error is logged and
/// changes nothing.
async fn announce(ports: &Ports, record: &LoadRecord) {
    let Some(sink) = &ports.failures else { return };
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

/// Records a final failure of `event` (no job ran) and turns it into an outcome — a
/// transient error when the row could not be written.
pub(crate) async fn fail(
    ctx: Context<'_>,
    event: &ObjectEvent,
    batch: Option<&Batch>,
    generation: Option<i64>,
    fatal: Fatal,
) -> Result<Outcome, IngestError> {
    tracing::error!(object = %event.uri(), error = %fatal.0, "batch failed: {}", fatal.0);
    let mut record = row(
        event.uri(),
        generation.or(event.generation).unwrap_or_default(),
        &[],
        "failed",
        Some(fatal.0.clone()),
        ctx.ports.clock.now(),
    );
    if let Some(batch) = batch {
        record = with_batch(record, batch);
    }
    write(ctx.settings, ctx.ports, &record)
        .await
        .map_err(|e| super::warehouse_error(event, e))?;
    Ok(Outcome::Failed { error: fatal.0 })
}
