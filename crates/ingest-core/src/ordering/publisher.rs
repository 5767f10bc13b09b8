//! The publisher side: a success marker of an ordered table becomes a backlog item, and a
//! subscriber is made to run (`_BACKFILL`) unless the table's start gate is closed.

use super::{backlog_item, table_of, BacklogEntry};
use crate::event::ObjectEvent;
use crate::outcome::{IngestError, Outcome};
use crate::pipeline::prepare::PreparedBatch;
use crate::pipeline::{store_error, Context};
use crate::ports::{PutMode, StoreError};
use crate::settings::BACKFILL_FILENAME;

/// Queues a batch of an ordered table on its backlog, and makes sure a subscriber runs.
///
/// The item is written *before* `_BACKFILL` is created: the subscriber's exit protocol relies
/// on that order (an item is either seen by its second listing, or its publisher's create of
/// `_BACKFILL` succeeds).
pub(crate) async fn publish(
    ctx: Context<'_>,
    event: &ObjectEvent,
    prepared: &PreparedBatch,
) -> Result<Outcome, IngestError> {
    let store = &ctx.ports.store;
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
        .map_err(|e| store_error(event, e))?;
    if !start_gate_open(ctx, event, table).await? {
        tracing::info!(object = %event.uri(), item = %item, "queued; the start gate of {table} is closed");
        return Ok(Outcome::Queued { backlog_item: item });
    }
    let backfill = format!("{table}/{BACKFILL_FILENAME}");
    match store
        .put(&event.bucket, &backfill, Vec::new(), PutMode::Create)
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(store_error(event, e)),
    }
    Ok(Outcome::Queued { backlog_item: item })
}

/// Whether `START_BACKFILL_FILENAME` (when set) exists at the table prefix.
pub(super) async fn start_gate_open(
    ctx: Context<'_>,
    event: &ObjectEvent,
    table: &str,
) -> Result<bool, IngestError> {
    let Some(gate) = ctx.settings.start_backfill_filename.as_deref() else {
        return Ok(true);
    };
    match ctx
        .ports
        .store
        .stat(&event.bucket, &format!("{table}/{gate}"))
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(store_error(event, e)),
    }
}

/// Opens the start gate of one table's backlog: rewrites `_BACKFILL`, whose event starts the
/// subscriber.
pub(crate) async fn open_start_gate(
    ctx: Context<'_>,
    event: &ObjectEvent,
) -> Result<Outcome, IngestError> {
    let table = match table_of(&ctx, event, "start marker") {
        Ok(table) => table,
        Err(failed) => return Ok(failed),
    };
    let backfill = format!("{table}/{BACKFILL_FILENAME}");
    ctx.ports
        .store
        .put(&event.bucket, &backfill, Vec::new(), PutMode::Overwrite)
        .await
        .map_err(|e| store_error(event, e))?;
    Ok(Outcome::Queued {
        backlog_item: backfill,
    })
}
