//! Settings, from the environment variables of the Python function `gcs_ocn_bq_ingest`.

use std::time::Duration;

use crate::destination::{DestinationError, DestinationRegex};
use crate::ident;

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
    /// `METRICS_TABLE_LABELS` (default false): label the service's per-table metrics (batches,
    /// ordered backlog and lock) with the table. Off, they carry no table, so that the number
    /// of series stays bounded whatever the bucket holds.
    pub metrics_table_labels: bool,
    /// `LOAD_JOBS_WARNING_PER_TABLE` (default 1,200): the service warns (a WARN log, once per
    /// table and UTC day) when it has created this many load jobs into one table today;
    /// BigQuery allows 1,500, and batches beyond that are parked.
    pub load_jobs_warning_per_table: u64,
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
            metrics_table_labels: false,
            load_jobs_warning_per_table: 1_200,
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
    ///
    /// Values are trimmed, and a variable set to an empty (or blank) value counts as unset,
    /// except where noted: `DESTINATION_REGEX` and `TIMESTAMP_REGEX` are used verbatim,
    /// `JOB_PREFIX=""` is an empty prefix, and `BQ_LOAD_STATE_TABLE=""` (or `none`) turns the
    /// state table off.
    ///
    /// ```
    /// use ingest_core::settings::Settings;
    /// let env = [("ORDER_PER_TABLE", "yes"), ("MAX_BATCH_BYTES", "1_000_000"), ("BQ_PROJECT", "my-project")];
    /// let settings = Settings::from_lookup(|k| {
    ///     env.iter().find(|(name, _)| *name == k).map(|(_, v)| v.to_string())
    /// })
    /// .unwrap();
    /// assert!(settings.order_per_table);
    /// assert_eq!(settings.max_batch_bytes, 1_000_000);
    /// assert_eq!(settings.job_project(), Some("my-project"));
    ///
    /// let err = Settings::from_lookup(|k| (k == "WAIT_FOR_JOB_SECONDS").then(|| "soon".to_string()))
    ///     .unwrap_err();
    /// assert_eq!(err.variable, "WAIT_FOR_JOB_SECONDS");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let env = Env { lookup };
        let defaults = Settings::default();
        let mut settings = Settings {
            success_filename: env
                .checked("SUCCESS_FILENAME", validate_filename)?
                .unwrap_or(defaults.success_filename),
            start_backfill_filename: env
                .checked("START_BACKFILL_FILENAME", validate_filename)?
                .or(defaults.start_backfill_filename),
            ..Settings::default()
        };
        check_reserved_filenames(&settings)?;
        if let Some(v) = env.get_verbatim("DESTINATION_REGEX") {
            settings.destination_regex = DestinationRegex::new(&v, false).map_err(|e| {
                let message = match e {
                    DestinationError::InvalidRegex { message, .. } => message,
                    other => other.to_string(),
                };
                env.error("DESTINATION_REGEX", &v, message)
            })?;
        }
        if let Some(bytes) = env.parse("MAX_BATCH_BYTES", |v| {
            parse_integer(v, true).and_then(positive)
        })? {
            settings.max_batch_bytes = bytes;
        }
        if let Some(v) = (env.lookup)("JOB_PREFIX") {
            let v = v.trim().to_string();
            validate_job_prefix(&v).map_err(|m| env.error("JOB_PREFIX", &v, m))?;
            settings.job_prefix = v;
        }
        settings.read_projects(&env)?;
        settings.read_jobs(&env)?;
        settings.read_selection(&env)?;
        settings.read_ordering(&env)?;
        settings.service_name = env.get("K_SERVICE").or_else(|| env.get("FUNCTION_NAME"));
        settings.failure_topic = env.checked("FAILURE_TOPIC", validate_topic)?;
        Ok(settings)
    }

    /// `BQ_PROJECT` (else `GOOGLE_CLOUD_PROJECT`, `GCP_PROJECT`, `GCLOUD_PROJECT`),
    /// `BQ_STORAGE_PROJECT`, `BQ_LOCATION`.
    fn read_projects<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &Env<F>,
    ) -> Result<(), SettingsError> {
        for variable in [
            "BQ_PROJECT",
            "GOOGLE_CLOUD_PROJECT",
            "GCP_PROJECT",
            "GCLOUD_PROJECT",
        ] {
            if let Some(project) = env.checked(variable, ident::validate_project_id)? {
                self.bq_project = Some(project);
                break;
            }
        }
        self.bq_storage_project = env.checked("BQ_STORAGE_PROJECT", ident::validate_project_id)?;
        self.bq_location = env.checked("BQ_LOCATION", validate_location)?;
        Ok(())
    }

    /// How jobs are waited for, retried and recorded.
    fn read_jobs<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &Env<F>,
    ) -> Result<(), SettingsError> {
        if let Some(seconds) = env.parse("WAIT_FOR_JOB_SECONDS", |v| parse_integer(v, false))? {
            self.wait_for_job = Duration::from_secs(seconds);
        }
        for (variable, field) in [
            ("ORDER_PER_TABLE", &mut self.order_per_table),
            ("WAIT_FOR_VALIDATION", &mut self.wait_for_validation),
            ("METRICS_TABLE_LABELS", &mut self.metrics_table_labels),
            (
                "FAIL_ON_ZERO_DML_ROWS_AFFECTED",
                &mut self.fail_on_zero_dml_rows_affected,
            ),
        ] {
            if let Some(value) = env.parse(variable, parse_bool)? {
                *field = value;
            }
        }
        let retries = env.parse("MAX_RETRIES_ON_BIGQUERY_ERROR", |v| {
            parse_integer(v, false)
                .and_then(|n| u32::try_from(n).map_err(|_| format!("must be at most {}", u32::MAX)))
        })?;
        if let Some(retries) = retries {
            self.max_retries_on_bigquery_error = retries;
        }
        let warning = env.parse("LOAD_JOBS_WARNING_PER_TABLE", |v| parse_integer(v, false))?;
        if let Some(warning) = warning {
            self.load_jobs_warning_per_table = warning;
        }
        if let Some(raw) = (env.lookup)("BQ_LOAD_STATE_TABLE") {
            let v = raw.trim();
            self.load_state_table = if v.is_empty() || v.eq_ignore_ascii_case("none") {
                None
            } else {
                ident::parse_table_path(v).map_err(|m| env.error("BQ_LOAD_STATE_TABLE", v, m))?;
                Some(v.to_string())
            };
        }
        Ok(())
    }

    /// Which objects are handled, and the batch timestamp of their names.
    fn read_selection<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &Env<F>,
    ) -> Result<(), SettingsError> {
        if let Some(v) = env.get("INCLUDE_PREFIXES") {
            self.include_prefixes = split_list(&v);
        }
        if let Some(v) = env.get("EXCLUDE_PREFIXES") {
            self.exclude_prefixes = split_list(&v);
        }
        if let Some(v) = env.get_verbatim("TIMESTAMP_REGEX") {
            self.timestamp_regex =
                Some(compile_timestamp_regex(&v).map_err(|m| env.error("TIMESTAMP_REGEX", &v, m))?);
        }
        Ok(())
    }

    /// The ordering lock's lease and the restart buffer.
    fn read_ordering<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &Env<F>,
    ) -> Result<(), SettingsError> {
        let lease = env.parse("ORDERING_LOCK_LEASE_SECONDS", |v| {
            parse_integer(v, false).and_then(positive)
        })?;
        if let Some(seconds) = lease {
            self.lock_lease = Duration::from_secs(seconds);
        }
        let buffer = env.parse("RESTART_BUFFER_SECONDS", |v| parse_integer(v, false))?;
        if let Some(seconds) = buffer {
            self.restart_buffer = Duration::from_secs(seconds);
        }
        Ok(())
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

/// Reads variables through a lookup function.
struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The trimmed value; `None` when unset or blank.
    fn get(&self, variable: &str) -> Option<String> {
        let value = (self.lookup)(variable)?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            None
        } else if trimmed.len() == value.len() {
            Some(value)
        } else {
            Some(trimmed.to_string())
        }
    }

    /// The value as set; `None` when unset or blank.
    fn get_verbatim(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable).filter(|v| !v.trim().is_empty())
    }

    /// The trimmed value read by `read`; `None` when unset or blank, an error naming the
    /// variable when `read` refuses it.
    fn parse<T>(
        &self,
        variable: &'static str,
        read: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, SettingsError> {
        self.get(variable)
            .map(|v| read(&v).map_err(|m| self.error(variable, &v, m)))
            .transpose()
    }

    /// The trimmed value when `check` accepts it; `None` when unset or blank.
    fn checked(
        &self,
        variable: &'static str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Result<Option<String>, SettingsError> {
        self.parse(variable, |v| check(v).map(|()| v.to_string()))
    }

    fn error(&self, variable: &'static str, value: &str, message: String) -> SettingsError {
        SettingsError {
            variable,
            value: value.to_string(),
            message,
        }
    }
}

