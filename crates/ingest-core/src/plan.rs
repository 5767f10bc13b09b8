//! Planning BigQuery jobs for a batch: which files, how many jobs, which ids and labels.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{BatchConfig, FORBIDDEN_LOAD_KEYS, OWN_KEYS};
use crate::destination::Batch;
use crate::listing::Listing;
use crate::ports::{JobKind, JobRequest, ObjectMeta, PartitionGranularity};
use crate::settings::{Settings, MAX_SOURCE_URIS_PER_JOB};

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
    /// A table to create before the jobs run, when it does not exist, and its `Table` resource:
    /// a transform batch's destination with a `table.json` (load jobs create theirs with
    /// `CREATE_IF_NEEDED`).
    pub create_table: Option<(crate::ports::TableRef, Map<String, Value>)>,
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

/// The longest job id BigQuery accepts.
pub const MAX_JOB_ID_LEN: usize = 1024;
/// The longest label key or value BigQuery accepts.
pub const MAX_LABEL_LEN: usize = 63;
/// The label that numbers the part of a job within its batch (`0`, `1`, …).
pub const PART_LABEL: &str = "bq-ingest-part";
/// The label that carries the number of parts of a batch on every job of it.
pub const PARTS_LABEL: &str = "bq-ingest-parts";
/// The label on every job of a batch whose files are archived or deleted once it is done
/// (`afterSuccess` / `deleteMarker` in `ingest.json`): `delete`, `archive` or `marker`.
pub const AFTER_SUCCESS_LABEL: &str = "bq-ingest-after-success";
/// The label on the jobs of a batch with `quarantine` in `ingest.json` (`on`), on the jobs that
/// load the rest of it after its bad files were moved (`rest`), and on the staging loads that
/// look for them (`staging`).
pub const QUARANTINE_LABEL: &str = "bq-ingest-quarantine";
/// The value of the `component` label of every job.
pub const COMPONENT: &str = "event-based-gcs-ingest";

/// Sorts a (recursive) listing of the batch prefix into data files and skipped objects: skips
/// the marker, dot-files and `_`-prefixed control files and folders (`_config/`, `_backlog/`,
/// `_temporary/`), empty objects, and sub-folders that hold their own success marker (another
/// batch).
///
/// Reasons, in the order they are checked: `outside batch` (not under the batch prefix),
/// `folder placeholder` (a name ending with `/`), `config`, `backlog`, `control folder` (any
/// sub-folder segment starting with `_` or `.`), `success marker` (basename equal to
/// `success_filename`, at any depth), `control file` (basename starting with `_` or `.`),
/// `other batch`, `empty`. Data files come back in name order, skipped objects in listing
/// order.
///
/// ```
/// use ingest_core::destination::Batch;
/// use ingest_core::plan::select_data_files;
/// use ingest_core::ports::{ObjectMeta, TableRef};
///
/// let batch = Batch {
///     bucket: "b".into(),
///     marker: "ds/t/_SUCCESS".into(),
///     destination: TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(), partition: None },
///     batch_id: None,
///     batch_timestamp: None,
///     batch_prefix: "ds/t/".into(),
///     table_prefix: "ds/t".into(),
/// };
/// let object = |name: &str, size| ObjectMeta { name: name.into(), size, generation: 1, updated: None };
/// let listing = [
///     object("ds/t/_SUCCESS", 0),
///     object("ds/t/_config/load.json", 10),
///     object("ds/t/part-0", 100),
///     object("ds/t/part-1", 0),
/// ];
/// let files = select_data_files(&batch, "_SUCCESS", &listing);
/// assert_eq!(files.data.len(), 1);
/// assert_eq!(files.data[0].name, "ds/t/part-0");
/// assert_eq!(files.skipped.len(), 3);
/// ```
pub fn select_data_files(
    batch: &Batch,
    success_filename: &str,
    listing: &[ObjectMeta],
) -> BatchFiles {
    let listing = Listing::from_objects(&batch.batch_prefix, listing);
    select(success_filename, &listing).to_batch_files(&listing)
}

/// The data files of a batch as indices into its [`Listing`] (what [`select_data_files`] gives
/// as [`BatchFiles`], without a copy of any name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    /// Indices of the files to load, in name order, one per name.
    pub(crate) data: Vec<usize>,
    /// Indices of the other objects under the prefix, in listing order, and why they are not
    /// loaded (the objects outside the prefix are all `outside batch`).
    pub(crate) skipped: Vec<(usize, &'static str)>,
}

impl Selection {
    /// The selection with names and sizes, as [`select_data_files`] gives it.
    pub(crate) fn to_batch_files(&self, listing: &Listing) -> BatchFiles {
        let skipped = self.skipped.iter().map(|&(i, reason)| SkippedObject {
            name: listing.name(i),
            reason,
        });
        let outside = listing.outside().iter().map(|o| SkippedObject {
            name: o.name.clone(),
            reason: "outside batch",
        });
        BatchFiles {
            data: self
                .data
                .iter()
                .map(|&i| DataFile {
                    name: listing.name(i),
                    size: listing.size(i),
                })
                .collect(),
            skipped: skipped.chain(outside).collect(),
        }
    }
}

