//! The decorators over the memory doubles: counting every call (failed ones included), faults
//! queued per method, faults decided by a rule before each call, lost answers and hangs. These
//! checks were the memory doubles' own until counting and fault injection moved into
//! `ingest_core::decorators`, where they wrap any port.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use futures::FutureExt;
use ingest_core::decorators::{
    CallResult, CountingStore, CountingWarehouse, Fault, FaultyStore, FaultyWarehouse, StoreCalls,
    StoreMethod, WarehouseCalls, WarehouseMethod,
};
use ingest_core::ports::{
    JobKind, JobRef, JobRequest, LoadRecord, ObjectStore, PutMode, StoreError, TableRef, Warehouse,
    WarehouseError,
};
use ingest_memory::{MemoryStore, MemoryWarehouse};

fn transient(name: &str) -> StoreError {
    StoreError::Transient {
        bucket: "b".into(),
        name: name.into(),
        message: "503 backendError".into(),
    }
}

fn memory() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket("b");
    store
}

#[test]
fn counting_counts_every_call_including_failed_ones() {
    let store = CountingStore::new(memory());
    block_on(async {
        let _ = store.list("b", "", None, None).await;
        let _ = store.list("b", "", None, None).await;
        let _ = store.read("b", "missing").await;
        let _ = store.stat("b", "missing").await;
        let _ = store.put("b", "x", vec![], PutMode::Create).await;
        let _ = store.put("b", "x", vec![], PutMode::Create).await;
        let _ = store.put("b", "x", vec![], PutMode::Create).await;
        let _ = store.delete("b", "x", None).await;
        let _ = store.copy("b", "missing", 1, "b", "y").await;
    });
    assert_eq!(
        store.calls(),
        StoreCalls {
            list: 2,
            read: 1,
            stat: 1,
            put: 3,
            delete: 1,
            copy: 1,
        }
    );
    assert_eq!(store.calls().total(), 9);
    let results = store.by_result();
    assert_eq!(results[&(StoreMethod::Put, CallResult::Ok)], 1);
    assert_eq!(results[&(StoreMethod::Put, CallResult::Conflict)], 2);
    assert_eq!(results[&(StoreMethod::Read, CallResult::Conflict)], 1);
    store.reset();
    assert_eq!(store.calls().total(), 0);
    assert!(store.by_result().is_empty());
}

#[test]
fn queued_faults_fail_only_the_named_method_in_queue_order() {
    let memory = memory();
    memory.put_str("b", "x", "content");
    let store = CountingStore::new(FaultyStore::new(memory.clone()));
    store
        .inner()
        .inject(StoreMethod::Put, Fault::Fail(transient("first")));
    store.inner().inject(
        StoreMethod::Put,
        Fault::Fail(StoreError::Other {
            bucket: "b".into(),
            name: "second".into(),
            message: "403 forbidden".into(),
        }),
    );
    block_on(async {
        // Other operations are not affected.
        assert!(store.read("b", "x").await.is_ok());
        let first = store
            .put("b", "x", b"new".to_vec(), PutMode::Overwrite)
            .await;
        assert_eq!(first, Err(transient("first")));
        let second = store
            .put("b", "x", b"new".to_vec(), PutMode::Overwrite)
            .await;
        assert!(matches!(second, Err(StoreError::Other { ref name, .. }) if name == "second"));
        // The failed puts did not write.
        assert_eq!(memory.content("b", "x"), Some(b"content".to_vec()));
        assert!(store
            .put("b", "x", b"new".to_vec(), PutMode::Overwrite)
            .await
            .is_ok());
    });
    assert_eq!(memory.content("b", "x"), Some(b"new".to_vec()));
    assert_eq!(store.calls().put, 3);
    assert_eq!(
        store.by_result()[&(StoreMethod::Put, CallResult::Transient)],
        1
    );
}

#[test]
fn clear_drops_queued_faults() {
    let memory = memory();
    memory.put_str("b", "x", "content");
    let store = FaultyStore::new(memory);
    store.inject(StoreMethod::Stat, Fault::Fail(transient("x")));
    store.clear();
    assert!(block_on(store.stat("b", "x")).is_ok());
}

#[test]
fn a_failed_delete_leaves_the_object() {
    let memory = memory();
    let meta = memory.put_str("b", "lock", "owner");
    let store = FaultyStore::new(memory.clone());
    store.inject(StoreMethod::Delete, Fault::Fail(transient("lock")));
    block_on(async {
        assert!(store
            .delete("b", "lock", Some(meta.generation))
            .await
            .is_err());
        assert_eq!(
            store.delete("b", "lock", Some(meta.generation + 1)).await,
            Err(StoreError::PreconditionFailed {
                bucket: "b".into(),
                name: "lock".into()
            })
        );
        assert!(memory.meta("b", "lock").is_some());
        assert_eq!(
            store.delete("b", "lock", Some(meta.generation)).await,
            Ok(())
        );
    });
    assert!(memory.names("b").is_empty());
}

