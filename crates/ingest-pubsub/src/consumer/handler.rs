//! One message: parse, ingest (keeping its lease), log, acknowledge or hand back.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Disposition, IngestError, Ingestor, Outcome};
use ingest_core::notification::parse_pubsub_message;
use tokio::sync::OwnedSemaphorePermit;

use super::lease::LeaseKeeper;
use super::{count, lock, ConsumerConfig, RunStats};
use crate::client::PubsubClient;
use crate::wire::ReceivedMessage;

/// How far past the handling deadline a handler is abandoned (the ingestor stops waiting at the
/// deadline itself; this bounds a call that hangs).
const HARD_LIMIT_SLACK: Duration = Duration::from_secs(30);
/// How many bytes of a malformed message's data the error log shows.
pub(super) const DATA_PREFIX_BYTES: usize = 256;

/// What every message handler shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) client: PubsubClient,
    pub(super) subscription: String,
    pub(super) ingestor: Arc<Ingestor>,
    pub(super) config: ConsumerConfig,
    pub(super) stats: Arc<Mutex<RunStats>>,
    pub(super) first_extension: Duration,
    /// Messages being handled, by ack id: nacked if still here when the grace period ends.
    pub(super) in_flight: Mutex<HashMap<String, ReceivedMessage>>,
}

/// How handling one event ended.
#[derive(Debug)]
pub(super) enum Handled {
    /// The ingestor answered.
    Outcome(Outcome),
    /// The ingestor failed transiently.
    Transient(IngestError),
    /// The handler panicked, with this message.
    Panicked(String),
    /// The handler outlived the hard limit.
    TimedOut(Duration),
}

/// The front-end label of the pull consumer's notifications (metrics).
const PULL: &str = "pull";

/// Handles one message and acks or nacks it; holds its concurrency slot until done.
pub(super) async fn handle_message(
    shared: Arc<Shared>,
    received: ReceivedMessage,
    _slot: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    count(&shared.stats, |s| s.received += 1);
    match parse(&received) {
        Ok(event) => {
            let handled = ingest(&shared, &received, &event).await;
            let latency = started.elapsed();
            let outcome = match &handled {
                Handled::Outcome(outcome) => outcome.name(),
                Handled::Transient(_) => "error",
                Handled::Panicked(_) => "panicked",
                Handled::TimedOut(_) => "timed_out",
            };
            let observer = &shared.ingestor.ports().observer;
            observer.notification_handled(PULL, outcome, latency);
            settle(&shared, &received, &event, handled, latency).await;
        }
        Err(error) => {
            tracing::error!(
                message_id = received.message_id(),
                attributes = ?received.message.attributes,
                data_prefix = %data_prefix(&received.message.data),
                error = %error,
                outcome = "malformed",
                "malformed notification {}: {error}; acknowledged (redelivery would not help)",
                received.message_id()
            );
            count(&shared.stats, |s| s.malformed += 1);
            let observer = &shared.ingestor.ports().observer;
            observer.notification_handled(PULL, "malformed", started.elapsed());
            ack(&shared, &received).await;
        }
    }
    lock(&shared.in_flight).remove(&received.ack_id);
}

/// The GCS notification in a message, or why there is none.
fn parse(received: &ReceivedMessage) -> Result<ObjectEvent, String> {
    if let Some(error) = &received.undecodable_data {
        return Err(error.clone());
    }
    parse_pubsub_message(&received.message).map_err(|e| e.to_string())
}

/// Runs the ingestor on `event` until the handling deadline, keeping the message's lease.
async fn ingest(shared: &Arc<Shared>, received: &ReceivedMessage, event: &ObjectEvent) -> Handled {
    let _lease = LeaseKeeper::start(shared, received);
    let deadline = shared.ingestor.clock().now()
        + chrono::Duration::from_std(shared.config.handle_deadline)
            .unwrap_or(chrono::Duration::MAX);
    let hard_limit = shared
        .config
        .handle_deadline
        .saturating_add(HARD_LIMIT_SLACK);
    let handled = tokio::time::timeout(
        hard_limit,
        AssertUnwindSafe(shared.ingestor.handle_until(event, deadline)).catch_unwind(),
    )
    .await;
    match handled {
        Ok(Ok(Ok(outcome))) => Handled::Outcome(outcome),
        Ok(Ok(Err(error))) => Handled::Transient(error),
        Ok(Err(panic)) => Handled::Panicked(
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default(),
        ),
        Err(_elapsed) => Handled::TimedOut(hard_limit),
    }
}