/// Sorts the listing of a batch prefix into data files and skipped objects (see
/// [`select_data_files`]).
pub(crate) fn select(success_filename: &str, listing: &Listing) -> Selection {
    // Sub-folders (relative to the batch prefix, ending with `/`) with their own marker.
    let other_batches: HashSet<&str> = listing
        .indices()
        .filter_map(|i| marker_folder(listing.relative(i), success_filename))
        .collect();

    let mut selection = Selection::default();
    for i in listing.indices() {
        let is_other_batch = |dir: &str| other_batches.contains(dir);
        match object_skip_reason(listing, i, success_filename, is_other_batch) {
            Some(reason) => selection.skipped.push((i, reason)),
            None => selection.data.push(i),
        }
    }
    if !listing.is_sorted() {
        selection
            .data
            .sort_by(|&a, &b| listing.relative(a).cmp(listing.relative(b)));
        selection
            .data
            .dedup_by(|a, b| listing.relative(*a) == listing.relative(*b));
    }
    selection
}

/// The sub-folder (relative to the batch prefix, ending with `/`) whose own success marker
/// `relative` is, when it is one.
fn marker_folder<'a>(relative: &'a str, success_filename: &str) -> Option<&'a str> {
    let (dir, base) = relative.rsplit_once('/')?;
    (base == success_filename).then(|| &relative[..=dir.len()])
}

/// Why object `index` of the batch listing is not a data file ([`skip_reason`], or `empty`),
/// or `None` when it is one.
fn object_skip_reason(
    listing: &Listing,
    index: usize,
    success_filename: &str,
    is_other_batch: impl Fn(&str) -> bool,
) -> Option<&'static str> {
    skip_reason(listing.relative(index), success_filename, is_other_batch)
        .or_else(|| (listing.size(index) == 0).then_some("empty"))
}

/// Why an object of the batch listing (its name relative to the batch prefix) is not a data
/// file, or `None` when it may be one (it is, unless it is empty).
fn skip_reason(
    relative: &str,
    success_filename: &str,
    is_other_batch: impl Fn(&str) -> bool,
) -> Option<&'static str> {
    if relative.is_empty() || relative.ends_with('/') {
        return Some("folder placeholder");
    }
    let (dirs, base) = match relative.rsplit_once('/') {
        Some((dirs, base)) => (Some(dirs), base),
        None => (None, relative),
    };
    if let Some(dirs) = dirs {
        for segment in dirs.split('/') {
            match segment {
                "_config" => return Some("config"),
                "_backlog" => return Some("backlog"),
                s if s.starts_with('_') || s.starts_with('.') => return Some("control folder"),
                _ => {}
            }
        }
    }
    if base == success_filename {
        return Some("success marker");
    }
    if base.starts_with('_') || base.starts_with('.') {
        return Some("control file");
    }
    if dirs.is_some()
        && relative
            .match_indices('/')
            .any(|(i, _)| is_other_batch(&relative[..=i]))
    {
        return Some("other batch");
    }
    None
}

/// The deterministic id of part `part` of the batch whose marker is `gs://bucket/marker` at
/// `generation`: `JOB_PREFIX` + sanitized destination hint + a short hash of (bucket, marker,
/// generation) + `_` + part, at most 1024 characters of `[A-Za-z0-9_-]`.
///
/// `hint` is the readable part (e.g. `dataset_table_2020010203`), sanitized here.
///
/// Format: `{prefix}{hint}_{hash}_{part}` where
/// - `prefix` and `hint` have every character outside `[A-Za-z0-9_-]` replaced by `_` (one `_`
///   per character) and are cut together, from the end, so that the whole id is at most
///   [`MAX_JOB_ID_LEN`] characters — the hash and the part are always kept whole;
/// - `hash` is the first 16 hexadecimal digits (lowercase) of the SHA-256 of
///   `bucket`, a NUL byte, `marker`, a NUL byte and `generation` in decimal.
///
/// The same inputs always give the same id, so a redelivered notification finds the jobs of
/// the first delivery; a marker rewritten (new generation) gives new ids.
///
/// ```
/// use ingest_core::plan::job_id;
/// let id = job_id("gcf-ingest-", "ds_t_2020010203", "bucket", "ds/t/$2020010203/_SUCCESS", 7, 0);
/// assert!(id.starts_with("gcf-ingest-ds_t_2020010203_"));
/// assert!(id.ends_with("_0"));
/// assert_eq!(id.len(), "gcf-ingest-ds_t_2020010203_".len() + 16 + 2);
/// assert_eq!(id, job_id("gcf-ingest-", "ds_t_2020010203", "bucket", "ds/t/$2020010203/_SUCCESS", 7, 0));
/// assert_ne!(id, job_id("gcf-ingest-", "ds_t_2020010203", "bucket", "ds/t/$2020010203/_SUCCESS", 8, 0));
/// ```
pub fn job_id(
    prefix: &str,
    hint: &str,
    bucket: &str,
    marker: &str,
    generation: i64,
    part: usize,
) -> String {
    JobIdStem::new(prefix, hint, bucket, marker, generation).part(part)
}

/// What every job id of one batch shares — the sanitized readable start and the hash of
/// (bucket, marker, generation) — made once, so that each part's id ([`JobIdStem::part`]) costs
/// no hashing: the same ids as [`job_id`], which is `JobIdStem::new(…).part(part)`.
///
/// Measured (`scripts/bench-whole-path-instructions.sh`): a marker derived part 0's id twice,
/// once to look its job up and once to plan it, about 10,400 instructions each.
///
/// ```
/// use ingest_core::plan::{job_id, JobIdStem};
/// let stem = JobIdStem::new("gcf-ingest-", "ds_t", "bucket", "ds/t/_SUCCESS", 7);
/// for part in [0, 1, 12] {
///     assert_eq!(stem.part(part), job_id("gcf-ingest-", "ds_t", "bucket", "ds/t/_SUCCESS", 7, part));
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdStem {
    /// `prefix` + `hint` sanitized (ASCII only), cut for the shortest tail (parts 0 to 9).
    start: String,
    /// `_` + the hash's 16 hexadecimal digits + `_`.
    hash: String,
}

