//! Which notification form a request carries, and the delivery ids worth logging.
//!
//! The JSON forms are told apart by their top-level keys. [`Probe`] reads them in one pass over
//! the body without allocating (keys are matched in place, ids are borrowed from the body unless
//! they contain JSON escapes) and never fails on a shape it does not expect: only a body that is
//! not JSON at all is an error.

use std::borrow::Cow;
use std::fmt;

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The media type of a structured-mode CloudEvent.
pub(crate) const CLOUD_EVENTS_JSON: &str = "application/cloudevents+json";
/// The media type of a batch of structured-mode CloudEvents (not supported).
pub(crate) const CLOUD_EVENTS_BATCH_JSON: &str = "application/cloudevents-batch+json";

/// The envelope a GCS object notification arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationForm {
    /// A Pub/Sub push request: `{"message": {"attributes": {...}, "data": ...}, "subscription": ...}`.
    PushEnvelope,
    /// A binary-mode CloudEvent (Eventarc): `ce-*` headers, the object resource as the body.
    CloudEventBinary,
    /// A structured-mode CloudEvent: `application/cloudevents+json`, `{"specversion", "type", "data", ...}`.
    CloudEventStructured,
    /// A Cloud Functions (1st gen) background event: the object resource, or `{"data", "context"}`.
    BackgroundEvent,
}

impl NotificationForm {
    /// A short name for logs and responses: `push`, `cloudevent_binary`, `cloudevent_structured`,
    /// `background`.
    pub fn name(self) -> &'static str {
        match self {
            NotificationForm::PushEnvelope => "push",
            NotificationForm::CloudEventBinary => "cloudevent_binary",
            NotificationForm::CloudEventStructured => "cloudevent_structured",
            NotificationForm::BackgroundEvent => "background",
        }
    }
}

impl fmt::Display for NotificationForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the request carries a `ce-type` header (a binary-mode CloudEvent).
pub(crate) fn has_ce_type(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-type")
}

/// Whether the content type is `application/cloudevents+json` (parameters and case ignored).
pub(crate) fn is_structured_cloud_event(headers: &HeaderMap) -> bool {
    content_type_is(headers, CLOUD_EVENTS_JSON)
}

/// Whether the content type is `application/cloudevents-batch+json`.
pub(crate) fn is_cloud_event_batch(headers: &HeaderMap) -> bool {
    content_type_is(headers, CLOUD_EVENTS_BATCH_JSON)
}

fn content_type_is(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case(media_type)
        })
        .unwrap_or(false)
}

/// The `ce-id` header, when present and readable.
pub(crate) fn ce_id_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("ce-id").and_then(|v| v.to_str().ok())
}

/// What the top level of a JSON body looks like, plus the delivery ids it carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Probe<'a> {
    /// The body is a JSON object.
    pub(crate) is_object: bool,
    /// A non-null `message` (Pub/Sub push envelope).
    pub(crate) has_message: bool,
    /// A non-null `specversion` (structured CloudEvent).
    pub(crate) has_specversion: bool,
    /// Non-null `bucket` and `name` (unwrapped background event).
    pub(crate) has_bucket: bool,
    /// See `has_bucket`.
    pub(crate) has_name: bool,
    /// A non-null `data` (wrapped background event, structured CloudEvent).
    pub(crate) has_data: bool,
    /// A non-null `context` (wrapped background event).
    pub(crate) has_context: bool,
    /// A non-null top-level `eventType` (legacy flat background event).
    pub(crate) has_event_type: bool,
    /// `message.messageId`, else `message.message_id`.
    pub(crate) message_id: Option<Cow<'a, str>>,
    /// The CloudEvent `id`.
    pub(crate) id: Option<Cow<'a, str>>,
    /// `context.eventId`, else the top-level `eventId`.
    pub(crate) event_id: Option<Cow<'a, str>>,
}

impl<'a> Probe<'a> {
    /// Reads the top level of `body`. Fails only when the body is not JSON.
    pub(crate) fn read(body: &'a [u8]) -> Result<Probe<'a>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let probe = Probe::deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(probe)
    }

    /// The form the keys point to, if any: `message` → push envelope; `specversion` →
    /// structured CloudEvent; `bucket` + `name`, or `data` + `context` / `eventType` →
    /// background event.
    pub(crate) fn form(&self) -> Option<NotificationForm> {
        if self.has_message {
            Some(NotificationForm::PushEnvelope)
        } else if self.has_specversion {
            Some(NotificationForm::CloudEventStructured)
        } else if (self.has_bucket && self.has_name)
            || (self.has_data && (self.has_context || self.has_event_type))
        {
            Some(NotificationForm::BackgroundEvent)
        } else {
            None
        }
    }

    /// The delivery id worth logging for `form`.
    pub(crate) fn delivery_id(&self, form: NotificationForm) -> Option<&str> {
        match form {
            NotificationForm::PushEnvelope => self.message_id.as_deref(),
            NotificationForm::CloudEventBinary | NotificationForm::CloudEventStructured => {
                self.id.as_deref()
            }
            NotificationForm::BackgroundEvent => self.event_id.as_deref(),
        }
    }
}

