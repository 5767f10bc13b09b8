//! The subcommands.

pub mod backfill;
pub mod explain;
pub mod pull;
pub mod reconcile;
pub mod resume;
pub mod serve;
pub mod status;

/// How a command prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

/// Logs, at the end of a service run, how many requests went to each Google service.
fn log_request_counts(runtime: &ingest_service::Runtime) {
    let counts = runtime.request_counts();
    tracing::info!(
        gcs_requests = counts.of_service("storage").total(),
        bigquery_requests = counts.of_service("bigquery").total(),
        pubsub_requests = counts.of_service("pubsub").total(),
        retries = counts.total_retries(),
        "stopped"
    );
}

/// `GET /metrics` of a service run: the runtime's metrics, rendered at each scrape.
fn metrics_endpoint(runtime: &ingest_service::Runtime) -> ingest_http::MetricsEndpoint {
    let metrics = runtime.metrics.clone();
    ingest_http::MetricsEndpoint::new(move || metrics.render())
}

/// The runtime of an operator's command from the environment, or the error printed as
/// `bq-ingest <command>: …`.
async fn runtime_for(command: &str) -> Result<ingest_service::Runtime, std::process::ExitCode> {
    ingest_service::Runtime::from_env().await.map_err(|e| {
        eprintln!("bq-ingest {command}: {e}");
        std::process::ExitCode::FAILURE
    })
}
