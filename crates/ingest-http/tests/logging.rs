//! Every request leaves one log line with its fields; failures say what was received.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ingest_core::decorators::{Fault, FaultyWarehouse, WarehouseMethod};
use ingest_core::ingest::Ingestor;
use ingest_core::ports::WarehouseError;
use ingest_core::settings::Settings;
use ingest_http::{router, HttpState};
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The JSON lines written by this crate.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["target"] == "ingest_http::handler")
            .collect()
    }
}

fn push(bucket: &str, name: &str, message_id: &str) -> String {
    json!({
        "message": {
            "attributes": {"bucketId": bucket, "objectId": name, "objectGeneration": "7",
                           "eventType": "OBJECT_FINALIZE", "payloadFormat": "NONE"},
            "messageId": message_id,
        },
        "subscription": "projects/p/subscriptions/s"
    })
    .to_string()
}

#[test]
fn every_outcome_is_logged_with_its_fields() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket("b");
    store.insert("b", "ds/t/part-0.csv", b"1\n".to_vec());
    let marker = store.insert("b", "ds/t/_SUCCESS", Vec::new());
    let warehouse = Arc::new(FaultyWarehouse::new(
        MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()),
    ));
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store, warehouse.clone(), Arc::new(clock));
    let app = router(HttpState::new(Arc::new(ingestor)));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let post = |uri: &str, body: String| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let long = format!(
        "{{\"message\": {{\"attributes\": {{}}}}, \"pad\": \"{}\"}}",
        "x".repeat(2000)
    );
    runtime.block_on(async {
        let status = |r: axum::response::Response| r.status();
        // A data file: ignored.
        let r = app
            .clone()
            .oneshot(post("/", push("b", "ds/t/part-0.csv", "m-1")))
            .await;
        assert_eq!(status(r.unwrap()), StatusCode::OK);
        // A transient failure.
        warehouse.inject(
            WarehouseMethod::Submit,
            Fault::Fail(WarehouseError::Transient {
                what: "job x".into(),
                message: "503 backendError".into(),
            }),
        );
        let marker_push = push("b", "ds/t/_SUCCESS", "m-2")
            .replace("\"7\"", &format!("\"{}\"", marker.generation));
        let r = app.clone().oneshot(post("/", marker_push.clone())).await;
        assert_eq!(status(r.unwrap()), StatusCode::SERVICE_UNAVAILABLE);
        // Done.
        let r = app.clone().oneshot(post("/", marker_push)).await;
        assert_eq!(status(r.unwrap()), StatusCode::OK);
        // Malformed, with a body longer than what is logged.
        let r = app.clone().oneshot(post("/", long.clone())).await;
        assert_eq!(status(r.unwrap()), StatusCode::BAD_REQUEST);
        // A binary CloudEvent: the ce-id is logged.
        let request = Request::post("/")
            .header("ce-type", "google.cloud.storage.object.v1.finalized")
            .header("ce-source", "//storage.googleapis.com/projects/_/buckets/b")
            .header("ce-subject", "objects/ds/t/part-0.csv")
            .header("ce-id", "ce-9")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            status(app.clone().oneshot(request).await.unwrap()),
            StatusCode::OK
        );
    });

    let lines = captured.lines();
    assert_eq!(lines.len(), 5, "one line per request: {lines:#?}");

    let ignored = &lines[0];
    assert_eq!(ignored["level"], "INFO");
    assert_eq!(ignored["outcome"], "ignored");
    assert_eq!(ignored["object"], "gs://b/ds/t/part-0.csv");
    assert_eq!(ignored["message_id"], "m-1");
    assert_eq!(ignored["form"], "push");
    assert_eq!(ignored["jobs"], 0);
    assert!(ignored["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert!(ignored.get("ce_id").is_none());

    let transient = &lines[1];
    assert_eq!(transient["level"], "ERROR");
    assert_eq!(transient["outcome"], "transient_error");
    assert_eq!(transient["message_id"], "m-2");
    assert!(transient["error"]
        .as_str()
        .unwrap()
        .contains("503 backendError"));
    assert!(transient["body"]
        .as_str()
        .unwrap()
        .starts_with("{\"message\""));

    let done = &lines[2];
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["outcome"], "done");
    assert_eq!(done["jobs"], 1);
    assert_eq!(done["object"], "gs://b/ds/t/_SUCCESS");

    let malformed = &lines[3];
    assert_eq!(malformed["level"], "ERROR");
    assert_eq!(malformed["outcome"], "malformed");
    assert!(malformed["error"].as_str().unwrap().contains("missing"));
    let body = malformed["body"].as_str().unwrap();
    assert!(
        body.starts_with("{\"message\": {\"attributes\": {}}"),
        "{body}"
    );
    assert_eq!(body.len(), 512 + "…".len());
    assert_eq!(malformed["body_len"], long.len());

    let cloud_event = &lines[4];
    assert_eq!(cloud_event["ce_id"], "ce-9");
    assert_eq!(cloud_event["form"], "cloudevent_binary");
    assert_eq!(cloud_event["outcome"], "ignored");
}
