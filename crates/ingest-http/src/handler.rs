//! The request handlers: read the body, tell the form, parse, ingest, answer, log.

use std::fmt;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Disposition, IngestError, Outcome};
use ingest_core::notification::{
    read_http_notification, Accept, Headers, HttpNotificationError, NotificationForm,
};
use ingest_core::ports::JobRef;
use serde::Serialize;

use crate::HttpState;

/// How many bytes of a body an error log keeps.
pub(crate) const LOGGED_BODY_PREFIX: usize = 512;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Why a request carries no notification that can be handled. Redelivery would not help.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Malformed {
    /// The notification could not be read (see [`HttpNotificationError`]).
    #[error(transparent)]
    Notification(#[from] HttpNotificationError),
    /// The body could not be read (the client went away, or sent a broken chunked body).
    #[error("could not read the request body: {0}")]
    Unreadable(String),
}

/// The request's headers, as the core's notification reader asks for them.
struct RequestHeaders<'h>(&'h HeaderMap);

impl Headers for RequestHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect()
    }
}

/// `POST /`.
pub(crate) async fn auto(State(state): State<HttpState>, request: Request) -> Response {
    handle(&state, Accept::Any, request).await
}

/// `POST /pubsub/push`.
pub(crate) async fn push(State(state): State<HttpState>, request: Request) -> Response {
    handle(&state, Accept::PushEnvelope, request).await
}

/// `POST /cloudevents`.
pub(crate) async fn cloud_events(State(state): State<HttpState>, request: Request) -> Response {
    handle(&state, Accept::CloudEvent, request).await
}

/// `POST /background`.
pub(crate) async fn background(State(state): State<HttpState>, request: Request) -> Response {
    handle(&state, Accept::BackgroundEvent, request).await
}

/// `GET /healthz`.
pub(crate) async fn health(State(state): State<HttpState>) -> Response {
    health_answer(&state.stopping)
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<HttpState>) -> Response {
    crate::metrics::metrics_answer(state.metrics.as_ref())
}

/// `200 ok`, or `503 stopping` once the service is stopping.
pub(crate) fn health_answer(stopping: &crate::Stopping) -> Response {
    if stopping.is_stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response()
    } else {
        "ok".into_response()
    }
}

/// One request, inside a span that carries its trace id when the platform sent one, so every
/// log line of the request joins the trace in Cloud Logging.
async fn handle(state: &HttpState, accept: Accept, request: Request) -> Response {
    use tracing::Instrument;
    if state.stopping.is_stopping() {
        return stopping(
            state,
            request.uri().path(),
            "the service is stopping: not taking work",
        );
    }
    if let Some(auth) = &state.auth {
        let authorization = request.headers().get(axum::http::header::AUTHORIZATION);
        if let Err(error) = auth.verify(authorization).await {
            return crate::auth::refusal(request.uri().path(), &error);
        }
    }
    match trace_id(request.headers()) {
        Some(trace) => {
            let span = tracing::info_span!("request", trace = %trace);
            handle_request(state, accept, request)
                .instrument(span)
                .await
        }
        None => handle_request(state, accept, request).await,
    }
}

/// The trace id of `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` (Cloud Run, Cloud Functions) or
/// of W3C `traceparent: 00-TRACE_ID-SPAN_ID-FLAGS`.
pub(crate) fn trace_id(headers: &HeaderMap) -> Option<String> {
    let valid =
        |id: &str| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(value) = headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
    {
        let id = value.split('/').next().unwrap_or("");
        if valid(id) {
            return Some(id.to_string());
        }
    }
    let value = headers.get("traceparent").and_then(|v| v.to_str().ok())?;
    let id = value.split('-').nth(1)?;
    valid(id).then(|| id.to_string())
}

/// The whole life of one notification request.
async fn handle_request(state: &HttpState, accept: Accept, request: Request) -> Response {
    let started = Instant::now();
    let (response, front_end, outcome) = answer(state, accept, request, started).await;
    let observer = &state.ingestor.ports().observer;
    observer.notification_handled(front_end, outcome, started.elapsed());
    response
}

