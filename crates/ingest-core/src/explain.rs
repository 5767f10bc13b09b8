//! What bq-ingest would do with an object path, without touching anything: the logic behind
//! `bq-ingest explain`.

use serde::Serialize;

use crate::destination::{resolve_batch, table_prefix, Batch, DestinationTable};
use crate::event::EventType;
use crate::ordering::LOCK_FILENAME;
use crate::plan::{job_id_hint, job_id_prefix};
use crate::settings::{Settings, BACKFILL_FILENAME};
use crate::trigger::{classify_name, Trigger};

/// The destination part of an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedDestination {
    /// Project id; null when neither the path nor a setting names one (the service would use
    /// the project of its environment: the metadata server, the credentials, gcloud).
    pub project: Option<String>,
    /// Dataset id.
    pub dataset: String,
    /// Table id.
    pub table: String,
    /// Partition decorator (`$2020010203`), or null.
    pub partition: Option<String>,
}

/// What the service would do with one path. Serialized, it is exactly one line of
/// `bq-ingest explain --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The path as given.
    pub path: String,
    /// `success`, `backfill`, `start_backfill`, `backlog` or `ignore`.
    pub trigger: &'static str,
    /// Where the batch goes; null when not a trigger.
    pub destination: Option<ExplainedDestination>,
    /// The batch id, or null.
    pub batch: Option<String>,
    /// The batch timestamp (RFC 3339), or null.
    pub batch_timestamp: Option<String>,
    /// Where the table's `_backlog/`, `_BACKFILL` and `_bqlock` live, or null.
    pub table_prefix: Option<String>,
    /// The start every job id of the batch has (`JOB_PREFIX` + destination, sanitized as in the
    /// real ids), or null.
    pub job_id_prefix: Option<String>,
    /// Why the path cannot be handled, or null.
    pub error: Option<String>,
}

/// Splits `gs://bucket/object` or `bucket/object`.
///
/// ```
/// use ingest_core::explain::split_path;
/// assert_eq!(split_path("gs://b/ds/t/_SUCCESS"), Some(("b", "ds/t/_SUCCESS")));
/// assert_eq!(split_path("b/ds/t/_SUCCESS"), Some(("b", "ds/t/_SUCCESS")));
/// assert_eq!(split_path("b"), None);
/// ```
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("gs://").unwrap_or(path);
    let (bucket, name) = rest.split_once('/')?;
    if bucket.is_empty() || name.is_empty() {
        None
    } else {
        Some((bucket, name))
    }
}

/// Stands in for the project while resolving a path when none is configured; reported as null.
/// A valid project id, so that the rest of the path is still checked.
const NO_PROJECT: &str = "explain-no-project";

/// Explains one path with the settings' `DESTINATION_REGEX` (a `_config/load.json` on the way
/// could change the destination; `explain` does not read the bucket). Without any project
/// setting, the destination's project is null instead of an error.
///
/// ```
/// use ingest_core::{explain::explain, settings::Settings};
/// let mut settings = Settings::default();
/// settings.bq_project = Some("my-project".into());
/// let e = explain(&settings, "gs://b/ds/t/2020/01/02/03/batch1/_SUCCESS");
/// assert_eq!(e.trigger, "success");
/// assert_eq!(e.destination.unwrap().partition.as_deref(), Some("$2020010203"));
/// assert_eq!(e.batch.as_deref(), Some("batch1"));
/// assert_eq!(e.error, None);
/// ```
pub fn explain(settings: &Settings, path: &str) -> Explanation {
    explain_with_table(settings, path, None)
}

/// [`explain`], with the `destinationTable` a `load.json` would give: the regex then needs no
/// `dataset` or `table` group.
///
/// ```
/// use ingest_core::destination::{DestinationRegex, DestinationTable};
/// use ingest_core::{explain::explain_with_table, settings::Settings};
/// let mut settings = Settings::default();
/// settings.destination_regex = DestinationRegex::new(r"^(?P<batch>[^/]+)/", true).unwrap();
/// let table = DestinationTable { project_id: None, dataset_id: "ds".into(), table_id: "t".into() };
/// let e = explain_with_table(&settings, "gs://b/batch-7/_SUCCESS", Some(&table));
/// let d = e.destination.unwrap();
/// assert_eq!((d.project, d.dataset.as_str(), d.table.as_str()), (None, "ds", "t"));
/// assert_eq!(e.batch.as_deref(), Some("batch-7"));
/// ```
pub fn explain_with_table(
    settings: &Settings,
    path: &str,
    destination_table: Option<&DestinationTable>,
) -> Explanation {
    let mut out = Explanation {
        path: path.to_string(),
        trigger: "ignore",
        destination: None,
        batch: None,
        batch_timestamp: None,
        table_prefix: None,
        job_id_prefix: None,
        error: None,
    };
    let Some((bucket, name)) = split_path(path) else {
        out.error = Some(format!(
            "{path:?} is not an object path: expected gs://bucket/object or bucket/object"
        ));
        return out;
    };
    let trigger = classify_name(settings, EventType::Finalize, name);
    out.trigger = trigger.name();
    let batch_name = match trigger {
        Trigger::Ignore(_) => {
            // The lock of an ordered table: say whose it is.
            out.table_prefix = table_prefix(&settings.destination_regex, name, &[LOCK_FILENAME]);
            return out;
        }
        Trigger::Backlog => name.replacen("/_backlog/", "/", 1),
        _ => name.to_string(),
    };
    let mut table_level = vec![BACKFILL_FILENAME];
    if let Some(start) = settings.start_backfill_filename.as_deref() {
        table_level.push(start);
    }
    out.table_prefix = table_prefix(&settings.destination_regex, name, &table_level);
    match resolve_batch(
        &settings.destination_regex,
        destination_table,
        settings.storage_project().or(Some(NO_PROJECT)),
        settings.timestamp_regex.as_ref(),
        bucket,
        &batch_name,
    ) {
        Ok(batch) => fill(&mut out, settings, &batch, &trigger),
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

fn fill(out: &mut Explanation, settings: &Settings, batch: &Batch, trigger: &Trigger) {
    let d = &batch.destination;
    out.destination = Some(ExplainedDestination {
        project: (d.project != NO_PROJECT).then(|| d.project.clone()),
        dataset: d.dataset.clone(),
        table: d.table.clone(),
        partition: d.partition.clone(),
    });
    if matches!(trigger, Trigger::Success | Trigger::Backlog) {
        out.batch = batch.batch_id.clone();
        out.batch_timestamp = batch
            .batch_timestamp
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        out.job_id_prefix = Some(job_id_prefix(
            &settings.job_prefix,
            &job_id_hint(&d.dataset, &d.table, d.partition.as_deref()),
        ));
    }
    if out.table_prefix.is_none() {
        out.table_prefix = Some(batch.table_prefix.clone());
    }
}
