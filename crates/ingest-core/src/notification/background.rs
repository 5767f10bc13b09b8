//! Cloud Functions (1st gen) background events.

use super::fields::*;
use super::wire::BackgroundEvent;
use crate::event::{EventType, NotificationError, ObjectEvent};

/// Parses a Cloud Functions (1st gen) background event: `{"bucket", "name", "generation", …}`,
/// optionally wrapped as `{"data": {...}, "context": {...}}`.
///
/// The unwrapped form (the object resource itself) is a finalize. The wrapped form takes its
/// type from `context.eventType` (or a top-level `eventType`, the older flat layout):
/// `google.storage.object.finalize`, `…delete`, `…archive`, `…metadataUpdate` (the
/// `google.cloud.storage.object.v1.*` names are accepted too); its time from
/// `context.timestamp` (or `timestamp`), else (finalize and metadata update only) the object's
/// `updated`/`timeCreated`.
///
/// ```
/// use ingest_core::notification::parse_background_event;
/// use ingest_core::event::EventType;
///
/// let body = br#"{
///   "data": {"bucket": "my-bucket", "name": "dataset/table/_SUCCESS", "generation": "9", "size": "0"},
///   "context": {"eventId": "1", "timestamp": "2020-05-06T15:19:27.123Z",
///               "eventType": "google.storage.object.finalize"}
/// }"#;
/// let event = parse_background_event(body).unwrap();
/// assert_eq!(event.event_type, EventType::Finalize);
/// assert_eq!(event.generation, Some(9));
/// ```
pub fn parse_background_event(body: &[u8]) -> Result<ObjectEvent, NotificationError> {
    let event: BackgroundEvent<'_> = from_json(FORM_BACKGROUND, body)?;
    event_of_background(&event)
}

/// The event of a background event already read.
pub(crate) fn event_of_background(
    event: &BackgroundEvent<'_>,
) -> Result<ObjectEvent, NotificationError> {
    let form = FORM_BACKGROUND;
    if !event.is_wrapped() {
        return event_from_resource(form, EventType::Finalize, &event.resource(), None);
    }
    let context_type = event.context.as_ref().and_then(|c| c.event_type.as_deref());
    let type_name =
        context_type
            .or(event.event_type.as_deref())
            .ok_or(NotificationError::Missing {
                form,
                field: "context.eventType",
            })?;
    let event_type = background_event_type(form, type_name)?;
    let resource = event.data.as_ref().ok_or(NotificationError::Missing {
        form,
        field: "data",
    })?;
    let time = match event.context.as_ref().and_then(|c| c.timestamp.as_deref()) {
        Some(t) => Some(("context.timestamp", t)),
        None => event.timestamp.as_deref().map(|t| ("timestamp", t)),
    };
    event_from_resource(form, event_type, resource, time)
}
