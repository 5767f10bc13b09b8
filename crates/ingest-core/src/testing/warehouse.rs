//! The [`Warehouse`] conformance suite.
//!
//! Each check of the semantics documented on the trait is a public `async fn` taking the
//! warehouse and a [`WarehouseFixture`], so a failing check can be run alone; [`run`] runs them
//! all. Job ids are made unique with [`WarehouseFixture::run_id`], because real warehouses keep
//! job ids forever; the checks that need a finished load share one (`…-ok`), submitting it when
//! it does not exist yet.
//! The suite does not sleep (the core has no runtime): it polls a running job a bounded number
//! of times, which suits warehouses whose jobs finish quickly (emulators, doubles).

use std::fmt::Display;

use chrono::{TimeZone, Utc};

use crate::ports::{
    JobRef, JobRequest, JobState, JobStatus, LoadRecord, TableRef, Warehouse, WarehouseError,
};

/// What the suite needs from the environment of the implementation under test.
#[derive(Debug, Clone)]
pub struct WarehouseFixture {
    /// A load job that succeeds (its `job_id` is a base; the suite appends a unique suffix).
    pub load_ok: JobRequest,
    /// The rows `load_ok` writes.
    pub load_ok_rows: u64,
    /// A load job that the warehouse accepts but that fails (e.g. a schema mismatch).
    pub load_failing: JobRequest,
    /// Where the suite records a [`LoadRecord`].
    pub state_table: TableRef,
    /// A token unique to this run (job ids persist in real warehouses).
    pub run_id: String,
}

/// How many times the suite asks for the status of a job before calling it stuck.
const MAX_POLLS: usize = 60;

/// Runs every check against `warehouse`. Panics with a message naming the check that failed.
///
/// Jobs submitted: `{load_ok.job_id}-{run_id}-ok` and `{load_failing.job_id}-{run_id}-fail`.
///
/// ```
/// use std::sync::Arc;
/// use ingest_core::ports::{JobKind, JobRequest, TableRef};
/// use ingest_core::testing::warehouse::{run, WarehouseFixture};
/// use ingest_memory::{MemoryStore, MemoryWarehouse};
///
/// let store = Arc::new(MemoryStore::new());
/// store.put_str("b", "ds/t/data.csv", "1,a\n2,b\n3,c\n");
/// let table = |t: &str| TableRef {
///     project: "p".into(), dataset: "ds".into(), table: t.into(), partition: None,
/// };
/// let load = |uri: &str| JobRequest {
///     project: "p".into(),
///     job_id: "conformance".into(),
///     location: None,
///     labels: Default::default(),
///     kind: JobKind::Load {
///         destination: table("t"),
///         source_uris: vec![uri.into()],
///         config: Default::default(),
///     },
/// };
/// let fixture = WarehouseFixture {
///     load_ok: load("gs://b/ds/t/data.csv"),
///     load_ok_rows: 3,
///     load_failing: load("gs://b/ds/t/missing.csv"),
///     state_table: table("load_state"),
///     run_id: "run-1".into(),
/// };
/// futures::executor::block_on(run(&MemoryWarehouse::with_store(store), &fixture));
/// ```
pub async fn run(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    unknown_job_status(warehouse, fixture).await;
    load_ok(warehouse, fixture).await;
    duplicate_submit(warehouse, fixture).await;
    child_jobs_of_load(warehouse, fixture).await;
    load_failing(warehouse, fixture).await;
    record_outcome(warehouse, fixture).await;
    recorded_outcomes(warehouse, fixture).await;
    time_partitioning(warehouse, fixture).await;
    create_table(warehouse, fixture).await;
}

/// Panics naming the check.
fn fail(check: &str, detail: impl Display) -> ! {
    panic!("Warehouse conformance check `{check}` failed: {detail}")
}

fn ok<T>(check: &str, what: &str, result: Result<T, WarehouseError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => fail(check, format!("{what}: unexpected error {error:?}")),
    }
}

fn job_ref(request: &JobRequest) -> JobRef {
    JobRef {
        project: request.project.clone(),
        job_id: request.job_id.clone(),
        location: request.location.clone(),
    }
}

/// The warehouse and fixture every check works with.
struct Suite<'a> {
    warehouse: &'a dyn Warehouse,
    fixture: &'a WarehouseFixture,
}

