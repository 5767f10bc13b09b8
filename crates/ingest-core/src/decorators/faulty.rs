//! Fault injection over any [`ObjectStore`] or [`Warehouse`]: a call fails before it is made,
//! its answer is lost after it was made, or it never answers.
//!
//! These are the failures that matter for exactly-once: "lost answer" is a `jobs.insert` that
//! created the job but whose response never arrived; "hang" is a process killed while it
//! waits (the caller drops the future).

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{
    JobRef, JobRequest, JobStatus, ListPage, LoadRecord, ObjectMeta, ObjectStore, PutMode,
    StoreError, TableRef, TimePartitioning, Warehouse, WarehouseError,
};

/// What an injected fault does to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault<E> {
    /// The call is not made; the caller gets this error.
    Fail(E),
    /// The call is made and takes effect, but the caller gets this error instead of the answer
    /// (a timeout after the server acted).
    LoseAnswer(E),
    /// The call never answers: the future stays pending until the caller drops it (a killed
    /// process, a hung connection). The call is not made.
    Hang,
}

/// A method of [`ObjectStore`], to name it in fault injection and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreMethod {
    /// [`ObjectStore::list`].
    List,
    /// [`ObjectStore::read`].
    Read,
    /// [`ObjectStore::stat`].
    Stat,
    /// [`ObjectStore::put`].
    Put,
    /// [`ObjectStore::delete`].
    Delete,
    /// [`ObjectStore::copy`].
    Copy,
}

/// A method of [`Warehouse`], to name it in fault injection and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarehouseMethod {
    /// [`Warehouse::submit`].
    Submit,
    /// [`Warehouse::job_status`].
    JobStatus,
    /// [`Warehouse::child_jobs`].
    ChildJobs,
    /// [`Warehouse::record_outcome`].
    RecordOutcome,
    /// [`Warehouse::recorded_outcomes`].
    RecordedOutcomes,
    /// [`Warehouse::time_partitioning`].
    TimePartitioning,
    /// [`Warehouse::create_table`].
    CreateTable,
    /// [`Warehouse::table_schema`].
    TableSchema,
}

/// A rule asked before every call, with the method and what the call is about (the object
/// name, the listing's prefix, the job id, the table); `Some(fault)` applies it to that call.
/// It runs without any lock held, so it may block or use the wrapped port itself (to play a
/// concurrent writer).
pub type FaultRule<M, E> = Box<dyn Fn(M, &str) -> Option<Fault<E>> + Send + Sync>;

/// A [`FaultRule`], shared so that it runs without the plan's lock held.
type SharedRule<M, E> = std::sync::Arc<dyn Fn(M, &str) -> Option<Fault<E>> + Send + Sync>;

/// Faults queued per method, taken one per call in order, and an optional rule.
struct Plan<M, E> {
    queued: Mutex<HashMap<M, VecDeque<Fault<E>>>>,
    rule: Mutex<Option<SharedRule<M, E>>>,
}

impl<M, E> std::fmt::Debug for Plan<M, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").finish_non_exhaustive()
    }
}

impl<M: std::hash::Hash + Eq + Copy, E> Plan<M, E> {
    fn new() -> Self {
        Plan {
            queued: Mutex::new(HashMap::new()),
            rule: Mutex::new(None),
        }
    }

    fn push(&self, method: M, fault: Fault<E>) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(method)
            .or_default()
            .push_back(fault);
    }

    /// The fault for this call: a queued one first, else the rule's answer.
    fn take(&self, method: M, about: &str) -> Option<Fault<E>> {
        let queued = self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&method)
            .and_then(VecDeque::pop_front);
        if queued.is_some() {
            return queued;
        }
        let rule = self.rule.lock().unwrap_or_else(|e| e.into_inner()).clone();
        rule.and_then(|rule| rule(method, about))
    }

    fn set_rule(&self, rule: FaultRule<M, E>) {
        *self.rule.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::from(rule));
    }

    fn clear(&self) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.rule.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Applies `fault`, if any, around `call`.
async fn apply<T, E, F>(fault: Option<Fault<E>>, call: F) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    match fault {
        None => call.await,
        Some(Fault::Fail(e)) => Err(e),
        Some(Fault::LoseAnswer(e)) => {
            let _ = call.await;
            Err(e)
        }
        Some(Fault::Hang) => std::future::pending().await,
    }
}

