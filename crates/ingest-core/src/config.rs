//! The `_config/` files on the way from the bucket root to a batch, merged.
//!
//! - `load.json`: deep-merged from the root down to and including the batch's own directory;
//!   the nearest wins; lists are replaced, not concatenated. The keys `destinationRegex`,
//!   `destinationTable` and `dataSourceName` are bq-ingest's own: honoured, never sent to
//!   BigQuery.
//! - `external.json`: the nearest one wins, not merged.
//! - `*.sql`: turns on transform mode; the nearest directory that has one wins; two in one
//!   directory is an error.
//! - `ORDERME`: anywhere on the path turns on ordering.

use serde_json::{Map, Value};

use crate::destination::{DestinationRegex, DestinationTable};

/// One file read from a `_config/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Full object name, e.g. `dataset/_config/load.json`.
    pub name: String,
    /// Generation that was read.
    pub generation: i64,
    /// Its content.
    pub content: Vec<u8>,
}

/// What one `_config/` folder holds (only the files bq-ingest reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDir {
    /// The folder, e.g. `dataset/table/_config/` (`_config/` at the bucket root).
    pub prefix: String,
    /// `load.json`.
    pub load_json: Option<ConfigFile>,
    /// `external.json`.
    pub external_json: Option<ConfigFile>,
    /// Every `*.sql`.
    pub sql: Vec<ConfigFile>,
    /// Whether `ORDERME` exists.
    pub orderme: bool,
}

/// Why the configuration could not be built. Names the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A JSON file is not valid JSON or not a JSON object.
    #[error("gs://{bucket}/{name}: invalid JSON: {message}")]
    InvalidJson {
        /// Bucket.
        bucket: String,
        /// Object.
        name: String,
        /// The parser's message.
        message: String,
    },
    /// A key has a value of the wrong kind or an invalid value.
    #[error("gs://{bucket}/{name}: invalid {key}: {message}")]
    InvalidValue {
        /// Bucket.
        bucket: String,
        /// Object.
        name: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Two `*.sql` in one `_config/`.
    #[error("gs://{bucket}/{prefix}: more than one transform SQL file: {names:?}")]
    TwoSqlFiles {
        /// Bucket.
        bucket: String,
        /// The `_config/` folder.
        prefix: String,
        /// The files.
        names: Vec<String>,
    },
}

/// The effective configuration of one batch.
#[derive(Debug, Clone, Default)]
pub struct BatchConfig {
    /// The merged `configuration.load` fields (defaults applied, own keys removed).
    pub load: Map<String, Value>,
    /// `destinationRegex`, when configured.
    pub destination_regex: Option<DestinationRegex>,
    /// `destinationTable`, when configured.
    pub destination_table: Option<DestinationTable>,
    /// `dataSourceName`, when configured (used as a label).
    pub data_source_name: Option<String>,
    /// The nearest `external.json`, when any.
    pub external: Option<Map<String, Value>>,
    /// The nearest transform SQL, when any: transform mode.
    pub transform_sql: Option<ConfigFile>,
    /// Whether an `ORDERME` is on the path.
    pub ordered: bool,
    /// The config objects that contributed, root first (for `explain` and logs).
    pub sources: Vec<String>,
}

/// The name of the folder that holds configuration, in any directory of the bucket.
pub const CONFIG_DIR: &str = "_config/";
/// The load configuration of a folder.
pub const LOAD_JSON: &str = "load.json";
/// The external-table configuration of a folder (transform mode).
pub const EXTERNAL_JSON: &str = "external.json";
/// The file whose presence turns on ordering.
pub const ORDERME: &str = "ORDERME";

/// The `configuration.load` fields every batch starts from, before any `load.json`.
pub const BASE_LOAD_CONFIG: &[(&str, &str)] = &[
    ("sourceFormat", "CSV"),
    ("writeDisposition", "WRITE_APPEND"),
];

/// Keys of `load.json` that bq-ingest reads itself and never sends to BigQuery.
pub const OWN_KEYS: &[&str] = &["destinationRegex", "destinationTable", "dataSourceName"];

/// Keys that a `load.json` must never put into a load job: bq-ingest sets them itself.
pub const FORBIDDEN_LOAD_KEYS: &[&str] = &["sourceUris", "destinationTable"];