impl JobIdStem {
    /// The stem of the jobs of the marker `gs://bucket/marker` at `generation` (see
    /// [`job_id`] for the format).
    pub fn new(prefix: &str, hint: &str, bucket: &str, marker: &str, generation: i64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(bucket.as_bytes());
        hasher.update([0u8]);
        hasher.update(marker.as_bytes());
        hasher.update([0u8]);
        hasher.update(generation.to_string().as_bytes());
        let digest = hasher.finalize();
        let mut hash = String::with_capacity(1 + 16 + 1);
        hash.push('_');
        for byte in &digest[..8] {
            hash.push(hex_digit(byte >> 4));
            hash.push(hex_digit(byte & 0x0f));
        }
        hash.push('_');
        JobIdStem {
            start: sanitized_job_id_start(prefix, hint, MAX_JOB_ID_LEN - hash.len() - 1),
            hash,
        }
    }

    /// The stem of the jobs of `batch`'s marker at `generation`, with the configured
    /// `JOB_PREFIX`.
    pub(crate) fn of_batch(
        settings: &Settings,
        hint: &str,
        batch: &Batch,
        generation: i64,
    ) -> Self {
        JobIdStem::new(
            &settings.job_prefix,
            hint,
            &batch.bucket,
            &batch.marker,
            generation,
        )
    }

    /// The id of part `part`: the start (cut further when the part has several digits), the
    /// hash and the part, at most [`MAX_JOB_ID_LEN`] characters.
    pub fn part(&self, part: usize) -> String {
        let part = part.to_string();
        let keep = self
            .start
            .len()
            .min(MAX_JOB_ID_LEN - self.hash.len() - part.len());
        let mut id = String::with_capacity(keep + self.hash.len() + part.len());
        // The start is ASCII, so any cut is on a character boundary.
        id.push_str(&self.start[..keep]);
        id.push_str(&self.hash);
        id.push_str(&part);
        id
    }
}

/// `prefix` + `hint` with every character outside `[A-Za-z0-9_-]` replaced by `_`, at most
/// `max_chars` characters.
fn sanitized_job_id_start(prefix: &str, hint: &str, max_chars: usize) -> String {
    let mut start = String::with_capacity((prefix.len() + hint.len()).min(max_chars));
    for c in prefix.chars().chain(hint.chars()).take(max_chars) {
        let allowed = c.is_ascii_alphanumeric() || c == '_' || c == '-';
        start.push(if allowed { c } else { '_' });
    }
    start
}

/// The readable start that every job id of a batch begins with — what [`job_id`] makes of
/// `prefix` and `hint` (sanitized, and cut as for parts 0 to 9). `bq-ingest explain` prints it.
///
/// ```
/// use ingest_core::plan::{job_id, job_id_prefix};
/// let prefix = job_id_prefix("gcf-ingest-", "ds_t WHERE TRUE --");
/// assert_eq!(prefix, "gcf-ingest-ds_t_WHERE_TRUE_--");
/// assert!(job_id("gcf-ingest-", "ds_t WHERE TRUE --", "b", "m", 1, 0).starts_with(&prefix));
/// ```
pub fn job_id_prefix(prefix: &str, hint: &str) -> String {
    // The tail of parts 0 to 9: `_` + 16 hex digits + `_` + one digit.
    sanitized_job_id_start(prefix, hint, MAX_JOB_ID_LEN - 19)
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// The readable part of job ids for a destination: `dataset_table[_partition]`.
///
/// The partition is taken without its `$`. Characters a job id cannot hold are replaced later,
/// by [`job_id`].
///
/// ```
/// use ingest_core::plan::job_id_hint;
/// assert_eq!(job_id_hint("ds", "t", None), "ds_t");
/// assert_eq!(job_id_hint("ds", "t", Some("$2020010203")), "ds_t_2020010203");
/// ```
pub fn job_id_hint(dataset: &str, table: &str, partition: Option<&str>) -> String {
    let mut hint = format!("{dataset}_{table}");
    if let Some(partition) = partition {
        let partition = partition.strip_prefix('$').unwrap_or(partition);
        if !partition.is_empty() {
            hint.push('_');
            hint.push_str(partition);
        }
    }
    hint
}

/// A label value under BigQuery's rules: ASCII letters lowercased, every character outside
/// `[a-z0-9_-]` replaced by `_`, at most [`MAX_LABEL_LEN`] characters. May be empty.
///
/// ```
/// use ingest_core::plan::sanitize_label_value;
/// assert_eq!(sanitize_label_value("My.Bucket-01"), "my_bucket-01");
/// ```
pub fn sanitize_label_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL_LEN)
        .collect()
}

/// A label key under BigQuery's rules: as [`sanitize_label_value`], and starting with a
/// lowercase letter (`x` is put in front otherwise, including for an empty key).
///
/// ```
/// use ingest_core::plan::sanitize_label_key;
/// assert_eq!(sanitize_label_key("Batch-ID"), "batch-id");
/// assert_eq!(sanitize_label_key("1st"), "x1st");
/// ```
pub fn sanitize_label_key(key: &str) -> String {
    let sanitized = sanitize_label_value(key);
    if sanitized.starts_with(|c: char| c.is_ascii_lowercase()) {
        sanitized
    } else {
        let mut prefixed = String::with_capacity(MAX_LABEL_LEN);
        prefixed.push('x');
        prefixed.extend(sanitized.chars().take(MAX_LABEL_LEN - 1));
        prefixed
    }
}

