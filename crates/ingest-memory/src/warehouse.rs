//! [`MemoryWarehouse`]: a [`Warehouse`] held in memory that runs load jobs against a
//! [`MemoryStore`], with job-level failures and inspection helpers. Call counting and call
//! failures are the core's decorators (`ingest_core::decorators`).

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use ingest_core::ports::{
    Clock, JobError, JobKind, JobRef, JobRequest, JobState, JobStatus, LoadRecord,
    PartitionGranularity, TableRef, TimePartitioning, Warehouse, WarehouseError,
};
use serde_json::{Map, Value};

use crate::clock::MemoryClock;
use crate::store::MemoryStore;

/// What a query job reports when it is done, as a query responder decides
/// ([`MemoryWarehouse::set_query_responder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    /// `INSERT`, `MERGE`, `SCRIPT`, `SELECT`, …
    pub statement_type: Option<String>,
    /// Rows affected by DML; also reported as the job's `output_rows`.
    pub dml_affected_rows: Option<u64>,
    /// Bytes processed.
    pub input_bytes: Option<u64>,
}

impl QueryOutcome {
    /// A DML statement of `statement_type` that affected `rows` rows.
    ///
    /// ```
    /// use ingest_memory::QueryOutcome;
    /// let outcome = QueryOutcome::dml("MERGE", 7);
    /// assert_eq!(outcome.statement_type.as_deref(), Some("MERGE"));
    /// assert_eq!(outcome.dml_affected_rows, Some(7));
    /// ```
    pub fn dml(statement_type: &str, rows: u64) -> Self {
        QueryOutcome {
            statement_type: Some(statement_type.to_string()),
            dml_affected_rows: Some(rows),
            input_bytes: None,
        }
    }
}

/// Decides how a query job ends: its [`QueryOutcome`] or the [`JobError`] it fails with.
pub type QueryResponder = dyn Fn(&JobRequest) -> Result<QueryOutcome, JobError> + Send + Sync;

/// A table's rows, keyed by (project, dataset, table without decorator, partition decorator).
type TableKey = (String, String, String, Option<String>);

fn table_key(table: &TableRef) -> TableKey {
    (
        table.project.clone(),
        table.dataset.clone(),
        table.table.clone(),
        table.partition.clone(),
    )
}

#[derive(Debug)]
struct JobEntry {
    /// The final status once the job ran (or a pending placeholder while it runs).
    status: JobStatus,
    /// `job_status` calls left that report the job as running.
    polls_left: u32,
}

impl JobEntry {
    fn visible_status(&self) -> JobStatus {
        if self.polls_left == 0 {
            return self.status.clone();
        }
        let mut running = JobStatus::new(self.status.job.clone(), JobState::Running);
        running.labels = self.status.labels.clone();
        running.created = self.status.created;
        running.started = self.status.started;
        running
    }
}

struct WarehouseState {
    store: Option<Arc<MemoryStore>>,
    clock: MemoryClock,
    jobs: HashMap<(String, String), JobEntry>,
    submitted: Vec<JobRequest>,
    tables: BTreeMap<TableKey, u64>,
    records: Vec<(TableRef, LoadRecord)>,
    job_failures: Vec<(String, JobError)>,
    job_duration: u32,
    query_responder: Option<Arc<QueryResponder>>,
    child_jobs: HashMap<String, Vec<JobStatus>>,
    partitioning: HashMap<TableKey, TimePartitioning>,
    schemas: HashMap<TableKey, Value>,
    /// Loads of an object whose content holds the pattern fail with the error.
    corrupt_content: Vec<(Vec<u8>, JobError)>,
}