/// The `_config/` folders on the way from the bucket root to `batch_prefix` (a directory
/// ending with `/`, or empty), root first and the batch's own last.
///
/// A `batch_prefix` that does not end with `/` is taken as a directory all the same.
///
/// ```
/// use ingest_core::config::config_prefixes;
/// assert_eq!(
///     config_prefixes("ds/t/$2020/"),
///     vec!["_config/", "ds/_config/", "ds/t/_config/", "ds/t/$2020/_config/"]
/// );
/// assert_eq!(config_prefixes(""), vec!["_config/"]);
/// ```
pub fn config_prefixes(batch_prefix: &str) -> Vec<String> {
    let mut prefixes = vec![CONFIG_DIR.to_string()];
    if batch_prefix.is_empty() {
        return prefixes;
    }
    let mut dirs: Vec<&str> = batch_prefix
        .char_indices()
        .filter(|&(_, c)| c == '/')
        .map(|(i, _)| &batch_prefix[..=i])
        .collect();
    if !batch_prefix.ends_with('/') {
        dirs.push(batch_prefix);
    }
    for dir in dirs {
        let mut prefix = String::with_capacity(dir.len() + CONFIG_DIR.len() + 1);
        prefix.push_str(dir);
        if !dir.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(CONFIG_DIR);
        prefixes.push(prefix);
    }
    prefixes
}

/// Sorts the objects of one `_config/` listing into a [`ConfigDir`] skeleton: which files
/// must be read (`load.json`, `external.json`, `*.sql`) and whether `ORDERME` exists. Objects in
/// deeper sub-folders are ignored.
///
/// `names` are full object names; those that do not start with `prefix` are ignored. The
/// names to read come back sorted and without duplicates.
///
/// ```
/// use ingest_core::config::files_to_read;
/// let (read, orderme) = files_to_read(
///     "ds/_config/",
///     &["ds/_config/load.json", "ds/_config/ORDERME", "ds/_config/old/load.json", "ds/_config/notes.txt"],
/// );
/// assert_eq!(read, vec!["ds/_config/load.json"]);
/// assert!(orderme);
/// ```
pub fn files_to_read(prefix: &str, names: &[&str]) -> (Vec<String>, bool) {
    let mut to_read = Vec::new();
    let mut orderme = false;
    for name in names {
        let Some(relative) = name.strip_prefix(prefix) else {
            continue;
        };
        if relative.contains('/') {
            continue;
        }
        if relative == ORDERME {
            orderme = true;
        } else if relative == LOAD_JSON || relative == EXTERNAL_JSON || is_sql_file(relative) {
            to_read.push((*name).to_string());
        }
    }
    to_read.sort();
    to_read.dedup();
    (to_read, orderme)
}

/// `*.sql` with a non-empty stem.
fn is_sql_file(basename: &str) -> bool {
    basename.len() > ".sql".len() && basename.ends_with(".sql")
}

/// The nearest value of one of bq-ingest's own keys, with the file it came from.
#[derive(Debug)]
struct OwnValue {
    value: Value,
    file: String,
}

