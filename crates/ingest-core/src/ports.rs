//! The ports: the only ways the core reaches the outside world.
//!
//! Each trait is small and each method states its exact semantics and errors, in the spirit of
//! the `object_store` crate. Every implementation — the in-memory doubles in `ingest-memory` and
//! the emulator-backed adapters — must pass the shared conformance suites in
//! `ingest_core::testing` (feature `testing`; documented on docs.rs, which builds every
//! feature).
//!
//! The core never retries a transport error itself: adapters retry throttling, 5xx and timeouts
//! within their own bound and report what is left as [`StoreError::Transient`] /
//! [`WarehouseError::Transient`], which the callers turn into "try again later" (for example a
//! Pub/Sub redelivery).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The metadata of one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The full object name inside its bucket, e.g. `dataset/table/_SUCCESS`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The object's generation: changes every time the object is (re)written; never 0.
    pub generation: i64,
    /// When this generation was written, when the store reports it.
    pub updated: Option<DateTime<Utc>>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects whose name starts with the prefix, in lexicographic order of name.
    pub objects: Vec<ObjectMeta>,
    /// Pass this to [`ObjectStore::list`] to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// How [`ObjectStore::put`] treats an object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Write unconditionally, replacing any current generation.
    Overwrite,
    /// Write only if no live object has this name (`ifGenerationMatch=0`); otherwise
    /// [`StoreError::AlreadyExists`].
    Create,
    /// Write only if the live generation is exactly this one; otherwise
    /// [`StoreError::PreconditionFailed`] (also when the object does not exist).
    Update(i64),
}

