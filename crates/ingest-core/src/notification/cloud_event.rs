//! CloudEvents from Eventarc: binary mode (`ce-*` headers, the object resource as body) and
//! structured mode (`application/cloudevents+json`).

use super::fields::*;
use super::wire::{ObjectResource, StructuredCloudEvent};
use crate::event::{EventType, NotificationError, ObjectEvent};

/// Parses a binary-mode CloudEvent: `ce-*` headers (names case-insensitive) and the object
/// resource JSON as body.
///
/// `ce-type` must be `google.cloud.storage.object.v1.finalized`, `…deleted`, `…archived` or
/// `…metadataUpdated` (anything else is [`NotificationError::UnsupportedType`]). Bucket and name
/// come from the body's `bucket` and `name`, else from `ce-source`
/// (`//storage.googleapis.com/projects/_/buckets/BUCKET`) and `ce-subject` (`objects/NAME`,
/// percent-decoded as the HTTP binding requires). The event time is `ce-time`, else (finalize
/// and metadata update only) the body's `updated`/`timeCreated`. An empty body is allowed
/// (headers only).
///
/// ```
/// use ingest_core::notification::parse_cloud_event_binary;
/// use ingest_core::event::EventType;
///
/// let headers = [
///     ("Ce-Type", "google.cloud.storage.object.v1.finalized"),
///     ("Ce-Source", "//storage.googleapis.com/projects/_/buckets/my-bucket"),
///     ("Ce-Subject", "objects/dataset/table/_SUCCESS"),
///     ("Ce-Time", "2020-05-06T15:19:27.123Z"),
///     ("Ce-Id", "1234"),
/// ];
/// let body = br#"{"bucket": "my-bucket", "name": "dataset/table/_SUCCESS",
///                 "generation": "1588778367123456", "size": "0"}"#;
/// let event = parse_cloud_event_binary(headers, body).unwrap();
/// assert_eq!(event.name, "dataset/table/_SUCCESS");
/// assert_eq!(event.size, Some(0));
/// assert!(event.event_time.is_some());
/// ```
pub fn parse_cloud_event_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Result<ObjectEvent, NotificationError> {
    let form = FORM_CE_BINARY;
    let mut ce_type = None;
    let mut ce_source = None;
    let mut ce_subject = None;
    let mut ce_time = None;
    for (name, value) in headers {
        let slot = if name.eq_ignore_ascii_case("ce-type") {
            &mut ce_type
        } else if name.eq_ignore_ascii_case("ce-source") {
            &mut ce_source
        } else if name.eq_ignore_ascii_case("ce-subject") {
            &mut ce_subject
        } else if name.eq_ignore_ascii_case("ce-time") {
            &mut ce_time
        } else {
            continue;
        };
        *slot = Some(value.trim());
    }
    let ce_type = ce_type.ok_or(NotificationError::Missing {
        form,
        field: "ce-type header",
    })?;
    let event_type = cloud_event_type(form, &percent_decode(form, "ce-type header", ce_type)?)?;

    let resource: ObjectResource<'_> = if body.iter().all(u8::is_ascii_whitespace) {
        ObjectResource::default()
    } else {
        serde_json::from_slice::<ObjectResource<'_>>(body).map_err(|e| {
            NotificationError::InvalidJson {
                form,
                message: format!("body is not a JSON object resource: {e}"),
            }
        })?
    };
    let subject = ce_subject
        .map(|s| percent_decode(form, "ce-subject header", s))
        .transpose()?;
    let source = ce_source
        .map(|s| percent_decode(form, "ce-source header", s))
        .transpose()?;
    let time = ce_time
        .map(|t| percent_decode(form, "ce-time header", t))
        .transpose()?;
    event_from_cloud_event(
        form,
        event_type,
        source.as_deref(),
        subject.as_deref(),
        time.as_deref().map(|t| ("ce-time header", t)),
        &resource,
    )
}

