//! `bq-ingest pull`: consume GCS notifications from a Pub/Sub pull subscription.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ingest_pubsub::{ConsumerConfig, PullConsumer};

use ingest_service::{shutdown_signal, Runtime};

use super::log_request_counts;

/// Arguments of `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The subscription (id, or `projects/P/subscriptions/S`).
    #[arg(long, env = "INGEST_SUBSCRIPTION")]
    subscription: String,
    /// Messages handled at once at most.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long one message may be handled before it is handed back, in seconds.
    #[arg(long, default_value_t = 600)]
    handle_deadline: u64,
    /// After SIGTERM, how long the messages in flight may still take before they are handed
    /// back (nacked), in seconds. Keep it under the platform's stop timeout (Cloud Run: 10 s).
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 5)]
    shutdown_grace: u64,
    /// Also serve `GET /health` (and `/healthz`) on this port, for platforms that need a
    /// listening port or probe one (a Cloud Run service: pass `$PORT`; GKE).
    #[arg(long, env = "HEALTH_PORT")]
    health_port: Option<u16>,
    /// The address of the health port.
    #[arg(long, default_value = "0.0.0.0")]
    health_host: String,
}

/// Pulls until SIGTERM, then finishes the messages in flight.
pub async fn run(args: PullArgs) -> ExitCode {
    // Installed before anything else, so a SIGTERM during start-up is a clean stop.
    let stop_requested = shutdown_signal();
    let runtime = match Runtime::from_env().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match runtime.pubsub().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to Pub/Sub: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = ConsumerConfig {
        max_concurrency: args.concurrency.max(1),
        handle_deadline: Duration::from_secs(args.handle_deadline),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..ConsumerConfig::default()
    };
    let consumer = PullConsumer::new(
        &client,
        &args.subscription,
        runtime.ingestor.clone(),
        config,
    );
    tracing::info!(
        subscription = consumer.subscription(),
        "ready: pulling notifications"
    );
    let (stop, stopping) = ingest_http::stop_signal();
    let (health_done, health_lifetime) = ingest_http::stop_signal();
    let health = match args.health_port {
        Some(port) => {
            let metrics = super::metrics_endpoint(&runtime);
            match serve_health(&args.health_host, port, stopping, health_lifetime, metrics).await {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen on {}:{port}: {e}", args.health_host);
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let result = consumer
        .run(async move {
            stop_requested.await;
            stop.stop();
        })
        .await;
    health_done.stop();
    if let Some(task) = health {
        let _ = task.await;
    }
    log_request_counts(&runtime);
    match result {
        Ok(stats) => {
            tracing::info!(
                received = stats.received,
                acked = stats.acked,
                nacked = stats.nacked,
                "pull finished"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "pull stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The health port: `/health` and `/healthz` (503 once `stopping` fires) until `lifetime` ends,
/// after the consumer has finished.
async fn serve_health(
    host: &str,
    port: u16,
    stopping: ingest_http::Stopping,
    lifetime: ingest_http::Stopping,
    metrics: ingest_http::MetricsEndpoint,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    let router = ingest_http::health_router(stopping, Some(metrics));
    Ok(tokio::spawn(async move {
        let stopped = async move { lifetime.stopped().await };
        if let Err(e) = ingest_http::serve(listener, router, stopped).await {
            tracing::error!(error = %e, "health port: {e}");
        }
    }))
}
