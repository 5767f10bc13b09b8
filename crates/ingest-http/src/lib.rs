//! # ingest-http
//!
//! An [axum] router that takes GCS object notifications over HTTP and hands them to an
//! [`Ingestor`]: Pub/Sub push subscriptions, Eventarc (CloudEvents, binary or structured mode) and
//! Cloud Functions (1st gen) background events. Mount it in your own service, or run it with
//! [`serve`].
//!
//! ## Routes
//!
//! | route | what |
//! | --- | --- |
//! | `POST /` | any form, detected: a `ce-type` header → binary CloudEvent; content type `application/cloudevents+json` → structured CloudEvent; JSON with `message` → Pub/Sub push envelope; `specversion` → structured CloudEvent; `bucket` + `name`, or `data` + `context` → background event |
//! | `POST /pubsub/push` | a Pub/Sub push envelope |
//! | `POST /cloudevents` | a CloudEvent: binary mode when `ce-type` is present, else structured |
//! | `POST /background` | a background event |
//! | `GET /health` (and `GET /healthz`) | `200 ok`; `503 stopping` once the service is stopping. Configure `/health` as Cloud Run's startup and liveness probe: Cloud Run reserves paths ending in `z`, so `/healthz` may never reach the container there (it stays for Kubernetes) |
//!
//! ## Answers
//!
//! - A final [`Outcome`](ingest_core::ingest::Outcome) (done, ignored, queued, submitted, failed
//!   and recorded) → `200` with the outcome as JSON (`{"outcome": "done", "jobs": [...], ...}`):
//!   the notification is acknowledged.
//! - Jobs still running at the request deadline, or a transient error → `503` with a JSON
//!   reason (`"retry": true`) and `Retry-After`: Pub/Sub push redelivers on any non-2xx, Eventarc
//!   retries; a redelivery follows the same jobs (their ids are deterministic).
//! - A malformed payload → `400` with the parser's error (`"retry": false`): redelivery would
//!   not help (a push subscription should have a dead-letter topic to catch them).
//! - A body over [`HttpState::body_limit`] (1 MiB) → `413`.
//! - A body that has not fully arrived after [`HttpState::body_timeout`] (10 s) → `408`.
//! - A marker whose path gives an invalid destination → `400` (`"outcome": "rejected"`):
//!   nothing was requested for it.
//! - While the service is stopping ([`HttpState::stopping`]): a new notification → `503` at
//!   once; one in flight → `503` after at most [`HttpState::shutdown_grace`] (its jobs keep
//!   running in BigQuery; the redelivery follows them by their deterministic ids).
//! - A request that outlives [`HttpState::request_timeout`] (the request deadline plus
//!   [`TIMEOUT_MARGIN`]) → `503` from the timeout layer.
//!
//! Every request is logged once with `tracing`: `form`, `object`, `outcome`, `jobs`,
//! `latency_ms`, and `message_id` / `ce_id` / `event_id` when the notification carries one;
//! failures, transient errors and malformed payloads are logged at ERROR with the error and the
//! first 512 bytes of the body.
//!
//! ```
//! use std::sync::Arc;
//! use ingest_core::{ingest::Ingestor, settings::Settings};
//! use ingest_http::{router, HttpState};
//! use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
//!
//! let store = Arc::new(MemoryStore::new());
//! let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
//! let ingestor = Ingestor::new(Settings::default(), store, warehouse, Arc::new(MemoryClock::new()));
//! let state = HttpState::new(Arc::new(ingestor))
//!     .with_request_deadline(std::time::Duration::from_secs(120));
//! // Mount it under a prefix of your own service:
//! let app: axum::Router = axum::Router::new().nest("/ingest", router(state));
//! # let _ = app;
//! ```
#![warn(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use ingest_core::ingest::Ingestor;
use tower_http::timeout::TimeoutLayer;

mod auth;
mod handler;
mod metrics;
mod stopping;
mod tls;

pub use auth::{
    AuthError, PushAuth, PushAuthConfig, PushAuthLayer, PushAuthService, PushClaims,
    GOOGLE_CERTS_URL, GOOGLE_ISSUERS, MIN_REFETCH,
};
pub use ingest_core::notification::NotificationForm;
pub use metrics::{MetricsEndpoint, PROMETHEUS_TEXT};
pub use stopping::{stop_signal, StopHandle, Stopping, DEFAULT_SHUTDOWN_GRACE};

/// How long one request may wait for its jobs by default: 240 s, under Cloud Run's default
/// request timeout of 300 s.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(240);