impl BatchConfig {
    /// Merges the folders, root first (as [`config_prefixes`] orders them).
    ///
    /// - `load.json` files are deep-merged over [`BASE_LOAD_CONFIG`]: objects are merged key by
    ///   key, lists and scalars are replaced, the nearest file wins, and a `null` removes the
    ///   inherited key (JSON merge patch). bq-ingest's own keys ([`OWN_KEYS`]) are taken out of
    ///   each file before merging and the nearest file that sets one wins as a whole (a `null`
    ///   unsets it); [`FORBIDDEN_LOAD_KEYS`] never reach [`BatchConfig::load`]. A leading UTF-8
    ///   byte-order mark is accepted.
    /// - `external.json`: the nearest one, not merged; it must be a JSON object.
    /// - `*.sql`: the nearest folder that has one; two in one folder is
    ///   [`ConfigError::TwoSqlFiles`]; its content must be UTF-8.
    /// - `ORDERME` in any folder sets [`BatchConfig::ordered`].
    ///
    /// ```
    /// use ingest_core::config::{BatchConfig, ConfigDir, ConfigFile};
    /// let dir = |prefix: &str, json: &str| ConfigDir {
    ///     prefix: prefix.to_string(),
    ///     load_json: Some(ConfigFile {
    ///         name: format!("{prefix}load.json"),
    ///         generation: 1,
    ///         content: json.as_bytes().to_vec(),
    ///     }),
    ///     ..ConfigDir::default()
    /// };
    /// let config = BatchConfig::merge(
    ///     "bucket",
    ///     &[
    ///         dir("_config/", r#"{"sourceFormat": "NEWLINE_DELIMITED_JSON", "dataSourceName": "crm"}"#),
    ///         dir("ds/t/_config/", r#"{"writeDisposition": "WRITE_TRUNCATE"}"#),
    ///     ],
    /// )
    /// .unwrap();
    /// assert_eq!(config.load["sourceFormat"], "NEWLINE_DELIMITED_JSON");
    /// assert_eq!(config.load["writeDisposition"], "WRITE_TRUNCATE");
    /// assert_eq!(config.data_source_name.as_deref(), Some("crm"));
    /// assert!(!config.load.contains_key("dataSourceName"));
    /// ```
    pub fn merge(bucket: &str, dirs: &[ConfigDir]) -> Result<BatchConfig, ConfigError> {
        let mut load: Map<String, Value> = BASE_LOAD_CONFIG
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect();
        let mut regex_slot: Option<OwnValue> = None;
        let mut table_slot: Option<OwnValue> = None;
        let mut source_slot: Option<OwnValue> = None;
        let mut external: Option<Map<String, Value>> = None;
        let mut transform_sql: Option<ConfigFile> = None;
        let mut ordered = false;

        for dir in dirs {
            if let Some(file) = &dir.load_json {
                let mut object = parse_object(bucket, file)?;
                let slots = [
                    ("destinationRegex", &mut regex_slot),
                    ("destinationTable", &mut table_slot),
                    ("dataSourceName", &mut source_slot),
                ];
                for (key, slot) in slots {
                    if let Some(value) = object.remove(key) {
                        *slot = match value {
                            Value::Null => None,
                            value => Some(OwnValue {
                                value,
                                file: file.name.clone(),
                            }),
                        };
                    }
                }
                for key in FORBIDDEN_LOAD_KEYS {
                    object.remove(*key);
                }
                check_load_kinds(bucket, &file.name, &object)?;
                merge_patch(&mut load, object);
            }
            if let Some(file) = &dir.external_json {
                external = Some(parse_object(bucket, file)?);
            }
            match dir.sql.as_slice() {
                [] => {}
                [one] => transform_sql = Some(one.clone()),
                many => {
                    let mut names: Vec<String> = many.iter().map(|f| f.name.clone()).collect();
                    names.sort();
                    return Err(ConfigError::TwoSqlFiles {
                        bucket: bucket.to_string(),
                        prefix: dir.prefix.clone(),
                        names,
                    });
                }
            }
            if dir.orderme {
                ordered = true;
            }
        }

        if let Some(sql) = &transform_sql {
            if let Err(e) = std::str::from_utf8(&sql.content) {
                return Err(invalid_value(
                    bucket,
                    &sql.name,
                    "transform SQL",
                    &format!("not UTF-8: {e}"),
                ));
            }
        }

        let destination_table = match table_slot {
            None => None,
            Some(OwnValue { value, file }) => {
                if !value.is_object() {
                    return Err(invalid_value(
                        bucket,
                        &file,
                        "destinationTable",
                        &format!(
                            "expected an object with datasetId and tableId, found {}",
                            kind_of(&value)
                        ),
                    ));
                }
                match serde_json::from_value::<DestinationTable>(value) {
                    Ok(table) => Some(table),
                    Err(e) => {
                        return Err(invalid_value(
                            bucket,
                            &file,
                            "destinationTable",
                            &e.to_string(),
                        ))
                    }
                }
            }
        };
        let destination_regex = match regex_slot {
            None => None,
            Some(OwnValue {
                value: Value::String(pattern),
                file,
            }) => match DestinationRegex::new(&pattern, destination_table.is_some()) {
                Ok(regex) => Some(regex),
                Err(e) => {
                    return Err(invalid_value(
                        bucket,
                        &file,
                        "destinationRegex",
                        &e.to_string(),
                    ))
                }
            },
            Some(OwnValue { value, file }) => {
                return Err(invalid_value(
                    bucket,
                    &file,
                    "destinationRegex",
                    &format!("expected a string, found {}", kind_of(&value)),
                ))
            }
        };
        let data_source_name = match source_slot {
            None => None,
            Some(OwnValue {
                value: Value::String(name),
                ..
            }) => Some(name),
            Some(OwnValue { value, file }) => {
                return Err(invalid_value(
                    bucket,
                    &file,
                    "dataSourceName",
                    &format!("expected a string, found {}", kind_of(&value)),
                ))
            }
        };

        let sources = contributing_sources(dirs, transform_sql.as_ref());

        Ok(BatchConfig {
            load,
            destination_regex,
            destination_table,
            data_source_name,
            external,
            transform_sql,
            ordered,
            sources,
        })
    }
}