/// A file name (`SUCCESS_FILENAME`, `START_BACKFILL_FILENAME`): a single path segment.
fn validate_filename(name: &str) -> Result<(), String> {
    if name.contains('/') {
        return Err("must be a file name, without '/'".to_string());
    }
    if name == "." || name == ".." {
        return Err("must be a file name, not '.' or '..'".to_string());
    }
    if name.len() > 1024 {
        return Err("must be at most 1024 bytes long (GCS's limit)".to_string());
    }
    Ok(())
}

/// `SUCCESS_FILENAME` and `START_BACKFILL_FILENAME` must not be one of the control files nor
/// each other: one event would then mean two things.
fn check_reserved_filenames(settings: &Settings) -> Result<(), SettingsError> {
    const RESERVED: [&str; 2] = [BACKFILL_FILENAME, "_bqlock"];
    let success = &settings.success_filename;
    if RESERVED.contains(&success.as_str()) {
        return Err(SettingsError {
            variable: "SUCCESS_FILENAME",
            value: success.clone(),
            message: format!("{success:?} is reserved for bq-ingest's own control files"),
        });
    }
    if let Some(start) = &settings.start_backfill_filename {
        if RESERVED.contains(&start.as_str()) {
            return Err(SettingsError {
                variable: "START_BACKFILL_FILENAME",
                value: start.clone(),
                message: format!("{start:?} is reserved for bq-ingest's own control files"),
            });
        }
        if start == success {
            return Err(SettingsError {
                variable: "START_BACKFILL_FILENAME",
                value: start.clone(),
                message: "must differ from SUCCESS_FILENAME".to_string(),
            });
        }
    }
    Ok(())
}

