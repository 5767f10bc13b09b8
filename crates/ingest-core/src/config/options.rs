//! `_config/ingest.json`: bq-ingest's own per-table options, merged from the bucket root down to
//! the batch like `load.json` (JSON merge patch, the nearest wins), never sent to BigQuery.

use serde_json::{Map, Value};

use super::{invalid_value, kind_of, ConfigError, ConfigFile};

/// The file that holds bq-ingest's own options of a folder.
pub const INGEST_JSON: &str = "ingest.json";

/// The keys an `ingest.json` may hold; any other key is an error naming the file.
pub const INGEST_KEYS: &[&str] = &[
    "fileTimestampRegex",
    "defaultPartition",
    "afterSuccess",
    "deleteMarker",
    "quarantine",
];

/// How many halving rounds a [`Quarantine`] makes at most to find the bad files of a load
/// whose error names none, unless configured.
pub const DEFAULT_QUARANTINE_ROUNDS: u32 = 8;

/// `quarantine`: when a load fails because of its data, the bad files are moved aside and the
/// rest of the batch is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Where bad files go: `(bucket, prefix)` (the prefix empty or ending with `/`), each file
    /// under its full name; `None`: `<table prefix>/_quarantine/<batch>/<its name in the
    /// batch>` in the batch's bucket.
    pub to: Option<(String, String)>,
    /// At most this many halving rounds (`maxRounds`, default [`DEFAULT_QUARANTINE_ROUNDS`]).
    pub max_rounds: u32,
}

/// What happens to a batch's data files once the batch is done and recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AfterSuccess {
    /// `"keep"` (the default): nothing.
    #[default]
    Keep,
    /// `"delete"`: the data files are deleted.
    Delete,
    /// `{"archiveTo": "gs://bucket/prefix"}`: each data file is copied to
    /// `gs://bucket/prefix/<its name>`, then deleted.
    ArchiveTo {
        /// The archive's bucket.
        bucket: String,
        /// The prefix its copies go under: empty, or ending with `/`.
        prefix: String,
    },
}

impl AfterSuccess {
    /// Where `name` (an object of the batch) is archived: `(bucket, object)`, or `None` when
    /// nothing is archived.
    ///
    /// ```
    /// use ingest_core::config::AfterSuccess;
    /// let archive = AfterSuccess::ArchiveTo { bucket: "old".into(), prefix: "2024/".into() };
    /// assert_eq!(
    ///     archive.archive_name("ds/t/b1/a.csv"),
    ///     Some(("old".to_string(), "2024/ds/t/b1/a.csv".to_string()))
    /// );
    /// assert_eq!(AfterSuccess::Delete.archive_name("a.csv"), None);
    /// ```
    pub fn archive_name(&self, name: &str) -> Option<(String, String)> {
        match self {
            AfterSuccess::ArchiveTo { bucket, prefix } => {
                Some((bucket.clone(), format!("{prefix}{name}")))
            }
            _ => None,
        }
    }

    /// Whether the batch's data files are removed from where they are.
    pub fn removes_data(&self) -> bool {
        !matches!(self, AfterSuccess::Keep)
    }
}

/// The effective `ingest.json` options of one batch (see [`INGEST_KEYS`]).
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// `fileTimestampRegex`: the timestamp in each data file's name (relative to the batch's
    /// folder), with the named groups of `TIMESTAMP_REGEX` (`yyyy`, `mm`, `dd` required; `hh`,
    /// `mi`, `ss`). When set, load mode loads each file into the partition of its timestamp.
    pub file_timestamp_regex: Option<regex::Regex>,
    /// `defaultPartition`: the partition (`YYYY`, `YYYYMM`, `YYYYMMDD` or `YYYYMMDDHH`, with or
    /// without `$`) of files whose name carries no timestamp; without it such a file fails the
    /// batch.
    pub default_partition: Option<String>,
    /// `afterSuccess`.
    pub after_success: AfterSuccess,
    /// `deleteMarker`: the success marker is deleted too, after the data files.
    pub delete_marker: bool,
    /// `quarantine`: `true` or `{"prefix": "gs://…", "maxRounds": N}`; `None` when off.
    pub quarantine: Option<Quarantine>,
}

impl IngestOptions {
    /// What happens to a done batch's files, in words (`explain`, `backfill --dry-run`), or
    /// `None` when they are kept.
    ///
    /// ```
    /// use ingest_core::config::{AfterSuccess, IngestOptions};
    /// let options = IngestOptions { after_success: AfterSuccess::Delete, delete_marker: true, ..IngestOptions::default() };
    /// assert_eq!(options.describe_after_success().unwrap(), "delete the files, then the marker");
    /// ```
    pub fn describe_after_success(&self) -> Option<String> {
        let files = match &self.after_success {
            AfterSuccess::Keep => None,
            AfterSuccess::Delete => Some("delete the files".to_string()),
            AfterSuccess::ArchiveTo { bucket, prefix } => Some(format!(
                "archive the files to gs://{bucket}/{prefix}<name>, then delete them"
            )),
        };
        match (files, self.delete_marker) {
            (None, false) => None,
            (None, true) => Some("delete the marker".to_string()),
            (Some(files), false) => Some(files),
            (Some(files), true) => Some(format!("{files}, then the marker")),
        }
    }
}

/// Checks one `ingest.json`: every key known (see [`INGEST_KEYS`]).
pub(super) fn check_keys(
    bucket: &str,
    file: &ConfigFile,
    object: &Map<String, Value>,
) -> Result<(), ConfigError> {
    match object.keys().find(|k| !INGEST_KEYS.contains(&k.as_str())) {
        Some(unknown) => {
            let problem = format!(
                "unknown key in ingest.json; the keys are {}",
                INGEST_KEYS.join(", ")
            );
            Err(invalid_value(bucket, &file.name, unknown, &problem))
        }
        None => Ok(()),
    }
}

