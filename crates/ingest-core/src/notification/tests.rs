//! The parsers against real and hostile payloads of every form.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::TimeZone;

use super::fields::*;
use super::*;
use crate::event::{EventType, NotificationError, ObjectEvent, PubsubMessage};
use chrono::{DateTime, Utc};

const BUCKET: &str = "acme-landing";
const MARKER: &str = "sales/orders/$2020050615/_SUCCESS";

/// A JSON API object resource as GCS sends it (`JSON_API_V1` payload, CloudEvent data).
fn object_resource(bucket: &str, name: &str, generation: &str, size: &str) -> String {
    let escaped = name.replace('/', "%2F").replace('$', "%24");
    format!(
        r#"{{
  "kind": "storage#object",
  "id": "{bucket}/{name}/{generation}",
  "selfLink": "https://www.googleapis.com/storage/v1/b/{bucket}/o/{escaped}",
  "mediaLink": "https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{escaped}?generation={generation}&alt=media",
  "name": "{name}",
  "bucket": "{bucket}",
  "generation": "{generation}",
  "metageneration": "1",
  "contentType": "application/octet-stream",
  "timeCreated": "2020-05-06T15:19:27.123Z",
  "updated": "2020-05-06T15:19:28.456Z",
  "storageClass": "STANDARD",
  "timeStorageClassUpdated": "2020-05-06T15:19:27.123Z",
  "size": "{size}",
  "md5Hash": "1B2M2Y8AsgTpgAmY7PhCfg==",
  "crc32c": "AAAAAA==",
  "etag": "CIDv2Ly5n+kCEAE=",
  "metadata": {{"source": "spark", "nested/key": "value"}}
}}"#
    )
}

fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gcs_attributes(event_type: &str, payload_format: &str) -> BTreeMap<String, String> {
    attributes(&[
        ("bucketId", BUCKET),
        ("objectId", MARKER),
        ("objectGeneration", "1588778367123456"),
        ("eventType", event_type),
        ("eventTime", "2020-05-06T15:19:27.123456Z"),
        ("payloadFormat", payload_format),
        (
            "notificationConfig",
            "projects/_/buckets/acme-landing/notificationConfigs/3",
        ),
        ("overwroteGeneration", "1588778300000000"),
    ])
}

fn push_body(data: Option<&str>, attributes: &BTreeMap<String, String>) -> Vec<u8> {
    let mut message = serde_json::json!({
        "attributes": attributes,
        "messageId": "2070443601311540",
        "message_id": "2070443601311540",
        "publishTime": "2020-05-06T15:19:28.525Z",
        "publish_time": "2020-05-06T15:19:28.525Z",
    });
    if let Some(data) = data {
        message["data"] = serde_json::Value::String(data.to_string());
    }
    serde_json::to_vec(&serde_json::json!({
        "message": message,
        "subscription": "projects/acme/subscriptions/bq-ingest-push",
    }))
    .unwrap()
}

fn expected_marker_event(event_type: EventType) -> ObjectEvent {
    ObjectEvent {
        bucket: BUCKET.to_string(),
        name: MARKER.to_string(),
        generation: Some(1588778367123456),
        size: Some(0),
        event_type,
        event_time: Some(
            Utc.with_ymd_and_hms(2020, 5, 6, 15, 19, 27).unwrap()
                + chrono::Duration::microseconds(123456),
        ),
    }
}

fn updated_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 5, 6, 15, 19, 28).unwrap() + chrono::Duration::milliseconds(456)
}

// ----- Pub/Sub message -----

#[test]
fn pubsub_json_api_v1_finalize() {
    let message = PubsubMessage {
        attributes: gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"),
        data: object_resource(BUCKET, MARKER, "1588778367123456", "0").into_bytes(),
        message_id: Some("1".into()),
    };
    let event = parse_pubsub_message(&message).unwrap();
    assert_eq!(event, expected_marker_event(EventType::Finalize));
}

#[test]
fn pubsub_every_event_type() {
    for (attr, expected) in [
        ("OBJECT_FINALIZE", EventType::Finalize),
        ("OBJECT_DELETE", EventType::Delete),
        ("OBJECT_ARCHIVE", EventType::Archive),
        ("OBJECT_METADATA_UPDATE", EventType::MetadataUpdate),
    ] {
        let message = PubsubMessage {
            attributes: gcs_attributes(attr, "JSON_API_V1"),
            data: object_resource(BUCKET, MARKER, "1588778367123456", "0").into_bytes(),
            message_id: None,
        };
        assert_eq!(
            parse_pubsub_message(&message).unwrap().event_type,
            expected,
            "{attr}"
        );
    }
}

