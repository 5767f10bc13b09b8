//! A state row for every loaded batch, also when the delivery that loaded it died before the
//! row (issue 13): the redelivery writes it. Crashes are simulated with the fault-injecting
//! decorators over the memory doubles: a call that never answers (the process is killed while
//! it waits: its future is dropped), and answers that are lost after the call took effect.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::executor::block_on;
use futures::FutureExt;
use ingest_core::decorators::{Fault, FaultyWarehouse, WarehouseMethod};
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ports::WarehouseError;
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};

const B: &str = "bucket";

struct Env {
    store: Arc<MemoryStore>,
    memory: Arc<MemoryWarehouse>,
    warehouse: Arc<FaultyWarehouse<Arc<MemoryWarehouse>>>,
    ingestor: Ingestor,
}

fn env() -> Env {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(B);
    let memory = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
    let warehouse = Arc::new(FaultyWarehouse::new(memory.clone()));
    let settings = Settings {
        bq_project: Some("my-project".into()),
        load_state_table: Some("ops.load_state".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store.clone(), warehouse.clone(), Arc::new(clock));
    Env {
        store,
        memory,
        warehouse,
        ingestor,
    }
}

impl Env {
    fn batch(&self) -> ObjectEvent {
        self.store.put_str(B, "ds/t/a.csv", "1,x\n2,y\n");
        let marker = self.store.insert(B, "ds/t/_SUCCESS", Vec::new());
        ObjectEvent::finalized(B, &marker.name, marker.generation)
    }

    /// The `done` rows, deduplicated on their identity.
    fn done_rows(&self) -> BTreeSet<String> {
        self.memory
            .records()
            .iter()
            .filter(|(_, r)| r.state == "done")
            .map(|(_, r)| r.identity())
            .collect()
    }
}

fn transient() -> WarehouseError {
    WarehouseError::Transient {
        what: "request".into(),
        message: "connection reset".into(),
    }
}

#[test]
fn a_delivery_killed_between_the_jobs_end_and_the_row_leaves_the_row_to_the_redelivery() {
    let e = env();
    let event = e.batch();
    // The row write never answers: the process is killed while it waits.
    e.warehouse
        .inject(WarehouseMethod::RecordOutcome, Fault::Hang);
    let first = e.ingestor.handle(&event).now_or_never();
    assert!(first.is_none(), "the first delivery was cut off: {first:?}");
    assert_eq!(e.memory.submitted().len(), 1, "its job ran");
    assert!(e.done_rows().is_empty(), "and it wrote no row");

    let again = block_on(e.ingestor.handle(&event)).unwrap();
    assert!(matches!(again, Outcome::Done { rows: 2, .. }), "{again:?}");
    assert_eq!(e.memory.submitted().len(), 1, "nothing loaded twice");
    assert_eq!(e.done_rows().len(), 1, "the redelivery wrote the row");
}

#[test]
fn a_lost_answer_to_jobs_insert_still_ends_in_one_row() {
    let e = env();
    let event = e.batch();
    // The job is created, its answer lost: the delivery fails transiently.
    e.warehouse
        .inject(WarehouseMethod::Submit, Fault::LoseAnswer(transient()));
    assert!(block_on(e.ingestor.handle(&event)).is_err());
    assert_eq!(e.memory.submitted().len(), 1);

    let again = block_on(e.ingestor.handle(&event)).unwrap();
    assert!(matches!(again, Outcome::Done { rows: 2, .. }), "{again:?}");
    assert_eq!(e.memory.submitted().len(), 1);
    assert_eq!(e.done_rows().len(), 1);
}

#[test]
fn failing_job_lookups_after_the_job_ended_still_end_in_one_row() {
    let e = env();
    let event = e.batch();
    e.memory.set_job_duration(1); // the first poll still says running
    e.warehouse
        .inject(WarehouseMethod::JobStatus, Fault::Fail(transient()));
    assert!(block_on(e.ingestor.handle(&event)).is_err());

    let again = block_on(e.ingestor.handle(&event)).unwrap();
    assert!(matches!(again, Outcome::Done { .. }), "{again:?}");
    assert_eq!(e.done_rows().len(), 1);
}

#[test]
fn a_row_write_that_fails_transiently_hands_the_notification_back() {
    let e = env();
    let event = e.batch();
    e.warehouse
        .inject(WarehouseMethod::RecordOutcome, Fault::Fail(transient()));
    let first = block_on(e.ingestor.handle(&event));
    assert!(
        first.is_err(),
        "redeliver, so that the row gets written: {first:?}"
    );
    assert!(block_on(e.ingestor.handle(&event)).is_ok());
    assert_eq!(e.done_rows().len(), 1);
    assert_eq!(e.memory.submitted().len(), 1);
}

#[test]
fn a_row_write_the_warehouse_rejects_is_logged_and_the_outcome_stands() {
    let e = env();
    let event = e.batch();
    e.warehouse.inject(
        WarehouseMethod::RecordOutcome,
        Fault::Fail(WarehouseError::Rejected {
            what: "table ops.load_state".into(),
            message: "403 permission denied".into(),
        }),
    );
    let first = block_on(e.ingestor.handle(&event)).unwrap();
    assert!(matches!(first, Outcome::Done { .. }), "{first:?}");
}

#[test]
fn concurrent_and_repeated_duplicates_make_one_logical_row() {
    let e = env();
    let event = e.batch();
    let outcomes = block_on(futures::future::join_all(
        (0..5).map(|_| e.ingestor.handle(&event)),
    ));
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Ok(Outcome::Done { .. }))));
    for _ in 0..3 {
        block_on(e.ingestor.handle(&event)).unwrap();
    }
    assert_eq!(e.memory.submitted().len(), 1);
    assert!(
        e.memory.records().len() >= 2,
        "duplicates write the row again"
    );
    assert_eq!(e.done_rows().len(), 1, "one logical row");
}
