//! The router end to end over the memory doubles: every notification form, every answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use ingest_core::decorators::{
    CountingStore, CountingWarehouse, Fault, FaultyStore, FaultyWarehouse, StoreMethod,
    WarehouseMethod,
};
use ingest_core::ingest::Ingestor;
use ingest_core::ports::{Clock, ObjectMeta, WarehouseError};
use ingest_core::settings::Settings;
use ingest_http::{router, routes, HttpState, PushAuthConfig, DEFAULT_BODY_LIMIT};
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
use serde_json::{json, Value};
use tower::ServiceExt;

const BUCKET: &str = "acme-landing";
const DATA_FILE: &str = "sales/orders/part-0001.csv";
const MARKER: &str = "sales/orders/_SUCCESS";

/// A store with one batch (a CSV data file and its `_SUCCESS`), a warehouse that loads from it,
/// and the router over them.
struct Fixture {
    store: Arc<MemoryStore>,
    warehouse: Arc<MemoryWarehouse>,
    /// What the ingestor sees: the doubles behind fault injection and call counting.
    store_faults: Arc<FaultyStore<Arc<MemoryStore>>>,
    gcs: Arc<CountingStore<Arc<FaultyStore<Arc<MemoryStore>>>>>,
    warehouse_faults: Arc<FaultyWarehouse<Arc<MemoryWarehouse>>>,
    bq: Arc<CountingWarehouse<Arc<FaultyWarehouse<Arc<MemoryWarehouse>>>>>,
    data: ObjectMeta,
    marker: ObjectMeta,
    /// The state the router was built with.
    state: HttpState,
    router: Router,
}

impl Fixture {
    fn new() -> Self {
        Fixture::with(|state| state)
    }

    fn with(configure: impl FnOnce(HttpState) -> HttpState) -> Self {
        let clock = MemoryClock::new();
        let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
        store.create_bucket(BUCKET);
        let data = store.insert(BUCKET, DATA_FILE, b"1,widget\n2,gadget\n3,gizmo\n".to_vec());
        let marker = store.insert(BUCKET, MARKER, Vec::new());
        let warehouse =
            Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));
        let store_faults = Arc::new(FaultyStore::new(store.clone()));
        let gcs = Arc::new(CountingStore::new(store_faults.clone()));
        let warehouse_faults = Arc::new(FaultyWarehouse::new(warehouse.clone()));
        let bq = Arc::new(CountingWarehouse::new(warehouse_faults.clone()));
        let ingestor = Ingestor::new(settings(), gcs.clone(), bq.clone(), Arc::new(clock));
        let state = configure(HttpState::new(Arc::new(ingestor)));
        let router = router(state.clone());
        Fixture {
            store,
            warehouse,
            store_faults,
            gcs,
            warehouse_faults,
            bq,
            data,
            marker,
            state,
            router,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value, Response<()>) {
        send(&self.router, request).await
    }
}

fn settings() -> Settings {
    Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    }
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value, Response<()>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (parts.status, value, Response::from_parts(parts, ()))
}

/// The JSON API object resource of `meta`.
fn resource(meta: &ObjectMeta) -> String {
    json!({
        "kind": "storage#object",
        "id": format!("{BUCKET}/{}/{}", meta.name, meta.generation),
        "bucket": BUCKET,
        "name": meta.name,
        "generation": meta.generation.to_string(),
        "metageneration": "1",
        "contentType": "text/csv",
        "size": meta.size.to_string(),
        "timeCreated": "2020-10-26T00:00:00.000Z",
        "updated": "2020-10-26T00:00:00.000Z",
    })
    .to_string()
}

fn push_body(meta: &ObjectMeta, payload_format: &str, message_id: &str) -> String {
    let mut message = json!({
        "attributes": {
            "bucketId": BUCKET,
            "objectId": meta.name,
            "objectGeneration": meta.generation.to_string(),
            "eventType": "OBJECT_FINALIZE",
            "eventTime": "2020-10-26T00:00:00.000000Z",
            "notificationConfig": format!("projects/_/buckets/{BUCKET}/notificationConfigs/1"),
            "payloadFormat": payload_format,
        },
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": "2020-10-26T00:00:00.123Z",
    });
    if payload_format == "JSON_API_V1" {
        message["data"] = Value::String(STANDARD.encode(resource(meta)));
    }
    json!({"message": message, "subscription": "projects/p/subscriptions/bq-ingest"}).to_string()
}

