//! BigQuery identifier rules: project, dataset and table ids, partition decorators, labels.
//! Every identifier derived from a path passes through here before it reaches a job or SQL.
//!
//! Each validator returns `Err` with a human sentence naming the rule that is broken, e.g.
//! `"a dataset id may contain only letters, digits and underscores; found '-'"`.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};

/// Why an identifier is invalid: the rule it breaks.
pub type RuleViolation = String;

/// The longest dataset id BigQuery accepts, in characters.
pub const MAX_DATASET_ID_LEN: usize = 1024;
/// The longest table id BigQuery accepts, in UTF-8 bytes.
pub const MAX_TABLE_ID_BYTES: usize = 1024;
/// The decorator of the `__UNPARTITIONED__` partition.
pub const UNPARTITIONED_DECORATOR: &str = "$__UNPARTITIONED__";

/// A project id: 6–30 characters of lowercase letters, digits and hyphens, starting with a
/// letter, not ending with a hyphen; optionally prefixed by a domain (`example.com:project`).
///
/// ```
/// use ingest_core::ident::validate_project_id;
/// assert!(validate_project_id("my-project-1").is_ok());
/// assert!(validate_project_id("example.com:my-project").is_ok());
/// assert!(validate_project_id("My_Project").is_err());
/// ```
pub fn validate_project_id(id: &str) -> Result<(), RuleViolation> {
    let project = match id.rsplit_once(':') {
        Some((domain, project)) => {
            validate_project_domain(domain)?;
            project
        }
        None => id,
    };
    let len = project.chars().count();
    if !(6..=30).contains(&len) {
        return Err(format!(
            "a project id must be 6 to 30 characters long; found {len}"
        ));
    }
    let bytes = project.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err(format!(
            "a project id must start with a lowercase letter; found {:?}",
            first_char(project)
        ));
    }
    if let Some(bad) = project
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "a project id may contain only lowercase letters, digits and hyphens; found {bad:?}"
        ));
    }
    if project.ends_with('-') {
        return Err("a project id must not end with a hyphen".to_string());
    }
    Ok(())
}

/// The domain of a domain-scoped project id (`example.com` in `example.com:project`): dot-separated
/// labels of lowercase letters, digits and hyphens.
fn validate_project_domain(domain: &str) -> Result<(), RuleViolation> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(valid_label) {
        return Err(format!(
            "the domain of a domain-scoped project id must be a domain name of lowercase \
             letters, digits, hyphens and dots (as in 'example.com:project'); found {domain:?}"
        ));
    }
    Ok(())
}

/// A dataset id: 1–1024 characters of letters, digits and underscores.
///
/// ```
/// use ingest_core::ident::validate_dataset_id;
/// assert!(validate_dataset_id("my_dataset_1").is_ok());
/// assert!(validate_dataset_id("my-dataset").is_err());
/// ```
pub fn validate_dataset_id(id: &str) -> Result<(), RuleViolation> {
    if id.is_empty() {
        return Err("a dataset id must not be empty".to_string());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "a dataset id may contain only letters, digits and underscores; found {bad:?}"
        ));
    }
    // Only ASCII remains, so bytes are characters.
    if id.len() > MAX_DATASET_ID_LEN {
        return Err(format!(
            "a dataset id may be at most {MAX_DATASET_ID_LEN} characters long; found {}",
            id.len()
        ));
    }
    Ok(())
}

/// Unicode letters, marks, numbers, connector punctuation, dash punctuation and space separators.
static TABLE_ID_CHAR: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]$").expect("valid table id regex")
});

/// Whether BigQuery accepts `c` in a table id.
fn is_table_id_char(c: char) -> bool {
    if c.is_ascii() {
        // ASCII members of L, N, Pc, Pd and Zs (ASCII has no marks).
        return c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ';
    }
    let mut buf = [0u8; 4];
    TABLE_ID_CHAR.is_match(c.encode_utf8(&mut buf))
}

/// A table id: 1–1024 characters of Unicode letters, marks, numbers, connectors, dashes and
/// spaces (BigQuery's rule), no decorator.
///
/// BigQuery counts the limit in UTF-8 bytes, so that is what is checked (for ASCII names
/// characters and bytes are the same).
///
/// ```
/// use ingest_core::ident::validate_table_id;
/// assert!(validate_table_id("events-2020 raw_ü").is_ok());
/// assert!(validate_table_id("events$20200101").is_err());
/// ```
pub fn validate_table_id(id: &str) -> Result<(), RuleViolation> {
    if id.is_empty() {
        return Err("a table id must not be empty".to_string());
    }
    if id.len() > MAX_TABLE_ID_BYTES {
        return Err(format!(
            "a table id may be at most {MAX_TABLE_ID_BYTES} UTF-8 bytes long; found {}",
            id.len()
        ));
    }
    if id.contains('$') {
        return Err(
            "a table id must not contain '$' (a partition decorator is not part of the table id)"
                .to_string(),
        );
    }
    if let Some(bad) = id.chars().find(|c| !is_table_id_char(*c)) {
        return Err(format!(
            "a table id may contain only Unicode letters, marks, numbers, connector \
             punctuation (such as '_'), dashes and spaces; found {bad:?}"
        ));
    }
    Ok(())
}