/// A [`Warehouse`] held in memory, behaving like BigQuery where the core relies on it.
///
/// - Job ids are unique per project: submitting an existing id is
///   [`WarehouseError::AlreadyExists`] and does not run the job again. An id outside
///   `[A-Za-z0-9_-]{1,1024}` or an unknown `writeDisposition` / `createDisposition` is
///   [`WarehouseError::Rejected`].
/// - Jobs run at submission and are [`JobState::Done`] at once, unless
///   [`MemoryWarehouse::set_job_duration`] makes them report `Running` for a number of
///   [`Warehouse::job_status`] calls first (their effect is applied at submission either way).
/// - Load jobs: see [`MemoryWarehouse::with_store`]. Each table holds a row count per partition;
///   `WRITE_APPEND` (the default) adds, `WRITE_TRUNCATE` replaces (the partition when the
///   destination has a decorator, else the whole table), `WRITE_EMPTY` fails with reason
///   `invalid` when the destination already has rows. `CREATE_NEVER` fails with `notFound`
///   when the table does not exist.
/// - Query jobs change no table; they end as the query responder says (default: `INSERT`
///   affecting 1 row).
/// - [`Warehouse::record_outcome`] keeps every record ([`MemoryWarehouse::records`]) and adds
///   one row to the state table.
///
/// Clones share the same state.
///
/// ```
/// use std::sync::Arc;
/// use ingest_core::ports::{JobKind, JobRequest, TableRef, Warehouse, WarehouseError};
/// use ingest_memory::{MemoryStore, MemoryWarehouse};
///
/// # futures::executor::block_on(async {
/// let store = Arc::new(MemoryStore::new());
/// store.put_str("b", "ds/t/part-0.csv", "1,a\n2,b\n");
/// let warehouse = MemoryWarehouse::with_store(store);
/// let table = TableRef {
///     project: "p".into(), dataset: "ds".into(), table: "t".into(), partition: None,
/// };
/// let request = JobRequest {
///     project: "p".into(),
///     job_id: "load-1".into(),
///     location: None,
///     labels: Default::default(),
///     kind: JobKind::Load {
///         destination: table.clone(),
///         source_uris: vec!["gs://b/ds/t/*".into()],
///         config: Default::default(),
///     },
/// };
/// let status = warehouse.submit(&request).await.unwrap();
/// assert!(status.succeeded());
/// assert_eq!(status.output_rows, Some(2));
/// assert_eq!(warehouse.table_rows(&table), 2);
/// assert!(matches!(
///     warehouse.submit(&request).await,
///     Err(WarehouseError::AlreadyExists { .. })
/// ));
/// assert_eq!(warehouse.table_rows(&table), 2);
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryWarehouse {
    inner: Arc<Mutex<WarehouseState>>,
}

impl fmt::Debug for MemoryWarehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryWarehouse")
            .field("store", &state.store.is_some())
            .field("jobs", &state.jobs.len())
            .field("tables", &state.tables)
            .field("records", &state.records.len())
            .field("job_duration", &state.job_duration)
            .finish()
    }
}

impl Default for MemoryWarehouse {
    fn default() -> Self {
        MemoryWarehouse::new()
    }
}

impl MemoryWarehouse {
    /// A warehouse with no object store: load jobs succeed and write 0 rows whatever their
    /// source URIs.
    pub fn new() -> Self {
        MemoryWarehouse {
            inner: Arc::new(Mutex::new(WarehouseState {
                store: None,
                clock: MemoryClock::new(),
                jobs: HashMap::new(),
                submitted: Vec::new(),
                tables: BTreeMap::new(),
                records: Vec::new(),
                job_failures: Vec::new(),
                job_duration: 0,
                query_responder: None,
                child_jobs: HashMap::new(),
                partitioning: HashMap::new(),
                schemas: HashMap::new(),
                corrupt_content: Vec::new(),
            })),
        }
    }

    /// A warehouse whose load jobs read their `gs://bucket/name` source URIs from `store`
    /// (directly, not through any decorator around the store).
    ///
    /// - A `*` in the object name is a wildcard (any run of characters, `/` included); a
    ///   pattern or a URI matching no object, or a missing bucket, fails the job with reason
    ///   `notFound` and a message naming the URI.
    /// - Rows are the non-blank lines of each object; for CSV (the default `sourceFormat`)
    ///   `skipLeadingRows` lines are skipped per object. Content that is not UTF-8 (gzip,
    ///   Parquet, Avro, ORC…) counts as one row per non-empty object.
    /// - `input_bytes` is the sum of the objects' sizes.
    pub fn with_store(store: Arc<MemoryStore>) -> Self {
        let warehouse = MemoryWarehouse::new();
        warehouse.lock().store = Some(store);
        warehouse
    }

    /// Uses `clock` for the `created` / `started` / `ended` times of jobs.
    pub fn with_clock(self, clock: MemoryClock) -> Self {
        self.lock().clock = clock;
        self
    }

    /// Makes jobs submitted from now on report [`JobState::Running`] (on submission and) for
    /// their first `polls` [`Warehouse::job_status`] calls; 0 (the default) means done at once.
    pub fn set_job_duration(&self, polls: u32) {
        self.lock().job_duration = polls;
    }

