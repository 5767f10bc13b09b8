//! bq-ingest adapter: Google Cloud Storage behind ingest-core's
//! [`ObjectStore`](ingest_core::ports::ObjectStore) port.
//!
//! [`GcsStore`] speaks the GCS JSON API (list, media download, metadata, multipart upload with
//! generation preconditions, delete) over the shared client layer (`ingest-google`: one HTTP
//! client, Application Default Credentials, one retry policy), to Google or to an emulator
//! (fake-gcs-server) named by `STORAGE_EMULATOR_HOST`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use ingest_core::ports::{ObjectStore, PutMode};
//!
//! let store = ingest_gcs::GcsStore::from_env().await?;
//! let meta = store.put("bucket", "dataset/table/_SUCCESS", Vec::new(), PutMode::Create).await?;
//! let (same, content) = store.read("bucket", "dataset/table/_SUCCESS").await?;
//! assert_eq!((same.generation, content.len()), (meta.generation, 0));
//! println!("{} requests so far", store.stats().total());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod store;

pub use ingest_google::{install_default_tls_provider, RetryPolicy};
pub use store::{operations, GcsStore, RequestStats, STORAGE_EMULATOR_HOST, WRITE_ID_METADATA_KEY};

/// Building a [`GcsStore`] failed (credentials, HTTP client).
pub type GcsSetupError = ingest_google::SetupError;
