//! # ingest-service
//!
//! What the `bq-ingest` binary wires, for programs that embed bq-ingest instead of running the
//! binary: one [`Runtime`] (the settings from the environment, the Google client layer, the
//! GCS store, the BigQuery warehouse, the failure topic, the system clock, one
//! [`Ingestor`](ingest_core::ingest::Ingestor) over them), structured logs in Cloud Logging's
//! JSON shape with secrets redacted ([`logging`], [`redact`]), and the stop signal
//! ([`shutdown_signal`]).
//!
//! An embedder mounts the HTTP front end in its own axum app, or runs the pull consumer, over
//! the runtime's ingestor:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use ingest_service::{shutdown_signal, Runtime};
//!
//! ingest_service::logging::init(true, None, "my-service".into());
//! let runtime = Runtime::from_env().await?;
//! let state = ingest_http::HttpState::new(runtime.ingestor.clone());
//! let app = axum::Router::new().nest("/ingest", ingest_http::router(state));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! ingest_http::serve(listener, app, shutdown_signal()).await?;
//! println!("{} Google API requests", runtime.request_counts().total());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod backfill;
mod clock;
mod failure_sink;
pub mod logging;
mod metrics;
pub mod redact;
mod runtime;
mod shutdown;

pub use clock::SystemClock;
pub use failure_sink::TopicFailureSink;
pub use metrics::{Metrics, SharedMetrics};
pub use runtime::{Runtime, ServiceError};
pub use shutdown::shutdown_signal;
