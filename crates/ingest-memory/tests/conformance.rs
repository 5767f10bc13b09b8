//! The conformance suites of `ingest_core::testing` against the in-memory doubles, and against
//! deliberately broken wrappers to show that the suites catch what they claim to.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use async_trait::async_trait;
use futures::executor::block_on;
use ingest_core::decorators::{CountingStore, CountingWarehouse};
use ingest_core::ports::{
    JobKind, JobRef, JobRequest, JobStatus, ListPage, LoadRecord, ObjectMeta, ObjectStore, PutMode,
    StoreError, TableRef, Warehouse, WarehouseError,
};
use ingest_core::testing::object_store::{self, StoreCapabilities};
use ingest_core::testing::warehouse::{self, WarehouseFixture};
use ingest_memory::{MemoryStore, MemoryWarehouse};

fn table(project: &str, dataset: &str, table: &str) -> TableRef {
    TableRef {
        project: project.into(),
        dataset: dataset.into(),
        table: table.into(),
        partition: None,
    }
}

fn load_request(job_id: &str, uri: &str) -> JobRequest {
    let mut labels = BTreeMap::new();
    labels.insert("component".to_string(), "bq-ingest".to_string());
    labels.insert("bq-ingest-parts".to_string(), "1".to_string());
    let mut config = serde_json::Map::new();
    config.insert("sourceFormat".into(), "CSV".into());
    JobRequest {
        project: "p".into(),
        job_id: job_id.into(),
        location: Some("US".into()),
        labels,
        kind: JobKind::Load {
            destination: table("p", "ds", "t"),
            source_uris: vec![uri.into()],
            config,
        },
    }
}

/// A store with bucket `b` holding a 3-line CSV, and the fixture that loads it into `p.ds.t`.
fn warehouse_fixture(run_id: &str) -> (Arc<MemoryStore>, WarehouseFixture) {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket("b");
    store.put_str("b", "ds/t/data.csv", "1,a\n2,b\n3,c\n");
    let fixture = WarehouseFixture {
        load_ok: load_request("conformance-load", "gs://b/ds/t/data.csv"),
        load_ok_rows: 3,
        load_failing: load_request("conformance-load", "gs://b/ds/t/missing.csv"),
        state_table: table("p", "bq_ingest", "load_state"),
        run_id: run_id.into(),
    };
    (store, fixture)
}

/// Runs `f` and returns its panic message, or `None` when it did not panic.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let result = catch_unwind(AssertUnwindSafe(f));
    result.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn memory_store_passes_the_object_store_suite() {
    let memory = MemoryStore::new();
    memory.create_bucket("conformance");
    memory.put_str("conformance", "other/object", "not ours");
    let store = CountingStore::new(memory.clone());
    block_on(object_store::run(
        &store,
        "conformance",
        "scratch/run-1/",
        StoreCapabilities::default(),
    ));
    // The suite cleans up after itself and never touches objects outside its scratch prefix.
    assert_eq!(
        memory.names("conformance"),
        vec!["other/object".to_string()]
    );
    assert!(store.calls().put >= 15, "calls: {:?}", store.calls());
}

#[test]
fn memory_store_passes_the_object_store_suite_twice_without_trailing_slash() {
    let store = MemoryStore::new();
    store.create_bucket("conformance");
    for _ in 0..2 {
        block_on(object_store::run(
            &store,
            "conformance",
            "scratch/run-2",
            StoreCapabilities::default(),
        ));
    }
    assert!(store.names("conformance").is_empty());
}

