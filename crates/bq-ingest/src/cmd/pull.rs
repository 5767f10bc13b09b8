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
}

/// Pulls until SIGTERM, then finishes the messages in flight.
pub async fn run(args: PullArgs) -> ExitCode {
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
    let result = consumer.run(shutdown_signal()).await;
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
