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
        let mut settings = Settings::default();

        if let Some(v) = env.get("SUCCESS_FILENAME") {
            validate_filename(&v).map_err(|m| env.error("SUCCESS_FILENAME", &v, m))?;
            settings.success_filename = v;
        }
        if let Some(v) = env.get("START_BACKFILL_FILENAME") {
            validate_filename(&v).map_err(|m| env.error("START_BACKFILL_FILENAME", &v, m))?;
            settings.start_backfill_filename = Some(v);
        }
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
        if let Some(v) = env.get("MAX_BATCH_BYTES") {
            settings.max_batch_bytes = parse_integer(&v, true)
                .and_then(positive)
                .map_err(|m| env.error("MAX_BATCH_BYTES", &v, m))?;
        }
        if let Some(v) = (env.lookup)("JOB_PREFIX") {
            let v = v.trim().to_string();
            validate_job_prefix(&v).map_err(|m| env.error("JOB_PREFIX", &v, m))?;
            settings.job_prefix = v;
        }
        for variable in [
            "BQ_PROJECT",
            "GOOGLE_CLOUD_PROJECT",
            "GCP_PROJECT",
            "GCLOUD_PROJECT",
        ] {
            if let Some(v) = env.get(variable) {
                ident::validate_project_id(&v).map_err(|m| env.error(variable, &v, m))?;
                settings.bq_project = Some(v);
                break;
            }
        }
        if let Some(v) = env.get("BQ_STORAGE_PROJECT") {
            ident::validate_project_id(&v).map_err(|m| env.error("BQ_STORAGE_PROJECT", &v, m))?;
            settings.bq_storage_project = Some(v);
        }
        if let Some(v) = env.get("BQ_LOCATION") {
            validate_location(&v).map_err(|m| env.error("BQ_LOCATION", &v, m))?;
            settings.bq_location = Some(v);
        }
        if let Some(v) = env.get("WAIT_FOR_JOB_SECONDS") {
            settings.wait_for_job = parse_integer(&v, false)
                .map(Duration::from_secs)
                .map_err(|m| env.error("WAIT_FOR_JOB_SECONDS", &v, m))?;
        }
        for (variable, field) in [
            ("ORDER_PER_TABLE", &mut settings.order_per_table),
            ("WAIT_FOR_VALIDATION", &mut settings.wait_for_validation),
            (
                "FAIL_ON_ZERO_DML_ROWS_AFFECTED",
                &mut settings.fail_on_zero_dml_rows_affected,
            ),
        ] {
            if let Some(v) = env.get(variable) {
                *field = parse_bool(&v).map_err(|m| env.error(variable, &v, m))?;
            }
        }
        if let Some(v) = env.get("MAX_RETRIES_ON_BIGQUERY_ERROR") {
            settings.max_retries_on_bigquery_error = parse_integer(&v, false)
                .and_then(|n| u32::try_from(n).map_err(|_| format!("must be at most {}", u32::MAX)))
                .map_err(|m| env.error("MAX_RETRIES_ON_BIGQUERY_ERROR", &v, m))?;
        }
        if let Some(raw) = (env.lookup)("BQ_LOAD_STATE_TABLE") {
            let v = raw.trim();
            settings.load_state_table = if v.is_empty() || v.eq_ignore_ascii_case("none") {
                None
            } else {
                ident::parse_table_path(v).map_err(|m| env.error("BQ_LOAD_STATE_TABLE", v, m))?;
                Some(v.to_string())
            };
        }
        if let Some(v) = env.get("INCLUDE_PREFIXES") {
            settings.include_prefixes = split_list(&v);
        }
        if let Some(v) = env.get("EXCLUDE_PREFIXES") {
            settings.exclude_prefixes = split_list(&v);
        }
        if let Some(v) = env.get_verbatim("TIMESTAMP_REGEX") {
            settings.timestamp_regex =
                Some(compile_timestamp_regex(&v).map_err(|m| env.error("TIMESTAMP_REGEX", &v, m))?);
        }
        settings.service_name = env.get("K_SERVICE").or_else(|| env.get("FUNCTION_NAME"));
        if let Some(v) = env.get("ORDERING_LOCK_LEASE_SECONDS") {
            settings.lock_lease = parse_integer(&v, false)
                .and_then(positive)
                .map(Duration::from_secs)
                .map_err(|m| env.error("ORDERING_LOCK_LEASE_SECONDS", &v, m))?;
        }
        if let Some(v) = env.get("RESTART_BUFFER_SECONDS") {
            settings.restart_buffer = parse_integer(&v, false)
                .map(Duration::from_secs)
                .map_err(|m| env.error("RESTART_BUFFER_SECONDS", &v, m))?;
        }
        if let Some(v) = env.get("FAILURE_TOPIC") {
            validate_topic(&v).map_err(|m| env.error("FAILURE_TOPIC", &v, m))?;
            settings.failure_topic = Some(v);
        }
        Ok(settings)
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

