//! Behaviour of `MemoryWarehouse`: loads against a `MemoryStore`, write and create
//! dispositions, query responders, job durations and inspection. (Call counting and call
//! failures are the core's decorators: `ingest-core/tests/decorators.rs`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use ingest_core::decorators::CountingWarehouse;
use ingest_core::ports::{
    Clock, JobError, JobKind, JobRef, JobRequest, JobState, JobStatus, LoadRecord, TableRef,
    Warehouse, WarehouseError,
};
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse, QueryOutcome};
use serde_json::{json, Map, Value};

fn table(name: &str, partition: Option<&str>) -> TableRef {
    TableRef {
        project: "p".into(),
        dataset: "ds".into(),
        table: name.into(),
        partition: partition.map(str::to_string),
    }
}

fn config(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn load(
    job_id: &str,
    destination: TableRef,
    uris: &[&str],
    config: Map<String, Value>,
) -> JobRequest {
    JobRequest {
        project: "p".into(),
        job_id: job_id.into(),
        location: None,
        labels: BTreeMap::from([("component".to_string(), "test".to_string())]),
        kind: JobKind::Load {
            destination,
            source_uris: uris.iter().map(|u| u.to_string()).collect(),
            config,
        },
    }
}

fn query(job_id: &str, sql: &str) -> JobRequest {
    JobRequest {
        project: "p".into(),
        job_id: job_id.into(),
        location: Some("EU".into()),
        labels: BTreeMap::new(),
        kind: JobKind::Query {
            sql: sql.into(),
            table_definitions: BTreeMap::new(),
            parameters: Vec::new(),
        },
    }
}

fn job_ref(job_id: &str) -> JobRef {
    JobRef {
        project: "p".into(),
        job_id: job_id.into(),
        location: None,
    }
}

/// A store with bucket `b`: `ds/t/a.csv` (2 rows), `ds/t/b.csv` (3 rows), `ds/t/_SUCCESS`.
fn setup() -> (Arc<MemoryStore>, MemoryWarehouse) {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket("b");
    store.put_str("b", "ds/t/a.csv", "1,x\n2,y\n");
    store.put_str("b", "ds/t/b.csv", "3,x\n4,y\n5,z\n");
    store.put_str("b", "ds/t/_SUCCESS", "");
    let warehouse = MemoryWarehouse::with_store(store.clone());
    (store, warehouse)
}

fn submit(warehouse: &MemoryWarehouse, request: &JobRequest) -> JobStatus {
    block_on(warehouse.submit(request)).expect("submit accepted")
}

fn error_of(status: &JobStatus) -> &JobError {
    status.error.as_ref().expect("the job failed")
}

#[test]
fn write_append_is_the_default_and_adds_rows() {
    let (_, warehouse) = setup();
    let t = table("t", None);
    let first = submit(
        &warehouse,
        &load("j1", t.clone(), &["gs://b/ds/t/a.csv"], Map::new()),
    );
    assert!(first.succeeded());
    assert_eq!(first.output_rows, Some(2));
    assert_eq!(first.input_bytes, Some(8));
    let cfg = config(&[("writeDisposition", json!("WRITE_APPEND"))]);
    let second = submit(
        &warehouse,
        &load("j2", t.clone(), &["gs://b/ds/t/b.csv"], cfg),
    );
    assert_eq!(second.output_rows, Some(3));
    assert_eq!(warehouse.table_rows(&t), 5);
}

#[test]
fn write_truncate_replaces_the_table_or_only_the_partition() {
    let (_, warehouse) = setup();
    let p1 = table("t", Some("$2020010101"));
    let p2 = table("t", Some("$2020010102"));
    let whole = table("t", None);
    submit(
        &warehouse,
        &load("j1", p1.clone(), &["gs://b/ds/t/a.csv"], Map::new()),
    );
    submit(
        &warehouse,
        &load("j2", p2.clone(), &["gs://b/ds/t/b.csv"], Map::new()),
    );
    assert_eq!(warehouse.table_rows(&whole), 5, "sum over partitions");
    assert_eq!(warehouse.table_rows(&p1), 2);

    let truncate = config(&[("writeDisposition", json!("WRITE_TRUNCATE"))]);
    let status = submit(
        &warehouse,
        &load("j3", p1.clone(), &["gs://b/ds/t/b.csv"], truncate.clone()),
    );
    assert!(status.succeeded());
    assert_eq!(warehouse.table_rows(&p1), 3, "partition replaced");
    assert_eq!(warehouse.table_rows(&p2), 3, "other partition untouched");
    assert_eq!(warehouse.table_rows(&whole), 6);

    submit(
        &warehouse,
        &load("j4", whole.clone(), &["gs://b/ds/t/a.csv"], truncate),
    );
    assert_eq!(warehouse.table_rows(&whole), 2, "whole table replaced");
    assert_eq!(warehouse.table_rows(&p1), 0);
    assert_eq!(warehouse.table_rows(&p2), 0);
}

#[test]
fn write_empty_fails_on_a_table_with_rows_and_changes_nothing() {
    let (_, warehouse) = setup();
    let t = table("t", None);
    let empty = config(&[("writeDisposition", json!("WRITE_EMPTY"))]);
    let first = submit(
        &warehouse,
        &load("j1", t.clone(), &["gs://b/ds/t/a.csv"], empty.clone()),
    );
    assert!(first.succeeded(), "{first:?}");
    let second = submit(
        &warehouse,
        &load("j2", t.clone(), &["gs://b/ds/t/b.csv"], empty.clone()),
    );
    assert_eq!(second.state, JobState::Done);
    let error = error_of(&second);
    assert_eq!(error.reason, "invalid");
    assert!(error.message.contains("p.ds.t"), "{}", error.message);
    assert_eq!(second.output_rows, None);
    assert_eq!(warehouse.table_rows(&t), 2);

    // An empty partition of a table with rows elsewhere is empty.
    let partition = table("t", Some("$2020010101"));
    let third = submit(
        &warehouse,
        &load("j3", partition.clone(), &["gs://b/ds/t/b.csv"], empty),
    );
    assert!(third.succeeded(), "{third:?}");
    assert_eq!(warehouse.table_rows(&partition), 3);
}

#[test]
fn create_never_needs_an_existing_table() {
    let (_, warehouse) = setup();
    let t = table("t", None);
    let never = config(&[("createDisposition", json!("CREATE_NEVER"))]);
    let missing = submit(
        &warehouse,
        &load("j1", t.clone(), &["gs://b/ds/t/a.csv"], never.clone()),
    );
    assert_eq!(error_of(&missing).reason, "notFound");
    assert!(!warehouse.table_exists(&t));

    warehouse.set_table_rows(&t, 0);
    assert!(warehouse.table_exists(&t));
    let status = submit(
        &warehouse,
        &load("j2", t.clone(), &["gs://b/ds/t/a.csv"], never),
    );
    assert!(status.succeeded(), "{status:?}");
    assert_eq!(warehouse.table_rows(&t), 2);
}

#[test]
fn invalid_dispositions_and_job_ids_are_rejected_without_creating_a_job() {
    let (_, warehouse) = setup();
    let counted = CountingWarehouse::new(warehouse.clone());
    let t = table("t", None);
    for (job_id, cfg) in [
        (
            "j1",
            config(&[("writeDisposition", json!("WRITE_SOMETIMES"))]),
        ),
        (
            "j2",
            config(&[("createDisposition", json!("CREATE_MAYBE"))]),
        ),
        ("j3", config(&[("writeDisposition", json!(3))])),
        ("bad id!", Map::new()),
        ("", Map::new()),
    ] {
        let result =
            block_on(counted.submit(&load(job_id, t.clone(), &["gs://b/ds/t/a.csv"], cfg)));
        assert!(
            matches!(result, Err(WarehouseError::Rejected { .. })),
            "{job_id}: {result:?}"
        );
        assert_eq!(block_on(warehouse.job_status(&job_ref(job_id))), Ok(None));
    }
    assert!(warehouse.submitted().is_empty());
    assert_eq!(warehouse.table_rows(&t), 0);
    assert_eq!(counted.calls().submit, 5);
}

#[test]
fn wildcards_expand_by_prefix_and_suffix() {
    let (store, warehouse) = setup();
    store.put_str("b", "ds/t/c.json", "{\"a\": 1}\n");
    let t = table("t", None);
    let all = submit(
        &warehouse,
        &load("j1", t.clone(), &["gs://b/ds/t/*"], Map::new()),
    );
    assert_eq!(
        all.output_rows,
        Some(6),
        "a.csv + b.csv + c.json, _SUCCESS is empty"
    );
    let csv = submit(
        &warehouse,
        &load("j2", t.clone(), &["gs://b/ds/*.csv"], Map::new()),
    );
    assert_eq!(csv.output_rows, Some(5));
    let none = submit(
        &warehouse,
        &load("j3", t.clone(), &["gs://b/other/*"], Map::new()),
    );
    let error = error_of(&none);
    assert_eq!(error.reason, "notFound");
    assert!(
        error.message.contains("gs://b/other/*"),
        "{}",
        error.message
    );
    assert_eq!(warehouse.table_rows(&t), 11);
}

#[test]
fn a_missing_uri_or_bucket_fails_the_job_naming_it() {
    let (_, warehouse) = setup();
    let t = table("t", None);
    for (job_id, uri) in [
        ("j1", "gs://b/ds/t/missing.csv"),
        ("j2", "gs://no-bucket/ds/t/a.csv"),
        ("j3", "gs://no-bucket/ds/*"),
    ] {
        let status = submit(
            &warehouse,
            &load(job_id, t.clone(), &["gs://b/ds/t/a.csv", uri], Map::new()),
        );
        assert_eq!(status.state, JobState::Done);
        let error = error_of(&status);
        assert_eq!(error.reason, "notFound");
        assert!(error.message.contains(uri), "{}", error.message);
    }
    let bad = submit(
        &warehouse,
        &load("j4", t.clone(), &["/tmp/a.csv"], Map::new()),
    );
    assert_eq!(error_of(&bad).reason, "invalid");
    assert_eq!(warehouse.table_rows(&t), 0, "failed loads write nothing");
}

#[test]
fn rows_count_non_blank_lines_minus_skipped_csv_headers() {
    let (store, warehouse) = setup();
    store.put_str("b", "h/1.csv", "id,name\r\n1,a\r\n\r\n2,b\r\n");
    store.put_str("b", "h/2.csv", "id,name\n3,c\n");
    store.put_str("b", "j/1.json", "{\"id\": 1}\n\n{\"id\": 2}\n");
    store.insert("b", "z/1.csv.gz", vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe]);
    let t = table("t", None);
    let skip = config(&[("skipLeadingRows", json!(1))]);
    let status = submit(&warehouse, &load("j1", t.clone(), &["gs://b/h/*"], skip));
    assert_eq!(status.output_rows, Some(3), "header skipped in each file");
    let skip_as_string = config(&[
        ("sourceFormat", json!("CSV")),
        ("skipLeadingRows", json!("1")),
    ]);
    let status = submit(
        &warehouse,
        &load("j2", t.clone(), &["gs://b/h/1.csv"], skip_as_string),
    );
    assert_eq!(status.output_rows, Some(2));
    let json_cfg = config(&[
        ("sourceFormat", json!("NEWLINE_DELIMITED_JSON")),
        ("skipLeadingRows", json!(1)),
    ]);
    let status = submit(
        &warehouse,
        &load("j3", t.clone(), &["gs://b/j/1.json"], json_cfg),
    );
    assert_eq!(
        status.output_rows,
        Some(2),
        "skipLeadingRows only applies to CSV"
    );
    let status = submit(
        &warehouse,
        &load("j4", t.clone(), &["gs://b/z/1.csv.gz"], Map::new()),
    );
    assert_eq!(
        status.output_rows,
        Some(1),
        "binary content is one row per object"
    );
    let parquet = config(&[("sourceFormat", json!("PARQUET"))]);
    let status = submit(
        &warehouse,
        &load(
            "j5",
            t,
            &["gs://b/ds/t/a.csv", "gs://b/ds/t/b.csv"],
            parquet,
        ),
    );
    assert_eq!(
        status.output_rows,
        Some(2),
        "columnar formats count one row per object"
    );
}

