//! Publishing: GCS-shaped object notifications (backfills) and JSON documents (failure topic).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::Utc;
use gcloud_googleapis::pubsub::v1::PubsubMessage as WireMessage;
use gcloud_pubsub::publisher::PublisherConfig;
use ingest_core::event::ObjectEvent;
pub use ingest_core::notification::object_event_message;
use serde_json::Value;

use crate::client::{PubsubClient, PubsubError};

/// Publishes to one topic. Messages are batched in the background (up to 100 per request,
/// flushed every 20 ms); each `publish_*` call returns once its message is stored by Pub/Sub.
/// Clones share the batching tasks. Call [`Publisher::shutdown`] to flush before exiting.
///
/// One call waits for its batch to be flushed (up to 20 ms), so a backfill publishing many
/// events should keep many calls in flight, e.g. with
/// `futures::stream::iter(events).map(|e| publisher.publish_object_event(e)).buffer_unordered(100)`.
#[derive(Clone, Debug)]
pub struct Publisher {
    topic: String,
    inner: gcloud_pubsub::publisher::Publisher,
}

impl Publisher {
    /// A publisher to `topic` (a short id in the client's project, or `projects/P/topics/T`).
    /// The topic is not checked here; a missing topic fails each publish with `NotFound`.
    pub fn new(client: &PubsubClient, topic: &str) -> Self {
        let topic = client.topic_name(topic);
        let config = PublisherConfig {
            workers: 2,
            flush_interval: Duration::from_millis(20),
            bundle_size: 100,
            retry_setting: Some(gcloud_pubsub::apiv1::default_retry_setting()),
        };
        let inner = client.inner.topic(&topic).new_publisher(Some(config));
        Publisher { topic, inner }
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
        let message = WireMessage {
            data,
            attributes: attributes.into_iter().collect::<HashMap<_, _>>(),
            ..WireMessage::default()
        };
        self.inner
            .publish(message)
            .await
            .get()
            .await
            .map_err(|status| PubsubError::rpc("publish", &self.topic, &status))
    }

    /// Flushes the messages not yet sent and stops the batching tasks (of every clone).
    pub async fn shutdown(mut self) {
        self.inner.shutdown().await;
    }
}
