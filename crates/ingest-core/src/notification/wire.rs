//! The JSON shapes of the notifications, as borrowed `serde` structs: strings borrow from the
//! body unless they hold JSON escapes, every field bq-ingest does not read is skipped
//! (`serde` ignores unknown keys with `IgnoredAny`), and nothing is decoded before it is
//! needed (the base64 `data` of a push message stays a slice of the body).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::event::EventType;

/// A JSON scalar that may be written as a string (`"123"`, the JSON API's int64 encoding) or a
/// number (`123`, some hand-written or legacy payloads).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Text(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
            type Value = Scalar<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string holding one")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Signed(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar::Float(v))
            }
        }

        deserializer.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Unsigned(n) => write!(f, "{n}"),
            Scalar::Signed(n) => write!(f, "{n}"),
            Scalar::Float(n) => write!(f, "{n}"),
        }
    }
}

/// A JSON string read as raw bytes (borrowed when it has no escapes), skipping UTF-8
/// validation: for base64 payloads, whose decoder checks every byte anyway.
#[derive(Debug)]
pub(crate) struct StringBytes<'a>(pub(crate) Cow<'a, [u8]>);

impl AsRef<[u8]> for StringBytes<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StringBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for BytesVisitor<'a> {
            type Value = StringBytes<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(StringBytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(StringBytes(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringBytes(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringBytes(Cow::Owned(v.as_bytes().to_vec())))
            }
        }

        deserializer.deserialize_bytes(BytesVisitor(std::marker::PhantomData))
    }
}

/// The fields bq-ingest reads from a JSON API object resource
/// (<https://cloud.google.com/storage/docs/json_api/v1/objects#resource>); all others are skipped.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(crate) struct ObjectResource<'a> {
    #[serde(borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) bucket: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) generation: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub(crate) size: Option<Scalar<'a>>,
    #[serde(rename = "timeCreated", borrow)]
    pub(crate) time_created: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) updated: Option<Cow<'a, str>>,
}

impl ObjectResource<'_> {
    /// The time of the object's current state — `updated`, else `timeCreated` — which is the
    /// event time of a finalize or a metadata update (not of a delete or an archive).
    pub(crate) fn state_time(&self, event_type: EventType) -> Option<(&'static str, &str)> {
        if !matches!(event_type, EventType::Finalize | EventType::MetadataUpdate) {
            return None;
        }
        match (&self.updated, &self.time_created) {
            (Some(updated), _) => Some(("updated", updated)),
            (None, Some(created)) => Some(("timeCreated", created)),
            (None, None) => None,
        }
    }
}

/// The attributes of a GCS notification (<https://cloud.google.com/storage/docs/pubsub-notifications>).
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(crate) struct GcsAttributes<'a> {
    #[serde(rename = "bucketId", borrow)]
    pub(crate) bucket_id: Option<Cow<'a, str>>,
    #[serde(rename = "objectId", borrow)]
    pub(crate) object_id: Option<Cow<'a, str>>,
    #[serde(rename = "objectGeneration", borrow)]
    pub(crate) object_generation: Option<Cow<'a, str>>,
    #[serde(rename = "eventType", borrow)]
    pub(crate) event_type: Option<Cow<'a, str>>,
    #[serde(rename = "payloadFormat", borrow)]
    pub(crate) payload_format: Option<Cow<'a, str>>,
    #[serde(rename = "eventTime", borrow)]
    pub(crate) event_time: Option<Cow<'a, str>>,
}

/// A view of the GCS attributes, whichever container they came in.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AttributeView<'s> {
    pub(crate) bucket_id: Option<&'s str>,
    pub(crate) object_id: Option<&'s str>,
    pub(crate) object_generation: Option<&'s str>,
    pub(crate) event_type: Option<&'s str>,
    pub(crate) payload_format: Option<&'s str>,
    pub(crate) event_time: Option<&'s str>,
}

impl<'s> AttributeView<'s> {
    pub(crate) fn of_map(map: &'s BTreeMap<String, String>) -> Self {
        let get = |key: &str| map.get(key).map(String::as_str);
        AttributeView {
            bucket_id: get("bucketId"),
            object_id: get("objectId"),
            object_generation: get("objectGeneration"),
            event_type: get("eventType"),
            payload_format: get("payloadFormat"),
            event_time: get("eventTime"),
        }
    }

    pub(crate) fn of_wire(attributes: &'s GcsAttributes<'_>) -> Self {
        AttributeView {
            bucket_id: attributes.bucket_id.as_deref(),
            object_id: attributes.object_id.as_deref(),
            object_generation: attributes.object_generation.as_deref(),
            event_type: attributes.event_type.as_deref(),
            payload_format: attributes.payload_format.as_deref(),
            event_time: attributes.event_time.as_deref(),
        }
    }
}

/// The `message` of a push envelope, with the GCS attributes only.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PushMessage<'a> {
    /// The base64 text, not validated as UTF-8 (the decoder checks every byte).
    #[serde(borrow)]
    pub(crate) data: Option<StringBytes<'a>>,
    #[serde(borrow)]
    pub(crate) attributes: Option<GcsAttributes<'a>>,
    // Pub/Sub push sends both spellings; they are distinct keys, not aliases.
    #[serde(rename = "messageId", borrow)]
    pub(crate) message_id_camel: Option<Scalar<'a>>,
    #[serde(rename = "message_id", borrow)]
    pub(crate) message_id_snake: Option<Scalar<'a>>,
}

