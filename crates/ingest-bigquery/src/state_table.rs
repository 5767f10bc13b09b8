//! The load-state table: one row per batch outcome ([`LoadRecord`]).

use chrono::{DateTime, SecondsFormat, Utc};
use ingest_core::ports::LoadRecord;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The schema of the load-state table, as BigQuery's `TableSchema.fields` JSON (the format of
/// `bq mk --schema FILE`), created by
/// [`record_outcome`](ingest_core::ports::Warehouse::record_outcome) when the table is missing.
/// The table is partitioned by DAY on `ended_at`.
///
/// | column | type | mode | from [`LoadRecord`] |
/// | --- | --- | --- | --- |
/// | `marker_uri` | STRING | REQUIRED | `gs://bucket/name` of the success marker |
/// | `marker_generation` | INT64 | NULLABLE | the marker's generation |
/// | `destination` | STRING | NULLABLE | `project.dataset.table$partition` |
/// | `batch_id` | STRING | NULLABLE | the batch id, when the path has one |
/// | `job_ids` | STRING | REPEATED | ids of the jobs that applied the batch |
/// | `mode` | STRING | NULLABLE | `load` or `transform` |
/// | `state` | STRING | NULLABLE | `done`, `failed` or `retried` |
/// | `error` | STRING | NULLABLE | the error of a failed batch |
/// | `rows` | INT64 | NULLABLE | rows written |
/// | `bytes` | INT64 | NULLABLE | bytes read |
/// | `submitted_at` | TIMESTAMP | NULLABLE | when the first job was submitted |
/// | `started_at` | TIMESTAMP | NULLABLE | when the first job started |
/// | `ended_at` | TIMESTAMP | REQUIRED | when the outcome was final (partitioning column) |
pub const LOAD_STATE_SCHEMA_JSON: &str = r#"[
  {"name": "marker_uri", "type": "STRING", "mode": "REQUIRED"},
  {"name": "marker_generation", "type": "INT64", "mode": "NULLABLE"},
  {"name": "destination", "type": "STRING", "mode": "NULLABLE"},
  {"name": "batch_id", "type": "STRING", "mode": "NULLABLE"},
  {"name": "job_ids", "type": "STRING", "mode": "REPEATED"},
  {"name": "mode", "type": "STRING", "mode": "NULLABLE"},
  {"name": "state", "type": "STRING", "mode": "NULLABLE"},
  {"name": "error", "type": "STRING", "mode": "NULLABLE"},
  {"name": "rows", "type": "INT64", "mode": "NULLABLE"},
  {"name": "bytes", "type": "INT64", "mode": "NULLABLE"},
  {"name": "submitted_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
  {"name": "started_at", "type": "TIMESTAMP", "mode": "NULLABLE"},
  {"name": "ended_at", "type": "TIMESTAMP", "mode": "REQUIRED"}
]"#;

/// The column the load-state table is partitioned on (DAY).
pub const LOAD_STATE_PARTITION_FIELD: &str = "ended_at";

/// The longest `insertId` sent as is; longer ones are replaced by a SHA-256 digest.
const MAX_READABLE_INSERT_ID: usize = 128;