/// The config objects that contributed, root first: every `load.json`, the nearest
/// `external.json`, the transform SQL and every `ORDERME`.
fn contributing_sources(dirs: &[ConfigDir], transform_sql: Option<&ConfigFile>) -> Vec<String> {
    let nearest_external = dirs.iter().rev().find_map(|d| d.external_json.as_ref());
    let mut sources = Vec::new();
    for dir in dirs {
        if let Some(file) = &dir.load_json {
            sources.push(file.name.clone());
        }
        if let (Some(file), Some(nearest)) = (&dir.external_json, nearest_external) {
            if std::ptr::eq(file, nearest) {
                sources.push(file.name.clone());
            }
        }
        if let (Some(file), Some(sql)) = (dir.sql.first(), transform_sql) {
            if dir.sql.len() == 1 && file.name == sql.name {
                sources.push(file.name.clone());
            }
        }
        if dir.orderme {
            sources.push(format!("{}{ORDERME}", dir.prefix));
        }
    }
    sources
}

/// Parses a config file that must hold a JSON object.
fn parse_object(bucket: &str, file: &ConfigFile) -> Result<Map<String, Value>, ConfigError> {
    const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
    let content = file.content.strip_prefix(UTF8_BOM).unwrap_or(&file.content);
    let invalid = |message: String| ConfigError::InvalidJson {
        bucket: bucket.to_string(),
        name: file.name.clone(),
        message,
    };
    match serde_json::from_slice::<Value>(content) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(invalid(format!(
            "expected a JSON object, found {}",
            kind_of(&other)
        ))),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// The `configuration.load` keys whose kind bq-ingest relies on (string enums it reads or that
/// a wrong kind would only reveal as a rejected job).
const STRING_LOAD_KEYS: &[&str] = &[
    "sourceFormat",
    "writeDisposition",
    "createDisposition",
    "fieldDelimiter",
    "encoding",
    "quote",
];

/// The values BigQuery accepts for `writeDisposition`.
const WRITE_DISPOSITIONS: &[&str] = &["WRITE_APPEND", "WRITE_TRUNCATE", "WRITE_EMPTY"];

/// Checks the kinds of the well-known keys of one `load.json`.
fn check_load_kinds(
    bucket: &str,
    name: &str,
    object: &Map<String, Value>,
) -> Result<(), ConfigError> {
    for key in STRING_LOAD_KEYS {
        match object.get(*key) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(invalid_value(
                    bucket,
                    name,
                    key,
                    &format!("expected a string, found {}", kind_of(other)),
                ))
            }
        }
    }
    if let Some(Value::String(disposition)) = object.get("writeDisposition") {
        if !WRITE_DISPOSITIONS.contains(&disposition.as_str()) {
            return Err(invalid_value(
                bucket,
                name,
                "writeDisposition",
                &format!("{disposition:?} is not one of {WRITE_DISPOSITIONS:?}"),
            ));
        }
    }
    Ok(())
}

/// Deep-merges `patch` into `target`: objects key by key, everything else replaced, `null`
/// removes the key (RFC 7386 JSON merge patch).
fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(patch_object) => match target.get_mut(&key) {
                Some(Value::Object(target_object)) => merge_patch(target_object, patch_object),
                _ => {
                    let mut fresh = Map::new();
                    merge_patch(&mut fresh, patch_object);
                    target.insert(key, Value::Object(fresh));
                }
            },
            other => {
                target.insert(key, other);
            }
        }
    }
}

