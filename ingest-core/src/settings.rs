//! Settings, from the environment variables of the Python function `gcs_ocn_bq_ingest`.

use std::time::Duration;

use crate::destination::DestinationRegex;

/// The default `SUCCESS_FILENAME`.
pub const DEFAULT_SUCCESS_FILENAME: &str = "_SUCCESS";
/// The file that (re)starts the ordered-backlog subscriber of a table.
pub const BACKFILL_FILENAME: &str = "_BACKFILL";
/// The default `JOB_PREFIX`.
pub const DEFAULT_JOB_PREFIX: &str = "gcf-ingest-";
/// The default `MAX_BATCH_BYTES`: 15 TB, BigQuery's per-load-job limit.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 15_000_000_000_000;
/// BigQuery's limit of source URIs per load job.
pub const MAX_SOURCE_URIS_PER_JOB: usize = 10_000;
/// The default `BQ_LOAD_STATE_TABLE`.
pub const DEFAULT_LOAD_STATE_TABLE: &str = "bigquery_loads.serverless_bq_loads";

/// Every setting of bq-ingest. Build with [`Settings::from_lookup`] (environment) or
/// [`Settings::default`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SUCCESS_FILENAME` (default `_SUCCESS`).
    pub success_filename: String,
    /// `START_BACKFILL_FILENAME` (default unset): the start gate of ordered tables.
    pub start_backfill_filename: Option<String>,
    /// `DESTINATION_REGEX` (default: the Python function's).
    pub destination_regex: DestinationRegex,
    /// `MAX_BATCH_BYTES` (default 15 TB).
    pub max_batch_bytes: u64,
    /// `JOB_PREFIX` (default `gcf-ingest-`).
    pub job_prefix: String,
    /// `BQ_PROJECT`: the project that runs the jobs (default: `GOOGLE_CLOUD_PROJECT`).
    pub bq_project: Option<String>,
    /// `BQ_STORAGE_PROJECT`: the project of destination tables when the path names none
    /// (default: `bq_project`).
    pub bq_storage_project: Option<String>,
    /// `BQ_LOCATION` (default unset).
    pub bq_location: Option<String>,
    /// `WAIT_FOR_JOB_SECONDS`: how long one event waits for its jobs (default 60).
    pub wait_for_job: Duration,
    /// `ORDER_PER_TABLE` (default false).
    pub order_per_table: bool,
    /// `WAIT_FOR_VALIDATION` (default false).
    pub wait_for_validation: bool,
    /// `FAIL_ON_ZERO_DML_ROWS_AFFECTED` (default true).
    pub fail_on_zero_dml_rows_affected: bool,
    /// `MAX_RETRIES_ON_BIGQUERY_ERROR` (default 3).
    pub max_retries_on_bigquery_error: u32,
    /// `BQ_LOAD_STATE_TABLE` (default `bigquery_loads.serverless_bq_loads`); `""` or `none`
    /// turns the state table off.
    pub load_state_table: Option<String>,
    /// `INCLUDE_PREFIXES`: comma-separated object-name prefixes this deployment serves (default:
    /// all).
    pub include_prefixes: Vec<String>,
    /// `EXCLUDE_PREFIXES`: comma-separated object-name prefixes this deployment ignores.
    pub exclude_prefixes: Vec<String>,
    /// `TIMESTAMP_REGEX`: a regex with named groups `yyyy`, `mm`, `dd` and optionally `hh`,
    /// `mi`, `ss`, matched against the object path when the destination has no time.
    pub timestamp_regex: Option<regex::Regex>,
    /// `K_SERVICE` / `FUNCTION_NAME`: the service name, used as a job label.
    pub service_name: Option<String>,
    /// `ORDERING_LOCK_LEASE_SECONDS`: how long a lock with no live job and no progress is kept
    /// before it is recovered (default 3600).
    pub lock_lease: Duration,
    /// `RESTART_BUFFER_SECONDS`: the ordered subscriber hands over this long before its
    /// deadline (default 30).
    pub restart_buffer: Duration,
    /// `FAILURE_TOPIC`: Pub/Sub topic where failed batches are published (default unset).
    pub failure_topic: Option<String>,
}

/// A setting whose value is invalid. Names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {message}")]
pub struct SettingsError {
    /// The environment variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub message: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            success_filename: DEFAULT_SUCCESS_FILENAME.to_string(),
            start_backfill_filename: None,
            destination_regex: DestinationRegex::default(),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            job_prefix: DEFAULT_JOB_PREFIX.to_string(),
            bq_project: None,
            bq_storage_project: None,
            bq_location: None,
            wait_for_job: Duration::from_secs(60),
            order_per_table: false,
            wait_for_validation: false,
            fail_on_zero_dml_rows_affected: true,
            max_retries_on_bigquery_error: 3,
            load_state_table: Some(DEFAULT_LOAD_STATE_TABLE.to_string()),
            include_prefixes: Vec::new(),
            exclude_prefixes: Vec::new(),
            timestamp_regex: None,
            service_name: None,
            lock_lease: Duration::from_secs(3600),
            restart_buffer: Duration::from_secs(30),
            failure_topic: None,
        }
    }
}

impl Settings {
    /// Reads the settings through `lookup` (e.g. `|k| std::env::var(k).ok()`). Unset variables
    /// take their defaults; an invalid value is an error naming the variable.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let _ = lookup;
        unimplemented!("helper fills this in")
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// The project that runs jobs: `BQ_PROJECT`, else `GOOGLE_CLOUD_PROJECT`-derived default.
    pub fn job_project(&self) -> Option<&str> {
        self.bq_project.as_deref()
    }

    /// The project of destination tables whose path names none.
    pub fn storage_project(&self) -> Option<&str> {
        self.bq_storage_project
            .as_deref()
            .or(self.bq_project.as_deref())
    }
}
