//! # ingest-google
//!
//! bq-ingest's Google client layer: what the Cloud Storage, BigQuery and Pub/Sub adapters
//! share, so that each of them is only its API's requests and answers.
//!
//! - One HTTP client ([`ClientLayer`]: `reqwest` over rustls with the `ring` provider — no
//!   OpenSSL, no aws-lc), shared by the three services of a process.
//! - One credential chain ([`Credentials::application_default`]: key files, authorized users,
//!   external accounts, the gcloud file, the metadata server), none for an emulator.
//! - One retry policy ([`RetryPolicy`]: capped exponential backoff with full jitter, from a
//!   real RNG) and one classification of answers ([`classify_status`]).
//! - One request counter ([`RequestCounters`]: by service, operation and status class).
//! - The project when no setting names one ([`discover_project`]: the metadata server, the
//!   credentials file, the gcloud configuration).
//! - Endpoints from the environment ([`Endpoint::from_env`]): the emulator variables Google's
//!   libraries read, or an endpoint override with credentials.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use ingest_google::{Call, ClientLayer, Endpoint, RetryPolicy, Service};
//!
//! let layer = ClientLayer::new()?;
//! let storage = layer
//!     .client(Service::Storage, Endpoint::from_env(Service::Storage), RetryPolicy::default())
//!     .await?;
//! let url = storage.url(&["storage", "v1", "b", "my-bucket", "o"], &[("prefix", "ds/t/")]);
//! let answer = storage
//!     .send(&Call::new("objects.list", "gs://my-bucket/ds/t/", reqwest::Method::GET, url))
//!     .await
//!     .map_err(|refused| refused.failure)?;
//! println!("{}", answer.json()?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod auth;
mod client;
mod counters;
mod failure;
mod project;
mod retry;

pub use auth::{AuthError, Credentials, DefaultCredentials, CLOUD_PLATFORM_SCOPE};
pub use client::{Answer, Call, ClientLayer, Endpoint, GoogleClient, Refused, Service, SetupError};
pub use counters::{RequestCounters, RequestCounts, RequestKey, StatusClass};
pub use failure::{body_snippet, describe_failure, parse_google_error, Failure};
pub use project::{
    discover_project, gcloud_core_project, project_from_files, DiscoveredProject, ProjectSource,
};
pub use reqwest;
pub use retry::{classify_status, FailureClass, RetryPolicy};

/// Installs rustls' `ring` crypto provider as the process default when none is installed yet.
/// The client layer builds `reqwest` with rustls but without a built-in provider (no aws-lc),
/// and calls this itself before any client is built. Idempotent.
///
/// ```
/// ingest_google::install_default_tls_provider();
/// ingest_google::install_default_tls_provider();
/// assert!(rustls::crypto::CryptoProvider::get_default().is_some());
/// ```
pub fn install_default_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
