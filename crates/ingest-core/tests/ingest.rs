//! The unordered ingest path over the in-memory doubles: outcomes, idempotency, request counts,
//! config merging, failures and transform mode.

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use ingest_core::decorators::{
    CountingStore, CountingWarehouse, Fault, FaultyWarehouse, WarehouseMethod,
};
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{IngestError, Ingestor, Outcome};
use ingest_core::ports::{
    JobError, JobKind, JobRequest, PartitionGranularity, TableRef, TimePartitioning, WarehouseError,
};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse, QueryOutcome};

const B: &str = "bucket";

struct Env {
    store: Arc<MemoryStore>,
    warehouse: Arc<MemoryWarehouse>,
    /// The store as the ingestor sees it, counting its calls.
    gcs: Arc<CountingStore<Arc<MemoryStore>>>,
    /// The warehouse as the ingestor sees it: failures injected here, calls counted.
    faults: Arc<FaultyWarehouse<Arc<MemoryWarehouse>>>,
    bq: Arc<CountingWarehouse<Arc<FaultyWarehouse<Arc<MemoryWarehouse>>>>>,
    clock: MemoryClock,
    ingestor: Ingestor,
}

fn env_with(settings: impl FnOnce(&mut Settings)) -> Env {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(B);
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
    let mut s = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    settings(&mut s);
    let gcs = Arc::new(CountingStore::new(store.clone()));
    let faults = Arc::new(FaultyWarehouse::new(warehouse.clone()));
    let bq = Arc::new(CountingWarehouse::new(faults.clone()));
    let ingestor = Ingestor::new(s, gcs.clone(), bq.clone(), Arc::new(clock.clone()));
    Env {
        store,
        warehouse,
        gcs,
        faults,
        bq,
        clock,
        ingestor,
    }
}

fn env() -> Env {
    env_with(|_| {})
}

fn table(dataset: &str, table: &str) -> TableRef {
    TableRef {
        project: "my-project".into(),
        dataset: dataset.into(),
        table: table.into(),
        partition: None,
    }
}

impl Env {
    /// Writes a batch (data files, then the marker) and returns the marker's event.
    fn batch(&self, dir: &str, files: &[(&str, &str)]) -> ObjectEvent {
        for (name, content) in files {
            self.store.put_str(B, &format!("{dir}/{name}"), content);
        }
        let marker = self.store.insert(B, &format!("{dir}/_SUCCESS"), Vec::new());
        ObjectEvent::finalized(B, &marker.name, marker.generation)
    }

    fn handle(&self, event: &ObjectEvent) -> Result<Outcome, IngestError> {
        block_on(self.ingestor.handle(event))
    }
}

#[test]
fn a_batch_is_loaded_and_recorded() {
    let e = env();
    let event = e.batch(
        "ds/nation",
        &[("part-m-00000", ""), ("part-m-00001", "1|a\n2|b\n3|c\n")],
    );
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 3, .. }),
        "{outcome:?}"
    );
    assert_eq!(e.warehouse.table_rows(&table("ds", "nation")), 3);
    let jobs = e.warehouse.submitted();
    assert_eq!(jobs.len(), 1);
    match &jobs[0].kind {
        JobKind::Load {
            source_uris,
            destination,
            ..
        } => {
            // The empty part-m-00000 is skipped, not loaded.
            assert_eq!(
                source_uris,
                &vec!["gs://bucket/ds/nation/part-m-00001".to_string()]
            );
            assert_eq!(destination.table, "nation");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        jobs[0].job_id.starts_with("gcf-ingest-ds_nation_"),
        "{}",
        jobs[0].job_id
    );
    assert_eq!(jobs[0].labels["component"], "event-based-gcs-ingest");
    let records = e.warehouse.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0.dataset, "bigquery_loads");
    assert_eq!(records[0].0.table, "serverless_bq_loads");
    assert_eq!(records[0].1.state, "done");
    assert_eq!(records[0].1.rows, Some(3));
    assert_eq!(records[0].1.marker_uri, "gs://bucket/ds/nation/_SUCCESS");
}

#[test]
fn first_batch_costs_few_requests_and_the_next_one_fewer() {
    let e = env();
    e.store
        .put_str(B, "_config/load.json", r#"{"fieldDelimiter": "|"}"#);
    let first = e.batch("ds/t/$2020010100", &[("a.csv", "1|x\n")]);
    e.gcs.reset();
    e.bq.reset();
    assert!(matches!(e.handle(&first).unwrap(), Outcome::Done { .. }));
    let gcs = e.gcs.calls();
    let bq = e.bq.calls();
    // _config/, ds/_config/, ds/t/_config/ listed; the batch listing brings its own _config/;
    // one read of _config/load.json.
    assert_eq!(
        (gcs.list, gcs.read, gcs.stat, gcs.put, gcs.delete),
        (4, 1, 0, 0, 0),
        "{gcs:?}"
    );
    // Look up part 0 (absent), insert; plus the state-table row.
    assert_eq!(
        (bq.job_status, bq.submit, bq.record_outcome),
        (1, 1, 1),
        "{bq:?}"
    );

    let second = e.batch("ds/t/$2020010101", &[("a.csv", "2|y\n")]);
    e.gcs.reset();
    assert!(matches!(e.handle(&second).unwrap(), Outcome::Done { .. }));
    let gcs = e.gcs.calls();
    assert_eq!(
        (gcs.list, gcs.read),
        (4, 0),
        "config read from the cache: {gcs:?}"
    );
}

/// A duplicate delivery of a finished batch costs one `jobs.get` and one state-row write — the
/// row again, under the same identity, so that a first delivery that died before its row
/// cannot leave the batch unrecorded.
#[test]
fn a_duplicate_delivery_costs_one_job_lookup_and_one_idempotent_row() {
    let e = env();
    let event = e.batch("ds/t", &[("a.csv", "1,x\n2,y\n")]);
    assert!(matches!(
        e.handle(&event).unwrap(),
        Outcome::Done { rows: 2, .. }
    ));
    e.gcs.reset();
    e.bq.reset();
    for _ in 0..5 {
        assert!(matches!(
            e.handle(&event).unwrap(),
            Outcome::Done { rows: 2, .. }
        ));
    }
    assert_eq!(e.gcs.calls().total(), 0, "a duplicate touches no object");
    let bq = e.bq.calls();
    assert_eq!(bq.submit, 0);
    assert_eq!(bq.job_status, 5, "one jobs.get per delivery");
    assert_eq!(e.warehouse.submitted().len(), 1);
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 2);
    assert_eq!(
        bq.record_outcome, 5,
        "every delivery makes sure the row exists"
    );
    assert_eq!(logical_rows(&e), 1, "one logical row");
}

