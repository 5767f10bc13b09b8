//! Notifications over HTTP: which form a request carries (from its headers and top-level
//! keys), read in one pass over the body, with the delivery id worth logging and the trigger.

use std::fmt;

use super::background::event_of_background;
use super::cloud_event::{event_of_structured, parse_cloud_event_binary};
use super::fields::{from_json, FORM_BACKGROUND, FORM_CE_STRUCTURED, FORM_PUSH};
use super::push::{event_of_push_message, route_from_attributes};
use super::wire::{AnyNotification, BackgroundEvent, PushEnvelope, StructuredCloudEvent};
use crate::event::{NotificationError, ObjectEvent};
use crate::settings::Settings;
use crate::trigger::{classify, Trigger};

/// The media type of a structured-mode CloudEvent.
pub const CLOUD_EVENTS_JSON: &str = "application/cloudevents+json";
/// The media type of a batch of structured-mode CloudEvents (not supported).
pub const CLOUD_EVENTS_BATCH_JSON: &str = "application/cloudevents-batch+json";

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

/// Which forms a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Any form, detected: a `ce-type` header → binary CloudEvent; content type
    /// `application/cloudevents+json` → structured CloudEvent; JSON with `message` → push
    /// envelope; `specversion` → structured CloudEvent; `bucket` + `name`, or `data` +
    /// `context` / `eventType` → background event.
    Any,
    /// A Pub/Sub push envelope.
    PushEnvelope,
    /// A CloudEvent: binary mode when `ce-type` is present, else structured.
    CloudEvent,
    /// A background event.
    BackgroundEvent,
}

/// A notification received over HTTP: its form, its delivery id (`message.messageId`, the
/// CloudEvent `id` or `ce-id`, the background `eventId`), its event and what it triggers.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpNotification {
    /// The form it came in.
    pub form: NotificationForm,
    /// The delivery id, when the notification carries one.
    pub delivery_id: Option<String>,
    /// The object event.
    pub event: ObjectEvent,
    /// What it triggers (classified with the settings).
    pub trigger: Trigger,
}

/// Why a request carries no notification that can be handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpNotificationError {
    /// A parser rejected the notification.
    #[error(transparent)]
    Notification(#[from] NotificationError),
    /// The body is not JSON (auto-detection only; the explicit routes report their parser's
    /// error).
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    /// No body and no `ce-type` header.
    #[error(
        "empty request body and no ce-type header: expected a GCS notification \
         (Pub/Sub push envelope, CloudEvent or background event)"
    )]
    Empty,
    /// JSON whose keys match no known form.
    #[error(
        "unrecognised notification: expected a Pub/Sub push envelope (\"message\"), a CloudEvent \
         (\"ce-type\" header, content type application/cloudevents+json, or \"specversion\") or \
         a Cloud Functions background event (\"bucket\" and \"name\", or \"data\" and \"context\")"
    )]
    Unrecognised,
    /// `application/cloudevents-batch+json`.
    #[error(
        "batched CloudEvents (application/cloudevents-batch+json) are not supported: send one \
         event per request"
    )]
    Batch,
}

/// The request's headers, as the reader needs them: a lookup by lowercase name, and every
/// header for the binary CloudEvent parser.
pub trait Headers {
    /// The value of header `name` (lowercase), when present and text.
    fn get(&self, name: &str) -> Option<&str>;
    /// Every header, as (name, value).
    fn pairs(&self) -> Vec<(&str, &str)>;
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.to_vec()
    }
}

fn content_type_is(headers: &(impl Headers + ?Sized), media_type: &str) -> bool {
    headers
        .get("content-type")
        .map(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case(media_type)
        })
        .unwrap_or(false)
}