/// An [`ObjectStore`] whose calls fail as told, wrapping any other.
///
/// ```
/// use ingest_core::decorators::{Fault, FaultyStore, StoreMethod};
/// use ingest_core::ports::{ObjectStore, StoreError};
/// use ingest_memory::MemoryStore;
///
/// let memory = MemoryStore::new();
/// memory.create_bucket("b");
/// let store = FaultyStore::new(memory);
/// store.inject(StoreMethod::List, Fault::Fail(StoreError::Transient {
///     bucket: "b".into(), name: "".into(), message: "503".into(),
/// }));
/// let first = futures::executor::block_on(store.list("b", "", None, None));
/// assert!(first.unwrap_err().is_transient());
/// assert!(futures::executor::block_on(store.list("b", "", None, None)).is_ok());
/// ```
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Plan<StoreMethod, StoreError>,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`, with no fault queued.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            plan: Plan::new(),
        }
    }

    /// Queues `fault` for the next call of `method` (several queue up, one per call).
    pub fn inject(&self, method: StoreMethod, fault: Fault<StoreError>) {
        self.plan.push(method, fault);
    }

    /// Asks `rule` before every call (after the queued faults are used up); see [`FaultRule`].
    pub fn set_rule(&self, rule: FaultRule<StoreMethod, StoreError>) {
        self.plan.set_rule(rule);
    }

    /// Drops every queued fault and the rule.
    pub fn clear(&self) {
        self.plan.clear();
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        let fault = self.plan.take(StoreMethod::List, prefix);
        apply(
            fault,
            self.inner.list(bucket, prefix, page_token, max_results),
        )
        .await
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        let fault = self.plan.take(StoreMethod::Read, name);
        apply(fault, self.inner.read(bucket, name)).await
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        let fault = self.plan.take(StoreMethod::Stat, name);
        apply(fault, self.inner.stat(bucket, name)).await
    }

    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let fault = self.plan.take(StoreMethod::Put, name);
        apply(fault, self.inner.put(bucket, name, content, mode)).await
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        let fault = self.plan.take(StoreMethod::Delete, name);
        apply(fault, self.inner.delete(bucket, name, if_generation)).await
    }

    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        to_bucket: &str,
        to_name: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let fault = self.plan.take(StoreMethod::Copy, name);
        let copy = self
            .inner
            .copy(bucket, name, generation, to_bucket, to_name);
        apply(fault, copy).await
    }
}

/// A [`Warehouse`] whose calls fail as told, wrapping any other.
///
/// ```
/// use ingest_core::decorators::{Fault, FaultyWarehouse, WarehouseMethod};
/// use ingest_core::ports::{JobRef, Warehouse, WarehouseError};
/// use ingest_memory::MemoryWarehouse;
///
/// let warehouse = FaultyWarehouse::new(MemoryWarehouse::new());
/// warehouse.inject(WarehouseMethod::JobStatus, Fault::Fail(WarehouseError::Transient {
///     what: "job j".into(), message: "503".into(),
/// }));
/// let job = JobRef { project: "p".into(), job_id: "j".into(), location: None };
/// assert!(futures::executor::block_on(warehouse.job_status(&job)).is_err());
/// assert_eq!(futures::executor::block_on(warehouse.job_status(&job)), Ok(None));
/// ```
#[derive(Debug)]
pub struct FaultyWarehouse<W> {
    inner: W,
    plan: Plan<WarehouseMethod, WarehouseError>,
}

impl<W> FaultyWarehouse<W> {
    /// Wraps `inner`, with no fault queued.
    pub fn new(inner: W) -> Self {
        FaultyWarehouse {
            inner,
            plan: Plan::new(),
        }
    }

    /// Queues `fault` for the next call of `method` (several queue up, one per call).
    pub fn inject(&self, method: WarehouseMethod, fault: Fault<WarehouseError>) {
        self.plan.push(method, fault);
    }

    /// Asks `rule` before every call (after the queued faults are used up); see [`FaultRule`].
    pub fn set_rule(&self, rule: FaultRule<WarehouseMethod, WarehouseError>) {
        self.plan.set_rule(rule);
    }

    /// Drops every queued fault and the rule.
    pub fn clear(&self) {
        self.plan.clear();
    }

    /// The wrapped warehouse.
    pub fn inner(&self) -> &W {
        &self.inner
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<W: Warehouse> Warehouse for FaultyWarehouse<W> {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        let fault = self.plan.take(WarehouseMethod::Submit, &request.job_id);
        apply(fault, self.inner.submit(request)).await
    }

    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        let fault = self.plan.take(WarehouseMethod::JobStatus, &job.job_id);
        apply(fault, self.inner.job_status(job)).await
    }

    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        let fault = self.plan.take(WarehouseMethod::ChildJobs, &parent.job_id);
        apply(fault, self.inner.child_jobs(parent)).await
    }

    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        let about = table.to_string();
        let fault = self.plan.take(WarehouseMethod::RecordOutcome, &about);
        apply(fault, self.inner.record_outcome(table, record)).await
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        let about = table.to_string();
        let fault = self.plan.take(WarehouseMethod::RecordedOutcomes, &about);
        apply(fault, self.inner.recorded_outcomes(table, since)).await
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        let about = table.to_string();
        let fault = self.plan.take(WarehouseMethod::TimePartitioning, &about);
        apply(fault, self.inner.time_partitioning(table)).await
    }
    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        let about = table.to_string();
        let fault = self.plan.take(WarehouseMethod::CreateTable, &about);
        apply(fault, self.inner.create_table(table, resource)).await
    }
    async fn table_schema(
        &self,
        table: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        let about = table.to_string();
        let fault = self.plan.take(WarehouseMethod::TableSchema, &about);
        apply(fault, self.inner.table_schema(table)).await
    }
}