/// Counts, logs and acks or nacks what handling gave.
async fn settle(
    shared: &Shared,
    received: &ReceivedMessage,
    event: &ObjectEvent,
    handled: Handled,
    latency: Duration,
) {
    let message_id = received.message_id();
    let object = event.uri();
    let latency_ms = latency.as_millis() as u64;
    let delivery_attempt = received.delivery_attempt.unwrap_or(0);
    let stats = shared.stats.as_ref();
    let outcome = match handled {
        Handled::Outcome(outcome) => outcome,
        Handled::Transient(error) => {
            count(stats, |s| s.transient_errors += 1);
            tracing::warn!(
                message_id, object = %object, outcome = "transient_error", latency_ms,
                delivery_attempt, error = %error,
                "{object}: transient error, nacked for redelivery: {error}"
            );
            return nack(shared, received, shared.config.redelivery_delay).await;
        }
        Handled::Panicked(reason) => {
            count(stats, |s| s.abandoned += 1);
            tracing::error!(
                message_id, object = %object, outcome = "panicked", latency_ms, delivery_attempt,
                "{object}: the handler panicked, nacked: {reason}"
            );
            return nack(shared, received, shared.config.redelivery_delay).await;
        }
        Handled::TimedOut(limit) => {
            count(stats, |s| s.abandoned += 1);
            tracing::warn!(
                message_id, object = %object, outcome = "timed_out", latency_ms, delivery_attempt,
                "{object}: not handled within {} s, nacked", limit.as_secs()
            );
            return nack(shared, received, shared.config.redelivery_delay).await;
        }
    };
    count(stats, |s| match &outcome {
        Outcome::Ignored { .. } => s.ignored += 1,
        Outcome::Queued { .. } => s.queued += 1,
        Outcome::Running { .. } => s.running += 1,
        Outcome::Done { .. } => s.done += 1,
        Outcome::Failed { .. } => s.failed += 1,
        Outcome::Parked { .. } => s.parked += 1,
        Outcome::Rejected { .. } => s.rejected += 1,
    });
    log_outcome(message_id, &object, &outcome, latency_ms, delivery_attempt);
    match outcome.disposition() {
        Disposition::Acknowledge | Disposition::Reject => ack(shared, received).await,
        Disposition::RetryAfter(_) => nack(shared, received, shared.config.redelivery_delay).await,
    }
}

/// One log line per outcome, at the level its disposition deserves.
fn log_outcome(
    message_id: &str,
    object: &str,
    outcome: &Outcome,
    latency_ms: u64,
    delivery_attempt: u32,
) {
    let jobs = job_ids(outcome);
    let name = outcome.name();
    match (outcome.disposition(), outcome) {
        (Disposition::Acknowledge, Outcome::Failed { error }) => tracing::warn!(
            message_id, object, outcome = name, jobs = %jobs, latency_ms, delivery_attempt,
            error = %error, "{object}: failed (recorded); acknowledged"
        ),
        (Disposition::Acknowledge, Outcome::Parked { error, .. }) => tracing::warn!(
            message_id, object, outcome = name, jobs = %jobs, latency_ms, delivery_attempt,
            error = %error, "{object}: parked (recorded; reconcile --apply loads it once the \
             quota allows); acknowledged: {error}"
        ),
        (Disposition::Acknowledge, _) => tracing::info!(
            message_id, object, outcome = name, jobs = %jobs, latency_ms, delivery_attempt,
            "{object}: {name}; acknowledged"
        ),
        (Disposition::Reject, Outcome::Rejected { error }) => tracing::error!(
            message_id, object, outcome = name, latency_ms, delivery_attempt, error = %error,
            "{object}: rejected; acknowledged (redelivery would not help): {error}"
        ),
        (Disposition::Reject, _) => tracing::error!(
            message_id,
            object,
            outcome = name,
            latency_ms,
            delivery_attempt,
            "{object}: rejected; acknowledged (redelivery would not help)"
        ),
        (Disposition::RetryAfter(_), _) => tracing::warn!(
            message_id, object, outcome = name, jobs = %jobs, latency_ms, delivery_attempt,
            "{object}: jobs still running at the handling deadline; nacked (the redelivery \
             follows the same jobs)"
        ),
    }
}

/// Acknowledges a message; a failure is counted and logged (the message comes back, and
/// handling it again is safe).
pub(super) async fn ack(shared: &Shared, received: &ReceivedMessage) {
    let ack_id = received.ack_id.as_str();
    match shared
        .client
        .acknowledge(&shared.subscription, &[ack_id])
        .await
    {
        Ok(()) => count(&shared.stats, |s| s.acked += 1),
        Err(error) => {
            count(&shared.stats, |s| s.ack_errors += 1);
            tracing::warn!(
                message_id = received.message_id(),
                "ack failed (the message will be redelivered; handling it again is safe): {error}"
            );
        }
    }
}

/// Hands a message back: Pub/Sub redelivers it after `delay` (the ack deadline is set to it),
/// so a batch whose jobs still run, or a table whose lock is held, is not redelivered in a tight
/// loop when the subscription has no retry policy of its own.
pub(super) async fn nack(shared: &Shared, received: &ReceivedMessage, delay: Duration) {
    let seconds = delay.as_secs().min(600) as u32;
    let ack_id = received.ack_id.as_str();
    match shared
        .client
        .modify_ack_deadline(&shared.subscription, &[ack_id], seconds)
        .await
    {
        Ok(()) => count(&shared.stats, |s| s.nacked += 1),
        Err(error) => {
            count(&shared.stats, |s| s.ack_errors += 1);
            tracing::warn!(
                message_id = received.message_id(),
                "nack failed (the message is redelivered after its ack deadline): {error}"
            );
        }
    }
}

/// The first bytes of `data`, as text, for a log line.
pub(super) fn data_prefix(data: &[u8]) -> String {
    let end = data.len().min(DATA_PREFIX_BYTES);
    let mut text = String::from_utf8_lossy(&data[..end]).into_owned();
    if data.len() > end {
        text.push('…');
    }
    text
}

/// The job ids of an outcome, comma-separated (empty when it has none).
pub(super) fn job_ids(outcome: &Outcome) -> String {
    outcome
        .jobs()
        .iter()
        .map(|j| j.job_id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
