//! Destinations from object paths: `DESTINATION_REGEX`, identifier validation, partition
//! decorators and batch timestamps.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::ident;
use crate::ports::TableRef;

/// The Python function's default `DESTINATION_REGEX`, kept verbatim for compatibility.
pub const DEFAULT_DESTINATION_REGEX: &str = concat!(
    r"^(?P<dataset>[\w\-\._0-9]+)/",
    r"(?P<table>[\w\-_0-9]+)/?",
    r"(?:historical|incremental)?/?",
    r"(?P<partition>\$[0-9]+)?/?",
    r"(?:",
    r"(?P<yyyy>[0-9]{4})/?",
    r"(?P<mm>[0-9]{2})?/?",
    r"(?P<dd>[0-9]{2})?/?",
    r"(?P<hh>[0-9]{2})?/?",
    r")?",
    r"(?P<batch>[\w\-_0-9]+)?/",
);

/// The named groups a destination regex may use.
pub const DESTINATION_GROUPS: [&str; 9] = [
    "project",
    "dataset",
    "table",
    "partition",
    "yyyy",
    "mm",
    "dd",
    "hh",
    "batch",
];

/// A compiled, validated destination regex.
///
/// Matching follows Python's `re.match`: a match must start at the beginning of the object
/// name, whether or not the pattern starts with `^`; it need not reach the end.
#[derive(Debug, Clone)]
pub struct DestinationRegex {
    regex: regex::Regex,
    groups: GroupIndexes,
}

/// The capture-group index of each known group, resolved once at compile time so that
/// matching never looks names up.
#[derive(Debug, Clone, Copy, Default)]
struct GroupIndexes {
    project: Option<usize>,
    dataset: Option<usize>,
    table: Option<usize>,
    partition: Option<usize>,
    yyyy: Option<usize>,
    mm: Option<usize>,
    dd: Option<usize>,
    hh: Option<usize>,
    batch: Option<usize>,
}

/// Why a destination could not be derived. Names the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// The regex itself is invalid (bad syntax, unknown group names, no `dataset`/`table`).
    #[error("invalid destination regex {pattern:?}: {message}")]
    InvalidRegex {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
    /// The object path does not match the regex.
    #[error("{object}: path does not match the destination regex {pattern:?}")]
    NoMatch {
        /// `gs://bucket/name`.
        object: String,
        /// The pattern.
        pattern: String,
    },
    /// An identifier or decorator derived from the path breaks BigQuery's rules.
    #[error("{object}: invalid {what} {value:?}: {message}")]
    Invalid {
        /// `gs://bucket/name`.
        object: String,
        /// `project id`, `dataset id`, `table id`, `partition decorator`, `batch id`, `timestamp`.
        what: &'static str,
        /// The offending value.
        value: String,
        /// The rule it breaks.
        message: String,
    },
    /// No project in the path and no `BQ_STORAGE_PROJECT` / `BQ_PROJECT` / default project.
    #[error("{object}: no project: the path names none and BQ_STORAGE_PROJECT is not set")]
    NoProject {
        /// `gs://bucket/name`.
        object: String,
    },
}

/// The default regex, compiled once: compiling its Unicode classes is not free, and
/// `Settings::default()` needs one every time.
static DEFAULT_REGEX: std::sync::LazyLock<DestinationRegex> = std::sync::LazyLock::new(|| {
    DestinationRegex::new(DEFAULT_DESTINATION_REGEX, false).expect("default regex is valid")
});

impl Default for DestinationRegex {
    /// [`DEFAULT_DESTINATION_REGEX`], compiled once and shared (cloning a regex is cheap).
    fn default() -> Self {
        DEFAULT_REGEX.clone()
    }
}

