//! The `_config/` files on the way from the bucket root to a batch, merged.
//!
//! - `load.json`: deep-merged from the root down to and including the batch's own directory;
//!   the nearest wins; lists are replaced, not concatenated. The keys `destinationRegex`,
//!   `destinationTable` and `dataSourceName` are bq-ingest's own: honoured, never sent to
//!   BigQuery.
//! - `external.json`: the nearest one wins, not merged.
//! - `*.sql`: turns on transform mode; the nearest directory that has one wins; two in one
//!   directory is an error.
//! - `table.json`: the nearest one is the destination's template (load mode).
//! - `ingest.json`: bq-ingest's own options ([`IngestOptions`]), merged like `load.json`.
//! - `ORDERME`: anywhere on the path turns on ordering.

use std::collections::HashMap;

use serde_json::{Map, Value};

mod options;

pub use options::{
    AfterSuccess, IngestOptions, Quarantine, DEFAULT_QUARANTINE_ROUNDS, INGEST_JSON, INGEST_KEYS,
};

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
    /// `table.json`: the destination's template.
    pub table_json: Option<ConfigFile>,
    /// `ingest.json`: bq-ingest's own options.
    pub ingest_json: Option<ConfigFile>,
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
    /// The nearest `table.json`, when any (in load mode its fields are also in
    /// [`BatchConfig::load`]).
    pub table_template: Option<String>,
    /// In transform mode, that `table.json` as a `Table` resource: the destination is created
    /// from it before the first query when it does not exist.
    pub table_resource: Option<Map<String, Value>>,
    /// Whether an `ORDERME` is on the path.
    pub ordered: bool,
    /// bq-ingest's own options, from the `ingest.json` files on the path.
    pub ingest: IngestOptions,
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
/// The destination table's template of a folder: created from it when missing.
pub const TABLE_JSON: &str = "table.json";

/// The keys a `table.json` may hold (BigQuery's `Table` resource), and where each goes in the
/// load job: `schema`, `timePartitioning`, `rangePartitioning` and `clustering` as they are
/// (when `load.json` does not set them), `description` and `labels` under
/// `destinationTableProperties`.
pub const TABLE_TEMPLATE_KEYS: &[&str] = &[
    "schema",
    "timePartitioning",
    "rangePartitioning",
    "clustering",
    "description",
    "labels",
];

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
        } else if relative == LOAD_JSON
            || relative == EXTERNAL_JSON
            || relative == TABLE_JSON
            || relative == INGEST_JSON
            || is_sql_file(relative)
        {
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
        let mut merging = Merging::new(bucket);
        for dir in dirs {
            merging.add(dir)?;
        }
        merging.finish(dirs)
    }
}

/// The state of a [`BatchConfig::merge`], folder after folder.
struct Merging<'a> {
    bucket: &'a str,
    load: Map<String, Value>,
    regex: Option<OwnValue>,
    table: Option<OwnValue>,
    source: Option<OwnValue>,
    external: Option<Map<String, Value>>,
    table_template: Option<(Map<String, Value>, String)>,
    ingest: Map<String, Value>,
    /// The nearest `ingest.json` that set each key of `ingest`.
    ingest_sources: HashMap<String, String>,
    transform_sql: Option<ConfigFile>,
    ordered: bool,
}

impl<'a> Merging<'a> {
    fn new(bucket: &'a str) -> Self {
        Merging {
            bucket,
            load: BASE_LOAD_CONFIG
                .iter()
                .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
                .collect(),
            regex: None,
            table: None,
            source: None,
            external: None,
            table_template: None,
            ingest: Map::new(),
            ingest_sources: HashMap::new(),
            transform_sql: None,
            ordered: false,
        }
    }