/// Errors of an [`ObjectStore`]. Each names the object (`gs://bucket/name`) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object (or bucket) does not exist.
    #[error("gs://{bucket}/{name} not found")]
    NotFound {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// A create-only write found a live object.
    #[error("gs://{bucket}/{name} already exists")]
    AlreadyExists {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// A generation precondition did not hold.
    #[error("gs://{bucket}/{name}: generation precondition failed")]
    PreconditionFailed {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// Throttling, a server error or a timeout that outlived the adapter's retries. Retrying
    /// later may succeed.
    #[error("gs://{bucket}/{name}: transient error: {message}")]
    Transient {
        /// Bucket name.
        bucket: String,
        /// Object name or prefix.
        name: String,
        /// What the store said.
        message: String,
    },
    /// Anything else (permission denied, bad request, …). Retrying will not help.
    #[error("gs://{bucket}/{name}: {message}")]
    Other {
        /// Bucket name.
        bucket: String,
        /// Object name or prefix.
        name: String,
        /// What the store said.
        message: String,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// An object store such as Google Cloud Storage.
///
/// Names are full object names inside a bucket; prefixes are plain string prefixes (no delimiter
/// semantics: a listing is recursive).
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Lists one page of the live objects of `bucket` whose names start with `prefix`, in
    /// lexicographic order, at most `max_results` of them when given.
    ///
    /// A bucket with no such object gives an empty page, not an error. `page_token` is the
    /// [`ListPage::next_page_token`] of the previous page.
    ///
    /// Errors: [`StoreError::NotFound`] when the bucket does not exist.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError>;

    /// Reads the whole content of the live generation of an object.
    ///
    /// Errors: [`StoreError::NotFound`].
    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError>;

    /// Returns the metadata of the live generation of an object.
    ///
    /// Errors: [`StoreError::NotFound`].
    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError>;

    /// Writes an object and returns the metadata of the new generation.
    ///
    /// Errors: [`StoreError::AlreadyExists`] for [`PutMode::Create`] when the object exists;
    /// [`StoreError::PreconditionFailed`] for [`PutMode::Update`] when the live generation is
    /// another one or the object does not exist.
    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError>;

    /// Deletes an object; with `if_generation` only when that is the live generation.
    ///
    /// Errors: [`StoreError::NotFound`] when there is no live object;
    /// [`StoreError::PreconditionFailed`] when `if_generation` is given and another generation
    /// is live.
    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError>;

    /// Copies generation `generation` of `gs://bucket/name` to `gs://to_bucket/to_name`, which
    /// must not exist yet, and returns the metadata of the copy.
    ///
    /// Errors: [`StoreError::NotFound`] when the source has no live object;
    /// [`StoreError::PreconditionFailed`] when another generation of it is live;
    /// [`StoreError::AlreadyExists`] when the destination exists.
    ///
    /// The provided implementation reads the source and creates the copy with
    /// [`PutMode::Create`]; a store that copies on the server (GCS's `rewriteTo`) overrides it.
    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        to_bucket: &str,
        to_name: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let (meta, content) = self.read(bucket, name).await?;
        if meta.generation != generation {
            return Err(StoreError::PreconditionFailed {
                bucket: bucket.to_string(),
                name: name.to_string(),
            });
        }
        self.put(to_bucket, to_name, content, PutMode::Create).await
    }
}

/// A BigQuery table, with an optional partition decorator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableRef {
    /// Project id.
    pub project: String,
    /// Dataset id.
    pub dataset: String,
    /// Table id, without decorator.
    pub table: String,
    /// Partition decorator including the `$`, e.g. `$2020010203`.
    pub partition: Option<String>,
}

impl TableRef {
    /// The table id with its decorator, as BigQuery's `tableId` field takes it
    /// (`table$20201030`).
    pub fn table_id_with_partition(&self) -> String {
        match &self.partition {
            Some(p) => format!("{}{}", self.table, p),
            None => self.table.clone(),
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.project,
            self.dataset,
            self.table_id_with_partition()
        )
    }
}

/// A named query parameter (`@name` in the SQL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryParameter {
    /// Name without the `@`.
    pub name: String,
    /// BigQuery type, e.g. `STRING`, `TIMESTAMP`.
    pub type_name: String,
    /// The value as BigQuery's REST API takes it (a string), or `None` for NULL.
    pub value: Option<String>,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobKind {
    /// A load job (`configuration.load`).
    Load {
        /// Destination table, with its partition decorator.
        destination: TableRef,
        /// `gs://` URIs of the data files (possibly per-directory wildcards).
        source_uris: Vec<String>,
        /// The remaining `configuration.load` fields in BigQuery's REST JSON shape
        /// (`sourceFormat`, `fieldDelimiter`, `writeDisposition`, …), never `sourceUris`,
        /// `destinationTable` nor bq-ingest's own keys.
        config: serde_json::Map<String, serde_json::Value>,
    },
    /// A query job (`configuration.query`) that transforms the batch.
    Query {
        /// Standard SQL text with placeholders already replaced by validated identifiers.
        sql: String,
        /// External tables the query reads (`tableDefinitions`), by name (`temp_ext`), in
        /// BigQuery's `ExternalDataConfiguration` JSON shape.
        table_definitions: BTreeMap<String, serde_json::Value>,
        /// Named query parameters.
        parameters: Vec<QueryParameter>,
    },
}

/// A job to submit, with the id chosen by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    /// The project that runs (and is billed for) the job.
    pub project: String,
    /// The deterministic job id (`[A-Za-z0-9_-]{1,1024}`).
    pub job_id: String,
    /// Job location, when set (e.g. `US`, `EU`).
    pub location: Option<String>,
    /// Labels, already sanitized to BigQuery's rules.
    pub labels: BTreeMap<String, String>,
    /// The work.
    pub kind: JobKind,
}

/// Identifies a submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobRef {
    /// Project the job runs in.
    pub project: String,
    /// Job id.
    pub job_id: String,
    /// Location, when known.
    pub location: Option<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, not started.
    Pending,
    /// Running.
    Running,
    /// Finished, successfully or not (see [`JobStatus::error`]).
    Done,
}