/// Top-level keys the probe looks at.
enum TopKey {
    Message,
    Specversion,
    Bucket,
    Name,
    Data,
    Context,
    EventType,
    Id,
    EventId,
    Other,
}

/// Keys inside `message` and `context`.
enum InnerKey {
    MessageIdCamel,
    MessageIdSnake,
    EventId,
    Other,
}

macro_rules! key_deserialize {
    ($ty:ident, $($name:literal => $variant:ident),* $(,)?) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct KeyVisitor;
                impl<'de> Visitor<'de> for KeyVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        Ok(match v {
                            $($name => $ty::$variant,)*
                            _ => $ty::Other,
                        })
                    }
                }
                deserializer.deserialize_identifier(KeyVisitor)
            }
        }
    };
}

key_deserialize!(TopKey,
    "message" => Message,
    "specversion" => Specversion,
    "bucket" => Bucket,
    "name" => Name,
    "data" => Data,
    "context" => Context,
    "eventType" => EventType,
    "id" => Id,
    "eventId" => EventId,
);

key_deserialize!(InnerKey,
    "messageId" => MessageIdCamel,
    "message_id" => MessageIdSnake,
    "eventId" => EventId,
);

/// Drains a sequence of anything.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Drains the rest of a map of anything.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the scalar and sequence methods of a lenient visitor: any such value yields
/// `$value`.
macro_rules! lenient_scalars {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($value)
        }
    };
}

