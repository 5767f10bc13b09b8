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

/// BigQuery names the bad file of a load in `errors[].location`: it goes into the message
/// (once), where the quarantine of bad files finds it.
#[test]
fn the_location_of_an_error_is_kept_in_the_message() {
    let job = json!({
        "status": {
            "state": "DONE",
            "errorResult": {"reason": "invalid", "message": "Error while reading data. Look into errors[]"},
            "errors": [
                {"reason": "invalid", "location": "gs://b/ds/t/bad.csv", "message": "Error while reading data, error message: CSV table encountered too many errors"},
                {"reason": "invalid", "location": "query", "message": "other"}
            ]
        }
    });
    let fallback = JobRef {
        project: "p".into(),
        job_id: "j".into(),
        location: None,
    };
    let error = parse_job(&job, &fallback).error.expect("error");
    assert_eq!(
        error.message.matches("gs://b/ds/t/bad.csv").count(),
        1,
        "{}",
        error.message
    );
    assert!(
        !error.message.contains("location: query"),
        "{}",
        error.message
    );
}