/// The error a finished job ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// BigQuery's reason code, e.g. `invalid`, `backendError`, `rateLimitExceeded`.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// A job's status as the warehouse reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub job: JobRef,
    /// Its state.
    pub state: JobState,
    /// Set when a done job failed.
    pub error: Option<JobError>,
    /// Rows written (load: `outputRows`; query: DML affected rows when known).
    pub output_rows: Option<u64>,
    /// Bytes read (load: `inputFileBytes`; query: `totalBytesProcessed`).
    pub input_bytes: Option<u64>,
    /// For queries: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `SCRIPT`, `SELECT`, ….
    pub statement_type: Option<String>,
    /// For DML queries: `numDmlAffectedRows`.
    pub dml_affected_rows: Option<u64>,
    /// The job's labels.
    pub labels: BTreeMap<String, String>,
    /// When the job was created, started and ended.
    pub created: Option<DateTime<Utc>>,
    /// Start time.
    pub started: Option<DateTime<Utc>>,
    /// End time.
    pub ended: Option<DateTime<Utc>>,
}

impl JobStatus {
    /// A new status with only the job and state set.
    pub fn new(job: JobRef, state: JobState) -> Self {
        JobStatus {
            job,
            state,
            error: None,
            output_rows: None,
            input_bytes: None,
            statement_type: None,
            dml_affected_rows: None,
            labels: BTreeMap::new(),
            created: None,
            started: None,
            ended: None,
        }
    }

    /// Done without error.
    pub fn succeeded(&self) -> bool {
        self.state == JobState::Done && self.error.is_none()
    }
}

/// One row of the load-state table: the outcome of one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// `gs://bucket/name` of the success marker.
    pub marker_uri: String,
    /// The marker's generation.
    pub marker_generation: i64,
    /// Destination table, with decorator (`project.dataset.table$p`).
    pub destination: String,
    /// The batch id, when the path has one.
    pub batch_id: Option<String>,
    /// Ids of the jobs that applied the batch.
    pub job_ids: Vec<String>,
    /// `load` or `transform`.
    pub mode: String,
    /// `done`, `failed` or `retried`.
    pub state: String,
    /// The error, for a failed batch.
    pub error: Option<String>,
    /// Rows written.
    pub rows: Option<u64>,
    /// Bytes read.
    pub bytes: Option<u64>,
    /// When the first job was submitted.
    pub submitted_at: Option<DateTime<Utc>>,
    /// When the first job started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the outcome was final.
    pub ended_at: DateTime<Utc>,
}

impl LoadRecord {
    /// What makes two rows the same logical row: the marker, its generation, the outcome and —
    /// for `retried` rows, of which a batch may have several — the jobs. Every delivery that
    /// sees a batch end writes its row again with this identity (the BigQuery adapter's
    /// `insertId`), so readers deduplicate on it (see `docs/operations.md`).
    ///
    /// ```
    /// # use ingest_core::ports::LoadRecord;
    /// # let record = LoadRecord {
    /// #     marker_uri: "gs://b/ds/t/_SUCCESS".into(), marker_generation: 7,
    /// #     destination: "p.ds.t".into(), batch_id: None, job_ids: vec!["j".into()], mode: "load".into(),
    /// #     state: "done".into(), error: None, rows: None, bytes: None, submitted_at: None,
    /// #     started_at: None, ended_at: chrono::Utc::now() };
    /// assert_eq!(record.identity(), "gs://b/ds/t/_SUCCESS#7#done");
    /// let retried = LoadRecord { state: "retried".into(), ..record };
    /// assert_eq!(retried.identity(), "gs://b/ds/t/_SUCCESS#7#retried#j");
    /// ```
    pub fn identity(&self) -> String {
        let mut identity = format!(
            "{}#{}#{}",
            self.marker_uri, self.marker_generation, self.state
        );
        if self.state == "retried" {
            identity.push('#');
            identity.push_str(&self.job_ids.join(","));
        }
        identity
    }
}