#[test]
fn without_a_store_loads_write_nothing() {
    let warehouse = MemoryWarehouse::new();
    let t = table("t", None);
    let status = submit(
        &warehouse,
        &load("j1", t.clone(), &["gs://b/anything"], Map::new()),
    );
    assert!(status.succeeded());
    assert_eq!(status.output_rows, Some(0));
    assert!(warehouse.table_exists(&t));
}

#[test]
fn duplicate_job_ids_are_refused_per_project_and_not_run_again() {
    let (_, warehouse) = setup();
    let t = table("t", None);
    let request = load("j1", t.clone(), &["gs://b/ds/t/a.csv"], Map::new());
    submit(&warehouse, &request);
    assert_eq!(
        block_on(warehouse.submit(&request)),
        Err(WarehouseError::AlreadyExists {
            job_id: "j1".into()
        })
    );
    assert_eq!(warehouse.table_rows(&t), 2);
    let other_project = JobRequest {
        project: "q".into(),
        ..request
    };
    assert!(block_on(warehouse.submit(&other_project)).is_ok());
    assert_eq!(warehouse.submitted().len(), 2);
}

#[test]
fn fail_job_ends_matching_jobs_with_the_error_and_no_effect() {
    let (_, warehouse) = setup();
    let t = table("t", None);
    let error = JobError {
        reason: "backendError".into(),
        message: "Backend error, try again".into(),
    };
    warehouse.fail_job("-part0-", error.clone());
    let failed = submit(
        &warehouse,
        &load(
            "batch-part0-a1",
            t.clone(),
            &["gs://b/ds/t/a.csv"],
            Map::new(),
        ),
    );
    assert_eq!(failed.state, JobState::Done);
    assert_eq!(failed.error, Some(error.clone()));
    assert_eq!(warehouse.table_rows(&t), 0);
    let again = submit(
        &warehouse,
        &load(
            "batch-part0-a2",
            t.clone(),
            &["gs://b/ds/t/a.csv"],
            Map::new(),
        ),
    );
    assert_eq!(again.error, Some(error), "the rule stays");
    let other = submit(
        &warehouse,
        &load(
            "batch-part1-a1",
            t.clone(),
            &["gs://b/ds/t/a.csv"],
            Map::new(),
        ),
    );
    assert!(other.succeeded());
    warehouse.clear_job_failures();
    let cleared = submit(
        &warehouse,
        &load(
            "batch-part0-a3",
            t.clone(),
            &["gs://b/ds/t/a.csv"],
            Map::new(),
        ),
    );
    assert!(cleared.succeeded());
    assert_eq!(warehouse.table_rows(&t), 4);
    assert_eq!(
        warehouse
            .job("batch-part0-a1")
            .and_then(|s| s.error)
            .map(|e| e.reason),
        Some("backendError".into())
    );
}