#[test]
fn a_rule_sees_every_call_and_can_fail_it() {
    let memory = memory();
    let store = FaultyStore::new(memory.clone());
    let seen: Arc<Mutex<Vec<(StoreMethod, String)>>> = Arc::default();
    let log = seen.clone();
    store.set_rule(Box::new(move |method, name| {
        log.lock().expect("log").push((method, name.to_string()));
        (method == StoreMethod::Delete).then(|| {
            Fault::Fail(StoreError::Other {
                bucket: "b".into(),
                name: name.into(),
                message: "crash".into(),
            })
        })
    }));
    block_on(async {
        store
            .put("b", "t/x", b"1".to_vec(), PutMode::Create)
            .await
            .expect("put");
        let _ = store.list("b", "t/", None, None).await;
        let _ = store.read("b", "t/x").await;
        let _ = store.stat("b", "t/x").await;
        let deleted = store.delete("b", "t/x", None).await;
        assert!(
            matches!(deleted, Err(StoreError::Other { ref message, .. }) if message == "crash")
        );
    });
    assert_eq!(
        memory.names("b"),
        vec!["t/x".to_string()],
        "the delete did nothing"
    );
    assert_eq!(
        *seen.lock().expect("log"),
        vec![
            (StoreMethod::Put, "t/x".to_string()),
            (StoreMethod::List, "t/".to_string()),
            (StoreMethod::Read, "t/x".to_string()),
            (StoreMethod::Stat, "t/x".to_string()),
            (StoreMethod::Delete, "t/x".to_string()),
        ]
    );
    store.clear();
    assert_eq!(block_on(store.delete("b", "t/x", None)), Ok(()));
    assert_eq!(seen.lock().expect("log").len(), 5);
}

#[test]
fn a_rule_may_use_the_store_to_simulate_a_concurrent_writer() {
    let memory = memory();
    let store = FaultyStore::new(memory.clone());
    let writer = memory.clone();
    store.set_rule(Box::new(move |method, name| {
        if method == StoreMethod::Put && name == "t/_lock" {
            writer.put_str("b", "t/_lock", "someone else");
        }
        None
    }));
    let result = block_on(store.put("b", "t/_lock", b"me".to_vec(), PutMode::Create));
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(
        memory.content("b", "t/_lock"),
        Some(b"someone else".to_vec())
    );
}

#[test]
fn a_lost_answer_takes_effect_and_a_hang_never_answers() {
    let memory = memory();
    let store = FaultyStore::new(memory.clone());
    store.inject(StoreMethod::Put, Fault::LoseAnswer(transient("x")));
    assert_eq!(
        block_on(store.put("b", "x", b"1".to_vec(), PutMode::Create)),
        Err(transient("x"))
    );
    assert_eq!(
        memory.content("b", "x"),
        Some(b"1".to_vec()),
        "it was written"
    );
    store.inject(StoreMethod::Stat, Fault::Hang);
    assert!(store.stat("b", "x").now_or_never().is_none());
    assert!(block_on(store.stat("b", "x")).is_ok(), "one call only");
}

fn store_with_batch() -> Arc<MemoryStore> {
    let store = memory();
    store.put_str("b", "ds/t/a.csv", "1,x\n2,y\n");
    store
}

fn load(job_id: &str) -> JobRequest {
    JobRequest {
        project: "p".into(),
        job_id: job_id.into(),
        location: None,
        labels: BTreeMap::new(),
        kind: JobKind::Load {
            destination: table("t"),
            source_uris: vec!["gs://b/ds/t/a.csv".into()],
            config: Default::default(),
        },
    }
}

fn table(name: &str) -> TableRef {
    TableRef {
        project: "p".into(),
        dataset: "ds".into(),
        table: name.into(),
        partition: None,
    }
}

fn job_ref(job_id: &str) -> JobRef {
    JobRef {
        project: "p".into(),
        job_id: job_id.into(),
        location: None,
    }
}

fn record() -> LoadRecord {
    LoadRecord {
        marker_uri: "gs://b/ds/t/_SUCCESS".into(),
        marker_generation: 1,
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
        ended_at: chrono::DateTime::UNIX_EPOCH,
    }
}

