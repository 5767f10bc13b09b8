//! Call counting over any [`ObjectStore`] or [`Warehouse`]: how many calls of each method, and
//! how each ended (ok, not found, precondition failed, transient, other).
//!
//! Tests read the counts to prove request bounds ("a duplicate delivery costs one `jobs.get`");
//! the service exports them as metrics.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::faulty::{StoreMethod, WarehouseMethod};
use crate::ports::{
    JobRef, JobRequest, JobStatus, ListPage, LoadRecord, ObjectMeta, ObjectStore, PutMode,
    StoreError, TableRef, TimePartitioning, Warehouse, WarehouseError,
};

/// How a call ended, in few enough classes to be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallResult {
    /// It succeeded.
    Ok,
    /// Not found / already exists / precondition failed: an answer the caller acts on.
    Conflict,
    /// A transient failure (after the adapter's own retries).
    Transient,
    /// Any other failure.
    Failed,
}

impl CallResult {
    /// `ok`, `conflict`, `transient`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Conflict => "conflict",
            CallResult::Transient => "transient",
            CallResult::Failed => "failed",
        }
    }

    fn of_store<T>(result: &Result<T, StoreError>) -> CallResult {
        match result {
            Ok(_) => CallResult::Ok,
            Err(StoreError::Transient { .. }) => CallResult::Transient,
            Err(StoreError::Other { .. }) => CallResult::Failed,
            Err(_) => CallResult::Conflict,
        }
    }

    fn of_warehouse<T>(result: &Result<T, WarehouseError>) -> CallResult {
        match result {
            Ok(_) => CallResult::Ok,
            Err(WarehouseError::AlreadyExists { .. }) => CallResult::Conflict,
            Err(WarehouseError::Transient { .. }) => CallResult::Transient,
            Err(WarehouseError::Rejected { .. }) => CallResult::Failed,
        }
    }
}

/// How many calls of each [`ObjectStore`] method a [`CountingStore`] saw, failed calls
/// included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCalls {
    /// Calls of [`ObjectStore::list`].
    pub list: u64,
    /// Calls of [`ObjectStore::read`].
    pub read: u64,
    /// Calls of [`ObjectStore::stat`].
    pub stat: u64,
    /// Calls of [`ObjectStore::put`].
    pub put: u64,
    /// Calls of [`ObjectStore::delete`].
    pub delete: u64,
    /// Calls of [`ObjectStore::copy`].
    pub copy: u64,
}

impl StoreCalls {
    /// All calls.
    pub fn total(&self) -> u64 {
        self.list + self.read + self.stat + self.put + self.delete + self.copy
    }
}

/// How many calls of each [`Warehouse`] method a [`CountingWarehouse`] saw, failed calls
/// included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarehouseCalls {
    /// Calls of [`Warehouse::submit`].
    pub submit: u64,
    /// Calls of [`Warehouse::job_status`].
    pub job_status: u64,
    /// Calls of [`Warehouse::child_jobs`].
    pub child_jobs: u64,
    /// Calls of [`Warehouse::record_outcome`].
    pub record_outcome: u64,
    /// Calls of [`Warehouse::recorded_outcomes`].
    pub recorded_outcomes: u64,
    /// Calls of [`Warehouse::time_partitioning`].
    pub time_partitioning: u64,
    /// Calls of [`Warehouse::create_table`].
    pub create_table: u64,
    /// Calls of [`Warehouse::table_schema`].
    pub table_schema: u64,
}

impl WarehouseCalls {
    /// All calls.
    pub fn total(&self) -> u64 {
        self.submit
            + self.job_status
            + self.child_jobs
            + self.record_outcome
            + self.recorded_outcomes
            + self.time_partitioning
            + self.create_table
            + self.table_schema
    }
}

/// Calls per method (counted when they start, so a call that never ends counts too) and
/// results per (method, result) (counted when they end).
#[derive(Debug)]
struct Tally<M> {
    calls: Mutex<BTreeMap<M, u64>>,
    results: Mutex<BTreeMap<(M, CallResult), u64>>,
}

