//! The BigQuery REST calls, over the shared client layer (`ingest-google`): one HTTP client,
//! Application Default Credentials, retries, request counting and the classification of
//! answers by HTTP status are the layer's; this module maps its failures onto the warehouse's
//! errors.

use ingest_core::ports::WarehouseError;
use ingest_google::reqwest;
use ingest_google::{Call, GoogleClient};
use serde_json::Value;

use crate::stats::Operation;

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

    fn of(failure: ingest_google::Failure, attempts_note: bool) -> CallError {
        let transient = failure.is_transient();
        CallError {
            status: failure.status,
            reason: failure.reason,
            message: if transient && attempts_note {
                format!("{} (retries exhausted)", failure.message)
            } else {
                failure.message
            },
            transient,
        }
    }
}

/// HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// The BigQuery REST transport: a client of the layer whose endpoint is the REST v2 root.
#[derive(Debug, Clone)]
pub(crate) struct Rest {
    pub(crate) client: GoogleClient,
}

impl Rest {
    /// Sends one REST call (retried by the client layer) and returns the parsed JSON body of
    /// the success response (`Null` when empty). An unreadable success body is transient: the
    /// call may have taken effect, so the caller looks again (a re-inserted job then gets 409).
    pub(crate) async fn call(
        &self,
        op: Operation,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = self.client.url(segments, query);
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let about = segments.last().copied().unwrap_or_default().to_string();
        let mut call = Call::new(op.method_name(), about, method, url);
        if let Some(body) = body {
            call = call.json(body);
        }
        let answer = self
            .client
            .send(&call)
            .await
            .map_err(|refused| CallError::of(refused.failure, true))?;
        answer
            .json()
            .map_err(|failure| CallError::of(failure, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_google::describe_failure;

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