/// The answer to one request, with the front end (the notification's form, `http` when it has
/// none) and the outcome name for metrics.
async fn answer(
    state: &HttpState,
    accept: Accept,
    request: Request,
    started: Instant,
) -> (Response, &'static str, &'static str) {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;

    let body = match read_body(headers, body, state.body_limit, state.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { length }) => {
            return (
                too_large(state.body_limit, length, started),
                HTTP,
                MALFORMED,
            );
        }
        Err(BodyError::TimedOut { received }) => {
            return (
                body_timed_out(state.body_timeout, received, started),
                HTTP,
                MALFORMED,
            );
        }
        Err(BodyError::Unreadable(message)) => {
            let log = RequestLog::new(None, None, &[], started);
            return (
                malformed(&log, &Malformed::Unreadable(message)),
                HTTP,
                MALFORMED,
            );
        }
    };

    // The notification, read in one pass over the body, with its form and delivery id.
    let read = read_http_notification(
        state.ingestor.settings(),
        accept,
        &RequestHeaders(headers),
        &body,
    );
    let notification = match read {
        Ok(n) => n,
        Err(error) => {
            let log = RequestLog::new(None, None, &body, started);
            return (
                malformed(&log, &Malformed::Notification(error)),
                HTTP,
                MALFORMED,
            );
        }
    };
    let mut log = RequestLog::new(
        Some(notification.form),
        notification.delivery_id.as_deref(),
        &body,
        started,
    );
    let event = &notification.event;
    log.event = Some(event);
    let front_end = notification.form.name();

    let deadline = deadline_after(state, state.request_deadline);
    let abandoned = AbandonGuard { log: &log };
    let handled =
        state
            .ingestor
            .handle_trigger_until(event, notification.trigger.clone(), deadline);
    let result = tokio::select! {
        result = handled => result,
        () = state.stopping.stopped_for(state.shutdown_grace) => {
            abandoned.disarm();
            let response = stopping(
                state,
                &event.uri(),
                "the service is stopping: the redelivery follows the same jobs",
            );
            return (response, front_end, "stopping");
        }
    };
    abandoned.disarm();

    match result {
        Ok(outcome) => {
            let response = match outcome.disposition() {
                Disposition::Acknowledge => final_outcome(&log, &outcome),
                Disposition::RetryAfter(_) => still_running(state, &log, &outcome),
                Disposition::Reject => rejected(&log, &outcome),
            };
            (response, front_end, outcome.name())
        }
        Err(error) => (transient(state, &log, &error), front_end, ERROR),
    }
}

/// The front-end label of a request that carried no notification form.
const HTTP: &str = "http";
/// The outcome label of a request that was no notification.
const MALFORMED: &str = "malformed";
/// The outcome label of a transient failure (handed back).
const ERROR: &str = "error";

/// The ingestor's clock plus `wait` (saturating).
fn deadline_after(state: &HttpState, wait: Duration) -> DateTime<Utc> {
    let now = state.ingestor.clock().now();
    chrono::TimeDelta::from_std(wait)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Why the body was not read.
enum BodyError {
    TooLarge { length: Option<u64> },
    TimedOut { received: usize },
    Unreadable(String),
}

/// Reads the whole body, at most `limit` bytes within `timeout`; a declared `Content-Length`
/// over the limit is refused before anything is read.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared {
        if length > limit as u64 {
            return Err(BodyError::TooLarge {
                length: Some(length),
            });
        }
    }
    // Frame by frame, so that a timeout can say how much had arrived; a body that arrives in
    // one frame is not copied.
    let mut body = http_body_util::Limited::new(body, limit);
    let mut received = Received::default();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    BodyError::TooLarge { length: declared }
                } else {
                    BodyError::Unreadable(error.to_string())
                }
            })?;
            if let Ok(data) = frame.into_data() {
                received.push(data);
            }
        }
        Ok::<(), BodyError>(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(received.into_bytes()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::TimedOut {
            received: received.len(),
        }),
    }
}

/// The frames of a body so far: the first one as it came, later ones appended to a copy.
#[derive(Default)]
struct Received {
    first: Option<Bytes>,
    joined: Vec<u8>,
}