impl<M> Default for Tally<M> {
    fn default() -> Self {
        Tally {
            calls: Mutex::new(BTreeMap::new()),
            results: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<M: Ord + Copy> Tally<M> {
    fn start(&self, method: M) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(method)
            .or_insert(0) += 1;
    }

    fn end(&self, method: M, result: CallResult) {
        *self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method, result))
            .or_insert(0) += 1;
    }

    fn results(&self) -> BTreeMap<(M, CallResult), u64> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn calls(&self, method: M) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&method)
            .copied()
            .unwrap_or(0)
    }

    fn reset(&self) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// An [`ObjectStore`] that counts the calls it forwards to any other.
///
/// ```
/// use ingest_core::decorators::CountingStore;
/// use ingest_core::ports::ObjectStore;
/// use ingest_memory::MemoryStore;
///
/// let memory = MemoryStore::new();
/// memory.create_bucket("b");
/// let store = CountingStore::new(memory);
/// futures::executor::block_on(store.list("b", "ds/", None, None)).unwrap();
/// assert_eq!(store.calls().list, 1);
/// assert_eq!(store.calls().total(), 1);
/// ```
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    tally: Tally<StoreMethod>,
}

impl<S> CountingStore<S> {
    /// Wraps `inner`, with every count at 0.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            tally: Tally::default(),
        }
    }

    /// The calls by method.
    pub fn calls(&self) -> StoreCalls {
        StoreCalls {
            list: self.tally.calls(StoreMethod::List),
            read: self.tally.calls(StoreMethod::Read),
            stat: self.tally.calls(StoreMethod::Stat),
            put: self.tally.calls(StoreMethod::Put),
            delete: self.tally.calls(StoreMethod::Delete),
            copy: self.tally.calls(StoreMethod::Copy),
        }
    }

    /// The calls by method and result.
    pub fn by_result(&self) -> BTreeMap<(StoreMethod, CallResult), u64> {
        self.tally.results()
    }

    /// Sets every count back to 0.
    pub fn reset(&self) {
        self.tally.reset();
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        self.tally.start(StoreMethod::List);
        let result = self
            .inner
            .list(bucket, prefix, page_token, max_results)
            .await;
        self.tally
            .end(StoreMethod::List, CallResult::of_store(&result));
        result
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        self.tally.start(StoreMethod::Read);
        let result = self.inner.read(bucket, name).await;
        self.tally
            .end(StoreMethod::Read, CallResult::of_store(&result));
        result
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        self.tally.start(StoreMethod::Stat);
        let result = self.inner.stat(bucket, name).await;
        self.tally
            .end(StoreMethod::Stat, CallResult::of_store(&result));
        result
    }

    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        self.tally.start(StoreMethod::Put);
        let result = self.inner.put(bucket, name, content, mode).await;
        self.tally
            .end(StoreMethod::Put, CallResult::of_store(&result));
        result
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        self.tally.start(StoreMethod::Delete);
        let result = self.inner.delete(bucket, name, if_generation).await;
        self.tally
            .end(StoreMethod::Delete, CallResult::of_store(&result));
        result
    }
    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        to_bucket: &str,
        to_name: &str,
    ) -> Result<ObjectMeta, StoreError> {
        self.tally.start(StoreMethod::Copy);
        let result = self
            .inner
            .copy(bucket, name, generation, to_bucket, to_name)
            .await;
        self.tally
            .end(StoreMethod::Copy, CallResult::of_store(&result));
        result
    }
}