/// The state rows, deduplicated on their identity as `docs/operations.md` tells readers to.
fn logical_rows(e: &Env) -> usize {
    let identities: std::collections::BTreeSet<String> = e
        .warehouse
        .records()
        .iter()
        .map(|(_, r)| r.identity())
        .collect();
    identities.len()
}

#[test]
fn concurrent_duplicates_load_once() {
    let e = env();
    let event = e.batch("ds/t", &[("a.csv", "1,x\n")]);
    let outcomes = block_on(futures::future::join_all(
        (0..5).map(|_| e.ingestor.handle(&event)),
    ));
    for o in outcomes {
        assert!(matches!(o.unwrap(), Outcome::Done { rows: 1, .. }));
    }
    assert_eq!(e.warehouse.submitted().len(), 1);
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 1);
}

#[test]
fn a_reuploaded_marker_loads_again_with_new_job_ids() {
    let e = env();
    let first = e.batch("ds/t", &[("a.csv", "1,x\n")]);
    e.handle(&first).unwrap();
    let again = e.batch("ds/t", &[]);
    assert_ne!(first.generation, again.generation);
    assert!(matches!(e.handle(&again).unwrap(), Outcome::Done { .. }));
    let jobs = e.warehouse.submitted();
    assert_eq!(jobs.len(), 2);
    assert_ne!(jobs[0].job_id, jobs[1].job_id);
}

#[test]
fn load_json_of_parent_and_of_the_batch_itself_both_apply() {
    let e = env();
    e.store.put_str(
        B,
        "ds/_config/load.json",
        r#"{"fieldDelimiter": "|", "skipLeadingRows": 1}"#,
    );
    e.store.put_str(
        B,
        "ds/t/b1/_config/load.json",
        r#"{"writeDisposition": "WRITE_TRUNCATE"}"#,
    );
    let event = e.batch("ds/t/b1", &[("a.csv", "h\n1|x\n")]);
    e.handle(&event).unwrap();
    match &e.warehouse.submitted()[0].kind {
        JobKind::Load {
            config,
            source_uris,
            ..
        } => {
            assert_eq!(config["fieldDelimiter"], "|");
            assert_eq!(config["skipLeadingRows"], 1);
            assert_eq!(config["writeDisposition"], "WRITE_TRUNCATE");
            assert!(source_uris.iter().all(|u| !u.contains("_config")));
        }
        other => panic!("{other:?}"),
    }
}

/// The destination of the one job `event`'s batch loaded.
fn loaded_into(e: &Env, event: &ObjectEvent) -> TableRef {
    let outcome = e.handle(event).unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    match &e.warehouse.submitted().last().expect("a job").kind {
        JobKind::Load { destination, .. } => destination.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_configured_destination_table_or_regex_wins_over_the_path() {
    let e = env();
    assert_eq!(
        loaded_into(&e, &e.batch("ds/t/b0", &[("a.csv", "1|x\n")])),
        table("ds", "t")
    );
    e.store.put_str(
        B,
        "ds/t/b1/_config/load.json",
        r#"{"destinationTable": {"datasetId": "other", "tableId": "elsewhere"}}"#,
    );
    assert_eq!(
        loaded_into(&e, &e.batch("ds/t/b1", &[("a.csv", "1|x\n")])),
        table("other", "elsewhere")
    );
    e.store.put_str(
        B,
        "ds/t/b2/_config/load.json",
        r#"{"destinationRegex": "^(?P<table>[^/]+)/(?P<dataset>[^/]+)/"}"#,
    );
    assert_eq!(
        loaded_into(&e, &e.batch("ds/t/b2", &[("a.csv", "1|x\n")])),
        table("t", "ds")
    );
}

#[test]
fn write_truncate_replaces_and_write_append_adds() {
    let e = env();
    e.store.put_str(
        B,
        "ds/trunc/_config/load.json",
        r#"{"writeDisposition": "WRITE_TRUNCATE"}"#,
    );
    for i in 0..2 {
        let ev = e.batch(&format!("ds/trunc/b{i}"), &[("a.csv", "1\n2\n")]);
        e.handle(&ev).unwrap();
        let ev = e.batch(&format!("ds/append/b{i}"), &[("a.csv", "1\n2\n")]);
        e.handle(&ev).unwrap();
    }
    assert_eq!(e.warehouse.table_rows(&table("ds", "trunc")), 2);
    assert_eq!(e.warehouse.table_rows(&table("ds", "append")), 4);
}

#[test]
fn ten_thousand_and_one_files_make_two_jobs_that_are_all_followed() {
    let e = env();
    for i in 0..10_001 {
        e.store
            .put_str(B, &format!("ds/big/d{}/f{i:05}.csv", i % 3), "1\n");
    }
    let event = e.batch("ds/big", &[]);
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 10_001, .. }),
        "{outcome:?}"
    );
    let jobs = e.warehouse.submitted();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.labels["bq-ingest-parts"] == "2"));
    // A duplicate follows both parts.
    e.bq.reset();
    assert!(matches!(
        e.handle(&event).unwrap(),
        Outcome::Done { rows: 10_001, .. }
    ));
    assert_eq!(e.bq.calls().job_status, 2);
    assert_eq!(e.bq.calls().submit, 0);
}

