//! Pub/Sub push requests: `{"message": {"data", "attributes", "messageId"}, "subscription"}`.

use std::borrow::Cow;

use super::fields::*;
use super::pubsub::event_from_notification;
use super::wire::{AttributeView, PushEnvelope, PushEnvelopeAll, PushMessage};
use crate::event::{EventType, NotificationError, ObjectEvent, PubsubMessage};

/// Parses the body of a Pub/Sub push request (`{"message": {...}, "subscription": ...}`).
///
/// Equivalent to [`parse_push_envelope_message`] then [`parse_pubsub_message`](super::parse_pubsub_message), but reads only
/// the GCS attributes, borrowing them from the body.
///
/// ```
/// use ingest_core::notification::parse_push_envelope;
///
/// let body = br#"{
///   "message": {
///     "attributes": {
///       "bucketId": "my-bucket", "objectId": "dataset/table/_SUCCESS",
///       "objectGeneration": "7", "eventType": "OBJECT_FINALIZE", "payloadFormat": "NONE"
///     },
///     "messageId": "1", "message_id": "1"
///   },
///   "subscription": "projects/p/subscriptions/s"
/// }"#;
/// let event = parse_push_envelope(body).unwrap();
/// assert_eq!((event.bucket.as_str(), event.name.as_str()), ("my-bucket", "dataset/table/_SUCCESS"));
/// assert_eq!(event.generation, Some(7));
/// ```
pub fn parse_push_envelope(body: &[u8]) -> Result<ObjectEvent, NotificationError> {
    let envelope: PushEnvelope<'_> = from_json(FORM_PUSH, body)?;
    let message = envelope.message.ok_or(NotificationError::Missing {
        form: FORM_PUSH,
        field: "message",
    })?;
    event_of_push_message(&message)
}

/// The event of a push envelope's message.
pub(crate) fn event_of_push_message(
    message: &PushMessage<'_>,
) -> Result<ObjectEvent, NotificationError> {
    let attributes = message
        .attributes
        .as_ref()
        .map(AttributeView::of_wire)
        .unwrap_or_default();
    let Some(encoded) = &message.data else {
        return event_from_notification(FORM_PUSH, attributes, &[]);
    };
    // The decoded payload lives only for this call: reuse one buffer per thread.
    DATA_BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        decode_base64_into(FORM_PUSH, "message.data", encoded.as_ref(), buffer)?;
        let event = event_from_notification(FORM_PUSH, attributes, buffer);
        if buffer.capacity() > MAX_KEPT_BUFFER {
            *buffer = Vec::new();
        }
        event
    })
}

/// Parses a push envelope only as far as routing needs: when its attributes name a complete GCS
/// notification (`bucketId`, `objectId`, `eventType`) of an object bq-ingest ignores (a data
/// file, a delete, anything under `_config/`), the event is built from the attributes alone and
/// `message.data` is not decoded — most notifications are such no-ops. Triggers (and envelopes
/// whose attributes are incomplete) are parsed in full, exactly as [`parse_push_envelope`] does.
///
/// ```
/// use ingest_core::notification::parse_push_envelope_routed;
/// use ingest_core::settings::Settings;
/// use ingest_core::trigger::Trigger;
///
/// let body = br#"{"message": {"data": "not even base64!",
///   "attributes": {"bucketId": "b", "objectId": "ds/t/part-0001.csv", "eventType": "OBJECT_FINALIZE",
///                  "objectGeneration": "7", "payloadFormat": "JSON_API_V1"}}}"#;
/// let (event, trigger) = parse_push_envelope_routed(&Settings::default(), body).unwrap();
/// assert_eq!(event.name, "ds/t/part-0001.csv");
/// assert!(matches!(trigger, Trigger::Ignore(_)));
/// ```
pub fn parse_push_envelope_routed(
    settings: &crate::settings::Settings,
    body: &[u8],
) -> Result<(ObjectEvent, crate::trigger::Trigger), NotificationError> {
    let envelope: PushEnvelope<'_> = from_json(FORM_PUSH, body)?;
    let message = envelope.message.ok_or(NotificationError::Missing {
        form: FORM_PUSH,
        field: "message",
    })?;
    if let Some(routed) = route_from_attributes(settings, &message)? {
        return Ok(routed);
    }
    let event = event_of_push_message(&message)?;
    let trigger = crate::trigger::classify(settings, &event);
    Ok((event, trigger))
}

/// When the attributes of a push message name an object bq-ingest ignores (a data file, a
/// delete, anything under `_config/`), its event built from the attributes alone — the data is
/// not decoded; `None` when the message must be parsed in full.
pub(crate) fn route_from_attributes(
    settings: &crate::settings::Settings,
    message: &PushMessage<'_>,
) -> Result<Option<(ObjectEvent, crate::trigger::Trigger)>, NotificationError> {
    use crate::trigger::{classify_name, Trigger};
    let attributes = message
        .attributes
        .as_ref()
        .map(AttributeView::of_wire)
        .unwrap_or_default();
    let (Some(_), Some(name)) = (attributes.bucket_id, attributes.object_id) else {
        return Ok(None);
    };
    let event_type = match attributes.event_type {
        Some(kind) => notification_event_type(FORM_PUSH, kind)?,
        None => EventType::Finalize,
    };
    match classify_name(settings, event_type, name) {
        trigger @ Trigger::Ignore(_) => {
            // A no-op: the attributes are enough; the object resource is not decoded.
            let routing = AttributeView {
                payload_format: Some("NONE"),
                ..attributes
            };
            event_from_notification(FORM_PUSH, routing, &[]).map(|e| Some((e, trigger)))
        }
        _ => Ok(None),
    }
}

thread_local! {
    /// The decode buffer of [`parse_push_envelope`].
    static DATA_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest decode buffer kept between calls; larger ones are freed after use.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

/// Decodes a push envelope into its [`PubsubMessage`] without interpreting it.
///
/// `message.data` is base64 (standard alphabet; URL-safe and unpadded are accepted too);
/// absent or `null` data and attributes are empty. The message id is `messageId`, else
/// `message_id`.
///
/// ```
/// use ingest_core::notification::parse_push_envelope_message;
///
/// let body = br#"{"message": {"data": "aGVsbG8=", "attributes": {"a": "b"}, "messageId": "42"},
///                 "subscription": "projects/p/subscriptions/s"}"#;
/// let message = parse_push_envelope_message(body).unwrap();
/// assert_eq!(message.data, b"hello");
/// assert_eq!(message.attributes["a"], "b");
/// assert_eq!(message.message_id.as_deref(), Some("42"));
/// ```
pub fn parse_push_envelope_message(body: &[u8]) -> Result<PubsubMessage, NotificationError> {
    let envelope: PushEnvelopeAll<'_> = from_json(FORM_PUSH, body)?;
    let message = envelope.message.ok_or(NotificationError::Missing {
        form: FORM_PUSH,
        field: "message",
    })?;
    let data = match message.data {
        Some(encoded) => decode_base64(FORM_PUSH, "message.data", &encoded)?,
        None => Vec::new(),
    };
    Ok(PubsubMessage {
        attributes: message.attributes.unwrap_or_default(),
        data,
        message_id: message
            .message_id_camel
            .or(message.message_id_snake)
            .map(Cow::into_owned),
    })
}