fn insert_label(labels: &mut BTreeMap<String, String>, key: &str, value: &str) {
    labels.insert(sanitize_label_key(key), sanitize_label_value(value));
}

/// The labels of every job of the batch: `component=event-based-gcs-ingest`, `bucket`,
/// `batch-id`, `cloud-function-name` (the service), `data-source` when configured, sanitized
/// to BigQuery's label rules (lowercase `[a-z0-9_-]`, keys start with a letter, ≤ 63 chars).
///
/// ```
/// use ingest_core::config::BatchConfig;
/// use ingest_core::destination::Batch;
/// use ingest_core::plan::job_labels;
/// use ingest_core::ports::TableRef;
/// use ingest_core::settings::Settings;
///
/// let batch = Batch {
///     bucket: "My.Bucket".into(),
///     marker: "ds/t/B1/_SUCCESS".into(),
///     destination: TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(), partition: None },
///     batch_id: Some("B1".into()),
///     batch_timestamp: None,
///     batch_prefix: "ds/t/B1/".into(),
///     table_prefix: "ds/t".into(),
/// };
/// let labels = job_labels(&Settings::default(), &batch, &BatchConfig::default());
/// assert_eq!(labels["component"], "event-based-gcs-ingest");
/// assert_eq!(labels["bucket"], "my_bucket");
/// assert_eq!(labels["batch-id"], "b1");
/// assert!(!labels.contains_key("cloud-function-name"));
/// ```
pub fn job_labels(
    settings: &Settings,
    batch: &Batch,
    config: &BatchConfig,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    insert_label(&mut labels, "component", COMPONENT);
    insert_label(&mut labels, "bucket", &batch.bucket);
    if let Some(batch_id) = &batch.batch_id {
        insert_label(&mut labels, "batch-id", batch_id);
    }
    if let Some(service) = &settings.service_name {
        insert_label(&mut labels, "cloud-function-name", service);
    }
    if let Some(source) = &config.data_source_name {
        insert_label(&mut labels, "data-source", source);
    }
    labels
}

/// Who owns every object under a directory: one part (and how many objects), or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirOwner {
    /// All objects under the directory are data files of this part; the count.
    Part(usize, usize),
    /// Some object under it is not a data file of one single part.
    Mixed,
}

impl DirOwner {
    fn add(state: Option<DirOwner>, owner: Option<usize>) -> DirOwner {
        match (state, owner) {
            (None, Some(part)) => DirOwner::Part(part, 1),
            (Some(DirOwner::Part(p, n)), Some(part)) if p == part => DirOwner::Part(p, n + 1),
            _ => DirOwner::Mixed,
        }
    }
}

/// Plans the load jobs of a batch: splits `files` into parts of at most
/// [`crate::settings::MAX_SOURCE_URIS_PER_JOB`] URIs and `settings.max_batch_bytes` bytes,
/// compacts URIs to per-directory wildcards where that is safe, and gives each part its id.
/// `listing` is the full listing of the batch prefix (to decide when a wildcard is safe).
///
/// - Files are taken in name order; a part is closed when the next file would bring it over
///   10,000 files or over `max_batch_bytes` bytes (a part may be exactly at either limit).
///   A file larger than `max_batch_bytes` on its own is [`PlanError::Invalid`]; no data
///   file is [`PlanError::NoDataFiles`].
/// - Within a part, the files under a directory `dir/` (below the batch prefix) become one
///   URI `gs://bucket/dir/*` when every object of `listing` whose name starts with `dir/` —
///   at any depth, as BigQuery's `*` matches `/` — is a data file of this very part, there are
///   at least two of them, and neither the marker nor a `*` is in the way. The highest such
///   directory is used. Everything else is listed file by file.
/// - Part `i` of `n` gets [`job_id`]`(settings.job_prefix, hint, bucket, marker,
///   marker_generation, i)`, the [`job_labels`] plus `bq-ingest-part=i` and
///   `bq-ingest-parts=n`, and a copy of `config.load`; parts after the first have a
///   `WRITE_TRUNCATE` or `WRITE_EMPTY` disposition turned into `WRITE_APPEND`, so that they
///   add to what part 0 wrote instead of erasing it or failing on it.
///
/// ```
/// use ingest_core::config::BatchConfig;
/// use ingest_core::destination::Batch;
/// use ingest_core::plan::{plan_load, select_data_files};
/// use ingest_core::ports::{JobKind, ObjectMeta, TableRef};
/// use ingest_core::settings::Settings;
///
/// let batch = Batch {
///     bucket: "b".into(),
///     marker: "ds/t/_SUCCESS".into(),
///     destination: TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(), partition: None },
///     batch_id: None,
///     batch_timestamp: None,
///     batch_prefix: "ds/t/".into(),
///     table_prefix: "ds/t".into(),
/// };
/// let object = |name: &str, size| ObjectMeta { name: name.into(), size, generation: 1, updated: None };
/// let listing = [
///     object("ds/t/_SUCCESS", 0),
///     object("ds/t/a.csv", 10),
///     object("ds/t/parts/p0.csv", 10),
///     object("ds/t/parts/p1.csv", 10),
/// ];
/// let settings = Settings::default();
/// let config = BatchConfig::merge("b", &[]).unwrap();
/// let files = select_data_files(&batch, "_SUCCESS", &listing);
/// let plan = plan_load(&settings, &batch, &config, &files, &listing, "runner", "ds_t", 42).unwrap();
/// assert_eq!(plan.jobs.len(), 1);
/// assert_eq!((plan.files, plan.bytes), (3, 30));
/// let JobKind::Load { source_uris, .. } = &plan.jobs[0].kind else { unreachable!() };
/// assert_eq!(source_uris, &["gs://b/ds/t/a.csv", "gs://b/ds/t/parts/*"]);
/// ```
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
    let owned = OwnedInput::new(batch, files, listing)?;
    let stem = JobIdStem::of_batch(settings, hint, batch, marker_generation);
    let ids = JobIds::new(settings, job_project, &stem);
    plan_listed_load(&ids, batch, config, &owned.input())
}