impl Suite<'_> {
    /// The shared load `…-ok`, finished: submitted here unless it exists already.
    async fn done_load(&self, check: &str) -> (JobRequest, JobStatus) {
        let request = self.request(&self.fixture.load_ok, "ok");
        match self.warehouse.submit(&request).await {
            Ok(_) | Err(WarehouseError::AlreadyExists { .. }) => {}
            Err(other) => fail(
                check,
                format!("submit {}: unexpected error {other:?}", request.job_id),
            ),
        }
        let status = self.wait_done(check, &job_ref(&request)).await;
        (request, status)
    }

    fn request(&self, base: &JobRequest, suffix: &str) -> JobRequest {
        JobRequest {
            job_id: format!("{}-{}-{suffix}", base.job_id, self.fixture.run_id),
            ..base.clone()
        }
    }

    /// Polls the job until it is done, at most [`MAX_POLLS`] times.
    async fn wait_done(&self, check: &str, job: &JobRef) -> JobStatus {
        for _ in 0..MAX_POLLS {
            let status = ok(
                check,
                &format!("job_status of {}", job.job_id),
                self.warehouse.job_status(job).await,
            );
            let Some(status) = status else {
                fail(
                    check,
                    format!("job_status of submitted job {} returned None", job.job_id),
                );
            };
            if status.job.job_id != job.job_id {
                fail(
                    check,
                    format!(
                        "job_status of {} reported job id {}",
                        job.job_id, status.job.job_id
                    ),
                );
            }
            if status.state == JobState::Done {
                return status;
            }
        }
        fail(
            check,
            format!("job {} was not done after {MAX_POLLS} polls", job.job_id),
        )
    }

    fn expect_labels(&self, check: &str, request: &JobRequest, status: &JobStatus) {
        for (key, value) in &request.labels {
            if status.labels.get(key) != Some(value) {
                fail(
                    check,
                    format!(
                        "job {} lacks label {key}={value}; its labels: {:?}",
                        request.job_id, status.labels
                    ),
                );
            }
        }
    }
}

/// The status of a job never submitted is `None`.
pub async fn unknown_job_status(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let check = "unknown_job_status";
    let base = &fixture.load_ok;
    let job = JobRef {
        project: base.project.clone(),
        job_id: format!("conformance-unknown-{}", fixture.run_id),
        location: base.location.clone(),
    };
    match ok(
        check,
        &format!("job_status of {}", job.job_id),
        warehouse.job_status(&job).await,
    ) {
        None => {}
        Some(status) => fail(
            check,
            format!("job {} was never submitted, got {status:?}", job.job_id),
        ),
    }
}

/// A load is submitted under its own id and project, finishes without error, writes
/// `load_ok_rows` rows and keeps its labels. It submits the shared load `…-ok`, so it fails when
/// that job exists already (a `run_id` used before).
pub async fn load_ok(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let suite = Suite { warehouse, fixture };
    let check = "load_ok_submit";
    let request = suite.request(&fixture.load_ok, "ok");
    let submitted = ok(
        check,
        &format!("submit {}", request.job_id),
        warehouse.submit(&request).await,
    );
    if submitted.job.job_id != request.job_id || submitted.job.project != request.project {
        fail(
            check,
            format!(
                "submitted {}/{} but the status names {}/{}",
                request.project, request.job_id, submitted.job.project, submitted.job.job_id
            ),
        );
    }
    if submitted.state == JobState::Done && submitted.error.is_some() {
        fail(
            check,
            format!("job {} failed: {:?}", request.job_id, submitted.error),
        );
    }

    let check = "load_ok_done";
    let status = suite.wait_done(check, &job_ref(&request)).await;
    if let Some(error) = &status.error {
        fail(
            check,
            format!(
                "job {} failed: {}: {}",
                request.job_id, error.reason, error.message
            ),
        );
    }
    if status.output_rows != Some(fixture.load_ok_rows) {
        fail(
            check,
            format!(
                "job {}: expected output_rows Some({}), got {:?}",
                request.job_id, fixture.load_ok_rows, status.output_rows
            ),
        );
    }
    if status.job.project != request.project {
        fail(
            check,
            format!(
                "job {} runs in project {}, status says {}",
                request.job_id, request.project, status.job.project
            ),
        );
    }
    suite.expect_labels(check, &request, &status);
}

