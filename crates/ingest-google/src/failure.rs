//! How a call failed: its class, whether it may have taken effect, and what the server said.

use serde_json::Value;

use crate::retry::{classify_status, FailureClass};

/// One failed call (after the retries it deserved), classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the failure means.
    pub class: FailureClass,
    /// The HTTP status of the last answer; `None` for a transport error (timeout, refused
    /// connection, no token).
    pub status: Option<u16>,
    /// Google's error reason (`duplicate`, `notFound`, `conditionNotMet`, …) when the body had
    /// one.
    pub reason: Option<String>,
    /// Whether the request may have taken effect on the server although it failed (a timeout,
    /// a connection cut after sending, a 5xx): a retry of a conditional write may then see its
    /// own earlier success as a failed precondition.
    pub maybe_applied: bool,
    /// What went wrong, naming the status and what the server said.
    pub message: String,
}

impl Failure {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.class == FailureClass::Retryable
    }

    /// A failure from an HTTP error status and its body (Google's JSON error shape or not).
    ///
    /// ```
    /// use ingest_google::{Failure, FailureClass};
    /// let body = br#"{"error": {"code": 409, "message": "Already Exists: Job p:US.j",
    ///                 "errors": [{"reason": "duplicate"}]}}"#;
    /// let failure = Failure::from_response(409, body);
    /// assert_eq!(failure.class, FailureClass::Conflict);
    /// assert_eq!(failure.reason.as_deref(), Some("duplicate"));
    /// assert_eq!(failure.message, "HTTP 409 duplicate: Already Exists: Job p:US.j");
    /// ```
    pub fn from_response(status: u16, body: &[u8]) -> Failure {
        let (reason, message) = describe_failure(status, body);
        Failure {
            class: classify_status(status, reason.as_deref()),
            status: Some(status),
            reason,
            // 408/5xx: the server may have done the work before failing; 429 rejects up front.
            maybe_applied: status == 408 || (500..=599).contains(&status),
            message,
        }
    }

    /// An attempt that did not finish within `timeout`.
    pub fn timed_out(timeout: std::time::Duration) -> Failure {
        Failure {
            class: FailureClass::Retryable,
            status: None,
            reason: None,
            maybe_applied: true,
            message: format!("request timed out after {timeout:?}"),
        }
    }

    /// No access token could be had (metadata server, token endpoint): usually passing, and
    /// nothing was sent.
    pub fn no_token(message: &str) -> Failure {
        Failure {
            class: FailureClass::Retryable,
            status: None,
            reason: None,
            maybe_applied: false,
            message: format!("could not get an access token: {message}"),
        }
    }

    /// A failure that no retry can mend and that sent nothing (a bad URL, an unencodable body).
    pub fn permanent(message: String) -> Failure {
        Failure {
            class: FailureClass::Permanent,
            status: None,
            reason: None,
            maybe_applied: false,
            message,
        }
    }

    /// A failure of the HTTP client itself (no HTTP status).
    pub fn from_reqwest(error: &reqwest::Error) -> Failure {
        let message = error_chain(error);
        let (class, maybe_applied) = if error.is_connect() {
            // Nothing was sent: the request cannot have taken effect.
            (FailureClass::Retryable, false)
        } else if error.is_timeout() || error.is_request() || error.is_body() {
            (FailureClass::Retryable, true)
        } else {
            // Builder errors (a bad URL), redirect loops, undecodable bodies.
            (FailureClass::Permanent, false)
        };
        Failure {
            class,
            status: error.status().map(|s| s.as_u16()),
            reason: None,
            maybe_applied,
            message,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Reads Google's JSON error shape `{"error": {"code", "message", "errors": [{"reason"}]}}`
/// (also the bare `{"code", "message"}` some emulators send); `None` when the body is
/// something else (HTML, plain text, empty).
pub fn parse_google_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error").unwrap_or(&value);
    let message = error.get("message").and_then(Value::as_str)?.to_string();
    let reason = error
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Some((reason, message))
}

/// The first characters of a body, on one line, for error messages.
pub fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut snippet: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        snippet.push('…');
    }
    snippet
}

/// Describes a failed answer: the status, Google's reason and message, or the body's start.
///
/// ```
/// use ingest_google::describe_failure;
/// assert_eq!(describe_failure(502, b"").1, "HTTP 502");
/// assert_eq!(describe_failure(503, b"<html> Service Unavailable </html>").1,
///            "HTTP 503: <html> Service Unavailable </html>");
/// ```
pub fn describe_failure(status: u16, body: &[u8]) -> (Option<String>, String) {
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

/// The error and its sources, joined: reqwest's own message hides the cause ("error sending
/// request") that says what really happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