/// The listing and data files given to the public planning functions, as a [`PlanInput`]
/// owns them: data files missing from the listing are added after it, as unlisted.
struct OwnedInput {
    listing: Listing,
    listed: usize,
    data: Vec<usize>,
}

impl OwnedInput {
    fn new(batch: &Batch, files: &BatchFiles, listing: &[ObjectMeta]) -> Result<Self, PlanError> {
        let mut all = Listing::from_objects(&batch.batch_prefix, listing);
        let listed = all.len();
        let mut data = Vec::with_capacity(files.data.len());
        for file in &files.data {
            if !file.name.starts_with(batch.batch_prefix.as_str()) {
                return Err(PlanError::Invalid {
                    bucket: batch.bucket.clone(),
                    marker: batch.marker.clone(),
                    message: format!(
                        "gs://{}/{} is not under the batch's folder {:?}",
                        batch.bucket, file.name, batch.batch_prefix
                    ),
                });
            }
            match all.find(&file.name).filter(|&i| i < listed) {
                Some(i) => data.push(i),
                None => {
                    all.push(ObjectMeta {
                        name: file.name.clone(),
                        size: file.size,
                        generation: 0,
                        updated: None,
                    });
                    data.push(all.len() - 1);
                }
            }
        }
        Ok(OwnedInput {
            listing: all,
            listed,
            data,
        })
    }

    fn input(&self) -> PlanInput<'_> {
        PlanInput {
            listing: &self.listing,
            listed: self.listed,
            data: &self.data,
        }
    }
}

/// What a plan is made from: the batch's listing and the data files to load, as indices into
/// it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanInput<'a> {
    /// The listing of the batch prefix.
    pub(crate) listing: &'a Listing,
    /// How many objects of `listing` the store listed; any after them are data files a caller
    /// planned that the listing lacks (no wildcard covers them).
    pub(crate) listed: usize,
    /// The data files.
    pub(crate) data: &'a [usize],
}

impl<'a> PlanInput<'a> {
    /// The data files of `selection`, all listed.
    pub(crate) fn of(listing: &'a Listing, selection: &'a Selection) -> Self {
        PlanInput {
            listing,
            listed: listing.len(),
            data: &selection.data,
        }
    }
}

/// [`plan_load`] over a [`PlanInput`].
pub(crate) fn plan_listed_load(
    ids: &JobIds<'_>,
    batch: &Batch,
    config: &BatchConfig,
    input: &PlanInput<'_>,
) -> Result<LoadPlan, PlanError> {
    let data = sorted_data(batch, input)?;
    let groups = vec![(batch.destination.clone(), data)];
    let parts = split_groups(batch, input.listing, groups, ids.settings.max_batch_bytes)?;
    Ok(load_plan(ids, batch, config, input, parts))
}

/// Plans the load jobs of a batch whose files go into the partitions their names carry
/// (`fileTimestampRegex` in `ingest.json`): each data file's name, relative to the batch's
/// folder, is matched with `config.ingest.file_timestamp_regex`; the timestamp found gives its
/// partition at `granularity` (`table$YYYYMMDD`, …). Files of one partition are split into parts
/// as [`plan_load`] does, partitions in order; parts are numbered across the whole batch (so
/// every job id is distinct and deterministic), and a `WRITE_TRUNCATE` applies to the first
/// part of each partition: it replaces that partition only.
///
/// A file whose name carries no timestamp goes to `defaultPartition` when configured, else the
/// batch is [`PlanError::Invalid`] naming the file; so is a `defaultPartition` of another
/// granularity, a timestamp that is not a real date, and a destination whose path already
/// names a partition.
///
/// ```
/// use ingest_core::config::{BatchConfig, ConfigDir, ConfigFile};
/// use ingest_core::destination::Batch;
/// use ingest_core::plan::{plan_partitioned_load, select_data_files};
/// use ingest_core::ports::{JobKind, ObjectMeta, PartitionGranularity, TableRef};
/// use ingest_core::settings::Settings;
///
/// let batch = Batch {
///     bucket: "b".into(),
///     marker: "ds/t/_SUCCESS".into(),
///     destination: TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(), partition: None },
///     batch_id: None,
///     batch_timestamp: None,
///     batch_prefix: "ds/t/".into(),
///     table_prefix: "ds/t".into(),
/// };
/// let ingest_json = ConfigFile {
///     name: "_config/ingest.json".into(),
///     generation: 1,
///     content: br#"{"fileTimestampRegex": "(?P<yyyy>\\d{4})-(?P<mm>\\d\\d)-(?P<dd>\\d\\d)"}"#.to_vec(),
/// };
/// let config = BatchConfig::merge(
///     "b",
///     &[ConfigDir { prefix: "_config/".into(), ingest_json: Some(ingest_json), ..ConfigDir::default() }],
/// )
/// .unwrap();
/// let object = |name: &str| ObjectMeta { name: name.into(), size: 10, generation: 1, updated: None };
/// let listing = [object("ds/t/2024-01-02.csv"), object("ds/t/2024-01-03.csv")];
/// let files = select_data_files(&batch, "_SUCCESS", &listing);
/// let plan = plan_partitioned_load(
///     &Settings::default(), &batch, &config, &files, &listing, PartitionGranularity::Day, "p", "ds_t", 7,
/// )
/// .unwrap();
/// let partitions: Vec<_> = plan
///     .jobs
///     .iter()
///     .map(|job| match &job.kind {
///         JobKind::Load { destination, .. } => destination.partition.clone().unwrap(),
///         _ => unreachable!(),
///     })
///     .collect();
/// assert_eq!(partitions, ["$20240102", "$20240103"]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn plan_partitioned_load(
    settings: &Settings,
    batch: &Batch,
    config: &BatchConfig,
    files: &BatchFiles,
    listing: &[ObjectMeta],
    granularity: PartitionGranularity,
    job_project: &str,
    hint: &str,
    marker_generation: i64,
) -> Result<LoadPlan, PlanError> {
    let owned = OwnedInput::new(batch, files, listing)?;
    let stem = JobIdStem::of_batch(settings, hint, batch, marker_generation);
    let ids = JobIds::new(settings, job_project, &stem);
    plan_listed_partitioned_load(&ids, batch, config, &owned.input(), granularity)
}

