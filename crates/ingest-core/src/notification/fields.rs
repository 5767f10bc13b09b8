//! What every envelope form shares: form names, field parsers (generations, sizes, times,
//! base64, percent-encoding), event types, and building the [`ObjectEvent`] with checks.

use std::borrow::Cow;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::wire::{ObjectResource, Scalar};
use crate::event::{EventType, NotificationError, ObjectEvent};

pub(crate) const FORM_PUBSUB: &str = "Pub/Sub message";
pub(crate) const FORM_PUSH: &str = "Pub/Sub push envelope";
pub(crate) const FORM_CE_BINARY: &str = "CloudEvent (binary mode)";
pub(crate) const FORM_CE_STRUCTURED: &str = "CloudEvent (structured mode)";
pub(crate) const FORM_BACKGROUND: &str = "background event";

/// The `source` prefix of Cloud Storage CloudEvents: `//storage.googleapis.com/projects/_/buckets/BUCKET`.
pub(crate) const CE_SOURCE_PREFIX: &str = "//storage.googleapis.com/projects/_/buckets/";
/// The `subject` prefix of Cloud Storage CloudEvents: `objects/NAME`.
pub(crate) const CE_SUBJECT_PREFIX: &str = "objects/";
/// The `kind` of a JSON API object resource.
pub(crate) const OBJECT_KIND: &str = "storage#object";
/// How many characters of an offending value an error keeps.
pub(crate) const MAX_VALUE_CHARS: usize = 80;

/// Standard alphabet, padding optional.
pub(crate) const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet, padding optional.
pub(crate) const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Builds an event from an object resource alone (background events, bare resources).
pub(crate) fn event_from_resource(
    form: &'static str,
    event_type: EventType,
    resource: &ObjectResource<'_>,
    time: Option<(&'static str, &str)>,
) -> Result<ObjectEvent, NotificationError> {
    let bucket = resource
        .bucket
        .as_deref()
        .ok_or_else(|| missing(form, "bucket"))?;
    let name = resource
        .name
        .as_deref()
        .ok_or_else(|| missing(form, "name"))?;
    let generation = resource
        .generation
        .as_ref()
        .map(|g| parse_generation(form, "generation", g))
        .transpose()?;
    let size = resource
        .size
        .as_ref()
        .map(|s| parse_size(form, "size", s))
        .transpose()?;
    let event_time = match time.or_else(|| resource.state_time(event_type)) {
        Some((field, text)) => Some(parse_time(form, field, text)?),
        None => None,
    };
    build_event(form, bucket, name, generation, size, event_type, event_time)
}

pub(crate) fn build_event(
    form: &'static str,
    bucket: &str,
    name: &str,
    generation: Option<i64>,
    size: Option<u64>,
    event_type: EventType,
    event_time: Option<DateTime<Utc>>,
) -> Result<ObjectEvent, NotificationError> {
    if bucket.is_empty() {
        return Err(invalid(form, "bucket", bucket, "must not be empty"));
    }
    if name.is_empty() {
        return Err(invalid(form, "object name", name, "must not be empty"));
    }
    Ok(ObjectEvent {
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        generation,
        size,
        event_type,
        event_time,
    })
}

pub(crate) fn is_object_resource(resource: &ObjectResource<'_>) -> bool {
    resource.kind.as_deref() == Some(OBJECT_KIND)
        && resource.bucket.is_some()
        && resource.name.is_some()
}

pub(crate) fn notification_event_type(
    form: &'static str,
    value: &str,
) -> Result<EventType, NotificationError> {
    match value {
        "OBJECT_FINALIZE" => Ok(EventType::Finalize),
        "OBJECT_DELETE" => Ok(EventType::Delete),
        "OBJECT_ARCHIVE" => Ok(EventType::Archive),
        "OBJECT_METADATA_UPDATE" => Ok(EventType::MetadataUpdate),
        other => Err(unsupported(form, other)),
    }
}

pub(crate) fn cloud_event_type(
    form: &'static str,
    value: &str,
) -> Result<EventType, NotificationError> {
    match value {
        "google.cloud.storage.object.v1.finalized" => Ok(EventType::Finalize),
        "google.cloud.storage.object.v1.deleted" => Ok(EventType::Delete),
        "google.cloud.storage.object.v1.archived" => Ok(EventType::Archive),
        "google.cloud.storage.object.v1.metadataUpdated" => Ok(EventType::MetadataUpdate),
        other => Err(unsupported(form, other)),
    }
}

pub(crate) fn background_event_type(
    form: &'static str,
    value: &str,
) -> Result<EventType, NotificationError> {
    match value {
        "google.storage.object.finalize" => Ok(EventType::Finalize),
        "google.storage.object.delete" => Ok(EventType::Delete),
        "google.storage.object.archive" => Ok(EventType::Archive),
        "google.storage.object.metadataUpdate" => Ok(EventType::MetadataUpdate),
        other => cloud_event_type(form, other),
    }
}

/// The error field name of an object-resource time inside message data.
pub(crate) fn data_field(field: &'static str) -> &'static str {
    match field {
        "updated" => "data.updated",
        "timeCreated" => "data.timeCreated",
        other => other,
    }
}

pub(crate) fn parse_generation(
    form: &'static str,
    field: &'static str,
    value: &Scalar<'_>,
) -> Result<i64, NotificationError> {
    let generation = match value {
        Scalar::Text(text) => return parse_generation_text(form, field, text),
        Scalar::Unsigned(n) => i64::try_from(*n).ok(),
        Scalar::Signed(n) => Some(*n),
        Scalar::Float(_) => None,
    };
    match generation {
        Some(g) if g > 0 => Ok(g),
        _ => Err(invalid(
            form,
            field,
            &value.to_string(),
            "expected a positive 64-bit integer",
        )),
    }
}

pub(crate) fn parse_generation_text(
    form: &'static str,
    field: &'static str,
    text: &str,
) -> Result<i64, NotificationError> {
    match text.parse::<i64>() {
        Ok(g) if g > 0 => Ok(g),
        Ok(_) => Err(invalid(
            form,
            field,
            text,
            "expected a positive 64-bit integer",
        )),
        Err(e) => Err(invalid(
            form,
            field,
            text,
            &format!("expected a positive 64-bit integer: {e}"),
        )),
    }
}

pub(crate) fn parse_size(
    form: &'static str,
    field: &'static str,
    value: &Scalar<'_>,
) -> Result<u64, NotificationError> {
    let size = match value {
        Scalar::Text(text) => text.parse::<u64>().ok(),
        Scalar::Unsigned(n) => Some(*n),
        Scalar::Signed(n) => u64::try_from(*n).ok(),
        Scalar::Float(_) => None,
    };
    size.ok_or_else(|| {
        invalid(
            form,
            field,
            &value.to_string(),
            "expected a non-negative integer",
        )
    })
}

pub(crate) fn parse_time(
    form: &'static str,
    field: &'static str,
    text: &str,
) -> Result<DateTime<Utc>, NotificationError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            invalid(
                form,
                field,
                text,
                &format!("expected an RFC 3339 time: {e}"),
            )
        })
}

