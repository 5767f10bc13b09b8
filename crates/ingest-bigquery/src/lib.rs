//! # ingest-bigquery
//!
//! bq-ingest's BigQuery adapter: [`BigQueryWarehouse`] implements the core's
//! [`Warehouse`](ingest_core::ports::Warehouse) port over BigQuery's REST API v2 —
//! `jobs.insert` (load and query jobs with caller-chosen ids), `jobs.get`, `jobs.list` (child
//! jobs of scripts) and `tabledata.insertAll` (the load-state table).
//!
//! It speaks REST v2 over the shared client layer (`ingest-google`: one `reqwest` client with
//! rustls, Application Default Credentials, one retry policy). Request bodies are built as
//! JSON, so that every option of a user's `load.json` reaches BigQuery untouched, and answers
//! are read by HTTP status, so that a duplicate job (409) or a retryable 503 is told from a
//! permanent 400 whatever the body looks like.
//!
//! - [`BigQueryWarehouse::from_env`]: the emulator named by `BIGQUERY_EMULATOR_HOST`, else
//!   BigQuery with Application Default Credentials.
//! - Errors map by HTTP status: 409 on insert → `AlreadyExists`; 429/5xx/timeouts → retried
//!   ([`RetryPolicy`]) then `Transient`; other 4xx → `Rejected`.
//! - [`BigQueryWarehouse::stats`] counts requests per operation.
//! - Helpers for the service, tests and the demo:
//!   [`create_dataset_if_missing`](BigQueryWarehouse::create_dataset_if_missing),
//!   [`create_table`](BigQueryWarehouse::create_table),
//!   [`query_rows`](BigQueryWarehouse::query_rows),
//!   [`table_row_count`](BigQueryWarehouse::table_row_count).
//! - The load-state table's schema: [`LOAD_STATE_SCHEMA_JSON`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use ingest_bigquery::BigQueryWarehouse;
//! use ingest_core::ports::{JobKind, JobRequest, TableRef, Warehouse, WarehouseError};
//!
//! let warehouse = BigQueryWarehouse::from_env("my-project").await?;
//! let request = JobRequest {
//!     project: "my-project".into(),
//!     job_id: "gcf-ingest-ds-t-1234".into(),
//!     location: None,
//!     labels: BTreeMap::new(),
//!     kind: JobKind::Load {
//!         destination: TableRef {
//!             project: "my-project".into(),
//!             dataset: "ds".into(),
//!             table: "t".into(),
//!             partition: Some("$20201030".into()),
//!         },
//!         source_uris: vec!["gs://bucket/ds/t/$20201030/part-0.csv".into()],
//!         config: serde_json::json!({"sourceFormat": "CSV"}).as_object().cloned().unwrap_or_default(),
//!     },
//! };
//! match warehouse.submit(&request).await {
//!     Ok(status) => println!("{:?}", status.state),
//!     Err(WarehouseError::AlreadyExists { job_id }) => println!("{job_id} was submitted before"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod jobs;
mod rest;
mod state_table;
mod stats;
mod warehouse;

pub use ingest_google::{Credentials, RetryPolicy};
pub use state_table::{
    load_record_insert_id, load_record_row, LOAD_STATE_PARTITION_FIELD, LOAD_STATE_SCHEMA_JSON,
};
pub use stats::{Operation, RequestStats};
pub use warehouse::{
    BigQueryWarehouse, SchemaFill, SetupError, BIGQUERY_V2_URL, EMULATOR_HOST_ENV,
};