/// The longest `JOB_PREFIX`: job ids are at most 1024 characters and need room for the rest.
const MAX_JOB_PREFIX_LEN: usize = 100;

fn validate_job_prefix(prefix: &str) -> Result<(), String> {
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "may contain only letters, digits, '_' and '-' (BigQuery's job id rule); found {bad:?}"
        ));
    }
    if prefix.len() > MAX_JOB_PREFIX_LEN {
        return Err(format!(
            "must be at most {MAX_JOB_PREFIX_LEN} characters long; found {}",
            prefix.len()
        ));
    }
    Ok(())
}

/// A BigQuery location: `US`, `EU`, `us-central1`, `asia-northeast1`, ….
fn validate_location(location: &str) -> Result<(), String> {
    if location.len() > 64
        || !location
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(
            "must be a BigQuery location such as US, EU or us-central1 (letters, digits and '-')"
                .to_string(),
        );
    }
    Ok(())
}

/// A Pub/Sub topic: `projects/<project>/topics/<topic>` or a bare topic id.
fn validate_topic(topic: &str) -> Result<(), String> {
    let topic_id = if topic.contains('/') {
        let parts: Vec<&str> = topic.split('/').collect();
        match parts.as_slice() {
            ["projects", project, "topics", id] => {
                ident::validate_project_id(project)?;
                *id
            }
            _ => return Err("must be a topic id or projects/<project>/topics/<topic>".to_string()),
        }
    } else {
        topic
    };
    let len = topic_id.len();
    let starts_with_letter = topic_id
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic());
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_.~+%".contains(&b);
    if !(3..=255).contains(&len) || !starts_with_letter || !topic_id.bytes().all(allowed) {
        return Err(format!(
            "a topic id must be 3 to 255 characters of letters, digits and -_.~+%, starting \
             with a letter; found {topic_id:?}"
        ));
    }
    if topic_id.to_ascii_lowercase().starts_with("goog") {
        return Err("a topic id must not start with \"goog\"".to_string());
    }
    Ok(())
}