/// Decodes base64 in the standard or URL-safe alphabet, padded or not.
pub(crate) fn decode_base64(
    form: &'static str,
    field: &'static str,
    encoded: impl AsRef<[u8]>,
) -> Result<Vec<u8>, NotificationError> {
    let mut decoded = Vec::new();
    decode_base64_into(form, field, encoded.as_ref(), &mut decoded)?;
    Ok(decoded)
}

/// Decodes base64 in the standard or URL-safe alphabet, padded or not, appending to `output`
/// (left as it was on error).
pub(crate) fn decode_base64_into(
    form: &'static str,
    field: &'static str,
    encoded: &[u8],
    output: &mut Vec<u8>,
) -> Result<(), NotificationError> {
    let start = output.len();
    // The standard alphabet first (what Pub/Sub sends): no pre-scan on the hot path.
    BASE64_STANDARD
        .decode_vec(encoded, output)
        .or_else(|standard_error| {
            output.truncate(start);
            let url_safe = encoded.iter().any(|&b| b == b'-' || b == b'_');
            let result = if url_safe {
                BASE64_URL_SAFE.decode_vec(encoded, output)
            } else {
                Err(standard_error)
            };
            result.map_err(|e| {
                output.truncate(start);
                invalid(
                    form,
                    field,
                    &String::from_utf8_lossy(encoded),
                    &format!("not base64: {e}"),
                )
            })
        })
}

/// Percent-decodes a CloudEvents HTTP header value; borrows when there is nothing to decode.
pub(crate) fn percent_decode<'s>(
    form: &'static str,
    field: &'static str,
    value: &'s str,
) -> Result<Cow<'s, str>, NotificationError> {
    if !value.contains('%') {
        return Ok(Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(h, 16).ok()
            });
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    return Err(invalid(
                        form,
                        field,
                        value,
                        "bad percent-encoding: '%' must be followed by two hex digits",
                    ))
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| invalid(form, field, value, "percent-decodes to invalid UTF-8"))
}

pub(crate) fn from_json<'b, T: Deserialize<'b>>(
    form: &'static str,
    body: &'b [u8],
) -> Result<T, NotificationError> {
    serde_json::from_slice(body).map_err(|e| NotificationError::InvalidJson {
        form,
        message: e.to_string(),
    })
}

pub(crate) fn missing(form: &'static str, field: &'static str) -> NotificationError {
    NotificationError::Missing { form, field }
}

pub(crate) fn unsupported(form: &'static str, event_type: &str) -> NotificationError {
    NotificationError::UnsupportedType {
        form,
        event_type: truncate(event_type),
    }
}

pub(crate) fn invalid(
    form: &'static str,
    field: &'static str,
    value: &str,
    message: &str,
) -> NotificationError {
    NotificationError::Invalid {
        form,
        field,
        value: truncate(value),
        message: message.to_owned(),
    }
}

/// The value for an error message: at most [`MAX_VALUE_CHARS`] characters, `…` when cut.
pub(crate) fn truncate(value: &str) -> String {
    match value.char_indices().nth(MAX_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}