#[test]
fn job_duration_reports_running_for_that_many_polls() {
    let (_, warehouse) = setup();
    let counted = CountingWarehouse::new(warehouse.clone());
    warehouse.set_job_duration(2);
    let t = table("t", None);
    let submitted = submit(
        &warehouse,
        &load("slow", t.clone(), &["gs://b/ds/t/a.csv"], Map::new()),
    );
    assert_eq!(submitted.state, JobState::Running);
    assert_eq!(submitted.output_rows, None);
    assert_eq!(
        submitted.labels.get("component").map(String::as_str),
        Some("test")
    );
    let states: Vec<JobState> = (0..4)
        .map(|_| {
            block_on(counted.job_status(&job_ref("slow")))
                .expect("status")
                .expect("known job")
                .state
        })
        .collect();
    assert_eq!(
        states,
        [
            JobState::Running,
            JobState::Running,
            JobState::Done,
            JobState::Done
        ]
    );
    let done = block_on(counted.job_status(&job_ref("slow")))
        .expect("status")
        .expect("known job");
    assert_eq!(done.output_rows, Some(2));
    assert_eq!(counted.calls().job_status, 5);

    warehouse.set_job_duration(0);
    assert!(submit(
        &warehouse,
        &load("fast", t, &["gs://b/ds/t/a.csv"], Map::new())
    )
    .succeeded());
}