impl PushMessage<'_> {
    /// `messageId`, else `message_id`.
    pub(crate) fn message_id(&self) -> Option<String> {
        self.message_id_camel
            .as_ref()
            .or(self.message_id_snake.as_ref())
            .map(Scalar::to_string)
    }
}

/// `{"message": {...}, "subscription": "..."}`.
#[derive(Debug, Deserialize)]
pub(crate) struct PushEnvelope<'a> {
    #[serde(borrow)]
    pub(crate) message: Option<PushMessage<'a>>,
}

/// A push envelope's message with every attribute (for `PubsubMessage`).
#[derive(Debug, Deserialize)]
pub(crate) struct PushMessageAll<'a> {
    #[serde(borrow)]
    pub(crate) data: Option<StringBytes<'a>>,
    pub(crate) attributes: Option<BTreeMap<String, String>>,
    #[serde(rename = "messageId", borrow)]
    pub(crate) message_id_camel: Option<Cow<'a, str>>,
    #[serde(rename = "message_id", borrow)]
    pub(crate) message_id_snake: Option<Cow<'a, str>>,
}

/// `{"message": {...}}` with every attribute.
#[derive(Debug, Deserialize)]
pub(crate) struct PushEnvelopeAll<'a> {
    #[serde(borrow)]
    pub(crate) message: Option<PushMessageAll<'a>>,
}

/// A structured-mode CloudEvent.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StructuredCloudEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub(crate) source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) subject: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) data: Option<ObjectResource<'a>>,
    #[serde(borrow)]
    pub(crate) data_base64: Option<Cow<'a, str>>,
}

/// The `context` of a wrapped background event.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BackgroundContext<'a> {
    #[serde(rename = "eventType", alias = "event_type", borrow)]
    pub(crate) event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "eventId", alias = "event_id", borrow)]
    pub(crate) event_id: Option<Scalar<'a>>,
}

/// A 1st-gen background event: the object resource itself, or `{"data", "context"}`, or the
/// older flat `{"data", "eventType", "timestamp", ...}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BackgroundEvent<'a> {
    // Unwrapped: the object resource itself.
    #[serde(borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) bucket: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) generation: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub(crate) size: Option<Scalar<'a>>,
    #[serde(rename = "timeCreated", borrow)]
    pub(crate) time_created: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) updated: Option<Cow<'a, str>>,
    // Wrapped.
    #[serde(borrow)]
    pub(crate) data: Option<ObjectResource<'a>>,
    #[serde(borrow)]
    pub(crate) context: Option<BackgroundContext<'a>>,
    #[serde(rename = "eventType", borrow)]
    pub(crate) event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "eventId", borrow)]
    pub(crate) event_id: Option<Scalar<'a>>,
}

impl<'a> BackgroundEvent<'a> {
    /// Whether it is wrapped (`data`, `context` or a top-level `eventType`).
    pub(crate) fn is_wrapped(&self) -> bool {
        self.data.is_some() || self.context.is_some() || self.event_type.is_some()
    }

    /// The object resource of an unwrapped event.
    pub(crate) fn resource(&self) -> ObjectResource<'a> {
        ObjectResource {
            kind: self.kind.clone(),
            bucket: self.bucket.clone(),
            name: self.name.clone(),
            generation: self.generation.clone(),
            size: self.size.clone(),
            time_created: self.time_created.clone(),
            updated: self.updated.clone(),
        }
    }
}

/// Any JSON notification, read once: the union of the top-level keys of a push envelope, a
/// structured CloudEvent and a background event (they do not overlap in meaning: `data` is an
/// object resource in both forms that have it). Which form it is follows from the keys present
/// (see `detect`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AnyNotification<'a> {
    #[serde(borrow)]
    pub(crate) message: Option<PushMessage<'a>>,
    #[serde(borrow)]
    pub(crate) specversion: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    pub(crate) ce_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub(crate) source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) subject: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) data_base64: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) bucket: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) generation: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub(crate) size: Option<Scalar<'a>>,
    #[serde(rename = "timeCreated", borrow)]
    pub(crate) time_created: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) updated: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) data: Option<ObjectResource<'a>>,
    #[serde(borrow)]
    pub(crate) context: Option<BackgroundContext<'a>>,
    #[serde(rename = "eventType", borrow)]
    pub(crate) event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "eventId", borrow)]
    pub(crate) event_id: Option<Scalar<'a>>,
}

impl<'a> AnyNotification<'a> {
    /// The structured CloudEvent part.
    pub(crate) fn into_cloud_event(self) -> StructuredCloudEvent<'a> {
        StructuredCloudEvent {
            event_type: self.ce_type,
            id: self.id,
            source: self.source,
            subject: self.subject,
            time: self.time,
            data: self.data,
            data_base64: self.data_base64,
        }
    }

    /// The background-event part.
    pub(crate) fn into_background(self) -> BackgroundEvent<'a> {
        BackgroundEvent {
            kind: self.kind,
            bucket: self.bucket,
            name: self.name,
            generation: self.generation,
            size: self.size,
            time_created: self.time_created,
            updated: self.updated,
            data: self.data,
            context: self.context,
            event_type: self.event_type,
            timestamp: self.timestamp,
            event_id: self.event_id,
        }
    }
}