/// A second submission of a job id is `AlreadyExists` naming it, and does not run the job
/// again.
pub async fn duplicate_submit(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let suite = Suite { warehouse, fixture };
    let check = "duplicate_submit";
    let done = &suite.done_load(check).await;
    let (request, first) = done;
    match warehouse.submit(request).await {
        Err(WarehouseError::AlreadyExists { job_id }) if job_id == request.job_id => {}
        other => fail(
            check,
            format!(
                "second submit of {}: expected AlreadyExists {{ job_id: {:?} }}, got {other:?}",
                request.job_id, request.job_id
            ),
        ),
    }

    let check = "duplicate_not_rerun";
    let status = suite.wait_done(check, &job_ref(request)).await;
    if status.output_rows != first.output_rows || status.error.is_some() {
        fail(
            check,
            format!(
                "after a duplicate submit, job {} reports output_rows {:?} and error {:?} \
                 (before: {:?}, no error)",
                request.job_id, status.output_rows, status.error, first.output_rows
            ),
        );
    }
}

/// A load job has no child jobs.
pub async fn child_jobs_of_load(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let suite = Suite { warehouse, fixture };
    let check = "child_jobs_of_load";
    let done = &suite.done_load(check).await;
    let (request, _) = done;
    let children = ok(
        check,
        &format!("child_jobs of {}", request.job_id),
        warehouse.child_jobs(&job_ref(request)).await,
    );
    if !children.is_empty() {
        fail(
            check,
            format!(
                "load job {} has no child jobs, got {children:?}",
                request.job_id
            ),
        );
    }
}

/// A load that cannot succeed is refused (`Rejected`) or finishes with an error that has a
/// reason and a message.
pub async fn load_failing(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let suite = Suite { warehouse, fixture };
    let check = "load_failing";
    let request = suite.request(&fixture.load_failing, "fail");
    let status = match warehouse.submit(&request).await {
        Ok(_) => suite.wait_done(check, &job_ref(&request)).await,
        Err(WarehouseError::Rejected { .. }) => return,
        Err(other) => fail(
            check,
            format!(
                "submit {}: expected a job that fails or Rejected, got {other:?}",
                request.job_id
            ),
        ),
    };
    match &status.error {
        Some(error) if !error.reason.is_empty() && !error.message.is_empty() => {}
        Some(error) => fail(
            check,
            format!(
                "job {} failed with an empty reason or message: {error:?}",
                request.job_id
            ),
        ),
        None => fail(
            check,
            format!(
                "job {} should fail but succeeded (output_rows {:?})",
                request.job_id, status.output_rows
            ),
        ),
    }
}

/// Recording the same outcome twice succeeds both times (and, in a warehouse that deduplicates,
/// makes one row).
pub async fn record_outcome(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let suite = Suite { warehouse, fixture };
    let check = "record_outcome";
    let done = &suite.done_load(check).await;
    let (request, status) = done;
    let ended_at = status
        .ended
        .or_else(|| Utc.with_ymd_and_hms(2020, 10, 26, 12, 0, 0).single())
        .unwrap_or_default();
    let record = LoadRecord {
        marker_uri: format!("gs://conformance/ds/t/{}/_SUCCESS", fixture.run_id),
        marker_generation: 1_600_000_000_000_001,
        destination: fixture.load_ok_destination(),
        batch_id: Some(fixture.run_id.clone()),
        job_ids: vec![request.job_id.clone()],
        mode: "load".to_string(),
        state: "done".to_string(),
        error: None,
        rows: status.output_rows,
        bytes: status.input_bytes,
        submitted_at: status.created,
        started_at: status.started,
        ended_at,
    };
    for attempt in ["first", "second"] {
        ok(
            check,
            &format!("{attempt} record_outcome into {}", fixture.state_table),
            warehouse
                .record_outcome(&fixture.state_table, &record)
                .await,
        );
    }
}

