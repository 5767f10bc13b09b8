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

/// A job's `errorResult`, with the distinct messages of `errors[]` appended: BigQuery's
/// `errorResult.message` often only says "Please look into the errors[] collection".
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
mod tests {
    use super::*;
    use ingest_core::ports::QueryParameter;

    fn table(partition: Option<&str>) -> TableRef {
        TableRef {
            project: "p".into(),
            dataset: "ds".into(),
            table: "t".into(),
            partition: partition.map(str::to_string),
        }
    }

    fn load_request(config: Value) -> JobRequest {
        JobRequest {
            project: "p".into(),
            job_id: "job-1".into(),
            location: Some("EU".into()),
            labels: BTreeMap::from([("component".into(), "bq-ingest".into())]),
            kind: JobKind::Load {
                destination: table(Some("$2017041101")),
                source_uris: vec!["gs://b/ds/t/a.csv".into()],
                config: config.as_object().cloned().unwrap_or_default(),
            },
        }
    }

    #[test]
    fn load_body_passes_every_config_field_and_sets_ours() {
        let request = load_request(json!({
            "sourceFormat": "PARQUET",
            "writeDisposition": "WRITE_APPEND",
            "parquetOptions": {"enableListInference": true},
            "referenceFileSchemaUri": "gs://b/ref.parquet",
            "sourceUris": ["gs://ignored"],
        }));
        let body = job_resource(&request, None);
        let load = &body["configuration"]["load"];
        assert_eq!(load["parquetOptions"]["enableListInference"], json!(true));
        assert_eq!(load["referenceFileSchemaUri"], json!("gs://b/ref.parquet"));
        assert_eq!(load["writeDisposition"], json!("WRITE_APPEND"));
        assert_eq!(load["sourceUris"], json!(["gs://b/ds/t/a.csv"]));
        assert_eq!(load["destinationTable"]["tableId"], json!("t$2017041101"));
        assert_eq!(load["destinationTable"]["datasetId"], json!("ds"));
        assert_eq!(body["jobReference"]["jobId"], json!("job-1"));
        assert_eq!(body["jobReference"]["location"], json!("EU"));
        assert_eq!(
            body["configuration"]["labels"]["component"],
            json!("bq-ingest")
        );
    }

    /// Why bodies are built as JSON: every option of a user's `load.json` reaches BigQuery,
    /// including the ones no typed model of the API knows.
    #[test]
    fn user_load_options_reach_the_job_untouched() {
        let config = json!({
            "sourceFormat": "PARQUET",
            "parquetOptions": {"enableListInference": true},
            "preserveAsciiControlCharacters": true
        });
        // The adapter's body keeps them.
        let body = job_resource(&load_request(config), None);
        assert_eq!(
            body["configuration"]["load"]["parquetOptions"]["enableListInference"],
            json!(true)
        );
        assert_eq!(
            body["configuration"]["load"]["preserveAsciiControlCharacters"],
            json!(true)
        );
    }

    #[test]
    fn schema_fill_never_overrides_a_given_schema() {
        let given = json!({"schema": {"fields": [{"name": "a", "type": "STRING"}]}});
        let filled = json!({"fields": [{"name": "x", "type": "INT64"}]});
        let body = job_resource(&load_request(given.clone()), Some(&filled));
        assert_eq!(body["configuration"]["load"]["schema"], given["schema"]);
        let body = job_resource(&load_request(json!({})), Some(&filled));
        assert_eq!(body["configuration"]["load"]["schema"], filled);
    }

    #[test]
    fn which_loads_need_the_table_schema() {
        let needs = |v: Value| load_needs_table_schema(v.as_object().expect("object"));
        assert!(needs(json!({})));
        assert!(needs(json!({"sourceFormat": "CSV", "autodetect": false})));
        assert!(needs(json!({"sourceFormat": "NEWLINE_DELIMITED_JSON"})));
        assert!(!needs(json!({"autodetect": true})));
        assert!(!needs(json!({"schema": {"fields": []}})));
        assert!(!needs(json!({"schemaInline": "a:STRING"})));
        assert!(!needs(json!({"sourceFormat": "PARQUET"})));
        assert!(!needs(json!({"sourceFormat": "AVRO"})));
    }