impl DestinationRegex {
    /// Compiles and validates a pattern: only the groups `project`, `dataset`, `table`,
    /// `partition`, `yyyy`, `mm`, `dd`, `hh`, `batch` are allowed, and `dataset` and `table`
    /// are required unless `has_destination_table` (a `destinationTable` is configured).
    ///
    /// Python's `(?P<name>…)` group syntax is accepted as is.
    ///
    /// ```
    /// use ingest_core::destination::DestinationRegex;
    /// assert!(DestinationRegex::new(r"^(?P<dataset>\w+)/(?P<table>\w+)/", false).is_ok());
    /// // `table` is required when no destinationTable is configured.
    /// assert!(DestinationRegex::new(r"^(?P<dataset>\w+)/", false).is_err());
    /// assert!(DestinationRegex::new(r"^(?P<batch>\w+)/", true).is_ok());
    /// // Unknown groups are rejected.
    /// assert!(DestinationRegex::new(r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<day>\d+)/", false).is_err());
    /// ```
    pub fn new(pattern: &str, has_destination_table: bool) -> Result<Self, DestinationError> {
        let invalid = |message: String| DestinationError::InvalidRegex {
            pattern: pattern.to_string(),
            message,
        };
        let regex = regex::Regex::new(pattern).map_err(|e| invalid(e.to_string()))?;
        let mut groups = GroupIndexes::default();
        for (index, name) in regex.capture_names().enumerate() {
            let Some(name) = name else { continue };
            let slot = match name {
                "project" => &mut groups.project,
                "dataset" => &mut groups.dataset,
                "table" => &mut groups.table,
                "partition" => &mut groups.partition,
                "yyyy" => &mut groups.yyyy,
                "mm" => &mut groups.mm,
                "dd" => &mut groups.dd,
                "hh" => &mut groups.hh,
                "batch" => &mut groups.batch,
                other => {
                    return Err(invalid(format!(
                        "unknown named group {other:?}; the allowed groups are {}",
                        DESTINATION_GROUPS.join(", ")
                    )))
                }
            };
            *slot = Some(index);
        }
        if !has_destination_table {
            let missing: Vec<&str> = [("dataset", groups.dataset), ("table", groups.table)]
                .iter()
                .filter(|(_, index)| index.is_none())
                .map(|(name, _)| *name)
                .collect();
            if !missing.is_empty() {
                return Err(invalid(format!(
                    "the named group(s) {} are required unless a destinationTable is configured",
                    missing.join(" and ")
                )));
            }
        }
        Ok(DestinationRegex { regex, groups })
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the pattern has a named group `name`.
    pub fn has_group(&self, name: &str) -> bool {
        self.regex.capture_names().any(|n| n == Some(name))
    }

    /// The captures of a match that starts at the beginning of `name` (Python's `re.match`).
    /// Leftmost-first search returns a match at 0 whenever one exists, so checking the start of
    /// the leftmost match is exact.
    fn match_start<'h>(&self, name: &'h str) -> Option<regex::Captures<'h>> {
        self.regex
            .captures(name)
            .filter(|caps| caps.get(0).is_some_and(|m| m.start() == 0))
    }
}

/// A destination fixed by configuration (`destinationTable` in `load.json`) instead of the path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationTable {
    /// Project; default as for path-derived destinations.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Dataset.
    pub dataset_id: String,
    /// Table, optionally with a partition decorator.
    pub table_id: String,
}

/// Everything derived from a success marker's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Bucket of the marker.
    pub bucket: String,
    /// Full object name of the marker (`dataset/table/$2020/_SUCCESS`).
    pub marker: String,
    /// Destination table, with partition decorator when the path gives one.
    pub destination: TableRef,
    /// Batch id, when the path has one.
    pub batch_id: Option<String>,
    /// The batch timestamp: from the partition, the `yyyy/mm/dd/hh` groups or `TIMESTAMP_REGEX`.
    pub batch_timestamp: Option<DateTime<Utc>>,
    /// The marker's directory, ending with `/` (empty for a marker at the bucket root).
    pub batch_prefix: String,
    /// The path up to and including the table directory, without trailing `/`
    /// (`dataset/table`): where `_backlog/`, `_BACKFILL` and `_bqlock` live.
    pub table_prefix: String,
}

/// A non-empty group of a match.
fn group<'h>(caps: Option<&regex::Captures<'h>>, index: Option<usize>) -> Option<regex::Match<'h>> {
    caps?.get(index?).filter(|m| !m.as_str().is_empty())
}

/// The `yyyy`, `mm`, `dd`, `hh` groups of a match.
#[derive(Debug, Clone, Copy, Default)]
struct DateGroups<'h> {
    yyyy: Option<&'h str>,
    mm: Option<&'h str>,
    dd: Option<&'h str>,
    hh: Option<&'h str>,
}