#[test]
fn query_jobs_default_to_one_inserted_row() {
    let warehouse = MemoryWarehouse::new();
    let status = submit(&warehouse, &query("q1", "INSERT INTO t SELECT 1"));
    assert!(status.succeeded());
    assert_eq!(status.statement_type.as_deref(), Some("INSERT"));
    assert_eq!(status.dml_affected_rows, Some(1));
    assert_eq!(status.output_rows, Some(1));
    assert_eq!(status.job.location.as_deref(), Some("EU"));
    assert_eq!(warehouse.submitted()[0].job_id, "q1");
}

#[test]
fn query_responder_decides_the_outcome() {
    let warehouse = MemoryWarehouse::new();
    warehouse.set_query_responder(|request| match &request.kind {
        JobKind::Query { sql, .. } if sql.contains("MERGE") => Ok(QueryOutcome {
            statement_type: Some("SCRIPT".into()),
            dml_affected_rows: Some(42),
            input_bytes: Some(1024),
        }),
        _ => Err(JobError {
            reason: "invalidQuery".into(),
            message: format!("bad query in {}", request.job_id),
        }),
    });
    let merged = submit(&warehouse, &query("q1", "MERGE t USING s ON TRUE"));
    assert_eq!(merged.statement_type.as_deref(), Some("SCRIPT"));
    assert_eq!(merged.dml_affected_rows, Some(42));
    assert_eq!(merged.input_bytes, Some(1024));
    let failed = submit(&warehouse, &query("q2", "SELEC 1"));
    assert_eq!(error_of(&failed).reason, "invalidQuery");
    assert_eq!(error_of(&failed).message, "bad query in q2");
}