impl Received {
    fn push(&mut self, data: Bytes) {
        match &self.first {
            None => self.first = Some(data),
            Some(first) => {
                if self.joined.is_empty() {
                    self.joined.extend_from_slice(first);
                }
                self.joined.extend_from_slice(&data);
            }
        }
    }

    fn len(&self) -> usize {
        if self.joined.is_empty() {
            self.first.as_ref().map_or(0, Bytes::len)
        } else {
            self.joined.len()
        }
    }

    fn into_bytes(self) -> Bytes {
        if self.joined.is_empty() {
            self.first.unwrap_or_default()
        } else {
            Bytes::from(self.joined)
        }
    }
}

/// What every log line of a request says.
struct RequestLog<'a> {
    form: Option<NotificationForm>,
    delivery_id: Option<&'a str>,
    event: Option<&'a ObjectEvent>,
    body: &'a [u8],
    started: Instant,
}

impl<'a> RequestLog<'a> {
    fn new(
        form: Option<NotificationForm>,
        delivery_id: Option<&'a str>,
        body: &'a [u8],
        started: Instant,
    ) -> Self {
        RequestLog {
            form,
            delivery_id,
            event: None,
            body,
            started,
        }
    }

    fn latency_ms(&self) -> f64 {
        latency_ms(self.started)
    }

    fn form_name(&self) -> Option<&'static str> {
        self.form.map(NotificationForm::name)
    }

    fn object(&self) -> Option<tracing::field::DisplayValue<ObjectUri<'a>>> {
        self.event.map(|e| tracing::field::display(ObjectUri(e)))
    }

    /// The id under the name its form gives it: (`message_id`, `ce_id`, `event_id`).
    fn ids(&self) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        match self.form {
            Some(NotificationForm::PushEnvelope) => (self.delivery_id, None, None),
            Some(NotificationForm::CloudEventBinary | NotificationForm::CloudEventStructured) => {
                (None, self.delivery_id, None)
            }
            Some(NotificationForm::BackgroundEvent) => (None, None, self.delivery_id),
            None => (None, None, None),
        }
    }

    fn body_prefix(&self) -> BodyPrefix<'a> {
        BodyPrefix(self.body)
    }
}

/// Milliseconds since `started`, to the microsecond.
fn latency_ms(started: Instant) -> f64 {
    started.elapsed().as_micros() as f64 / 1000.0
}

/// `gs://bucket/name`, formatted only when a log line is written.
struct ObjectUri<'a>(&'a ObjectEvent);

impl fmt::Display for ObjectUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}", self.0.bucket, self.0.name)
    }
}

/// The first [`LOGGED_BODY_PREFIX`] bytes of a body, lossily as UTF-8, with `…` when cut.
struct BodyPrefix<'a>(&'a [u8]);

impl fmt::Display for BodyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.0.len() > LOGGED_BODY_PREFIX;
        let prefix = &self.0[..self.0.len().min(LOGGED_BODY_PREFIX)];
        for chunk in prefix.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        if cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Logs a request whose future is dropped while the ingestor works on it: the timeout layer
/// fired or the client went away. The notification is redelivered; this line says so.
struct AbandonGuard<'l, 'a> {
    log: &'l RequestLog<'a>,
}

impl AbandonGuard<'_, '_> {
    /// The request got its outcome: nothing to log on drop.
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for AbandonGuard<'_, '_> {
    fn drop(&mut self) {
        let log = self.log;
        let (message_id, ce_id, event_id) = log.ids();
        tracing::error!(
            form = log.form_name(),
            object = log.object(),
            message_id,
            ce_id,
            event_id,
            outcome = "abandoned",
            jobs = 0u64,
            latency_ms = log.latency_ms(),
            body = %log.body_prefix(),
            "request abandoned before its outcome (request timeout or client gone); \
             the notification will be redelivered"
        );
    }
}

/// A JSON body; serialization of these types cannot fail, but never panic if it did.
fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"outcome":"error","error":"could not serialize the response: {e}"}}"#)
            .into_bytes()
    });
    (status, [(CONTENT_TYPE, JSON)], body).into_response()
}

fn with_retry_after(mut response: Response, retry_after: Duration) -> Response {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
    response
}

