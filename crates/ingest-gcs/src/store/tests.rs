//! The store's pure parts: metadata from download headers, object resources, error mapping,
//! upload bodies.

use ingest_google::reqwest::header::HeaderValue;

use super::*;

#[test]
fn names_are_escaped_as_one_path_segment() {
    let store = GcsStore::for_emulator("127.0.0.1:4443", RetryPolicy::default()).unwrap();
    let url = store.object_url("b", "a/b c$d%e?f#g~h", &[]);
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:4443/storage/v1/b/b/o/a%2Fb%20c%24d%25e%3Ff%23g~h"
    );
}

#[test]
fn download_headers_give_the_metadata() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-goog-generation",
        HeaderValue::from_static("1795502777080823"),
    );
    headers.insert(
        "x-goog-stored-content-length",
        HeaderValue::from_static("42"),
    );
    headers.insert(
        LAST_MODIFIED,
        HeaderValue::from_static("Tue, 24 Nov 2026 06:46:17 GMT"),
    );
    let meta = meta_from_download_headers("d/t/_SUCCESS", &headers, 5).expect("valid headers");
    assert_eq!(meta.name, "d/t/_SUCCESS");
    assert_eq!(meta.generation, 1_795_502_777_080_823);
    assert_eq!(meta.size, 42);
    assert_eq!(
        meta.updated.map(|t| t.to_rfc3339()),
        Some("2026-11-24T06:46:17+00:00".to_string())
    );

    headers.remove("x-goog-stored-content-length");
    headers.remove(LAST_MODIFIED);
    let meta = meta_from_download_headers("x", &headers, 5).expect("valid headers");
    assert_eq!((meta.size, meta.updated), (5, None));
}

#[test]
fn download_without_generation_is_a_permanent_failure() {
    let failure =
        meta_from_download_headers("x", &HeaderMap::new(), 0).expect_err("no generation header");
    assert_eq!(failure.class, FailureClass::Permanent);
}

#[test]
fn object_resources_give_the_metadata() {
    let object: ObjectResource = serde_json::from_str(
        r#"{"name": "ds/t/_SUCCESS", "size": "12", "generation": "1700000000000001",
            "updated": "2026-11-24T06:43:30.070288Z", "metadata": {"bq-ingest-write-id": "w"}}"#,
    )
    .unwrap();
    let meta = object.meta();
    assert_eq!(
        (meta.name.as_str(), meta.size, meta.generation),
        ("ds/t/_SUCCESS", 12, 1_700_000_000_000_001)
    );
    assert!(meta.updated.is_some());
    assert_eq!(object.metadata.unwrap()[WRITE_ID_METADATA_KEY], "w");
}

#[test]
fn failures_become_store_errors_naming_the_object() {
    let error = store_error(
        "b",
        "d/t/f.csv",
        Failure::from_response(
            503,
            br#"{"error": {"code": 503, "message": "backendError"}}"#,
        ),
    );
    assert_eq!(
        error,
        StoreError::Transient {
            bucket: "b".into(),
            name: "d/t/f.csv".into(),
            message: "HTTP 503: backendError".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "gs://b/d/t/f.csv: transient error: HTTP 503: backendError"
    );
    assert!(matches!(
        store_error("b", "n", Failure::from_response(404, b"")),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store_error("b", "n", Failure::from_response(403, b"forbidden")),
        StoreError::Other { .. }
    ));
}

#[test]
fn the_upload_body_is_multipart_related_with_the_write_id() {
    let store = GcsStore::for_emulator("127.0.0.1:4443", RetryPolicy::default()).unwrap();
    let call = store.upload_call("b", "t/_bqlock", b"{}".to_vec(), Some(0), Some("w1"));
    assert_eq!(call.method, Method::POST);
    assert_eq!(
        call.url.as_str(),
        "http://127.0.0.1:4443/upload/storage/v1/b/b/o?uploadType=multipart&projection=noAcl&ifGenerationMatch=0"
    );
    let (content_type, body) = call.body.unwrap();
    let content_type = content_type.to_str().unwrap().to_string();
    let boundary = content_type
        .strip_prefix("multipart/related; boundary=")
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with(&format!("--{boundary}\r\n")), "{body}");
    assert!(
        body.contains(r#"{"metadata":{"bq-ingest-write-id":"w1"},"name":"t/_bqlock"}"#),
        "{body}"
    );
    assert!(
        body.ends_with(&format!("\r\n{{}}\r\n--{boundary}--\r\n")),
        "{body}"
    );
}

#[test]
fn a_boundary_never_occurs_in_the_content() {
    let content = format!("{BOUNDARY_PREFIX}0000000000000000");
    let boundary = boundary_for(content.as_bytes());
    assert!(!content.contains(&boundary));
}
