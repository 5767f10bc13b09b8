//! Publishing: GCS-shaped object notifications (backfills) and JSON documents (failure topic),
//! batched into few `topics.publish` requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use ingest_core::event::ObjectEvent;
pub use ingest_core::notification::object_event_message;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{PubsubClient, PubsubError};
use crate::wire::OutgoingMessage;

/// How a [`Publisher`] batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// At most this many messages per request (default 100; Pub/Sub accepts 1000).
    pub max_batch_messages: usize,
    /// At most about this many bytes per request (default 9 MB; Pub/Sub accepts 10 MB).
    pub max_batch_bytes: usize,
    /// How long the first message of a batch waits for others (default 20 ms).
    pub flush_interval: Duration,
    /// At most this many requests in flight (default 4).
    pub max_requests_in_flight: usize,
    /// At most this many messages queued and not yet sent; a publish waits for room (default
    /// 10 000).
    pub queue_capacity: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_batch_messages: 100,
            max_batch_bytes: 9_000_000,
            flush_interval: Duration::from_millis(20),
            max_requests_in_flight: 4,
            queue_capacity: 10_000,
        }
    }
}

/// A message waiting for its batch, and where its message id goes.
struct Pending {
    message: OutgoingMessage,
    reply: oneshot::Sender<Result<String, PubsubError>>,
}

/// Publishes to one topic. Messages are batched in a background task (see
/// [`PublisherConfig`]); each `publish_*` call returns once its message is stored by Pub/Sub,
/// with its message id. Clones share the task. [`Publisher::shutdown`] sends what is queued and
/// stops it; dropping every clone does the same, without waiting.
///
/// One call waits for its batch to be flushed (up to 20 ms), so a backfill publishing many
/// events should keep many calls in flight, e.g. with
/// `futures::stream::iter(events).map(|e| publisher.publish_object_event(e)).buffer_unordered(100)`.
///
/// Must be created inside a Tokio runtime.
#[derive(Clone, Debug)]
pub struct Publisher {
    topic: String,
    queue: Arc<Mutex<Option<mpsc::Sender<Pending>>>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to `topic` (a short id in the client's project, or `projects/P/topics/T`)
    /// with the default [`PublisherConfig`]. The topic is not checked here; a missing topic
    /// fails each publish with a "not found" [`PubsubError`].
    pub fn new(client: &PubsubClient, topic: &str) -> Self {
        Publisher::with_config(client, topic, PublisherConfig::default())
    }

    /// A publisher with its own batching configuration.
    pub fn with_config(client: &PubsubClient, topic: &str, config: PublisherConfig) -> Self {
        let topic = client.topic_name(topic);
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let task = tokio::spawn(send_batches(
            client.clone(),
            topic.clone(),
            receiver,
            config,
        ));
        Publisher {
            topic,
            queue: Arc::new(Mutex::new(Some(sender))),
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// The fully qualified topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes the notification GCS would have published for `event` (see
    /// [`object_event_message`]); an event without a time gets the current time, as GCS always
    /// sets one. Returns the message id.
    ///
    /// ```no_run
    /// # async fn example(client: &ingest_pubsub::PubsubClient) -> Result<(), ingest_pubsub::PubsubError> {
    /// use ingest_core::event::ObjectEvent;
    /// let publisher = ingest_pubsub::Publisher::new(client, "gcs-notifications");
    /// let event = ObjectEvent::finalized("my-bucket", "dataset/table/_SUCCESS", 7);
    /// let message_id = publisher.publish_object_event(&event).await?;
    /// println!("published {message_id}");
    /// publisher.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_object_event(&self, event: &ObjectEvent) -> Result<String, PubsubError> {
        let (attributes, data) = if event.event_time.is_some() {
            object_event_message(event)
        } else {
            let mut timed = event.clone();
            timed.event_time = Some(Utc::now());
            object_event_message(&timed)
        };
        self.publish_raw(attributes, data).await
    }

    /// Publishes `value` as JSON with `attributes` (the failure topic's messages). Returns the
    /// message id.
    ///
    /// ```no_run
    /// # async fn example(publisher: &ingest_pubsub::Publisher) -> Result<(), ingest_pubsub::PubsubError> {
    /// use std::collections::BTreeMap;
    /// let attributes = BTreeMap::from([("state".to_string(), "failed".to_string())]);
    /// let body = serde_json::json!({"marker": "gs://b/ds/t/_SUCCESS", "error": "job failed"});
    /// publisher.publish_json(attributes, &body).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_json(
        &self,
        attributes: BTreeMap<String, String>,
        value: &Value,
    ) -> Result<String, PubsubError> {
        let data = serde_json::to_vec(value).map_err(|e| PubsubError::Encode {
            resource: self.topic.clone(),
            message: e.to_string(),
        })?;
        self.publish_raw(attributes, data).await
    }

    /// Publishes a message with these attributes and data as they are. Returns the message id.
    pub async fn publish_raw(
        &self,
        attributes: BTreeMap<String, String>,
        data: Vec<u8>,
    ) -> Result<String, PubsubError> {
        let closed = || PubsubError::Closed {
            resource: self.topic.clone(),
        };
        let sender = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let message = OutgoingMessage { attributes, data };
        sender
            .send(Pending { message, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Sends the messages queued so far and stops the batching task (of every clone: their
    /// later publications fail with [`PubsubError::Closed`]).
    pub async fn shutdown(self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The batching task: collects messages into batches and sends them, a few at a time, until
/// the queue is closed and empty.
async fn send_batches(
    client: PubsubClient,
    topic: String,
    mut queue: mpsc::Receiver<Pending>,
    config: PublisherConfig,
) {
    let mut in_flight = JoinSet::new();
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        let (batch, next) = collect_batch(first, &mut queue, &config).await;
        carried = next;
        while in_flight.len() >= config.max_requests_in_flight.max(1) {
            in_flight.join_next().await;
        }
        in_flight.spawn(send_batch(client.clone(), topic.clone(), batch));
    }
    while in_flight.join_next().await.is_some() {}
}

/// `first` and what else arrives within the flush interval, within the batch limits; the
/// message that would have gone over the byte limit is returned for the next batch.
async fn collect_batch(
    first: Pending,
    queue: &mut mpsc::Receiver<Pending>,
    config: &PublisherConfig,
) -> (Vec<Pending>, Option<Pending>) {
    let mut bytes = first.message.encoded_len();
    let mut batch = vec![first];
    let flush = tokio::time::sleep(config.flush_interval);
    tokio::pin!(flush);
    while batch.len() < config.max_batch_messages.clamp(1, 1000) {
        let next = tokio::select! {
            next = queue.recv() => next,
            () = &mut flush => None,
        };
        let Some(next) = next else { break };
        let size = next.message.encoded_len();
        if bytes + size > config.max_batch_bytes {
            return (batch, Some(next));
        }
        bytes += size;
        batch.push(next);
    }
    (batch, None)
}

/// One `topics.publish` request; every message of the batch gets its id or the error.
async fn send_batch(client: PubsubClient, topic: String, batch: Vec<Pending>) {
    let (messages, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    match client.publish(&topic, &messages).await {
        Ok(ids) => {
            for (reply, id) in replies.into_iter().zip(ids) {
                let _ = reply.send(Ok(id));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