#[test]
fn memory_warehouse_passes_the_warehouse_suite() {
    let (store, fixture) = warehouse_fixture("run-1");
    let memory = MemoryWarehouse::with_store(store);
    block_on(warehouse::run(&memory, &fixture));

    // The duplicate submission did not load the file twice.
    assert_eq!(memory.table_rows(&table("p", "ds", "t")), 3);
    let submitted: Vec<String> = memory.submitted().into_iter().map(|r| r.job_id).collect();
    assert_eq!(
        submitted,
        vec![
            "conformance-load-run-1-ok".to_string(),
            "conformance-load-run-1-fail".to_string()
        ]
    );
    // record_outcome's two writes of one outcome (the memory warehouse keeps both), then
    // recorded_outcomes' read-back row.
    let records = memory.records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].0, fixture.state_table);
    assert_eq!(records[0].1.rows, Some(3));
    assert_eq!(records[2].1.state, "failed");
    assert_eq!(memory.table_rows(&fixture.state_table), 3);
}

#[test]
fn memory_warehouse_passes_the_warehouse_suite_with_slow_jobs() {
    let (store, fixture) = warehouse_fixture("run-slow");
    let memory = MemoryWarehouse::with_store(store);
    memory.set_job_duration(5);
    let counted = CountingWarehouse::new(memory);
    block_on(warehouse::run(&counted, &fixture));
    assert!(counted.calls().job_status >= 10, "{:?}", counted.calls());
}

/// A store that forgets the delete precondition, like fake-gcs-server.
#[derive(Debug)]
struct IgnoresDeletePrecondition(MemoryStore);

#[async_trait]
impl ObjectStore for IgnoresDeletePrecondition {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        self.0.list(bucket, prefix, page_token, max_results).await
    }
    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        self.0.read(bucket, name).await
    }
    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        self.0.stat(bucket, name).await
    }
    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.0.put(bucket, name, content, mode).await
    }
    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        _if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        self.0.delete(bucket, name, None).await
    }
}

#[test]
fn object_store_suite_catches_an_ignored_delete_precondition() {
    let store = IgnoresDeletePrecondition(MemoryStore::new());
    store.0.create_bucket("b");
    let message = panic_message(|| {
        block_on(object_store::run(
            &store,
            "b",
            "scratch/",
            StoreCapabilities::default(),
        ))
    })
    .expect("the suite must fail");
    assert!(message.contains("`delete_wrong_generation`"), "{message}");

    // Declared as a capability the store lacks, the rest of the suite passes.
    block_on(object_store::run(
        &store,
        "b",
        "scratch/",
        StoreCapabilities {
            delete_precondition: false,
            ..StoreCapabilities::default()
        },
    ));
}

/// A store whose listings ignore paging: every page holds everything.
#[derive(Debug)]
struct IgnoresMaxResults(MemoryStore);

#[async_trait]
impl ObjectStore for IgnoresMaxResults {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        _max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        self.0.list(bucket, prefix, page_token, None).await
    }
    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        self.0.read(bucket, name).await
    }
    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        self.0.stat(bucket, name).await
    }
    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.0.put(bucket, name, content, mode).await
    }
    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        self.0.delete(bucket, name, if_generation).await
    }
}

#[test]
fn object_store_suite_catches_ignored_paging() {
    let store = IgnoresMaxResults(MemoryStore::new());
    store.0.create_bucket("b");
    let message = panic_message(|| {
        block_on(object_store::run(
            &store,
            "b",
            "scratch/",
            StoreCapabilities::default(),
        ))
    })
    .expect("the suite must fail");
    assert!(message.contains("`list_paging`"), "{message}");
}

#[test]
fn object_store_suite_names_a_missing_bucket() {
    let store = MemoryStore::new();
    let message = panic_message(|| {
        block_on(object_store::run(
            &store,
            "no-such-bucket",
            "scratch/",
            StoreCapabilities::default(),
        ))
    })
    .expect("the suite must fail");
    assert!(message.contains("`clean_scratch_before`"), "{message}");
    assert!(message.contains("NotFound"), "{message}");
}

/// A warehouse that runs a duplicate job id again instead of refusing it (like bqemulator).
#[derive(Debug)]
struct AcceptsDuplicates(MemoryWarehouse);

