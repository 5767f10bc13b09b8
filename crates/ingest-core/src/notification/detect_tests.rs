//! Telling the forms apart over HTTP (these checks were the HTTP adapter's probe until the
//! detection moved into the core and the body is read once).

use super::fields::{FORM_BACKGROUND, FORM_CE_STRUCTURED, FORM_PUSH};
use super::*;
use crate::event::NotificationError;
use crate::settings::Settings;

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// The form a body is read as: from the notification, or from the form its parser names in
/// the error; `None` when the keys match no form.
fn form_of(body: &str) -> Option<NotificationForm> {
    match read_http_notification(&Settings::default(), Accept::Any, JSON, body.as_bytes()) {
        Ok(n) => Some(n.form),
        Err(HttpNotificationError::Notification(e)) => Some(form_named(&e)),
        Err(HttpNotificationError::Unrecognised) => None,
        Err(other) => panic!("{body}: {other}"),
    }
}

fn form_named(error: &NotificationError) -> NotificationForm {
    let form = match error {
        NotificationError::InvalidJson { form, .. }
        | NotificationError::Missing { form, .. }
        | NotificationError::Invalid { form, .. }
        | NotificationError::UnsupportedType { form, .. } => *form,
    };
    match form {
        FORM_PUSH => NotificationForm::PushEnvelope,
        FORM_CE_STRUCTURED => NotificationForm::CloudEventStructured,
        FORM_BACKGROUND => NotificationForm::BackgroundEvent,
        other => panic!("unexpected form {other}"),
    }
}

fn read(body: &str) -> HttpNotification {
    read_http_notification(&Settings::default(), Accept::Any, JSON, body.as_bytes())
        .unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[test]
fn the_keys_tell_the_forms_apart() {
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
    assert_eq!(form_of("17"), None);
}

#[test]
fn delivery_ids_are_read_with_the_notification() {
    let push = read(
        r#"{"message": {"data": "", "messageId": "42", "message_id": "43",
            "attributes": {"messageId": "no", "bucketId": "b", "objectId": "ds/t/x.csv",
                           "eventType": "OBJECT_FINALIZE"}}, "subscription": "s"}"#,
    );
    assert_eq!(push.delivery_id.as_deref(), Some("42"));
    let push = read(
        r#"{"message": {"message_id": 7, "attributes": {"bucketId": "b", "objectId": "x.csv"}}}"#,
    );
    assert_eq!(push.delivery_id.as_deref(), Some("7"));
    let structured = read(
        r#"{"specversion": "1.0", "id": "a\"b", "type": "google.cloud.storage.object.v1.finalized",
            "data": {"bucket": "b", "name": "ds/t/x.csv"}}"#,
    );
    assert_eq!(structured.delivery_id.as_deref(), Some("a\"b"));
    let wrapped = read(
        r#"{"eventId": "top", "data": {"bucket": "b", "name": "x"},
            "context": {"eventId": "ctx", "eventType": "google.storage.object.finalize"}}"#,
    );
    assert_eq!(wrapped.delivery_id.as_deref(), Some("ctx"));
    let flat = read(
        r#"{"eventId": "top", "data": {"bucket": "b", "name": "x"},
            "eventType": "google.storage.object.finalize"}"#,
    );
    assert_eq!(flat.delivery_id.as_deref(), Some("top"));
}

#[test]
fn a_key_of_the_wrong_type_is_the_error_of_the_form_it_meant() {
    // The union does not fit; the keys still say push, and the push parser names the problem.
    let error = read_http_notification(
        &Settings::default(),
        Accept::Any,
        JSON,
        br#"{"message": "text", "id": [1], "context": 5, "name": {"a": [1]}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&error, HttpNotificationError::Notification(e) if form_named(e) == NotificationForm::PushEnvelope),
        "{error}"
    );
    for not_json in [&b"{oops"[..], b"{} trailing"] {
        assert!(matches!(
            read_http_notification(&Settings::default(), Accept::Any, JSON, not_json),
            Err(HttpNotificationError::NotJson(_))
        ));
    }
    assert_eq!(
        read_http_notification(&Settings::default(), Accept::Any, JSON, b""),
        Err(HttpNotificationError::Empty)
    );
}

#[test]
fn content_types_and_ce_headers_choose_the_form() {
    let settings = Settings::default();
    let body = br#"{"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized",
                    "data": {"bucket": "b", "name": "x"}}"#;
    let structured: &[(&str, &str)] = &[(
        "Content-Type",
        "Application/CloudEvents+JSON; charset=utf-8",
    )];
    let read = read_http_notification(&settings, Accept::Any, structured, body).unwrap();
    assert_eq!(read.form, NotificationForm::CloudEventStructured);
    let batch: &[(&str, &str)] = &[("content-type", "application/cloudevents-batch+json")];
    assert_eq!(
        read_http_notification(&settings, Accept::Any, batch, body),
        Err(HttpNotificationError::Batch)
    );
    assert_eq!(
        read_http_notification(&settings, Accept::CloudEvent, batch, body),
        Err(HttpNotificationError::Batch)
    );
    let binary: &[(&str, &str)] = &[
        ("Ce-Type", "google.cloud.storage.object.v1.finalized"),
        ("ce-source", "//storage.googleapis.com/projects/_/buckets/b"),
        ("ce-subject", "objects/ds/t/x.csv"),
        ("ce-id", "17"),
    ];
    let read = read_http_notification(&settings, Accept::Any, binary, b"").unwrap();
    assert_eq!(read.form, NotificationForm::CloudEventBinary);
    assert_eq!(read.delivery_id.as_deref(), Some("17"));
}