/// A [`Warehouse`] that counts the calls it forwards to any other.
///
/// ```
/// use ingest_core::decorators::CountingWarehouse;
/// use ingest_core::ports::{JobRef, Warehouse};
/// use ingest_memory::MemoryWarehouse;
///
/// let warehouse = CountingWarehouse::new(MemoryWarehouse::new());
/// let job = JobRef { project: "p".into(), job_id: "j".into(), location: None };
/// assert_eq!(futures::executor::block_on(warehouse.job_status(&job)), Ok(None));
/// assert_eq!(warehouse.calls().job_status, 1);
/// ```
#[derive(Debug)]
pub struct CountingWarehouse<W> {
    inner: W,
    tally: Tally<WarehouseMethod>,
}

impl<W> CountingWarehouse<W> {
    /// Wraps `inner`, with every count at 0.
    pub fn new(inner: W) -> Self {
        CountingWarehouse {
            inner,
            tally: Tally::default(),
        }
    }

    /// The calls by method.
    pub fn calls(&self) -> WarehouseCalls {
        WarehouseCalls {
            submit: self.tally.calls(WarehouseMethod::Submit),
            job_status: self.tally.calls(WarehouseMethod::JobStatus),
            child_jobs: self.tally.calls(WarehouseMethod::ChildJobs),
            record_outcome: self.tally.calls(WarehouseMethod::RecordOutcome),
            recorded_outcomes: self.tally.calls(WarehouseMethod::RecordedOutcomes),
            time_partitioning: self.tally.calls(WarehouseMethod::TimePartitioning),
            create_table: self.tally.calls(WarehouseMethod::CreateTable),
            table_schema: self.tally.calls(WarehouseMethod::TableSchema),
        }
    }

    /// The calls by method and result.
    pub fn by_result(&self) -> BTreeMap<(WarehouseMethod, CallResult), u64> {
        self.tally.results()
    }

    /// Sets every count back to 0.
    pub fn reset(&self) {
        self.tally.reset();
    }

    /// The wrapped warehouse.
    pub fn inner(&self) -> &W {
        &self.inner
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<W: Warehouse> Warehouse for CountingWarehouse<W> {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        self.tally.start(WarehouseMethod::Submit);
        let result = self.inner.submit(request).await;
        self.tally
            .end(WarehouseMethod::Submit, CallResult::of_warehouse(&result));
        result
    }

    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        self.tally.start(WarehouseMethod::JobStatus);
        let result = self.inner.job_status(job).await;
        self.tally.end(
            WarehouseMethod::JobStatus,
            CallResult::of_warehouse(&result),
        );
        result
    }

    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        self.tally.start(WarehouseMethod::ChildJobs);
        let result = self.inner.child_jobs(parent).await;
        self.tally.end(
            WarehouseMethod::ChildJobs,
            CallResult::of_warehouse(&result),
        );
        result
    }

    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        self.tally.start(WarehouseMethod::RecordOutcome);
        let result = self.inner.record_outcome(table, record).await;
        self.tally.end(
            WarehouseMethod::RecordOutcome,
            CallResult::of_warehouse(&result),
        );
        result
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        self.tally.start(WarehouseMethod::RecordedOutcomes);
        let result = self.inner.recorded_outcomes(table, since).await;
        self.tally.end(
            WarehouseMethod::RecordedOutcomes,
            CallResult::of_warehouse(&result),
        );
        result
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        self.tally.start(WarehouseMethod::TimePartitioning);
        let result = self.inner.time_partitioning(table).await;
        self.tally.end(
            WarehouseMethod::TimePartitioning,
            CallResult::of_warehouse(&result),
        );
        result
    }
    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        self.tally.start(WarehouseMethod::CreateTable);
        let result = self.inner.create_table(table, resource).await;
        self.tally.end(
            WarehouseMethod::CreateTable,
            CallResult::of_warehouse(&result),
        );
        result
    }
    async fn table_schema(
        &self,
        table: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        self.tally.start(WarehouseMethod::TableSchema);
        let result = self.inner.table_schema(table).await;
        self.tally.end(
            WarehouseMethod::TableSchema,
            CallResult::of_warehouse(&result),
        );
        result
    }
}