/// Errors of a [`Warehouse`]. Each names the job or table it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseError {
    /// A job with this id exists already (HTTP 409 on insert): the same batch was submitted
    /// before. Callers follow that job instead.
    #[error("job {job_id} already exists")]
    AlreadyExists {
        /// Job id.
        job_id: String,
    },
    /// The request was rejected (HTTP 400, 403, 404 on a table, …). Retrying will not help.
    #[error("{what}: rejected: {message}")]
    Rejected {
        /// The job id or table the request was about.
        what: String,
        /// What the warehouse said.
        message: String,
    },
    /// Throttling (429), a server error (5xx) or a timeout that outlived the adapter's retries.
    #[error("{what}: transient error: {message}")]
    Transient {
        /// The job id or table the request was about.
        what: String,
        /// What the warehouse said.
        message: String,
    },
}

impl WarehouseError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, WarehouseError::Transient { .. })
    }
}

/// The granularity of a table's time partitioning (BigQuery's `timePartitioning.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionGranularity {
    /// `HOUR`: decorators `$YYYYMMDDHH`.
    Hour,
    /// `DAY` (BigQuery's default): decorators `$YYYYMMDD`.
    Day,
    /// `MONTH`: decorators `$YYYYMM`.
    Month,
    /// `YEAR`: decorators `$YYYY`.
    Year,
}

impl PartitionGranularity {
    /// From BigQuery's `timePartitioning.type` (any case); `None` for another value.
    ///
    /// ```
    /// use ingest_core::ports::PartitionGranularity;
    /// assert_eq!(PartitionGranularity::parse("hour"), Some(PartitionGranularity::Hour));
    /// assert_eq!(PartitionGranularity::parse("WEEK"), None);
    /// ```
    pub fn parse(kind: &str) -> Option<PartitionGranularity> {
        match kind.to_ascii_uppercase().as_str() {
            "HOUR" => Some(PartitionGranularity::Hour),
            "DAY" => Some(PartitionGranularity::Day),
            "MONTH" => Some(PartitionGranularity::Month),
            "YEAR" => Some(PartitionGranularity::Year),
            _ => None,
        }
    }

    /// BigQuery's name: `HOUR`, `DAY`, `MONTH`, `YEAR`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PartitionGranularity::Hour => "HOUR",
            PartitionGranularity::Day => "DAY",
            PartitionGranularity::Month => "MONTH",
            PartitionGranularity::Year => "YEAR",
        }
    }

    /// The partition decorator's digits for `time`: `2024010203` (hour), `20240102` (day), …
    ///
    /// ```
    /// use ingest_core::ports::PartitionGranularity;
    /// let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z").unwrap().to_utc();
    /// assert_eq!(PartitionGranularity::Hour.decorator(t), "2024010203");
    /// assert_eq!(PartitionGranularity::Month.decorator(t), "202401");
    /// ```
    pub fn decorator(&self, time: DateTime<Utc>) -> String {
        let format = match self {
            PartitionGranularity::Hour => "%Y%m%d%H",
            PartitionGranularity::Day => "%Y%m%d",
            PartitionGranularity::Month => "%Y%m",
            PartitionGranularity::Year => "%Y",
        };
        time.format(format).to_string()
    }
}

/// How a table is partitioned by time (BigQuery's `Table.timePartitioning`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePartitioning {
    /// `type`.
    pub granularity: PartitionGranularity,
    /// `field`; `None` for ingestion-time partitioning (`_PARTITIONTIME`).
    pub field: Option<String>,
}

/// A data warehouse such as BigQuery.
#[async_trait]
pub trait Warehouse: Send + Sync + Debug {
    /// Submits a job under its caller-chosen id and returns its status right after submission
    /// (which may already be [`JobState::Done`]).
    ///
    /// Errors: [`WarehouseError::AlreadyExists`] when a job with this id exists in the project,
    /// whatever its state — the job is not run again.
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError>;