/// A big batch (issue 12 §2, at a size that runs quickly): 25,000 files in 25 listing pages
/// make 3 jobs of 10,000, 10,000 and 5,000 files, whose ids, URIs and load configuration are
/// exactly what the public planner gives for the same listing, and the listing is read once.
/// Part 1 goes out as soon as it is full, while the listing is read; part 2 at the end, and
/// part 0 last, with the number of parts.
#[test]
fn twenty_five_thousand_files_make_three_jobs_as_the_planner_gives_them() {
    let e = env();
    for i in 0..25_000 {
        e.store
            .insert(B, &format!("ds/big/part-{i:06}.csv"), b"1\n".to_vec());
    }
    // Which list calls of the batch were made before each submission.
    let lists_before: Arc<std::sync::Mutex<Vec<(String, u64)>>> = Arc::default();
    let (seen, gcs) = (lists_before.clone(), e.gcs.clone());
    e.faults.set_rule(Box::new(move |method, about| {
        if method == WarehouseMethod::Submit {
            let part = about.rsplit('_').next().unwrap_or("").to_string();
            seen.lock().unwrap().push((part, gcs.calls().list));
        }
        None
    }));
    let event = e.batch("ds/big", &[]);
    let lists_at_start = e.gcs.calls().list;
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 25_000, .. }),
        "{outcome:?}"
    );
    // 25 pages of 1,000 (the memory store's page size, as GCS's), the batch listed once.
    let batch_lists = e.gcs.calls().list - lists_at_start;
    assert!(batch_lists <= 25 + 4, "{batch_lists} list calls");
    let order: Vec<(String, u64)> = lists_before
        .lock()
        .unwrap()
        .iter()
        .map(|(part, lists)| (part.clone(), lists - lists_at_start))
        .collect();
    let parts: Vec<&str> = order.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(parts, ["1", "2", "0"]);
    assert!(
        order[0].1 < batch_lists,
        "part 1 went out after {} of {batch_lists} list calls",
        order[0].1
    );
    assert!(order[1].1 == batch_lists && order[2].1 == batch_lists);

    let mut jobs = e.warehouse.submitted();
    jobs.rotate_right(1);
    let sizes: Vec<usize> = jobs
        .iter()
        .map(|j| match &j.kind {
            JobKind::Load { source_uris, .. } => source_uris.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sizes, [10_000, 10_000, 5_000]);

    let mut listing = Vec::new();
    let mut token = None;
    loop {
        let page = block_on(ingest_core::ports::ObjectStore::list(
            e.store.as_ref(),
            B,
            "ds/big/",
            token.as_deref(),
            None,
        ))
        .unwrap();
        listing.extend(page.objects);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let batch = ingest_core::destination::resolve_batch(
        &settings.destination_regex,
        None,
        Some("my-project"),
        None,
        B,
        &event.name,
    )
    .unwrap();
    let files = ingest_core::plan::select_data_files(&batch, "_SUCCESS", &listing);
    let plan = ingest_core::plan::plan_load(
        &settings,
        &batch,
        &ingest_core::config::BatchConfig::merge(B, &[]).unwrap(),
        &files,
        &listing,
        "my-project",
        "ds_big",
        event.generation.unwrap(),
    )
    .unwrap();
    assert_eq!(plan.jobs.len(), 3);
    for (part, (submitted, planned)) in jobs.iter().zip(&plan.jobs).enumerate() {
        assert_eq!(submitted.job_id, planned.job_id);
        // (Not `assert_eq!`: a difference would print 10,000 URIs.)
        assert!(submitted.kind == planned.kind, "part {part}: another load");
        assert_eq!(
            submitted.labels["bq-ingest-part"],
            planned.labels["bq-ingest-part"]
        );
        // Part 1 went out before the number of parts was known.
        let parts = submitted.labels.get("bq-ingest-parts").map(String::as_str);
        assert_eq!(parts, (part != 1).then_some("3"), "part {part}");
    }
}

/// A big batch whose delivery dies after part 1 went out, while its listing is read, and
/// one whose part 0's answer is lost: the next delivery finds what went out by its ids and
/// submits the rest; every file is loaded exactly once and no job runs twice.
#[test]
fn a_streamed_batch_interrupted_between_parts_is_loaded_exactly_once() {
    for (failing, fault) in [
        ("_2", Fault::Fail(transient("part 2"))),
        ("_0", Fault::LoseAnswer(transient("part 0"))),
    ] {
        let e = env();
        for i in 0..25_000 {
            e.store
                .insert(B, &format!("ds/big/part-{i:06}.csv"), b"1\n".to_vec());
        }
        let once = std::sync::atomic::AtomicBool::new(false);
        e.faults.set_rule(Box::new(move |method, about| {
            let hit = method == WarehouseMethod::Submit && about.ends_with(failing);
            (hit && !once.swap(true, std::sync::atomic::Ordering::SeqCst)).then(|| fault.clone())
        }));
        let event = e.batch("ds/big", &[]);
        assert!(
            e.handle(&event).is_err(),
            "{failing}: the first delivery fails"
        );
        let outcome = e.handle(&event).unwrap();
        assert!(
            matches!(outcome, Outcome::Done { rows: 25_000, .. }),
            "{failing}: {outcome:?}"
        );
        let table = table("ds", "big");
        assert_eq!(e.warehouse.table_rows(&table), 25_000, "{failing}");
        let ids: Vec<String> = e
            .warehouse
            .submitted()
            .into_iter()
            .map(|j| j.job_id)
            .collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (3, 3), "{failing}: {ids:?}");
    }
}

#[test]
fn a_rejected_load_is_a_recorded_failure_naming_the_batch_and_is_not_retried() {
    let e = env();
    e.warehouse.fail_job(
        "",
        JobError {
            reason: "invalid".into(),
            message: "Provided Schema does not match Table".into(),
        },
    );
    let event = e.batch("ds/t/b1", &[("a.csv", "1,x\n")]);
    let outcome = e.handle(&event).unwrap();
    let Outcome::Failed { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("gs://bucket/ds/t/b1/_SUCCESS"), "{error}");
    assert!(
        error.contains("Provided Schema does not match Table"),
        "{error}"
    );
    assert!(
        outcome.is_final(),
        "the message must be acknowledged, not redelivered forever"
    );
    let records = e.warehouse.records();
    assert_eq!(records.last().unwrap().1.state, "failed");
    // Redelivered anyway: the same failed job is reported, nothing is loaded again.
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Failed { .. }));
    assert_eq!(e.warehouse.submitted().len(), 1);
}

#[test]
fn a_bad_path_is_a_recorded_failure_naming_the_object() {
    let e = env();
    let event = e.batch("my-ds!/t", &[("a.csv", "1\n")]);
    let outcome = e.handle(&event).unwrap();
    let Outcome::Failed { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("gs://bucket/my-ds!/t/_SUCCESS"), "{error}");
    assert!(e.warehouse.submitted().is_empty());
    assert_eq!(e.warehouse.records().len(), 1, "recorded, never dropped");
}

