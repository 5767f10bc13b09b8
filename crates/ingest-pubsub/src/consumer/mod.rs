//! [`PullConsumer`]: GCS notifications pulled from a subscription, handed to the ingestor.
//! The rules it follows are in the crate documentation.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ingest_core::ingest::Ingestor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::client::{PubsubClient, PubsubError};
use crate::wire::ReceivedMessage;

mod handler;
mod lease;
#[cfg(test)]
mod tests;

use handler::{handle_message, nack, Shared};

/// Pub/Sub returns at most this many messages per pull.
const MAX_PULL_MESSAGES: usize = 1000;
/// The ack deadline assumed when the subscription's cannot be read: Pub/Sub's minimum.
const MIN_ACK_DEADLINE: Duration = Duration::from_secs(10);
/// Backoff between failed pulls: from 100 ms, doubling, at most 10 s.
const PULL_BACKOFF_START: Duration = Duration::from_millis(100);
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// After an empty pull that came back this fast, wait [`IDLE_PAUSE`] before the next one.
const FAST_EMPTY_PULL: Duration = Duration::from_secs(1);
const IDLE_PAUSE: Duration = Duration::from_millis(100);

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
    fn extend_by_seconds(&self) -> u32 {
        self.extend_by.as_secs().clamp(10, 600) as u32
    }

    /// `interval`, at least 1 s and at most half of the (clamped) `extend_by`.
    fn effective_interval(&self) -> Duration {
        let half = Duration::from_secs(u64::from(self.extend_by_seconds())) / 2;
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
    /// Outcomes `parked`: the table's daily load quota (recorded; acknowledged).
    pub parked: u64,
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
/// A message is acknowledged only when its outcome is final
/// ([`Outcome::is_final`](ingest_core::ingest::Outcome::is_final)) or when it is malformed
/// (logged at ERROR with its id, attributes and the start of its data: redelivery would not
/// help; a dead-letter topic on the subscription does the rest). A running outcome, a
/// transient error, a timeout or a panic nacks it so Pub/Sub redelivers it. The lease of a
/// message is extended while it is handled ([`LeaseExtension`]).
#[derive(Debug)]
pub struct PullConsumer {
    client: PubsubClient,
    name: String,
    ingestor: Arc<Ingestor>,
    config: ConsumerConfig,
    stats: Arc<Mutex<RunStats>>,
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
        PullConsumer {
            client: client.clone(),
            name: client.subscription_name(subscription),
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
        let mut shutdown = pin!(shutdown);
        let first_extension = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(self.stats()),
            first = self.first_extension() => first,
        };
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            subscription: self.name.clone(),
            ingestor: self.ingestor.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
            first_extension,
            in_flight: Mutex::new(HashMap::new()),
        });
        let max_concurrency = self.config.max_concurrency.max(1);
        let permits = Arc::new(Semaphore::new(max_concurrency));
        let mut tasks = JoinSet::new();
        let mut backoff = PULL_BACKOFF_START;
        tracing::info!(subscription = %self.name, max_concurrency, "consuming {}", self.name);

        let failure = loop {
            while let Some(joined) = tasks.try_join_next() {
                log_join_error(joined);
            }
            let slots = tokio::select! {
                biased;
                () = &mut shutdown => break None,
                slots = free_slots(&permits) => slots,
            };
            let pull_started = Instant::now();
            let pulled = tokio::select! {
                biased;
                () = &mut shutdown => break None,
                pulled = self.client.pull(&self.name, slots.len()) => pulled,
            };
            let pause = match pulled {
                Ok(messages) if messages.is_empty() => {
                    backoff = PULL_BACKOFF_START;
                    if pull_started.elapsed() < FAST_EMPTY_PULL {
                        IDLE_PAUSE
                    } else {
                        Duration::ZERO
                    }
                }
                Ok(messages) => {
                    backoff = PULL_BACKOFF_START;
                    dispatch(&shared, &permits, messages, slots, &mut tasks).await;
                    Duration::ZERO
                }
                Err(error) if error.is_transient() => {
                    self.log_pull_error(&error, backoff);
                    let wait = backoff;
                    backoff = (backoff * 2).min(PULL_BACKOFF_MAX);
                    wait
                }
                Err(error) => {
                    tracing::error!(subscription = %self.name, error = %error, "stopping: {error}");
                    break Some(error);
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break None,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        };

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

    fn log_pull_error(&self, error: &PubsubError, backoff: Duration) {
        count(&self.stats, |s| s.pull_errors += 1);
        tracing::warn!(
            subscription = %self.name,
            error = %error,
            retry_in_ms = backoff.as_millis() as u64,
            "pull from {} failed, retrying: {error}",
            self.name
        );
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
                message_id = %message.message_id(),
                "unfinished at the end of the shutdown grace period; nacked"
            );
            count(&self.stats, |s| s.unfinished_at_shutdown += 1);
            nack(shared, &message, Duration::ZERO).await;
        }
    }

    /// When to extend a lease first: [`LeaseExtension::interval`], or earlier when the
    /// subscription's ack deadline would expire before (half of it; 10 s when it cannot be
    /// read, e.g. with only `roles/pubsub.subscriber`).
    async fn first_extension(&self) -> Duration {
        let interval = self.config.ack_deadline_extension.effective_interval();
        let ack_deadline = match self.client.ack_deadline_seconds(&self.name).await {
            Ok(seconds) if seconds > 0 => Duration::from_secs(u64::from(seconds)),
            Ok(_) => MIN_ACK_DEADLINE,
            Err(error) => {
                tracing::debug!(
                    subscription = %self.name,
                    "could not read the subscription's ack deadline, assuming 10 s: {error}"
                );
                MIN_ACK_DEADLINE
            }
        };
        interval.min(ack_deadline / 2)
    }
}

/// At least one free handling slot (waiting for it), and every other one free now, up to what
/// one pull returns.
async fn free_slots(permits: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let Ok(first) = permits.clone().acquire_owned().await else {
        // The semaphore is never closed.
        return Vec::new();
    };
    let mut slots = vec![first];
    while slots.len() < MAX_PULL_MESSAGES {
        match permits.clone().try_acquire_owned() {
            Ok(p) => slots.push(p),
            Err(_) => break,
        }
    }
    slots
}

/// Starts a handler per message, each holding one slot.
async fn dispatch(
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    messages: Vec<ReceivedMessage>,
    mut slots: Vec<OwnedSemaphorePermit>,
    tasks: &mut JoinSet<()>,
) {
    for message in messages {
        let slot = match slots.pop() {
            Some(slot) => slot,
            // Never more messages than requested; if so, wait for room.
            None => match permits.clone().acquire_owned().await {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        lock(&shared.in_flight).insert(message.ack_id.clone(), message.clone());
        tasks.spawn(handle_message(shared.clone(), message, slot));
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn count(stats: &Mutex<RunStats>, update: impl FnOnce(&mut RunStats)) {
    update(&mut lock(stats));
}

fn log_join_error(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if !e.is_cancelled() {
            tracing::error!(error = %e, "a message handler failed: {e}");
        }
    }
}