/// Python's `distutils.util.strtobool`: `y yes t true on 1` / `n no f false off 0`, any case.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Ok(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Ok(false),
        _ => {
            Err("must be a boolean: y, yes, t, true, on, 1 or n, no, f, false, off, 0".to_string())
        }
    }
}

/// A non-negative integer: digits, optionally grouped with `_` (`15_000_000`). With
/// `allow_exponent`, also scientific notation whose value is a whole number (`15e12`,
/// `1.5E13`).
fn parse_integer(value: &str, allow_exponent: bool) -> Result<u64, String> {
    let expected = if allow_exponent {
        "must be a non-negative whole number such as 15000000000000, 15_000_000_000_000 or 15e12"
    } else {
        "must be a non-negative whole number such as 60 or 1_000"
    };
    let bad = || expected.to_string();
    let too_large = || format!("must be at most {}", u64::MAX);
    let (mantissa, exponent) = match value.find(['e', 'E']) {
        Some(i) if allow_exponent => (&value[..i], Some(&value[i + 1..])),
        _ => (value, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) if exponent.is_some() => (i, f),
        _ => (mantissa, ""),
    };
    let digits_of = |s: &str| -> Result<String, String> {
        // Underscores only between digits.
        if s.starts_with('_') || s.ends_with('_') || s.contains("__") {
            return Err(bad());
        }
        let digits: String = s.chars().filter(|c| *c != '_').collect();
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(digits)
        } else {
            Err(bad())
        }
    };
    let int_digits = digits_of(int_part)?;
    let frac_digits = digits_of(frac_part)?;
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(bad());
    }
    let exponent: u32 = match exponent {
        None => 0,
        Some(e) => {
            let e = e.strip_prefix('+').unwrap_or(e);
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            e.parse().map_err(|_| too_large())?
        }
    };
    // value = int_digits.frac_digits × 10^exponent, which must be whole.
    let frac_len = u32::try_from(frac_digits.len()).map_err(|_| bad())?;
    let mut all_digits = int_digits;
    all_digits.push_str(&frac_digits);
    let all_digits = all_digits.trim_start_matches('0');
    let mut n: u128 = 0;
    for b in all_digits.bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    if n == 0 {
        return Ok(0);
    }
    let n = if exponent >= frac_len {
        let scale = 10u128
            .checked_pow(exponent - frac_len)
            .ok_or_else(too_large)?;
        n.checked_mul(scale).ok_or_else(too_large)?
    } else {
        let scale = 10u128.pow(frac_len - exponent);
        if n % scale != 0 {
            return Err(format!("{expected}; {value} is not a whole number"));
        }
        n / scale
    };
    u64::try_from(n).map_err(|_| too_large())
}

fn positive(n: u64) -> Result<u64, String> {
    if n == 0 {
        Err("must be greater than 0".to_string())
    } else {
        Ok(n)
    }
}

/// A comma-separated list: items trimmed, empty items dropped.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The named groups `TIMESTAMP_REGEX` may use; the first three are required.
const TIMESTAMP_GROUPS: [&str; 6] = ["yyyy", "mm", "dd", "hh", "mi", "ss"];

pub(crate) fn compile_timestamp_regex(pattern: &str) -> Result<regex::Regex, String> {
    let regex = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
    if let Some(unknown) = regex
        .capture_names()
        .flatten()
        .find(|name| !TIMESTAMP_GROUPS.contains(name))
    {
        return Err(format!(
            "unknown named group {unknown:?}; the allowed groups are {}",
            TIMESTAMP_GROUPS.join(", ")
        ));
    }
    let missing: Vec<&str> = TIMESTAMP_GROUPS[..3]
        .iter()
        .copied()
        .filter(|group| !regex.capture_names().any(|n| n == Some(*group)))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the named groups yyyy, mm and dd are required; missing {}",
            missing.join(", ")
        ));
    }
    Ok(regex)
}

#[cfg(test)]
mod tests;