/// A path that DESTINATION_REGEX reads as an invalid dataset (`-` is not allowed) can never be
/// a batch: it is rejected before any request — no lookup, listing, job or state row.
#[test]
fn an_invalid_destination_is_rejected_before_any_request() {
    let e = env();
    let event = e.batch("my-ds/t", &[("a.csv", "1\n")]);
    e.gcs.reset();
    let outcome = e.handle(&event).unwrap();
    let Outcome::Rejected { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("gs://bucket/my-ds/t/_SUCCESS"), "{error}");
    assert!(error.contains("dataset id"), "{error}");
    assert_eq!(e.gcs.calls().total(), 0, "no GCS request");
    assert_eq!(e.bq.calls().total(), 0, "no BigQuery request");
    assert_eq!(
        outcome.disposition(),
        ingest_core::ingest::Disposition::Reject
    );
}

/// A notification for a bucket that does not exist is a final, recorded failure that names
/// the bucket and the likely cause — not a transient error redelivered until dead-lettered.
#[test]
fn a_missing_bucket_is_a_final_recorded_failure_naming_it() {
    let e = env();
    let event = ObjectEvent::finalized("no-such-bucket", "ds/t/_SUCCESS", 7);
    let outcome = e.handle(&event).unwrap();
    let Outcome::Failed { error } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("gs://no-such-bucket"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("roles/storage.objectViewer"), "{error}");
    assert_eq!(e.warehouse.records().len(), 1, "recorded");
}

/// The Python function's `backfill.py` names no generation: the marker's is looked up (one
/// `stat`), and a marker that is gone is ignored with the reason.
#[test]
fn a_notification_without_generation_is_handled_with_the_live_one() {
    let e = env();
    let marker = e.batch("ds/t", &[("a.csv", "1,x\n")]);
    let mut event = marker.clone();
    event.generation = None;
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        e.warehouse.records()[0].1.marker_generation,
        marker.generation.unwrap()
    );
    // The same marker as a notification with its generation: a duplicate, not a new load.
    assert!(matches!(e.handle(&marker).unwrap(), Outcome::Done { .. }));
    assert_eq!(e.warehouse.submitted().len(), 1);

    let gone = ObjectEvent {
        generation: None,
        ..ObjectEvent::finalized(B, "ds/other/_SUCCESS", 1)
    };
    let Outcome::Ignored { reason } = e.handle(&gone).unwrap() else {
        panic!()
    };
    assert!(reason.contains("no longer exists"), "{reason}");
}

#[test]
fn invalid_load_json_fails_naming_the_config_object() {
    let e = env();
    e.store.put_str(B, "ds/_config/load.json", "{not json");
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    let Outcome::Failed { error } = e.handle(&event).unwrap() else {
        panic!()
    };
    assert!(
        error.contains("gs://bucket/ds/_config/load.json"),
        "{error}"
    );
}

#[test]
fn transient_errors_ask_for_redelivery_and_the_redelivery_succeeds() {
    let e = env();
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    e.faults.inject(
        WarehouseMethod::Submit,
        Fault::Fail(WarehouseError::Transient {
            what: "jobs.insert".into(),
            message: "429 rateLimitExceeded".into(),
        }),
    );
    assert!(matches!(
        e.handle(&event),
        Err(IngestError::Warehouse { .. })
    ));
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Done { .. }));
    assert_eq!(e.warehouse.submitted().len(), 1);
}

#[test]
fn a_job_still_running_at_the_deadline_is_followed_by_the_next_delivery() {
    let e = env_with(|s| s.wait_for_job = Duration::from_secs(2));
    e.warehouse.set_job_duration(1_000);
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    let outcome = e.handle(&event).unwrap();
    assert!(matches!(outcome, Outcome::Running { .. }), "{outcome:?}");
    assert!(!outcome.is_final());
    // Polls back off from 50 ms instead of sleeping a fixed interval.
    let sleeps = e.clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_millis(50));
    assert!(sleeps.iter().sum::<Duration>() <= Duration::from_secs(2));
    assert!(e.warehouse.records().is_empty(), "nothing is final yet");
    // Redeliveries follow the same job until it ends; the one that sees the end records it once.
    let mut outcome = outcome;
    for _ in 0..1_000 {
        if outcome.is_final() {
            break;
        }
        outcome = block_on(e.ingestor.handle(&event)).unwrap();
    }
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    assert_eq!(
        e.warehouse.submitted().len(),
        1,
        "the job submitted first is the one followed"
    );
    assert_eq!(e.warehouse.records().len(), 1);
}

#[test]
fn data_files_and_config_objects_are_ignored_with_a_reason() {
    let e = env();
    for name in [
        "ds/t/part-1.csv",
        "ds/t/_config/load.json",
        "_config/ORDERME",
    ] {
        let o = e.handle(&ObjectEvent::finalized(B, name, 1)).unwrap();
        assert!(matches!(o, Outcome::Ignored { .. }), "{name}: {o:?}");
    }
    assert_eq!(e.gcs.calls().total(), 0);
    assert_eq!(e.bq.calls().total(), 0);
}

#[test]
fn transform_mode_runs_a_query_over_temp_ext_with_parameters() {
    let e = env();
    e.store.put_str(
        B,
        "ds/t/_config/bq_transform.sql",
        "INSERT {dest_dataset}.{dest_table} SELECT *, @batch_timestamp AS ts FROM temp_ext",
    );
    e.store.put_str(
        B,
        "ds/t/_config/external.json",
        r#"{"sourceFormat": "CSV", "hivePartitioningOptions": {"mode": "AUTO"}}"#,
    );
    e.warehouse
        .set_query_responder(|_| Ok(QueryOutcome::dml("INSERT", 5)));
    let event = e.batch("ds/t/$2020010203", &[("x.csv", "1\n")]);
    let outcome = e.handle(&event).unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    let job = &e.warehouse.submitted()[0];
    let JobKind::Query {
        sql,
        table_definitions,
        parameters,
    } = &job.kind
    else {
        panic!()
    };
    assert_eq!(
        sql,
        "INSERT `my-project`.`ds`.`t` SELECT *, @batch_timestamp AS ts FROM temp_ext"
    );
    let partition = parameters
        .iter()
        .find(|p| p.name == "dest_partition")
        .unwrap();
    assert_eq!(partition.value.as_deref(), Some("2020010203"));
    let ext = &table_definitions["temp_ext"];
    assert_eq!(ext["sourceFormat"], "CSV");
    assert_eq!(ext["sourceUris"][0], "gs://bucket/ds/t/$2020010203/x.csv");
    assert_eq!(
        ext["hivePartitioningOptions"]["sourceUriPrefix"],
        "gs://bucket/ds/t/$2020010203/"
    );
    let ts = parameters
        .iter()
        .find(|p| p.name == "batch_timestamp")
        .unwrap();
    assert_eq!(ts.type_name, "TIMESTAMP");
    assert_eq!(ts.value.as_deref(), Some("2020-01-02T03:00:00.000000Z"));
    assert_eq!(e.warehouse.records()[0].1.mode, "transform");
}

