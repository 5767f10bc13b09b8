//! What a failed request means: classification of HTTP statuses and client errors into the
//! few cases the store acts on (retry, not found, precondition, permanent).

use gcloud_storage::http::Error as GcsError;

/// The kind of a failed request, from its HTTP status or the way the transport failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// 404: the object or bucket does not exist.
    NotFound,
    /// 409 or 412: a precondition (generation match) did not hold.
    Conflict,
    /// 408, 429, 5xx, timeouts, connection and other transport errors: retry within the bound.
    Retryable,
    /// Any other 4xx and everything else: retrying will not help.
    Permanent,
}

/// One failed attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What the failure means.
    pub(crate) class: FailureClass,
    /// Whether the request may have taken effect on the server although it failed (a timeout,
    /// a connection cut after sending, a 5xx): a retry of a conditional write may then see its
    /// own earlier success as a failed precondition.
    pub(crate) maybe_applied: bool,
    /// What went wrong, for the error message.
    pub(crate) message: String,
}

/// The class of an HTTP error status.
pub(crate) fn classify_status(status: u16) -> FailureClass {
    match status {
        404 => FailureClass::NotFound,
        409 | 412 => FailureClass::Conflict,
        408 | 429 | 500..=599 => FailureClass::Retryable,
        _ => FailureClass::Permanent,
    }
}

impl Failure {
    /// A failure from an HTTP error status and the server's message.
    pub(crate) fn from_status(status: u16, message: &str) -> Failure {
        let class = classify_status(status);
        Failure {
            class,
            // 408/5xx: the server may have done the work before failing; 429 rejects up front.
            maybe_applied: status == 408 || (500..=599).contains(&status),
            message: if message.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {message}")
            },
        }
    }

    /// An attempt that did not finish within `timeout`.
    pub(crate) fn timed_out(timeout: std::time::Duration) -> Failure {
        Failure {
            class: FailureClass::Retryable,
            maybe_applied: true,
            message: format!("request timed out after {timeout:?}"),
        }
    }

    /// A failure of the HTTP client (no usable HTTP status, or a status without Google's JSON
    /// error body).
    pub(crate) fn from_reqwest(error: &reqwest::Error) -> Failure {
        if let Some(status) = error.status() {
            return Failure::from_status(status.as_u16(), &error.to_string());
        }
        let message = error_chain(error);
        if error.is_connect() {
            // Nothing was sent: the request cannot have taken effect.
            Failure {
                class: FailureClass::Retryable,
                maybe_applied: false,
                message,
            }
        } else if error.is_timeout() || error.is_request() || error.is_body() {
            Failure {
                class: FailureClass::Retryable,
                maybe_applied: true,
                message,
            }
        } else {
            // Builder errors (a bad URL), redirect loops, undecodable success bodies.
            Failure {
                class: FailureClass::Permanent,
                maybe_applied: false,
                message,
            }
        }
    }

    /// A failure of the `gcloud-storage` client.
    pub(crate) fn from_gcs(error: &GcsError) -> Failure {
        match error {
            GcsError::Response(response) => Failure::from_status(response.code, &response.message),
            GcsError::HttpClient(error) | GcsError::RawResponse(error, _) => {
                Failure::from_reqwest(error)
            }
            // Fetching or refreshing an access token failed (metadata server, token endpoint):
            // usually passing; bad credentials already fail when the store is built.
            GcsError::TokenSource(error) => Failure {
                class: FailureClass::Retryable,
                maybe_applied: false,
                message: format!("could not get an access token: {error}"),
            },
            other => Failure {
                class: FailureClass::Permanent,
                maybe_applied: false,
                message: other.to_string(),
            },
        }
    }

    /// A failure of the middleware client used for downloads.
    pub(crate) fn from_middleware(error: reqwest_middleware::Error) -> Failure {
        Failure::from_gcs(&GcsError::from(error))
    }
}

/// The error and its sources, joined: reqwest's own message hides the cause
/// ("error sending request") that says what really happened.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(classify_status(404), FailureClass::NotFound);
        assert_eq!(classify_status(409), FailureClass::Conflict);
        assert_eq!(classify_status(412), FailureClass::Conflict);
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(status), FailureClass::Retryable, "{status}");
        }
        for status in [400, 401, 403, 405, 410, 411, 413, 416, 600] {
            assert_eq!(classify_status(status), FailureClass::Permanent, "{status}");
        }
    }

    #[test]
    fn server_errors_may_have_been_applied_but_throttling_was_not() {
        let throttled = Failure::from_status(429, "rateLimitExceeded");
        assert_eq!(throttled.class, FailureClass::Retryable);
        assert!(!throttled.maybe_applied);
        assert_eq!(throttled.message, "HTTP 429: rateLimitExceeded");

        let unavailable = Failure::from_status(503, "");
        assert_eq!(unavailable.class, FailureClass::Retryable);
        assert!(unavailable.maybe_applied);
        assert_eq!(unavailable.message, "HTTP 503");

        let precondition = Failure::from_status(412, "conditionNotMet");
        assert_eq!(precondition.class, FailureClass::Conflict);
        assert!(!precondition.maybe_applied);
    }

    #[test]
    fn google_error_responses_keep_their_status() {
        let body = r#"{"code": 412, "message": "At least one of the pre-conditions you specified did not hold.", "errors": []}"#;
        let response: gcloud_storage::http::error::ErrorResponse = serde_json_from_str(body);
        let failure = Failure::from_gcs(&GcsError::Response(response));
        assert_eq!(failure.class, FailureClass::Conflict);
        assert!(failure.message.starts_with("HTTP 412: At least one"));
    }

    #[test]
    fn timeouts_are_retryable_and_ambiguous() {
        let failure = Failure::timed_out(std::time::Duration::from_secs(3));
        assert_eq!(failure.class, FailureClass::Retryable);
        assert!(failure.maybe_applied);
        assert!(failure.message.contains("3s"));
    }

    #[test]
    fn token_errors_are_retryable() {
        let failure = Failure::from_gcs(&GcsError::TokenSource("metadata server: 503".into()));
        assert_eq!(failure.class, FailureClass::Retryable);
        assert!(!failure.maybe_applied);
    }

    #[test]
    fn other_client_errors_are_permanent() {
        let failure = Failure::from_gcs(&GcsError::InvalidRangeHeader("bytes=x".into()));
        assert_eq!(failure.class, FailureClass::Permanent);
    }

    #[tokio::test]
    async fn connection_refused_is_retryable_and_not_applied() {
        // A port that nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free local port");
        crate::store::install_default_tls_provider();
        let client = reqwest::Client::new();
        let error = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect_err("nothing listens on the port");
        let failure = Failure::from_reqwest(&error);
        assert_eq!(failure.class, FailureClass::Retryable);
        assert!(!failure.maybe_applied, "{failure:?}");
        assert!(
            failure.message.to_lowercase().contains("connect"),
            "{}",
            failure.message
        );
    }

    fn serde_json_from_str<T: serde::de::DeserializeOwned>(text: &str) -> T {
        match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => panic!("bad test JSON: {error}"),
        }
    }
}
