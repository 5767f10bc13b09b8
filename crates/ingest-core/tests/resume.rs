//! `ordering::plan_resume` and `apply_resume` on a stopped ordered table, over the memory
//! doubles: refused while not stopped or for a wrong `--skip`; skipping the failed batch loads
//! the rest; resuming without skip retries it.

use std::sync::Arc;

use futures::executor::block_on;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ordering::{apply_resume, plan_resume, ResumeError, ResumeStep};
use ingest_core::ports::{JobError, TableRef};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};

const B: &str = "bucket";

struct Env {
    store: Arc<MemoryStore>,
    warehouse: Arc<MemoryWarehouse>,
    ingestor: Ingestor,
}

fn env() -> Env {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(B);
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
    let settings = Settings {
        bq_project: Some("my-project".into()),
        order_per_table: true,
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store.clone(), warehouse.clone(), Arc::new(clock));
    Env {
        store,
        warehouse,
        ingestor,
    }
}

impl Env {
    fn queue(&self, dir: &str) {
        self.store.put_str(B, &format!("{dir}/a.csv"), "1\n");
        let marker = self.store.insert(B, &format!("{dir}/_SUCCESS"), Vec::new());
        let event = ObjectEvent::finalized(B, &marker.name, marker.generation);
        let outcome = block_on(self.ingestor.handle(&event)).unwrap();
        assert!(matches!(outcome, Outcome::Queued { .. }), "{outcome:?}");
    }

    /// Handles the live `_BACKFILL`, as its notification would.
    fn backfill(&self) -> Outcome {
        let meta = self.store.meta(B, "ds/t/_BACKFILL").expect("_BACKFILL");
        let event = ObjectEvent::finalized(B, &meta.name, meta.generation);
        block_on(self.ingestor.handle(&event)).unwrap()
    }

    fn rows(&self, partition: &str) -> u64 {
        let table = TableRef {
            project: "my-project".into(),
            dataset: "ds".into(),
            table: "t".into(),
            partition: Some(partition.into()),
        };
        self.warehouse.table_rows(&table)
    }

    fn plan(&self, skip: Option<&str>) -> Result<ingest_core::ordering::ResumePlan, ResumeError> {
        block_on(plan_resume(
            self.ingestor.ports(),
            self.ingestor.settings(),
            B,
            "ds/t",
            skip,
        ))
    }

    /// Two queued batches; the first fails for good and stops the table.
    fn stopped() -> Env {
        let e = env();
        e.warehouse.fail_job(
            "gcf-ingest-ds_t_20240101",
            JobError {
                reason: "invalid".into(),
                message: "bad row".into(),
            },
        );
        e.queue("ds/t/$20240101");
        e.queue("ds/t/$20240102");
        let outcome = e.backfill();
        assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
        e
    }
}

#[test]
fn skipping_the_failed_batch_applies_the_rest() {
    let e = Env::stopped();
    let wrong = e.plan(Some("$20240102")).unwrap_err();
    assert!(
        wrong
            .to_string()
            .contains("is not the batch the table stopped at"),
        "{wrong}"
    );
    let plan = e.plan(Some("$20240101")).unwrap();
    assert_eq!(
        plan.stopped_at.as_deref(),
        Some("ds/t/_backlog/$20240101/_SUCCESS")
    );
    assert!(
        plan.error
            .as_deref()
            .unwrap_or_default()
            .contains("bad row"),
        "{plan:?}"
    );
    assert!(
        matches!(
            plan.steps[..],
            [
                ResumeStep::SkipItem { .. },
                ResumeStep::RemoveLock { .. },
                ResumeStep::DropBackfill
            ]
        ),
        "{plan:?}"
    );
    block_on(apply_resume(
        e.ingestor.ports(),
        e.ingestor.settings(),
        B,
        &plan,
    ))
    .unwrap();
    assert!(e.store.meta(B, "ds/t/_bqlock").is_none());
    let outcome = e.backfill();
    assert!(
        format!("{outcome:?}").contains("applied 1 batch(es)"),
        "{outcome:?}"
    );
    assert_eq!((e.rows("$20240101"), e.rows("$20240102")), (0, 1));
    assert!(
        e.store
            .meta(B, "ds/t/_backlog/$20240102/_SUCCESS")
            .is_none(),
        "applied"
    );
    // The skipped batch has its own row, after its failure, for the same marker generation.
    let records = e.warehouse.records();
    let row = |state: &str| {
        records
            .iter()
            .map(|(_, r)| r)
            .find(|r| r.state == state && r.marker_uri == "gs://bucket/ds/t/$20240101/_SUCCESS")
            .cloned()
    };
    let (failed, skipped) = (
        row("failed").unwrap(),
        row("skipped").expect("a skipped row"),
    );
    assert_eq!(failed.marker_generation, skipped.marker_generation);
    assert!(
        skipped
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("bad row"),
        "{skipped:?}"
    );
}

