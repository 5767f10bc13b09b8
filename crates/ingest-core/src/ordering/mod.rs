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
use crate::outcome::Outcome;
use crate::pipeline::Context;
use crate::ports::{ObjectMeta, ObjectStore, StoreError};
use crate::settings::BACKFILL_FILENAME;

mod publisher;
mod resume;
mod subscriber;

pub use crate::pipeline::jobs::retry_id;
pub(crate) use publisher::{open_start_gate, publish};
pub use resume::{apply_resume, plan_resume, ResumeError, ResumePlan, ResumeStep};
pub(crate) use subscriber::run_subscriber;

/// The lock object's name at the table prefix.
pub const LOCK_FILENAME: &str = "_bqlock";
/// The backlog folder's name at the table prefix.
pub const BACKLOG_DIR: &str = "_backlog";
/// How the lock's `error` of a table stopped by its daily load quota begins: such a table
/// waits, and `bq-ingest reconcile --apply` resumes it (a lasting failure needs a person).
pub const PARKED_PREFIX: &str = "parked: ";

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

/// A table's `_bqlock`: its metadata, its raw content and what it says; `None` without a lock.
/// The subscriber, `resume` and `status` read it alike.
pub(crate) async fn read_lock(
    store: &dyn ObjectStore,
    bucket: &str,
    table: &str,
    job_prefix: &str,
) -> Result<Option<(ObjectMeta, Vec<u8>, LockContent)>, StoreError> {
    match store
        .read(bucket, &format!("{table}/{LOCK_FILENAME}"))
        .await
    {
        Ok((meta, content)) => {
            let lock = LockContent::parse(&content, job_prefix);
            Ok(Some((meta, content, lock)))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How long ago `meta`'s object was last written, as of `now` (zero when it has no time).
pub(crate) fn age_of(meta: &ObjectMeta, now: DateTime<Utc>) -> std::time::Duration {
    meta.updated
        .and_then(|at| (now - at).to_std().ok())
        .unwrap_or_default()
}

/// The first item of a table's backlog in lexicographic order, and how many items the first
/// listing page (100 objects) holds: exact up to 100, a lower bound beyond.
pub(crate) async fn first_backlog_item(
    store: &dyn ObjectStore,
    success_filename: &str,
    bucket: &str,
    table: &str,
) -> Result<(Option<ObjectMeta>, usize), StoreError> {
    let prefix = format!("{table}/{BACKLOG_DIR}/");
    let is_marker = |o: &ObjectMeta| o.name.rsplit('/').next() == Some(success_filename);
    let mut first_page_items = None;
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(bucket, &prefix, token.as_deref(), Some(100))
            .await?;
        let counted = page.objects.iter().filter(|o| is_marker(o)).count();
        let items = *first_page_items.get_or_insert(counted);
        if let Some(o) = page.objects.into_iter().find(|o| is_marker(o)) {
            return Ok((Some(o), items));
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok((None, items)),
        }
    }
}

/// The table prefix of `event`'s object, or the failed outcome that says there is none (the
/// object is a `what`: `_BACKFILL`, a start marker).
fn table_of(ctx: &Context<'_>, event: &ObjectEvent, what: &str) -> Result<String, Outcome> {
    table_prefix(
        &ctx.settings.destination_regex,
        &event.name,
        &table_level_files(ctx),
    )
    .ok_or_else(|| Outcome::Failed {
        error: format!("{}: no table prefix for this {what}", event.uri()),
    })
}

/// The objects that live at a table's level (their directory is the table prefix).
fn table_level_files<'a>(ctx: &Context<'a>) -> Vec<&'a str> {
    let mut files = vec![BACKFILL_FILENAME, LOCK_FILENAME];
    if let Some(start) = ctx.settings.start_backfill_filename.as_deref() {
        files.push(start);
    }
    files
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