/// 200 with the outcome.
fn final_outcome(log: &RequestLog<'_>, outcome: &Outcome) -> Response {
    let (message_id, ce_id, event_id) = log.ids();
    let jobs = outcome.jobs().len();
    match outcome {
        Outcome::Failed { error } => tracing::error!(
            form = log.form_name(),
            object = log.object(),
            message_id,
            ce_id,
            event_id,
            outcome = outcome.name(),
            jobs,
            latency_ms = log.latency_ms(),
            error = %error,
            body = %log.body_prefix(),
            "batch failed (recorded; acknowledged): {error}"
        ),
        Outcome::Ignored { reason } => tracing::info!(
            form = log.form_name(),
            object = log.object(),
            message_id,
            ce_id,
            event_id,
            outcome = outcome.name(),
            jobs,
            latency_ms = log.latency_ms(),
            reason = %reason,
            "notification ignored"
        ),
        _ => tracing::info!(
            form = log.form_name(),
            object = log.object(),
            message_id,
            ce_id,
            event_id,
            outcome = outcome.name(),
            jobs,
            latency_ms = log.latency_ms(),
            "notification handled"
        ),
    }
    json_response(StatusCode::OK, outcome)
}

/// 503: the service is stopping (new work refused, or the shutdown grace of a request in
/// flight is over).
fn stopping(state: &HttpState, about: &str, reason: &'static str) -> Response {
    tracing::warn!(
        about,
        outcome = "stopping",
        "{about}: {reason}; answering 503"
    );
    let body = serde_json::json!({"outcome": "stopping", "retry": true, "reason": reason});
    with_retry_after(
        json_response(StatusCode::SERVICE_UNAVAILABLE, &body),
        state.retry_after,
    )
}

/// 503: the jobs outlived the request deadline; redelivery follows them.
fn still_running(state: &HttpState, log: &RequestLog<'_>, outcome: &Outcome) -> Response {
    #[derive(Serialize)]
    struct RunningBody<'j> {
        outcome: &'static str,
        jobs: &'j [JobRef],
        retry: bool,
        reason: &'static str,
    }
    let jobs: &[JobRef] = outcome.jobs();
    let (message_id, ce_id, event_id) = log.ids();
    tracing::warn!(
        form = log.form_name(),
        object = log.object(),
        message_id,
        ce_id,
        event_id,
        outcome = outcome.name(),
        jobs = jobs.len(),
        latency_ms = log.latency_ms(),
        "jobs still running at the request deadline; answering 503 so the notification is \
         redelivered and the same jobs are followed"
    );
    let body = RunningBody {
        outcome: outcome.name(),
        jobs,
        retry: true,
        reason: "jobs still running at the request deadline; redelivery follows the same jobs",
    };
    with_retry_after(
        json_response(StatusCode::SERVICE_UNAVAILABLE, &body),
        state.retry_after,
    )
}

/// 400: the notification names an object that cannot be a batch (an invalid destination);
/// nothing was requested for it. A push subscription's dead-letter policy keeps it.
fn rejected(log: &RequestLog<'_>, outcome: &Outcome) -> Response {
    let text = match outcome {
        Outcome::Rejected { error } => error.as_str(),
        _ => "rejected",
    };
    let (message_id, ce_id, event_id) = log.ids();
    tracing::error!(
        form = log.form_name(),
        object = log.object(),
        message_id,
        ce_id,
        event_id,
        outcome = outcome.name(),
        jobs = 0u64,
        latency_ms = log.latency_ms(),
        error = %text,
        "notification rejected, answering 400: {text}"
    );
    let body = ErrorBody {
        outcome: outcome.name(),
        error: text,
        retry: false,
    };
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// An error answer: `{"outcome": ..., "error": ..., "retry": ...}`.
#[derive(Serialize)]
struct ErrorBody<'e> {
    outcome: &'static str,
    error: &'e str,
    retry: bool,
}

