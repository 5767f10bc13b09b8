//! bq-ingest adapter: Google Cloud Storage behind ingest-core's
//! [`ObjectStore`](ingest_core::ports::ObjectStore) port.
//!
//! [`GcsStore`] speaks the GCS JSON API through the `gcloud-storage` crate (plus one direct
//! media download for [`read`](ingest_core::ports::ObjectStore::read)), to Google or to an
//! emulator (fake-gcs-server) named by `STORAGE_EMULATOR_HOST`.
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

mod classify;
mod retry;
mod store;

pub use retry::RetryPolicy;
pub use store::{
    install_default_tls_provider, GcsSetupError, GcsStore, RequestStats, STORAGE_EMULATOR_HOST,
    WRITE_ID_METADATA_KEY,
};

/// The `gcloud-storage` crate this adapter is built on, for building a
/// [`ClientConfig`](gcloud_storage::client::ClientConfig) to pass to [`GcsStore::new`].
pub use gcloud_storage;
