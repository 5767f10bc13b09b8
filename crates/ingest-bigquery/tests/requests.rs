//! The adapter's requests on the wire, recorded by a local HTTP server, checked field by field
//! against the BigQuery REST reference; and the mapping of HTTP statuses to `WarehouseError`.
//!
//! The local stack runs partition decorators and external-table queries end to end (bq-ingest's
//! patch to local-bigquery; `tests/tests/transform.rs`), but an emulator accepts more than
//! BigQuery does, so the exact REST shape of these requests is checked here too. References
//! (BigQuery REST API v2):
//! - `jobs.insert`: POST `/bigquery/v2/projects/{projectId}/jobs`, body a `Job` resource —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/insert
//! - `JobReference {projectId, jobId, location}` —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/JobReference
//! - `JobConfiguration {load | query, labels}`, `JobConfigurationLoad {sourceUris,
//!   destinationTable, …}`, `JobConfigurationQuery {query, useLegacySql, tableDefinitions,
//!   parameterMode, queryParameters}` —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfiguration
//! - `TableReference.tableId` may carry a partition decorator (`sample_table$20190123`) —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/TableReference
//! - `QueryParameter {name, parameterType {type}, parameterValue {value}}` —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/QueryParameter
//! - `ExternalDataConfiguration {sourceUris, sourceFormat, hivePartitioningOptions {mode,
//!   sourceUriPrefix}}` —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#ExternalDataConfiguration
//! - `jobs.list` query parameters `parentJobId`, `allUsers`, `projection`, `pageToken`; the list
//!   is "sorted in reverse chronological order, by job creation time" —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/list
//! - `tabledata.insertAll {rows: [{insertId, json}]}` —
//!   https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/insertAll

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ingest_bigquery::{
    BigQueryWarehouse, Credentials, RetryPolicy, SchemaFill, LOAD_STATE_SCHEMA_JSON,
};
use ingest_core::ports::{
    JobKind, JobRef, JobRequest, JobState, LoadRecord, QueryParameter, TableRef, Warehouse,
    WarehouseError,
};
use serde_json::{json, Value};
use support::{inserted_job, Recorded, Recorder, Reply, Responder};

const PROJECT: &str = "test-project";