/// 503: a transient failure; redeliver later.
fn transient(state: &HttpState, log: &RequestLog<'_>, error: &IngestError) -> Response {
    let (message_id, ce_id, event_id) = log.ids();
    let text = error.to_string();
    tracing::error!(
        form = log.form_name(),
        object = log.object(),
        message_id,
        ce_id,
        event_id,
        outcome = "transient_error",
        jobs = 0u64,
        latency_ms = log.latency_ms(),
        error = %text,
        body = %log.body_prefix(),
        "transient failure, answering 503 for redelivery: {text}"
    );
    let body = ErrorBody {
        outcome: "transient_error",
        error: &text,
        retry: true,
    };
    with_retry_after(
        json_response(StatusCode::SERVICE_UNAVAILABLE, &body),
        state.retry_after,
    )
}

/// 400: the payload is not a notification that can be handled.
fn malformed(log: &RequestLog<'_>, error: &Malformed) -> Response {
    let (message_id, ce_id, event_id) = log.ids();
    let text = error.to_string();
    tracing::error!(
        form = log.form_name(),
        message_id,
        ce_id,
        event_id,
        outcome = "malformed",
        jobs = 0u64,
        latency_ms = log.latency_ms(),
        error = %text,
        body_len = log.body.len(),
        body = %log.body_prefix(),
        "malformed notification, answering 400: {text}"
    );
    let body = ErrorBody {
        outcome: "malformed",
        error: &text,
        retry: false,
    };
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// 408: the body did not arrive within the body timeout.
fn body_timed_out(timeout: Duration, received: usize, started: Instant) -> Response {
    let text = format!(
        "request body incomplete after {:.1} s ({received} bytes received): the client stalled",
        timeout.as_secs_f64()
    );
    tracing::error!(
        outcome = "body_timeout",
        jobs = 0u64,
        latency_ms = latency_ms(started),
        received_bytes = received,
        error = %text,
        "request body timed out, answering 408: {text}"
    );
    let body = ErrorBody {
        outcome: "body_timeout",
        error: &text,
        retry: true,
    };
    json_response(StatusCode::REQUEST_TIMEOUT, &body)
}

/// 413: the body is over the limit.
fn too_large(limit: usize, length: Option<u64>, started: Instant) -> Response {
    let text = match length {
        Some(length) => {
            format!("request body of {length} bytes is over the limit of {limit} bytes")
        }
        None => format!("request body is over the limit of {limit} bytes"),
    };
    tracing::error!(
        outcome = "too_large",
        jobs = 0u64,
        latency_ms = latency_ms(started),
        content_length = length,
        error = %text,
        "request body too large, answering 413: {text}"
    );
    let body = ErrorBody {
        outcome: "too_large",
        error: &text,
        retry: false,
    };
    json_response(StatusCode::PAYLOAD_TOO_LARGE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_prefix_is_bounded_and_lossy() {
        assert_eq!(BodyPrefix(b"{}").to_string(), "{}");
        let long = vec![b'a'; LOGGED_BODY_PREFIX + 10];
        let text = BodyPrefix(&long).to_string();
        assert_eq!(text.len(), LOGGED_BODY_PREFIX + "…".len());
        assert!(text.ends_with('…'));
        assert_eq!(BodyPrefix(b"a\xffb").to_string(), "a\u{FFFD}b");
        // A multi-byte character cut at the limit is replaced, not split.
        let mut cut = vec![b'a'; LOGGED_BODY_PREFIX - 1];
        cut.extend_from_slice("é".as_bytes());
        let text = BodyPrefix(&cut).to_string();
        assert!(text.ends_with("a\u{FFFD}…"), "{text}");
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let response = with_retry_after(StatusCode::OK.into_response(), Duration::from_millis(10));
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let response = with_retry_after(StatusCode::OK.into_response(), Duration::from_secs(30));
        assert_eq!(response.headers()[RETRY_AFTER], "30");
    }
}

#[cfg(test)]
mod trace_tests {
    use super::trace_id;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn trace_ids_come_from_cloud_run_or_w3c_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(trace_id(&h), None);
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            trace_id(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        h.insert(
            "x-cloud-trace-context",
            HeaderValue::from_static("105445aa7843bc8bf206b12000100000/1;o=1"),
        );
        assert_eq!(
            trace_id(&h).as_deref(),
            Some("105445aa7843bc8bf206b12000100000")
        );
        h.insert(
            "x-cloud-trace-context",
            HeaderValue::from_static("not a trace"),
        );
        assert_eq!(
            trace_id(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }
}
