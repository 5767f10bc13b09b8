//! What happens to a batch's files once it is done and recorded (`afterSuccess` and
//! `deleteMarker` in `ingest.json`): archived (copied, then deleted), deleted, or kept.
//!
//! Every step is safe to repeat: a copy already in place (same size) counts as done, a file
//! already gone counts as deleted, and each delete is guarded by the generation listed; a file
//! written after the marker (a newer file under a loaded name) is left alone. A delivery that died
//! half-way leaves the rest to the redelivery: every job of such a batch carries
//! [`AFTER_SUCCESS_LABEL`], which tells a duplicate delivery (that has no plan) to look again.

use super::moves::{copy_listed, delete_listed};
use super::prepare::PreparedBatch;
use super::{store_error, Context};
use crate::config::AfterSuccess;
use crate::event::ObjectEvent;
use crate::outcome::IngestError;
use crate::plan::AFTER_SUCCESS_LABEL;
use crate::ports::{JobStatus, StoreError};

/// The [`AFTER_SUCCESS_LABEL`] value for a batch's options, or `None` when its files are kept.
pub(crate) fn label_value(prepared: &PreparedBatch) -> Option<&'static str> {
    let options = &prepared.config.ingest;
    match options.after_success {
        AfterSuccess::Delete => Some("delete"),
        AfterSuccess::ArchiveTo { .. } => Some("archive"),
        AfterSuccess::Keep if options.delete_marker => Some("marker"),
        AfterSuccess::Keep => None,
    }
}

/// Whether the jobs of a batch say it has post-success actions.
pub(crate) fn labelled(statuses: &[JobStatus]) -> bool {
    statuses
        .iter()
        .any(|s| s.labels.contains_key(AFTER_SUCCESS_LABEL))
}

/// What [`run`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cleanup {
    archived: usize,
    deleted: usize,
    marker_deleted: bool,
}

/// Archives or deletes the data files of a done batch, then its marker, as its options say.
/// Transient store errors are returned (the redelivery finishes the work); a lasting one (no
/// permission on the archive bucket, a different object where the copy should go) stops the
/// cleanup with an ERROR naming the object, and the files stay where they are.
pub(crate) async fn run(
    ctx: Context<'_>,
    event: &ObjectEvent,
    prepared: &PreparedBatch,
) -> Result<(), IngestError> {
    if label_value(prepared).is_none() {
        return Ok(());
    }
    match clean_up(ctx, event, prepared).await {
        Ok(done) => {
            tracing::info!(
                object = %event.uri(),
                archived = done.archived,
                deleted = done.deleted,
                marker_deleted = done.marker_deleted,
                "after success: {} file(s) archived, {} deleted{}",
                done.archived,
                done.deleted,
                if done.marker_deleted { ", marker deleted" } else { "" }
            );
            Ok(())
        }
        Err(e) if e.is_transient() => Err(store_error(event, e)),
        Err(e) => {
            tracing::error!(
                object = %event.uri(),
                error = %e,
                "after success: stopped, the remaining files stay where they are: {e}"
            );
            Ok(())
        }
    }
}

async fn clean_up(
    ctx: Context<'_>,
    event: &ObjectEvent,
    prepared: &PreparedBatch,
) -> Result<Cleanup, StoreError> {
    let options = &prepared.config.ingest;
    let store = ctx.ports.store.as_ref();
    let bucket = &prepared.batch.bucket;
    let listing = &prepared.listing;
    // Files written after the marker are not this batch's (a redelivery lists the bucket
    // again and may find a newer file under a loaded name): the marker comes last.
    let marker_time = listing.find(&event.name).and_then(|i| listing.updated(i));
    let mut done = Cleanup::default();
    if options.after_success.removes_data() {
        // The batch's files: its data files and the empty ones (not loaded, but written with
        // them); never its marker, `_config/` or another batch's.
        let selection = &prepared.selection;
        let empty = selection
            .skipped
            .iter()
            .filter(|(_, reason)| *reason == "empty");
        let files = selection.data.iter().chain(empty.map(|(i, _)| i));
        for &index in files {
            let meta = listing.meta(index);
            if let (Some(file_time), Some(marker_time)) = (meta.updated, marker_time) {
                if file_time > marker_time {
                    continue;
                }
            }
            let name = &meta.name;
            if let Some((to_bucket, to_name)) = options.after_success.archive_name(name) {
                if !copy_listed(store, bucket, &meta, &to_bucket, &to_name).await? {
                    continue;
                }
                done.archived += 1;
            }
            if delete_listed(store, bucket, &meta).await? {
                done.deleted += 1;
            }
        }
    }
    if options.delete_marker {
        let generation = event.generation.filter(|g| *g != 0);
        match store.delete(bucket, &event.name, generation).await {
            Ok(()) => done.marker_deleted = true,
            Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
