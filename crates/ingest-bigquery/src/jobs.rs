//! Job resources: building the `jobs.insert` body from a [`JobRequest`] and reading a
//! [`JobStatus`] from a `Job` resource (jobs.insert / jobs.get) or a `jobs.list` item.
//!
//! Field names follow the BigQuery REST reference (`Job`, `JobReference`, `JobConfiguration`,
//! `JobConfigurationLoad`, `JobConfigurationQuery`, `QueryParameter`, `JobStatus`,
//! `JobStatistics`). Bodies are built as JSON, not through `gcp-bigquery-client`'s model
//! structs: its `JobConfigurationLoad` lacks fields that users put in `load.json`
//! (`parquetOptions`, `referenceFileSchemaUri`, `preserveAsciiControlCharacters`,
//! `columnNameCharacterMap`, `fileSetSpecType`, `nullMarkers`, `timeZone`, …), and serde would
//! drop them silently. Building the JSON passes every field of the user's config through.
//!
//! Responses are read through the few fields needed, accepting int64 values as JSON strings
//! (as BigQuery sends them) or numbers, so an unexpected shape elsewhere in a large `Job`
//! resource (query plans, timelines) never hides a job's state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ingest_core::ports::{JobError, JobKind, JobRef, JobRequest, JobState, JobStatus, TableRef};
use serde_json::{json, Map, Value};

/// The `TableReference` JSON of a table; the partition decorator, if any, is part of `tableId`
/// (REST reference, `TableReference.tableId`: "can include a partition decorator, e.g.
/// `sample_table$20190123`").
pub(crate) fn table_reference(table: &TableRef) -> Value {
    json!({
        "projectId": table.project,
        "datasetId": table.dataset,
        "tableId": table.table_id_with_partition(),
    })
}

/// Source formats for which the emulator needs the destination's schema (see
/// [`crate::SchemaFill`]): the text formats, whose columns it otherwise invents. Self-describing
/// formats (PARQUET, AVRO, ORC) carry their own column names.
const TEXT_FORMATS: [&str; 2] = ["CSV", "NEWLINE_DELIMITED_JSON"];

/// Whether a load config leaves the schema to the destination table: no `schema` (nor the
/// legacy `schemaInline`), `autodetect` not true, and a text source format (CSV by default).
pub(crate) fn load_needs_table_schema(config: &Map<String, Value>) -> bool {
    let format = config
        .get("sourceFormat")
        .and_then(Value::as_str)
        .unwrap_or("CSV");
    !config.contains_key("schema")
        && !config.contains_key("schemaInline")
        && config.get("autodetect").and_then(Value::as_bool) != Some(true)
        && TEXT_FORMATS.contains(&format)
}

/// The `Job` resource to POST to `jobs.insert` for `request`. `table_schema`, when given, is
/// put in `configuration.load.schema` (only for a load; see [`crate::SchemaFill`]).
pub(crate) fn job_resource(request: &JobRequest, table_schema: Option<&Value>) -> Value {
    let mut configuration = Map::new();
    match &request.kind {
        JobKind::Load {
            destination,
            source_uris,
            config,
        } => {
            // Every field of the user's config passes through; the adapter owns only
            // `sourceUris` and `destinationTable`.
            let mut load = config.clone();
            if let Some(schema) = table_schema {
                load.entry("schema").or_insert_with(|| schema.clone());
            }
            load.insert("sourceUris".into(), json!(source_uris));
            load.insert("destinationTable".into(), table_reference(destination));
            configuration.insert("load".into(), Value::Object(load));
        }
        JobKind::Query {
            sql,
            table_definitions,
            parameters,
        } => {
            let mut query = Map::new();
            query.insert("query".into(), json!(sql));
            query.insert("useLegacySql".into(), json!(false));
            if !table_definitions.is_empty() {
                query.insert("tableDefinitions".into(), json!(table_definitions));
            }
            if !parameters.is_empty() {
                // QueryParameter: {name, parameterType: {type}, parameterValue: {value}}; a
                // NULL value is a parameterValue without `value`.
                let parameters: Vec<Value> = parameters
                    .iter()
                    .map(|p| {
                        let value = match &p.value {
                            Some(v) => json!({ "value": v }),
                            None => json!({}),
                        };
                        json!({
                            "name": p.name,
                            "parameterType": { "type": p.type_name },
                            "parameterValue": value,
                        })
                    })
                    .collect();
                query.insert("parameterMode".into(), json!("NAMED"));
                query.insert("queryParameters".into(), Value::Array(parameters));
            }
            configuration.insert("query".into(), Value::Object(query));
        }
    }
    if !request.labels.is_empty() {
        configuration.insert("labels".into(), json!(request.labels));
    }
    let mut reference = Map::new();
    reference.insert("projectId".into(), json!(request.project));
    reference.insert("jobId".into(), json!(request.job_id));
    if let Some(location) = &request.location {
        reference.insert("location".into(), json!(location));
    }
    json!({
        "jobReference": Value::Object(reference),
        "configuration": Value::Object(configuration),
    })
}