impl DateGroups<'_> {
    fn any(&self) -> bool {
        self.yyyy.is_some() || self.mm.is_some() || self.dd.is_some() || self.hh.is_some()
    }

    /// The partition decorator `$yyyy[mm[dd[hh]]]` (each part after the year zero-padded to
    /// two digits) and the instant it starts at. `Err((value, rule))` when a part is not a
    /// number of the right width, a part is missing before a present one, or the date is
    /// not real.
    fn decorator(&self) -> Result<(String, DateTime<Utc>), (String, String)> {
        let parts = [
            ("yyyy", self.yyyy),
            ("mm", self.mm),
            ("dd", self.dd),
            ("hh", self.hh),
        ];
        let mut decorator = String::with_capacity(11);
        decorator.push('$');
        let mut values = [0u32, 1, 1, 0];
        let mut missing: Option<&str> = None;
        for (i, (name, part)) in parts.iter().enumerate() {
            let Some(text) = part else {
                missing.get_or_insert(name);
                continue;
            };
            if let Some(gap) = missing {
                return Err((
                    (*text).to_string(),
                    format!("the {name} group matched but the {gap} group before it did not"),
                ));
            }
            let width_ok = if i == 0 {
                text.len() == 4
            } else {
                (1..=2).contains(&text.len())
            };
            if !width_ok || !text.bytes().all(|b| b.is_ascii_digit()) {
                let expected = if i == 0 { "4 digits" } else { "1 or 2 digits" };
                return Err((
                    (*text).to_string(),
                    format!("the {name} group must be {expected}"),
                ));
            }
            if i > 0 && text.len() == 1 {
                decorator.push('0');
            }
            decorator.push_str(text);
            values[i] = text.parse().unwrap_or(0);
        }
        match ident::date_hour(values[0], values[1], values[2], values[3]) {
            Some(at) => Ok((decorator, at)),
            None => Err((
                decorator.clone(),
                format!("the yyyy/mm/dd/hh groups must name a real date and hour; {decorator:?} does not"),
            )),
        }
    }
}

/// The batch timestamp `TIMESTAMP_REGEX` finds anywhere in `name`: groups `yyyy`, `mm`, `dd`
/// (required) and `hh`, `mi`, `ss` (optional, default 0). `Ok(None)` when the regex does not
/// match or a required group did not participate.
pub(crate) fn timestamp_from_regex(
    timestamp_regex: &regex::Regex,
    name: &str,
) -> Result<Option<DateTime<Utc>>, (String, String)> {
    let Some(caps) = timestamp_regex.captures(name) else {
        return Ok(None);
    };
    let text = |group: &str| {
        caps.name(group)
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty())
    };
    let (Some(yyyy), Some(mm), Some(dd)) = (text("yyyy"), text("mm"), text("dd")) else {
        return Ok(None);
    };
    let whole = caps.get(0).map_or("", |m| m.as_str()).to_string();
    let number = |group: &str,
                  value: Option<&str>,
                  default: u32|
     -> Result<u32, (String, String)> {
        match value {
            None => Ok(default),
            Some(v) if !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(v.parse().unwrap_or(0))
            }
            Some(v) => Err((
                whole.clone(),
                format!("the {group} group of TIMESTAMP_REGEX must be 1 to 4 digits; found {v:?}"),
            )),
        }
    };
    let year = number("yyyy", Some(yyyy), 0)?;
    let month = number("mm", Some(mm), 1)?;
    let day = number("dd", Some(dd), 1)?;
    let hour = number("hh", text("hh"), 0)?;
    let minute = number("mi", text("mi"), 0)?;
    let second = number("ss", text("ss"), 0)?;
    ident::date_time(year, month, day, hour, minute, second)
        .map(Some)
        .ok_or_else(|| {
            (
                whole.clone(),
                "TIMESTAMP_REGEX matched a date and time that does not exist".to_string(),
            )
        })
}

