//! # ingest-bigquery
//!
//! bq-ingest's BigQuery adapter: [`BigQueryWarehouse`] implements the core's
//! [`Warehouse`](ingest_core::ports::Warehouse) port over BigQuery's REST API v2 —
//! `jobs.insert` (load and query jobs with caller-chosen ids), `jobs.get`, `jobs.list` (child
//! jobs of scripts) and `tabledata.insertAll` (the load-state table).
//!
//! It is built on the HTTP stack of [`gcp_bigquery_client`] (`=0.28.0`, rustls + ring, no
//! default features): its `reqwest` client, its [`Authenticator`](gcp_bigquery_client::auth::Authenticator)
//! trait and the `yup-oauth2` it re-exports for Application Default Credentials. Requests are
//! issued by this crate rather than through the crate's typed APIs, because those lose the HTTP
//! status of non-JSON error bodies and do not retry (see `rest.rs`), and request bodies are
//! built as JSON because the crate's `JobConfigurationLoad` would drop load options it does
//! not model.
//!
//! - [`BigQueryWarehouse::from_env`]: the emulator named by `BIGQUERY_EMULATOR_HOST`, else
//!   BigQuery with Application Default Credentials.
//! - Errors map by HTTP status: 409 on insert → `AlreadyExists`; 429/5xx/timeouts → retried
//!   ([`RetryPolicy`], [`backoff_delay`]) then `Transient`; other 4xx → `Rejected`.
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

mod auth;
mod jobs;
mod rest;
mod retry;
mod state_table;
mod stats;
mod warehouse;

pub use auth::{AdcAuthenticator, AuthSetupError, NoAuth, BIGQUERY_SCOPE};
pub use retry::{backoff_delay, is_retryable_status, RetryPolicy};
pub use state_table::{
    load_record_insert_id, load_record_row, LOAD_STATE_PARTITION_FIELD, LOAD_STATE_SCHEMA_JSON,
};
pub use stats::{Operation, RequestStats};
pub use warehouse::{
    BigQueryWarehouse, SchemaFill, SetupError, BIGQUERY_V2_URL, EMULATOR_HOST_ENV,
};

/// The `gcp-bigquery-client` crate this adapter is built on (for its `Authenticator` trait).
pub use gcp_bigquery_client;