/// The audit's reproduction: with a regex that takes any segment as the table, a legal table id
/// that reads as SQL (`victim WHERE TRUE --`) stays one quoted identifier in the query, so the
/// DELETE can only ever touch a table of that very name.
#[test]
fn a_table_id_that_reads_as_sql_stays_a_quoted_identifier() {
    let e = env_with(|s| {
        s.destination_regex = ingest_core::destination::DestinationRegex::new(
            "(?P<dataset>[^/]+)/(?P<table>[^/]+)/(?P<batch>[^/]+)/",
            false,
        )
        .unwrap();
    });
    e.store.put_str(
        B,
        "_config/bq_transform.sql",
        "DELETE FROM {dest_dataset}.{dest_table} WHERE N_NAME = @batch_id",
    );
    e.warehouse
        .set_query_responder(|_| Ok(QueryOutcome::dml("DELETE", 1)));
    let event = e.batch("ds/victim WHERE TRUE --/b1", &[("x.csv", "1\n")]);
    let outcome = e.handle(&event).unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    let JobKind::Query {
        sql, parameters, ..
    } = &e.warehouse.submitted()[0].kind
    else {
        panic!()
    };
    assert_eq!(
        sql,
        "DELETE FROM `my-project`.`ds`.`victim WHERE TRUE --` WHERE N_NAME = @batch_id"
    );
    let batch_id = parameters.iter().find(|p| p.name == "batch_id").unwrap();
    assert_eq!(batch_id.value.as_deref(), Some("b1"));
}

#[test]
fn a_dml_that_affects_no_row_fails_the_batch() {
    let e = env();
    e.store.put_str(
        B,
        "ds/t/_config/t.sql",
        "UPDATE {dest_dataset}.{dest_table} SET x = 1 WHERE FALSE",
    );
    e.warehouse
        .set_query_responder(|_| Ok(QueryOutcome::dml("UPDATE", 0)));
    let event = e.batch("ds/t", &[("x.parquet", "PAR1")]);
    let Outcome::Failed { error } = e.handle(&event).unwrap() else {
        panic!()
    };
    assert!(error.contains("affected no row"), "{error}");
}

#[test]
fn a_dml_with_no_row_is_accepted_when_the_check_is_off() {
    let e = env_with(|s| s.fail_on_zero_dml_rows_affected = false);
    e.store.put_str(
        B,
        "ds/t/_config/t.sql",
        "UPDATE {dest_dataset}.{dest_table} SET x = 1 WHERE FALSE",
    );
    e.warehouse
        .set_query_responder(|_| Ok(QueryOutcome::dml("UPDATE", 0)));
    let event = e.batch("ds/t", &[("x.parquet", "PAR1")]);
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Done { .. }));
}

#[test]
fn a_failed_state_table_write_does_not_change_the_outcome() {
    let e = env();
    e.faults.inject(
        WarehouseMethod::RecordOutcome,
        Fault::Fail(WarehouseError::Rejected {
            what: "bigquery_loads.serverless_bq_loads".into(),
            message: "403".into(),
        }),
    );
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Done { .. }));
}

#[test]
fn retriable_job_errors_are_retried_under_new_ids_up_to_the_limit() {
    let e = env_with(|s| s.max_retries_on_bigquery_error = 2);
    e.warehouse.fail_job(
        "gcf-ingest-ds_t_",
        JobError {
            reason: "backendError".into(),
            message: "Backend error. Please try again.".into(),
        },
    );
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    let Outcome::Failed { error } = e.handle(&event).unwrap() else {
        panic!()
    };
    assert!(error.contains("backendError"), "{error}");
    let ids: Vec<String> = e
        .warehouse
        .submitted()
        .iter()
        .map(|j| j.job_id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids[1].ends_with("-r1") && ids[2].ends_with("-r2"),
        "{ids:?}"
    );
    assert!(ids[1].starts_with(&ids[0]));
    let states: Vec<String> = e
        .warehouse
        .records()
        .iter()
        .map(|(_, r)| r.state.clone())
        .collect();
    assert_eq!(states, ["retried", "retried", "failed"]);
    // A redelivery follows the last attempt and submits nothing.
    e.bq.reset();
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Failed { .. }));
    assert_eq!(e.bq.calls().submit, 0);
    assert_eq!(e.bq.calls().job_status, 3);
}

#[test]
fn other_job_errors_fail_at_once() {
    let e = env();
    e.warehouse.fail_job(
        "",
        JobError {
            // The per-table load quota is a pause, not a failure (see the `parked` tests); the
            // project's bytes quota fails the batch.
            reason: "quotaExceeded".into(),
            message: "Quota exceeded: Your project exceeded quota for free query bytes scanned"
                .into(),
        },
    );
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Failed { .. }));
    assert_eq!(e.warehouse.submitted().len(), 1);
}

// ---- the per-table load quota: parked, not failed ----

const LOAD_QUOTA: &str =
    "Quota exceeded: Your table exceeded quota for imports or query appends per table.";

fn quota_error() -> JobError {
    JobError {
        reason: "quotaExceeded".into(),
        message: LOAD_QUOTA.into(),
    }
}

/// A batch that hits its table's daily load quota is parked: recorded `parked`, acknowledged
/// (no redelivery burns), the job not resubmitted at once. Handled again once the quota allows
/// (what `reconcile --apply` does), it loads under the next attempt's id, exactly once.
#[test]
fn the_load_quota_parks_a_batch_which_loads_when_handled_again() {
    let e = env();
    e.warehouse.fail_job("gcf-ingest-ds_t_", quota_error());
    let event = e.batch("ds/t", &[("a.csv", "1\n2\n")]);
    let outcome = e.handle(&event).unwrap();
    let Outcome::Parked { error, jobs } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        outcome.disposition(),
        ingest_core::ingest::Disposition::Acknowledge
    );
    assert!(error.contains("gs://bucket/ds/t/_SUCCESS"), "{error}");
    assert!(error.contains("reconcile --apply"), "{error}");
    assert_eq!(jobs.len(), 1);
    assert_eq!(e.warehouse.submitted().len(), 1, "not resubmitted at once");
    let states: Vec<String> = e
        .warehouse
        .records()
        .iter()
        .map(|(_, r)| r.state.clone())
        .collect();
    assert_eq!(states, ["parked"]);

    // Still at the quota: parked again after one more attempt.
    let again = e.handle(&event).unwrap();
    assert!(matches!(again, Outcome::Parked { .. }), "{again:?}");
    assert_eq!(e.warehouse.submitted().len(), 2);
    assert!(e.warehouse.submitted()[1].job_id.ends_with("-r1"));

    // The quota allows again: the next handling loads it, once.
    e.warehouse.clear_job_failures();
    let done = e.handle(&event).unwrap();
    assert!(matches!(done, Outcome::Done { rows: 2, .. }), "{done:?}");
    assert!(e.warehouse.submitted()[2].job_id.ends_with("-r2"));
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 2);
    e.bq.reset();
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Done { .. }));
    assert_eq!(
        e.bq.calls().submit,
        0,
        "a duplicate finds the loaded attempt"
    );
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 2);
}

