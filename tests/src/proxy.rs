//! A counting HTTP/1.1 reverse proxy in front of an emulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::sync::oneshot;

/// Headers that belong to one connection, not to the request: not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// One request that went through a [`CountingProxy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query string (percent-encoding kept).
    pub path: String,
    /// The query string (empty when none).
    pub query: String,
    /// The upstream's HTTP status (502 when the upstream could not be reached).
    pub status: u16,
    /// The request's `Authorization` header, when it had one (tests check what credentials
    /// were sent).
    pub authorization: Option<String>,
}

impl RecordedRequest {
    /// `METHOD /path`, the key of [`CountingProxy::counts`].
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
    hangs: Arc<Mutex<Vec<HangRule>>>,
    hung: Arc<std::sync::atomic::AtomicUsize>,
}

/// Requests `METHOD …suffix` that the proxy never answers (and forwards only when
/// `forward_first`: the upstream does the work, its answer is lost).
#[derive(Debug, Clone)]
struct HangRule {
    method: String,
    path_suffix: String,
    forward_first: bool,
}

/// A tiny reverse proxy on `127.0.0.1:<free port>` that forwards every request to an upstream
/// (an emulator) and records it, so a test can count the API requests of the service it
/// spawned: point the service at [`CountingProxy::url`] (e.g. through `STORAGE_EMULATOR_HOST`
/// or `BIGQUERY_EMULATOR_HOST` in `spawn_service`'s extra environment) while the test's own
/// setup talks to the emulator directly.
///
/// Bodies are buffered (the test data is small); hop-by-hop headers are dropped. It runs on
/// the test's tokio runtime and stops when dropped.
///
/// ```no_run
/// # async fn example() {
/// let gcs = bq_ingest_e2e::CountingProxy::start("http://127.0.0.1:4443").await;
/// // ... spawn the service with STORAGE_EMULATOR_HOST = gcs.url(), upload, wait ...
/// for (request, n) in gcs.counts() {
///     println!("{n:>3} {request}");
/// }
/// gcs.reset();
/// # }
/// ```
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    upstream: String,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
    hangs: Arc<Mutex<Vec<HangRule>>>,
    hung: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl CountingProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, no path).
    pub async fn start(upstream: &str) -> CountingProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("proxy HTTP client: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let hangs = Arc::new(Mutex::new(Vec::new()));
        let hung = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = ProxyState {
            upstream: upstream.clone(),
            client,
            log: log.clone(),
            hangs: hangs.clone(),
            hung: hung.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy: local address: {e}"));
        let shutdown = serve_until_told(listener, app);
        CountingProxy {
            addr,
            upstream,
            log,
            hangs,
            hung,
            shutdown: Some(shutdown),
        }
    }

    /// From now on, requests `method` whose path ends with `path_suffix` are neither forwarded
    /// nor answered: the client waits until it gives up or dies (a hung connection, or the
    /// moment to kill a process "between two steps"). [`hung`](CountingProxy::hung) counts them.
    pub fn hang(&self, method: &str, path_suffix: &str) {
        self.add_hang(method, path_suffix, false);
    }

    /// From now on, requests `method` whose path ends with `path_suffix` are forwarded — the
    /// upstream does the work — but their answers never come back: a job that BigQuery runs
    /// while its submitter waits (and waits). [`hung`](CountingProxy::hung) counts them.
    pub fn hang_after_forwarding(&self, method: &str, path_suffix: &str) {
        self.add_hang(method, path_suffix, true);
    }

    fn add_hang(&self, method: &str, path_suffix: &str, forward_first: bool) {
        if let Ok(mut hangs) = self.hangs.lock() {
            hangs.push(HangRule {
                method: method.to_string(),
                path_suffix: path_suffix.to_string(),
                forward_first,
            });
        }
    }

    /// Stops hanging new requests (those already hung stay so).
    pub fn stop_hanging(&self) {
        if let Ok(mut hangs) = self.hangs.lock() {
            hangs.clear();
        }
    }

    /// How many requests were hung so far.
    pub fn hung(&self) -> usize {
        self.hung.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The upstream it forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Every request recorded since the start (or the last [`reset`](CountingProxy::reset)),
    /// in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The requests counted by `METHOD /path`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in self.requests() {
            *counts.entry(request.key()).or_insert(0) += 1;
        }
        counts
    }

    /// The number of requests recorded.
    pub fn total(&self) -> usize {
        self.log.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// The number of recorded requests that match `predicate`.
    pub fn count_where(&self, predicate: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.requests().iter().filter(|r| predicate(r)).count()
    }

    /// Forgets the requests recorded so far.
    pub fn reset(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
    }

    /// The requests as text, one `status METHOD path?query` per line (for failure messages
    /// and benchmark notes).
    pub fn describe(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                let query = if r.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", r.query)
                };
                format!("{} {} {}{query}", r.status, r.method, r.path)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `app` on `listener` in a task until the returned sender is used or dropped.
pub(crate) fn serve_until_told(
    listener: tokio::net::TcpListener,
    app: Router,
) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let authorization = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let record = |status: u16| {
        if let Ok(mut log) = state.log.lock() {
            log.push(RecordedRequest {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                status,
                authorization: authorization.clone(),
            });
        }
    };
    let hang = state.hangs.lock().ok().and_then(|rules| {
        rules
            .iter()
            .find(|r| r.method == method && path.ends_with(&r.path_suffix))
            .map(|r| r.forward_first)
    });
    if hang == Some(false) {
        record(0);
        state.hung.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return std::future::pending().await;
    }
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            record(400);
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("proxy: reading the body: {e}"),
            );
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let url = format!("{}{}", state.upstream, path_and_query);
    let upstream = state
        .client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(bytes)
        .send()
        .await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return error_response(StatusCode::BAD_GATEWAY, format!("proxy: {url}: {e}"));
        }
    };
    let status = upstream.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !is_hop_by_hop(name) {
            response_headers.append(name.clone(), value.clone());
        }
    }
    let body = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => {
            record(502);
            return error_response(
                StatusCode::BAD_GATEWAY,
                format!("proxy: body of {url}: {e}"),
            );
        }
    };
    record(status.as_u16());
    if hang == Some(true) {
        state.hung.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return std::future::pending().await;
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}