    /// Decides how query jobs end. The responder runs without any lock held.
    ///
    /// ```
    /// use ingest_core::ports::JobError;
    /// use ingest_memory::{MemoryWarehouse, QueryOutcome};
    ///
    /// let warehouse = MemoryWarehouse::new();
    /// warehouse.set_query_responder(|request| {
    ///     if request.job_id.contains("bad") {
    ///         Err(JobError { reason: "invalidQuery".into(), message: "Syntax error".into() })
    ///     } else {
    ///         Ok(QueryOutcome::dml("MERGE", 10))
    ///     }
    /// });
    /// ```
    pub fn set_query_responder(
        &self,
        responder: impl Fn(&JobRequest) -> Result<QueryOutcome, JobError> + Send + Sync + 'static,
    ) {
        self.lock().query_responder = Some(Arc::new(responder));
    }

    /// Makes every job whose id contains `job_id_substring`, submitted from now on, end
    /// [`JobState::Done`] with `error` and without effect. The rule stays until
    /// [`MemoryWarehouse::clear_job_failures`].
    pub fn fail_job(&self, job_id_substring: &str, error: JobError) {
        self.lock()
            .job_failures
            .push((job_id_substring.to_string(), error));
    }

    /// Makes every load that reads an object whose content contains `pattern` end
    /// [`JobState::Done`] with `error` and without effect, as a corrupt file does in BigQuery
    /// (BigQuery's error may or may not name the file; `error` says what this one says).
    pub fn fail_loads_of_content(&self, pattern: &str, error: JobError) {
        self.lock()
            .corrupt_content
            .push((pattern.as_bytes().to_vec(), error));
    }

    /// Drops every rule set by [`MemoryWarehouse::fail_job`].
    pub fn clear_job_failures(&self) {
        self.lock().job_failures.clear();
    }

    /// Sets what [`Warehouse::child_jobs`] returns for the job `parent_job_id` (in any project).
    pub fn set_child_jobs(&self, parent_job_id: &str, children: Vec<JobStatus>) {
        self.lock()
            .child_jobs
            .insert(parent_job_id.to_string(), children);
    }

    /// Every job created so far, in submission order (rejected and failed submissions are not
    /// included).
    pub fn submitted(&self) -> Vec<JobRequest> {
        self.lock().submitted.clone()
    }

    /// Every record appended by [`Warehouse::record_outcome`], in order.
    pub fn records(&self) -> Vec<(TableRef, LoadRecord)> {
        self.lock().records.clone()
    }

    /// The final status of the job `job_id` (in any project), without counting a call and
    /// whether or not it still reports running.
    pub fn job(&self, job_id: &str) -> Option<JobStatus> {
        self.lock()
            .jobs
            .iter()
            .find(|((_, id), _)| id == job_id)
            .map(|(_, entry)| entry.status.clone())
    }

    /// The rows of a table: of its partition when `table` has a decorator, else of every
    /// partition together; 0 when the table does not exist.
    pub fn table_rows(&self, table: &TableRef) -> u64 {
        self.lock().rows_of(table)
    }

    /// Whether the table (any of its partitions) exists.
    pub fn table_exists(&self, table: &TableRef) -> bool {
        let unpartitioned = TableRef {
            partition: None,
            ..table.clone()
        };
        self.lock().table_exists(&unpartitioned)
    }

    /// Makes the table (created when missing, with no rows) partitioned by time as
    /// `partitioning` says, for [`Warehouse::time_partitioning`].
    pub fn set_time_partitioning(&self, table: &TableRef, partitioning: TimePartitioning) {
        let base = TableRef {
            partition: None,
            ..table.clone()
        };
        let mut state = self.lock();
        state.tables.entry(table_key(&base)).or_insert(0);
        state.partitioning.insert(table_key(&base), partitioning);
    }

    /// Creates the table (or partition) when missing and sets its rows.
    pub fn set_table_rows(&self, table: &TableRef, rows: u64) {
        self.lock().tables.insert(table_key(table), rows);
    }

    fn lock(&self) -> MutexGuard<'_, WarehouseState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the final status of a job and returns what submission reports.
    fn finish(&self, key: (String, String), status: JobStatus) -> JobStatus {
        let mut state = self.lock();
        let entry = JobEntry {
            status,
            polls_left: state.job_duration,
        };
        let visible = entry.visible_status();
        state.jobs.insert(key, entry);
        visible
    }
}