#[test]
fn injected_submit_failures_create_no_job() {
    let memory = Arc::new(MemoryWarehouse::with_store(store_with_batch()));
    let warehouse = CountingWarehouse::new(FaultyWarehouse::new(memory.clone()));
    let throttled = WarehouseError::Transient {
        what: "job j1".into(),
        message: "429 rateLimitExceeded".into(),
    };
    let faults = warehouse.inner();
    faults.inject(WarehouseMethod::Submit, Fault::Fail(throttled.clone()));
    assert_eq!(
        block_on(warehouse.submit(&load("j1"))),
        Err(throttled.clone())
    );
    assert_eq!(block_on(warehouse.job_status(&job_ref("j1"))), Ok(None));
    assert!(block_on(warehouse.submit(&load("j1"))).unwrap().succeeded());

    for _ in 0..2 {
        faults.inject(WarehouseMethod::Submit, Fault::Fail(throttled.clone()));
    }
    assert_eq!(
        block_on(warehouse.submit(&load("j2"))),
        Err(throttled.clone())
    );
    assert_eq!(block_on(warehouse.submit(&load("j2"))), Err(throttled));
    assert!(block_on(warehouse.submit(&load("j2"))).unwrap().succeeded());
    assert_eq!(warehouse.calls().submit, 5);
    assert_eq!(memory.submitted().len(), 2);
    assert_eq!(memory.table_rows(&table("t")), 4);

    for _ in 0..3 {
        faults.inject(
            WarehouseMethod::Submit,
            Fault::Fail(WarehouseError::Rejected {
                what: "x".into(),
                message: "403".into(),
            }),
        );
    }
    faults.clear();
    assert!(block_on(warehouse.submit(&load("j3"))).unwrap().succeeded());
}

#[test]
fn queued_faults_apply_to_the_other_warehouse_methods() {
    let memory = Arc::new(MemoryWarehouse::new());
    let warehouse = CountingWarehouse::new(FaultyWarehouse::new(memory.clone()));
    let error = WarehouseError::Transient {
        what: "x".into(),
        message: "503".into(),
    };
    for method in [
        WarehouseMethod::JobStatus,
        WarehouseMethod::ChildJobs,
        WarehouseMethod::RecordOutcome,
        WarehouseMethod::TimePartitioning,
        WarehouseMethod::CreateTable,
    ] {
        warehouse.inner().inject(method, Fault::Fail(error.clone()));
    }
    let record = record();
    block_on(async {
        assert_eq!(
            warehouse.job_status(&job_ref("j")).await,
            Err(error.clone())
        );
        assert_eq!(warehouse.job_status(&job_ref("j")).await, Ok(None));
        assert_eq!(
            warehouse.child_jobs(&job_ref("j")).await,
            Err(error.clone())
        );
        assert_eq!(warehouse.child_jobs(&job_ref("j")).await, Ok(vec![]));
        let state = table("load_state");
        assert_eq!(
            warehouse.record_outcome(&state, &record).await,
            Err(error.clone())
        );
        assert_eq!(warehouse.record_outcome(&state, &record).await, Ok(()));
        assert_eq!(
            warehouse.time_partitioning(&state).await,
            Err(error.clone())
        );
        assert_eq!(warehouse.time_partitioning(&state).await, Ok(None));
        let template = serde_json::Map::new();
        let fresh = table("fresh");
        assert_eq!(warehouse.create_table(&fresh, &template).await, Err(error));
        assert_eq!(warehouse.create_table(&fresh, &template).await, Ok(true));
    });
    assert_eq!(memory.records().len(), 1);
    assert_eq!(
        warehouse.calls(),
        WarehouseCalls {
            submit: 0,
            job_status: 2,
            child_jobs: 2,
            record_outcome: 2,
            recorded_outcomes: 0,
            time_partitioning: 2,
            create_table: 2,
            table_schema: 0,
        }
    );
    warehouse.reset();
    assert_eq!(warehouse.calls().total(), 0);
}

#[test]
fn a_warehouse_rule_is_asked_with_the_job_id() {
    let memory = Arc::new(MemoryWarehouse::with_store(store_with_batch()));
    let warehouse = FaultyWarehouse::new(memory.clone());
    warehouse.set_rule(Box::new(|method, about| {
        (method == WarehouseMethod::Submit && about.ends_with("-r1")).then(|| {
            Fault::LoseAnswer(WarehouseError::Transient {
                what: about.to_string(),
                message: "timeout".into(),
            })
        })
    }));
    assert!(block_on(warehouse.submit(&load("j"))).is_ok());
    assert!(block_on(warehouse.submit(&load("j-r1"))).is_err());
    assert_eq!(memory.submitted().len(), 2, "the lost answer's job exists");
}