fn post_json(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn binary_cloud_event(uri: &str, meta: &ObjectMeta) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .header(
            "ce-source",
            format!("//storage.googleapis.com/projects/_/buckets/{BUCKET}"),
        )
        .header("ce-subject", format!("objects/{}", meta.name))
        .header("ce-id", "ce-1234")
        .header("ce-time", "2020-10-26T00:00:00.000Z")
        .body(Body::from(resource(meta)))
        .unwrap()
}

fn structured_cloud_event(uri: &str, meta: &ObjectMeta) -> Request<Body> {
    let body = format!(
        r#"{{"specversion": "1.0", "id": "ce-5678",
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage.googleapis.com/projects/_/buckets/{BUCKET}",
            "subject": "objects/{}", "time": "2020-10-26T00:00:00.000Z",
            "datacontenttype": "application/json", "data": {}}}"#,
        meta.name,
        resource(meta)
    );
    Request::post(uri)
        .header(
            header::CONTENT_TYPE,
            "application/cloudevents+json; charset=utf-8",
        )
        .body(Body::from(body))
        .unwrap()
}

fn background_event(meta: &ObjectMeta) -> String {
    format!(
        r#"{{"data": {}, "context": {{"eventId": "bg-1", "timestamp": "2020-10-26T00:00:00.000Z",
             "eventType": "google.storage.object.finalize",
             "resource": {{"service": "storage.googleapis.com",
                           "name": "projects/_/buckets/{BUCKET}/objects/{}",
                           "type": "storage#object"}}}}}}"#,
        resource(meta),
        meta.name
    )
}

/// 200, `outcome: done`, three rows, exactly one job.
fn assert_done_once(fixture: &Fixture, status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "done", "{body}");
    assert_eq!(body["rows"], 3, "{body}");
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1), "{body}");
    let submitted = fixture.warehouse.submitted();
    assert_eq!(submitted.len(), 1, "{submitted:?}");
    assert_eq!(body["jobs"][0]["job_id"], submitted[0].job_id.as_str());
}

// ----- Each form of a `_SUCCESS` → 200 done, one job -----

#[tokio::test]
async fn push_with_json_api_v1_payload_loads_the_batch() {
    let fixture = Fixture::new();
    let body = push_body(&fixture.marker, "JSON_API_V1", "m-1");
    let (status, body, _) = fixture.send(post_json("/", body)).await;
    assert_done_once(&fixture, status, &body);
}

#[tokio::test]
async fn push_with_payload_format_none_loads_the_batch() {
    let fixture = Fixture::new();
    let body = push_body(&fixture.marker, "NONE", "m-2");
    let (status, body, _) = fixture.send(post_json("/", body)).await;
    assert_done_once(&fixture, status, &body);
}

#[tokio::test]
async fn binary_cloud_event_loads_the_batch() {
    let fixture = Fixture::new();
    let (status, body, _) = fixture.send(binary_cloud_event("/", &fixture.marker)).await;
    assert_done_once(&fixture, status, &body);
}

#[tokio::test]
async fn structured_cloud_event_loads_the_batch() {
    let fixture = Fixture::new();
    let (status, body, _) = fixture
        .send(structured_cloud_event("/", &fixture.marker))
        .await;
    assert_done_once(&fixture, status, &body);
}

#[tokio::test]
async fn background_event_loads_the_batch() {
    let fixture = Fixture::new();
    let (status, body, _) = fixture
        .send(post_json("/", background_event(&fixture.marker)))
        .await;
    assert_done_once(&fixture, status, &body);
}

#[tokio::test]
async fn unwrapped_background_event_loads_the_batch() {
    let fixture = Fixture::new();
    let (status, body, _) = fixture
        .send(post_json("/", resource(&fixture.marker)))
        .await;
    assert_done_once(&fixture, status, &body);
}

#[tokio::test]
async fn explicit_endpoints_take_their_form() {
    let fixture = Fixture::new();
    let push = push_body(&fixture.marker, "JSON_API_V1", "m-3");
    let (status, body, _) = fixture.send(post_json("/pubsub/push", push)).await;
    assert_done_once(&fixture, status, &body);
    // Duplicate deliveries through the other endpoints follow the same job.
    for request in [
        binary_cloud_event("/cloudevents", &fixture.marker),
        structured_cloud_event("/cloudevents", &fixture.marker),
        post_json("/background", background_event(&fixture.marker)),
    ] {
        let (status, body, _) = fixture.send(request).await;
        assert_done_once(&fixture, status, &body);
    }
}

