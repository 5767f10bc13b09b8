//! [`PullConsumer`]: GCS notifications pulled from a subscription, handed to the ingestor.
//! The rules it follows are in the crate documentation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use gcloud_pubsub::subscriber::ReceivedMessage;
use gcloud_pubsub::subscription::Subscription;
use ingest_core::event::PubsubMessage;
use ingest_core::ingest::{Disposition, Ingestor, Outcome};
use ingest_core::notification::parse_pubsub_message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{is_transient_code, PubsubClient, PubsubError};

/// Pub/Sub returns at most this many messages per pull.
const MAX_PULL_MESSAGES: usize = 1000;
/// The ack deadline assumed when the subscription's cannot be read: Pub/Sub's minimum.
const MIN_ACK_DEADLINE: Duration = Duration::from_secs(10);
/// How far past the handling deadline a handler is abandoned (the ingestor stops waiting at the
/// deadline itself; this bounds a call that hangs).
const HARD_LIMIT_SLACK: Duration = Duration::from_secs(30);
/// Backoff between failed pulls: from 100 ms, doubling, at most 10 s.
const PULL_BACKOFF_START: Duration = Duration::from_millis(100);
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// After an empty pull that came back this fast, wait [`IDLE_PAUSE`] before the next one.
const FAST_EMPTY_PULL: Duration = Duration::from_secs(1);
const IDLE_PAUSE: Duration = Duration::from_millis(100);
/// How many bytes of a malformed message's data the error log shows.
const DATA_PREFIX_BYTES: usize = 256;

/// How the lease of a message being handled is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseExtension {
    /// How often the ack deadline is extended (default 20 s). Kept at most half of
    /// `extend_by`.
    pub interval: Duration,
    /// The new ack deadline, counted from each extension (default 60 s; Pub/Sub accepts 10 s
    /// to 600 s, other values are clamped).
    pub extend_by: Duration,
}

impl Default for LeaseExtension {
    fn default() -> Self {
        LeaseExtension {
            interval: Duration::from_secs(20),
            extend_by: Duration::from_secs(60),
        }
    }
}

impl LeaseExtension {
    /// `extend_by` in whole seconds, within Pub/Sub's 10..=600.
    fn extend_by_seconds(&self) -> i32 {
        self.extend_by.as_secs().clamp(10, 600) as i32
    }

    /// `interval`, at least 1 s and at most half of the (clamped) `extend_by`.
    fn effective_interval(&self) -> Duration {
        let half = Duration::from_secs(self.extend_by_seconds() as u64) / 2;
        self.interval.clamp(Duration::from_secs(1), half)
    }
}

/// How a [`PullConsumer`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// At most this many messages are handled at once, and never more are pulled (default 8).
    pub max_concurrency: usize,
    /// Keeping the lease of a message while its jobs run.
    pub ack_deadline_extension: LeaseExtension,
    /// How long one message may be handled before giving up on it and nacking it (default
    /// 10 min). Passed to [`Ingestor::handle_until`] as its deadline (which also caps it at
    /// `WAIT_FOR_JOB_SECONDS`).
    pub handle_deadline: Duration,
    /// On shutdown, how long the messages in flight may take to finish (default 30 s).
    pub shutdown_grace: Duration,
    /// How long after a nack (jobs still running, transient error) the message comes back
    /// (default 10 s; 0 = at once).
    pub redelivery_delay: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_concurrency: 8,
            ack_deadline_extension: LeaseExtension::default(),
            handle_deadline: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            redelivery_delay: Duration::from_secs(10),
        }
    }
}