/// A `jobs.insert` refused with the quota error parks the batch too; handled again, it submits
/// its jobs as a first delivery does.
#[test]
fn a_job_insert_refused_for_the_load_quota_parks_the_batch() {
    let e = env();
    e.faults.inject(
        WarehouseMethod::Submit,
        Fault::Fail(WarehouseError::Rejected {
            what: "job gcf-ingest-ds_t".into(),
            message: format!("403 quotaExceeded: {LOAD_QUOTA}"),
        }),
    );
    let event = e.batch("ds/t", &[("a.csv", "1\n")]);
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Parked { .. }));
    assert_eq!(e.warehouse.records()[0].1.state, "parked");
    assert!(matches!(
        e.handle(&event).unwrap(),
        Outcome::Done { rows: 1, .. }
    ));
}

#[derive(Debug, Default)]
struct CollectedFailures(std::sync::Mutex<Vec<ingest_core::ports::FailureReport>>);

#[async_trait::async_trait]
impl ingest_core::ports::FailureSink for CollectedFailures {
    async fn announce(&self, f: &ingest_core::ports::FailureReport) -> Result<(), String> {
        self.0.lock().unwrap().push(f.clone());
        Ok(())
    }
}

#[test]
fn failed_batches_are_announced_with_what_is_needed_to_replay_them() {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(B);
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    warehouse.fail_job(
        "",
        JobError {
            reason: "invalid".into(),
            message: "bad row".into(),
        },
    );
    let sink = Arc::new(CollectedFailures::default());
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store.clone(), warehouse, Arc::new(clock))
        .with_failure_sink(sink.clone());
    store.put_str(B, "ds/t/a.csv", "1\n");
    let marker = store.insert(B, "ds/t/_SUCCESS", Vec::new());
    let event = ObjectEvent::finalized(B, &marker.name, marker.generation);
    assert!(matches!(
        block_on(ingestor.handle(&event)).unwrap(),
        Outcome::Failed { .. }
    ));
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bucket, B);
    assert_eq!(got[0].object, "ds/t/_SUCCESS");
    assert_eq!(got[0].generation, marker.generation);
    assert!(got[0].error.contains("bad row"));
    assert_eq!(got[0].job_ids.len(), 1);
}

// ---- ingest.json: fileTimestampRegex ----

const DAILY_FILES: &str =
    r#"{"fileTimestampRegex": "(?P<yyyy>\\d{4})-(?P<mm>\\d\\d)-(?P<dd>\\d\\d)"}"#;

fn load_destinations(e: &Env) -> Vec<String> {
    e.warehouse
        .submitted()
        .iter()
        .map(|job| match &job.kind {
            JobKind::Load { destination, .. } => destination.to_string(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Each file goes into the partition of its name, at the granularity the table has (one
/// `tables.get`); one state row records the batch.
#[test]
fn file_timestamps_put_each_file_into_its_partition_at_the_table_granularity() {
    let e = env();
    e.warehouse.set_time_partitioning(
        &table("ds", "t"),
        TimePartitioning {
            granularity: PartitionGranularity::Day,
            field: None,
        },
    );
    e.store.put_str(B, "ds/t/_config/ingest.json", DAILY_FILES);
    let event = e.batch(
        "ds/t/b1",
        &[
            ("2024-01-02_a.csv", "1\n2\n"),
            ("2024-01-02_b.csv", "3\n"),
            ("2024-01-03.csv", "4\n"),
        ],
    );
    e.bq.reset();
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 4, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        load_destinations(&e),
        ["my-project.ds.t$20240102", "my-project.ds.t$20240103"]
    );
    let mut partition = table("ds", "t");
    partition.partition = Some("$20240102".into());
    assert_eq!(e.warehouse.table_rows(&partition), 3);
    assert_eq!(e.bq.calls().time_partitioning, 1);
    assert_eq!(
        e.warehouse.records().len(),
        1,
        "one state row for the marker"
    );

    // A duplicate delivery finds both jobs and loads nothing again.
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Done { .. }));
    assert_eq!(e.warehouse.submitted().len(), 2);
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 4);
}

/// A table that does not exist yet takes its granularity from `table.json`: no `tables.get`.
#[test]
fn file_timestamps_take_the_granularity_of_the_template_of_a_missing_table() {
    let e = env();
    e.store.put_str(B, "ds/t/_config/ingest.json", DAILY_FILES);
    e.store.put_str(
        B,
        "ds/t/_config/table.json",
        r#"{"timePartitioning": {"type": "MONTH"}}"#,
    );
    let event = e.batch(
        "ds/t/b1",
        &[("2024-01-02.csv", "1\n"), ("2024-02-03.csv", "2\n")],
    );
    e.bq.reset();
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Done { .. }));
    assert_eq!(
        load_destinations(&e),
        ["my-project.ds.t$202401", "my-project.ds.t$202402"]
    );
    assert_eq!(e.bq.calls().time_partitioning, 0);
}