#[test]
fn pubsub_payload_none_uses_attributes_only() {
    let message = PubsubMessage {
        attributes: gcs_attributes("OBJECT_FINALIZE", "NONE"),
        data: Vec::new(),
        message_id: None,
    };
    let event = parse_pubsub_message(&message).unwrap();
    assert_eq!(
        event,
        ObjectEvent {
            size: None,
            ..expected_marker_event(EventType::Finalize)
        }
    );
}

#[test]
fn pubsub_payload_none_ignores_data() {
    let message = PubsubMessage {
        attributes: gcs_attributes("OBJECT_FINALIZE", "NONE"),
        data: b"not json at all".to_vec(),
        message_id: None,
    };
    assert_eq!(parse_pubsub_message(&message).unwrap().name, MARKER);
}

#[test]
fn pubsub_generation_and_time_fall_back_to_data() {
    let mut attrs = gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1");
    attrs.remove("objectGeneration");
    attrs.remove("eventTime");
    let message = PubsubMessage {
        attributes: attrs,
        data: object_resource(BUCKET, MARKER, "42", "1024").into_bytes(),
        message_id: None,
    };
    let event = parse_pubsub_message(&message).unwrap();
    assert_eq!(event.generation, Some(42));
    assert_eq!(event.size, Some(1024));
    assert_eq!(event.event_time, Some(updated_time()));
}

#[test]
fn pubsub_delete_without_event_time_has_no_time() {
    // A deleted object's `updated` is when it was last written, not when it was deleted.
    let mut attrs = gcs_attributes("OBJECT_DELETE", "JSON_API_V1");
    attrs.remove("eventTime");
    let message = PubsubMessage {
        attributes: attrs,
        data: object_resource(BUCKET, MARKER, "42", "1024").into_bytes(),
        message_id: None,
    };
    let event = parse_pubsub_message(&message).unwrap();
    assert_eq!(event.event_type, EventType::Delete);
    assert_eq!(event.event_time, None);
    assert_eq!(event.size, Some(1024));
}

#[test]
fn pubsub_missing_attributes_are_named() {
    for (removed, field) in [
        ("bucketId", "bucketId attribute"),
        ("objectId", "objectId attribute"),
    ] {
        let mut attrs = gcs_attributes("OBJECT_FINALIZE", "NONE");
        attrs.remove(removed);
        let message = PubsubMessage {
            attributes: attrs,
            data: Vec::new(),
            message_id: None,
        };
        assert_eq!(
            parse_pubsub_message(&message),
            Err(NotificationError::Missing {
                form: FORM_PUBSUB,
                field
            }),
        );
    }
}