/// Whether a value is present and not `null`; accepts any JSON value.
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PresentVisitor;
        impl<'de> Visitor<'de> for PresentVisitor {
            type Value = Present;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Present, E> {
                Ok(Present(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<Present, E> {
                Ok(Present(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Present, A::Error> {
                drain_map(map)?;
                Ok(Present(true))
            }
            lenient_scalars!(Present(true));
        }
        deserializer.deserialize_any(PresentVisitor)
    }
}

/// A string (borrowed when unescaped) or a number turned into text; `None` for anything else.
struct LooseText<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LooseText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = LooseText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LooseText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LooseText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LooseText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LooseText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LooseText(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LooseText(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LooseText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(LooseText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(LooseText(None))
            }
        }
        deserializer.deserialize_any(TextVisitor(std::marker::PhantomData))
    }
}

/// The ids inside `message` or `context`: whether the value is present and not `null`, its
/// first id (`messageId`, else `message_id`; or `eventId`).
struct Inner<'a> {
    present: bool,
    id: Option<Cow<'a, str>>,
}

/// Which id an [`Inner`] collects.
#[derive(Clone, Copy)]
enum InnerKind {
    Message,
    Context,
}

/// Reads an [`Inner`] of the given kind.
struct InnerSeed<'a>(InnerKind, std::marker::PhantomData<&'a ()>);

impl InnerKind {
    fn seed<'a>(self) -> InnerSeed<'a> {
        InnerSeed(self, std::marker::PhantomData)
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for InnerSeed<'a> {
    type Value = Inner<'a>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Inner<'a>, D::Error> {
        struct InnerVisitor<'a>(InnerKind, std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for InnerVisitor<'a> {
            type Value = Inner<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Inner {
                    present: false,
                    id: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut camel = None;
                let mut snake = None;
                while let Some(key) = map.next_key::<InnerKey>()? {
                    match (self.0, key) {
                        (InnerKind::Message, InnerKey::MessageIdCamel)
                        | (InnerKind::Context, InnerKey::EventId) => {
                            camel = map.next_value::<LooseText<'a>>()?.0;
                        }
                        (InnerKind::Message, InnerKey::MessageIdSnake) => {
                            snake = map.next_value::<LooseText<'a>>()?.0;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Inner {
                    present: true,
                    id: camel.or(snake),
                })
            }
            lenient_scalars!(Inner {
                present: true,
                id: None
            });
        }
        deserializer.deserialize_any(InnerVisitor(self.0, std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Probe<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProbeVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ProbeVisitor<'a> {
            type Value = Probe<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Probe::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut probe = Probe {
                    is_object: true,
                    ..Probe::default()
                };
                let mut context_event_id = None;
                let mut top_event_id = None;
                while let Some(key) = map.next_key::<TopKey>()? {
                    match key {
                        TopKey::Message => {
                            let inner = map.next_value_seed(InnerKind::Message.seed())?;
                            probe.has_message = inner.present;
                            probe.message_id = inner.id;
                        }
                        TopKey::Context => {
                            let inner = map.next_value_seed(InnerKind::Context.seed())?;
                            probe.has_context = inner.present;
                            context_event_id = inner.id;
                        }
                        TopKey::Specversion => {
                            probe.has_specversion = map.next_value::<Present>()?.0
                        }
                        TopKey::Bucket => probe.has_bucket = map.next_value::<Present>()?.0,
                        TopKey::Name => probe.has_name = map.next_value::<Present>()?.0,
                        TopKey::Data => probe.has_data = map.next_value::<Present>()?.0,
                        TopKey::EventType => probe.has_event_type = map.next_value::<Present>()?.0,
                        TopKey::Id => probe.id = map.next_value::<LooseText<'a>>()?.0,
                        TopKey::EventId => top_event_id = map.next_value::<LooseText<'a>>()?.0,
                        TopKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                probe.event_id = context_event_id.or(top_event_id);
                Ok(probe)
            }
            lenient_scalars!(Probe::default());
        }
        deserializer.deserialize_any(ProbeVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_of(body: &str) -> Option<NotificationForm> {
        Probe::read(body.as_bytes()).unwrap().form()
    }

    #[test]
    fn probe_tells_the_forms_apart() {
        assert_eq!(
            form_of(r#"{"message": {"attributes": {}}, "subscription": "s"}"#),
            Some(NotificationForm::PushEnvelope)
        );
        assert_eq!(
            form_of(r#"{"specversion": "1.0", "type": "t", "data": {"bucket": "b"}}"#),
            Some(NotificationForm::CloudEventStructured)
        );
        assert_eq!(
            form_of(r#"{"bucket": "b", "name": "n", "kind": "storage#object"}"#),
            Some(NotificationForm::BackgroundEvent)
        );
        assert_eq!(
            form_of(r#"{"data": {"bucket": "b"}, "context": {"eventId": "9"}}"#),
            Some(NotificationForm::BackgroundEvent)
        );
        assert_eq!(
            form_of(r#"{"data": {}, "eventType": "google.storage.object.finalize"}"#),
            Some(NotificationForm::BackgroundEvent)
        );
        // Not enough to tell.
        assert_eq!(form_of(r#"{"bucket": "b"}"#), None);
        assert_eq!(form_of(r#"{"message": null, "bucket": "b"}"#), None);
        assert_eq!(form_of(r#"{"data": {}}"#), None);
        assert_eq!(form_of("[1, 2]"), None);
        assert_eq!(form_of(r#""text""#), None);
        assert_eq!(form_of("null"), None);
        assert!(!Probe::read(b"17").unwrap().is_object);
    }

    #[test]
    fn probe_reads_ids_and_borrows_them() {
        let body = br#"{"message": {"data": "", "messageId": "42", "message_id": "43",
                        "attributes": {"messageId": "no"}}, "subscription": "s"}"#;
        let probe = Probe::read(body).unwrap();
        assert_eq!(probe.message_id.as_deref(), Some("42"));
        assert!(matches!(probe.message_id, Some(Cow::Borrowed(_))));
        assert_eq!(
            probe.delivery_id(NotificationForm::PushEnvelope),
            Some("42")
        );

        let probe = Probe::read(br#"{"message": {"message_id": 7}}"#).unwrap();
        assert_eq!(probe.message_id.as_deref(), Some("7"));

        let probe = Probe::read(br#"{"specversion": "1.0", "id": "a\"b"}"#).unwrap();
        assert_eq!(probe.id.as_deref(), Some("a\"b"));
        assert_eq!(
            probe.delivery_id(NotificationForm::CloudEventStructured),
            Some("a\"b")
        );

        let probe =
            Probe::read(br#"{"eventId": "top", "data": {}, "context": {"eventId": "ctx"}}"#)
                .unwrap();
        assert_eq!(
            probe.delivery_id(NotificationForm::BackgroundEvent),
            Some("ctx")
        );
        let probe = Probe::read(br#"{"eventId": "top", "data": {}, "eventType": "x"}"#).unwrap();
        assert_eq!(
            probe.delivery_id(NotificationForm::BackgroundEvent),
            Some("top")
        );
    }

    #[test]
    fn probe_accepts_unexpected_shapes_and_rejects_only_non_json() {
        let probe =
            Probe::read(br#"{"message": "text", "id": [1], "context": 5, "name": {"a": [1]}}"#)
                .unwrap();
        assert!(probe.has_message && probe.has_context && probe.has_name);
        assert_eq!(probe.id, None);
        assert!(Probe::read(b"{oops").is_err());
        assert!(Probe::read(b"{} trailing").is_err());
        assert!(Probe::read(b"").is_err());
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_structured_cloud_event(&headers));
        headers.insert(
            CONTENT_TYPE,
            "Application/CloudEvents+JSON; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert!(is_structured_cloud_event(&headers));
        assert!(!is_cloud_event_batch(&headers));
        headers.insert(
            CONTENT_TYPE,
            "application/cloudevents-batch+json".parse().unwrap(),
        );
        assert!(is_cloud_event_batch(&headers));
        assert!(!has_ce_type(&headers));
        headers.insert("Ce-Type", "x".parse().unwrap());
        headers.insert("ce-id", "17".parse().unwrap());
        assert!(has_ce_type(&headers));
        assert_eq!(ce_id_header(&headers), Some("17"));
    }
}