/// [`plan_partitioned_load`] over a [`PlanInput`].
pub(crate) fn plan_listed_partitioned_load(
    ids: &JobIds<'_>,
    batch: &Batch,
    config: &BatchConfig,
    input: &PlanInput<'_>,
    granularity: PartitionGranularity,
) -> Result<LoadPlan, PlanError> {
    let invalid = |message: String| PlanError::Invalid {
        bucket: batch.bucket.clone(),
        marker: batch.marker.clone(),
        message,
    };
    let Some(regex) = config.ingest.file_timestamp_regex.as_ref() else {
        return plan_listed_load(ids, batch, config, input);
    };
    if let Some(partition) = &batch.destination.partition {
        return Err(invalid(format!(
            "the path names partition {partition}, and fileTimestampRegex puts each file into \
             the partition of its name: use one or the other"
        )));
    }
    let data = sorted_data(batch, input)?;
    let by_partition = partition_files(batch, input.listing, &data, regex, granularity, config)?;
    let groups = by_partition
        .into_iter()
        .map(|(decorator, files)| {
            let mut destination = batch.destination.clone();
            destination.partition = Some(format!("${decorator}"));
            (destination, std::borrow::Cow::Owned(files))
        })
        .collect();
    let parts = split_groups(batch, input.listing, groups, ids.settings.max_batch_bytes)?;
    Ok(load_plan(ids, batch, config, input, parts))
}

/// The data files by the partition (its decorator's digits) their names carry, in partition
/// order; see [`plan_partitioned_load`].
fn partition_files(
    batch: &Batch,
    listing: &Listing,
    data: &[usize],
    regex: &regex::Regex,
    granularity: PartitionGranularity,
    config: &BatchConfig,
) -> Result<BTreeMap<String, Vec<usize>>, PlanError> {
    let invalid = |message: String| PlanError::Invalid {
        bucket: batch.bucket.clone(),
        marker: batch.marker.clone(),
        message,
    };
    let width = granularity.decorator(chrono::DateTime::UNIX_EPOCH).len();
    let default = config.ingest.default_partition.as_deref();
    if let Some(default) = default.filter(|d| d.len() != width) {
        return Err(invalid(format!(
            "defaultPartition {default:?} is not a {} partition of the table ({width} digits)",
            granularity.as_str()
        )));
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &file in data {
        let relative = listing.relative(file);
        let decorator = match crate::destination::timestamp_from_regex(regex, relative) {
            Ok(Some(time)) => granularity.decorator(time),
            Ok(None) => match default {
                Some(default) => default.to_string(),
                None => {
                    return Err(invalid(format!(
                        "gs://{}/{}: fileTimestampRegex {:?} finds no timestamp in the file's \
                         name (relative to the batch, {relative:?}); rename the file, fix the \
                         regex, or set defaultPartition in ingest.json",
                        batch.bucket,
                        listing.name(file),
                        regex.as_str()
                    )))
                }
            },
            Err((value, rule)) => {
                return Err(invalid(format!(
                    "gs://{}/{}: {} (matched {value:?})",
                    batch.bucket,
                    listing.name(file),
                    rule.replace("TIMESTAMP_REGEX", "fileTimestampRegex")
                )))
            }
        };
        groups.entry(decorator).or_default().push(file);
    }
    Ok(groups)
}

/// What every job of a batch is identified by: the project it runs in and the stem of its ids
/// (see [`job_id`]).
pub(crate) struct JobIds<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) project: &'a str,
    pub(crate) stem: &'a JobIdStem,
}

impl<'a> JobIds<'a> {
    /// The jobs run in `project` whose ids share `stem`.
    pub(crate) fn new(settings: &'a Settings, project: &'a str, stem: &'a JobIdStem) -> Self {
        JobIds {
            settings,
            project,
            stem,
        }
    }
}

