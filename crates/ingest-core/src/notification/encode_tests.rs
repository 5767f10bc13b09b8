//! The encoder: what it writes parses back to the same event, in GCS's shape.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde_json::Value;

use crate::event::{EventType, ObjectEvent, PubsubMessage};
use crate::notification::{object_event_message, parse_pubsub_message};

fn round_trip(event: &ObjectEvent) -> ObjectEvent {
    let (attributes, data) = object_event_message(event);
    let message = PubsubMessage {
        attributes,
        data,
        message_id: Some("1".into()),
    };
    match parse_pubsub_message(&message) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{} does not parse back: {e}", event.uri()),
    }
}

fn data_json(event: &ObjectEvent) -> Value {
    let (_, data) = object_event_message(event);
    match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(e) => panic!("data of {} is not JSON: {e}", event.uri()),
    }
}

#[test]
fn finalize_with_time_and_size_round_trips() {
    let event = ObjectEvent {
        bucket: "my-bucket".into(),
        name: "dataset/table/2020/10/26/_SUCCESS".into(),
        generation: Some(1_603_670_400_123_456),
        size: Some(1234),
        event_type: EventType::Finalize,
        event_time: Some(Utc.with_ymd_and_hms(2020, 10, 26, 1, 2, 3).unwrap()),
    };
    assert_eq!(round_trip(&event), event);
}

#[test]
fn sub_second_event_time_round_trips() {
    let time = Utc.timestamp_opt(1_603_670_400, 123_456_000).unwrap();
    let mut event = ObjectEvent::finalized("b", "ds/t/part-0.csv", 9);
    event.event_time = Some(time);
    let (attributes, _) = object_event_message(&event);
    assert_eq!(attributes["eventTime"], "2020-10-26T00:00:00.123456Z");
    assert_eq!(round_trip(&event), event);
}

#[test]
fn every_event_type_round_trips() {
    for (event_type, attribute) in [
        (EventType::Finalize, "OBJECT_FINALIZE"),
        (EventType::Delete, "OBJECT_DELETE"),
        (EventType::Archive, "OBJECT_ARCHIVE"),
        (EventType::MetadataUpdate, "OBJECT_METADATA_UPDATE"),
    ] {
        let mut event = ObjectEvent::finalized("b", "ds/t/_SUCCESS", 3);
        event.event_type = event_type;
        let (attributes, _) = object_event_message(&event);
        assert_eq!(attributes["eventType"], attribute);
        assert_eq!(round_trip(&event), event);
    }
}

#[test]
fn unknown_generation_and_size_are_left_out() {
    let event = ObjectEvent {
        bucket: "b".into(),
        name: "ds/t/_SUCCESS".into(),
        generation: None,
        size: None,
        event_type: EventType::Finalize,
        event_time: None,
    };
    let (attributes, _) = object_event_message(&event);
    assert!(!attributes.contains_key("objectGeneration"));
    assert!(!attributes.contains_key("eventTime"));
    let data = data_json(&event);
    assert_eq!(data["id"], "b/ds/t/_SUCCESS");
    assert!(data.get("generation").is_none());
    assert!(data.get("size").is_none());
    assert_eq!(round_trip(&event), event);
}

#[test]
fn attributes_and_data_have_the_gcs_shape() {
    let mut event = ObjectEvent::finalized("my-bucket", "ds/t/_SUCCESS", 42);
    event.event_time = Some(Utc.with_ymd_and_hms(2021, 1, 2, 3, 4, 5).unwrap());
    let (attributes, _) = object_event_message(&event);
    let expected: BTreeMap<String, String> = [
        ("bucketId", "my-bucket"),
        ("objectId", "ds/t/_SUCCESS"),
        ("objectGeneration", "42"),
        ("eventType", "OBJECT_FINALIZE"),
        ("payloadFormat", "JSON_API_V1"),
        ("eventTime", "2021-01-02T03:04:05Z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attributes, expected);
    assert_eq!(
        data_json(&event),
        serde_json::json!({
            "kind": "storage#object",
            "id": "my-bucket/ds/t/_SUCCESS/42",
            "name": "ds/t/_SUCCESS",
            "bucket": "my-bucket",
            "generation": "42",
            "size": "0",
            "timeCreated": "2021-01-02T03:04:05Z",
            "updated": "2021-01-02T03:04:05Z",
        })
    );
}

#[test]
fn names_needing_json_escapes_round_trip() {
    let event = ObjectEvent::finalized("b", "ds/t/a \"quoted\" \\ name/_SUCCESS", 5);
    assert_eq!(round_trip(&event), event);
}