#[tokio::test]
async fn explicit_endpoints_reject_other_forms() {
    let fixture = Fixture::new();
    // A background event sent to the push endpoint is not a push envelope.
    let (status, body, _) = fixture
        .send(post_json("/pubsub/push", background_event(&fixture.marker)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("Pub/Sub push envelope: missing message"),
        "{error}"
    );
    // A push envelope sent to the background endpoint has no bucket.
    let push = push_body(&fixture.marker, "NONE", "m-4");
    let (status, body, _) = fixture.send(post_json("/background", push)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("background event"),
        "{body}"
    );
    assert!(fixture.warehouse.submitted().is_empty());
}

// ----- The no-op path -----

#[tokio::test]
async fn data_file_notifications_are_ignored_in_every_form() {
    let fixture = Fixture::new();
    let data = fixture.data.clone();
    for request in [
        post_json("/", push_body(&data, "JSON_API_V1", "m-5")),
        post_json("/", push_body(&data, "NONE", "m-6")),
        binary_cloud_event("/", &data),
        structured_cloud_event("/", &data),
        post_json("/", background_event(&data)),
    ] {
        let (status, body, response) = fixture.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "ignored", "{body}");
        assert!(
            body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
    assert!(fixture.warehouse.submitted().is_empty());
    assert_eq!(
        fixture.gcs.calls().total(),
        0,
        "a data file costs no request"
    );
}

// ----- Malformed payloads → 400 -----

#[tokio::test]
async fn malformed_json_is_400_with_the_reason() {
    let fixture = Fixture::new();
    let (status, body, response) = fixture.send(post_json("/", "{\"message\": ")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["outcome"], "malformed");
    assert_eq!(body["retry"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("request body is not JSON: EOF"),
        "{body}"
    );
    assert!(response.headers().get(header::RETRY_AFTER).is_none());

    let (status, body, _) = fixture.send(post_json("/pubsub/push", "{oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Pub/Sub push envelope: invalid JSON"),
        "{body}"
    );
    assert!(fixture.warehouse.submitted().is_empty());
}

#[tokio::test]
async fn missing_attributes_are_400() {
    let fixture = Fixture::new();
    let body = json!({
        "message": {"attributes": {"bucketId": BUCKET, "eventType": "OBJECT_FINALIZE"},
                    "messageId": "m-7"},
        "subscription": "s"
    })
    .to_string();
    let (status, body, _) = fixture.send(post_json("/", body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("missing") && error.contains("objectId"),
        "{error}"
    );

    let no_attributes = json!({"message": {"messageId": "m-8"}, "subscription": "s"}).to_string();
    let (status, body, _) = fixture.send(post_json("/", no_attributes)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("missing"),
        "{body}"
    );

    // A binary CloudEvent with neither a body nor a source to name the bucket.
    let request = Request::post("/")
        .header("ce-type", "google.cloud.storage.object.v1.finalized")
        .header("ce-subject", "objects/sales/orders/_SUCCESS")
        .body(Body::empty())
        .unwrap();
    let (status, body, _) = fixture.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("missing bucket"),
        "{body}"
    );
    assert!(fixture.warehouse.submitted().is_empty());
}

#[tokio::test]
async fn unrecognised_empty_and_unsupported_bodies_are_400() {
    let fixture = Fixture::new();
    let cases: Vec<(Request<Body>, &str)> = vec![
        (
            post_json("/", r#"{"hello": "world"}"#),
            "unrecognised notification",
        ),
        (post_json("/", "[1, 2, 3]"), "unrecognised notification"),
        (post_json("/", ""), "empty request body"),
        (
            Request::post("/")
                .header("ce-type", "google.cloud.pubsub.topic.v1.messagePublished")
                .body(Body::from("{}"))
                .unwrap(),
            "unsupported event type",
        ),
        (
            Request::post("/")
                .header(header::CONTENT_TYPE, "application/cloudevents-batch+json")
                .body(Body::from("[]"))
                .unwrap(),
            "batched CloudEvents",
        ),
    ];
    for (request, expected) in cases {
        let (status, body, _) = fixture.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{error} should contain {expected}"
        );
    }
}

// ----- Retry → 503 -----

#[tokio::test]
async fn a_job_still_running_at_the_deadline_is_503_and_redelivery_follows_it() {
    let fixture = Fixture::with(|s| s.with_request_deadline(Duration::from_millis(100)));
    fixture.warehouse.set_job_duration(5);
    let push = push_body(&fixture.marker, "JSON_API_V1", "m-9");
    let (status, body, response) = fixture.send(post_json("/", push.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["outcome"], "running");
    assert_eq!(body["retry"], true);
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(response.headers()[header::RETRY_AFTER], "10");
    assert_eq!(fixture.warehouse.submitted().len(), 1);

    // Redeliveries follow the same job until it is done.
    let mut last = (status, body);
    for _ in 0..5 {
        let (status, body, _) = fixture.send(post_json("/", push.clone())).await;
        last = (status, body);
        if status == StatusCode::OK {
            break;
        }
    }
    assert_done_once(&fixture, last.0, &last.1);
}

#[tokio::test]
async fn a_transient_warehouse_error_is_503() {
    let fixture = Fixture::with(|s| s.with_retry_after(Duration::from_secs(30)));
    fixture.warehouse_faults.inject(
        WarehouseMethod::Submit,
        Fault::Fail(WarehouseError::Transient {
            what: "job load-1".into(),
            message: "429 rateLimitExceeded".into(),
        }),
    );
    let push = push_body(&fixture.marker, "NONE", "m-10");
    let (status, body, response) = fixture.send(post_json("/", push.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["outcome"], "transient_error");
    assert_eq!(body["retry"], true);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("gs://acme-landing/sales/orders/_SUCCESS") && error.contains("429"),
        "{error}"
    );
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    assert!(fixture.warehouse.submitted().is_empty());

    // The redelivery succeeds.
    let (status, body, _) = fixture.send(post_json("/", push)).await;
    assert_done_once(&fixture, status, &body);
}

// ----- Limits -----

#[tokio::test]
async fn a_body_over_one_mib_is_413() {
    let fixture = Fixture::new();
    let big = vec![b' '; DEFAULT_BODY_LIMIT + 1];
    // Declared by Content-Length: refused before reading.
    let request = Request::post("/")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let (status, body, _) = fixture.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["outcome"], "too_large");
    // Not declared (chunked): cut off while reading.
    let chunks = big
        .chunks(64 * 1024)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let request = Request::post("/pubsub/push")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, body, _) = fixture.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Exactly at the limit is read (and is then not a notification).
    let request = post_json("/", vec![b' '; DEFAULT_BODY_LIMIT]);
    let (status, _, _) = fixture.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn healthz_is_ok() {
    let fixture = Fixture::new();
    for path in ["/health", "/healthz"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let (status, body, _) = fixture.send(request).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, Value::String("ok".into()), "{path}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_refused() {
    let fixture = Fixture::new();
    let (status, _, _) = fixture
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = fixture.send(post_json("/nope", "{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ----- Concurrency -----

/// Five concurrent deliveries of the same push, to five instances (five ingestors over the same
/// store and warehouse, as Pub/Sub pushes to several Cloud Run instances): all 200, one job. A
/// store hook holds the first five listings until all five requests have made one, so every
/// request has looked for the job (and not found it) before any submits: the race is as tight
/// as it gets. The instances run on real time: on the doubles' shared virtual clock, one
/// delivery's polling would advance the time of all and could end the others' waits before the
/// winner's thread has finished its job.
#[tokio::test(flavor = "multi_thread", worker_threads = 5)]
async fn five_concurrent_duplicate_pushes_submit_one_job() {
    const DELIVERIES: usize = 5;
    let fixture = Fixture::new();
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let listings = Arc::new(AtomicUsize::new(0));
    {
        let gate = gate.clone();
        let listings = listings.clone();
        fixture.store_faults.set_rule(Box::new(move |method, _| {
            if method == StoreMethod::List && listings.fetch_add(1, Ordering::SeqCst) < DELIVERIES {
                let (arrived, all_there) = &*gate;
                let mut arrived = arrived.lock().unwrap();
                *arrived += 1;
                all_there.notify_all();
                // Bounded, so a broken race never hangs the suite.
                let _ = all_there
                    .wait_timeout_while(arrived, Duration::from_secs(10), |n| *n < DELIVERIES)
                    .unwrap();
            }
            None
        }));
    }
    let push = push_body(&fixture.marker, "JSON_API_V1", "m-dup");
    let tasks: Vec<_> = (0..DELIVERIES)
        .map(|_| {
            let instance = Ingestor::new(
                settings(),
                fixture.gcs.clone(),
                fixture.bq.clone(),
                Arc::new(RealClock),
            );
            let router = router(HttpState::new(Arc::new(instance)));
            let push = push.clone();
            tokio::spawn(async move { send(&router, post_json("/", push)).await })
        })
        .collect();
    for task in tasks {
        let (status, body, _) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "done", "{body}");
    }
    assert_eq!(*gate.0.lock().unwrap(), DELIVERIES, "all five raced");
    assert_eq!(fixture.warehouse.submitted().len(), 1);
}

// ----- The timeout layer -----

/// The system time and tokio's timer.
#[derive(Debug)]
struct RealClock;

#[async_trait]
impl Clock for RealClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock whose time never moves while its `sleep` really waits (on tokio's timer): the
/// ingestor never reaches its deadline, so only the router's timeout layer ends the request.
#[derive(Debug)]
struct StuckClock(DateTime<Utc>);

#[async_trait]
impl Clock for StuckClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_timeout_layer_answers_503_a_little_after_the_deadline() {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket(BUCKET);
    store.insert(BUCKET, DATA_FILE, b"1\n".to_vec());
    let marker = store.insert(BUCKET, MARKER, Vec::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    warehouse.set_job_duration(u32::MAX);
    let clock = StuckClock(Utc.with_ymd_and_hms(2020, 10, 26, 0, 0, 0).unwrap());
    let ingestor = Ingestor::new(settings(), store, warehouse.clone(), Arc::new(clock));
    let state = HttpState::new(Arc::new(ingestor)).with_request_deadline(Duration::from_secs(30));
    let timeout = state.request_timeout();
    let app = router(state);

    let started = tokio::time::Instant::now();
    let push = push_body(&marker, "NONE", "m-timeout");
    let (status, _, _) = send(&app, post_json("/", push)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Paused time: the elapsed virtual time is the timeout (to the timer's millisecond).
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_millis(10),
        "{elapsed:?}"
    );
    assert_eq!(timeout, Duration::from_secs(40));
    assert_eq!(warehouse.submitted().len(), 1);
}

/// SIGTERM while a push waits for a long job: the request answers 503 within the shutdown
/// grace (its job keeps running; the redelivery follows it), a new push gets 503 at once, and
/// health says `stopping`.
#[tokio::test(start_paused = true)]
async fn stopping_answers_in_flight_pushes_within_the_grace_and_refuses_new_ones() {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket(BUCKET);
    store.insert(BUCKET, DATA_FILE, b"1\n".to_vec());
    let marker = store.insert(BUCKET, MARKER, Vec::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    warehouse.set_job_duration(u32::MAX);
    let clock = StuckClock(Utc.with_ymd_and_hms(2020, 10, 26, 0, 0, 0).unwrap());
    let ingestor = Ingestor::new(settings(), store, warehouse.clone(), Arc::new(clock));
    let (stop, stopping) = ingest_http::stop_signal();
    let grace = Duration::from_secs(3);
    let state = HttpState::new(Arc::new(ingestor))
        .with_stopping(stopping)
        .with_shutdown_grace(grace);
    let app = router(state);

    let push = push_body(&marker, "NONE", "m-stop");
    let in_flight = tokio::spawn({
        let app = app.clone();
        let push = push.clone();
        async move { send(&app, post_json("/", push)).await }
    });
    // The job is submitted and followed; nothing ends it.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!in_flight.is_finished());
    assert_eq!(warehouse.submitted().len(), 1);

    let stopped_at = tokio::time::Instant::now();
    stop.stop();
    let (status, body, response) = send(&app, post_json("/", push)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["outcome"], "stopping", "{body}");
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let (status, _, _) = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (status, body, _) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["outcome"], "stopping", "{body}");
    assert_eq!(body["retry"], true, "{body}");
    let waited = stopped_at.elapsed();
    assert!(
        waited >= grace && waited < grace + Duration::from_millis(10),
        "{waited:?}"
    );
    assert_eq!(warehouse.submitted().len(), 1, "nothing submitted twice");
}

/// A body that stops arriving mid-way gets 408 once the body timeout passes, long before the
/// request deadline; it is logged, and nothing is handled.
#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_408_after_the_body_timeout() {
    let fixture = Fixture::with(|state| state.with_body_timeout(Duration::from_secs(3)));
    let (mut sender, body) = {
        let (tx, rx) =
            futures::channel::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
        (tx, Body::from_stream(rx))
    };
    // Half an envelope, then silence (the sender is kept open).
    futures::SinkExt::send(
        &mut sender,
        Ok(axum::body::Bytes::from_static(b"{\"message\": {")),
    )
    .await
    .unwrap();
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let started = tokio::time::Instant::now();
    let (status, body, _) = fixture.send(request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["outcome"], "body_timeout");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("13 bytes received"),
        "{body}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    drop(sender);
    assert!(fixture.warehouse.submitted().is_empty());
}

/// A marker whose path gives an invalid dataset id is rejected before any request: 400 with
/// the reason, so that a push subscription's dead-letter policy keeps it.
#[tokio::test]
async fn a_marker_with_an_invalid_destination_is_400_rejected_without_any_request() {
    let fixture = Fixture::new();
    let marker = fixture
        .store
        .insert(BUCKET, "sales-eu/orders/_SUCCESS", Vec::new());
    fixture.gcs.reset();
    let (status, body, _) = fixture
        .send(post_json("/", push_body(&marker, "NONE", "m-bad")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["outcome"], "rejected");
    assert_eq!(body["retry"], false);
    assert!(
        body["error"].as_str().unwrap().contains("dataset id"),
        "{body}"
    );
    assert_eq!(fixture.gcs.calls().total(), 0);
    assert_eq!(fixture.bq.calls().total(), 0);
}

/// What the Python function's `backfill.py` publishes, pushed: only `bucketId` and `objectId`,
/// empty data. The marker's generation is looked up and the batch loads.
#[tokio::test]
async fn a_push_with_only_bucket_and_object_loads_the_batch() {
    let fixture = Fixture::new();
    let body = json!({
        "message": {"data": "", "attributes": {"bucketId": BUCKET, "objectId": MARKER,
            "_metaInfo": "this message was submitted with gcs_ocn_bq_ingest backfill.py utility"},
            "messageId": "m-py"},
        "subscription": "s"
    })
    .to_string();
    let (status, body, _) = fixture.send(post_json("/", body)).await;
    assert_done_once(&fixture, status, &body);
    assert_eq!(
        fixture.warehouse.records()[0].1.marker_generation,
        fixture.marker.generation
    );
}

/// An app with a state of its own, into which the routes are nested.
#[derive(Clone)]
struct AppState {
    ingest: HttpState,
    greeting: &'static str,
}

impl axum::extract::FromRef<AppState> for HttpState {
    fn from_ref(app: &AppState) -> HttpState {
        app.ingest.clone()
    }
}

fn app_with_nested_routes(ingest: HttpState) -> Router {
    use axum::extract::State;
    Router::new()
        .route(
            "/hello",
            axum::routing::get(|State(app): State<AppState>| async move { app.greeting }),
        )
        .nest("/ingest", routes())
        .with_state(AppState {
            ingest,
            greeting: "hello",
        })
}

#[tokio::test]
async fn the_routes_nest_under_a_path_of_an_app_with_its_own_state() {
    let fixture = Fixture::new();
    let app = app_with_nested_routes(fixture.state.clone());

    let (status, body, _) = send(&app, Request::get("/hello").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!("hello")));

    let push = push_body(&fixture.marker, "JSON_API_V1", "nested-1");
    let (status, body, _) = send(&app, post_json("/ingest/pubsub/push", push)).await;
    assert_done_once(&fixture, status, &body);

    let (status, _, _) = send(
        &app,
        Request::get("/ingest/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let push = push_body(&fixture.marker, "JSON_API_V1", "nested-2");
    let (status, _, _) = send(&app, post_json("/pubsub/push", push)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only under /ingest");
}

#[tokio::test]
async fn nested_routes_still_require_the_push_token_when_auth_is_on() {
    let config = PushAuthConfig::new("https://svc/", "pusher@p.iam.gserviceaccount.com")
        .unwrap()
        .with_keys_url("http://127.0.0.1:9/unreachable");
    let fixture = Fixture::with(|state| state.with_auth(config));
    let app = app_with_nested_routes(fixture.state.clone());
    let push = push_body(&fixture.marker, "JSON_API_V1", "nested-3");
    let (status, body, response) = send(&app, post_json("/ingest/pubsub/push", push)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        fixture.gcs.calls().total(),
        0,
        "nothing was read for a refused push"
    );
    let (status, _, _) = send(
        &app,
        Request::get("/ingest/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "health needs no token");
}