/// One load job to be: its destination, its index within that destination's parts, its files
/// (indices into the listing).
struct Part {
    destination: crate::ports::TableRef,
    index_in_destination: usize,
    files: Vec<usize>,
}

/// The data files in name order, without duplicates; none is [`PlanError::NoDataFiles`].
fn sorted_data<'a>(
    batch: &Batch,
    input: &PlanInput<'a>,
) -> Result<std::borrow::Cow<'a, [usize]>, PlanError> {
    let listing = input.listing;
    let in_order = input
        .data
        .windows(2)
        .all(|w| listing.relative(w[0]) < listing.relative(w[1]));
    let data = if in_order {
        std::borrow::Cow::Borrowed(input.data)
    } else {
        let mut data = input.data.to_vec();
        data.sort_by(|&a, &b| listing.relative(a).cmp(listing.relative(b)));
        data.dedup_by(|a, b| listing.relative(*a) == listing.relative(*b));
        std::borrow::Cow::Owned(data)
    };
    if data.is_empty() {
        return Err(PlanError::NoDataFiles {
            bucket: batch.bucket.clone(),
            marker: batch.marker.clone(),
        });
    }
    Ok(data)
}

/// Each destination's files split into parts (see [`split_into_parts`]), destinations in the
/// given order.
fn split_groups(
    batch: &Batch,
    listing: &Listing,
    groups: Vec<(crate::ports::TableRef, std::borrow::Cow<'_, [usize]>)>,
    max_bytes: u64,
) -> Result<Vec<Part>, PlanError> {
    let mut parts = Vec::new();
    for (destination, files) in groups {
        let split = split_into_parts(batch, listing, &files, max_bytes)?;
        for (index_in_destination, files) in split.into_iter().enumerate() {
            parts.push(Part {
                destination: destination.clone(),
                index_in_destination,
                files,
            });
        }
    }
    Ok(parts)
}

/// The jobs of the parts: ids numbered across the batch, labels, URIs with safe wildcards, and
/// the load configuration of each part.
fn load_plan(
    ids: &JobIds<'_>,
    batch: &Batch,
    config: &BatchConfig,
    input: &PlanInput<'_>,
    parts: Vec<Part>,
) -> LoadPlan {
    let listing = input.listing;
    let files_total = parts.iter().map(|p| p.files.len()).sum();
    let total_bytes = parts
        .iter()
        .flat_map(|p| &p.files)
        .fold(0u64, |sum, &f| sum.saturating_add(listing.size(f)));
    let uris = compact_uris(batch, input, &parts);

    let mut base_labels = job_labels(ids.settings, batch, config);
    let mut load = load_config(config);
    let parts_count = parts.len();
    let mut jobs = Vec::with_capacity(parts_count);
    for (index, (part, source_uris)) in parts.into_iter().zip(uris).enumerate() {
        // The last part takes the labels and the configuration; the others get copies.
        let (mut labels, load) = if index + 1 == parts_count {
            (std::mem::take(&mut base_labels), std::mem::take(&mut load))
        } else {
            (base_labels.clone(), load.clone())
        };
        labels.insert(PART_LABEL.to_string(), index.to_string());
        labels.insert(PARTS_LABEL.to_string(), parts_count.to_string());
        jobs.push(JobRequest {
            project: ids.project.to_string(),
            job_id: ids.stem.part(index),
            location: ids.settings.bq_location.clone(),
            labels,
            kind: JobKind::Load {
                destination: part.destination,
                source_uris,
                config: part_config(load, part.index_in_destination),
            },
        });
    }
    LoadPlan {
        mode: PlanMode::Load,
        jobs,
        files: files_total,
        bytes: total_bytes,
        create_table: None,
    }
}

/// The data files (sorted) in parts of at most [`MAX_SOURCE_URIS_PER_JOB`] files and
/// `max_bytes` bytes; a file larger than `max_bytes` is an error.
fn split_into_parts(
    batch: &Batch,
    listing: &Listing,
    data: &[usize],
    max_bytes: u64,
) -> Result<Vec<Vec<usize>>, PlanError> {
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes: u64 = 0;
    for &file in data {
        let size = listing.size(file);
        if size > max_bytes {
            return Err(too_large(batch, listing, file, max_bytes));
        }
        if !fits(current.len(), current_bytes, size, max_bytes) && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(file);
        current_bytes += size;
    }
    if !current.is_empty() {
        parts.push(current);
    }
    Ok(parts)
}

/// Whether a file of `size` bytes fits into a part of `files` files and `bytes` bytes.
fn fits(files: usize, bytes: u64, size: u64, max_bytes: u64) -> bool {
    files < MAX_SOURCE_URIS_PER_JOB && bytes.checked_add(size).is_some_and(|b| b <= max_bytes)
}

/// The error of a data file larger than `MAX_BATCH_BYTES` on its own.
fn too_large(batch: &Batch, listing: &Listing, file: usize, max_bytes: u64) -> PlanError {
    PlanError::Invalid {
        bucket: batch.bucket.clone(),
        marker: batch.marker.clone(),
        message: format!(
            "gs://{}/{} is {} bytes, more than MAX_BATCH_BYTES ({max_bytes}): no load job can \
             take it",
            batch.bucket,
            listing.name(file),
            listing.size(file)
        ),
    }
}

/// The batch's `load.json` configuration as every part's job takes it: without the keys the
/// service sets itself or refuses.
fn load_config(config: &BatchConfig) -> Map<String, Value> {
    let mut load = config.load.clone();
    for key in FORBIDDEN_LOAD_KEYS.iter().chain(OWN_KEYS) {
        load.remove(*key);
    }
    load
}

/// Whether a load configuration's `writeDisposition` erases or refuses what the table holds
/// (`WRITE_TRUNCATE`, `WRITE_EMPTY`): then it applies to part 0 alone ([`part_config`]).
pub(crate) fn erases_table(config: &Map<String, Value>) -> bool {
    config
        .get("writeDisposition")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            d.eq_ignore_ascii_case("WRITE_TRUNCATE") || d.eq_ignore_ascii_case("WRITE_EMPTY")
        })
}

