//! Parsers of the notification envelopes. See [`crate::event`] for the types.

use crate::event::{NotificationError, ObjectEvent, PubsubMessage};

/// Parses a Pub/Sub message published by a GCS notification configuration: attributes
/// `bucketId`, `objectId`, `objectGeneration`, `eventType`, `payloadFormat` (`JSON_API_V1` with
/// the object resource as data, or `NONE` with empty data).
pub fn parse_pubsub_message(message: &PubsubMessage) -> Result<ObjectEvent, NotificationError> {
    let _ = message;
    unimplemented!("helper fills this in")
}

/// Parses the body of a Pub/Sub push request (`{"message": {...}, "subscription": ...}`).
pub fn parse_push_envelope(body: &[u8]) -> Result<ObjectEvent, NotificationError> {
    parse_push_envelope_message(body).and_then(|m| parse_pubsub_message(&m))
}

/// Decodes a push envelope into its [`PubsubMessage`] without interpreting it.
pub fn parse_push_envelope_message(body: &[u8]) -> Result<PubsubMessage, NotificationError> {
    let _ = body;
    unimplemented!("helper fills this in")
}

/// Parses a binary-mode CloudEvent: `ce-*` headers (names case-insensitive) and the object
/// resource JSON as body.
pub fn parse_cloud_event_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Result<ObjectEvent, NotificationError> {
    let _ = (headers.into_iter().count(), body);
    unimplemented!("helper fills this in")
}

/// Parses a structured-mode CloudEvent (`application/cloudevents+json`).
pub fn parse_cloud_event_structured(body: &[u8]) -> Result<ObjectEvent, NotificationError> {
    let _ = body;
    unimplemented!("helper fills this in")
}

/// Parses a Cloud Functions (1st gen) background event: `{"bucket", "name", "generation", …}`,
/// optionally wrapped as `{"data": {...}, "context": {...}}`.
pub fn parse_background_event(body: &[u8]) -> Result<ObjectEvent, NotificationError> {
    let _ = body;
    unimplemented!("helper fills this in")
}