#[test]
fn query_responder_may_use_the_warehouse() {
    let warehouse = MemoryWarehouse::new();
    let handle = warehouse.clone();
    warehouse.set_query_responder(move |_| {
        let target = table("t", None);
        let rows = handle.table_rows(&target) + 5;
        handle.set_table_rows(&target, rows);
        Ok(QueryOutcome::dml("INSERT", 5))
    });
    submit(
        &warehouse,
        &query("q1", "INSERT INTO t SELECT * FROM temp_ext"),
    );
    assert_eq!(warehouse.table_rows(&table("t", None)), 5);
}

#[test]
fn child_jobs_are_configurable_per_parent() {
    let warehouse = MemoryWarehouse::new();
    let child = JobStatus::new(job_ref("script_child_0"), JobState::Done);
    warehouse.set_child_jobs("script", vec![child.clone()]);
    block_on(async {
        assert_eq!(
            warehouse.child_jobs(&job_ref("script")).await,
            Ok(vec![child])
        );
        assert_eq!(warehouse.child_jobs(&job_ref("other")).await, Ok(vec![]));
    });
}

fn record() -> LoadRecord {
    LoadRecord {
        marker_uri: "gs://b/ds/t/_SUCCESS".into(),
        marker_generation: 1_600_000_000_000_002,
        destination: "p.ds.t".into(),
        batch_id: None,
        job_ids: vec!["j1".into()],
        mode: "load".into(),
        state: "done".into(),
        error: None,
        rows: Some(2),
        bytes: Some(8),
        submitted_at: None,
        started_at: None,
        ended_at: MemoryClock::new().now(),
    }
}

#[test]
fn record_outcome_keeps_records_and_creates_the_state_table() {
    let warehouse = MemoryWarehouse::new();
    let state = table("load_state", None);
    assert!(!warehouse.table_exists(&state));
    block_on(async {
        warehouse
            .record_outcome(&state, &record())
            .await
            .expect("record");
        warehouse
            .record_outcome(&state, &record())
            .await
            .expect("record");
    });
    assert!(warehouse.table_exists(&state));
    assert_eq!(warehouse.table_rows(&state), 2);
    assert_eq!(
        warehouse.records(),
        vec![(state.clone(), record()), (state, record())]
    );
}

#[test]
fn job_times_come_from_the_clock() {
    let clock = MemoryClock::new();
    let warehouse = MemoryWarehouse::new().with_clock(clock.clone());
    clock.advance(Duration::from_secs(30));
    let status = submit(&warehouse, &query("q1", "SELECT 1"));
    assert_eq!(status.created, Some(clock.now()));
    assert_eq!(status.started, Some(clock.now()));
    assert_eq!(status.ended, Some(clock.now()));
}

#[test]
fn debug_output_summarises_the_warehouse() {
    let (_, warehouse) = setup();
    let debug = format!("{warehouse:?}");
    assert!(debug.contains("MemoryWarehouse"), "{debug}");
    assert!(debug.contains("store: true"), "{debug}");
}