    /// The current status of a job, or `None` when no job has this id.
    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError>;

    /// The statuses of the child jobs of a multi-statement query, in execution order; empty for
    /// other jobs.
    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError>;

    /// Appends one row to the load-state table `table` (created when missing).
    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError>;

    /// The rows of the load-state table `table` whose `ended_at` is at or after `since`, in no
    /// particular order (the operator's commands: `status`, `reconcile`). A table or dataset
    /// that does not exist has no rows: `Ok(vec![])`, not an error.
    ///
    /// Errors: transient ones as for every call; [`WarehouseError::Rejected`] when the table
    /// cannot be read (no permission, another schema).
    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError>;

    /// How the existing table `table` is partitioned by time (its partition decorator, if any,
    /// is ignored); `None` when it is not partitioned by time (or by integer range).
    ///
    /// Errors: [`WarehouseError::Rejected`] naming the table when it does not exist or cannot
    /// be read; transient ones as for every call.
    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError>;

    /// Creates the table `table` (its decorator, if any, is ignored) from `resource`, a
    /// BigQuery `Table` resource without `tableReference` (`schema`, `timePartitioning`,
    /// `rangePartitioning`, `clustering`, `description`, `labels`).
    ///
    /// Returns whether this call created it: `false` when the table exists (it is left as it
    /// is, whatever its schema), so that racing creators all go on.
    ///
    /// Errors: [`WarehouseError::Rejected`] naming the table for an invalid resource or a
    /// missing dataset.
    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError>;
    /// The schema of the existing table `table` (its decorator ignored): BigQuery's
    /// `TableSchema` (`{"fields": [...]}`), or `None` when it has none.
    ///
    /// Errors: [`WarehouseError::Rejected`] naming the table when it does not exist or cannot
    /// be read.
    async fn table_schema(
        &self,
        table: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError>;
}

/// Time, for polling and deadlines.
///
/// Real implementations read the system clock and sleep on the runtime's timer; the memory clock
/// advances virtual time instantly, so waiting loops are testable and fast.
#[async_trait]
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Waits `duration` (a virtual clock advances by it instead).
    async fn sleep(&self, duration: Duration);
}

/// A failed batch, as announced to a [`FailureSink`]: everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    /// Bucket of the marker.
    pub bucket: String,
    /// The marker object.
    pub object: String,
    /// The marker's generation.
    pub generation: i64,
    /// `gs://bucket/object`.
    pub marker_uri: String,
    /// Destination table, when known.
    pub destination: String,
    /// The jobs that ran.
    pub job_ids: Vec<String>,
    /// What failed.
    pub error: String,
    /// When.
    pub failed_at: DateTime<Utc>,
    /// To replay: publish this object's finalize notification again (e.g. `bq-ingest backfill
    /// gs://bucket/object --mode notifications`), or re-upload the marker for new job ids.
    pub replay: String,
}

/// Where failed batches are announced (`FAILURE_TOPIC`), besides the state table and the logs.
#[async_trait]
pub trait FailureSink: Send + Sync + Debug {
    /// Announces one failure. An error is logged by the caller; the batch's outcome stands.
    async fn announce(&self, failure: &FailureReport) -> Result<(), String>;
}

/// Where the core and the front ends report what they did, for metrics (the service's
/// `bq_ingest_*` Prometheus metrics). Every method is called on the path of a notification:
/// implementations must be cheap, must not block and cannot fail. [`NoObserver`] ignores
/// everything; it is what a [`Ports`](crate::pipeline::Ports) has unless told otherwise.
///
/// Arguments are bounded in number (front ends, outcome names, job kinds), except `table` and
/// `table_prefix`, which name tables: an implementation decides whether to keep them.
pub trait Observer: Send + Sync + Debug {
    /// A front end finished handling one notification. `front_end` is the form it came in
    /// (`push`, `cloudevent_binary`, `cloudevent_structured`, `background`; `http` for a
    /// request that was none of them) or `pull`. `outcome` is an
    /// [`Outcome`](crate::ingest::Outcome) name, or `error` (transient, handed back),
    /// `malformed` (not a notification), `stopping` (handed back at shutdown), `panicked` or
    /// `timed_out` (pull). `elapsed` is from receipt to answer.
    fn notification_handled(
        &self,
        front_end: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    );

