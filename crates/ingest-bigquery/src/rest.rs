//! The HTTP layer: one `reqwest` client (the one `gcp-bigquery-client` is built on), the
//! crate's `Authenticator` for tokens, retries, request counting, and error classification by
//! HTTP status.
//!
//! Why requests are sent here rather than through the crate's typed `JobApi`/`TableApi`: when
//! an error body is not Google's JSON error shape (an HTML 502 from a proxy, a plain-text 409)
//! the crate fails to decode it and returns `BQError::RequestError` *without* the HTTP status,
//! so a retryable 503 cannot be told from a permanent 400, nor a duplicate job (409) from
//! anything else; and it does no retries. Reading the status ourselves fixes both.

use std::sync::Arc;

use gcp_bigquery_client::auth::Authenticator;
use ingest_core::ports::WarehouseError;
use serde_json::Value;

use crate::retry::{backoff_delay, is_retryable_status, Jitter, RetryPolicy};
use crate::stats::{Counters, Operation};

/// How a call failed, after the retries it deserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    /// The HTTP status of the last response; `None` for a transport error (timeout, refused
    /// connection, no token).
    pub status: Option<u16>,
    /// Google's error reason (`duplicate`, `notFound`, `invalid`, …) when the body had one.
    pub reason: Option<String>,
    /// A description naming the status and what the server said.
    pub message: String,
    /// Whether retrying later may succeed (429, 5xx, timeouts — retries exhausted).
    pub transient: bool,
}

impl CallError {
    /// The warehouse error for this failure about `what` (a job id or a table).
    pub(crate) fn into_warehouse(self, what: impl Into<String>) -> WarehouseError {
        if self.transient {
            WarehouseError::Transient {
                what: what.into(),
                message: self.message,
            }
        } else {
            WarehouseError::Rejected {
                what: what.into(),
                message: self.message,
            }
        }
    }
}

/// HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// Reads Google's JSON error shape `{"error": {"code", "message", "errors": [{"reason"}]}}`;
/// `None` when the body is something else (HTML, plain text, empty).
pub(crate) fn parse_google_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let reason = error
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Some((reason, message))
}

/// The first characters of a non-JSON body, on one line, for error messages.
pub(crate) fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut snippet: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        snippet.push('…');
    }
    snippet
}

/// Describes a failed HTTP response: status, Google reason and message, or the body's start.
pub(crate) fn describe_failure(status: u16, body: &[u8]) -> (Option<String>, String) {
    match parse_google_error(body) {
        Some((reason, message)) => {
            let described = match &reason {
                Some(r) => format!("HTTP {status} {r}: {message}"),
                None => format!("HTTP {status}: {message}"),
            };
            (reason, described)
        }
        None => {
            let snippet = body_snippet(body);
            let described = if snippet.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {snippet}")
            };
            (None, described)
        }
    }
}