/// The load configuration of part `part`: after part 0, a `WRITE_TRUNCATE` or `WRITE_EMPTY`
/// disposition becomes `WRITE_APPEND`, so that a part adds to what part 0 wrote.
fn part_config(mut config: Map<String, Value>, part: usize) -> Map<String, Value> {
    if part > 0 && erases_table(&config) {
        config.insert(
            "writeDisposition".to_string(),
            Value::String("WRITE_APPEND".to_string()),
        );
    }
    config
}

/// The directories (ending with `/`) of `relative` (a name relative to the batch prefix),
/// the batch prefix itself (`""`) first, shortest first.
fn dirs_of(relative: &str) -> impl Iterator<Item = &str> {
    std::iter::once("").chain(
        relative
            .match_indices('/')
            .map(move |(i, _)| &relative[..=i]),
    )
}

/// The source URIs of each part, with safe per-directory wildcards (see [`plan_load`]).
fn compact_uris(batch: &Batch, input: &PlanInput<'_>, parts: &[Part]) -> Vec<Vec<String>> {
    let listing = input.listing;
    let uri = |relative: &str| {
        let mut uri = String::with_capacity(
            "gs://".len() + batch.bucket.len() + 1 + listing.prefix().len() + relative.len() + 1,
        );
        uri.push_str("gs://");
        uri.push_str(&batch.bucket);
        uri.push('/');
        uri.push_str(listing.prefix());
        uri.push_str(relative);
        uri
    };
    let marker = batch.marker.strip_prefix(listing.prefix());
    // Every data file directly in the batch prefix: the one directory a wildcard could cover is
    // the prefix itself, which holds the marker. Nothing to count; every file is its own URI.
    // (The whole path's bench, 10 files in a batch: 13,500 of 184,800 instructions a marker
    // were that counting; `scripts/bench-whole-path-instructions.sh`.)
    let flat = || {
        parts
            .iter()
            .flat_map(|p| &p.files)
            .all(|&f| !listing.relative(f).contains('/'))
    };
    if marker.is_some() && flat() {
        return parts
            .iter()
            .map(|part| {
                part.files
                    .iter()
                    .map(|&f| uri(listing.relative(f)))
                    .collect()
            })
            .collect();
    }
    // The part of each listed object, `u32::MAX` for none (4 bytes an object).
    let mut part_of: Vec<u32> = vec![u32::MAX; listing.len()];
    for (part, files) in parts.iter().enumerate() {
        for &file in &files.files {
            part_of[file] = u32::try_from(part).unwrap_or(u32::MAX);
        }
    }
    // Who owns the objects of the listing under each directory (names are unique in a
    // sorted listing; an unsorted one counts each name once).
    let mut listed: HashMap<&str, DirOwner> = HashMap::new();
    let mut seen: Option<HashSet<&str>> = (!listing.is_sorted()).then(HashSet::new);
    for (index, &part) in part_of[..input.listed].iter().enumerate() {
        let name = listing.relative(index);
        if let Some(seen) = seen.as_mut() {
            if !seen.insert(name) {
                continue;
            }
        }
        let owner = Some(part).filter(|&p| p != u32::MAX).map(|p| p as usize);
        for dir in dirs_of(name) {
            let state = listed.get(dir).copied();
            listed.insert(dir, DirOwner::add(state, owner));
        }
    }
    // Who owns the data files under each directory (they may, wrongly, be missing from the
    // listing: then no wildcard covers them).
    let mut planned: HashMap<&str, DirOwner> = HashMap::new();
    for (part, files) in parts.iter().enumerate() {
        for &file in &files.files {
            for dir in dirs_of(listing.relative(file)) {
                let state = planned.get(dir).copied();
                planned.insert(dir, DirOwner::add(state, Some(part)));
            }
        }
    }
    let safe = |dir: &str, part: usize| -> bool {
        if dir.contains('*') || marker.is_some_and(|m| m.starts_with(dir)) {
            return false;
        }
        match (listed.get(dir), planned.get(dir)) {
            (Some(DirOwner::Part(p, n)), Some(DirOwner::Part(q, m))) => {
                *p == part && *q == part && n == m && *n >= 2
            }
            _ => false,
        }
    };

    parts
        .iter()
        .enumerate()
        .map(|(part, files)| {
            let mut uris = Vec::with_capacity(files.files.len());
            let mut wildcards: HashSet<&str> = HashSet::new();
            for &file in &files.files {
                let relative = listing.relative(file);
                match dirs_of(relative).find(|dir| safe(dir, part)) {
                    Some(dir) => {
                        if wildcards.insert(dir) {
                            let mut wildcard = uri(dir);
                            wildcard.push('*');
                            uris.push(wildcard);
                        }
                    }
                    None => uris.push(uri(relative)),
                }
            }
            uris.shrink_to_fit();
            uris
        })
        .collect()
}

mod stream;
pub(crate) use stream::PartStream;

#[cfg(test)]
mod tests;