fn responder(f: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Responder {
    Arc::new(f)
}

fn warehouse(server: &Recorder) -> BigQueryWarehouse {
    warehouse_with(server, Credentials::Anonymous)
}

fn warehouse_with(server: &Recorder, credentials: Credentials) -> BigQueryWarehouse {
    BigQueryWarehouse::at(PROJECT, &server.base_url(), credentials)
        .expect("warehouse")
        .with_retry_policy(RetryPolicy::fast(3))
}

fn table(dataset: &str, table: &str, partition: Option<&str>) -> TableRef {
    TableRef {
        project: PROJECT.into(),
        dataset: dataset.into(),
        table: table.into(),
        partition: partition.map(str::to_string),
    }
}

fn load_request(job_id: &str, config: Value) -> JobRequest {
    JobRequest {
        project: PROJECT.into(),
        job_id: job_id.into(),
        location: Some("EU".into()),
        labels: BTreeMap::from([
            ("component".into(), "event-based-gcs-ingest".into()),
            ("bq_ingest_batch".into(), "b1".into()),
        ]),
        kind: JobKind::Load {
            destination: table("ds", "t", Some("$2017041101")),
            source_uris: vec![
                "gs://bucket/ds/t/$2017041101/part-0.csv".into(),
                "gs://bucket/ds/t/$2017041101/part-1.csv".into(),
            ],
            config: config.as_object().cloned().unwrap_or_default(),
        },
    }
}

fn query_request(job_id: &str) -> JobRequest {
    JobRequest {
        project: PROJECT.into(),
        job_id: job_id.into(),
        location: Some("US".into()),
        labels: BTreeMap::from([("component".into(), "event-based-gcs-ingest".into())]),
        kind: JobKind::Query {
            sql: "INSERT INTO `test-project.ds.t` SELECT *, @batch_id AS batch_id, \
                  @batch_timestamp AS ts FROM temp_ext"
                .into(),
            table_definitions: BTreeMap::from([(
                "temp_ext".into(),
                json!({
                    "sourceFormat": "PARQUET",
                    "sourceUris": ["gs://bucket/ds/t/batch=b1/*"],
                    "hivePartitioningOptions": {
                        "mode": "AUTO",
                        "sourceUriPrefix": "gs://bucket/ds/t/"
                    }
                }),
            )]),
            parameters: vec![
                QueryParameter {
                    name: "batch_timestamp".into(),
                    type_name: "TIMESTAMP".into(),
                    value: Some("2020-10-30 12:00:00+00".into()),
                },
                QueryParameter {
                    name: "batch_id".into(),
                    type_name: "STRING".into(),
                    value: Some("b1".into()),
                },
            ],
        },
    }
}

/// A server answering every jobs.insert like BigQuery (200, the Job resource, RUNNING).
async fn inserting_server() -> Recorder {
    Recorder::start(responder(|request, _| {
        Reply::json(200, &inserted_job(&request.json(), "RUNNING"))
    }))
    .await
}

#[tokio::test]
async fn load_into_a_partition_decorator() {
    let server = inserting_server().await;
    let wh = warehouse(&server);
    let request = load_request(
        "gcf-ingest-ds-t-2017041101-abc",
        json!({
            "sourceFormat": "CSV",
            "fieldDelimiter": "|",
            "skipLeadingRows": 1,
            "writeDisposition": "WRITE_APPEND",
            "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION"],
            // Not modelled by gcp-bigquery-client's JobConfigurationLoad: must pass through.
            "preserveAsciiControlCharacters": true,
            "columnNameCharacterMap": "V2"
        }),
    );
    let status = wh.submit(&request).await.expect("submit");

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/bigquery/v2/projects/test-project/jobs");
    assert!(r.headers["content-type"].starts_with("application/json"));
    assert!(
        !r.headers.contains_key("authorization"),
        "NoAuth sends no token"
    );
    let body = r.json();
    // Job.jobReference
    assert_eq!(body["jobReference"]["projectId"], "test-project");
    assert_eq!(
        body["jobReference"]["jobId"],
        "gcf-ingest-ds-t-2017041101-abc"
    );
    assert_eq!(body["jobReference"]["location"], "EU");
    // JobConfiguration.labels
    assert_eq!(
        body["configuration"]["labels"],
        json!({"component": "event-based-gcs-ingest", "bq_ingest_batch": "b1"})
    );
    // JobConfigurationLoad
    let load = &body["configuration"]["load"];
    assert_eq!(load["destinationTable"]["projectId"], "test-project");
    assert_eq!(load["destinationTable"]["datasetId"], "ds");
    assert_eq!(load["destinationTable"]["tableId"], "t$2017041101");
    assert_eq!(
        load["sourceUris"],
        json!([
            "gs://bucket/ds/t/$2017041101/part-0.csv",
            "gs://bucket/ds/t/$2017041101/part-1.csv"
        ])
    );
    assert_eq!(load["sourceFormat"], "CSV");
    assert_eq!(load["fieldDelimiter"], "|");
    assert_eq!(load["skipLeadingRows"], 1);
    assert_eq!(load["writeDisposition"], "WRITE_APPEND");
    assert_eq!(load["schemaUpdateOptions"], json!(["ALLOW_FIELD_ADDITION"]));
    assert_eq!(load["preserveAsciiControlCharacters"], true);
    assert_eq!(load["columnNameCharacterMap"], "V2");
    assert!(
        load.get("schema").is_none(),
        "no schema fill against BigQuery"
    );
    assert!(body["configuration"].get("query").is_none());

    // The status comes from the insert response.
    assert_eq!(status.state, JobState::Running);
    assert_eq!(status.job.job_id, "gcf-ingest-ds-t-2017041101-abc");
    assert_eq!(status.job.location.as_deref(), Some("EU"));
    assert_eq!(
        status.created,
        DateTime::<Utc>::from_timestamp_millis(1_700_000_000_123)
    );
    assert_eq!(status.labels["bq_ingest_batch"], "b1");
    assert_eq!(wh.stats().jobs_insert, 1);
    assert_eq!(wh.stats().total(), 1);
}

