//! A round-robin HTTP load balancer in front of several `bq-ingest serve` instances, as Cloud
//! Run's front end spreads one push subscription over a service's instances.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::sync::oneshot;

use crate::proxy::{error_response, is_hop_by_hop, serve_until_told};

/// Listens on `127.0.0.1:<port>` and forwards each request to the next upstream in turn; an
/// upstream that cannot be reached (not listening, killed mid-request) is skipped for the next
/// one, and when none answers the client gets 503. Stops when dropped.
///
/// ```no_run
/// # async fn example() {
/// use bq_ingest_e2e::Balancer;
/// let balancer = Balancer::start(8080, vec!["http://127.0.0.1:9001".into()]).await;
/// assert_eq!(balancer.forwarded(), vec![0]);
/// # }
/// ```
#[derive(Debug)]
pub struct Balancer {
    forwarded: Arc<Mutex<Vec<usize>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

#[derive(Clone)]
struct BalancerState {
    upstreams: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    forwarded: Arc<Mutex<Vec<usize>>>,
    client: reqwest::Client,
}

impl Balancer {
    /// Starts balancing over `upstreams` (`http://host:port`, no path).
    pub async fn start(port: u16, upstreams: Vec<String>) -> Balancer {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| panic!("balancer HTTP client: {e}"));
        let forwarded = Arc::new(Mutex::new(vec![0; upstreams.len()]));
        let state = BalancerState {
            upstreams: Arc::new(upstreams),
            next: Arc::new(AtomicUsize::new(0)),
            forwarded: forwarded.clone(),
            client,
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("balancer: cannot bind 127.0.0.1:{port}: {e}"));
        Balancer {
            forwarded,
            shutdown: Some(serve_until_told(listener, app)),
        }
    }

    /// How many requests each upstream answered.
    pub fn forwarded(&self) -> Vec<usize> {
        self.forwarded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn forward(State(state): State<BalancerState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error_response(StatusCode::BAD_REQUEST, "balancer: reading the body".into());
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let count = state.upstreams.len();
    let first = state.next.fetch_add(1, Ordering::Relaxed);
    for k in 0..count {
        let i = (first + k) % count;
        let url = format!("{}{path}", state.upstreams[i]);
        let sent = state
            .client
            .request(parts.method.clone(), &url)
            .headers(headers.clone())
            .body(bytes.clone())
            .send()
            .await;
        let Ok(answer) = sent else {
            continue;
        };
        let status = answer.status();
        let Ok(body) = answer.bytes().await else {
            continue;
        };
        if let Ok(mut forwarded) = state.forwarded.lock() {
            forwarded[i] += 1;
        }
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        return response;
    }
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "balancer: no instance answered".into(),
    )
}