/// Exactly what the Python function's `backfill.py` publishes: empty data, `bucketId`,
/// `objectId` and its `_metaInfo` note; no `eventType`, no `objectGeneration`.
#[test]
fn pubsub_message_of_the_python_backfill_is_a_finalize_without_generation() {
    let attributes: BTreeMap<String, String> = [
        ("bucketId", BUCKET),
        ("objectId", MARKER),
        (
            "_metaInfo",
            "this message was submitted with gcs_ocn_bq_ingest backfill.py utility",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let message = PubsubMessage {
        attributes,
        data: Vec::new(),
        message_id: None,
    };
    let event = parse_pubsub_message(&message).unwrap();
    assert_eq!(event.event_type, EventType::Finalize);
    assert_eq!(
        (event.bucket.as_str(), event.name.as_str()),
        (BUCKET, MARKER)
    );
    assert_eq!(event.generation, None);
    let body = format!(
        r#"{{"message": {{"data": "", "attributes": {{"bucketId": "{BUCKET}", "objectId": "{MARKER}"}}}}}}"#
    );
    let event = parse_push_envelope(body.as_bytes()).unwrap();
    assert_eq!(event.event_type, EventType::Finalize);
    assert_eq!(event.generation, None);
}

#[test]
fn pubsub_without_attributes_accepts_bare_object_resource_as_finalize() {
    let message = PubsubMessage {
        attributes: BTreeMap::new(),
        data: object_resource(BUCKET, MARKER, "1588778367123456", "0").into_bytes(),
        message_id: None,
    };
    let event = parse_pubsub_message(&message).unwrap();
    assert_eq!(event.event_type, EventType::Finalize);
    assert_eq!(
        (event.bucket.as_str(), event.name.as_str()),
        (BUCKET, MARKER)
    );
    assert_eq!(event.generation, Some(1588778367123456));
    assert_eq!(event.event_time, Some(updated_time()));
}

#[test]
fn pubsub_without_attributes_rejects_data_that_is_not_an_object_resource() {
    // Right fields, but no `kind`: strict, so missing attributes stay an error.
    let message = PubsubMessage {
        attributes: BTreeMap::new(),
        data: br#"{"bucket": "b", "name": "ds/t/_SUCCESS"}"#.to_vec(),
        message_id: None,
    };
    assert_eq!(
        parse_pubsub_message(&message),
        Err(NotificationError::Missing {
            form: FORM_PUBSUB,
            field: "bucketId attribute"
        }),
    );
    // And partial attributes never fall back, even with a full resource.
    let message = PubsubMessage {
        attributes: attributes(&[("eventType", "OBJECT_FINALIZE")]),
        data: object_resource(BUCKET, MARKER, "1", "0").into_bytes(),
        message_id: None,
    };
    assert!(matches!(
        parse_pubsub_message(&message),
        Err(NotificationError::Missing {
            field: "bucketId attribute",
            ..
        })
    ));
}

#[test]
fn pubsub_bad_generation_is_invalid() {
    for bad in ["abc", "0", "-5", "99999999999999999999", ""] {
        let mut attrs = gcs_attributes("OBJECT_FINALIZE", "NONE");
        attrs.insert("objectGeneration".into(), bad.into());
        let message = PubsubMessage {
            attributes: attrs,
            data: Vec::new(),
            message_id: None,
        };
        match parse_pubsub_message(&message) {
            Err(NotificationError::Invalid { field, value, .. }) => {
                assert_eq!(field, "objectGeneration attribute");
                assert_eq!(value, bad);
            }
            other => panic!("{bad:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn pubsub_bad_data_generation_and_size_are_invalid() {
    let mut attrs = gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1");
    attrs.remove("objectGeneration");
    let message = PubsubMessage {
        attributes: attrs.clone(),
        data: object_resource(BUCKET, MARKER, "12x", "0").into_bytes(),
        message_id: None,
    };
    assert!(matches!(
        parse_pubsub_message(&message),
        Err(NotificationError::Invalid {
            field: "data.generation",
            ..
        })
    ));
    let message = PubsubMessage {
        attributes: attrs,
        data: object_resource(BUCKET, MARKER, "1", "-1").into_bytes(),
        message_id: None,
    };
    assert!(matches!(
        parse_pubsub_message(&message),
        Err(NotificationError::Invalid {
            field: "data.size",
            ..
        })
    ));
}

#[test]
fn pubsub_unknown_event_type_and_payload_format() {
    let message = PubsubMessage {
        attributes: gcs_attributes("OBJECT_EXPLODE", "NONE"),
        data: Vec::new(),
        message_id: None,
    };
    assert_eq!(
        parse_pubsub_message(&message),
        Err(NotificationError::UnsupportedType {
            form: FORM_PUBSUB,
            event_type: "OBJECT_EXPLODE".into()
        }),
    );
    let message = PubsubMessage {
        attributes: gcs_attributes("OBJECT_FINALIZE", "XML"),
        data: Vec::new(),
        message_id: None,
    };
    assert!(matches!(
        parse_pubsub_message(&message),
        Err(NotificationError::Invalid {
            field: "payloadFormat attribute",
            ..
        })
    ));
}

#[test]
fn pubsub_data_not_json_is_invalid_json() {
    let message = PubsubMessage {
        attributes: gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"),
        data: b"{not json".to_vec(),
        message_id: None,
    };
    match parse_pubsub_message(&message) {
        Err(NotificationError::InvalidJson { form, message }) => {
            assert_eq!(form, FORM_PUBSUB);
            assert!(message.contains("message data"), "{message}");
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
}

#[test]
fn pubsub_bad_event_time_is_invalid() {
    let mut attrs = gcs_attributes("OBJECT_FINALIZE", "NONE");
    attrs.insert("eventTime".into(), "yesterday".into());
    let message = PubsubMessage {
        attributes: attrs,
        data: Vec::new(),
        message_id: None,
    };
    assert!(matches!(
        parse_pubsub_message(&message),
        Err(NotificationError::Invalid {
            field: "eventTime attribute",
            ..
        })
    ));
}

#[test]
fn pubsub_empty_object_id_is_invalid() {
    let mut attrs = gcs_attributes("OBJECT_FINALIZE", "NONE");
    attrs.insert("objectId".into(), String::new());
    let message = PubsubMessage {
        attributes: attrs,
        data: Vec::new(),
        message_id: None,
    };
    assert!(matches!(
        parse_pubsub_message(&message),
        Err(NotificationError::Invalid {
            field: "object name",
            ..
        })
    ));
}

// ----- Push envelope -----

#[test]
fn push_envelope_message_decodes_standard_base64() {
    let resource = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let body = push_body(
        Some(&STANDARD.encode(&resource)),
        &gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"),
    );
    let message = parse_push_envelope_message(&body).unwrap();
    assert_eq!(message.data, resource.as_bytes());
    assert_eq!(message.message_id.as_deref(), Some("2070443601311540"));
    assert_eq!(message.attributes["objectId"], MARKER);
    assert_eq!(message.attributes.len(), 8);
}

#[test]
fn push_envelope_accepts_url_safe_unpadded_base64() {
    // Bytes chosen so the standard encoding has '+' and '/' and needs padding.
    let data: Vec<u8> = vec![0xfb, 0xff, 0xbf, 0x3e, 0x00];
    assert!(STANDARD.encode(&data).contains(['+', '/', '=']));
    let body = push_body(Some(&URL_SAFE_NO_PAD.encode(&data)), &BTreeMap::new());
    assert_eq!(parse_push_envelope_message(&body).unwrap().data, data);
    let body = push_body(
        Some(STANDARD.encode(&data).trim_end_matches('=')),
        &BTreeMap::new(),
    );
    assert_eq!(parse_push_envelope_message(&body).unwrap().data, data);
}

#[test]
fn push_envelope_message_id_snake_case_and_missing_data() {
    let body = br#"{"message": {"attributes": null, "message_id": "77"}, "subscription": "s"}"#;
    let message = parse_push_envelope_message(body).unwrap();
    assert_eq!(message.message_id.as_deref(), Some("77"));
    assert!(message.data.is_empty());
    assert!(message.attributes.is_empty());
}

#[test]
fn push_envelope_full_parse_matches_two_step_parse() {
    let resource = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let cases = [
        push_body(
            Some(&STANDARD.encode(&resource)),
            &gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"),
        ),
        push_body(None, &gcs_attributes("OBJECT_DELETE", "NONE")),
        push_body(Some(&STANDARD.encode(&resource)), &BTreeMap::new()),
        push_body(Some("@@@"), &BTreeMap::new()),
        push_body(None, &gcs_attributes("OBJECT_WHATEVER", "NONE")),
    ];
    for body in cases {
        let direct = parse_push_envelope(&body);
        let two_step = parse_push_envelope_message(&body).and_then(|m| parse_pubsub_message(&m));
        match (&direct, &two_step) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "{a} vs {b}"
            ),
            _ => panic!("paths disagree: {direct:?} vs {two_step:?}"),
        }
    }
    let body = push_body(
        Some(&STANDARD.encode(&resource)),
        &gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"),
    );
    assert_eq!(
        parse_push_envelope(&body).unwrap(),
        expected_marker_event(EventType::Finalize)
    );
}

#[test]
fn push_envelope_escaped_object_name() {
    let attrs = attributes(&[
        ("bucketId", BUCKET),
        ("objectId", "ds/t/\"quoted\" é/_SUCCESS"),
        ("eventType", "OBJECT_FINALIZE"),
        ("payloadFormat", "NONE"),
    ]);
    let event = parse_push_envelope(&push_body(None, &attrs)).unwrap();
    assert_eq!(event.name, "ds/t/\"quoted\" é/_SUCCESS");
}

#[test]
fn push_envelope_malformed() {
    assert!(matches!(
        parse_push_envelope(b"<html>"),
        Err(NotificationError::InvalidJson {
            form: FORM_PUSH,
            ..
        })
    ));
    assert!(matches!(
        parse_push_envelope_message(b""),
        Err(NotificationError::InvalidJson {
            form: FORM_PUSH,
            ..
        })
    ));
    assert_eq!(
        parse_push_envelope(br#"{"subscription": "s"}"#),
        Err(NotificationError::Missing {
            form: FORM_PUSH,
            field: "message"
        })
    );
    assert_eq!(
        parse_push_envelope_message(br#"{"subscription": "s"}"#),
        Err(NotificationError::Missing {
            form: FORM_PUSH,
            field: "message"
        })
    );
    for bad in ["!!!notbase64", "YWJj$", "a"] {
        let body = push_body(Some(bad), &gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"));
        for result in [
            parse_push_envelope(&body).map(|_| ()),
            parse_push_envelope_message(&body).map(|_| ()),
        ] {
            match result {
                Err(NotificationError::Invalid {
                    field: "message.data",
                    message,
                    ..
                }) => {
                    assert!(message.contains("base64"), "{message}")
                }
                other => panic!("{bad:?}: expected Invalid message.data, got {other:?}"),
            }
        }
    }
    // data of the wrong JSON type.
    assert!(matches!(
        parse_push_envelope_message(br#"{"message": {"data": 5}}"#),
        Err(NotificationError::InvalidJson { .. })
    ));
}

#[test]
fn push_envelope_base64_of_non_json_is_invalid_json() {
    let body = push_body(
        Some(&STANDARD.encode("hello")),
        &gcs_attributes("OBJECT_FINALIZE", "JSON_API_V1"),
    );
    assert!(matches!(
        parse_push_envelope(&body),
        Err(NotificationError::InvalidJson {
            form: FORM_PUSH,
            ..
        })
    ));
}

// ----- CloudEvent, binary mode -----

fn ce_headers(ce_type: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Type", "application/json"),
        ("ce-specversion", "1.0"),
        ("Ce-Type", ce_type),
        (
            "CE-SOURCE",
            "//storage.googleapis.com/projects/_/buckets/acme-landing",
        ),
        ("ce-subject", "objects/sales/orders/$2020050615/_SUCCESS"),
        ("ce-time", "2020-05-06T15:19:27.123456Z"),
        ("ce-id", "1234567890"),
        ("ce-bucket", "acme-landing"),
    ]
}

#[test]
fn cloud_event_binary_finalize_with_body() {
    let body = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let event = parse_cloud_event_binary(
        ce_headers("google.cloud.storage.object.v1.finalized"),
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(event, expected_marker_event(EventType::Finalize));
}

#[test]
fn cloud_event_binary_every_type() {
    let body = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    for (ce_type, expected) in [
        (
            "google.cloud.storage.object.v1.finalized",
            EventType::Finalize,
        ),
        ("google.cloud.storage.object.v1.deleted", EventType::Delete),
        (
            "google.cloud.storage.object.v1.archived",
            EventType::Archive,
        ),
        (
            "google.cloud.storage.object.v1.metadataUpdated",
            EventType::MetadataUpdate,
        ),
    ] {
        let event = parse_cloud_event_binary(ce_headers(ce_type), body.as_bytes()).unwrap();
        assert_eq!(event.event_type, expected, "{ce_type}");
    }
}

#[test]
fn cloud_event_binary_prefers_body_and_falls_back_to_headers() {
    // Body names another object than the subject: the body wins.
    let body = object_resource("other-bucket", "ds/t/_SUCCESS", "5", "0");
    let event = parse_cloud_event_binary(
        ce_headers("google.cloud.storage.object.v1.finalized"),
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (event.bucket.as_str(), event.name.as_str()),
        ("other-bucket", "ds/t/_SUCCESS")
    );
    // Empty body: headers only.
    let event =
        parse_cloud_event_binary(ce_headers("google.cloud.storage.object.v1.finalized"), b"")
            .unwrap();
    assert_eq!(
        event,
        ObjectEvent {
            generation: None,
            size: None,
            ..expected_marker_event(EventType::Finalize)
        }
    );
}

#[test]
fn cloud_event_binary_percent_decodes_subject() {
    let headers = [
        ("ce-type", "google.cloud.storage.object.v1.finalized"),
        ("ce-source", "//storage.googleapis.com/projects/_/buckets/b"),
        ("ce-subject", "objects/ds/t/caf%C3%A9%20100%25/_SUCCESS"),
    ];
    let event = parse_cloud_event_binary(headers, b"{}").unwrap();
    assert_eq!(event.name, "ds/t/café 100%/_SUCCESS");
    assert_eq!(event.event_time, None);
    let headers = [
        ("ce-type", "google.cloud.storage.object.v1.finalized"),
        ("ce-source", "//storage.googleapis.com/projects/_/buckets/b"),
        ("ce-subject", "objects/ds/%zz"),
    ];
    assert!(matches!(
        parse_cloud_event_binary(headers, b""),
        Err(NotificationError::Invalid {
            field: "ce-subject header",
            ..
        })
    ));
}

#[test]
fn cloud_event_binary_malformed() {
    let body = object_resource(BUCKET, MARKER, "1", "0");
    assert_eq!(
        parse_cloud_event_binary(
            ce_headers("google.cloud.pubsub.topic.v1.messagePublished"),
            body.as_bytes()
        ),
        Err(NotificationError::UnsupportedType {
            form: FORM_CE_BINARY,
            event_type: "google.cloud.pubsub.topic.v1.messagePublished".into()
        })
    );
    let no_type: Vec<_> = ce_headers("x")
        .into_iter()
        .filter(|(k, _)| *k != "Ce-Type")
        .collect();
    assert_eq!(
        parse_cloud_event_binary(no_type, body.as_bytes()),
        Err(NotificationError::Missing {
            form: FORM_CE_BINARY,
            field: "ce-type header"
        })
    );
    assert!(matches!(
        parse_cloud_event_binary(
            ce_headers("google.cloud.storage.object.v1.finalized"),
            b"{oops"
        ),
        Err(NotificationError::InvalidJson {
            form: FORM_CE_BINARY,
            ..
        })
    ));
    let bad_generation = object_resource(BUCKET, MARKER, "gen-1", "0");
    assert!(matches!(
        parse_cloud_event_binary(
            ce_headers("google.cloud.storage.object.v1.finalized"),
            bad_generation.as_bytes()
        ),
        Err(NotificationError::Invalid {
            field: "data.generation",
            ..
        })
    ));
    // Neither body nor headers name the bucket.
    let headers = [("ce-type", "google.cloud.storage.object.v1.finalized")];
    assert!(matches!(
        parse_cloud_event_binary(headers, br#"{"name": "x"}"#),
        Err(NotificationError::Missing {
            field: "bucket (data.bucket or source)",
            ..
        })
    ));
    let headers = [
        ("ce-type", "google.cloud.storage.object.v1.finalized"),
        ("ce-source", "//pubsub.googleapis.com/projects/p/topics/t"),
    ];
    assert!(matches!(
        parse_cloud_event_binary(headers, br#"{"name": "x"}"#),
        Err(NotificationError::Invalid {
            field: "source",
            ..
        })
    ));
    let headers = [
        ("ce-type", "google.cloud.storage.object.v1.finalized"),
        ("ce-time", "not a time"),
    ];
    assert!(matches!(
        parse_cloud_event_binary(headers, body.as_bytes()),
        Err(NotificationError::Invalid {
            field: "ce-time header",
            ..
        })
    ));
}

// ----- CloudEvent, structured mode -----

fn structured(data_field: &str) -> String {
    format!(
        r#"{{
  "specversion": "1.0",
  "id": "1234567890",
  "type": "google.cloud.storage.object.v1.finalized",
  "source": "//storage.googleapis.com/projects/_/buckets/acme-landing",
  "subject": "objects/sales/orders/$2020050615/_SUCCESS",
  "time": "2020-05-06T15:19:27.123456Z",
  "datacontenttype": "application/json",
  {data_field}
}}"#
    )
}

#[test]
fn cloud_event_structured_with_data() {
    let resource = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let body = structured(&format!(r#""data": {resource}"#));
    let event = parse_cloud_event_structured(body.as_bytes()).unwrap();
    assert_eq!(event, expected_marker_event(EventType::Finalize));
}

#[test]
fn cloud_event_structured_with_data_base64() {
    let resource = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let body = structured(&format!(
        r#""data_base64": "{}""#,
        STANDARD.encode(&resource)
    ));
    let event = parse_cloud_event_structured(body.as_bytes()).unwrap();
    assert_eq!(event, expected_marker_event(EventType::Finalize));
}

#[test]
fn cloud_event_structured_without_data_uses_source_and_subject() {
    let body = structured(r#""extension": 1"#);
    let event = parse_cloud_event_structured(body.as_bytes()).unwrap();
    assert_eq!(
        (event.bucket.as_str(), event.name.as_str()),
        (BUCKET, MARKER)
    );
    assert_eq!(event.generation, None);
}

#[test]
fn cloud_event_structured_malformed() {
    assert!(matches!(
        parse_cloud_event_structured(b"[]"),
        Err(NotificationError::InvalidJson {
            form: FORM_CE_STRUCTURED,
            ..
        })
    ));
    assert_eq!(
        parse_cloud_event_structured(br#"{"specversion": "1.0", "data": {}}"#),
        Err(NotificationError::Missing {
            form: FORM_CE_STRUCTURED,
            field: "type"
        })
    );
    let body = structured(r#""data": {}"#).replace(
        "google.cloud.storage.object.v1.finalized",
        "com.example.other",
    );
    assert!(matches!(
        parse_cloud_event_structured(body.as_bytes()),
        Err(NotificationError::UnsupportedType { .. })
    ));
    let body = structured(r#""data_base64": "***""#);
    assert!(matches!(
        parse_cloud_event_structured(body.as_bytes()),
        Err(NotificationError::Invalid {
            field: "data_base64",
            ..
        })
    ));
    let body = structured(&format!(r#""data_base64": "{}""#, STANDARD.encode("nope")));
    assert!(matches!(
        parse_cloud_event_structured(body.as_bytes()),
        Err(NotificationError::InvalidJson { .. })
    ));
    let body = structured(r#""data": {"bucket": "b", "name": "n", "size": "1.5"}"#);
    assert!(matches!(
        parse_cloud_event_structured(body.as_bytes()),
        Err(NotificationError::Invalid {
            field: "data.size",
            ..
        })
    ));
}

// ----- Background events -----

#[test]
fn background_unwrapped_is_finalize() {
    let body = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let event = parse_background_event(body.as_bytes()).unwrap();
    assert_eq!(
        event,
        ObjectEvent {
            event_time: Some(updated_time()),
            ..expected_marker_event(EventType::Finalize)
        }
    );
}

#[test]
fn background_wrapped_with_context() {
    let resource = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    for (legacy, expected) in [
        ("google.storage.object.finalize", EventType::Finalize),
        ("google.storage.object.delete", EventType::Delete),
        ("google.storage.object.archive", EventType::Archive),
        (
            "google.storage.object.metadataUpdate",
            EventType::MetadataUpdate,
        ),
    ] {
        let body = format!(
            r#"{{"data": {resource}, "context": {{"eventId": "1147091835525187",
                    "timestamp": "2020-05-06T15:19:27.123456Z", "eventType": "{legacy}",
                    "resource": {{"service": "storage.googleapis.com",
                                  "name": "projects/_/buckets/acme-landing/objects/{MARKER}",
                                  "type": "storage#object"}}}}}}"#
        );
        let event = parse_background_event(body.as_bytes()).unwrap();
        assert_eq!(event, expected_marker_event(expected), "{legacy}");
    }
}

#[test]
fn background_flat_legacy_layout() {
    let resource = object_resource(BUCKET, MARKER, "1588778367123456", "0");
    let body = format!(
        r#"{{"eventId": "1", "timestamp": "2020-05-06T15:19:27.123456Z",
                "eventType": "google.storage.object.finalize",
                "resource": "projects/_/buckets/acme-landing/objects/x", "data": {resource}}}"#
    );
    let event = parse_background_event(body.as_bytes()).unwrap();
    assert_eq!(event, expected_marker_event(EventType::Finalize));
}

#[test]
fn background_numbers_are_accepted() {
    let body = br#"{"bucket": "b", "name": "ds/t/_SUCCESS", "generation": 17, "size": 0}"#;
    let event = parse_background_event(body).unwrap();
    assert_eq!(event.generation, Some(17));
    assert_eq!(event.size, Some(0));
    assert_eq!(event.event_time, None);
}

#[test]
fn background_malformed() {
    assert!(matches!(
        parse_background_event(b"bucket=b&name=n"),
        Err(NotificationError::InvalidJson {
            form: FORM_BACKGROUND,
            ..
        })
    ));
    assert_eq!(
        parse_background_event(br#"{"name": "n"}"#),
        Err(NotificationError::Missing {
            form: FORM_BACKGROUND,
            field: "bucket"
        })
    );
    assert_eq!(
        parse_background_event(br#"{"bucket": "b"}"#),
        Err(NotificationError::Missing {
            form: FORM_BACKGROUND,
            field: "name"
        })
    );
    assert_eq!(
        parse_background_event(br#"{"data": {"bucket": "b", "name": "n"}, "context": {}}"#),
        Err(NotificationError::Missing {
            form: FORM_BACKGROUND,
            field: "context.eventType"
        })
    );
    assert_eq!(
        parse_background_event(br#"{"context": {"eventType": "google.storage.object.finalize"}}"#),
        Err(NotificationError::Missing {
            form: FORM_BACKGROUND,
            field: "data"
        })
    );
    assert_eq!(
            parse_background_event(
                br#"{"data": {"bucket": "b", "name": "n"},
                     "context": {"eventType": "providers/cloud.storage/eventTypes/object.change"}}"#
            ),
            Err(NotificationError::UnsupportedType {
                form: FORM_BACKGROUND,
                event_type: "providers/cloud.storage/eventTypes/object.change".into()
            })
        );
    assert!(matches!(
        parse_background_event(br#"{"bucket": "b", "name": "n", "generation": "1e3"}"#),
        Err(NotificationError::Invalid {
            field: "generation",
            ..
        })
    ));
    assert!(matches!(
        parse_background_event(br#"{"bucket": "b", "name": "n", "generation": -3}"#),
        Err(NotificationError::Invalid {
            field: "generation",
            ..
        })
    ));
    assert!(matches!(
        parse_background_event(br#"{"bucket": "b", "name": "n", "generation": true}"#),
        Err(NotificationError::InvalidJson { .. })
    ));
}

#[test]
fn errors_truncate_long_values_and_say_what_is_wrong() {
    let long = "x".repeat(500);
    let err = invalid(FORM_PUSH, "message.data", &long, "not base64");
    match &err {
        NotificationError::Invalid { value, .. } => {
            assert_eq!(value.chars().count(), MAX_VALUE_CHARS + 1);
            assert!(value.ends_with('…'));
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("Pub/Sub push envelope: invalid message.data"),
        "{text}"
    );
    assert!(text.ends_with("not base64"), "{text}");
    assert_eq!(truncate("é".repeat(3).as_str()), "ééé");
}

mod routed {
    use super::*;
    use crate::settings::Settings;
    use crate::trigger::Trigger;
    use base64::Engine;

    fn envelope(name: &str, data: &str) -> Vec<u8> {
        format!(
            r#"{{"message": {{"data": "{data}", "attributes": {{"bucketId": "b", "objectId": "{name}",
            "eventType": "OBJECT_FINALIZE", "objectGeneration": "42", "payloadFormat": "JSON_API_V1",
            "eventTime": "2026-11-24T06:43:30Z"}}, "messageId": "1"}}, "subscription": "s"}}"#
        )
        .into_bytes()
    }

    fn resource(name: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!(
            r#"{{"kind": "storage#object", "bucket": "b", "name": "{name}", "generation": "42", "size": "1234"}}"#
        ))
    }

    #[test]
    fn a_trigger_is_parsed_in_full_and_strictly() {
        let settings = Settings::default();
        let (event, trigger) = parse_push_envelope_routed(
            &settings,
            &envelope("ds/t/_SUCCESS", &resource("ds/t/_SUCCESS")),
        )
        .unwrap();
        assert_eq!(trigger, Trigger::Success);
        assert_eq!(
            event,
            parse_push_envelope(&envelope("ds/t/_SUCCESS", &resource("ds/t/_SUCCESS"))).unwrap()
        );
        assert_eq!(event.size, Some(1234));
        // A trigger whose data is broken is an error, as with the full parse.
        assert!(parse_push_envelope_routed(&settings, &envelope("ds/t/_SUCCESS", "%%%")).is_err());
    }

    #[test]
    fn a_no_op_is_routed_from_its_attributes() {
        let settings = Settings::default();
        let body = envelope("ds/t/part-1.csv", &resource("ds/t/part-1.csv"));
        let (event, trigger) = parse_push_envelope_routed(&settings, &body).unwrap();
        assert!(matches!(trigger, Trigger::Ignore(_)));
        assert_eq!(
            (event.bucket.as_str(), event.name.as_str()),
            ("b", "ds/t/part-1.csv")
        );
        assert_eq!(event.generation, Some(42));
        assert!(event.event_time.is_some());
        // Incomplete attributes: parsed in full, and the error is the full parse's.
        let body = br#"{"message": {"data": "", "attributes": {"objectId": "x"}}}"#;
        assert_eq!(
            parse_push_envelope_routed(&settings, body).unwrap_err(),
            parse_push_envelope(body).unwrap_err()
        );
        assert!(parse_push_envelope_routed(&settings, b"not json").is_err());
    }
}