    /// One folder, nearer than every folder added before.
    fn add(&mut self, dir: &ConfigDir) -> Result<(), ConfigError> {
        if let Some(file) = &dir.load_json {
            self.add_load_json(file)?;
        }
        if let Some(file) = &dir.external_json {
            self.external = Some(parse_object(self.bucket, file)?);
        }
        if let Some(file) = &dir.table_json {
            self.table_template = Some((parse_object(self.bucket, file)?, file.name.clone()));
        }
        if let Some(file) = &dir.ingest_json {
            let object = parse_object(self.bucket, file)?;
            options::check_keys(self.bucket, file, &object)?;
            for key in object.keys() {
                self.ingest_sources.insert(key.clone(), file.name.clone());
            }
            merge_patch(&mut self.ingest, object);
        }
        match dir.sql.as_slice() {
            [] => {}
            [one] => self.transform_sql = Some(one.clone()),
            many => {
                let mut names: Vec<String> = many.iter().map(|f| f.name.clone()).collect();
                names.sort();
                return Err(ConfigError::TwoSqlFiles {
                    bucket: self.bucket.to_string(),
                    prefix: dir.prefix.clone(),
                    names,
                });
            }
        }
        self.ordered |= dir.orderme;
        Ok(())
    }

    /// A `load.json`: bq-ingest's own keys taken out (the nearest wins whole, `null` unsets),
    /// the forbidden keys dropped, the rest merge-patched over what is there.
    fn add_load_json(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        let mut object = parse_object(self.bucket, file)?;
        let slots = [
            ("destinationRegex", &mut self.regex),
            ("destinationTable", &mut self.table),
            ("dataSourceName", &mut self.source),
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
        check_load_kinds(self.bucket, &file.name, &object)?;
        merge_patch(&mut self.load, object);
        Ok(())
    }

    /// Checks and reads what was collected.
    fn finish(mut self, dirs: &[ConfigDir]) -> Result<BatchConfig, ConfigError> {
        let bucket = self.bucket;
        let mut table_resource = None;
        let table_template = match self.table_template.take() {
            Some((template, file)) if self.transform_sql.is_some() => {
                // Transform mode: the query creates no table; bq-ingest creates it from the
                // template before the first query (see `LoadPlan::create_table`).
                let mut checked = Map::new();
                apply_table_template(bucket, &file, template.clone(), &mut checked)?;
                table_resource = Some(template);
                Some(file)
            }
            Some((template, file)) => {
                apply_table_template(bucket, &file, template, &mut self.load)?;
                Some(file)
            }
            None => None,
        };
        if let Some(sql) = &self.transform_sql {
            if let Err(e) = std::str::from_utf8(&sql.content) {
                let problem = format!("not UTF-8: {e}");
                return Err(invalid_value(bucket, &sql.name, "transform SQL", &problem));
            }
        }
        let destination_table = self
            .table
            .map(|v| destination_table(bucket, v))
            .transpose()?;
        let has_table = destination_table.is_some();
        let destination_regex = self
            .regex
            .map(|v| destination_regex(bucket, v, has_table))
            .transpose()?;
        let data_source_name = self
            .source
            .map(|v| own_string(bucket, v, "dataSourceName"))
            .transpose()?;
        let ingest_sources = &self.ingest_sources;
        let ingest = IngestOptions::from_merged(bucket, &self.ingest, |key| {
            ingest_sources
                .get(key)
                .cloned()
                .unwrap_or_else(|| INGEST_JSON.to_string())
        })?;
        if ingest.quarantine.is_some() && self.transform_sql.is_some() {
            let problem = "quarantine applies to load mode: a transform query reads every file \
                           at once";
            let file = ingest_sources
                .get("quarantine")
                .cloned()
                .unwrap_or_default();
            return Err(invalid_value(bucket, &file, "quarantine", problem));
        }
        if ingest.file_timestamp_regex.is_some() && self.transform_sql.is_some() {
            let problem = "per-file partitions apply to load mode; in transform mode select \
                           _FILE_NAME from temp_ext and take the timestamp from it in the SQL";
            let file = ingest_sources
                .get("fileTimestampRegex")
                .cloned()
                .unwrap_or_default();
            return Err(invalid_value(bucket, &file, "fileTimestampRegex", problem));
        }
        let sources = contributing_sources(dirs, self.transform_sql.as_ref());
        Ok(BatchConfig {
            load: self.load,
            destination_regex,
            destination_table,
            data_source_name,
            external: self.external,
            transform_sql: self.transform_sql,
            table_template,
            table_resource,
            ordered: self.ordered,
            ingest,
            sources,
        })
    }
}

/// Puts a `table.json`'s fields into the load configuration (see [`TABLE_TEMPLATE_KEYS`]): the
/// load job then creates the destination from it when it does not exist
/// (`createDisposition: CREATE_IF_NEEDED`, BigQuery's default, set explicitly). A key of
/// another kind is an error naming the file.
fn apply_table_template(
    bucket: &str,
    file: &str,
    template: Map<String, Value>,
    load: &mut Map<String, Value>,
) -> Result<(), ConfigError> {
    let mut properties = Map::new();
    for (key, value) in template {
        match key.as_str() {
            "schema" | "timePartitioning" | "rangePartitioning" | "clustering" => {
                if !value.is_object() {
                    let problem = format!("expected an object, found {}", kind_of(&value));
                    return Err(invalid_value(bucket, file, &key, &problem));
                }
                load.entry(key).or_insert(value);
            }
            "description" | "labels" => {
                properties.insert(key, value);
            }
            _ => {
                let problem = format!(
                    "unknown key in a table template; allowed: {}",
                    TABLE_TEMPLATE_KEYS.join(", ")
                );
                return Err(invalid_value(bucket, file, &key, &problem));
            }
        }
    }
    if !properties.is_empty() && !load.contains_key("destinationTableProperties") {
        load.insert(
            "destinationTableProperties".to_string(),
            Value::Object(properties),
        );
    }
    load.insert(
        "createDisposition".to_string(),
        Value::String("CREATE_IF_NEEDED".to_string()),
    );
    Ok(())
}

/// `destinationTable`: an object with `datasetId` and `tableId`.
fn destination_table(bucket: &str, own: OwnValue) -> Result<DestinationTable, ConfigError> {
    let OwnValue { value, file } = own;
    if !value.is_object() {
        let problem = format!(
            "expected an object with datasetId and tableId, found {}",
            kind_of(&value)
        );
        return Err(invalid_value(bucket, &file, "destinationTable", &problem));
    }
    serde_json::from_value::<DestinationTable>(value)
        .map_err(|e| invalid_value(bucket, &file, "destinationTable", &e.to_string()))
}

/// `destinationRegex`: a string that compiles (see [`DestinationRegex::new`]).
fn destination_regex(
    bucket: &str,
    own: OwnValue,
    has_table: bool,
) -> Result<DestinationRegex, ConfigError> {
    let file = own.file.clone();
    let pattern = own_string(bucket, own, "destinationRegex")?;
    DestinationRegex::new(&pattern, has_table)
        .map_err(|e| invalid_value(bucket, &file, "destinationRegex", &e.to_string()))
}

/// A key of bq-ingest's own that must be a string.
fn own_string(bucket: &str, own: OwnValue, key: &str) -> Result<String, ConfigError> {
    match own.value {
        Value::String(text) => Ok(text),
        value => {
            let problem = format!("expected a string, found {}", kind_of(&value));
            Err(invalid_value(bucket, &own.file, key, &problem))
        }
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
        if let Some(file) = &dir.ingest_json {
            sources.push(file.name.clone());
        }
        if let Some(file) = &dir.table_json {
            if dirs
                .iter()
                .rev()
                .find_map(|d| d.table_json.as_ref())
                .is_some_and(|n| std::ptr::eq(n, file))
            {
                sources.push(file.name.clone());
            }
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
mod tests;
