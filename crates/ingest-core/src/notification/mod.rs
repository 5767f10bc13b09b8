//! Parsers of every envelope a GCS object notification reaches a service in, into one
//! [`ObjectEvent`](crate::event::ObjectEvent); the encoder of the other direction; and the detection of the form of an
//! HTTP request.
//!
//! | form | parser | file |
//! | --- | --- | --- |
//! | Pub/Sub message (pull) | [`parse_pubsub_message`] | `pubsub.rs` |
//! | Pub/Sub push envelope | [`parse_push_envelope`], [`parse_push_envelope_routed`], [`parse_push_envelope_message`] | `push.rs` |
//! | CloudEvent, binary and structured mode | [`parse_cloud_event_binary`], [`parse_cloud_event_structured`] | `cloud_event.rs` |
//! | Cloud Functions background event | [`parse_background_event`] | `background.rs` |
//! | any of them over HTTP, detected | [`read_http_notification`] | `detect.rs` |
//! | the message GCS would publish | [`object_event_message`] | `encode.rs` |
//!
//! Every parser deserializes the body once into small borrowed `serde` structs (`wire.rs`:
//! strings borrowed from the body unless they contain JSON escapes, unknown fields skipped),
//! and allocates only the [`ObjectEvent`](crate::event::ObjectEvent)'s strings and, for base64 payloads, the decoded
//! bytes. None of them panics on bad input: every failure is a [`NotificationError`](crate::event::NotificationError) naming
//! the form and the field. A push envelope whose attributes name an object bq-ingest ignores
//! is routed from the attributes alone: most notifications are such no-ops, and their base64
//! object resource is never decoded.

mod background;
mod cloud_event;
mod detect;
mod encode;
mod fields;
mod pubsub;
mod push;
mod wire;

pub use background::parse_background_event;
pub use cloud_event::{parse_cloud_event_binary, parse_cloud_event_structured};
pub use detect::{
    read_http_notification, Accept, Headers, HttpNotification, HttpNotificationError,
    NotificationForm, CLOUD_EVENTS_BATCH_JSON, CLOUD_EVENTS_JSON,
};
pub use encode::object_event_message;
pub use pubsub::parse_pubsub_message;
pub use push::{parse_push_envelope, parse_push_envelope_message, parse_push_envelope_routed};

#[cfg(test)]
mod detect_tests;
#[cfg(test)]
mod encode_tests;
#[cfg(test)]
mod tests;