/// What a [`PullConsumer::run`] did, message by message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Messages received.
    pub received: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages nacked (handed back for redelivery).
    pub nacked: u64,
    /// Messages that were not a parsable GCS notification (acknowledged).
    pub malformed: u64,
    /// Outcomes `done`.
    pub done: u64,
    /// Outcomes `ignored`.
    pub ignored: u64,
    /// Outcomes `queued`.
    pub queued: u64,
    /// Outcomes `rejected`: a marker whose path gives no valid destination (acknowledged).
    pub rejected: u64,
    /// Outcomes `failed` (recorded by the ingestor; acknowledged).
    pub failed: u64,
    /// Outcomes `running` at the deadline (nacked).
    pub running: u64,
    /// Transient ingest errors (nacked).
    pub transient_errors: u64,
    /// Handlers that outlived the handling deadline or panicked (nacked).
    pub abandoned: u64,
    /// Messages still unfinished when the shutdown grace period ended (nacked).
    pub unfinished_at_shutdown: u64,
    /// Ack or nack calls that failed (the message comes back after its ack deadline).
    pub ack_errors: u64,
    /// Successful lease extensions.
    pub lease_extensions: u64,
    /// Pull calls that failed transiently and were retried.
    pub pull_errors: u64,
}

/// Pulls GCS notifications from one subscription and hands each to an [`Ingestor`].
///
/// A message is acknowledged only when its outcome is final ([`Outcome::is_final`]) or when it
/// is malformed (logged at ERROR with its id, attributes and the start of its data:
/// redelivery would not help; a dead-letter topic on the subscription does the rest). A
/// running outcome, a transient error, a timeout or a panic nacks it so Pub/Sub redelivers it.
/// The lease of a message is extended while it is handled ([`LeaseExtension`]).
#[derive(Debug)]
pub struct PullConsumer {
    subscription: Subscription,
    name: String,
    ingestor: Arc<Ingestor>,
    config: ConsumerConfig,
    stats: Arc<Mutex<RunStats>>,
}

/// What every message handler shares.
#[derive(Debug)]
struct Shared {
    ingestor: Arc<Ingestor>,
    config: ConsumerConfig,
    stats: Arc<Mutex<RunStats>>,
    first_extension: Duration,
    /// Messages being handled, by ack id: nacked if still here when the grace period ends.
    in_flight: Mutex<HashMap<String, ReceivedMessage>>,
}

impl PullConsumer {
    /// A consumer of `subscription` (a short id in the client's project, or
    /// `projects/P/subscriptions/S`). Nothing is contacted before [`PullConsumer::run`].
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # async fn example(client: &ingest_pubsub::PubsubClient, ingestor: Arc<ingest_core::ingest::Ingestor>) {
    /// use ingest_pubsub::{ConsumerConfig, PullConsumer};
    /// let config = ConsumerConfig { max_concurrency: 4, ..ConsumerConfig::default() };
    /// let consumer = PullConsumer::new(client, "bq-ingest-pull", ingestor, config);
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     let _ = stop.send(());
    /// });
    /// let stats = consumer.run(async { let _ = stopped.await; }).await;
    /// # let _ = stats;
    /// # }
    /// ```
    pub fn new(
        client: &PubsubClient,
        subscription: &str,
        ingestor: Arc<Ingestor>,
        config: ConsumerConfig,
    ) -> Self {
        let name = client.subscription_name(subscription);
        PullConsumer {
            subscription: client.inner.subscription(&name),
            name,
            ingestor,
            config,
            stats: Arc::new(Mutex::new(RunStats::default())),
        }
    }

    /// The fully qualified subscription name.
    pub fn subscription(&self) -> &str {
        &self.name
    }

    /// The counts of the current (or last) run so far.
    pub fn stats(&self) -> RunStats {
        lock(&self.stats).clone()
    }