/// Reads the notification of one HTTP request, parsing its body once. A push envelope whose
/// attributes name an object bq-ingest ignores is routed from the attributes alone (its data is
/// not decoded).
///
/// ```
/// use ingest_core::notification::{read_http_notification, Accept, NotificationForm};
/// use ingest_core::settings::Settings;
///
/// let body = br#"{"message": {"messageId": "7", "data": "e30=",
///   "attributes": {"bucketId": "b", "objectId": "ds/t/part-0.csv", "eventType": "OBJECT_FINALIZE"}}}"#;
/// let headers: &[(&str, &str)] = &[("content-type", "application/json")];
/// let read = read_http_notification(&Settings::default(), Accept::Any, headers, body).unwrap();
/// assert_eq!(read.form, NotificationForm::PushEnvelope);
/// assert_eq!(read.delivery_id.as_deref(), Some("7"));
/// assert_eq!(read.event.name, "ds/t/part-0.csv");
/// ```
pub fn read_http_notification(
    settings: &Settings,
    accept: Accept,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<HttpNotification, HttpNotificationError> {
    let ce_type = headers.get("ce-type").is_some();
    match accept {
        Accept::PushEnvelope => read_push(settings, body),
        Accept::BackgroundEvent => read_background(settings, body),
        Accept::CloudEvent if ce_type => read_binary(settings, headers, body),
        Accept::CloudEvent if content_type_is(headers, CLOUD_EVENTS_BATCH_JSON) => {
            Err(HttpNotificationError::Batch)
        }
        Accept::CloudEvent => read_structured(settings, body),
        Accept::Any if ce_type => read_binary(settings, headers, body),
        Accept::Any if content_type_is(headers, CLOUD_EVENTS_JSON) => {
            read_structured(settings, body)
        }
        Accept::Any if content_type_is(headers, CLOUD_EVENTS_BATCH_JSON) => {
            Err(HttpNotificationError::Batch)
        }
        Accept::Any if body.iter().all(u8::is_ascii_whitespace) => {
            Err(HttpNotificationError::Empty)
        }
        Accept::Any => read_any(settings, body),
    }
}

fn notification(
    settings: &Settings,
    form: NotificationForm,
    delivery_id: Option<String>,
    event: ObjectEvent,
) -> HttpNotification {
    let trigger = classify(settings, &event);
    HttpNotification {
        form,
        delivery_id,
        event,
        trigger,
    }
}

fn read_push(settings: &Settings, body: &[u8]) -> Result<HttpNotification, HttpNotificationError> {
    let envelope: PushEnvelope<'_> = from_json(FORM_PUSH, body)?;
    let message = envelope.message.ok_or(NotificationError::Missing {
        form: FORM_PUSH,
        field: "message",
    })?;
    let delivery_id = message.message_id();
    if let Some((event, trigger)) = route_from_attributes(settings, &message)? {
        return Ok(HttpNotification {
            form: NotificationForm::PushEnvelope,
            delivery_id,
            event,
            trigger,
        });
    }
    let event = event_of_push_message(&message)?;
    Ok(notification(
        settings,
        NotificationForm::PushEnvelope,
        delivery_id,
        event,
    ))
}

fn read_structured(
    settings: &Settings,
    body: &[u8],
) -> Result<HttpNotification, HttpNotificationError> {
    let event: StructuredCloudEvent<'_> = from_json(FORM_CE_STRUCTURED, body)?;
    structured(settings, &event)
}

fn structured(
    settings: &Settings,
    event: &StructuredCloudEvent<'_>,
) -> Result<HttpNotification, HttpNotificationError> {
    let delivery_id = event.id.as_ref().map(ToString::to_string);
    let object = event_of_structured(event)?;
    Ok(notification(
        settings,
        NotificationForm::CloudEventStructured,
        delivery_id,
        object,
    ))
}

fn read_background(
    settings: &Settings,
    body: &[u8],
) -> Result<HttpNotification, HttpNotificationError> {
    let event: BackgroundEvent<'_> = from_json(FORM_BACKGROUND, body)?;
    background(settings, &event)
}

fn background(
    settings: &Settings,
    event: &BackgroundEvent<'_>,
) -> Result<HttpNotification, HttpNotificationError> {
    let delivery_id = event
        .context
        .as_ref()
        .and_then(|c| c.event_id.as_ref())
        .or(event.event_id.as_ref())
        .map(ToString::to_string);
    let object = event_of_background(event)?;
    Ok(notification(
        settings,
        NotificationForm::BackgroundEvent,
        delivery_id,
        object,
    ))
}

fn read_binary(
    settings: &Settings,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<HttpNotification, HttpNotificationError> {
    let event = parse_cloud_event_binary(headers.pairs(), body)?;
    let delivery_id = headers.get("ce-id").map(str::to_string);
    Ok(notification(
        settings,
        NotificationForm::CloudEventBinary,
        delivery_id,
        event,
    ))
}

/// Auto-detection: the body read once as the union of the JSON forms, the form told by its
/// keys. When the union does not fit (a key of the wrong type), the body is looked at again to
/// report the error of the form it meant.
fn read_any(settings: &Settings, body: &[u8]) -> Result<HttpNotification, HttpNotificationError> {
    let any: AnyNotification<'_> = match serde_json::from_slice(body) {
        Ok(any) => any,
        Err(_) => return read_any_again(settings, body),
    };
    if let Some(message) = any.message {
        let delivery_id = message.message_id();
        if let Some((event, trigger)) = route_from_attributes(settings, &message)? {
            return Ok(HttpNotification {
                form: NotificationForm::PushEnvelope,
                delivery_id,
                event,
                trigger,
            });
        }
        let event = event_of_push_message(&message)?;
        return Ok(notification(
            settings,
            NotificationForm::PushEnvelope,
            delivery_id,
            event,
        ));
    }
    if any.specversion.is_some() {
        return structured(settings, &any.into_cloud_event());
    }
    let background_keys = (any.bucket.is_some() && any.name.is_some())
        || (any.data.is_some() && (any.context.is_some() || any.event_type.is_some()));
    if background_keys {
        return background(settings, &any.into_background());
    }
    Err(HttpNotificationError::Unrecognised)
}

/// The error path of [`read_any`]: which form the top-level keys point to, and that form's
/// own error.
fn read_any_again(
    settings: &Settings,
    body: &[u8],
) -> Result<HttpNotification, HttpNotificationError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| HttpNotificationError::NotJson(e.to_string()))?;
    let present = |key: &str| value.get(key).is_some_and(|v| !v.is_null());
    if present("message") {
        read_push(settings, body)
    } else if present("specversion") {
        read_structured(settings, body)
    } else if (present("bucket") && present("name"))
        || (present("data") && (present("context") || present("eventType")))
    {
        read_background(settings, body)
    } else {
        Err(HttpNotificationError::Unrecognised)
    }
}