#[tokio::test]
async fn query_with_external_table_and_named_parameters() {
    let server = inserting_server().await;
    let wh = warehouse(&server);
    let status = wh
        .submit(&query_request("gcf-ingest-transform-1"))
        .await
        .expect("submit");
    assert_eq!(status.state, JobState::Running);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let body = recorded[0].json();
    assert_eq!(body["jobReference"]["projectId"], "test-project");
    assert_eq!(body["jobReference"]["jobId"], "gcf-ingest-transform-1");
    assert_eq!(body["jobReference"]["location"], "US");
    let query = &body["configuration"]["query"];
    assert!(query["query"]
        .as_str()
        .is_some_and(|q| q.starts_with("INSERT INTO `test-project.ds.t`")));
    assert_eq!(query["useLegacySql"], false);
    // tableDefinitions: map of name → ExternalDataConfiguration
    let ext = &query["tableDefinitions"]["temp_ext"];
    assert_eq!(ext["sourceFormat"], "PARQUET");
    assert_eq!(ext["sourceUris"], json!(["gs://bucket/ds/t/batch=b1/*"]));
    assert_eq!(ext["hivePartitioningOptions"]["mode"], "AUTO");
    assert_eq!(
        ext["hivePartitioningOptions"]["sourceUriPrefix"],
        "gs://bucket/ds/t/"
    );
    // Named parameters
    assert_eq!(query["parameterMode"], "NAMED");
    let parameters = query["queryParameters"]
        .as_array()
        .expect("queryParameters");
    assert_eq!(parameters.len(), 2);
    assert_eq!(parameters[0]["name"], "batch_timestamp");
    assert_eq!(parameters[0]["parameterType"]["type"], "TIMESTAMP");
    assert_eq!(
        parameters[0]["parameterValue"]["value"],
        "2020-10-30 12:00:00+00"
    );
    assert_eq!(parameters[1]["name"], "batch_id");
    assert_eq!(parameters[1]["parameterType"]["type"], "STRING");
    assert_eq!(parameters[1]["parameterValue"]["value"], "b1");
    assert!(body["configuration"].get("load").is_none());
}

/// A token source that always gives the same token (as `Authorization` values).
#[derive(Debug, Clone)]
struct FixedToken;

#[async_trait]
impl token_source::TokenSource for FixedToken {
    async fn token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok("Bearer ya29.test-token".into())
    }
}

#[tokio::test]
async fn tokens_are_sent_as_bearer() {
    let server = inserting_server().await;
    let wh = warehouse_with(&server, Credentials::Token(Arc::new(FixedToken)));
    wh.submit(&query_request("q-token")).await.expect("submit");
    assert_eq!(
        server.requests()[0].headers["authorization"],
        "Bearer ya29.test-token"
    );
}

/// A token source that cannot give a token.
#[derive(Debug, Clone)]
struct BrokenToken;

#[async_trait]
impl token_source::TokenSource for BrokenToken {
    async fn token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Err("no token".into())
    }
}

#[tokio::test]
async fn a_token_failure_is_transient_and_sends_nothing() {
    let server = inserting_server().await;
    let wh = warehouse_with(&server, Credentials::Token(Arc::new(BrokenToken)));
    let error = wh
        .submit(&query_request("q-no-token"))
        .await
        .expect_err("no token");
    assert!(
        matches!(&error, WarehouseError::Transient { what, message }
            if what == "job q-no-token" && message.contains("access token")),
        "{error:?}"
    );
    assert!(server.requests().is_empty());
    assert_eq!(wh.stats().total(), 0);
}

