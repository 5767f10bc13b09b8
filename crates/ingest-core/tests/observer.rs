//! What the core reports to its [`Observer`] (the service's metrics), over the memory doubles.

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use ingest_core::decorators::{Fault, FaultyWarehouse, WarehouseMethod};
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ports::{JobError, WarehouseError};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryObserver, MemoryStore, MemoryWarehouse, Observed};

const B: &str = "bucket";
const TABLE: &str = "my-project.ds.t";

struct Env {
    store: Arc<MemoryStore>,
    warehouse: Arc<MemoryWarehouse>,
    faults: Arc<FaultyWarehouse<Arc<MemoryWarehouse>>>,
    clock: MemoryClock,
    observer: Arc<MemoryObserver>,
    ingestor: Ingestor,
}

fn env_with(settings: impl FnOnce(&mut Settings)) -> Env {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(B);
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
    let faults = Arc::new(FaultyWarehouse::new(warehouse.clone()));
    let mut s = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    settings(&mut s);
    let observer = Arc::new(MemoryObserver::new());
    let ingestor = Ingestor::new(s, store.clone(), faults.clone(), Arc::new(clock.clone()))
        .with_observer(observer.clone());
    Env {
        store,
        warehouse,
        faults,
        clock,
        observer,
        ingestor,
    }
}

impl Env {
    fn batch(&self, dir: &str) -> ObjectEvent {
        self.store.put_str(B, &format!("{dir}/a.csv"), "1\n");
        let marker = self.store.insert(B, &format!("{dir}/_SUCCESS"), Vec::new());
        let mut event = ObjectEvent::finalized(B, &marker.name, marker.generation);
        event.event_time = Some(ingest_core::ports::Clock::now(&self.clock));
        event
    }

    fn handle(&self, event: &ObjectEvent) -> Outcome {
        block_on(self.ingestor.handle(event)).unwrap()
    }
}

fn batch(state: &str) -> Observed {
    Observed::Batch {
        table: TABLE.into(),
        state: state.into(),
    }
}

const LOAD: Observed = Observed::Job {
    kind: "load",
    retry: false,
};

#[test]
fn a_loaded_batch_reports_its_job_its_row_and_its_latency() {
    let e = env_with(|_| {});
    let event = e.batch("ds/t");
    e.clock.advance(Duration::from_secs(3));
    assert!(matches!(e.handle(&event), Outcome::Done { .. }));
    assert_eq!(
        e.observer.reports()[..2],
        [LOAD, batch("done")],
        "{:?}",
        e.observer.reports()
    );
    let latencies: Vec<Duration> = e
        .observer
        .reports()
        .into_iter()
        .filter_map(|r| match r {
            Observed::MarkerDone(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(latencies.len(), 1);
    assert!(latencies[0] >= Duration::from_secs(3), "{latencies:?}");
}

#[test]
fn retries_are_jobs_with_retry_and_rows_retried() {
    let e = env_with(|s| s.max_retries_on_bigquery_error = 1);
    e.warehouse.fail_job(
        "gcf-ingest-ds_t_",
        JobError {
            reason: "backendError".into(),
            message: "Backend error. Please try again.".into(),
        },
    );
    assert!(matches!(e.handle(&e.batch("ds/t")), Outcome::Failed { .. }));
    let retry = Observed::Job {
        kind: "load",
        retry: true,
    };
    assert_eq!(
        e.observer.reports(),
        [LOAD, batch("retried"), retry, batch("failed")]
    );
}

#[test]
fn state_row_failures_say_whether_the_notification_was_handed_back() {
    let e = env_with(|_| {});
    e.faults.inject(
        WarehouseMethod::RecordOutcome,
        Fault::Fail(WarehouseError::Rejected {
            what: "bigquery_loads.serverless_bq_loads".into(),
            message: "403".into(),
        }),
    );
    assert!(matches!(e.handle(&e.batch("ds/t")), Outcome::Done { .. }));
    assert_eq!(
        e.observer
            .count(|r| *r == Observed::StateRowFailed { transient: false }),
        1
    );
}

#[test]
fn an_ordered_table_reports_its_backlog_and_its_lock() {
    let e = env_with(|s| s.order_per_table = true);
    for dir in ["ds/t/2024/01/01/b1", "ds/t/2024/01/02/b2"] {
        assert!(matches!(e.handle(&e.batch(dir)), Outcome::Queued { .. }));
    }
    assert_eq!(e.observer.reports(), [], "queuing reports nothing");
    let backfill = e
        .store
        .meta(B, "ds/t/_BACKFILL")
        .expect("_BACKFILL written");
    let event = ObjectEvent::finalized(B, &backfill.name, backfill.generation);
    e.clock.advance(Duration::from_secs(5));
    assert!(matches!(
        e.handle(&event),
        Outcome::Done { .. } | Outcome::Ignored { .. }
    ));
    let reports = e.observer.reports();
    let backlog: Vec<usize> = reports
        .iter()
        .filter_map(|r| match r {
            Observed::Backlog { table, items } if table == "ds/t" => Some(*items),
            _ => None,
        })
        .collect();
    assert_eq!(backlog.first(), Some(&2), "{reports:?}");
    assert_eq!(backlog.last(), Some(&0), "{reports:?}");
    let first_lock = reports.iter().find(|r| matches!(r, Observed::Lock { .. }));
    assert_eq!(
        first_lock,
        Some(&Observed::Lock {
            table: "ds/t".into(),
            age: None
        }),
        "no lock at first: {reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| matches!(r, Observed::Lock { age: Some(_), .. })),
        "the subscriber reads its own lock: {reports:?}"
    );
    assert_eq!(e.observer.count(|r| *r == LOAD), 2);
    assert_eq!(e.observer.count(|r| *r == batch("done")), 2);
}