#[test]
fn resuming_without_skip_retries_the_failed_batch() {
    let e = Env::stopped();
    e.warehouse.clear_job_failures(); // the cause was fixed
    let plan = e.plan(None).unwrap();
    assert!(
        matches!(
            plan.steps[..],
            [ResumeStep::RemoveLock { .. }, ResumeStep::DropBackfill]
        ),
        "{plan:?}"
    );
    block_on(apply_resume(
        e.ingestor.ports(),
        e.ingestor.settings(),
        B,
        &plan,
    ))
    .unwrap();
    let outcome = e.backfill();
    assert!(
        format!("{outcome:?}").contains("applied 2 batch(es)"),
        "{outcome:?}"
    );
    assert_eq!((e.rows("$20240101"), e.rows("$20240102")), (1, 1));
}

#[test]
fn a_table_changed_since_the_plan_is_left_alone() {
    let e = Env::stopped();
    let plan = e.plan(None).unwrap();
    // Another operator resumed it meanwhile: the lock's generation is gone.
    let lock = e.store.meta(B, "ds/t/_bqlock").unwrap();
    e.store.insert(B, "ds/t/_bqlock", b"someone else".to_vec());
    let err = block_on(apply_resume(
        e.ingestor.ports(),
        e.ingestor.settings(),
        B,
        &plan,
    ))
    .unwrap_err();
    assert!(matches!(err, ResumeError::Store { .. }), "{err}");
    assert_ne!(
        e.store.meta(B, "ds/t/_bqlock").unwrap().generation,
        lock.generation
    );
}

#[test]
fn a_running_or_manually_locked_table_is_refused() {
    let e = env();
    e.queue("ds/t/$20240101");
    // A lock of a running subscriber (no error).
    let running = r#"{"item":"ds/t/_backlog/$20240101/_SUCCESS","marker":"ds/t/$20240101/_SUCCESS","marker_generation":1,"job_ids":["gcf-ingest-x"],"project":"my-project","location":null,"holder":"h1","heartbeat":"2026-01-01T00:00:00Z","error":null}"#;
    e.store
        .insert(B, "ds/t/_bqlock", running.as_bytes().to_vec());
    let err = e.plan(None).unwrap_err();
    assert!(
        err.to_string().contains("the table is not stopped"),
        "{err}"
    );
    e.store.insert(B, "ds/t/_bqlock", b"maintenance".to_vec());
    let err = e.plan(None).unwrap_err();
    assert!(err.to_string().contains("an operator's lock"), "{err}");
    // No lock at all: resuming just drops _BACKFILL (a paused table).
    e.store.remove(B, "ds/t/_bqlock");
    let plan = e.plan(None).unwrap();
    assert_eq!(plan.steps, [ResumeStep::DropBackfill]);
}

/// The table's daily load quota parks an ordered table instead of failing it: the batch is
/// recorded `parked`, the lock's error starts with `parked: `, `status` calls the table
/// `parked` (no person needed), and resuming it once the quota allows (what `reconcile
/// --apply` does) applies both batches in order under the next attempt's id.
#[test]
fn the_load_quota_parks_an_ordered_table_until_it_is_resumed() {
    let e = env();
    e.warehouse.fail_job(
        "gcf-ingest-ds_t_20240101",
        JobError {
            reason: "quotaExceeded".into(),
            message:
                "Quota exceeded: Your table exceeded quota for imports or query appends per table."
                    .into(),
        },
    );
    e.queue("ds/t/$20240101");
    e.queue("ds/t/$20240102");
    let outcome = e.backfill();
    let Outcome::Parked { error, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("parked: "), "{error}");
    let states: Vec<String> = e
        .warehouse
        .records()
        .iter()
        .map(|(_, r)| r.state.clone())
        .collect();
    assert_eq!(states, ["parked"]);
    let tables = block_on(ingest_core::operate::ordered_tables(
        e.ingestor.ports().store.as_ref(),
        e.ingestor.settings(),
        B,
        "ds/",
        chrono::Utc::now(),
    ))
    .unwrap();
    assert_eq!(tables[0].state, "parked");
    assert!(!tables[0].needs_a_person());

    e.warehouse.clear_job_failures(); // the next day
    let plan = e.plan(None).unwrap();
    block_on(apply_resume(
        e.ingestor.ports(),
        e.ingestor.settings(),
        B,
        &plan,
    ))
    .unwrap();
    let outcome = e.backfill();
    assert!(
        format!("{outcome:?}").contains("applied 2 batch(es)"),
        "{outcome:?}"
    );
    assert_eq!((e.rows("$20240101"), e.rows("$20240102")), (1, 1));
}
