//! Retries, error mapping and request counts of `GcsStore`, against a scripted local HTTP
//! server (no emulator needed): throttling, server errors, timeouts, lost responses of
//! conditional writes. Backoff waits are zero here; the backoff itself is unit-tested as a
//! pure function in `src/retry.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingest_core::ports::{ObjectStore, PutMode, StoreError};
use ingest_gcs::{GcsStore, RetryPolicy, WRITE_ID_METADATA_KEY};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request the server received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    body: String,
}

/// What the server does with a request.
enum Action {
    Reply(u16, Vec<(&'static str, String)>, String),
    /// Never answer (the client's attempt times out).
    Hang,
}

type Handler = Arc<dyn Fn(usize, &Recorded) -> Action + Send + Sync>;

/// A local HTTP/1.1 server answering with `handler(request_index, request)`.
struct ScriptedServer {
    endpoint: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl ScriptedServer {
    async fn start(handler: impl Fn(usize, &Recorded) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, handler.clone(), recorded.clone()));
            }
        });
        ScriptedServer { endpoint, requests }
    }

    fn store(&self, retry: RetryPolicy) -> GcsStore {
        GcsStore::for_emulator(&self.endpoint, retry).expect("store")
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn serve_connection(
    stream: TcpStream,
    handler: Handler,
    requests: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut content_length = 0usize;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size_line = String::new();
                reader.read_line(&mut size_line).await.unwrap_or(0);
                let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).await.is_err() {
                    return;
                }
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(content_length, 0);
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        let request = Recorded {
            method,
            target,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let index = match requests.lock() {
            Ok(mut all) => {
                all.push(request.clone());
                all.len() - 1
            }
            Err(_) => return,
        };
        match handler(index, &request) {
            Action::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Action::Reply(status, headers, body) => {
                let mut response = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (key, value) in headers {
                    response.push_str(&format!("{key}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                if reader
                    .get_mut()
                    .write_all(response.as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Retries with no waits, so the tests never sleep.
fn instant_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        deadline: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(10),
    }
}

fn google_error(status: u16, reason: &str) -> Action {
    let body = format!(
        r#"{{"error": {{"code": {status}, "message": "{reason} happened", "errors": [{{"domain": "global", "reason": "{reason}", "message": "{reason} happened"}}]}}}}"#
    );
    Action::Reply(status, Vec::new(), body)
}

fn object_json(name: &str, generation: i64, metadata: Option<(&str, &str)>) -> String {
    let metadata = metadata
        .map(|(key, value)| format!(r#", "metadata": {{"{key}": "{value}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"kind": "storage#object", "id": "b/{name}/{generation}", "selfLink": "http://x/storage/v1/b/b/o/{name}", "mediaLink": "http://x/download/storage/v1/b/b/o/{name}?alt=media", "name": "{name}", "bucket": "b", "size": "3", "generation": "{generation}", "metageneration": "1", "updated": "2026-01-02T03:04:05.678Z"{metadata}}}"#
    )
}

/// The write id a multipart upload carries in its metadata part.
fn write_id_of(body: &str) -> Option<String> {
    let key = format!("\"{WRITE_ID_METADATA_KEY}\":\"");
    let start = body.find(&key)? + key.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = ScriptedServer::start(|index, _| match index {
        0 => google_error(503, "backendError"),
        1 => google_error(500, "internalError"),
        _ => Action::Reply(
            200,
            Vec::new(),
            format!(
                r#"{{"kind": "storage#objects", "items": [{}]}}"#,
                object_json("p/a", 7, None)
            ),
        ),
    })
    .await;
    let store = server.store(instant_retries(5));
    let page = store.list("b", "p/", None, Some(10)).await.expect("list");
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].name, "p/a");
    assert_eq!((page.objects[0].size, page.objects[0].generation), (3, 7));
    assert_eq!(
        page.objects[0].updated.map(|t| t.timestamp_millis()),
        Some(1_767_323_045_678)
    );
    assert_eq!(page.next_page_token, None);
    assert_eq!(store.stats().list, 3);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[0].target.starts_with("/storage/v1/b/b/o?"),
        "{}",
        requests[0].target
    );
    assert!(
        requests[0].target.contains("prefix=p%2F"),
        "{}",
        requests[0].target
    );
    assert!(
        requests[0].target.contains("maxResults=10"),
        "{}",
        requests[0].target
    );
    assert!(
        !requests[0].target.contains("delimiter"),
        "{}",
        requests[0].target
    );
}

#[tokio::test]
async fn throttling_becomes_transient_after_the_last_attempt() {
    let server = ScriptedServer::start(|_, _| google_error(429, "rateLimitExceeded")).await;
    let store = server.store(instant_retries(3));
    let error = store
        .stat("b", "d/t/_SUCCESS")
        .await
        .expect_err("always throttled");
    match &error {
        StoreError::Transient {
            bucket,
            name,
            message,
        } => {
            assert_eq!((bucket.as_str(), name.as_str()), ("b", "d/t/_SUCCESS"));
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(error.is_transient());
    assert!(error
        .to_string()
        .starts_with("gs://b/d/t/_SUCCESS: transient error"));
    assert_eq!(store.stats().stat, 3);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn the_deadline_stops_retries_before_max_attempts() {
    let server = ScriptedServer::start(|_, _| google_error(503, "backendError")).await;
    let store = server.store(RetryPolicy {
        deadline: Duration::ZERO,
        ..instant_retries(5)
    });
    let error = store.read("b", "x").await.expect_err("always failing");
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(store.stats().read, 1);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let server = ScriptedServer::start(|_, _| google_error(403, "forbidden")).await;
    let store = server.store(instant_retries(5));
    let error = store
        .put("b", "d/t/f", b"x".to_vec(), PutMode::Overwrite)
        .await
        .expect_err("forbidden");
    match error {
        StoreError::Other {
            bucket,
            name,
            message,
        } => {
            assert_eq!((bucket.as_str(), name.as_str()), ("b", "d/t/f"));
            assert!(
                message.contains("403") && message.contains("forbidden"),
                "{message}"
            );
        }
        other => panic!("expected Other, got {other:?}"),
    }
    assert_eq!(store.stats().put, 1);
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried() {
    let server = ScriptedServer::start(|index, _| match index {
        0 => Action::Hang,
        _ => Action::Reply(
            200,
            vec![
                ("x-goog-generation", "5".to_string()),
                ("x-goog-stored-content-length", "3".to_string()),
                ("last-modified", "Fri, 02 Jan 2026 03:04:05 GMT".to_string()),
            ],
            "abc".to_string(),
        ),
    })
    .await;
    let store = server.store(RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        ..instant_retries(3)
    });
    let (meta, content) = store.read("b", "a/b c$").await.expect("read");
    assert_eq!(content, b"abc");
    assert_eq!(
        (meta.name.as_str(), meta.size, meta.generation),
        ("a/b c$", 3, 5)
    );
    assert_eq!(meta.updated.map(|t| t.timestamp()), Some(1_767_323_045));
    assert_eq!(store.stats().read, 2);
    let requests = server.requests();
    assert_eq!(requests[1].method, "GET");
    assert_eq!(
        requests[1].target,
        "/storage/v1/b/b/o/a%2Fb%20c%24?alt=media"
    );
}

/// A create-only upload whose first attempt "succeeded" but answered 503, so the retry meets
/// the store's own write (412). `same_writer` says whether the live object carries the
/// store's write id.
async fn create_after_a_lost_response(
    same_writer: bool,
) -> (Result<i64, StoreError>, ScriptedServer, GcsStore) {
    let written_id = Arc::new(Mutex::new(None::<String>));
    let server = ScriptedServer::start(move |index, request| match index {
        0 => {
            if let Ok(mut id) = written_id.lock() {
                *id = write_id_of(&request.body);
            }
            google_error(503, "backendError")
        }
        1 => google_error(412, "conditionNotMet"),
        _ => {
            let id = written_id
                .lock()
                .ok()
                .and_then(|id| id.clone())
                .unwrap_or_default();
            let id = if same_writer {
                id
            } else {
                "someone-else".to_string()
            };
            Action::Reply(
                200,
                Vec::new(),
                object_json("d/t/_bqlock", 42, Some((WRITE_ID_METADATA_KEY, &id))),
            )
        }
    })
    .await;
    let store = server.store(instant_retries(5));
    let result = store
        .put("b", "d/t/_bqlock", b"job".to_vec(), PutMode::Create)
        .await
        .map(|meta| meta.generation);
    (result, server, store)
}

#[tokio::test]
async fn a_create_retried_after_a_lost_response_recognises_its_own_write() {
    let (result, server, store) = create_after_a_lost_response(true).await;
    assert_eq!(result, Ok(42));
    let stats = store.stats();
    assert_eq!((stats.put, stats.stat), (2, 1));
    let requests = server.requests();
    assert!(
        requests[0].target.contains("uploadType=multipart"),
        "{}",
        requests[0].target
    );
    assert!(
        requests[0].target.contains("ifGenerationMatch=0"),
        "{}",
        requests[0].target
    );
    assert!(
        write_id_of(&requests[0].body).is_some(),
        "{}",
        requests[0].body
    );
    assert_eq!(
        write_id_of(&requests[0].body),
        write_id_of(&requests[1].body)
    );
}

#[tokio::test]
async fn a_create_retried_after_a_lost_response_still_reports_a_real_conflict() {
    let (result, _server, store) = create_after_a_lost_response(false).await;
    assert_eq!(
        result,
        Err(StoreError::AlreadyExists {
            bucket: "b".into(),
            name: "d/t/_bqlock".into()
        })
    );
    assert_eq!(store.stats().stat, 1);
}

#[tokio::test]
async fn a_plain_conflict_needs_no_extra_request() {
    let server = ScriptedServer::start(|_, _| google_error(412, "conditionNotMet")).await;
    let store = server.store(instant_retries(5));
    let create = store.put("b", "n", b"x".to_vec(), PutMode::Create).await;
    assert!(
        matches!(create, Err(StoreError::AlreadyExists { .. })),
        "{create:?}"
    );
    let update = store.put("b", "n", b"x".to_vec(), PutMode::Update(9)).await;
    assert!(
        matches!(update, Err(StoreError::PreconditionFailed { .. })),
        "{update:?}"
    );
    let delete = store.delete("b", "n", Some(9)).await;
    assert!(
        matches!(delete, Err(StoreError::PreconditionFailed { .. })),
        "{delete:?}"
    );
    let stats = store.stats();
    assert_eq!((stats.put, stats.delete, stats.stat), (2, 1, 0));
    let requests = server.requests();
    assert!(
        requests[1].target.contains("ifGenerationMatch=9"),
        "{}",
        requests[1].target
    );
    assert!(
        requests[2].target.contains("ifGenerationMatch=9"),
        "{}",
        requests[2].target
    );
    assert_eq!(requests[2].method, "DELETE");
}

#[tokio::test]
async fn a_delete_retried_after_a_lost_response_that_finds_nothing_succeeds() {
    let server = ScriptedServer::start(|index, _| match index {
        0 => google_error(503, "backendError"),
        _ => google_error(404, "notFound"),
    })
    .await;
    let store = server.store(instant_retries(5));
    assert_eq!(store.delete("b", "d/t/_bqlock", Some(3)).await, Ok(()));
    assert_eq!(store.stats().delete, 2);
}

#[tokio::test]
async fn a_delete_retried_after_throttling_that_finds_nothing_is_not_found() {
    // 429 means the first attempt was refused, so the 404 is the truth.
    let server = ScriptedServer::start(|index, _| match index {
        0 => google_error(429, "rateLimitExceeded"),
        _ => google_error(404, "notFound"),
    })
    .await;
    let store = server.store(instant_retries(5));
    assert_eq!(
        store.delete("b", "gone", None).await,
        Err(StoreError::NotFound {
            bucket: "b".into(),
            name: "gone".into()
        })
    );
}

#[tokio::test]
async fn connection_errors_become_transient() {
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port");
    let store =
        GcsStore::for_emulator(&format!("127.0.0.1:{port}"), instant_retries(2)).expect("store");
    let error = store.list("b", "", None, None).await.expect_err("refused");
    assert!(error.is_transient(), "{error:?}");
    assert!(
        error.to_string().starts_with("gs://b/: transient error"),
        "{error}"
    );
    assert_eq!(store.stats().list, 2);
}
