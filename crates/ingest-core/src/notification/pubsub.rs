//! Pub/Sub messages of a GCS notification configuration (pull, and the message inside a push
//! envelope): attributes, and the object resource as data.

use super::fields::*;
use super::wire::{AttributeView, ObjectResource};
use crate::event::{EventType, NotificationError, ObjectEvent, PubsubMessage};

/// Parses a Pub/Sub message published by a GCS notification configuration: attributes
/// `bucketId`, `objectId`, `objectGeneration`, `eventType`, `payloadFormat` (`JSON_API_V1` with
/// the object resource as data, or `NONE` with empty data).
///
/// - `eventType` is one of `OBJECT_FINALIZE`, `OBJECT_DELETE`, `OBJECT_ARCHIVE`,
///   `OBJECT_METADATA_UPDATE`; any other value is [`NotificationError::UnsupportedType`].
/// - The generation comes from `objectGeneration`, else from the data's `generation`; the size
///   from the data's `size` (the JSON API writes both as strings; numbers are accepted too).
/// - The event time is the `eventTime` attribute (RFC 3339), else — for a finalize or a
///   metadata update — the data's `updated`, else its `timeCreated`.
/// - A missing `bucketId`, `objectId` or `eventType` is [`NotificationError::Missing`], with one
///   exception: a message with **none** of the three whose data is a JSON API object resource
///   (`"kind": "storage#object"` with `bucket` and `name`) — what some setups publish by hand —
///   is taken as a finalize of that object.
///
/// ```
/// use std::collections::BTreeMap;
/// use ingest_core::notification::parse_pubsub_message;
/// use ingest_core::event::{EventType, PubsubMessage};
///
/// let attributes: BTreeMap<String, String> = [
///     ("bucketId", "my-bucket"),
///     ("objectId", "dataset/table/_SUCCESS"),
///     ("objectGeneration", "1588778367123456"),
///     ("eventType", "OBJECT_FINALIZE"),
///     ("payloadFormat", "NONE"),
/// ]
/// .into_iter()
/// .map(|(k, v)| (k.to_string(), v.to_string()))
/// .collect();
/// let message = PubsubMessage { attributes, data: Vec::new(), message_id: None };
/// let event = parse_pubsub_message(&message).unwrap();
/// assert_eq!(event.uri(), "gs://my-bucket/dataset/table/_SUCCESS");
/// assert_eq!(event.generation, Some(1588778367123456));
/// assert_eq!(event.event_type, EventType::Finalize);
/// ```
pub fn parse_pubsub_message(message: &PubsubMessage) -> Result<ObjectEvent, NotificationError> {
    event_from_notification(
        FORM_PUBSUB,
        AttributeView::of_map(&message.attributes),
        &message.data,
    )
}

/// Builds the event of a GCS notification from its attributes and data.
pub(crate) fn event_from_notification(
    form: &'static str,
    attributes: AttributeView<'_>,
    data: &[u8],
) -> Result<ObjectEvent, NotificationError> {
    let carries_resource = match attributes.payload_format {
        None | Some("JSON_API_V1") => !data.iter().all(u8::is_ascii_whitespace),
        Some("NONE") => false,
        Some(other) => {
            return Err(invalid(
                form,
                "payloadFormat attribute",
                other,
                "expected JSON_API_V1 or NONE",
            ))
        }
    };
    let resource: ObjectResource<'_> = if carries_resource {
        serde_json::from_slice::<ObjectResource<'_>>(data).map_err(|e| {
            NotificationError::InvalidJson {
                form,
                message: format!("message data is not a JSON object resource: {e}"),
            }
        })?
    } else {
        ObjectResource::default()
    };

    let (bucket, name, event_type) = match (
        attributes.bucket_id,
        attributes.object_id,
        attributes.event_type,
    ) {
        (Some(bucket), Some(name), Some(event_type)) => {
            (bucket, name, notification_event_type(form, event_type)?)
        }
        // What the Python function's `backfill.py` (and its own `main()`) publish: only
        // `bucketId` and `objectId`. It stands for a finalize of that object; the handler
        // learns the generation by a `stat`.
        (Some(bucket), Some(name), None) => (bucket, name, EventType::Finalize),
        // No GCS attributes at all: accept a bare JSON API object resource as a finalize.
        (None, None, None) if is_object_resource(&resource) => {
            return event_from_resource(form, EventType::Finalize, &resource, None);
        }
        (None, _, _) => return Err(missing(form, "bucketId attribute")),
        (_, None, _) => return Err(missing(form, "objectId attribute")),
    };

    let generation = match attributes.object_generation {
        Some(text) => Some(parse_generation_text(
            form,
            "objectGeneration attribute",
            text,
        )?),
        None => resource
            .generation
            .as_ref()
            .map(|g| parse_generation(form, "data.generation", g))
            .transpose()?,
    };
    let size = resource
        .size
        .as_ref()
        .map(|s| parse_size(form, "data.size", s))
        .transpose()?;
    let event_time = match attributes.event_time {
        Some(text) => Some(parse_time(form, "eventTime attribute", text)?),
        None => resource
            .state_time(event_type)
            .map(|(field, text)| parse_time(form, data_field(field), text))
            .transpose()?,
    };
    build_event(form, bucket, name, generation, size, event_type, event_time)
}