/// The `insertId` of a record's row: its [`LoadRecord::identity`] (`marker_uri#generation#state`,
/// plus the jobs of a `retried` row), so that every delivery that writes the same outcome is
/// deduplicated by BigQuery (best effort, about a minute) while a later outcome of the same
/// marker (e.g. `retried` then `done`) is a new row. Ids longer than 128 characters become
/// `sha256:` + the hex digest of that text.
///
/// ```
/// use ingest_bigquery::load_record_insert_id;
/// # let record = ingest_core::ports::LoadRecord {
/// #     marker_uri: "gs://b/ds/t/_SUCCESS".into(), marker_generation: 7,
/// #     destination: "p.ds.t".into(), batch_id: None, job_ids: vec![], mode: "load".into(),
/// #     state: "done".into(), error: None, rows: None, bytes: None, submitted_at: None,
/// #     started_at: None, ended_at: chrono::Utc::now() };
/// assert_eq!(load_record_insert_id(&record), "gs://b/ds/t/_SUCCESS#7#done");
/// ```
pub fn load_record_insert_id(record: &LoadRecord) -> String {
    let readable = record.identity();
    if readable.len() <= MAX_READABLE_INSERT_ID {
        return readable;
    }
    let digest = Sha256::digest(readable.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn timestamp(t: &DateTime<Utc>) -> Value {
    json!(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// The `json` object of a record's row in `tabledata.insertAll`: columns of
/// [`LOAD_STATE_SCHEMA_JSON`]; NULL columns are left out; INT64 values are JSON strings (as
/// BigQuery's REST API writes int64) and TIMESTAMPs RFC 3339 strings in UTC.
pub fn load_record_row(record: &LoadRecord) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("marker_uri".into(), json!(record.marker_uri));
    row.insert(
        "marker_generation".into(),
        json!(record.marker_generation.to_string()),
    );
    row.insert("destination".into(), json!(record.destination));
    if let Some(batch_id) = &record.batch_id {
        row.insert("batch_id".into(), json!(batch_id));
    }
    row.insert("job_ids".into(), json!(record.job_ids));
    row.insert("mode".into(), json!(record.mode));
    row.insert("state".into(), json!(record.state));
    if let Some(error) = &record.error {
        row.insert("error".into(), json!(error));
    }
    if let Some(rows) = record.rows {
        row.insert("rows".into(), json!(rows.to_string()));
    }
    if let Some(bytes) = record.bytes {
        row.insert("bytes".into(), json!(bytes.to_string()));
    }
    if let Some(t) = &record.submitted_at {
        row.insert("submitted_at".into(), timestamp(t));
    }
    if let Some(t) = &record.started_at {
        row.insert("started_at".into(), timestamp(t));
    }
    row.insert("ended_at".into(), timestamp(&record.ended_at));
    row
}

/// The query of [`Warehouse::recorded_outcomes`](ingest_core::ports::Warehouse::recorded_outcomes):
/// the rows of `table` that ended at or after `since`, timestamps as Unix microseconds. The
/// table's name is a validated identifier (it comes from `BQ_LOAD_STATE_TABLE`), quoted; the
/// time is formatted by chrono, not taken from input.
pub fn recorded_outcomes_sql(table: &ingest_core::ports::TableRef, since: DateTime<Utc>) -> String {
    format!(
        "SELECT marker_uri, marker_generation, destination, batch_id, job_ids, mode, state, error, \
         `rows`, bytes, UNIX_MICROS(submitted_at) AS submitted_at, \
         UNIX_MICROS(started_at) AS started_at, UNIX_MICROS(ended_at) AS ended_at \
         FROM `{}.{}.{}` WHERE ended_at >= TIMESTAMP('{}')",
        table.project,
        table.dataset,
        table.table,
        since.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

/// One row of [`recorded_outcomes_sql`] as a [`LoadRecord`]; `None` without `marker_uri` or
/// `ended_at`.
pub fn load_record_from_row(row: &Value) -> Option<LoadRecord> {
    let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
    let int = |k: &str| {
        row.get(k)
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
    };
    let time = |k: &str| int(k).and_then(DateTime::<Utc>::from_timestamp_micros);
    Some(LoadRecord {
        marker_uri: text("marker_uri")?,
        marker_generation: int("marker_generation").unwrap_or_default(),
        destination: text("destination").unwrap_or_default(),
        batch_id: text("batch_id"),
        job_ids: row
            .get("job_ids")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        mode: text("mode").unwrap_or_default(),
        state: text("state").unwrap_or_default(),
        error: text("error"),
        rows: int("rows").and_then(|v| u64::try_from(v).ok()),
        bytes: int("bytes").and_then(|v| u64::try_from(v).ok()),
        submitted_at: time("submitted_at"),
        started_at: time("started_at"),
        ended_at: time("ended_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LoadRecord {
        LoadRecord {
            marker_uri: "gs://bucket/ds/t/_SUCCESS".into(),
            marker_generation: 1_700_000_000_123_456,
            destination: "p.ds.t$20200101".into(),
            batch_id: Some("b1".into()),
            job_ids: vec!["j1".into(), "j2".into()],
            mode: "load".into(),
            state: "done".into(),
            error: None,
            rows: Some(3),
            bytes: Some(120),
            submitted_at: DateTime::from_timestamp(1_600_000_000, 0),
            started_at: None,
            ended_at: DateTime::from_timestamp(1_600_000_010, 5_000).unwrap_or_default(),
        }
    }

    #[test]
    fn schema_const_is_a_valid_table_schema() {
        // BigQuery's TableFieldSchema: a name, a legacy type name and a mode for each field.
        let fields: Vec<Value> = serde_json::from_str(LOAD_STATE_SCHEMA_JSON).expect("json");
        assert_eq!(fields.len(), 13);
        for field in &fields {
            assert!(
                field["name"].as_str().is_some_and(|n| !n.is_empty()),
                "{field}"
            );
            let kind = field["type"].as_str().unwrap_or_default();
            assert!(["STRING", "INT64", "TIMESTAMP"].contains(&kind), "{field}");
            let mode = field["mode"].as_str().unwrap_or_default();
            assert!(
                ["NULLABLE", "REQUIRED", "REPEATED"].contains(&mode),
                "{field}"
            );
        }
        let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
        assert_eq!(names[0], "marker_uri");
        assert_eq!(names[12], LOAD_STATE_PARTITION_FIELD);
        let modes: Vec<Option<&str>> = fields.iter().map(|f| f["mode"].as_str()).collect();
        assert_eq!(modes[4], Some("REPEATED"));
        assert_eq!(modes[12], Some("REQUIRED"));
    }

    #[test]
    fn row_has_every_set_column_and_only_schema_columns() {
        let row = load_record_row(&record());
        let fields: Vec<Value> = serde_json::from_str(LOAD_STATE_SCHEMA_JSON).expect("json");
        let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
        assert!(row.keys().all(|k| names.contains(&k.as_str())));
        assert_eq!(row["marker_generation"], json!("1700000000123456"));
        assert_eq!(row["job_ids"], json!(["j1", "j2"]));
        assert_eq!(row["rows"], json!("3"));
        assert_eq!(row["submitted_at"], json!("2020-09-13T12:26:40.000000Z"));
        assert_eq!(row["ended_at"], json!("2020-09-13T12:26:50.000005Z"));
        assert!(!row.contains_key("error"));
        assert!(!row.contains_key("started_at"));
    }

    #[test]
    fn insert_ids_are_deterministic_and_bounded() {
        let r = record();
        assert_eq!(
            load_record_insert_id(&r),
            "gs://bucket/ds/t/_SUCCESS#1700000000123456#done"
        );
        let mut failed = r.clone();
        failed.state = "failed".into();
        assert_ne!(load_record_insert_id(&r), load_record_insert_id(&failed));
        let mut long = r.clone();
        long.marker_uri = format!("gs://bucket/{}/_SUCCESS", "x".repeat(300));
        let id = load_record_insert_id(&long);
        assert!(id.starts_with("sha256:"));
        assert_eq!(id.len(), 7 + 64);
        assert_eq!(id, load_record_insert_id(&long.clone()));
    }
}