/// The largest request body accepted by default: 1 MiB (a GCS notification is about 1–2 KiB).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The `Retry-After` of 503 answers by default.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How long a request's body may take to arrive by default: a notification is a few KiB, so a
/// body still incomplete after this is a stalled or hostile client.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than the request deadline a request may run before the timeout layer answers
/// 503: time to record the outcome and answer after the last poll.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// What the router needs: the ingestor and the limits of one request.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use ingest_core::{ingest::Ingestor, settings::Settings};
/// use ingest_http::{HttpState, DEFAULT_BODY_LIMIT};
/// use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
///
/// let store = Arc::new(MemoryStore::new());
/// let warehouse = Arc::new(MemoryWarehouse::new());
/// let ingestor = Ingestor::new(Settings::default(), store, warehouse, Arc::new(MemoryClock::new()));
/// let state = HttpState::new(Arc::new(ingestor)).with_request_deadline(Duration::from_secs(50));
/// assert_eq!(state.request_timeout(), Duration::from_secs(60));
/// assert_eq!(state.body_limit, DEFAULT_BODY_LIMIT);
/// ```
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Handles every notification.
    pub ingestor: Arc<Ingestor>,
    /// How long one request may wait for its jobs: the deadline given to
    /// [`Ingestor::handle_until`] is the ingestor's clock plus this (and the ingestor also caps
    /// it at `WAIT_FOR_JOB_SECONDS`). Keep it under the platform's request timeout (Cloud Run:
    /// 300 s by default) and the push subscription's acknowledgement deadline.
    pub request_deadline: Duration,
    /// The largest body accepted, in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// The `Retry-After` of 503 answers (sent in whole seconds, at least 1).
    pub retry_after: Duration,
    /// How long the body may take to arrive; a body still incomplete then gets `408` (logged).
    pub body_timeout: Duration,
    /// Whether the service is stopping: then new notifications get `503` at once, and those
    /// in flight get at most [`HttpState::shutdown_grace`] more before they answer `503`
    /// (their jobs keep running in BigQuery; the redelivery follows them by their ids).
    pub stopping: Stopping,
    /// How long a request in flight may still take once the service is stopping (default
    /// [`DEFAULT_SHUTDOWN_GRACE`], 5 s).
    pub shutdown_grace: Duration,
    /// When set, every notification route requires a push token this accepts (401/403, or
    /// 503 when the keys cannot be fetched); health stays open. Checked by the handlers before
    /// the body is read. See [`PushAuth`].
    pub auth: Option<Arc<PushAuth>>,
    /// What `GET /metrics` answers; without it, 404.
    pub metrics: Option<MetricsEndpoint>,
}

impl HttpState {
    /// A state with [`DEFAULT_REQUEST_DEADLINE`], [`DEFAULT_BODY_LIMIT`] and
    /// [`DEFAULT_RETRY_AFTER`].
    pub fn new(ingestor: Arc<Ingestor>) -> Self {
        HttpState {
            ingestor,
            request_deadline: DEFAULT_REQUEST_DEADLINE,
            body_limit: DEFAULT_BODY_LIMIT,
            retry_after: DEFAULT_RETRY_AFTER,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            stopping: Stopping::never(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            auth: None,
            metrics: None,
        }
    }

    /// Sets [`HttpState::stopping`] (from [`stop_signal`]).
    pub fn with_stopping(mut self, stopping: Stopping) -> Self {
        self.stopping = stopping;
        self
    }

    /// Sets [`HttpState::shutdown_grace`].
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`HttpState::metrics`].
    pub fn with_metrics(mut self, metrics: MetricsEndpoint) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets [`HttpState::auth`].
    pub fn with_auth(mut self, auth: PushAuthConfig) -> Self {
        self.auth = Some(Arc::new(PushAuth::new(auth)));
        self
    }

    /// Sets [`HttpState::body_timeout`].
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets [`HttpState::request_deadline`].
    pub fn with_request_deadline(mut self, deadline: Duration) -> Self {
        self.request_deadline = deadline;
        self
    }

    /// Sets [`HttpState::body_limit`].
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets [`HttpState::retry_after`].
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The request timeout enforced by the router's timeout layer: the request deadline plus
    /// [`TIMEOUT_MARGIN`] (real time, whatever clock the ingestor uses).
    pub fn request_timeout(&self) -> Duration {
        self.request_deadline.saturating_add(TIMEOUT_MARGIN)
    }
}

