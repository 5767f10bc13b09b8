//! A warehouse that finishes every job at once and keeps nothing: for benchmarks whose memory
//! must be the ingest's own, not a double's.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ingest_core::ports::{
    JobKind, JobRef, JobRequest, JobState, JobStatus, LoadRecord, TableRef, TimePartitioning,
    Warehouse, WarehouseError,
};

/// Answers every [`Warehouse::submit`] with a job done without error (0 rows) and keeps
/// neither the request nor the job: [`Warehouse::job_status`] finds no job, so a duplicate
/// submits again. It counts what it was given ([`ForgetfulWarehouse::submits`],
/// [`ForgetfulWarehouse::source_uris`], [`ForgetfulWarehouse::rows_recorded`]).
///
/// Use [`crate::MemoryWarehouse`] to test behaviour; this one is for measuring a big batch or
/// a long backfill without the double's memory growing with it.
///
/// ```
/// use ingest_core::ports::{JobKind, JobRequest, TableRef, Warehouse};
/// use ingest_memory::ForgetfulWarehouse;
/// # futures::executor::block_on(async {
/// let warehouse = ForgetfulWarehouse::default();
/// let table = TableRef { project: "p".into(), dataset: "d".into(), table: "t".into(), partition: None };
/// let request = JobRequest {
///     project: "p".into(),
///     job_id: "j".into(),
///     location: None,
///     labels: Default::default(),
///     kind: JobKind::Load { destination: table, source_uris: vec!["gs://b/a".into()], config: Default::default() },
/// };
/// assert!(warehouse.submit(&request).await.unwrap().succeeded());
/// assert_eq!((warehouse.submits(), warehouse.source_uris()), (1, 1));
/// assert!(warehouse.job_status(&ingest_core::ports::JobRef {
///     project: "p".into(), job_id: "j".into(), location: None,
/// }).await.unwrap().is_none());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct ForgetfulWarehouse {
    submits: AtomicU64,
    source_uris: AtomicU64,
    rows: AtomicU64,
}

impl ForgetfulWarehouse {
    /// Jobs submitted.
    pub fn submits(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }

    /// Source URIs of the load jobs submitted, summed.
    pub fn source_uris(&self) -> u64 {
        self.source_uris.load(Ordering::Relaxed)
    }

    /// State rows written.
    pub fn rows_recorded(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Warehouse for ForgetfulWarehouse {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        self.submits.fetch_add(1, Ordering::Relaxed);
        if let JobKind::Load { source_uris, .. } = &request.kind {
            self.source_uris
                .fetch_add(source_uris.len() as u64, Ordering::Relaxed);
        }
        let job = JobRef {
            project: request.project.clone(),
            job_id: request.job_id.clone(),
            location: request.location.clone(),
        };
        let mut status = JobStatus::new(job, JobState::Done);
        status.labels = request.labels.clone();
        status.output_rows = Some(0);
        Ok(status)
    }

    async fn job_status(&self, _: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        Ok(None)
    }

    async fn child_jobs(&self, _: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        Ok(Vec::new())
    }

    async fn record_outcome(&self, _: &TableRef, _: &LoadRecord) -> Result<(), WarehouseError> {
        self.rows.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn recorded_outcomes(
        &self,
        _: &TableRef,
        _: DateTime<Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        Ok(Vec::new())
    }

    async fn time_partitioning(
        &self,
        _: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        Ok(None)
    }

    async fn create_table(
        &self,
        _: &TableRef,
        _: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, WarehouseError> {
        Ok(true)
    }

    async fn table_schema(
        &self,
        _: &TableRef,
    ) -> Result<Option<serde_json::Value>, WarehouseError> {
        Ok(None)
    }
}