/// The BigQuery REST transport.
pub(crate) struct Rest {
    pub(crate) http: reqwest::Client,
    pub(crate) auth: Arc<dyn Authenticator>,
    /// E.g. `https://bigquery.googleapis.com/bigquery/v2`, without a trailing slash.
    pub(crate) base_url: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) counters: Arc<Counters>,
    pub(crate) jitter: Jitter,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// The URL of `segments` (each percent-encoded) under the base URL, with `query` pairs.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<reqwest::Url, CallError> {
        let invalid = |message: String| CallError {
            status: None,
            reason: None,
            message,
            transient: false,
        };
        let mut url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| invalid(format!("invalid base URL {}: {e}", self.base_url)))?;
        url.path_segments_mut()
            .map_err(|_| invalid(format!("base URL {} cannot have a path", self.base_url)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one REST call, retrying 429/5xx/timeouts with capped exponential back-off and
    /// full jitter, and returns the parsed JSON body of the success response (`Null` when
    /// empty).
    pub(crate) async fn call(
        &self,
        op: Operation,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = self.url(segments, query)?;
        let payload = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| CallError {
                status: None,
                reason: None,
                message: format!("serializing the request body: {e}"),
                transient: false,
            })?),
            None => None,
        };
        let attempts = self.retry.max_attempts.max(1);
        let mut last = CallError {
            status: None,
            reason: None,
            message: "no attempt made".to_string(),
            transient: true,
        };
        for attempt in 0..attempts {
            if attempt > 0 {
                let delay = backoff_delay(&self.retry, attempt - 1, self.jitter.next_unit());
                tracing::debug!(
                    method = op.method_name(),
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %last.message,
                    "retrying BigQuery request"
                );
                tokio::time::sleep(delay).await;
            }
            let token = match self.auth.access_token().await {
                Ok(token) => token,
                Err(e) => {
                    // A metadata-server or token-endpoint blip must not fail a batch for good.
                    last = CallError {
                        status: None,
                        reason: None,
                        message: format!("getting an access token: {e}"),
                        transient: true,
                    };
                    continue;
                }
            };
            self.counters.record(op, attempt > 0);
            let mut request = match method {
                Method::Get => self.http.get(url.clone()),
                Method::Post => self.http.post(url.clone()),
            }
            .timeout(self.retry.request_timeout);
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            if let Some(bytes) = &payload {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    last = CallError {
                        status: None,
                        reason: None,
                        message: format!("{} {url}: {e}", op.method_name()),
                        transient: !e.is_builder(),
                    };
                    if last.transient {
                        continue;
                    }
                    return Err(last);
                }
            };
            let status = response.status().as_u16();
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    last = CallError {
                        status: Some(status),
                        reason: None,
                        message: format!("HTTP {status}: reading the body: {e}"),
                        transient: true,
                    };
                    continue;
                }
            };
            if (200..300).contains(&status) {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Value::Null);
                }
                // A success whose body cannot be read: the call may have taken effect; report
                // it as transient so the caller looks again (a re-inserted job then gets 409).
                return serde_json::from_slice(&bytes).map_err(|e| CallError {
                    status: Some(status),
                    reason: None,
                    message: format!(
                        "HTTP {status} with an unreadable body ({e}): {}",
                        body_snippet(&bytes)
                    ),
                    transient: true,
                });
            }
            let (reason, message) = describe_failure(status, &bytes);
            if is_retryable_status(status, reason.as_deref()) {
                last = CallError {
                    status: Some(status),
                    reason,
                    message: format!("{message} (after {} attempts)", attempt + 1),
                    transient: true,
                };
                continue;
            }
            return Err(CallError {
                status: Some(status),
                reason,
                message,
                transient: false,
            });
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_error_shape_is_read() {
        let body = br#"{"error":{"code":409,"message":"Already Exists: Job p:US.j","errors":[{"reason":"duplicate","message":"x","domain":"global"}],"status":"ALREADY_EXISTS"}}"#;
        let (reason, message) = describe_failure(409, body);
        assert_eq!(reason.as_deref(), Some("duplicate"));
        assert_eq!(message, "HTTP 409 duplicate: Already Exists: Job p:US.j");
    }

    #[test]
    fn non_json_bodies_keep_the_status() {
        let html = b"<html>\n<body>  503 Service Unavailable </body></html>";
        let (reason, message) = describe_failure(503, html);
        assert_eq!(reason, None);
        assert_eq!(
            message,
            "HTTP 503: <html> <body> 503 Service Unavailable </body></html>"
        );
        assert_eq!(describe_failure(502, b"").1, "HTTP 502");
        let (_, long) = describe_failure(500, "x".repeat(500).as_bytes());
        assert!(long.ends_with('…'));
        assert!(long.len() < 220);
    }

    #[test]
    fn transient_errors_map_to_transient() {
        let error = CallError {
            status: Some(503),
            reason: None,
            message: "HTTP 503".into(),
            transient: true,
        };
        assert_eq!(
            error.into_warehouse("job j1"),
            WarehouseError::Transient {
                what: "job j1".into(),
                message: "HTTP 503".into()
            }
        );
        let error = CallError {
            status: Some(400),
            reason: Some("invalid".into()),
            message: "HTTP 400 invalid: bad".into(),
            transient: false,
        };
        assert!(matches!(
            error.into_warehouse("p.d.t"),
            WarehouseError::Rejected { what, .. } if what == "p.d.t"
        ));
    }
}