    /// A batch's final state row was written (or, with no state table, would have been):
    /// `state` is `done` or `failed`; `table` is `project.dataset.table` without decorator, or
    /// empty when the batch failed before its destination was known.
    fn batch_recorded(&self, table: &str, state: &str);

    /// A job was submitted and created (not a duplicate of an existing id): `kind` is `load` or
    /// `query`; `retry` when it resubmits a part whose job failed (`…-rN`).
    fn job_submitted(&self, kind: &'static str, retry: bool);

    /// A load job into `table` (`project.dataset.table`, without decorator) was created at
    /// `at`: what the table's daily quota of load jobs (1,500) counts. The service's metrics
    /// keep a count per table and UTC day, and warn near the quota.
    fn load_job_created(&self, table: &str, at: DateTime<Utc>);

    /// A state row could not be written: `transient` when the notification is handed back so
    /// that a redelivery writes it, else the row is lost (and logged at ERROR).
    fn state_row_failed(&self, transient: bool);

    /// A success marker's batch is done, `latency` after the notification's event time (the
    /// marker's finalize).
    fn marker_done(&self, latency: Duration);

    /// An ordered table's subscriber listed its backlog: `items` batches wait, counted on the
    /// first listing page (exact up to 100, a lower bound beyond).
    fn ordered_backlog_observed(&self, table_prefix: &str, items: usize);

    /// An ordered table's subscriber read its lock: `age` since it was last written (taken,
    /// heartbeat, released), `None` when no lock is held.
    fn ordered_lock_observed(&self, table_prefix: &str, age: Option<Duration>);
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn notification_handled(&self, _: &'static str, _: &'static str, _: Duration) {}
    fn batch_recorded(&self, _: &str, _: &str) {}
    fn job_submitted(&self, _: &'static str, _: bool) {}
    fn load_job_created(&self, _: &str, _: DateTime<Utc>) {}
    fn state_row_failed(&self, _: bool) {}
    fn marker_done(&self, _: Duration) {}
    fn ordered_backlog_observed(&self, _: &str, _: usize) {}
    fn ordered_lock_observed(&self, _: &str, _: Option<Duration>) {}
}

impl JobKind {
    /// `load` or `query`.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Load { .. } => "load",
            JobKind::Query { .. } => "query",
        }
    }
}

// Shared handles are ports too, so that a decorator can wrap an `Arc` the caller keeps.

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        (**self).list(bucket, prefix, page_token, max_results).await
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        (**self).read(bucket, name).await
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        (**self).stat(bucket, name).await
    }

    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        (**self).put(bucket, name, content, mode).await
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        (**self).delete(bucket, name, if_generation).await
    }

    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        to_bucket: &str,
        to_name: &str,
    ) -> Result<ObjectMeta, StoreError> {
        (**self)
            .copy(bucket, name, generation, to_bucket, to_name)
            .await
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<T: Warehouse + ?Sized> Warehouse for std::sync::Arc<T> {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        (**self).submit(request).await
    }

    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        (**self).job_status(job).await
    }

    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        (**self).child_jobs(parent).await
    }

    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        (**self).record_outcome(table, record).await
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        (**self).recorded_outcomes(table, since).await
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        (**self).time_partitioning(table).await
    }

    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        (**self).create_table(table, resource).await
    }
    async fn table_schema(
        &self,
        table: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        (**self).table_schema(table).await
    }
}