/// Parses a structured-mode CloudEvent (`application/cloudevents+json`).
///
/// `{"specversion", "type", "source", "subject", "time", "id", "data": {object resource}}`;
/// `data_base64` (base64 of the object resource JSON) is accepted instead of `data`. Types,
/// fallbacks and times are as for [`parse_cloud_event_binary`].
///
/// ```
/// use ingest_core::notification::parse_cloud_event_structured;
/// use ingest_core::event::EventType;
///
/// let body = br#"{
///   "specversion": "1.0", "id": "1234", "type": "google.cloud.storage.object.v1.deleted",
///   "source": "//storage.googleapis.com/projects/_/buckets/my-bucket",
///   "subject": "objects/dataset/table/part-0001.csv", "time": "2020-05-06T15:19:27Z",
///   "data": {"bucket": "my-bucket", "name": "dataset/table/part-0001.csv", "generation": "3"}
/// }"#;
/// let event = parse_cloud_event_structured(body).unwrap();
/// assert_eq!(event.event_type, EventType::Delete);
/// assert_eq!(event.generation, Some(3));
/// ```
pub fn parse_cloud_event_structured(body: &[u8]) -> Result<ObjectEvent, NotificationError> {
    let event: StructuredCloudEvent<'_> = from_json(FORM_CE_STRUCTURED, body)?;
    event_of_structured(&event)
}

/// The event of a structured CloudEvent already read.
pub(crate) fn event_of_structured(
    event: &StructuredCloudEvent<'_>,
) -> Result<ObjectEvent, NotificationError> {
    let form = FORM_CE_STRUCTURED;
    let ce_type = event
        .event_type
        .as_deref()
        .ok_or(NotificationError::Missing {
            form,
            field: "type",
        })?;
    let event_type = cloud_event_type(form, ce_type)?;
    let time = event.time.as_deref().map(|t| ("time", t));
    match (&event.data, &event.data_base64) {
        (Some(resource), _) => event_from_cloud_event(
            form,
            event_type,
            event.source.as_deref(),
            event.subject.as_deref(),
            time,
            resource,
        ),
        (None, Some(encoded)) => {
            let decoded = decode_base64(form, "data_base64", encoded.as_bytes())?;
            let resource: ObjectResource<'_> = if decoded.iter().all(u8::is_ascii_whitespace) {
                ObjectResource::default()
            } else {
                serde_json::from_slice(&decoded).map_err(|e| NotificationError::InvalidJson {
                    form,
                    message: format!("data_base64 does not decode to an object resource: {e}"),
                })?
            };
            event_from_cloud_event(
                form,
                event_type,
                event.source.as_deref(),
                event.subject.as_deref(),
                time,
                &resource,
            )
        }
        (None, None) => event_from_cloud_event(
            form,
            event_type,
            event.source.as_deref(),
            event.subject.as_deref(),
            time,
            &ObjectResource::default(),
        ),
    }
}

/// Builds the event of a CloudEvent (either mode) from its attributes and object resource.
pub(crate) fn event_from_cloud_event(
    form: &'static str,
    event_type: EventType,
    source: Option<&str>,
    subject: Option<&str>,
    time: Option<(&'static str, &str)>,
    resource: &ObjectResource<'_>,
) -> Result<ObjectEvent, NotificationError> {
    let bucket = match (resource.bucket.as_deref(), source) {
        (Some(bucket), _) => bucket,
        (None, Some(source)) => source.strip_prefix(CE_SOURCE_PREFIX).ok_or_else(|| {
            invalid(
                form,
                "source",
                source,
                "expected //storage.googleapis.com/projects/_/buckets/BUCKET",
            )
        })?,
        (None, None) => return Err(missing(form, "bucket (data.bucket or source)")),
    };
    let name = match (resource.name.as_deref(), subject) {
        (Some(name), _) => name,
        (None, Some(subject)) => subject
            .strip_prefix(CE_SUBJECT_PREFIX)
            .ok_or_else(|| invalid(form, "subject", subject, "expected objects/NAME"))?,
        (None, None) => return Err(missing(form, "object name (data.name or subject)")),
    };
    let generation = resource
        .generation
        .as_ref()
        .map(|g| parse_generation(form, "data.generation", g))
        .transpose()?;
    let size = resource
        .size
        .as_ref()
        .map(|s| parse_size(form, "data.size", s))
        .transpose()?;
    let event_time = match time.or_else(|| {
        resource
            .state_time(event_type)
            .map(|(f, t)| (data_field(f), t))
    }) {
        Some((field, text)) => Some(parse_time(form, field, text)?),
        None => None,
    };
    build_event(form, bucket, name, generation, size, event_type, event_time)
}