/// Derives the [`Batch`] of a success marker.
///
/// `regex` is the effective destination regex (from `load.json`'s `destinationRegex`, else
/// `DESTINATION_REGEX`); `destination_table` overrides dataset/table/project when configured;
/// `default_project` is used when the path names no project (`BQ_STORAGE_PROJECT`, else the
/// default project). `timestamp_regex` is `TIMESTAMP_REGEX`. Every identifier is validated.
///
/// - The project is the `project` group, else the part of the `dataset` group before its last
///   `.` (`my-proj.dataset/table/_SUCCESS`), else `default_project`.
/// - The partition is the `partition` group, else `$yyyy[mm[dd[hh]]]` from those groups (each
///   zero-padded to two digits).
/// - The batch timestamp is the start of the partition, else the time of the `yyyy`… groups,
///   else what `timestamp_regex` finds in the marker's name, else `None`.
/// - With a `destination_table`, project (when set), dataset and table come from it; a
///   decorator in its `table_id` is the partition. The path still gives the batch id, the
///   timestamp and (when the `table_id` has no decorator) the partition; a path that does not
///   match the regex is then allowed and gives none of these.
///
/// ```
/// use ingest_core::destination::{resolve_batch, DestinationRegex};
/// let regex = DestinationRegex::default();
/// let batch = resolve_batch(&regex, None, Some("my-project"), None, "bucket",
///     "ds/events/2020/01/02/03/batch-7/_SUCCESS").unwrap();
/// assert_eq!(batch.destination.to_string(), "my-project.ds.events$2020010203");
/// assert_eq!(batch.batch_id.as_deref(), Some("batch-7"));
/// assert_eq!(batch.batch_prefix, "ds/events/2020/01/02/03/batch-7/");
/// assert_eq!(batch.table_prefix, "ds/events");
/// ```
pub fn resolve_batch(
    regex: &DestinationRegex,
    destination_table: Option<&DestinationTable>,
    default_project: Option<&str>,
    timestamp_regex: Option<&regex::Regex>,
    bucket: &str,
    marker: &str,
) -> Result<Batch, DestinationError> {
    let object = || format!("gs://{bucket}/{marker}");
    let invalid = |(what, value, message): Invalid| DestinationError::Invalid {
        object: object(),
        what,
        value,
        message,
    };
    let no_match = || DestinationError::NoMatch {
        object: object(),
        pattern: regex.as_str().to_string(),
    };

    let caps = regex.match_start(marker);
    if caps.is_none() && destination_table.is_none() {
        return Err(no_match());
    }
    let caps = caps.as_ref();
    let groups = &regex.groups;
    let names = TableNames::of(caps, groups, destination_table).ok_or_else(no_match)?;
    let project = names
        .project
        .or(default_project)
        .ok_or_else(|| DestinationError::NoProject { object: object() })?;
    let (dataset, table) = (names.dataset, names.table);
    let check = |what, value: &str, result: Result<(), String>| {
        result.map_err(|m| invalid((what, value.to_string(), m)))
    };
    check("project id", project, ident::validate_project_id(project))?;
    check("dataset id", dataset, ident::validate_dataset_id(dataset))?;
    check("table id", table, ident::validate_table_id(table))?;
    let (partition, batch_timestamp) =
        partition_and_time(caps, groups, names.partition, timestamp_regex, marker)
            .map_err(invalid)?;

    let batch_id = group(caps, groups.batch).map(|m| m.as_str().to_string());
    let batch_prefix = match marker.rfind('/') {
        Some(i) => &marker[..=i],
        None => "",
    };
    let table_prefix = match group(caps, groups.table) {
        Some(m) => &marker[..m.end()],
        None => batch_prefix.strip_suffix('/').unwrap_or(batch_prefix),
    };
    Ok(Batch {
        bucket: bucket.to_string(),
        marker: marker.to_string(),
        destination: TableRef {
            project: project.to_string(),
            dataset: dataset.to_string(),
            table: table.to_string(),
            partition,
        },
        batch_id,
        batch_timestamp,
        batch_prefix: batch_prefix.to_string(),
        table_prefix: table_prefix.to_string(),
    })
}

/// What is wrong with one part of a path: what it is, its value, the problem.
type Invalid = (&'static str, String, String);

/// Project, dataset, table and a decorator fixed by configuration, before validation.
struct TableNames<'a> {
    project: Option<&'a str>,
    dataset: &'a str,
    table: &'a str,
    partition: Option<&'a str>,
}

impl<'a> TableNames<'a> {
    /// From `destinationTable` when configured (the path may still name the project), else
    /// from the path; `None` when the path lacks the dataset or the table.
    fn of(
        caps: Option<&regex::Captures<'a>>,
        groups: &GroupIndexes,
        destination_table: Option<&'a DestinationTable>,
    ) -> Option<TableNames<'a>> {
        let path_project = group(caps, groups.project).map(|m| m.as_str());
        if let Some(dt) = destination_table {
            let (table, partition) = match dt.table_id.find('$') {
                Some(i) => (&dt.table_id[..i], Some(&dt.table_id[i..])),
                None => (dt.table_id.as_str(), None),
            };
            return Some(TableNames {
                project: dt.project_id.as_deref().or(path_project),
                dataset: dt.dataset_id.as_str(),
                table,
                partition,
            });
        }
        let dataset = group(caps, groups.dataset)?.as_str();
        let table = group(caps, groups.table)?.as_str();
        // `my-proj.dataset/table/…`: the project before the dataset's last `.`.
        let (project, dataset) = match (path_project, dataset.rsplit_once('.')) {
            (None, Some((project, dataset))) => (Some(project), dataset),
            (project, _) => (project, dataset),
        };
        Some(TableNames {
            project,
            dataset,
            table,
            partition: None,
        })
    }
}

