//! `serve` over real TCP: graceful shutdown lets an in-flight request finish.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ingest_core::ingest::Ingestor;
use ingest_core::ports::Clock;
use ingest_core::settings::Settings;
use ingest_http::{router, serve, HttpState};
use ingest_memory::{MemoryStore, MemoryWarehouse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Real time, sleeping on tokio's timer.
#[derive(Debug)]
struct TokioClock;

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

async fn post(addr: std::net::SocketAddr, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight_then_stops() {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket("b");
    store.insert("b", "ds/t/part-0.csv", b"1\n2\n".to_vec());
    let marker = store.insert("b", "ds/t/_SUCCESS", Vec::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    // Running for three polls: about 50 + 100 + 200 ms of real waiting.
    warehouse.set_job_duration(3);
    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Ingestor::new(settings, store, warehouse.clone(), Arc::new(TokioClock));
    let app = router(HttpState::new(Arc::new(ingestor)));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));

    let body = format!(
        r#"{{"bucket": "b", "name": "ds/t/_SUCCESS", "generation": "{}"}}"#,
        marker.generation
    );
    let in_flight = tokio::spawn(async move { post(addr, &body).await });
    // Let the request reach the ingestor (its job is submitted at once), then stop.
    for _ in 0..200 {
        if !warehouse.submitted().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(warehouse.submitted().len(), 1, "the request is in flight");
    stop.send(()).unwrap();

    let response = in_flight.await.unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains(r#""outcome":"done""#), "{response}");
    assert!(response.contains(r#""rows":2"#), "{response}");

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns once the request is done")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}