impl WarehouseState {
    fn rows_of(&self, table: &TableRef) -> u64 {
        match &table.partition {
            Some(_) => self.tables.get(&table_key(table)).copied().unwrap_or(0),
            None => self.partitions(table).map(|(_, rows)| *rows).sum(),
        }
    }

    fn table_exists(&self, table: &TableRef) -> bool {
        self.partitions(table).next().is_some()
    }

    /// Every partition (and the undecorated part) of the table `table` names, decorator
    /// ignored.
    fn partitions<'a>(
        &'a self,
        table: &'a TableRef,
    ) -> impl Iterator<Item = (&'a TableKey, &'a u64)> + 'a {
        let start = (
            table.project.clone(),
            table.dataset.clone(),
            table.table.clone(),
            None,
        );
        self.tables
            .range(start..)
            .take_while(move |((p, d, t, _), _)| {
                p == &table.project && d == &table.dataset && t == &table.table
            })
    }

    /// Applies the rows a load read to its destination, or says why the load fails.
    fn apply_load(
        &mut self,
        destination: &TableRef,
        dispositions: &Dispositions,
        rows: u64,
    ) -> Result<(), JobError> {
        if dispositions.create_never && !self.table_exists(destination) {
            return Err(JobError {
                reason: "notFound".to_string(),
                message: format!(
                    "Not found: Table {}:{}.{}",
                    destination.project, destination.dataset, destination.table
                ),
            });
        }
        match dispositions.write {
            WriteDisposition::Empty if self.rows_of(destination) > 0 => Err(JobError {
                reason: "invalid".to_string(),
                message: format!(
                    "Table {destination} is not empty: writeDisposition WRITE_EMPTY needs an \
                     empty destination"
                ),
            }),
            WriteDisposition::Append | WriteDisposition::Empty => {
                *self.tables.entry(table_key(destination)).or_insert(0) += rows;
                Ok(())
            }
            WriteDisposition::Truncate => {
                if destination.partition.is_none() {
                    let keys: Vec<TableKey> = self
                        .partitions(destination)
                        .map(|(key, _)| key.clone())
                        .collect();
                    for key in keys {
                        self.tables.remove(&key);
                    }
                }
                self.tables.insert(table_key(destination), rows);
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum WriteDisposition {
    #[default]
    Append,
    Truncate,
    Empty,
}

#[derive(Debug, Clone, Copy, Default)]
struct Dispositions {
    write: WriteDisposition,
    create_never: bool,
}

fn config_string<'a>(
    config: &'a Map<String, Value>,
    key: &str,
    job_id: &str,
) -> Result<Option<&'a str>, WarehouseError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(WarehouseError::Rejected {
            what: format!("job {job_id}"),
            message: format!("Invalid value for {key}: {other} is not a string"),
        }),
    }
}

fn parse_dispositions(
    config: &Map<String, Value>,
    job_id: &str,
) -> Result<Dispositions, WarehouseError> {
    let rejected = |key: &str, value: &str| WarehouseError::Rejected {
        what: format!("job {job_id}"),
        message: format!("Invalid value for {key}: {value}"),
    };
    let write = match config_string(config, "writeDisposition", job_id)? {
        None | Some("WRITE_APPEND") => WriteDisposition::Append,
        Some("WRITE_TRUNCATE") => WriteDisposition::Truncate,
        Some("WRITE_EMPTY") => WriteDisposition::Empty,
        Some(other) => return Err(rejected("writeDisposition", other)),
    };
    let create_never = match config_string(config, "createDisposition", job_id)? {
        None | Some("CREATE_IF_NEEDED") => false,
        Some("CREATE_NEVER") => true,
        Some(other) => return Err(rejected("createDisposition", other)),
    };
    Ok(Dispositions {
        write,
        create_never,
    })
}

fn validate_job_id(job_id: &str) -> Result<(), WarehouseError> {
    let valid = !job_id.is_empty()
        && job_id.len() <= 1024
        && job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(WarehouseError::Rejected {
            what: format!("job {job_id}"),
            message: "Invalid job ID: only letters, digits, '_' and '-' are allowed, at most \
                      1024 characters"
                .to_string(),
        })
    }
}

/// What a load read from its sources.
#[derive(Debug, Default)]
struct LoadRead {
    rows: u64,
    bytes: u64,
}

