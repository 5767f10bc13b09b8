//! The other direction: the Pub/Sub message GCS would publish for an object event, for
//! backfills that publish notifications and for tests.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::event::{EventType, ObjectEvent};

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
/// A pure function: `ingest_pubsub::Publisher::publish_object_event` publishes its result,
/// and `bq-ingest backfill --mode notifications` sends exactly this.
///
/// ```
/// use ingest_core::event::{ObjectEvent, PubsubMessage};
/// use ingest_core::notification::{object_event_message, parse_pubsub_message};
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