/// A partition decorator `$YYYY`, `$YYYYMM`, `$YYYYMMDD` or `$YYYYMMDDHH` naming a real date
/// (and hour), or `$__UNPARTITIONED__`.
///
/// ```
/// use ingest_core::ident::validate_partition;
/// assert!(validate_partition("$2020013123").is_ok());
/// assert!(validate_partition("$__UNPARTITIONED__").is_ok());
/// assert!(validate_partition("$20200230").is_err()); // no 30 February
/// assert!(validate_partition("$2020010224").is_err()); // no hour 24
/// ```
pub fn validate_partition(decorator: &str) -> Result<(), RuleViolation> {
    partition_start(decorator).map(|_| ())
}

/// The start of the time range a partition decorator names, in UTC: `$2020` is
/// 2020-01-01T00:00Z, `$202003` 2020-03-01T00:00Z, `$20200304` 2020-03-04T00:00Z and
/// `$2020030405` 2020-03-04T05:00Z. `None` for `$__UNPARTITIONED__`. Errors as
/// [`validate_partition`].
///
/// ```
/// use ingest_core::ident::partition_start;
/// let start = partition_start("$2020010203").unwrap().unwrap();
/// assert_eq!(start.to_rfc3339(), "2020-01-02T03:00:00+00:00");
/// assert_eq!(partition_start("$__UNPARTITIONED__").unwrap(), None);
/// ```
pub fn partition_start(decorator: &str) -> Result<Option<DateTime<Utc>>, RuleViolation> {
    if decorator == UNPARTITIONED_DECORATOR {
        return Ok(None);
    }
    let Some(digits) = decorator.strip_prefix('$') else {
        return Err(format!(
            "a partition decorator must start with '$'; found {decorator:?}"
        ));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10].contains(&digits.len()) {
        return Err(format!(
            "a partition decorator must be $YYYY, $YYYYMM, $YYYYMMDD, $YYYYMMDDHH or \
             {UNPARTITIONED_DECORATOR}; found {decorator:?}"
        ));
    }
    let field = |range: std::ops::Range<usize>| -> Option<u32> {
        digits.get(range).and_then(|s| s.parse::<u32>().ok())
    };
    let year = field(0..4).unwrap_or(0);
    let month = field(4..6).unwrap_or(1);
    let day = field(6..8).unwrap_or(1);
    let hour = field(8..10).unwrap_or(0);
    date_hour(year, month, day, hour).map(Some).ok_or_else(|| {
        format!("a partition decorator must name a real date and hour; {decorator:?} does not")
    })
}

/// The UTC instant of `year-month-day hour:00:00`, or `None` when that is not a real date and
/// hour.
pub(crate) fn date_hour(year: u32, month: u32, day: u32, hour: u32) -> Option<DateTime<Utc>> {
    date_time(year, month, day, hour, 0, 0)
}

/// The UTC instant of `year-month-day hour:minute:second`, or `None` when not real.
pub(crate) fn date_time(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<DateTime<Utc>> {
    let year = i32::try_from(year).ok()?;
    NaiveDate::from_ymd_opt(year, month, day)?
        .and_hms_opt(hour, minute, second)
        .map(|naive| naive.and_utc())
}

/// A table path `[project.]dataset.table` (as `BQ_LOAD_STATE_TABLE` takes it), split into
/// its validated parts: `(project, dataset, table)`. The project may be domain-scoped
/// (`example.com:project.dataset.table`).
///
/// ```
/// use ingest_core::ident::parse_table_path;
/// assert_eq!(
///     parse_table_path("proj-123.loads.state").unwrap(),
///     (Some("proj-123"), "loads", "state")
/// );
/// assert_eq!(parse_table_path("loads.state").unwrap(), (None, "loads", "state"));
/// assert!(parse_table_path("state").is_err());
/// ```
pub fn parse_table_path(path: &str) -> Result<(Option<&str>, &str, &str), RuleViolation> {
    let Some((rest, table)) = path.rsplit_once('.') else {
        return Err(format!(
            "a table must be written [project.]dataset.table; found {path:?}"
        ));
    };
    let (project, dataset) = match rest.rsplit_once('.') {
        Some((project, dataset)) => (Some(project), dataset),
        None => (None, rest),
    };
    if let Some(project) = project {
        validate_project_id(project)?;
    }
    validate_dataset_id(dataset)?;
    validate_table_id(table)?;
    Ok((project, dataset, table))
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or('\0')
}

#[cfg(test)]
mod tests;