/// A table not partitioned by time, and a file without a timestamp, are recorded failures that
/// say what is wrong; nothing is loaded.
#[test]
fn file_timestamps_fail_clearly_on_an_unpartitioned_table_or_a_file_without_one() {
    let e = env();
    e.warehouse.set_table_rows(&table("ds", "flat"), 0);
    e.store.put_str(B, "_config/ingest.json", DAILY_FILES);
    let event = e.batch("ds/flat/b1", &[("2024-01-02.csv", "1\n")]);
    let Outcome::Failed { error } = e.handle(&event).unwrap() else {
        panic!("expected a failure")
    };
    assert!(error.contains("gs://bucket/ds/flat/b1/_SUCCESS"), "{error}");
    assert!(error.contains("not partitioned by time"), "{error}");

    e.warehouse.set_time_partitioning(
        &table("ds", "t"),
        TimePartitioning {
            granularity: PartitionGranularity::Hour,
            field: Some("at".into()),
        },
    );
    let event = e.batch(
        "ds/t/b1",
        &[("2024-01-02.csv", "1\n"), ("readme.csv", "2\n")],
    );
    let Outcome::Failed { error } = e.handle(&event).unwrap() else {
        panic!("expected a failure")
    };
    assert!(error.contains("gs://bucket/ds/t/b1/readme.csv"), "{error}");
    assert!(e.warehouse.submitted().is_empty());
    assert_eq!(e.warehouse.records().len(), 2, "both recorded");
}

// ---- ingest.json: afterSuccess, deleteMarker ----

fn names_under(e: &Env, bucket: &str, prefix: &str) -> Vec<String> {
    e.store
        .names(bucket)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn after_success_delete_removes_the_data_files_of_a_done_batch_only() {
    let e = env();
    e.store.put_str(
        B,
        "ds/t/_config/ingest.json",
        r#"{"afterSuccess": "delete"}"#,
    );
    let event = e.batch("ds/t/b1", &[("a.csv", "1\n"), ("b.csv", "2\n")]);
    assert!(matches!(
        e.handle(&event).unwrap(),
        Outcome::Done { rows: 2, .. }
    ));
    assert_eq!(names_under(&e, B, "ds/t/b1/"), ["ds/t/b1/_SUCCESS"]);
    assert_eq!(
        e.warehouse.submitted()[0].labels["bq-ingest-after-success"],
        "delete"
    );

    // A failed batch keeps its files.
    e.faults.inject(
        WarehouseMethod::Submit,
        Fault::Fail(WarehouseError::Rejected {
            what: "job".into(),
            message: "invalid".into(),
        }),
    );
    let failed = e.batch("ds/t/b2", &[("a.csv", "1\n")]);
    assert!(matches!(e.handle(&failed).unwrap(), Outcome::Failed { .. }));
    assert_eq!(
        names_under(&e, B, "ds/t/b2/"),
        ["ds/t/b2/_SUCCESS", "ds/t/b2/a.csv"]
    );
}

#[test]
fn after_success_archive_copies_keeps_the_path_deletes_and_drops_the_marker() {
    let e = env();
    e.store.create_bucket("archive");
    e.store.put_str(
        B,
        "_config/ingest.json",
        r#"{"afterSuccess": {"archiveTo": "gs://archive/loaded"}, "deleteMarker": true}"#,
    );
    let event = e.batch("ds/t/b1", &[("a.csv", "1\n"), ("sub/b.csv", "2\n")]);
    assert!(matches!(
        e.handle(&event).unwrap(),
        Outcome::Done { rows: 2, .. }
    ));
    assert!(
        names_under(&e, B, "ds/t/b1/").is_empty(),
        "{:?}",
        e.store.names(B)
    );
    assert_eq!(
        e.store.names("archive"),
        ["loaded/ds/t/b1/a.csv", "loaded/ds/t/b1/sub/b.csv"]
    );
    // The state row was written before anything moved.
    assert_eq!(e.warehouse.records().len(), 1);
}

/// A delivery that dies half-way through the archive (here: a transient error on the second
/// delete) asks for redelivery; the redelivery, a duplicate with no plan, finds the label on
/// the jobs, counts the copy already in place as done, finishes, and loads nothing again.
#[test]
fn an_interrupted_archive_is_finished_by_the_redelivery_without_loading_twice() {
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket(B);
    store.create_bucket("archive");
    let faulty = Arc::new(ingest_core::decorators::FaultyStore::new(store.clone()));
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, faulty.clone(), warehouse.clone(), Arc::new(clock));
    store.put_str(
        B,
        "_config/ingest.json",
        r#"{"afterSuccess": {"archiveTo": "gs://archive"}}"#,
    );
    store.put_str(B, "ds/t/b1/a.csv", "1\n");
    store.put_str(B, "ds/t/b1/b.csv", "2\n");
    let marker = store.insert(B, "ds/t/b1/_SUCCESS", Vec::new());
    let event = ObjectEvent::finalized(B, &marker.name, marker.generation);
    faulty.set_rule(Box::new(|method, name| {
        (method == ingest_core::decorators::StoreMethod::Delete && name == "ds/t/b1/b.csv").then(
            || {
                Fault::Fail(ingest_core::ports::StoreError::Transient {
                    bucket: B.into(),
                    name: name.into(),
                    message: "503".into(),
                })
            },
        )
    }));
    let first = block_on(ingestor.handle(&event));
    assert!(
        first.is_err(),
        "a transient error asks for redelivery: {first:?}"
    );
    assert_eq!(store.names("archive"), ["ds/t/b1/a.csv", "ds/t/b1/b.csv"]);
    assert!(store.names(B).contains(&"ds/t/b1/b.csv".to_string()));
    faulty.clear();
    let second = block_on(ingestor.handle(&event)).unwrap();
    assert!(matches!(second, Outcome::Done { .. }), "{second:?}");
    assert_eq!(
        store.names(B),
        ["_config/ingest.json", "ds/t/b1/_SUCCESS"],
        "both files archived and deleted"
    );
    assert_eq!(warehouse.submitted().len(), 1, "loaded once");
}

/// A file written under a batch's name after its marker is a newer file, not this batch's
/// (a redelivery lists the batch again and finds it): it is neither archived nor deleted.
#[test]
fn after_success_never_removes_a_file_newer_than_the_marker() {
    let e = env();
    e.store.put_str(
        B,
        "ds/t/_config/ingest.json",
        r#"{"afterSuccess": "delete"}"#,
    );
    let event = e.batch("ds/t/b1", &[("a.csv", "1\n"), ("b.csv", "2\n")]);
    e.clock.advance(Duration::from_secs(60));
    let newer = e.store.put_str(B, "ds/t/b1/a.csv", "3\n");
    let outcome = e.handle(&event).unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    let names = names_under(&e, B, "ds/t/b1/");
    assert_eq!(
        names,
        ["ds/t/b1/_SUCCESS", "ds/t/b1/a.csv"],
        "b.csv deleted, a.csv kept"
    );
    assert_eq!(
        block_on(ingest_core::ports::ObjectStore::stat(
            e.store.as_ref(),
            B,
            "ds/t/b1/a.csv"
        ))
        .unwrap()
        .generation,
        newer.generation
    );
}