fn compile_timestamp_regex(pattern: &str) -> Result<regex::Regex, String> {
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
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(move |k| {
            vars.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
    }

    fn error(vars: &[(&str, &str)]) -> SettingsError {
        match from(vars) {
            Ok(settings) => panic!("{vars:?} should be invalid, got {settings:?}"),
            Err(e) => e,
        }
    }

    fn assert_error(vars: &[(&str, &str)], variable: &str, message_part: &str) {
        let err = error(vars);
        assert_eq!(err.variable, variable, "{vars:?}: {err}");
        assert!(
            err.message.contains(message_part),
            "{vars:?}: {err} lacks {message_part:?}"
        );
        assert!(
            err.to_string().starts_with(&format!("invalid {variable}=")),
            "{err}"
        );
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = from(&[]).expect("defaults");
        assert_eq!(s.success_filename, "_SUCCESS");
        assert_eq!(s.start_backfill_filename, None);
        assert_eq!(
            s.destination_regex.as_str(),
            crate::destination::DEFAULT_DESTINATION_REGEX
        );
        assert_eq!(s.max_batch_bytes, 15_000_000_000_000);
        assert_eq!(s.job_prefix, "gcf-ingest-");
        assert_eq!(s.bq_project, None);
        assert_eq!(s.bq_storage_project, None);
        assert_eq!(s.bq_location, None);
        assert_eq!(s.wait_for_job, Duration::from_secs(60));
        assert!(!s.order_per_table);
        assert!(!s.wait_for_validation);
        assert!(s.fail_on_zero_dml_rows_affected);
        assert_eq!(s.max_retries_on_bigquery_error, 3);
        assert_eq!(
            s.load_state_table.as_deref(),
            Some("bigquery_loads.serverless_bq_loads")
        );
        assert!(s.include_prefixes.is_empty());
        assert!(s.exclude_prefixes.is_empty());
        assert!(s.timestamp_regex.is_none());
        assert_eq!(s.service_name, None);
        assert_eq!(s.lock_lease, Duration::from_secs(3600));
        assert_eq!(s.restart_buffer, Duration::from_secs(30));
        assert_eq!(s.failure_topic, None);
        assert_eq!(s.job_project(), None);
        assert_eq!(s.storage_project(), None);
    }

    #[test]
    fn blank_values_count_as_unset() {
        let s = from(&[
            ("SUCCESS_FILENAME", ""),
            ("MAX_BATCH_BYTES", "  "),
            ("BQ_PROJECT", ""),
            ("GOOGLE_CLOUD_PROJECT", "fallback-project"),
            ("ORDER_PER_TABLE", ""),
            ("DESTINATION_REGEX", ""),
        ])
        .expect("valid");
        assert_eq!(s.success_filename, "_SUCCESS");
        assert_eq!(s.max_batch_bytes, DEFAULT_MAX_BATCH_BYTES);
        assert_eq!(s.bq_project.as_deref(), Some("fallback-project"));
        assert!(!s.order_per_table);
        assert_eq!(
            s.destination_regex.as_str(),
            crate::destination::DEFAULT_DESTINATION_REGEX
        );
    }

    #[test]
    fn filenames() {
        let s = from(&[
            ("SUCCESS_FILENAME", "DONE"),
            ("START_BACKFILL_FILENAME", "_HISTORYDONE"),
        ])
        .expect("valid");
        assert_eq!(s.success_filename, "DONE");
        assert_eq!(s.start_backfill_filename.as_deref(), Some("_HISTORYDONE"));

        assert_error(
            &[("SUCCESS_FILENAME", "a/_SUCCESS")],
            "SUCCESS_FILENAME",
            "without '/'",
        );
        assert_error(
            &[("SUCCESS_FILENAME", "..")],
            "SUCCESS_FILENAME",
            "not '.' or '..'",
        );
        assert_error(
            &[("SUCCESS_FILENAME", "_BACKFILL")],
            "SUCCESS_FILENAME",
            "reserved",
        );
        assert_error(
            &[("START_BACKFILL_FILENAME", "x/y")],
            "START_BACKFILL_FILENAME",
            "without '/'",
        );
        assert_error(
            &[("START_BACKFILL_FILENAME", "_bqlock")],
            "START_BACKFILL_FILENAME",
            "reserved",
        );
        assert_error(
            &[("START_BACKFILL_FILENAME", "_SUCCESS")],
            "START_BACKFILL_FILENAME",
            "must differ from SUCCESS_FILENAME",
        );
    }

    #[test]
    fn destination_regex() {
        let pattern = r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<batch>[^/]+)/";
        let s = from(&[("DESTINATION_REGEX", pattern)]).expect("valid");
        assert_eq!(s.destination_regex.as_str(), pattern);

        assert_error(
            &[("DESTINATION_REGEX", r"^(?P<dataset>\w+)/")],
            "DESTINATION_REGEX",
            "required",
        );
        assert_error(
            &[(
                "DESTINATION_REGEX",
                r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<foo>\w+)/",
            )],
            "DESTINATION_REGEX",
            "unknown named group \"foo\"",
        );
        let err = error(&[("DESTINATION_REGEX", r"^(?P<dataset>\w+")]);
        assert_eq!(err.variable, "DESTINATION_REGEX");
        assert_eq!(err.value, r"^(?P<dataset>\w+");
    }

    #[test]
    fn max_batch_bytes() {
        for (value, expected) in [
            ("15000000000000", 15_000_000_000_000u64),
            ("15_000_000_000_000", 15_000_000_000_000),
            ("15e12", 15_000_000_000_000),
            ("1.5E13", 15_000_000_000_000),
            ("1e+3", 1000),
            (" 1024 ", 1024),
            ("1", 1),
            ("18446744073709551615", u64::MAX),
        ] {
            let s = from(&[("MAX_BATCH_BYTES", value)]).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(s.max_batch_bytes, expected, "{value}");
        }
        for (value, part) in [
            ("0", "greater than 0"),
            ("0e5", "greater than 0"),
            ("-1", "whole number"),
            ("1.5", "whole number"),
            ("1.25e1", "not a whole number"),
            ("1e-3", "whole number"),
            ("abc", "whole number"),
            ("1__000", "whole number"),
            ("_1000", "whole number"),
            ("1000_", "whole number"),
            ("e5", "whole number"),
            ("18446744073709551616", "at most"),
            ("1e40", "at most"),
            ("15 TB", "whole number"),
        ] {
            assert_error(&[("MAX_BATCH_BYTES", value)], "MAX_BATCH_BYTES", part);
        }
    }

    #[test]
    fn job_prefix() {
        let s = from(&[("JOB_PREFIX", "my_ingest-")]).expect("valid");
        assert_eq!(s.job_prefix, "my_ingest-");
        // Explicitly empty is an empty prefix, as in Python.
        let s = from(&[("JOB_PREFIX", "")]).expect("valid");
        assert_eq!(s.job_prefix, "");
        assert_eq!(
            from(&[("JOB_PREFIX", &"a".repeat(100))])
                .expect("valid")
                .job_prefix
                .len(),
            100
        );

        assert_error(
            &[("JOB_PREFIX", "bad prefix")],
            "JOB_PREFIX",
            "only letters, digits",
        );
        assert_error(&[("JOB_PREFIX", "a.b")], "JOB_PREFIX", "'.'");
        assert_error(
            &[("JOB_PREFIX", &"a".repeat(101))],
            "JOB_PREFIX",
            "at most 100",
        );
    }

    #[test]
    fn projects_and_fallbacks() {
        let all = [
            ("BQ_PROJECT", "bq-project"),
            ("GOOGLE_CLOUD_PROJECT", "google-cloud"),
            ("GCP_PROJECT", "gcp-project"),
            ("GCLOUD_PROJECT", "gcloud-project"),
        ];
        for skip in 0..all.len() {
            let s = from(&all[skip..]).expect("valid");
            assert_eq!(s.bq_project.as_deref(), Some(all[skip].1));
        }
        let s = from(&[
            ("BQ_PROJECT", "bq-project"),
            ("BQ_STORAGE_PROJECT", "example.com:storage"),
        ])
        .expect("valid");
        assert_eq!(s.job_project(), Some("bq-project"));
        assert_eq!(s.storage_project(), Some("example.com:storage"));
        let s = from(&[("GCP_PROJECT", "gcp-project")]).expect("valid");
        assert_eq!(s.storage_project(), Some("gcp-project"));

        assert_error(
            &[("BQ_PROJECT", "Bad_Project")],
            "BQ_PROJECT",
            "start with a lowercase letter",
        );
        assert_error(
            &[("GOOGLE_CLOUD_PROJECT", "abc")],
            "GOOGLE_CLOUD_PROJECT",
            "6 to 30",
        );
        assert_error(
            &[("GCLOUD_PROJECT", "my_proj")],
            "GCLOUD_PROJECT",
            "lowercase letters",
        );
        assert_error(
            &[("BQ_STORAGE_PROJECT", "project-")],
            "BQ_STORAGE_PROJECT",
            "hyphen",
        );
        // A valid BQ_PROJECT means the fallbacks are not read.
        assert!(from(&[("BQ_PROJECT", "bq-project"), ("GCP_PROJECT", "BAD")]).is_ok());
    }

    #[test]
    fn location() {
        for loc in ["US", "EU", "us-central1", "asia-northeast1"] {
            assert_eq!(
                from(&[("BQ_LOCATION", loc)])
                    .expect("valid")
                    .bq_location
                    .as_deref(),
                Some(loc)
            );
        }
        assert_error(
            &[("BQ_LOCATION", "us central")],
            "BQ_LOCATION",
            "BigQuery location",
        );
    }

    #[test]
    fn durations() {
        let s = from(&[
            ("WAIT_FOR_JOB_SECONDS", "0"),
            ("ORDERING_LOCK_LEASE_SECONDS", "7200"),
            ("RESTART_BUFFER_SECONDS", "0"),
        ])
        .expect("valid");
        assert_eq!(s.wait_for_job, Duration::ZERO);
        assert_eq!(s.lock_lease, Duration::from_secs(7200));
        assert_eq!(s.restart_buffer, Duration::ZERO);
        let s = from(&[("WAIT_FOR_JOB_SECONDS", "540")]).expect("valid");
        assert_eq!(s.wait_for_job, Duration::from_secs(540));

        assert_error(
            &[("WAIT_FOR_JOB_SECONDS", "-1")],
            "WAIT_FOR_JOB_SECONDS",
            "whole number",
        );
        assert_error(
            &[("WAIT_FOR_JOB_SECONDS", "1.5")],
            "WAIT_FOR_JOB_SECONDS",
            "whole number",
        );
        assert_error(
            &[("WAIT_FOR_JOB_SECONDS", "1e3")],
            "WAIT_FOR_JOB_SECONDS",
            "whole number",
        );
        assert_error(
            &[("ORDERING_LOCK_LEASE_SECONDS", "0")],
            "ORDERING_LOCK_LEASE_SECONDS",
            "greater than 0",
        );
        assert_error(
            &[("ORDERING_LOCK_LEASE_SECONDS", "1h")],
            "ORDERING_LOCK_LEASE_SECONDS",
            "whole number",
        );
        assert_error(
            &[("RESTART_BUFFER_SECONDS", "x")],
            "RESTART_BUFFER_SECONDS",
            "whole number",
        );
    }

    #[test]
    fn booleans_accept_what_strtobool_accepts() {
        for (value, expected) in [
            ("y", true),
            ("YES", true),
            ("t", true),
            ("True", true),
            ("on", true),
            ("1", true),
            ("n", false),
            ("No", false),
            ("F", false),
            ("false", false),
            ("OFF", false),
            ("0", false),
        ] {
            for variable in [
                "ORDER_PER_TABLE",
                "WAIT_FOR_VALIDATION",
                "FAIL_ON_ZERO_DML_ROWS_AFFECTED",
            ] {
                let s = from(&[(variable, value)]).unwrap_or_else(|e| panic!("{e}"));
                let got = match variable {
                    "ORDER_PER_TABLE" => s.order_per_table,
                    "WAIT_FOR_VALIDATION" => s.wait_for_validation,
                    _ => s.fail_on_zero_dml_rows_affected,
                };
                assert_eq!(got, expected, "{variable}={value}");
            }
        }
        for variable in [
            "ORDER_PER_TABLE",
            "WAIT_FOR_VALIDATION",
            "FAIL_ON_ZERO_DML_ROWS_AFFECTED",
        ] {
            for bad in ["2", "maybe", "enabled", "tru"] {
                assert_error(&[(variable, bad)], variable, "must be a boolean");
            }
        }
    }

    #[test]
    fn max_retries() {
        let s = from(&[("MAX_RETRIES_ON_BIGQUERY_ERROR", "0")]).expect("valid");
        assert_eq!(s.max_retries_on_bigquery_error, 0);
        let s = from(&[("MAX_RETRIES_ON_BIGQUERY_ERROR", "10")]).expect("valid");
        assert_eq!(s.max_retries_on_bigquery_error, 10);
        assert_error(
            &[("MAX_RETRIES_ON_BIGQUERY_ERROR", "4294967296")],
            "MAX_RETRIES_ON_BIGQUERY_ERROR",
            "at most",
        );
        assert_error(
            &[("MAX_RETRIES_ON_BIGQUERY_ERROR", "three")],
            "MAX_RETRIES_ON_BIGQUERY_ERROR",
            "whole number",
        );
    }

    #[test]
    fn load_state_table() {
        for off in ["", "none", "None", "NONE", "  "] {
            let s = from(&[("BQ_LOAD_STATE_TABLE", off)]).expect("valid");
            assert_eq!(s.load_state_table, None, "{off:?}");
        }
        for on in [
            "loads.state",
            "my-project.loads.state",
            "example.com:my-project.loads.state",
        ] {
            let s = from(&[("BQ_LOAD_STATE_TABLE", on)]).expect("valid");
            assert_eq!(s.load_state_table.as_deref(), Some(on));
        }
        assert_error(
            &[("BQ_LOAD_STATE_TABLE", "state")],
            "BQ_LOAD_STATE_TABLE",
            "[project.]dataset.table",
        );
        assert_error(
            &[("BQ_LOAD_STATE_TABLE", "bad-ds.state")],
            "BQ_LOAD_STATE_TABLE",
            "dataset id",
        );
        assert_error(
            &[("BQ_LOAD_STATE_TABLE", "P.ds.state")],
            "BQ_LOAD_STATE_TABLE",
            "project id",
        );
        assert_error(
            &[("BQ_LOAD_STATE_TABLE", "ds.st$2020")],
            "BQ_LOAD_STATE_TABLE",
            "'$'",
        );
    }

    #[test]
    fn prefixes() {
        let s = from(&[
            ("INCLUDE_PREFIXES", " ds1/ , ds2/t/,, ,ds3"),
            ("EXCLUDE_PREFIXES", "ds1/tmp/"),
        ])
        .expect("valid");
        assert_eq!(s.include_prefixes, vec!["ds1/", "ds2/t/", "ds3"]);
        assert_eq!(s.exclude_prefixes, vec!["ds1/tmp/"]);
        let s = from(&[("INCLUDE_PREFIXES", ", ,")]).expect("valid");
        assert!(s.include_prefixes.is_empty());
    }

    #[test]
    fn timestamp_regex() {
        let pattern =
            r"(?P<yyyy>\d{4})-(?P<mm>\d{2})-(?P<dd>\d{2})T(?P<hh>\d{2})(?P<mi>\d{2})(?P<ss>\d{2})";
        let s = from(&[("TIMESTAMP_REGEX", pattern)]).expect("valid");
        let regex = s.timestamp_regex.expect("set");
        assert_eq!(regex.as_str(), pattern);
        assert!(regex.is_match("x/2020-10-30T120000/_SUCCESS"));

        assert_error(
            &[("TIMESTAMP_REGEX", r"(?P<yyyy>\d{4})-(?P<mm>\d{2})")],
            "TIMESTAMP_REGEX",
            "missing dd",
        );
        assert_error(
            &[(
                "TIMESTAMP_REGEX",
                r"(?P<yyyy>\d{4})(?P<mm>\d{2})(?P<dd>\d{2})(?P<min>\d{2})",
            )],
            "TIMESTAMP_REGEX",
            "unknown named group \"min\"",
        );
        let err = error(&[("TIMESTAMP_REGEX", r"(?P<yyyy>\d{4}")]);
        assert_eq!(err.variable, "TIMESTAMP_REGEX");
    }

    #[test]
    fn service_name() {
        let s = from(&[("K_SERVICE", "bq-ingest"), ("FUNCTION_NAME", "gcs_ocn")]).expect("valid");
        assert_eq!(s.service_name.as_deref(), Some("bq-ingest"));
        let s = from(&[("FUNCTION_NAME", "gcs_ocn")]).expect("valid");
        assert_eq!(s.service_name.as_deref(), Some("gcs_ocn"));
        let s = from(&[("K_SERVICE", ""), ("FUNCTION_NAME", "gcs_ocn")]).expect("valid");
        assert_eq!(s.service_name.as_deref(), Some("gcs_ocn"));
    }

    #[test]
    fn failure_topic() {
        for ok in [
            "ingest-failures",
            "projects/my-project/topics/ingest-failures",
            "abc.def~+%_x",
        ] {
            let s = from(&[("FAILURE_TOPIC", ok)]).expect("valid");
            assert_eq!(s.failure_topic.as_deref(), Some(ok));
        }
        assert_error(&[("FAILURE_TOPIC", "ab")], "FAILURE_TOPIC", "3 to 255");
        assert_error(
            &[("FAILURE_TOPIC", "1topic")],
            "FAILURE_TOPIC",
            "starting with a letter",
        );
        assert_error(
            &[("FAILURE_TOPIC", "google-topic")],
            "FAILURE_TOPIC",
            "goog",
        );
        assert_error(
            &[("FAILURE_TOPIC", "projects/p/x/topics/t")],
            "FAILURE_TOPIC",
            "projects/<project>/topics/<topic>",
        );
        assert_error(
            &[("FAILURE_TOPIC", "projects/Bad/topics/topic")],
            "FAILURE_TOPIC",
            "project id",
        );
    }

    #[test]
    fn errors_carry_the_value() {
        let err = error(&[("MAX_BATCH_BYTES", "lots")]);
        assert_eq!(err.value, "lots");
        assert_eq!(
            err.to_string(),
            "invalid MAX_BATCH_BYTES=\"lots\": must be a non-negative whole number such as \
             15000000000000, 15_000_000_000_000 or 15e12"
        );
    }

    #[test]
    fn parse_integer_directly() {
        assert_eq!(parse_integer("007", false), Ok(7));
        assert_eq!(parse_integer("0", false), Ok(0));
        assert_eq!(parse_integer(".5e1", true), Ok(5));
        assert_eq!(parse_integer("2.50e2", true), Ok(250));
        assert!(parse_integer("", false).is_err());
        assert!(parse_integer("1e3", false).is_err());
    }
}