    /// Pulls and handles messages until `shutdown` completes, then finishes the messages in
    /// flight (for at most [`ConsumerConfig::shutdown_grace`]) and returns the run's counts.
    ///
    /// On shutdown the outstanding pull request is cancelled (a message the server had already
    /// sent on it comes back after the subscription's ack deadline), the messages in flight
    /// are finished, and those still unfinished at the end of the grace period are nacked.
    ///
    /// Transient pull errors are logged and retried with backoff (100 ms doubling to 10 s).
    /// Any other pull error (the subscription does not exist, permission denied, …) stops the
    /// run the same way as a shutdown, and is returned.
    pub async fn run<F>(&self, shutdown: F) -> Result<RunStats, PubsubError>
    where
        F: Future<Output = ()>,
    {
        *lock(&self.stats) = RunStats::default();
        let shared = Arc::new(Shared {
            ingestor: self.ingestor.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
            first_extension: self.first_extension().await,
            in_flight: Mutex::new(HashMap::new()),
        });
        let max_concurrency = self.config.max_concurrency.max(1);
        let permits = Arc::new(Semaphore::new(max_concurrency));
        let mut tasks = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        let mut failure = None;
        let mut backoff = PULL_BACKOFF_START;
        tracing::info!(
            subscription = %self.name,
            max_concurrency,
            "consuming {}",
            self.name
        );

        loop {
            while let Some(joined) = tasks.try_join_next() {
                log_join_error(joined);
            }
            let first = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_PULL_MESSAGES {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let max_messages = i32::try_from(batch.len()).unwrap_or(1);
            let pull_started = Instant::now();
            let pulled = tokio::select! {
                biased;
                () = &mut shutdown => break,
                pulled = self.subscription.pull(max_messages, None) => pulled,
            };
            match pulled {
                Ok(messages) => {
                    backoff = PULL_BACKOFF_START;
                    if messages.is_empty() {
                        drop(batch);
                        if pull_started.elapsed() < FAST_EMPTY_PULL {
                            tokio::select! {
                                biased;
                                () = &mut shutdown => break,
                                () = tokio::time::sleep(IDLE_PAUSE) => {}
                            }
                        }
                        continue;
                    }
                    for message in messages {
                        let permit = match batch.pop() {
                            Some(p) => p,
                            // Never more messages than requested, but if so, wait for room.
                            None => match permits.clone().acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        };
                        lock(&shared.in_flight).insert(message.ack_id.clone(), message.clone());
                        tasks.spawn(handle_message(shared.clone(), message, permit));
                    }
                }
                Err(status) if is_transient_code(status.code()) => {
                    count(&self.stats, |s| s.pull_errors += 1);
                    tracing::warn!(
                        subscription = %self.name,
                        code = ?status.code(),
                        error = %status.message(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "pull from {} failed, retrying: {}",
                        self.name,
                        status.message()
                    );
                    drop(batch);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(PULL_BACKOFF_MAX);
                }
                Err(status) => {
                    let error = PubsubError::rpc("pull", &self.name, &status);
                    tracing::error!(subscription = %self.name, error = %error, "stopping: {error}");
                    failure = Some(error);
                    break;
                }
            }
        }

        self.finish_in_flight(&shared, tasks).await;
        let stats = self.stats();
        tracing::info!(
            subscription = %self.name,
            received = stats.received,
            acked = stats.acked,
            nacked = stats.nacked,
            "stopped consuming {}",
            self.name
        );
        match failure {
            Some(error) => Err(error),
            None => Ok(stats),
        }
    }

    /// Waits for the handlers for at most the grace period; aborts and nacks what remains.
    async fn finish_in_flight(&self, shared: &Shared, mut tasks: JoinSet<()>) {
        if !tasks.is_empty() {
            tracing::info!(
                subscription = %self.name,
                in_flight = tasks.len(),
                grace_ms = self.config.shutdown_grace.as_millis() as u64,
                "stopping: finishing the messages in flight"
            );
        }
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while let Some(joined) = tasks.join_next().await {
                log_join_error(joined);
            }
        })
        .await;
        if drained.is_ok() {
            return;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let unfinished: Vec<ReceivedMessage> =
            lock(&shared.in_flight).drain().map(|(_, m)| m).collect();
        for message in unfinished {
            tracing::warn!(
                subscription = %self.name,
                message_id = %message.message.message_id,
                "unfinished at the end of the shutdown grace period; nacked"
            );
            count(&self.stats, |s| s.unfinished_at_shutdown += 1);
            nack(&self.stats, &message, Duration::ZERO).await;
        }
    }

    /// When to extend a lease first: [`LeaseExtension::interval`], or earlier when the
    /// subscription's ack deadline would expire before (half of it; 10 s when it cannot be
    /// read, e.g. with only `roles/pubsub.subscriber`).
    async fn first_extension(&self) -> Duration {
        let interval = self.config.ack_deadline_extension.effective_interval();
        let ack_deadline = match self.subscription.config(None).await {
            Ok((_, config)) if config.ack_deadline_seconds > 0 => {
                Duration::from_secs(config.ack_deadline_seconds as u64)
            }
            Ok(_) => MIN_ACK_DEADLINE,
            Err(status) => {
                tracing::debug!(
                    subscription = %self.name,
                    code = ?status.code(),
                    "could not read the subscription's ack deadline, assuming 10 s: {}",
                    status.message()
                );
                MIN_ACK_DEADLINE
            }
        };
        interval.min(ack_deadline / 2)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn count(stats: &Mutex<RunStats>, update: impl FnOnce(&mut RunStats)) {
    update(&mut lock(stats));
}

fn log_join_error(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if !e.is_cancelled() {
            tracing::error!(error = %e, "a message handler failed: {e}");
        }
    }
}

/// The core's view of a pulled message.
fn to_core_message(message: &gcloud_googleapis::pubsub::v1::PubsubMessage) -> PubsubMessage {
    PubsubMessage {
        attributes: message
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        data: message.data.clone(),
        message_id: Some(message.message_id.clone()).filter(|id| !id.is_empty()),
    }
}

/// The first bytes of `data`, as text, for a log line.
fn data_prefix(data: &[u8]) -> String {
    let end = data.len().min(DATA_PREFIX_BYTES);
    let mut text = String::from_utf8_lossy(&data[..end]).into_owned();
    if data.len() > end {
        text.push('…');
    }
    text
}

async fn ack(stats: &Mutex<RunStats>, message: &ReceivedMessage) {
    match message.ack().await {
        Ok(()) => count(stats, |s| s.acked += 1),
        Err(status) => {
            count(stats, |s| s.ack_errors += 1);
            tracing::warn!(
                message_id = %message.message.message_id,
                code = ?status.code(),
                "ack failed (the message will be redelivered; handling it again is safe): {}",
                status.message()
            );
        }
    }
}

/// Hands a message back: Pub/Sub redelivers it after `delay` (the ack deadline is set to it),
/// so a batch whose jobs still run, or a table whose lock is held, is not redelivered in a tight
/// loop when the subscription has no retry policy of its own.
async fn nack(stats: &Mutex<RunStats>, message: &ReceivedMessage, delay: Duration) {
    let seconds = delay.as_secs().min(600) as i32;
    let result = if seconds == 0 {
        message.nack().await
    } else {
        message.modify_ack_deadline(seconds).await
    };
    match result {
        Ok(()) => count(stats, |s| s.nacked += 1),
        Err(status) => {
            count(stats, |s| s.ack_errors += 1);
            tracing::warn!(
                message_id = %message.message.message_id,
                code = ?status.code(),
                "nack failed (the message is redelivered after its ack deadline): {}",
                status.message()
            );
        }
    }
}

/// Extends a message's ack deadline periodically until dropped.
struct LeaseKeeper(JoinHandle<()>);

impl LeaseKeeper {
    fn start(shared: &Shared, message: &ReceivedMessage) -> Self {
        let message = message.clone();
        let stats = shared.stats.clone();
        let extension = shared.config.ack_deadline_extension;
        let extend_by = extension.extend_by_seconds();
        let interval = extension.effective_interval();
        let mut wait = shared.first_extension;
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                wait = interval;
                match message.modify_ack_deadline(extend_by).await {
                    Ok(()) => {
                        count(&stats, |s| s.lease_extensions += 1);
                        tracing::debug!(
                            message_id = %message.message.message_id,
                            extend_by_s = extend_by,
                            "lease extended"
                        );
                    }
                    Err(status) => tracing::warn!(
                        message_id = %message.message.message_id,
                        code = ?status.code(),
                        "could not extend the lease: {}",
                        status.message()
                    ),
                }
            }
        }))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Handles one message and acks or nacks it; holds its concurrency permit until done.