fn not_found_uri(uri: &str) -> JobError {
    JobError {
        reason: "notFound".to_string(),
        message: format!("Not found: URI {uri}"),
    }
}

/// Reads every source URI of a load from `store` and counts rows and bytes.
fn read_sources(
    store: &MemoryStore,
    source_uris: &[String],
    config: &Map<String, Value>,
    corrupt: &[(Vec<u8>, JobError)],
) -> Result<LoadRead, JobError> {
    let format = config
        .get("sourceFormat")
        .and_then(Value::as_str)
        .unwrap_or("CSV");
    let is_csv = format.eq_ignore_ascii_case("CSV");
    let is_text = is_csv || format.eq_ignore_ascii_case("NEWLINE_DELIMITED_JSON");
    let skip = if is_csv {
        match config.get("skipLeadingRows") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    } else {
        0
    };
    let mut read = LoadRead::default();
    for uri in source_uris {
        let Some((bucket, name)) = uri
            .strip_prefix("gs://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(bucket, name)| !bucket.is_empty() && !name.is_empty())
        else {
            return Err(JobError {
                reason: "invalid".to_string(),
                message: format!("Invalid source URI {uri}: expected gs://bucket/object"),
            });
        };
        let contents: Vec<Arc<Vec<u8>>> = match name.split_once('*') {
            Some((before, after)) => store
                .snapshot(bucket, before)
                .unwrap_or_default()
                .into_iter()
                .filter(|(object, _)| {
                    object.len() >= before.len() + after.len() && object.ends_with(after)
                })
                .map(|(_, content)| content)
                .collect(),
            None => store.object(bucket, name).into_iter().collect(),
        };
        if contents.is_empty() {
            return Err(not_found_uri(uri));
        }
        for content in contents {
            let bad = corrupt.iter().find(|(pattern, _)| {
                !pattern.is_empty() && content.windows(pattern.len()).any(|w| w == &pattern[..])
            });
            if let Some((_, error)) = bad {
                return Err(error.clone());
            }
            read.bytes += content.len() as u64;
            read.rows += count_rows(&content, is_text, skip);
        }
    }
    Ok(read)
}

/// Rows of one object: non-blank lines minus `skip` for text, one per non-empty binary object.
fn count_rows(content: &[u8], is_text: bool, skip: u64) -> u64 {
    if content.is_empty() {
        return 0;
    }
    match std::str::from_utf8(content) {
        Ok(text) if is_text => {
            let lines = text.lines().filter(|line| !line.trim().is_empty()).count() as u64;
            lines.saturating_sub(skip)
        }
        _ => 1,
    }
}

#[async_trait]
impl Warehouse for MemoryWarehouse {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        let key = (request.project.clone(), request.job_id.clone());
        let job = JobRef {
            project: request.project.clone(),
            job_id: request.job_id.clone(),
            location: request.location.clone(),
        };
        // Phase 1, locked: admission, then a pending placeholder that reserves the id.
        let (store, responder, failure, created, dispositions, corrupt) = {
            let mut state = self.lock();
            validate_job_id(&request.job_id)?;
            let dispositions = match &request.kind {
                JobKind::Load { config, .. } => parse_dispositions(config, &request.job_id)?,
                JobKind::Query { .. } => Dispositions::default(),
            };
            if state.jobs.contains_key(&key) {
                return Err(WarehouseError::AlreadyExists {
                    job_id: request.job_id.clone(),
                });
            }
            let created = state.clock.now();
            let mut placeholder = JobStatus::new(job.clone(), JobState::Pending);
            placeholder.labels = request.labels.clone();
            placeholder.created = Some(created);
            state.jobs.insert(
                key.clone(),
                JobEntry {
                    status: placeholder,
                    polls_left: 0,
                },
            );
            state.submitted.push(request.clone());
            let failure = state
                .job_failures
                .iter()
                .find(|(pattern, _)| request.job_id.contains(pattern.as_str()))
                .map(|(_, error)| error.clone());
            (
                state.store.clone(),
                state.query_responder.clone(),
                failure,
                created,
                dispositions,
                state.corrupt_content.clone(),
            )
        };

        let mut status = JobStatus::new(job, JobState::Done);
        status.labels = request.labels.clone();
        status.created = Some(created);
        status.started = Some(created);
        if let Some(error) = failure {
            status.error = Some(error);
            status.ended = Some(self.lock().clock.now());
            return Ok(self.finish(key, status));
        }

        // Phase 2, unlocked: read the sources or ask the responder.
        match &request.kind {
            JobKind::Load {
                destination,
                source_uris,
                config,
            } => {
                let read = match &store {
                    Some(store) => read_sources(store, source_uris, config, &corrupt),
                    None => Ok(LoadRead::default()),
                };
                // Phase 3, locked: apply to the destination.
                let mut state = self.lock();
                let applied = read.and_then(|read| {
                    state.apply_load(destination, &dispositions, read.rows)?;
                    Ok(read)
                });
                match applied {
                    Ok(read) => {
                        status.output_rows = Some(read.rows);
                        status.input_bytes = Some(read.bytes);
                    }
                    Err(error) => status.error = Some(error),
                }
                status.ended = Some(state.clock.now());
            }
            JobKind::Query { .. } => {
                let outcome = match &responder {
                    Some(responder) => responder(request),
                    None => Ok(QueryOutcome::dml("INSERT", 1)),
                };
                match outcome {
                    Ok(outcome) => {
                        status.statement_type = outcome.statement_type;
                        status.dml_affected_rows = outcome.dml_affected_rows;
                        status.output_rows = outcome.dml_affected_rows;
                        status.input_bytes = outcome.input_bytes;
                    }
                    Err(error) => status.error = Some(error),
                }
                status.ended = Some(self.lock().clock.now());
            }
        }
        Ok(self.finish(key, status))
    }

    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        let mut state = self.lock();
        let key = (job.project.clone(), job.job_id.clone());
        let now = state.clock.now();
        Ok(state.jobs.get_mut(&key).map(|entry| {
            let visible = entry.visible_status();
            if entry.polls_left > 0 {
                entry.polls_left -= 1;
                if entry.polls_left == 0 {
                    // A job that reported running ends when it is first seen done.
                    entry.status.ended = Some(now);
                }
            }
            visible
        }))
    }

    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        let state = self.lock();
        Ok(state
            .child_jobs
            .get(&parent.job_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        let mut state = self.lock();
        state.records.push((table.clone(), record.clone()));
        *state.tables.entry(table_key(table)).or_insert(0) += 1;
        Ok(())
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        let state = self.lock();
        Ok(state
            .records
            .iter()
            .filter(|(t, r)| table_key(t) == table_key(table) && r.ended_at >= since)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        let base = TableRef {
            partition: None,
            ..table.clone()
        };
        let state = self.lock();
        if let Some(partitioning) = state.partitioning.get(&table_key(&base)) {
            return Ok(Some(partitioning.clone()));
        }
        if state.table_exists(&base) {
            return Ok(None);
        }
        Err(WarehouseError::Rejected {
            what: base.to_string(),
            message: "Not found: Table".to_string(),
        })
    }

    /// Creates the table with no rows (and its `timePartitioning`, for
    /// [`Warehouse::time_partitioning`]); `false` when it exists. The schema is not kept.
    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        let base = TableRef {
            partition: None,
            ..table.clone()
        };
        let mut state = self.lock();
        if state.table_exists(&base) {
            return Ok(false);
        }
        state.tables.insert(table_key(&base), 0);
        let granularity = resource
            .get("timePartitioning")
            .map(|p| p.get("type").and_then(|t| t.as_str()).unwrap_or("DAY"))
            .and_then(PartitionGranularity::parse);
        if let Some(granularity) = granularity {
            let field = resource["timePartitioning"]
                .get("field")
                .and_then(|f| f.as_str())
                .map(str::to_string);
            state
                .partitioning
                .insert(table_key(&base), TimePartitioning { granularity, field });
        }
        if let Some(schema) = resource.get("schema") {
            state.schemas.insert(table_key(&base), schema.clone());
        }
        Ok(true)
    }

    /// The schema given to [`Warehouse::create_table`]; `None` for a table created another
    /// way.
    async fn table_schema(&self, table: &TableRef) -> Result<Option<Value>, WarehouseError> {
        let base = TableRef {
            partition: None,
            ..table.clone()
        };
        let state = self.lock();
        if !state.table_exists(&base) {
            return Err(WarehouseError::Rejected {
                what: base.to_string(),
                message: "Not found: Table".to_string(),
            });
        }
        Ok(state.schemas.get(&table_key(&base)).cloned())
    }
}