/// The partition (configured, else the `partition` group, else from the date groups) and the
/// batch timestamp (the partition's start, else the date groups, else `TIMESTAMP_REGEX`).
fn partition_and_time(
    caps: Option<&regex::Captures<'_>>,
    groups: &GroupIndexes,
    config_partition: Option<&str>,
    timestamp_regex: Option<&regex::Regex>,
    marker: &str,
) -> Result<(Option<String>, Option<DateTime<Utc>>), Invalid> {
    let path_partition = group(caps, groups.partition).map(|m| m.as_str());
    let dates = DateGroups {
        yyyy: group(caps, groups.yyyy).map(|m| m.as_str()),
        mm: group(caps, groups.mm).map(|m| m.as_str()),
        dd: group(caps, groups.dd).map(|m| m.as_str()),
        hh: group(caps, groups.hh).map(|m| m.as_str()),
    };
    let invalid = |what: &'static str| move |(value, m): (String, String)| (what, value, m);
    let mut batch_timestamp = None;
    let partition = match config_partition.or(path_partition) {
        Some(decorator) => {
            batch_timestamp = ident::partition_start(decorator)
                .map_err(|m| ("partition decorator", decorator.to_string(), m))?;
            Some(decorator.to_string())
        }
        None if dates.any() => {
            let (decorator, at) = dates.decorator().map_err(invalid("partition decorator"))?;
            batch_timestamp = Some(at);
            Some(decorator)
        }
        None => None,
    };
    if batch_timestamp.is_none() && dates.any() {
        // A `$__UNPARTITIONED__` partition with yyyy… groups: the groups still give the time.
        let (_, at) = dates.decorator().map_err(invalid("timestamp"))?;
        batch_timestamp = Some(at);
    }
    if batch_timestamp.is_none() {
        if let Some(timestamp_regex) = timestamp_regex {
            batch_timestamp =
                timestamp_from_regex(timestamp_regex, marker).map_err(invalid("timestamp"))?;
        }
    }
    Ok((partition, batch_timestamp))
}

/// The table prefix (`dataset/table`) of any object of a table: a marker, a backlog item
/// (`<table>/_backlog/…`), `_BACKFILL`, the start-backfill marker or `_bqlock` at the table
/// level. `None` when the path does not match.
///
/// An object whose base name is one of `table_level_files` lives at the table level: its
/// directory is the table prefix. Any other name is matched against `regex` with
/// `/_backlog/` replaced by `/`, and the prefix ends where the `table` group ends (`None`
/// when that group did not match, as with a regex made for a `destinationTable`).
///
/// ```
/// use ingest_core::destination::{table_prefix, DestinationRegex};
/// let regex = DestinationRegex::default();
/// let level = ["_BACKFILL", "_bqlock"];
/// assert_eq!(table_prefix(&regex, "ds/t/_backlog/$2020/_SUCCESS", &level).as_deref(), Some("ds/t"));
/// assert_eq!(table_prefix(&regex, "ds/t/_BACKFILL", &level).as_deref(), Some("ds/t"));
/// ```
pub fn table_prefix(
    regex: &DestinationRegex,
    name: &str,
    table_level_files: &[&str],
) -> Option<String> {
    let (dir, base) = match name.rfind('/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => ("", name),
    };
    if !base.is_empty()
        && table_level_files
            .iter()
            .any(|f| !f.is_empty() && *f == base)
    {
        return Some(dir.to_string());
    }
    let name: Cow<'_, str> = if name.contains("/_backlog/") {
        Cow::Owned(name.replace("/_backlog/", "/"))
    } else {
        Cow::Borrowed(name)
    };
    let caps = regex.match_start(&name)?;
    let table = group(Some(&caps), regex.groups.table)?;
    Some(name[..table.end()].to_string())
}

#[cfg(test)]
mod tests;
