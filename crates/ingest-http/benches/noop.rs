//! The no-op path: a data-file notification (ignored), the most frequent request by far.
//!
//! - `router/*`: the router alone (`oneshot`, no network), per form.
//! - `http/push_keepalive`: the whole service over loopback HTTP/1.1 — [`ingest_http::serve`] on a
//!   single-threaded runtime (one core), one keep-alive client connection sending requests one
//!   after another. Target: ≥ 5,000 requests/s (≤ 200 µs each, client included).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest_core::ingest::Ingestor;
use ingest_core::settings::Settings;
use ingest_http::{router, serve, HttpState};
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
use tower::ServiceExt;

const PUSH: &str = r#"{"message":{"attributes":{"bucketId":"acme-landing","eventTime":"2020-10-26T00:00:00.000000Z","eventType":"OBJECT_FINALIZE","notificationConfig":"projects/_/buckets/acme-landing/notificationConfigs/1","objectGeneration":"1600000000000001","objectId":"sales/orders/2020/10/26/part-00017.csv","payloadFormat":"JSON_API_V1"},"data":"eyJraW5kIjoic3RvcmFnZSNvYmplY3QiLCJpZCI6ImFjbWUtbGFuZGluZy9zYWxlcy9vcmRlcnMvMjAyMC8xMC8yNi9wYXJ0LTAwMDE3LmNzdi8xNjAwMDAwMDAwMDAwMDAxIiwibmFtZSI6InNhbGVzL29yZGVycy8yMDIwLzEwLzI2L3BhcnQtMDAwMTcuY3N2IiwiYnVja2V0IjoiYWNtZS1sYW5kaW5nIiwiZ2VuZXJhdGlvbiI6IjE2MDAwMDAwMDAwMDAwMDEiLCJtZXRhZ2VuZXJhdGlvbiI6IjEiLCJjb250ZW50VHlwZSI6InRleHQvY3N2Iiwic2l6ZSI6IjEwNDg1NzYiLCJ0aW1lQ3JlYXRlZCI6IjIwMjAtMTAtMjZUMDA6MDA6MDAuMDAwWiIsInVwZGF0ZWQiOiIyMDIwLTEwLTI2VDAwOjAwOjAwLjAwMFoifQ==","messageId":"1234567890123456","message_id":"1234567890123456","publishTime":"2020-10-26T00:00:00.123Z","publish_time":"2020-10-26T00:00:00.123Z"},"subscription":"projects/my-project/subscriptions/bq-ingest-push"}"#;

/// The JSON API resource of a data file.
macro_rules! resource {
    () => {
        r#"{"kind":"storage#object","bucket":"acme-landing","name":"sales/orders/2020/10/26/part-00017.csv","generation":"1600000000000001","size":"1048576","updated":"2020-10-26T00:00:00.000Z"}"#
    };
}

const RESOURCE: &str = resource!();

const BACKGROUND: &str = concat!(
    r#"{"data":"#,
    resource!(),
    r#","context":{"eventId":"1147091835525187","timestamp":"2020-10-26T00:00:00.000Z","eventType":"google.storage.object.finalize"}}"#
);

fn app() -> Router {
    let store = Arc::new(MemoryStore::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store, warehouse, Arc::new(MemoryClock::new()));
    router(HttpState::new(Arc::new(ingestor)))
}

fn bench_router(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = app();
    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push_ignored", |b| {
        b.iter(|| {
            let request = Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from(PUSH))
                .expect("request");
            let response = runtime
                .block_on(app.clone().oneshot(request))
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        })
    });
    group.bench_function("cloudevent_binary_ignored", |b| {
        b.iter(|| {
            let request = Request::post("/")
                .header("content-type", "application/json")
                .header("ce-specversion", "1.0")
                .header("ce-id", "1234567890")
                .header("ce-type", "google.cloud.storage.object.v1.finalized")
                .header(
                    "ce-source",
                    "//storage.googleapis.com/projects/_/buckets/acme-landing",
                )
                .header(
                    "ce-subject",
                    "objects/sales/orders/2020/10/26/part-00017.csv",
                )
                .header("ce-time", "2020-10-26T00:00:00.000Z")
                .body(Body::from(RESOURCE))
                .expect("request");
            let response = runtime
                .block_on(app.clone().oneshot(request))
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        })
    });
    group.bench_function("background_ignored", |b| {
        b.iter(|| {
            let request = Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from(BACKGROUND))
                .expect("request");
            let response = runtime
                .block_on(app.clone().oneshot(request))
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        })
    });
    group.finish();
}

/// The service on its own thread with a single-threaded runtime; returns its address, a stop
/// switch and the thread.
fn start_service() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send");
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            serve(listener, app(), shutdown).await.expect("serve");
        });
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("service address");
    (addr, stop_tx, thread)
}

/// One request on a keep-alive connection; returns the status code.
fn round_trip(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, request: &[u8]) -> u16 {
    stream.write_all(request).expect("write");
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("body");
    status
}

fn bench_http(c: &mut Criterion) {
    let (addr, stop, thread) = start_service();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PUSH}",
        PUSH.len()
    );
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push_keepalive", |b| {
        b.iter(|| {
            let status = round_trip(&mut stream, &mut reader, request.as_bytes());
            assert_eq!(status, 200);
        })
    });
    group.finish();
    drop(reader);
    drop(stream);
    let _ = stop.send(());
    thread.join().expect("service thread");
}

criterion_group!(benches, bench_router, bench_http);
criterion_main!(benches);