/// An int64 that BigQuery sends as a JSON string (or, from some servers, a number).
pub(crate) fn int64(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

/// Milliseconds since the epoch (`creationTime`, `startTime`, `endTime`) as a time.
pub(crate) fn millis_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let millis = match value? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        _ => return None,
    };
    DateTime::from_timestamp_millis(millis)
}

fn string(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_string)
}

/// The most error text kept for one job.
const MAX_ERROR_CHARS: usize = 4_000;

/// A job's `errorResult`, with the distinct messages of `errors[]` appended (and each error's
/// `gs://` `location` that no message names yet): BigQuery's `errorResult.message` often only
/// says "Please look into the errors[] collection".
fn job_error(error_result: &Value, errors: Option<&Value>) -> JobError {
    let reason = string(error_result.get("reason")).unwrap_or_else(|| "unknown".to_string());
    let mut message = string(error_result.get("message")).unwrap_or_default();
    let mut seen = vec![message.clone()];
    for error in errors
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(10)
    {
        // The file an error is about (`errors[].location`), unless its message names it: the
        // quarantine of bad files reads it from the message.
        let location = error
            .get("location")
            .and_then(Value::as_str)
            .filter(|l| l.starts_with("gs://") && !message.contains(*l));
        if let Some(location) = location {
            message.push_str(&format!(" (location: {location})"));
        }
        let Some(text) = error.get("message").and_then(Value::as_str) else {
            continue;
        };
        if text.is_empty() || seen.iter().any(|s| s == text) {
            continue;
        }
        seen.push(text.to_string());
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(text);
    }
    if message.chars().count() > MAX_ERROR_CHARS {
        message = message.chars().take(MAX_ERROR_CHARS).collect();
        message.push('…');
    }
    JobError { reason, message }
}

/// Reads a [`JobStatus`] from a `Job` resource (`jobs.insert`/`jobs.get` response) or a
/// `jobs.list` item (which also has top-level `state` and `errorResult`). `fallback` names the
/// job when the resource lacks a `jobReference` part.
pub(crate) fn parse_job(job: &Value, fallback: &JobRef) -> JobStatus {
    let reference = job.get("jobReference");
    let job_ref = JobRef {
        project: string(reference.and_then(|r| r.get("projectId")))
            .unwrap_or_else(|| fallback.project.clone()),
        job_id: string(reference.and_then(|r| r.get("jobId")))
            .unwrap_or_else(|| fallback.job_id.clone()),
        location: string(reference.and_then(|r| r.get("location")))
            .or_else(|| fallback.location.clone()),
    };
    let status = job.get("status");
    let state_text = status
        .and_then(|s| s.get("state"))
        .or_else(|| job.get("state"))
        .and_then(Value::as_str)
        .unwrap_or("PENDING");
    let state = match state_text {
        "DONE" => JobState::Done,
        "PENDING" => JobState::Pending,
        _ => JobState::Running,
    };
    let error_result = status
        .and_then(|s| s.get("errorResult"))
        .or_else(|| job.get("errorResult"))
        .filter(|e| e.is_object());
    let errors = status.and_then(|s| s.get("errors"));
    let statistics = job.get("statistics");
    let load = statistics.and_then(|s| s.get("load"));
    let query = statistics.and_then(|s| s.get("query"));
    let dml_affected_rows = int64(query.and_then(|q| q.get("numDmlAffectedRows")));
    let output_rows = int64(load.and_then(|l| l.get("outputRows"))).or(dml_affected_rows);
    let input_bytes = int64(load.and_then(|l| l.get("inputFileBytes"))).or_else(|| {
        int64(query.and_then(|q| q.get("totalBytesProcessed")))
            .or_else(|| int64(statistics.and_then(|s| s.get("totalBytesProcessed"))))
            .filter(|_| query.is_some())
    });
    let labels: BTreeMap<String, String> = job
        .get("configuration")
        .and_then(|c| c.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut result = JobStatus::new(job_ref, state);
    result.error = error_result.map(|e| job_error(e, errors));
    result.output_rows = output_rows;
    result.input_bytes = input_bytes;
    result.statement_type = string(query.and_then(|q| q.get("statementType")));
    result.dml_affected_rows = dml_affected_rows;
    result.labels = labels;
    result.created = millis_time(statistics.and_then(|s| s.get("creationTime")));
    result.started = millis_time(statistics.and_then(|s| s.get("startTime")));
    result.ended = millis_time(statistics.and_then(|s| s.get("endTime")));
    result
}

/// The index at the end of a script child job id (`script_job_<hash>_3` → 3).
fn child_index(job_id: &str) -> Option<u64> {
    job_id.rsplit('_').next()?.parse().ok()
}

/// Sorts child jobs in execution order: creation time, then start time, then the index
/// BigQuery puts at the end of script child job ids. (`jobs.list` returns newest first.)
pub(crate) fn sort_in_execution_order(children: &mut [JobStatus]) {
    children.sort_by(|a, b| {
        (
            a.created,
            a.started,
            child_index(&a.job.job_id),
            &a.job.job_id,
        )
            .cmp(&(
                b.created,
                b.started,
                child_index(&b.job.job_id),
                &b.job.job_id,
            ))
    });
}

#[cfg(test)]
mod tests;