    #[test]
    fn query_body() {
        let request = JobRequest {
            project: "p".into(),
            job_id: "q1".into(),
            location: None,
            labels: BTreeMap::new(),
            kind: JobKind::Query {
                sql: "INSERT INTO ds.t SELECT * FROM temp_ext".into(),
                table_definitions: BTreeMap::from([(
                    "temp_ext".into(),
                    json!({"sourceFormat": "CSV", "sourceUris": ["gs://b/x.csv"]}),
                )]),
                parameters: vec![
                    QueryParameter {
                        name: "batch_id".into(),
                        type_name: "STRING".into(),
                        value: Some("b1".into()),
                    },
                    QueryParameter {
                        name: "nothing".into(),
                        type_name: "STRING".into(),
                        value: None,
                    },
                ],
            },
        };
        let body = job_resource(&request, None);
        let query = &body["configuration"]["query"];
        assert_eq!(query["useLegacySql"], json!(false));
        assert_eq!(query["parameterMode"], json!("NAMED"));
        assert_eq!(
            query["tableDefinitions"]["temp_ext"]["sourceUris"],
            json!(["gs://b/x.csv"])
        );
        assert_eq!(
            query["queryParameters"][0],
            json!({"name": "batch_id", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "b1"}})
        );
        assert_eq!(query["queryParameters"][1]["parameterValue"], json!({}));
        assert!(body["jobReference"].get("location").is_none());
        assert!(body["configuration"].get("labels").is_none());
    }

    #[test]
    fn parses_a_done_load_job() {
        let job = json!({
            "jobReference": {"projectId": "p", "jobId": "j", "location": "US"},
            "configuration": {"labels": {"a": "b"}, "load": {}},
            "status": {"state": "DONE"},
            "statistics": {
                "creationTime": "1700000000000", "startTime": "1700000001000",
                "endTime": 1700000002000_u64,
                "load": {"outputRows": "12", "inputFileBytes": "345", "inputFiles": "1"}
            }
        });
        let status = parse_job(
            &job,
            &JobRef {
                project: "x".into(),
                job_id: "y".into(),
                location: None,
            },
        );
        assert_eq!(status.job.job_id, "j");
        assert_eq!(status.job.location.as_deref(), Some("US"));
        assert!(status.succeeded());
        assert_eq!(status.output_rows, Some(12));
        assert_eq!(status.input_bytes, Some(345));
        assert_eq!(status.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            status.created.map(|t| t.timestamp_millis()),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            status.ended.map(|t| t.timestamp_millis()),
            Some(1_700_000_002_000)
        );
        assert_eq!(status.statement_type, None);
    }

    #[test]
    fn parses_a_failed_job_with_error_details() {
        let job = json!({
            "status": {
                "state": "DONE",
                "errorResult": {"reason": "invalid", "message": "Too many errors. Look into errors[]"},
                "errors": [
                    {"reason": "invalid", "message": "Too many errors. Look into errors[]"},
                    {"reason": "invalid", "message": "Row 1: bad int"}
                ]
            }
        });
        let fallback = JobRef {
            project: "p".into(),
            job_id: "j".into(),
            location: Some("EU".into()),
        };
        let status = parse_job(&job, &fallback);
        assert_eq!(status.job, fallback);
        assert_eq!(status.state, JobState::Done);
        let error = status.error.expect("error");
        assert_eq!(error.reason, "invalid");
        assert_eq!(
            error.message,
            "Too many errors. Look into errors[]; Row 1: bad int"
        );
    }

    #[test]
    fn non_fatal_errors_do_not_fail_a_job() {
        let job = json!({"status": {"state": "DONE", "errors": [{"reason": "invalid", "message": "skipped row"}]}});
        let status = parse_job(
            &job,
            &JobRef {
                project: "p".into(),
                job_id: "j".into(),
                location: None,
            },
        );
        assert!(status.succeeded());
    }

    #[test]
    fn parses_query_statistics_and_list_items() {
        let item = json!({
            "jobReference": {"projectId": "p", "jobId": "script_job_x_1"},
            "state": "DONE",
            "statistics": {"totalBytesProcessed": "99", "query": {"statementType": "INSERT", "numDmlAffectedRows": "7"}}
        });
        let status = parse_job(
            &item,
            &JobRef {
                project: "p".into(),
                job_id: "parent".into(),
                location: None,
            },
        );
        assert_eq!(status.state, JobState::Done);
        assert_eq!(status.statement_type.as_deref(), Some("INSERT"));
        assert_eq!(status.dml_affected_rows, Some(7));
        assert_eq!(status.output_rows, Some(7));
        assert_eq!(status.input_bytes, Some(99));
        let running = parse_job(&json!({"status": {"state": "RUNNING"}}), &status.job);
        assert_eq!(running.state, JobState::Running);
    }

    #[test]
    fn execution_order() {
        let at = |id: &str, created: i64| {
            let mut s = JobStatus::new(
                JobRef {
                    project: "p".into(),
                    job_id: id.into(),
                    location: None,
                },
                JobState::Done,
            );
            s.created = DateTime::from_timestamp_millis(created);
            s
        };
        let mut children = vec![at("s_10", 5), at("s_2", 5), at("s_0", 1)];
        sort_in_execution_order(&mut children);
        let ids: Vec<&str> = children.iter().map(|c| c.job.job_id.as_str()).collect();
        assert_eq!(ids, vec!["s_0", "s_2", "s_10"]);
    }

    #[test]
    fn int64_and_times_tolerate_shapes() {
        assert_eq!(int64(Some(&json!("42"))), Some(42));
        assert_eq!(int64(Some(&json!(42))), Some(42));
        assert_eq!(int64(Some(&json!("x"))), None);
        assert_eq!(int64(Some(&json!(null))), None);
        assert_eq!(millis_time(Some(&json!("abc"))), None);
        assert!(millis_time(Some(&json!("0"))).is_some());
    }
}
