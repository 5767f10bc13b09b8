//! Publishing: GCS-shaped object notifications (backfills) and JSON documents (failure topic).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use gcloud_googleapis::pubsub::v1::PubsubMessage as WireMessage;
use gcloud_pubsub::publisher::PublisherConfig;
use ingest_core::event::{EventType, ObjectEvent};
use serde_json::{Map, Value};

use crate::client::{PubsubClient, PubsubError};

/// The `eventType` attribute GCS sets for each kind of event.
fn event_type_attribute(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Finalize => "OBJECT_FINALIZE",
        EventType::Delete => "OBJECT_DELETE",
        EventType::Archive => "OBJECT_ARCHIVE",
        EventType::MetadataUpdate => "OBJECT_METADATA_UPDATE",
    }
}

/// RFC 3339 in UTC with a `Z`, as GCS writes times (`2020-05-06T15:19:27.123Z`).
fn gcs_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The attributes and data of the notification GCS publishes for `event` with payload format
/// `JSON_API_V1`:
///
/// - attributes `bucketId`, `objectId`, `objectGeneration` (when the generation is known),
///   `eventType` (`OBJECT_FINALIZE`, `OBJECT_DELETE`, …), `payloadFormat` = `JSON_API_V1`,
///   `eventTime` (when the event time is known);
/// - data: the object resource as JSON, with `kind`, `id` (`bucket/name/generation`), `name`,
///   `bucket`, `generation` and `size` (strings, as the JSON API writes int64s), and
///   `timeCreated` / `updated` (the event time).
///
/// A pure function: [`Publisher::publish_object_event`] publishes its result.
///
/// ```
/// use ingest_core::event::{parse_pubsub_message, ObjectEvent, PubsubMessage};
/// use ingest_pubsub::object_event_message;
///
/// let event = ObjectEvent::finalized("my-bucket", "dataset/table/_SUCCESS", 1588778367123456);
/// let (attributes, data) = object_event_message(&event);
/// assert_eq!(attributes["eventType"], "OBJECT_FINALIZE");
/// assert_eq!(attributes["objectGeneration"], "1588778367123456");
/// let message = PubsubMessage { attributes, data, message_id: None };
/// assert_eq!(parse_pubsub_message(&message).unwrap(), event);
/// ```
pub fn object_event_message(event: &ObjectEvent) -> (BTreeMap<String, String>, Vec<u8>) {
    let mut attributes = BTreeMap::new();
    attributes.insert("bucketId".to_string(), event.bucket.clone());
    attributes.insert("objectId".to_string(), event.name.clone());
    if let Some(generation) = event.generation {
        attributes.insert("objectGeneration".to_string(), generation.to_string());
    }
    attributes.insert(
        "eventType".to_string(),
        event_type_attribute(event.event_type).to_string(),
    );
    attributes.insert("payloadFormat".to_string(), "JSON_API_V1".to_string());
    if let Some(time) = event.event_time {
        attributes.insert("eventTime".to_string(), gcs_time(time));
    }

    let mut resource = Map::new();
    resource.insert("kind".into(), Value::from("storage#object"));
    let id = match event.generation {
        Some(generation) => format!("{}/{}/{generation}", event.bucket, event.name),
        None => format!("{}/{}", event.bucket, event.name),
    };
    resource.insert("id".into(), Value::from(id));
    resource.insert("name".into(), Value::from(event.name.as_str()));
    resource.insert("bucket".into(), Value::from(event.bucket.as_str()));
    if let Some(generation) = event.generation {
        resource.insert("generation".into(), Value::from(generation.to_string()));
    }
    if let Some(size) = event.size {
        resource.insert("size".into(), Value::from(size.to_string()));
    }
    if let Some(time) = event.event_time {
        let time = gcs_time(time);
        resource.insert("timeCreated".into(), Value::from(time.as_str()));
        resource.insert("updated".into(), Value::from(time));
    }
    // Serializing a map of strings cannot fail; an empty payload would still parse from the
    // attributes alone.
    let data = serde_json::to_vec(&Value::Object(resource)).unwrap_or_default();
    (attributes, data)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ingest_core::event::{parse_pubsub_message, PubsubMessage};

    fn round_trip(event: &ObjectEvent) -> ObjectEvent {
        let (attributes, data) = object_event_message(event);
        let message = PubsubMessage {
            attributes,
            data,
            message_id: Some("1".into()),
        };
        match parse_pubsub_message(&message) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{} does not parse back: {e}", event.uri()),
        }
    }

    fn data_json(event: &ObjectEvent) -> Value {
        let (_, data) = object_event_message(event);
        match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => panic!("data of {} is not JSON: {e}", event.uri()),
        }
    }

    #[test]
    fn finalize_with_time_and_size_round_trips() {
        let event = ObjectEvent {
            bucket: "my-bucket".into(),
            name: "dataset/table/2020/10/26/_SUCCESS".into(),
            generation: Some(1_603_670_400_123_456),
            size: Some(1234),
            event_type: EventType::Finalize,
            event_time: Some(Utc.with_ymd_and_hms(2020, 10, 26, 1, 2, 3).unwrap()),
        };
        assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn sub_second_event_time_round_trips() {
        let time = Utc.timestamp_opt(1_603_670_400, 123_456_000).unwrap();
        let mut event = ObjectEvent::finalized("b", "ds/t/part-0.csv", 9);
        event.event_time = Some(time);
        let (attributes, _) = object_event_message(&event);
        assert_eq!(attributes["eventTime"], "2020-10-26T00:00:00.123456Z");
        assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn every_event_type_round_trips() {
        for (event_type, attribute) in [
            (EventType::Finalize, "OBJECT_FINALIZE"),
            (EventType::Delete, "OBJECT_DELETE"),
            (EventType::Archive, "OBJECT_ARCHIVE"),
            (EventType::MetadataUpdate, "OBJECT_METADATA_UPDATE"),
        ] {
            let mut event = ObjectEvent::finalized("b", "ds/t/_SUCCESS", 3);
            event.event_type = event_type;
            let (attributes, _) = object_event_message(&event);
            assert_eq!(attributes["eventType"], attribute);
            assert_eq!(round_trip(&event), event);
        }
    }

    #[test]
    fn unknown_generation_and_size_are_left_out() {
        let event = ObjectEvent {
            bucket: "b".into(),
            name: "ds/t/_SUCCESS".into(),
            generation: None,
            size: None,
            event_type: EventType::Finalize,
            event_time: None,
        };
        let (attributes, _) = object_event_message(&event);
        assert!(!attributes.contains_key("objectGeneration"));
        assert!(!attributes.contains_key("eventTime"));
        let data = data_json(&event);
        assert_eq!(data["id"], "b/ds/t/_SUCCESS");
        assert!(data.get("generation").is_none());
        assert!(data.get("size").is_none());
        assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn attributes_and_data_have_the_gcs_shape() {
        let mut event = ObjectEvent::finalized("my-bucket", "ds/t/_SUCCESS", 42);
        event.event_time = Some(Utc.with_ymd_and_hms(2021, 1, 2, 3, 4, 5).unwrap());
        let (attributes, _) = object_event_message(&event);
        let expected: BTreeMap<String, String> = [
            ("bucketId", "my-bucket"),
            ("objectId", "ds/t/_SUCCESS"),
            ("objectGeneration", "42"),
            ("eventType", "OBJECT_FINALIZE"),
            ("payloadFormat", "JSON_API_V1"),
            ("eventTime", "2021-01-02T03:04:05Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(attributes, expected);
        assert_eq!(
            data_json(&event),
            serde_json::json!({
                "kind": "storage#object",
                "id": "my-bucket/ds/t/_SUCCESS/42",
                "name": "ds/t/_SUCCESS",
                "bucket": "my-bucket",
                "generation": "42",
                "size": "0",
                "timeCreated": "2021-01-02T03:04:05Z",
                "updated": "2021-01-02T03:04:05Z",
            })
        );
    }

    #[test]
    fn names_needing_json_escapes_round_trip() {
        let event = ObjectEvent::finalized("b", "ds/t/a \"quoted\" \\ name/_SUCCESS", 5);
        assert_eq!(round_trip(&event), event);
    }
}
