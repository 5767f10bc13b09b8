//! GCS object notifications in every form they reach a service, parsed into one [`ObjectEvent`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// `OBJECT_FINALIZE` / `google.cloud.storage.object.v1.finalized`: a new generation exists.
    Finalize,
    /// `OBJECT_DELETE` / `…deleted`.
    Delete,
    /// `OBJECT_ARCHIVE` / `…archived`.
    Archive,
    /// `OBJECT_METADATA_UPDATE` / `…metadataUpdated`.
    MetadataUpdate,
}

/// One GCS object event, whatever envelope it came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    /// Bucket name.
    pub bucket: String,
    /// Object name.
    pub name: String,
    /// The object's generation, when the notification carries it.
    pub generation: Option<i64>,
    /// Object size in bytes, when the notification carries it.
    pub size: Option<u64>,
    /// What happened.
    pub event_type: EventType,
    /// When it happened, when the notification says.
    pub event_time: Option<DateTime<Utc>>,
}

impl ObjectEvent {
    /// A finalize event, as if GCS had sent it (used by tests, `explain` and backfills).
    ///
    /// ```
    /// use ingest_core::event::{EventType, ObjectEvent};
    /// let e = ObjectEvent::finalized("bucket", "ds/table/_SUCCESS", 1);
    /// assert_eq!(e.event_type, EventType::Finalize);
    /// assert_eq!(e.uri(), "gs://bucket/ds/table/_SUCCESS");
    /// ```
    pub fn finalized(bucket: &str, name: &str, generation: i64) -> Self {
        ObjectEvent {
            bucket: bucket.to_string(),
            name: name.to_string(),
            generation: Some(generation),
            size: Some(0),
            event_type: EventType::Finalize,
            event_time: None,
        }
    }

    /// `gs://bucket/name`.
    pub fn uri(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.name)
    }
}

/// Why a notification could not be parsed. Every variant says what is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// The body is not valid JSON (or not the expected JSON shape).
    #[error("{form}: invalid JSON: {message}")]
    InvalidJson {
        /// Which form was being parsed (`Pub/Sub push envelope`, `CloudEvent`, …).
        form: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A required field or attribute is absent.
    #[error("{form}: missing {field}")]
    Missing {
        /// Which form was being parsed.
        form: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A field is present but its value is not valid.
    #[error("{form}: invalid {field} {value:?}: {message}")]
    Invalid {
        /// Which form was being parsed.
        form: &'static str,
        /// The field.
        field: &'static str,
        /// The value found (truncated).
        value: String,
        /// What is wrong with it.
        message: String,
    },
    /// A well-formed event of a type bq-ingest does not handle (e.g. a non-storage CloudEvent).
    #[error("{form}: unsupported event type {event_type:?}")]
    UnsupportedType {
        /// Which form was being parsed.
        form: &'static str,
        /// The type found.
        event_type: String,
    },
}

/// A Pub/Sub message as delivered by pull or push: attributes and the decoded data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubsubMessage {
    /// Message attributes.
    pub attributes: BTreeMap<String, String>,
    /// The message data, already base64-decoded.
    pub data: Vec<u8>,
    /// The message id, when known.
    pub message_id: Option<String>,
}
