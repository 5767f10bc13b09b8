//! Planning BigQuery jobs for a batch: which files, how many jobs, which ids and labels.

use std::collections::BTreeMap;

use crate::config::BatchConfig;
use crate::destination::Batch;
use crate::ports::{JobRequest, ObjectMeta};
use crate::settings::Settings;

/// A data file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Object name.
    pub name: String,
    /// Size in bytes (never 0: empty files are skipped).
    pub size: u64,
}

/// An object of the batch listing that is not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedObject {
    /// Object name.
    pub name: String,
    /// Why: `success marker`, `empty`, `control file`, `config`, `backlog`, `other batch`, ….
    pub reason: &'static str,
}

/// The data files of a batch, from a listing of its prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchFiles {
    /// Files to load, in name order.
    pub data: Vec<DataFile>,
    /// Everything else in the listing.
    pub skipped: Vec<SkippedObject>,
}

/// How a batch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    /// Load jobs.
    Load,
    /// A query over the temporary external table `temp_ext`.
    Transform,
}

impl PlanMode {
    /// `load` or `transform`, as the state table records it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanMode::Load => "load",
            PlanMode::Transform => "transform",
        }
    }
}

/// The jobs that apply one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Load or transform.
    pub mode: PlanMode,
    /// The jobs, part 0 first.
    pub jobs: Vec<JobRequest>,
    /// Number of data files.
    pub files: usize,
    /// Total bytes of the data files.
    pub bytes: u64,
}

/// Why a plan could not be made. Names the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The batch has no data file.
    #[error("gs://{bucket}/{marker}: the batch has no data file")]
    NoDataFiles {
        /// Bucket.
        bucket: String,
        /// Marker object.
        marker: String,
    },
    /// Something else makes the batch unplannable (a file larger than `MAX_BATCH_BYTES`, …).
    #[error("gs://{bucket}/{marker}: {message}")]
    Invalid {
        /// Bucket.
        bucket: String,
        /// Marker object.
        marker: String,
        /// What is wrong.
        message: String,
    },
}

/// Sorts a (recursive) listing of the batch prefix into data files and skipped objects: skips
/// the marker, dot-files and `_`-prefixed control files and folders (`_config/`, `_backlog/`,
/// `_temporary/`), empty objects, and sub-folders that hold their own success marker (another
/// batch).
pub fn select_data_files(batch: &Batch, success_filename: &str, listing: &[ObjectMeta]) -> BatchFiles {
    let _ = (batch, success_filename, listing);
    unimplemented!("helper fills this in")
}

/// The deterministic id of part `part` of the batch whose marker is `gs://bucket/marker` at
/// `generation`: `JOB_PREFIX` + sanitized destination hint + a short hash of (bucket, marker,
/// generation) + `_` + part, at most 1024 characters of `[A-Za-z0-9_-]`.
///
/// `hint` is the readable part (e.g. `dataset_table_2020010203`), sanitized here.
pub fn job_id(prefix: &str, hint: &str, bucket: &str, marker: &str, generation: i64, part: usize) -> String {
    let _ = (prefix, hint, bucket, marker, generation, part);
    unimplemented!("helper fills this in")
}

/// The readable part of job ids for a destination: `dataset_table[_partition]`.
pub fn job_id_hint(dataset: &str, table: &str, partition: Option<&str>) -> String {
    let _ = (dataset, table, partition);
    unimplemented!("helper fills this in")
}

/// The labels of every job of the batch: `component=event-based-gcs-ingest`, `bucket`,
/// `batch-id`, `cloud-function-name` (the service), `data-source` when configured, sanitized
/// to BigQuery's label rules (lowercase `[a-z0-9_-]`, keys start with a letter, ≤ 63 chars).
pub fn job_labels(settings: &Settings, batch: &Batch, config: &BatchConfig) -> BTreeMap<String, String> {
    let _ = (settings, batch, config);
    unimplemented!("helper fills this in")
}

/// Plans the load jobs of a batch: splits `files` into parts of at most
/// [`crate::settings::MAX_SOURCE_URIS_PER_JOB`] URIs and `settings.max_batch_bytes` bytes,
/// compacts URIs to per-directory wildcards where that is safe, and gives each part its id.
/// `listing` is the full listing of the batch prefix (to decide when a wildcard is safe).
#[allow(clippy::too_many_arguments)]
pub fn plan_load(
    settings: &Settings,
    batch: &Batch,
    config: &BatchConfig,
    files: &BatchFiles,
    listing: &[ObjectMeta],
    job_project: &str,
    hint: &str,
    marker_generation: i64,
) -> Result<LoadPlan, PlanError> {
    let _ = (settings, batch, config, files, listing, job_project, hint, marker_generation);
    unimplemented!("helper fills this in")
}