#[tokio::test]
async fn html_503_is_retried_then_transient() {
    let server = Recorder::start(responder(|_, _| {
        Reply::text(
            503,
            "text/html; charset=UTF-8",
            "<html><head><title>503 Service Unavailable</title></head><body>upstream connect error</body></html>",
        )
    }))
    .await;
    let wh = warehouse(&server);
    let error = wh
        .submit(&load_request("job-503", json!({})))
        .await
        .expect_err("503 forever");
    match &error {
        WarehouseError::Transient { what, message } => {
            assert_eq!(what, "job job-503");
            assert!(message.contains("HTTP 503"), "{message}");
            assert!(message.contains("503 Service Unavailable"), "{message}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(error.is_transient());
    assert_eq!(server.requests().len(), 3, "fast(3) = 3 attempts");
    let stats = wh.stats();
    assert_eq!((stats.jobs_insert, stats.retries), (3, 2));
}

#[tokio::test]
async fn a_retried_request_can_succeed() {
    let server = Recorder::start(responder(|request, n| match n {
        0 => Reply::text(502, "text/html", "<html>Bad Gateway</html>"),
        1 => Reply::json(429, &json!({"error": {"code": 429, "message": "Too many requests", "errors": [{"reason": "rateLimitExceeded", "message": "slow down"}]}})),
        _ => Reply::json(200, &inserted_job(&request.json(), "DONE")),
    }))
    .await;
    let wh = warehouse(&server);
    let status = wh
        .submit(&query_request("q-retried"))
        .await
        .expect("third attempt succeeds");
    assert_eq!(status.state, JobState::Done);
    let recorded = server.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        recorded[0].body, recorded[2].body,
        "the same job is re-sent"
    );
}

#[tokio::test]
async fn plain_text_409_is_already_exists() {
    let server = Recorder::start(responder(|_, _| {
        Reply::text(409, "text/plain", "Conflict: job exists")
    }))
    .await;
    let wh = warehouse(&server);
    let error = wh
        .submit(&load_request("job-dup", json!({})))
        .await
        .expect_err("409");
    assert_eq!(
        error,
        WarehouseError::AlreadyExists {
            job_id: "job-dup".into()
        }
    );
    assert_eq!(server.requests().len(), 1, "409 is not retried");
}

#[tokio::test]
async fn google_json_409_is_already_exists() {
    let server = Recorder::start(responder(|_, _| {
        Reply::json(409, &json!({"error": {"code": 409, "message": "Already Exists: Job test-project:EU.job-dup", "errors": [{"reason": "duplicate", "domain": "global", "message": "Already Exists: Job test-project:EU.job-dup"}], "status": "ALREADY_EXISTS"}}))
    }))
    .await;
    let error = warehouse(&server)
        .submit(&load_request("job-dup", json!({})))
        .await
        .expect_err("409");
    assert!(matches!(error, WarehouseError::AlreadyExists { job_id } if job_id == "job-dup"));
}

#[tokio::test]
async fn other_4xx_are_rejected_without_retry() {
    let server = Recorder::start(responder(|_, n| {
        if n == 0 {
            Reply::text(400, "text/plain", "Bad Request: nope")
        } else {
            Reply::json(403, &json!({"error": {"code": 403, "message": "Access Denied: Project test-project", "errors": [{"reason": "accessDenied", "message": "Access Denied"}]}}))
        }
    }))
    .await;
    let wh = warehouse(&server);
    let error = wh
        .submit(&load_request("job-400", json!({})))
        .await
        .expect_err("400");
    assert_eq!(
        error,
        WarehouseError::Rejected {
            what: "job job-400".into(),
            message: "HTTP 400: Bad Request: nope".into()
        }
    );
    let error = wh
        .submit(&load_request("job-403", json!({})))
        .await
        .expect_err("403");
    assert!(
        matches!(&error, WarehouseError::Rejected { message, .. } if message.contains("accessDenied")),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_timeout_is_retried_then_transient() {
    let server = Recorder::start(responder(|_, _| Reply {
        delay: Some(Duration::from_secs(5)),
        ..Reply::text(200, "application/json", "{}")
    }))
    .await;
    let wh = warehouse(&server).with_retry_policy(RetryPolicy {
        attempt_timeout: Duration::from_millis(150),
        ..RetryPolicy::fast(2)
    });
    let job = JobRef {
        project: PROJECT.into(),
        job_id: "slow".into(),
        location: None,
    };
    let error = wh.job_status(&job).await.expect_err("timeout");
    assert!(
        matches!(&error, WarehouseError::Transient { what, .. } if what == "job slow"),
        "{error:?}"
    );
    assert_eq!(wh.stats().jobs_get, 2);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let wh = BigQueryWarehouse::at(
        PROJECT,
        &format!("http://{addr}/bigquery/v2"),
        Credentials::Anonymous,
    )
    .expect("warehouse")
    .with_retry_policy(RetryPolicy::fast(2));
    let error = wh
        .submit(&query_request("q-refused"))
        .await
        .expect_err("refused");
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn job_status_reads_jobs_get_and_maps_404_to_none() {
    let server = Recorder::start(responder(|request, _| {
        if request.path.ends_with("/jobs/missing") {
            return Reply::text(404, "text/html", "<html>Not Found</html>");
        }
        Reply::json(200, &json!({
            "kind": "bigquery#job",
            "jobReference": {"projectId": PROJECT, "jobId": "j-done", "location": "EU"},
            "configuration": {"jobType": "LOAD", "labels": {"a": "b"}, "load": {}},
            "status": {
                "state": "DONE",
                "errorResult": {"reason": "invalid", "message": "Error while reading data"},
                "errors": [
                    {"reason": "invalid", "message": "Error while reading data"},
                    {"reason": "invalid", "message": "Could not parse 'x' as INT64 for field n"}
                ]
            },
            "statistics": {
                "creationTime": "1700000000000", "startTime": "1700000000500", "endTime": "1700000001000",
                "load": {"inputFiles": "1", "inputFileBytes": "2048", "outputRows": "0", "badRecords": "1"}
            }
        }))
    }))
    .await;
    let wh = warehouse(&server);
    let job = JobRef {
        project: PROJECT.into(),
        job_id: "j-done".into(),
        location: Some("EU".into()),
    };
    let status = wh.job_status(&job).await.expect("get").expect("found");
    let recorded = server.requests();
    assert_eq!(recorded[0].method, "GET");
    assert_eq!(
        recorded[0].path,
        "/bigquery/v2/projects/test-project/jobs/j-done"
    );
    assert_eq!(
        recorded[0].query.get("location").map(String::as_str),
        Some("EU")
    );
    assert_eq!(status.state, JobState::Done);
    let error = status.error.expect("failed job");
    assert_eq!(error.reason, "invalid");
    assert!(
        error.message.contains("Could not parse 'x' as INT64"),
        "{}",
        error.message
    );
    assert_eq!(status.input_bytes, Some(2048));
    assert_eq!(status.output_rows, Some(0));
    assert_eq!(
        status.ended,
        DateTime::<Utc>::from_timestamp_millis(1_700_000_001_000)
    );
    assert_eq!(status.labels["a"], "b");

    let missing = JobRef {
        job_id: "missing".into(),
        ..job
    };
    assert_eq!(
        wh.job_status(&missing).await.expect("404 is not an error"),
        None
    );
    assert_eq!(server.requests().len(), 2, "404 is not retried");
}

#[tokio::test]
async fn child_jobs_are_listed_in_execution_order_across_pages() {
    let child = |id: &str, created: &str, statement: &str| {
        json!({
            "id": format!("{PROJECT}:US.{id}"),
            "kind": "bigquery#job",
            "jobReference": {"projectId": PROJECT, "jobId": id, "location": "US"},
            "state": "DONE",
            "statistics": {"creationTime": created, "startTime": created, "endTime": created,
                           "parentJobId": "parent-1",
                           "query": {"statementType": statement, "numDmlAffectedRows": "4"}},
            "status": {"state": "DONE"},
            "configuration": {"jobType": "QUERY", "query": {"query": "…"}}
        })
    };
    let (c0, c1, c2) = (
        child("script_job_abc_0", "1700000000000", "CREATE_TABLE"),
        child("script_job_abc_1", "1700000001000", "INSERT"),
        child("script_job_abc_2", "1700000002000", "DROP_TABLE"),
    );
    let server = Recorder::start(responder(move |request, _| {
        // Newest first, as jobs.list returns them.
        match request.query.get("pageToken").map(String::as_str) {
            None => Reply::json(
                200,
                &json!({"kind": "bigquery#jobList", "jobs": [c2, c1], "nextPageToken": "page-2"}),
            ),
            Some(_) => Reply::json(200, &json!({"kind": "bigquery#jobList", "jobs": [c0]})),
        }
    }))
    .await;
    let wh = warehouse(&server);
    let parent = JobRef {
        project: PROJECT.into(),
        job_id: "parent-1".into(),
        location: Some("US".into()),
    };
    let children = wh.child_jobs(&parent).await.expect("list");
    let ids: Vec<&str> = children.iter().map(|c| c.job.job_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["script_job_abc_0", "script_job_abc_1", "script_job_abc_2"]
    );
    assert_eq!(children[1].statement_type.as_deref(), Some("INSERT"));
    assert_eq!(children[1].dml_affected_rows, Some(4));
    let recorded = server.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].path, "/bigquery/v2/projects/test-project/jobs");
    assert_eq!(recorded[0].query["parentJobId"], "parent-1");
    assert_eq!(recorded[0].query["allUsers"], "false");
    assert_eq!(recorded[0].query["projection"], "full");
    assert_eq!(recorded[1].query["pageToken"], "page-2");
    assert_eq!(wh.stats().jobs_list, 2);
}

fn record() -> LoadRecord {
    LoadRecord {
        marker_uri: "gs://bucket/ds/t/_SUCCESS".into(),
        marker_generation: 1_700_000_000_000_001,
        destination: "test-project.ds.t".into(),
        batch_id: None,
        job_ids: vec!["job-a".into(), "job-b".into()],
        mode: "load".into(),
        state: "done".into(),
        error: None,
        rows: Some(10),
        bytes: Some(1234),
        submitted_at: DateTime::from_timestamp(1_700_000_000, 0),
        started_at: DateTime::from_timestamp(1_700_000_001, 0),
        ended_at: DateTime::from_timestamp(1_700_000_002, 0).expect("time"),
    }
}

#[tokio::test]
async fn record_outcome_creates_the_missing_table_then_retries_once() {
    let server = Recorder::start(responder(|request, n| match (n, request.path.as_str()) {
        (0, _) => Reply::json(404, &json!({"error": {"code": 404, "message": "Not found: Table test-project:state.loads", "errors": [{"reason": "notFound", "message": "Not found"}]}})),
        (_, p) if p.ends_with("/datasets") => Reply::json(200, &json!({"kind": "bigquery#dataset"})),
        (_, p) if p.ends_with("/tables") => Reply::json(200, &json!({"kind": "bigquery#table"})),
        _ => Reply::json(200, &json!({"kind": "bigquery#tableDataInsertAllResponse"})),
    }))
    .await;
    let wh = warehouse(&server);
    wh.record_outcome(&table("state", "loads", None), &record())
        .await
        .expect("record");
    let recorded = server.requests();
    let paths: Vec<&str> = recorded.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/bigquery/v2/projects/test-project/datasets/state/tables/loads/insertAll",
            "/bigquery/v2/projects/test-project/datasets",
            "/bigquery/v2/projects/test-project/datasets/state/tables",
            "/bigquery/v2/projects/test-project/datasets/state/tables/loads/insertAll",
        ]
    );
    let insert = recorded[0].json();
    let row = &insert["rows"][0];
    assert_eq!(
        row["insertId"],
        "gs://bucket/ds/t/_SUCCESS#1700000000000001#done"
    );
    assert_eq!(row["json"]["marker_uri"], "gs://bucket/ds/t/_SUCCESS");
    assert_eq!(row["json"]["job_ids"], json!(["job-a", "job-b"]));
    assert_eq!(row["json"]["ended_at"], "2023-11-14T22:13:22.000000Z");
    assert_eq!(
        recorded[3].body, recorded[0].body,
        "the same row is retried"
    );
    let dataset = recorded[1].json();
    assert_eq!(
        dataset["datasetReference"],
        json!({"projectId": "test-project", "datasetId": "state"})
    );
    let created = recorded[2].json();
    assert_eq!(created["tableReference"]["tableId"], "loads");
    assert_eq!(
        created["timePartitioning"],
        json!({"type": "DAY", "field": "ended_at"})
    );
    let expected_fields: Value = serde_json::from_str(LOAD_STATE_SCHEMA_JSON).expect("schema");
    assert_eq!(created["schema"]["fields"], expected_fields);
    let stats = wh.stats();
    assert_eq!(
        (
            stats.tabledata_insert_all,
            stats.datasets_insert,
            stats.tables_insert
        ),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn record_outcome_reports_row_errors() {
    let server = Recorder::start(responder(|_, _| {
        Reply::json(200, &json!({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": [
            {"index": 0, "errors": [{"reason": "invalid", "location": "job_ids", "message": "no such field: job_ids."}]}
        ]}))
    }))
    .await;
    let error = warehouse(&server)
        .record_outcome(&table("state", "loads", Some("$20200101")), &record())
        .await
        .expect_err("row error");
    assert_eq!(
        error,
        WarehouseError::Rejected {
            what: "test-project.state.loads".into(),
            message: "insertAll row errors: invalid: no such field: job_ids.".into()
        }
    );
}

#[tokio::test]
async fn schema_fill_reads_the_table_once_and_fills_loads_without_schema() {
    let server = Recorder::start(responder(|request, _| {
        if request.method == "GET" {
            return Reply::json(
                200,
                &json!({
                    "kind": "bigquery#table",
                    "tableReference": {"projectId": PROJECT, "datasetId": "ds", "tableId": "t"},
                    "schema": {"fields": [
                        {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
                        {"name": "name", "type": "STRING", "mode": "NULLABLE"}
                    ]}
                }),
            );
        }
        Reply::json(200, &inserted_job(&request.json(), "DONE"))
    }))
    .await;
    let wh = warehouse(&server).with_schema_fill(SchemaFill::FromTable);
    wh.submit(&load_request("fill-1", json!({"sourceFormat": "CSV"})))
        .await
        .expect("first");
    wh.submit(&load_request("fill-2", json!({})))
        .await
        .expect("second");
    wh.submit(&load_request(
        "fill-3",
        json!({"sourceFormat": "CSV", "autodetect": true}),
    ))
    .await
    .expect("autodetect");
    let recorded = server.requests();
    let methods: Vec<&str> = recorded.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        methods,
        vec!["GET", "POST", "POST", "POST"],
        "one tables.get, cached"
    );
    assert_eq!(
        recorded[0].path, "/bigquery/v2/projects/test-project/datasets/ds/tables/t",
        "the table without its partition decorator"
    );
    for r in &recorded[1..3] {
        assert_eq!(
            r.json()["configuration"]["load"]["schema"]["fields"][0]["name"],
            "id"
        );
    }
    assert!(recorded[3].json()["configuration"]["load"]
        .get("schema")
        .is_none());
    let stats = wh.stats();
    assert_eq!(
        (
            stats.tables_get_schema_fill,
            stats.tables_get,
            stats.jobs_insert
        ),
        (1, 0, 3)
    );
}

#[tokio::test]
async fn query_rows_waits_and_pages() {
    let server = Recorder::start(responder(|request, _| {
        let schema = json!({"fields": [{"name": "n", "type": "INTEGER"}, {"name": "tags", "type": "STRING", "mode": "REPEATED"}]});
        if request.method == "POST" {
            assert_eq!(request.json()["useLegacySql"], false);
            return Reply::json(200, &json!({"kind": "bigquery#queryResponse", "jobComplete": false,
                "jobReference": {"projectId": PROJECT, "jobId": "qj", "location": "US"}}));
        }
        match request.query.get("pageToken") {
            None => Reply::json(200, &json!({"jobComplete": true, "schema": schema, "pageToken": "p2",
                "rows": [{"f": [{"v": "1"}, {"v": [{"v": "a"}]}]}]})),
            Some(_) => Reply::json(200, &json!({"jobComplete": true, "schema": schema,
                "rows": [{"f": [{"v": "2"}, {"v": []}]}]})),
        }
    }))
    .await;
    let wh = warehouse(&server);
    let rows = wh.query_rows("SELECT n, tags FROM x").await.expect("rows");
    assert_eq!(
        rows,
        vec![
            json!({"n": "1", "tags": ["a"]}),
            json!({"n": "2", "tags": []})
        ]
    );
    let recorded = server.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        recorded[1].path,
        "/bigquery/v2/projects/test-project/queries/qj"
    );
    assert_eq!(recorded[1].query["location"], "US");
    let stats = wh.stats();
    assert_eq!((stats.jobs_query, stats.jobs_get_query_results), (1, 2));
}

/// `create_table` (a transform destination from its `table.json`): `tables.insert` with the
/// template as the `Table` resource and the `tableReference` of the undecorated table; a 409
/// (it exists) answers `false`, not an error.
#[tokio::test]
async fn create_table_sends_the_template_as_the_table_resource() {
    let server = Recorder::start(responder(|_, n| {
        if n == 0 {
            Reply::json(200, &json!({"kind": "bigquery#table"}))
        } else {
            Reply::json(409, &json!({"error": {"code": 409, "message": "Already Exists: Table", "errors": [{"reason": "duplicate"}]}}))
        }
    }))
    .await;
    let wh = warehouse(&server);
    let template = json!({
        "schema": {"fields": [{"name": "ts", "type": "TIMESTAMP"}]},
        "timePartitioning": {"type": "HOUR", "field": "ts"},
        "clustering": {"fields": ["ts"]},
        "description": "from table.json",
        "labels": {"team": "crm"},
    });
    let template = template.as_object().unwrap();
    let destination = table("ds", "t", Some("$2024010203"));
    assert!(Warehouse::create_table(&wh, &destination, template)
        .await
        .unwrap());
    assert!(!Warehouse::create_table(&wh, &destination, template)
        .await
        .unwrap());
    let recorded = server.requests();
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/bigquery/v2/projects/test-project/datasets/ds/tables"
    );
    let body = r.json();
    assert_eq!(
        body["tableReference"],
        json!({"projectId": "test-project", "datasetId": "ds", "tableId": "t"})
    );
    for key in [
        "schema",
        "timePartitioning",
        "clustering",
        "description",
        "labels",
    ] {
        assert_eq!(body[key], template[key], "{key}");
    }
}