/// The routes, generic over the state of the app they are mounted in: `POST /`,
/// `POST /pubsub/push`, `POST /cloudevents`, `POST /background`, `GET /health` and its alias
/// `GET /healthz`, with no layer.
/// Nest them into any `Router<S>` whose state gives an [`HttpState`] (`HttpState: FromRef<S>`).
/// Push authentication ([`HttpState::auth`]) and the body timeout are enforced by the handlers
/// themselves, so they hold wherever the routes are mounted; the request timeout is
/// [`router`]'s layer, add your own when you mount the routes.
///
/// ```
/// use std::sync::Arc;
/// use axum::{extract::{FromRef, State}, routing::get, Router};
/// use ingest_core::{ingest::Ingestor, settings::Settings};
/// use ingest_http::{routes, HttpState};
/// use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
///
/// #[derive(Clone)]
/// struct AppState {
///     ingest: HttpState,
///     greeting: &'static str,
/// }
///
/// impl FromRef<AppState> for HttpState {
///     fn from_ref(app: &AppState) -> HttpState {
///         app.ingest.clone()
///     }
/// }
///
/// let store = Arc::new(MemoryStore::new());
/// let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
/// let ingestor = Ingestor::new(Settings::default(), store, warehouse, Arc::new(MemoryClock::new()));
/// let state = AppState { ingest: HttpState::new(Arc::new(ingestor)), greeting: "hello" };
/// let app: Router = Router::new()
///     .route("/hello", get(|State(app): State<AppState>| async move { app.greeting }))
///     .nest("/ingest", routes())
///     .with_state(state);
/// # let _ = app;
/// ```
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    HttpState: FromRef<S>,
{
    Router::new()
        .route("/", post(handler::auto))
        .route("/pubsub/push", post(handler::push))
        .route("/cloudevents", post(handler::cloud_events))
        .route("/background", post(handler::background))
        .route("/health", get(handler::health))
        .route("/healthz", get(handler::health))
        .route("/metrics", get(handler::metrics))
}

/// The router: [`routes`] with `state`, and the request timeout layer
/// ([`HttpState::request_timeout`] → 503). See the [crate] documentation for what each route
/// answers.
///
/// ```
/// use std::sync::Arc;
/// use axum::{body::Body, http::{Request, StatusCode}};
/// use ingest_core::{ingest::Ingestor, settings::Settings};
/// use ingest_http::{router, HttpState};
/// use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
/// use tower::ServiceExt;
///
/// let store = Arc::new(MemoryStore::new());
/// let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
/// let ingestor = Ingestor::new(Settings::default(), store, warehouse, Arc::new(MemoryClock::new()));
/// let app = router(HttpState::new(Arc::new(ingestor)));
///
/// let body = r#"{"bucket": "b", "name": "ds/t/part-0.csv", "generation": "1"}"#;
/// let request = Request::post("/").header("content-type", "application/json").body(Body::from(body)).unwrap();
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let response = app.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK); // a data file: {"outcome": "ignored", ...}
/// # });
/// ```
pub fn router(state: HttpState) -> Router {
    let timeout = state.request_timeout();
    routes::<HttpState>()
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
}

/// `GET /health` and `GET /healthz` (`200 ok`, `503 stopping` once `stopping` fires) and
/// `GET /metrics` (404 without `metrics`) alone: the health port of a process that takes no
/// HTTP notifications (`bq-ingest pull` on Cloud Run or GKE). Merge more routes into it as
/// needed.
///
/// ```
/// use axum::{body::Body, http::{Request, StatusCode}};
/// use tower::ServiceExt;
///
/// let (stop, stopping) = ingest_http::stop_signal();
/// let metrics = ingest_http::MetricsEndpoint::new(|| "bq_ingest_up 1\n".into());
/// let app = ingest_http::health_router(stopping, Some(metrics));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let ok = app.clone().oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(ok.status(), StatusCode::OK);
/// let page = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(page.headers()["content-type"], ingest_http::PROMETHEUS_TEXT);
/// stop.stop();
/// let stopping = app.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(stopping.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # });
/// ```
pub fn health_router(stopping: Stopping, metrics: Option<MetricsEndpoint>) -> Router {
    let health = move || {
        let stopping = stopping.clone();
        async move { handler::health_answer(&stopping) }
    };
    let metrics = move || {
        let metrics = metrics.clone();
        async move { metrics::metrics_answer(metrics.as_ref()) }
    };
    Router::new()
        .route("/health", get(health.clone()))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c, `TCP_NODELAY` on every connection) until
/// `shutdown` completes; then stops accepting connections, lets in-flight requests finish, and
/// returns.
///
/// In-flight requests may wait for jobs up to the request deadline: on Cloud Run, which gives a
/// stopping instance 10 s after SIGTERM, the ones still waiting then are cut off and their
/// notifications redelivered (their jobs, already submitted, are followed by the redelivery).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use ingest_core::{ingest::Ingestor, settings::Settings};
/// # use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
/// use ingest_http::{router, serve, HttpState};
///
/// # async fn run(ingestor: Ingestor) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
/// serve(listener, router(HttpState::new(Arc::new(ingestor))), shutdown).await
/// # }
/// ```
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match listener.local_addr() {
        Ok(addr) => tracing::info!(address = %addr, "listening for notifications on {addr}"),
        Err(e) => tracing::warn!(error = %e, "listening (address unknown: {e})"),
    }
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY: {e}");
        }
    });
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped: every in-flight request finished");
    Ok(())
}