// ---- ingest.json: quarantine ----

fn csv_error(message: &str) -> JobError {
    JobError {
        reason: "invalid".into(),
        message: message.into(),
    }
}

/// The destination with a schema, as BigQuery has it (the staging table of a bisection copies
/// it).
fn create_destination(e: &Env, dataset: &str, name: &str) {
    let resource = serde_json::json!({"schema": {"fields": [{"name": "n", "type": "INT64"}]}});
    block_on(ingest_core::ports::Warehouse::create_table(
        e.warehouse.as_ref(),
        &table(dataset, name),
        resource.as_object().unwrap(),
    ))
    .unwrap();
}

fn names_in(e: &Env, prefix: &str) -> Vec<String> {
    names_under(e, B, prefix)
}

/// The error names the bad file: it is moved to `<table>/_quarantine/<batch>/`, the batch gets
/// a `quarantined` row naming it, the rest loads under new ids (`…_rest_…`) and the batch is
/// done; a redelivery loads nothing again.
#[test]
fn a_bad_file_named_by_the_error_is_quarantined_and_the_rest_loaded() {
    let e = env();
    create_destination(&e, "ds", "t");
    e.store
        .put_str(B, "ds/t/_config/ingest.json", r#"{"quarantine": true}"#);
    e.warehouse.fail_loads_of_content(
        "CORRUPT",
        csv_error("CSV table encountered too many errors. File: gs://bucket/ds/t/b1/b.csv"),
    );
    let event = e.batch(
        "ds/t/b1",
        &[
            ("a.csv", "1\n2\n"),
            ("b.csv", "CORRUPT\n"),
            ("c.csv", "3\n"),
        ],
    );
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 3, .. }),
        "{outcome:?}"
    );
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 3);
    assert_eq!(
        names_in(&e, "ds/t/"),
        [
            "ds/t/_config/ingest.json",
            "ds/t/_quarantine/b1/b.csv",
            "ds/t/b1/_SUCCESS",
            "ds/t/b1/a.csv",
            "ds/t/b1/c.csv"
        ]
    );
    let records = e.warehouse.records();
    let states: Vec<&str> = records.iter().map(|(_, r)| r.state.as_str()).collect();
    assert_eq!(states, ["quarantined", "done"]);
    let note = records[0].1.error.clone().unwrap_or_default();
    assert!(
        note.contains("gs://bucket/ds/t/b1/b.csv → gs://bucket/ds/t/_quarantine/b1/b.csv"),
        "{note}"
    );
    let submitted: Vec<String> = e
        .warehouse
        .submitted()
        .iter()
        .map(|j| j.job_id.clone())
        .collect();
    assert_eq!(submitted.len(), 2, "{submitted:?}");
    assert!(submitted[1].contains("_rest_"), "{submitted:?}");

    // A redelivery: the original job failed, the bad file is found in quarantine, the rest's
    // job exists and is followed. Nothing loads twice.
    let again = e.handle(&event).unwrap();
    assert!(matches!(again, Outcome::Done { rows: 3, .. }), "{again:?}");
    assert_eq!(e.warehouse.submitted().len(), 2);
    assert_eq!(e.warehouse.table_rows(&table("ds", "t")), 3);
}

/// The error names no file (the local emulator's "CSV Error on Line: 2"): halves of the failed
/// part are loaded into the staging table, never the destination, until the bad file is
/// found; then as above.
#[test]
fn a_bad_file_the_error_does_not_name_is_found_by_halving_into_a_staging_table() {
    let e = env();
    create_destination(&e, "ds", "t");
    e.store.put_str(
        B,
        "_config/ingest.json",
        r#"{"quarantine": {"maxRounds": 4}}"#,
    );
    e.warehouse
        .fail_loads_of_content("CORRUPT", csv_error("CSV Error on Line: 2"));
    let files: Vec<(String, String)> = (0..6)
        .map(|i| {
            let content = if i == 4 { "CORRUPT\n" } else { "1\n" };
            (format!("f{i}.csv"), content.to_string())
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let event = e.batch("ds/t/b1", &refs);
    let outcome = e.handle(&event).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { rows: 5, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        e.warehouse.table_rows(&table("ds", "t")),
        5,
        "the destination got the rest only"
    );
    assert!(names_in(&e, "ds/t/_quarantine/").contains(&"ds/t/_quarantine/b1/f4.csv".to_string()));
    let staging: Vec<JobRequest> = e
        .warehouse
        .submitted()
        .into_iter()
        .filter(|j| j.labels.get("bq-ingest-quarantine").map(String::as_str) == Some("staging"))
        .collect();
    assert!(!staging.is_empty());
    for job in &staging {
        let JobKind::Load { destination, .. } = &job.kind else {
            panic!()
        };
        assert_eq!(destination.table, "t_bq_ingest_quarantine");
    }
    let before = e.warehouse.submitted().len();
    assert!(matches!(
        e.handle(&event).unwrap(),
        Outcome::Done { rows: 5, .. }
    ));
    assert_eq!(
        e.warehouse.submitted().len(),
        before,
        "a redelivery submits nothing"
    );
}

/// When every file would be blamed (a schema problem, not a bad file), nothing is moved and the
/// batch fails as it would without the option; so does a batch without it.
#[test]
fn a_batch_whose_every_file_fails_is_not_quarantined() {
    let e = env();
    create_destination(&e, "ds", "t");
    e.store
        .put_str(B, "ds/t/_config/ingest.json", r#"{"quarantine": true}"#);
    e.warehouse
        .fail_loads_of_content("x", csv_error("CSV Error on Line: 1"));
    let event = e.batch("ds/t/b1", &[("a.csv", "x\n"), ("b.csv", "x\n")]);
    assert!(matches!(e.handle(&event).unwrap(), Outcome::Failed { .. }));
    assert!(names_in(&e, "ds/t/_quarantine/").is_empty());
    assert_eq!(
        names_in(&e, "ds/t/b1/"),
        ["ds/t/b1/_SUCCESS", "ds/t/b1/a.csv", "ds/t/b1/b.csv"]
    );
}

fn transient(what: &str) -> WarehouseError {
    WarehouseError::Transient {
        what: format!("jobs.insert {what}"),
        message: "503 backendError".into(),
    }
}