async fn handle_message(
    shared: Arc<Shared>,
    received: ReceivedMessage,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    count(&shared.stats, |s| s.received += 1);
    let message = to_core_message(&received.message);
    let message_id = received.message.message_id.as_str();
    let delivery_attempt = received.delivery_attempt().unwrap_or(0) as u64;
    let stats = shared.stats.as_ref();

    let event = match parse_pubsub_message(&message) {
        Ok(event) => event,
        Err(error) => {
            tracing::error!(
                message_id,
                attributes = ?message.attributes,
                data_prefix = %data_prefix(&message.data),
                error = %error,
                outcome = "malformed",
                "malformed notification {message_id}: {error}; acknowledged (redelivery would \
                 not help)"
            );
            count(stats, |s| s.malformed += 1);
            ack(stats, &received).await;
            lock(&shared.in_flight).remove(&received.ack_id);
            return;
        }
    };
    let object = event.uri();

    let lease = LeaseKeeper::start(&shared, &received);
    let deadline = shared.ingestor.clock().now()
        + chrono::Duration::from_std(shared.config.handle_deadline)
            .unwrap_or(chrono::Duration::MAX);
    let hard_limit = shared
        .config
        .handle_deadline
        .saturating_add(HARD_LIMIT_SLACK);
    let handled = tokio::time::timeout(
        hard_limit,
        AssertUnwindSafe(shared.ingestor.handle_until(&event, deadline)).catch_unwind(),
    )
    .await;
    drop(lease);
    let latency_ms = started.elapsed().as_millis() as u64;

    match handled {
        Ok(Ok(Ok(outcome))) => {
            let jobs = job_ids(&outcome);
            count(stats, |s| match &outcome {
                Outcome::Ignored { .. } => s.ignored += 1,
                Outcome::Queued { .. } => s.queued += 1,
                Outcome::Running { .. } => s.running += 1,
                Outcome::Done { .. } => s.done += 1,
                Outcome::Failed { .. } => s.failed += 1,
                Outcome::Rejected { .. } => s.rejected += 1,
            });
            match (outcome.disposition(), &outcome) {
                (Disposition::Acknowledge, Outcome::Failed { error }) => tracing::warn!(
                    message_id,
                    object = %object,
                    outcome = outcome.name(),
                    jobs = %jobs,
                    latency_ms,
                    delivery_attempt,
                    error = %error,
                    "{object}: failed (recorded); acknowledged"
                ),
                (Disposition::Acknowledge, _) => tracing::info!(
                    message_id,
                    object = %object,
                    outcome = outcome.name(),
                    jobs = %jobs,
                    latency_ms,
                    delivery_attempt,
                    "{object}: {}; acknowledged",
                    outcome.name()
                ),
                (Disposition::Reject, Outcome::Rejected { error }) => tracing::error!(
                    message_id,
                    object = %object,
                    outcome = outcome.name(),
                    latency_ms,
                    delivery_attempt,
                    error = %error,
                    "{object}: rejected; acknowledged (redelivery would not help): {error}"
                ),
                (Disposition::Reject, _) => tracing::error!(
                    message_id,
                    object = %object,
                    outcome = outcome.name(),
                    latency_ms,
                    delivery_attempt,
                    "{object}: rejected; acknowledged (redelivery would not help)"
                ),
                (Disposition::RetryAfter(_), _) => tracing::warn!(
                    message_id,
                    object = %object,
                    outcome = outcome.name(),
                    jobs = %jobs,
                    latency_ms,
                    delivery_attempt,
                    "{object}: jobs still running at the handling deadline; nacked (the \
                     redelivery follows the same jobs)"
                ),
            }
            match outcome.disposition() {
                Disposition::Acknowledge | Disposition::Reject => ack(stats, &received).await,
                Disposition::RetryAfter(_) => {
                    nack(stats, &received, shared.config.redelivery_delay).await
                }
            }
        }
        Ok(Ok(Err(error))) => {
            count(stats, |s| s.transient_errors += 1);
            tracing::warn!(
                message_id,
                object = %object,
                outcome = "transient_error",
                latency_ms,
                delivery_attempt,
                error = %error,
                "{object}: transient error, nacked for redelivery: {error}"
            );
            nack(stats, &received, shared.config.redelivery_delay).await;
        }
        Ok(Err(panic)) => {
            count(stats, |s| s.abandoned += 1);
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(
                message_id,
                object = %object,
                outcome = "panicked",
                latency_ms,
                delivery_attempt,
                "{object}: the handler panicked, nacked: {reason}"
            );
            nack(stats, &received, shared.config.redelivery_delay).await;
        }
        Err(_elapsed) => {
            count(stats, |s| s.abandoned += 1);
            tracing::warn!(
                message_id,
                object = %object,
                outcome = "timed_out",
                latency_ms,
                delivery_attempt,
                "{object}: not handled within {} s, nacked",
                hard_limit.as_secs()
            );
            nack(stats, &received, shared.config.redelivery_delay).await;
        }
    }
    lock(&shared.in_flight).remove(&received.ack_id);
}