/// What [`Warehouse::record_outcome`] wrote, [`Warehouse::recorded_outcomes`] reads back (from
/// `ended_at` on, not before it), and a table that does not exist has no rows.
pub async fn recorded_outcomes(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let check = "recorded_outcomes";
    let ended_at = Utc::now();
    let record = LoadRecord {
        marker_uri: format!(
            "gs://conformance/ds/t/{}/read-back/_SUCCESS",
            fixture.run_id
        ),
        marker_generation: 1_600_000_000_000_002,
        destination: fixture.load_ok_destination(),
        batch_id: Some("read-back".to_string()),
        job_ids: vec![format!("conformance-{}-read-back", fixture.run_id)],
        mode: "load".to_string(),
        state: "failed".to_string(),
        error: Some("conformance: a recorded failure".to_string()),
        rows: None,
        bytes: None,
        submitted_at: None,
        started_at: None,
        ended_at,
    };
    let table = &fixture.state_table;
    ok(
        check,
        "record_outcome",
        warehouse.record_outcome(table, &record).await,
    );
    let since = ended_at - chrono::Duration::seconds(1);
    let rows = ok(
        check,
        "recorded_outcomes",
        warehouse.recorded_outcomes(table, since).await,
    );
    let Some(found) = rows.iter().find(|r| r.marker_uri == record.marker_uri) else {
        fail(
            check,
            format!("the row written is not read back from {table}: {rows:?}"),
        )
    };
    for (what, same) in [
        (
            "marker_generation",
            found.marker_generation == record.marker_generation,
        ),
        ("state", found.state == record.state),
        ("error", found.error == record.error),
        ("job_ids", found.job_ids == record.job_ids),
        ("destination", found.destination == record.destination),
        (
            "ended_at (to the second)",
            found.ended_at.timestamp() == ended_at.timestamp(),
        ),
    ] {
        if !same {
            fail(
                check,
                format!("{what} differs: wrote {record:?}, read {found:?}"),
            );
        }
    }
    let later = ended_at + chrono::Duration::seconds(60);
    let rows = ok(
        check,
        "recorded_outcomes later",
        warehouse.recorded_outcomes(table, later).await,
    );
    if rows.iter().any(|r| r.marker_uri == record.marker_uri) {
        fail(check, "a row that ended before `since` was returned");
    }
    let missing = TableRef {
        table: format!(
            "{}_missing_{}",
            table.table,
            fixture.run_id.replace('-', "_")
        ),
        ..table.clone()
    };
    let rows = ok(
        check,
        "recorded_outcomes of a missing table",
        warehouse.recorded_outcomes(&missing, since).await,
    );
    if !rows.is_empty() {
        fail(check, format!("a missing table has rows: {rows:?}"));
    }
}

/// [`Warehouse::time_partitioning`]: `None` for the unpartitioned destination of `load_ok`
/// (after it ran), [`WarehouseError::Rejected`] for a table that does not exist.
pub async fn time_partitioning(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let check = "time_partitioning";
    let suite = Suite { warehouse, fixture };
    let (request, _) = suite.done_load(check).await;
    let crate::ports::JobKind::Load { destination, .. } = &request.kind else {
        return;
    };
    let found = ok(
        check,
        "time_partitioning of load_ok's destination",
        warehouse.time_partitioning(destination).await,
    );
    if found.is_some() {
        fail(
            check,
            format!("{destination} is not partitioned, yet: {found:?}"),
        );
    }
    let missing = TableRef {
        table: format!("missing_{}", fixture.run_id.replace('-', "_")),
        partition: None,
        ..destination.clone()
    };
    match warehouse.time_partitioning(&missing).await {
        Err(WarehouseError::Rejected { .. }) => {}
        other => fail(
            check,
            format!("a missing table {missing} must be Rejected, got {other:?}"),
        ),
    }
}

/// `create_table` creates a missing table (then partitioned as the resource says) and answers
/// `false`, leaving it alone, when it exists.
pub async fn create_table(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let check = "create_table";
    let crate::ports::JobKind::Load { destination, .. } = &fixture.load_ok.kind else {
        return;
    };
    let table = TableRef {
        table: format!("created_{}", fixture.run_id.replace('-', "_")),
        partition: None,
        ..destination.clone()
    };
    let resource = serde_json::json!({
        "schema": {"fields": [{"name": "id", "type": "INT64"}, {"name": "at", "type": "TIMESTAMP"}]},
        "timePartitioning": {"type": "HOUR", "field": "at"},
    });
    let resource = resource.as_object().cloned().unwrap_or_default();
    let created = ok(
        check,
        "create_table",
        warehouse.create_table(&table, &resource).await,
    );
    if !created {
        fail(
            check,
            format!("{table} did not exist, yet create_table answered false"),
        );
    }
    let again = ok(
        check,
        "create_table again",
        warehouse.create_table(&table, &resource).await,
    );
    if again {
        fail(
            check,
            format!("{table} exists, yet a second create_table answered true"),
        );
    }
    let partitioning = ok(
        check,
        "time_partitioning",
        warehouse.time_partitioning(&table).await,
    );
    if partitioning.as_ref().map(|p| p.granularity)
        != Some(crate::ports::PartitionGranularity::Hour)
    {
        fail(
            check,
            format!("{table} was created HOUR-partitioned, yet: {partitioning:?}"),
        );
    }
}

impl WarehouseFixture {
    /// The destination of `load_ok` as a [`LoadRecord`] names it, or its job id for a query.
    fn load_ok_destination(&self) -> String {
        match &self.load_ok.kind {
            crate::ports::JobKind::Load { destination, .. } => destination.to_string(),
            crate::ports::JobKind::Query { .. } => self.load_ok.job_id.clone(),
        }
    }
}