#[async_trait]
impl Warehouse for AcceptsDuplicates {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        match self.0.submit(request).await {
            Err(WarehouseError::AlreadyExists { .. }) => {
                let job = JobRef {
                    project: request.project.clone(),
                    job_id: request.job_id.clone(),
                    location: request.location.clone(),
                };
                Ok(self
                    .0
                    .job_status(&job)
                    .await?
                    .unwrap_or_else(|| JobStatus::new(job, ingest_core::ports::JobState::Done)))
            }
            other => other,
        }
    }
    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        self.0.job_status(job).await
    }
    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        self.0.child_jobs(parent).await
    }
    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        self.0.record_outcome(table, record).await
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        self.0.recorded_outcomes(table, since).await
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<ingest_core::ports::TimePartitioning>, WarehouseError> {
        self.0.time_partitioning(table).await
    }
    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        self.0.create_table(table, resource).await
    }
    async fn table_schema(
        &self,
        table: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        self.0.table_schema(table).await
    }
}

#[test]
fn warehouse_suite_catches_accepted_duplicate_job_ids() {
    let (store, fixture) = warehouse_fixture("run-dup");
    let broken = AcceptsDuplicates(MemoryWarehouse::with_store(store));
    let message =
        panic_message(|| block_on(warehouse::run(&broken, &fixture))).expect("the suite must fail");
    assert!(message.contains("`duplicate_submit`"), "{message}");
}

#[test]
fn warehouse_suite_catches_a_wrong_row_count() {
    let (store, mut fixture) = warehouse_fixture("run-rows");
    fixture.load_ok_rows = 4;
    let memory = MemoryWarehouse::with_store(store);
    let message =
        panic_message(|| block_on(warehouse::run(&memory, &fixture))).expect("the suite must fail");
    assert!(message.contains("`load_ok_done`"), "{message}");
    assert!(message.contains("Some(4)"), "{message}");
}

#[test]
fn warehouse_suite_catches_a_job_that_never_finishes() {
    let (store, fixture) = warehouse_fixture("run-stuck");
    let memory = MemoryWarehouse::with_store(store);
    memory.set_job_duration(1_000);
    let message =
        panic_message(|| block_on(warehouse::run(&memory, &fixture))).expect("the suite must fail");
    assert!(message.contains("`load_ok_done`"), "{message}");
    assert!(message.contains("not done"), "{message}");
}

#[test]
fn warehouse_suite_catches_a_failing_load_that_succeeds() {
    let (store, mut fixture) = warehouse_fixture("run-nofail");
    fixture.load_failing = load_request("conformance-load", "gs://b/ds/t/data.csv");
    let memory = MemoryWarehouse::with_store(store);
    let message =
        panic_message(|| block_on(warehouse::run(&memory, &fixture))).expect("the suite must fail");
    assert!(message.contains("`load_failing`"), "{message}");
}

#[test]
fn a_single_check_runs_alone_and_again() {
    let store = MemoryStore::new();
    store.create_bucket("b");
    let scratch =
        object_store::Scratch::new(&store, "b", "scratch/alone", StoreCapabilities::default());
    // A create-only check twice in a row: each run empties its own area first.
    block_on(object_store::create_only(&scratch));
    block_on(object_store::create_only(&scratch));
    block_on(object_store::zero_byte_object(&scratch));
    assert_eq!(
        store.names("b"),
        vec![
            "scratch/alone/create/lock".to_string(),
            "scratch/alone/zero/_SUCCESS".to_string()
        ]
    );

    // A warehouse check that needs a finished load submits it itself.
    let (store, fixture) = warehouse_fixture("run-alone");
    let memory = MemoryWarehouse::with_store(store);
    block_on(warehouse::duplicate_submit(&memory, &fixture));
    block_on(warehouse::record_outcome(&memory, &fixture));
    let submitted: Vec<String> = memory.submitted().into_iter().map(|r| r.job_id).collect();
    assert_eq!(submitted, vec!["conformance-load-run-alone-ok".to_string()]);
    assert_eq!(memory.table_rows(&table("p", "ds", "t")), 3, "loaded once");
}