/// The job ids of an outcome, comma-separated (empty when it has none).
fn job_ids(outcome: &Outcome) -> String {
    outcome
        .jobs()
        .iter()
        .map(|j| j.job_id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_interval_is_kept_below_half_the_extension() {
        let lease = LeaseExtension {
            interval: Duration::from_secs(50),
            extend_by: Duration::from_secs(60),
        };
        assert_eq!(lease.effective_interval(), Duration::from_secs(30));
        assert_eq!(
            LeaseExtension::default().effective_interval(),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn lease_extension_is_clamped_to_what_pubsub_accepts() {
        let short = LeaseExtension {
            interval: Duration::from_secs(1),
            extend_by: Duration::from_secs(2),
        };
        assert_eq!(short.extend_by_seconds(), 10);
        let long = LeaseExtension {
            interval: Duration::from_secs(100),
            extend_by: Duration::from_secs(3600),
        };
        assert_eq!(long.extend_by_seconds(), 600);
        assert_eq!(long.effective_interval(), Duration::from_secs(100));
    }

    #[test]
    fn data_prefix_is_bounded_and_lossy() {
        assert_eq!(data_prefix(b"{\"a\":1}"), "{\"a\":1}");
        let long = vec![b'x'; 1000];
        let prefix = data_prefix(&long);
        assert_eq!(prefix.chars().count(), DATA_PREFIX_BYTES + 1);
        assert!(prefix.ends_with('…'));
        assert_eq!(data_prefix(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn pulled_message_keeps_attributes_data_and_id() {
        let wire = gcloud_googleapis::pubsub::v1::PubsubMessage {
            data: b"{}".to_vec(),
            attributes: [("bucketId".to_string(), "b".to_string())]
                .into_iter()
                .collect(),
            message_id: "42".into(),
            ..Default::default()
        };
        let core = to_core_message(&wire);
        assert_eq!(core.attributes["bucketId"], "b");
        assert_eq!(core.data, b"{}");
        assert_eq!(core.message_id.as_deref(), Some("42"));
        let anonymous = gcloud_googleapis::pubsub::v1::PubsubMessage::default();
        assert_eq!(to_core_message(&anonymous).message_id, None);
    }

    #[test]
    fn job_ids_are_listed_for_outcomes_with_jobs() {
        use ingest_core::ports::JobRef;
        let job = |id: &str| JobRef {
            project: "p".into(),
            job_id: id.into(),
            location: None,
        };
        let done = Outcome::Done {
            jobs: vec![job("a"), job("b")],
            rows: 1,
            bytes: 2,
        };
        assert_eq!(job_ids(&done), "a,b");
        let ignored = Outcome::Ignored {
            reason: "data file".into(),
        };
        assert_eq!(job_ids(&ignored), "");
    }
}