fn invalid_value(bucket: &str, name: &str, key: &str, message: &str) -> ConfigError {
    ConfigError::InvalidValue {
        bucket: bucket.to_string(),
        name: name.to_string(),
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// The kind of a JSON value, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BUCKET: &str = "bucket";

    fn file(name: &str, content: &str) -> ConfigFile {
        ConfigFile {
            name: name.to_string(),
            generation: 1,
            content: content.as_bytes().to_vec(),
        }
    }

    fn load_dir(prefix: &str, json: &str) -> ConfigDir {
        ConfigDir {
            prefix: prefix.to_string(),
            load_json: Some(file(&format!("{prefix}load.json"), json)),
            ..ConfigDir::default()
        }
    }

    fn empty_dir(prefix: &str) -> ConfigDir {
        ConfigDir {
            prefix: prefix.to_string(),
            ..ConfigDir::default()
        }
    }

    // ---- config_prefixes ----

    #[test]
    fn prefixes_go_from_root_to_the_batch_own_dir() {
        assert_eq!(
            config_prefixes("ds/t/$2020/"),
            vec![
                "_config/",
                "ds/_config/",
                "ds/t/_config/",
                "ds/t/$2020/_config/"
            ]
        );
        assert_eq!(
            config_prefixes("ds/t/"),
            vec!["_config/", "ds/_config/", "ds/t/_config/"]
        );
    }

    #[test]
    fn prefixes_of_a_root_batch_are_only_the_root() {
        assert_eq!(config_prefixes(""), vec!["_config/"]);
    }

    #[test]
    fn prefixes_of_a_prefix_without_trailing_slash_include_it() {
        assert_eq!(
            config_prefixes("ds/t"),
            vec!["_config/", "ds/_config/", "ds/t/_config/"]
        );
    }

    #[test]
    fn prefixes_keep_unusual_characters() {
        assert_eq!(
            config_prefixes("ds/tâble/b 1/"),
            vec![
                "_config/",
                "ds/_config/",
                "ds/tâble/_config/",
                "ds/tâble/b 1/_config/"
            ]
        );
    }

    // ---- files_to_read ----

    #[test]
    fn files_to_read_picks_load_external_sql_and_orderme() {
        let (read, orderme) = files_to_read(
            "ds/_config/",
            &[
                "ds/_config/ORDERME",
                "ds/_config/bq_transform.sql",
                "ds/_config/external.json",
                "ds/_config/load.json",
                "ds/_config/README.md",
            ],
        );
        assert_eq!(
            read,
            vec![
                "ds/_config/bq_transform.sql",
                "ds/_config/external.json",
                "ds/_config/load.json"
            ]
        );
        assert!(orderme);
    }

    #[test]
    fn files_to_read_ignores_deeper_folders_and_other_prefixes() {
        let (read, orderme) = files_to_read(
            "ds/_config/",
            &[
                "ds/_config/archive/load.json",
                "ds/_config/archive/ORDERME",
                "ds/_config/archive/x.sql",
                "ds/t/_config/load.json",
                "other/_config/load.json",
                "ds/_config/.sql",
                "ds/_config/load.json.bak",
            ],
        );
        assert!(read.is_empty(), "{read:?}");
        assert!(!orderme);
    }

    #[test]
    fn files_to_read_of_nothing_is_nothing() {
        assert_eq!(files_to_read("_config/", &[]), (Vec::new(), false));
    }

    #[test]
    fn files_to_read_reports_two_sql_files_for_merge_to_reject() {
        let (read, _) = files_to_read("_config/", &["_config/b.sql", "_config/a.sql"]);
        assert_eq!(read, vec!["_config/a.sql", "_config/b.sql"]);
    }

    // ---- merge: load.json ----

    #[test]
    fn merge_of_nothing_gives_the_base_defaults() {
        let config = BatchConfig::merge(BUCKET, &[]).unwrap();
        assert_eq!(
            Value::Object(config.load),
            json!({"sourceFormat": "CSV", "writeDisposition": "WRITE_APPEND"})
        );
        assert!(config.destination_regex.is_none());
        assert!(config.destination_table.is_none());
        assert!(config.data_source_name.is_none());
        assert!(config.external.is_none());
        assert!(config.transform_sql.is_none());
        assert!(!config.ordered);
        assert!(config.sources.is_empty());
    }

    #[test]
    fn merge_goes_from_root_to_the_batch_own_dir_nearest_wins() {
        let dirs = [
            load_dir(
                "_config/",
                r#"{"sourceFormat": "NEWLINE_DELIMITED_JSON", "maxBadRecords": 1, "ignoreUnknownValues": true}"#,
            ),
            load_dir("ds/_config/", r#"{"maxBadRecords": 2}"#),
            empty_dir("ds/t/_config/"),
            load_dir(
                "ds/t/$2020/_config/",
                r#"{"maxBadRecords": 3, "writeDisposition": "WRITE_TRUNCATE"}"#,
            ),
        ];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert_eq!(
            Value::Object(config.load),
            json!({
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "writeDisposition": "WRITE_TRUNCATE",
                "maxBadRecords": 3,
                "ignoreUnknownValues": true
            })
        );
        assert_eq!(
            config.sources,
            vec![
                "_config/load.json",
                "ds/_config/load.json",
                "ds/t/$2020/_config/load.json"
            ]
        );
    }

    #[test]
    fn merge_deep_merges_objects_and_replaces_lists() {
        let dirs = [
            load_dir(
                "_config/",
                r#"{
                    "schema": {"fields": [{"name": "a", "type": "STRING"}, {"name": "b", "type": "INT64"}]},
                    "hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": "gs://b/x"},
                    "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION", "ALLOW_FIELD_RELAXATION"]
                }"#,
            ),
            load_dir(
                "ds/_config/",
                r#"{
                    "schema": {"fields": [{"name": "c", "type": "DATE"}]},
                    "hivePartitioningOptions": {"mode": "STRINGS"},
                    "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION"]
                }"#,
            ),
        ];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert_eq!(
            config.load["schema"],
            json!({"fields": [{"name": "c", "type": "DATE"}]})
        );
        assert_eq!(
            config.load["hivePartitioningOptions"],
            json!({"mode": "STRINGS", "sourceUriPrefix": "gs://b/x"})
        );
        assert_eq!(
            config.load["schemaUpdateOptions"],
            json!(["ALLOW_FIELD_ADDITION"])
        );
    }

    #[test]
    fn merge_null_removes_an_inherited_key() {
        let dirs = [
            load_dir(
                "_config/",
                r#"{"maxBadRecords": 5, "hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": "gs://b/x"}}"#,
            ),
            load_dir(
                "ds/_config/",
                r#"{"maxBadRecords": null, "hivePartitioningOptions": {"sourceUriPrefix": null}, "new": {"a": null, "b": 1}}"#,
            ),
        ];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert!(!config.load.contains_key("maxBadRecords"));
        assert_eq!(
            config.load["hivePartitioningOptions"],
            json!({"mode": "AUTO"})
        );
        assert_eq!(config.load["new"], json!({"b": 1}));
    }

    #[test]
    fn merge_keeps_a_control_character_field_delimiter() {
        let dirs = [load_dir("ds/_config/", r#"{"fieldDelimiter": "\u0010"}"#)];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert_eq!(
            config.load["fieldDelimiter"],
            Value::String("\u{10}".to_string())
        );
        // And it serializes back to the same single character for BigQuery.
        let round_trip: Value =
            serde_json::from_str(&serde_json::to_string(&config.load).unwrap()).unwrap();
        assert_eq!(round_trip["fieldDelimiter"].as_str(), Some("\u{10}"));
    }

    #[test]
    fn merge_keeps_tab_and_unicode_field_delimiters() {
        let config = BatchConfig::merge(
            BUCKET,
            &[load_dir("_config/", r#"{"fieldDelimiter": "\t"}"#)],
        )
        .unwrap();
        assert_eq!(config.load["fieldDelimiter"], "\t");
        let config = BatchConfig::merge(
            BUCKET,
            &[load_dir("_config/", r#"{"fieldDelimiter": "þ"}"#)],
        )
        .unwrap();
        assert_eq!(config.load["fieldDelimiter"], "þ");
    }

    #[test]
    fn merge_takes_own_keys_out_of_load() {
        let dirs = [load_dir(
            "ds/_config/",
            r#"{
                "dataSourceName": "crm",
                "destinationTable": {"projectId": "p-123456", "datasetId": "d", "tableId": "t$2020"},
                "sourceUris": ["gs://elsewhere/*"],
                "sourceFormat": "AVRO"
            }"#,
        )];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        for key in [
            "dataSourceName",
            "destinationTable",
            "destinationRegex",
            "sourceUris",
        ] {
            assert!(!config.load.contains_key(key), "{key} left in load");
        }
        assert_eq!(config.load["sourceFormat"], "AVRO");
        assert_eq!(config.data_source_name.as_deref(), Some("crm"));
        assert_eq!(
            config.destination_table,
            Some(DestinationTable {
                project_id: Some("p-123456".to_string()),
                dataset_id: "d".to_string(),
                table_id: "t$2020".to_string(),
            })
        );
    }

    #[test]
    fn merge_own_keys_nearest_wins_whole_and_null_unsets() {
        let dirs = [
            load_dir(
                "_config/",
                r#"{"dataSourceName": "root", "destinationTable": {"projectId": "p-123456", "datasetId": "d", "tableId": "t"}}"#,
            ),
            load_dir(
                "ds/_config/",
                r#"{"dataSourceName": null, "destinationTable": {"datasetId": "d2", "tableId": "t2"}}"#,
            ),
        ];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert_eq!(config.data_source_name, None);
        // Not merged with the root's projectId: a destination is taken whole.
        assert_eq!(
            config.destination_table,
            Some(DestinationTable {
                project_id: None,
                dataset_id: "d2".to_string(),
                table_id: "t2".to_string(),
            })
        );
    }

    #[test]
    fn merge_compiles_the_nearest_destination_regex() {
        let dirs = [
            load_dir(
                "_config/",
                r#"{"destinationRegex": "^(?P<dataset>[a-z]+)/(?P<table>[a-z]+)/"}"#,
            ),
            load_dir(
                "ds/_config/",
                r#"{"destinationRegex": "^(?P<dataset>[a-z]+)/(?P<table>[a-z]+)/(?P<batch>[0-9]+)/"}"#,
            ),
        ];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert_eq!(
            config
                .destination_regex
                .map(|r| r.as_str().to_string())
                .as_deref(),
            Some("^(?P<dataset>[a-z]+)/(?P<table>[a-z]+)/(?P<batch>[0-9]+)/")
        );
        assert!(!config.load.contains_key("destinationRegex"));
    }

    #[test]
    fn merge_destination_regex_without_table_is_fine_with_a_destination_table() {
        let dirs = [load_dir(
            "_config/",
            r#"{"destinationRegex": "^(?P<batch>[0-9]+)/", "destinationTable": {"datasetId": "d", "tableId": "t"}}"#,
        )];
        let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
        assert!(config.destination_regex.is_some());
        assert!(config.destination_table.is_some());
    }

    #[test]
    fn merge_rejects_an_invalid_destination_regex_naming_the_file() {
        let dirs = [load_dir(
            "ds/_config/",
            r#"{"destinationRegex": "^(?P<batch>[0-9]+)/"}"#,
        )];
        match BatchConfig::merge(BUCKET, &dirs) {
            Err(ConfigError::InvalidValue {
                bucket, name, key, ..
            }) => {
                assert_eq!(bucket, BUCKET);
                assert_eq!(name, "ds/_config/load.json");
                assert_eq!(key, "destinationRegex");
            }
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }

    #[test]
    fn merge_rejects_wrong_kinds_of_own_keys() {
        let cases = [
            (r#"{"destinationRegex": 5}"#, "destinationRegex"),
            (r#"{"destinationTable": "d.t"}"#, "destinationTable"),
            (
                r#"{"destinationTable": {"datasetId": "d"}}"#,
                "destinationTable",
            ),
            (r#"{"dataSourceName": ["a"]}"#, "dataSourceName"),
            (r#"{"fieldDelimiter": 44}"#, "fieldDelimiter"),
            (r#"{"writeDisposition": "TRUNCATE"}"#, "writeDisposition"),
            (r#"{"sourceFormat": {"csv": true}}"#, "sourceFormat"),
        ];
        for (json, expected_key) in cases {
            let dirs = [load_dir("ds/t/_config/", json)];
            match BatchConfig::merge(BUCKET, &dirs) {
                Err(ConfigError::InvalidValue { name, key, .. }) => {
                    assert_eq!(name, "ds/t/_config/load.json", "{json}");
                    assert_eq!(key, expected_key, "{json}");
                }
                other => panic!("{json}: expected InvalidValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn merge_invalid_json_names_the_object() {
        let dirs = [
            load_dir("_config/", r#"{"sourceFormat": "CSV"}"#),
            load_dir("ds/t/_config/", r#"{"sourceFormat": "CSV",}"#),
        ];
        let err = BatchConfig::merge(BUCKET, &dirs).unwrap_err();
        match &err {
            ConfigError::InvalidJson { bucket, name, .. } => {
                assert_eq!(bucket, BUCKET);
                assert_eq!(name, "ds/t/_config/load.json");
            }
            other => panic!("expected InvalidJson, got {other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with("gs://bucket/ds/t/_config/load.json: invalid JSON"));
    }

    #[test]
    fn merge_rejects_json_that_is_not_an_object() {
        for json in ["[1, 2]", "\"CSV\"", "null", "", "   "] {
            let dirs = [load_dir("ds/_config/", json)];
            match BatchConfig::merge(BUCKET, &dirs) {
                Err(ConfigError::InvalidJson { name, .. }) => {
                    assert_eq!(name, "ds/_config/load.json")
                }
                other => panic!("{json:?}: expected InvalidJson, got {other:?}"),
            }
        }
    }

    #[test]
    fn merge_accepts_a_utf8_byte_order_mark() {
        let mut dir = load_dir("_config/", "");
        if let Some(f) = dir.load_json.as_mut() {
            f.content = b"\xEF\xBB\xBF{\"sourceFormat\": \"PARQUET\"}".to_vec();
        }
        let config = BatchConfig::merge(BUCKET, &[dir]).unwrap();
        assert_eq!(config.load["sourceFormat"], "PARQUET");
    }

    #[test]
    fn merge_rejects_invalid_utf8_json() {
        let mut dir = load_dir("_config/", "");
        if let Some(f) = dir.load_json.as_mut() {
            f.content = b"{\"fieldDelimiter\": \"\xFF\"}".to_vec();
        }
        assert!(matches!(
            BatchConfig::merge(BUCKET, &[dir]),
            Err(ConfigError::InvalidJson { .. })
        ));
    }

    // ---- merge: external.json ----

    #[test]
    fn merge_external_nearest_wins_not_merged() {
        let mut root = empty_dir("_config/");
        root.external_json = Some(file(
            "_config/external.json",
            r#"{"sourceFormat": "CSV", "csvOptions": {"skipLeadingRows": 1}}"#,
        ));
        let mut near = empty_dir("ds/t/_config/");
        near.external_json = Some(file(
            "ds/t/_config/external.json",
            r#"{"sourceFormat": "PARQUET"}"#,
        ));
        let config =
            BatchConfig::merge(BUCKET, &[root.clone(), empty_dir("ds/_config/"), near]).unwrap();
        assert_eq!(
            config.external.map(Value::Object),
            Some(json!({"sourceFormat": "PARQUET"}))
        );
        assert_eq!(config.sources, vec!["ds/t/_config/external.json"]);
        // external.json does not touch the load config.
        assert_eq!(config.load["sourceFormat"], "CSV");

        let config = BatchConfig::merge(BUCKET, &[root, empty_dir("ds/_config/")]).unwrap();
        assert_eq!(
            config.external.map(Value::Object),
            Some(json!({"sourceFormat": "CSV", "csvOptions": {"skipLeadingRows": 1}}))
        );
    }

    #[test]
    fn merge_external_must_be_an_object() {
        let mut dir = empty_dir("ds/_config/");
        dir.external_json = Some(file("ds/_config/external.json", "[]"));
        match BatchConfig::merge(BUCKET, &[dir]) {
            Err(ConfigError::InvalidJson { name, .. }) => {
                assert_eq!(name, "ds/_config/external.json")
            }
            other => panic!("expected InvalidJson, got {other:?}"),
        }
    }

    // ---- merge: *.sql ----

    #[test]
    fn merge_two_sql_files_in_one_dir_is_an_error() {
        let mut dir = empty_dir("ds/_config/");
        dir.sql = vec![
            file("ds/_config/b.sql", "SELECT 2"),
            file("ds/_config/a.sql", "SELECT 1"),
        ];
        let err = BatchConfig::merge(BUCKET, &[empty_dir("_config/"), dir]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::TwoSqlFiles {
                bucket: BUCKET.to_string(),
                prefix: "ds/_config/".to_string(),
                names: vec![
                    "ds/_config/a.sql".to_string(),
                    "ds/_config/b.sql".to_string()
                ],
            }
        );
        assert!(err.to_string().contains("gs://bucket/ds/_config/"));
    }

    #[test]
    fn merge_nearest_sql_wins() {
        let mut root = empty_dir("_config/");
        root.sql = vec![file("_config/root.sql", "SELECT 1")];
        let mut near = empty_dir("ds/t/_config/");
        near.sql = vec![file(
            "ds/t/_config/bq_transform.sql",
            "INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext",
        )];
        let config =
            BatchConfig::merge(BUCKET, &[root.clone(), empty_dir("ds/_config/"), near]).unwrap();
        let sql = config.transform_sql.unwrap();
        assert_eq!(sql.name, "ds/t/_config/bq_transform.sql");
        assert_eq!(config.sources, vec!["ds/t/_config/bq_transform.sql"]);

        let config = BatchConfig::merge(BUCKET, &[root, empty_dir("ds/_config/")]).unwrap();
        assert_eq!(
            config.transform_sql.map(|f| f.name).as_deref(),
            Some("_config/root.sql")
        );
    }

    #[test]
    fn merge_sql_must_be_utf8() {
        let mut dir = empty_dir("ds/_config/");
        dir.sql = vec![ConfigFile {
            name: "ds/_config/t.sql".to_string(),
            generation: 3,
            content: vec![b'S', 0xC3, 0x28],
        }];
        match BatchConfig::merge(BUCKET, &[dir]) {
            Err(ConfigError::InvalidValue { name, .. }) => assert_eq!(name, "ds/_config/t.sql"),
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }

    // ---- merge: ORDERME ----

    #[test]
    fn merge_orderme_anywhere_orders() {
        let mut root = empty_dir("_config/");
        root.orderme = true;
        let config = BatchConfig::merge(BUCKET, &[root, empty_dir("ds/_config/")]).unwrap();
        assert!(config.ordered);
        assert_eq!(config.sources, vec!["_config/ORDERME"]);

        let mut own = empty_dir("ds/t/_config/");
        own.orderme = true;
        let config = BatchConfig::merge(BUCKET, &[empty_dir("_config/"), own]).unwrap();
        assert!(config.ordered);

        let config =
            BatchConfig::merge(BUCKET, &[empty_dir("_config/"), empty_dir("ds/_config/")]).unwrap();
        assert!(!config.ordered);
    }

    #[test]
    fn merge_sources_are_root_first_across_kinds() {
        let mut root = load_dir("_config/", "{}");
        root.orderme = true;
        root.external_json = Some(file("_config/external.json", "{}"));
        let mut near = load_dir("ds/_config/", "{}");
        near.sql = vec![file("ds/_config/x.sql", "SELECT 1")];
        let config = BatchConfig::merge(BUCKET, &[root, near]).unwrap();
        assert_eq!(
            config.sources,
            vec![
                "_config/load.json",
                "_config/external.json",
                "_config/ORDERME",
                "ds/_config/load.json",
                "ds/_config/x.sql"
            ]
        );
    }
}