impl IngestOptions {
    /// Reads the merged options; `sources` maps each key to the nearest file that set it (for
    /// the errors).
    pub(super) fn from_merged(
        bucket: &str,
        merged: &Map<String, Value>,
        source_of: impl Fn(&str) -> String,
    ) -> Result<IngestOptions, ConfigError> {
        let invalid =
            |key: &str, problem: &str| invalid_value(bucket, &source_of(key), key, problem);
        let string = |key: &str| -> Result<Option<&str>, ConfigError> {
            match merged.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(invalid(
                    key,
                    &format!("expected a string, found {}", kind_of(other)),
                )),
            }
        };
        let file_timestamp_regex = string("fileTimestampRegex")?
            .map(|pattern| {
                crate::settings::compile_timestamp_regex(pattern)
                    .map_err(|m| invalid("fileTimestampRegex", &m))
            })
            .transpose()?;
        let default_partition = string("defaultPartition")?
            .map(|p| {
                partition_digits(p).ok_or_else(|| {
                    invalid(
                        "defaultPartition",
                        &format!("{p:?} is not a partition: expected YYYY, YYYYMM, YYYYMMDD or YYYYMMDDHH of a real date"),
                    )
                })
            })
            .transpose()?;
        let after_success = match merged.get("afterSuccess") {
            None => AfterSuccess::Keep,
            Some(value) => after_success(value).map_err(|p| invalid("afterSuccess", &p))?,
        };
        if after_success
            == (AfterSuccess::ArchiveTo {
                bucket: bucket.to_string(),
                prefix: String::new(),
            })
        {
            let problem = "archiving into the batch's own bucket needs a prefix: without one each copy would be the file itself";
            return Err(invalid("afterSuccess", problem));
        }
        let delete_marker = match merged.get("deleteMarker") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                let problem = format!("expected true or false, found {}", kind_of(other));
                return Err(invalid("deleteMarker", &problem));
            }
        };
        let quarantine = match merged.get("quarantine") {
            None => None,
            Some(value) => quarantine(value).map_err(|p| invalid("quarantine", &p))?,
        };
        Ok(IngestOptions {
            file_timestamp_regex,
            default_partition,
            after_success,
            delete_marker,
            quarantine,
        })
    }
}

/// `YYYY`, `YYYYMM`, `YYYYMMDD` or `YYYYMMDDHH` (a leading `$` is dropped) of a real date.
fn partition_digits(text: &str) -> Option<String> {
    let digits = text.strip_prefix('$').unwrap_or(text);
    if !matches!(digits.len(), 4 | 6 | 8 | 10) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    crate::ident::partition_start(&format!("${digits}"))
        .ok()
        .flatten()
        .map(|_| digits.to_string())
}

/// `true`, `false` or `{"prefix": "gs://bucket[/prefix]", "maxRounds": 1..=20}`.
fn quarantine(value: &Value) -> Result<Option<Quarantine>, String> {
    const EXPECTED: &str =
        r#"expected true, false or {"prefix": "gs://bucket/prefix", "maxRounds": 8}"#;
    match value {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some(Quarantine {
            to: None,
            max_rounds: DEFAULT_QUARANTINE_ROUNDS,
        })),
        Value::Object(object) => {
            if let Some(key) = object.keys().find(|k| *k != "prefix" && *k != "maxRounds") {
                return Err(format!("unknown key {key:?}: {EXPECTED}"));
            }
            let to = match object.get("prefix") {
                None => None,
                Some(Value::String(uri)) => Some(gs_prefix(uri)?),
                Some(_) => return Err(EXPECTED.to_string()),
            };
            let max_rounds = match object.get("maxRounds") {
                None => DEFAULT_QUARANTINE_ROUNDS,
                Some(n) => n
                    .as_u64()
                    .filter(|n| (1..=20).contains(n))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        format!("maxRounds must be a whole number from 1 to 20, not {n}")
                    })?,
            };
            Ok(Some(Quarantine { to, max_rounds }))
        }
        _ => Err(EXPECTED.to_string()),
    }
}

/// `gs://bucket[/prefix]` as `(bucket, prefix)`, the prefix empty or ending with `/`.
fn gs_prefix(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("gs://")
        .filter(|r| !r.is_empty() && !r.starts_with('/'))
        .ok_or_else(|| format!("{uri:?} is not a gs://bucket[/prefix] URI"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut prefix = prefix.to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok((bucket.to_string(), prefix))
}

/// `"keep"`, `"delete"` or `{"archiveTo": "gs://bucket[/prefix]"}`.
fn after_success(value: &Value) -> Result<AfterSuccess, String> {
    const EXPECTED: &str = r#"expected "keep", "delete" or {"archiveTo": "gs://bucket/prefix"}"#;
    match value {
        Value::String(s) if s == "keep" => Ok(AfterSuccess::Keep),
        Value::String(s) if s == "delete" => Ok(AfterSuccess::Delete),
        Value::Object(object) if object.len() == 1 => {
            let Some(Value::String(uri)) = object.get("archiveTo") else {
                return Err(EXPECTED.to_string());
            };
            let (bucket, prefix) = gs_prefix(uri).map_err(|e| format!("archiveTo {e}"))?;
            Ok(AfterSuccess::ArchiveTo { bucket, prefix })
        }
        _ => Err(EXPECTED.to_string()),
    }
}
