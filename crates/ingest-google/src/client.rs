//! The client layer: one HTTP client, one credential chain and one retry loop for every Google
//! API call bq-ingest makes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use tokio::sync::OnceCell;

use crate::auth::{AuthError, Credentials, DefaultCredentials};
use crate::counters::{RequestCounters, StatusClass};
use crate::failure::Failure;
use crate::retry::{random_unit, FailureClass, RetryPolicy};

/// Characters escaped in a path segment (bucket, object, job, subscription): everything
/// except RFC 3986's unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long establishing a TCP (and TLS) connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Google API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Cloud Storage (JSON API).
    Storage,
    /// BigQuery (REST v2).
    BigQuery,
    /// Pub/Sub (REST v1).
    PubSub,
}

impl Service {
    /// `storage`, `bigquery`, `pubsub`: the label of its requests.
    pub fn name(self) -> &'static str {
        match self {
            Service::Storage => "storage",
            Service::BigQuery => "bigquery",
            Service::PubSub => "pubsub",
        }
    }

    /// The variable that points Google's client libraries at an emulator of this service:
    /// `STORAGE_EMULATOR_HOST`, `BIGQUERY_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`. Requests to
    /// an emulator carry no credentials.
    pub fn emulator_variable(self) -> &'static str {
        match self {
            Service::Storage => "STORAGE_EMULATOR_HOST",
            Service::BigQuery => "BIGQUERY_EMULATOR_HOST",
            Service::PubSub => "PUBSUB_EMULATOR_HOST",
        }
    }

    /// The variable that names another endpoint of the real service, with credentials (a
    /// Private Service Connect endpoint, a regional one, a local test server):
    /// `BQ_INGEST_STORAGE_ENDPOINT`, `BQ_INGEST_BIGQUERY_ENDPOINT`, `BQ_INGEST_PUBSUB_ENDPOINT`.
    pub fn endpoint_variable(self) -> &'static str {
        match self {
            Service::Storage => "BQ_INGEST_STORAGE_ENDPOINT",
            Service::BigQuery => "BQ_INGEST_BIGQUERY_ENDPOINT",
            Service::PubSub => "BQ_INGEST_PUBSUB_ENDPOINT",
        }
    }

    /// Google's endpoint: `https://storage.googleapis.com`, `https://bigquery.googleapis.com`,
    /// `https://pubsub.googleapis.com`.
    pub fn default_url(self) -> &'static str {
        match self {
            Service::Storage => "https://storage.googleapis.com",
            Service::BigQuery => "https://bigquery.googleapis.com",
            Service::PubSub => "https://pubsub.googleapis.com",
        }
    }
}

/// Where a service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The root URL, without a trailing slash (`https://storage.googleapis.com`).
    pub url: String,
    /// Whether it is an emulator (no credentials are sent).
    pub emulator: bool,
}

impl Endpoint {
    /// An emulator at `host` (`http://127.0.0.1:4443`, or `127.0.0.1:4443` which means
    /// `http://`).
    ///
    /// ```
    /// use ingest_google::Endpoint;
    /// assert_eq!(Endpoint::emulator("127.0.0.1:4443").url, "http://127.0.0.1:4443");
    /// assert_eq!(Endpoint::emulator(" https://gcs.local/ ").url, "https://gcs.local");
    /// ```
    pub fn emulator(host: &str) -> Endpoint {
        Endpoint {
            url: with_scheme(host),
            emulator: true,
        }
    }

    /// The real service at `url` (credentials are sent).
    pub fn google(url: &str) -> Endpoint {
        Endpoint {
            url: with_scheme(url),
            emulator: false,
        }
    }

    /// Checks that the URL is usable (a scheme and a host).
    ///
    /// ```
    /// use ingest_google::Endpoint;
    /// assert!(Endpoint::emulator("localhost:9050").validated().is_ok());
    /// assert!(Endpoint::emulator("http://").validated().is_err());
    /// ```
    pub fn validated(self) -> Result<Endpoint, SetupError> {
        let invalid = |message: String| SetupError::InvalidEndpoint {
            url: self.url.clone(),
            message,
        };
        let url = Url::parse(&self.url).map_err(|e| invalid(e.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        Ok(self)
    }

    /// From the environment: the emulator variable first, then the endpoint variable, else
    /// Google's endpoint (see [`Service`]).
    pub fn from_env(service: Service) -> Endpoint {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(host) = var(service.emulator_variable()) {
            return Endpoint::emulator(&host);
        }
        match var(service.endpoint_variable()) {
            Some(url) => Endpoint::google(&url),
            None => Endpoint::google(service.default_url()),
        }
    }
}

fn with_scheme(host: &str) -> String {
    let host = host.trim();
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    match with_scheme.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.trim_end_matches('/')),
        None => with_scheme,
    }
}

/// Building a client failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Application Default Credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
    /// An endpoint (or an emulator host variable) is not a usable URL.
    #[error("invalid endpoint {url:?}: {message}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
}

/// What the clients of a process share: the HTTP client (its connection pools), the request
/// counters, and Application Default Credentials (loaded once, on first need).
#[derive(Debug, Clone)]
pub struct ClientLayer {
    http: reqwest::Client,
    counters: RequestCounters,
    adc: Arc<OnceCell<DefaultCredentials>>,
}

impl ClientLayer {
    /// A layer with its own HTTP client (rustls with the `ring` provider, 10 s connect timeout).
    pub fn new() -> Result<ClientLayer, SetupError> {
        crate::install_default_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| SetupError::HttpClient(e.to_string()))?;
        Ok(ClientLayer {
            http,
            counters: RequestCounters::default(),
            adc: Arc::new(OnceCell::new()),
        })
    }

    /// The project of this environment when no setting names one (see [`discover_project`](crate::discover_project)).
    pub async fn discover_project(&self) -> Option<crate::DiscoveredProject> {
        crate::discover_project(&self.http).await
    }

    /// The counters of every client of this layer.
    pub fn counters(&self) -> &RequestCounters {
        &self.counters
    }

    /// Application Default Credentials, loaded on first call.
    pub async fn default_credentials(&self) -> Result<&DefaultCredentials, AuthError> {
        self.adc
            .get_or_try_init(Credentials::application_default)
            .await
    }

    /// A client of `service` at `endpoint`: anonymous for an emulator, else with Application
    /// Default Credentials.
    pub async fn client(
        &self,
        service: Service,
        endpoint: Endpoint,
        retry: RetryPolicy,
    ) -> Result<GoogleClient, SetupError> {
        let endpoint = endpoint.validated()?;
        let credentials = if endpoint.emulator {
            Credentials::Anonymous
        } else {
            self.default_credentials().await?.credentials.clone()
        };
        Ok(self.client_with(service, endpoint, credentials, retry))
    }

    /// A client of `service` with the given credentials.
    pub fn client_with(
        &self,
        service: Service,
        endpoint: Endpoint,
        credentials: Credentials,
        retry: RetryPolicy,
    ) -> GoogleClient {
        GoogleClient {
            inner: Arc::new(Inner {
                http: self.http.clone(),
                counters: self.counters.clone(),
                service,
                endpoint,
                credentials,
                retry,
            }),
        }
    }
}

/// One call: what it is (for counters and logs), and the HTTP request.
#[derive(Debug, Clone)]
pub struct Call {
    /// The API method, e.g. `objects.list`: the counters' label.
    pub operation: &'static str,
    /// What the call is about, for logs (`gs://bucket/name`, a job id, a subscription).
    pub about: String,
    /// The HTTP method.
    pub method: Method,
    /// The full URL.
    pub url: Url,
    /// Extra headers.
    pub headers: HeaderMap,
    /// The body, with its content type.
    pub body: Option<(HeaderValue, Bytes)>,
}

impl Call {
    /// A call without a body.
    pub fn new(
        operation: &'static str,
        about: impl Into<String>,
        method: Method,
        url: Url,
    ) -> Call {
        Call {
            operation,
            about: about.into(),
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// With a JSON body.
    pub fn json(mut self, body: &serde_json::Value) -> Call {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.body = Some((
            HeaderValue::from_static("application/json"),
            Bytes::from(bytes),
        ));
        self
    }

    /// With a body of the given content type.
    pub fn body(mut self, content_type: HeaderValue, bytes: Bytes) -> Call {
        self.body = Some((content_type, bytes));
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status (2xx).
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Whether an earlier, failed attempt of this call may have taken effect too.
    pub earlier_maybe_applied: bool,
}

impl Answer {
    /// The body as JSON (`Null` when empty); an unreadable success body is a transient
    /// failure (the call may have taken effect: the caller looks again).
    pub fn json(&self) -> Result<serde_json::Value, Failure> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| Failure {
            class: FailureClass::Retryable,
            status: Some(self.status),
            reason: None,
            maybe_applied: true,
            message: format!(
                "HTTP {} with an unreadable body ({e}): {}",
                self.status,
                crate::body_snippet(&self.body)
            ),
        })
    }
}

/// A call that failed for good, and whether an earlier attempt may have taken effect.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The last failure.
    pub failure: Failure,
    /// Whether an earlier attempt may have taken effect on the server (so a conflict now may be
    /// the caller's own earlier success).
    pub earlier_maybe_applied: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.failure.message)
    }
}

impl std::error::Error for Refused {}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    counters: RequestCounters,
    service: Service,
    endpoint: Endpoint,
    credentials: Credentials,
    retry: RetryPolicy,
}

/// A client of one Google API; cheap to clone.
///
/// [`GoogleClient::send`] retries throttling (429, 403 `rateLimitExceeded`), server errors
/// (5xx, 408), timeouts and connection errors according to the [`RetryPolicy`] (every call
/// bq-ingest makes is safe to repeat: job ids are chosen by the caller, writes carry
/// generation preconditions, acknowledgements and publications may repeat), logs each retry at
/// WARN, counts every attempt, and reports what is left as a [`Refused`] failure.
#[derive(Debug, Clone)]
pub struct GoogleClient {
    inner: Arc<Inner>,
}

impl GoogleClient {
    /// The service.
    pub fn service(&self) -> Service {
        self.inner.service
    }

    /// The endpoint's root URL.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint.url
    }

    /// Whether it talks to an emulator.
    pub fn is_emulator(&self) -> bool {
        self.inner.endpoint.emulator
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The same client (same HTTP client, credentials and counters) with another retry
    /// policy.
    pub fn with_retry_policy(&self, retry: RetryPolicy) -> GoogleClient {
        GoogleClient {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                counters: self.inner.counters.clone(),
                service: self.inner.service,
                endpoint: self.inner.endpoint.clone(),
                credentials: self.inner.credentials.clone(),
                retry,
            }),
        }
    }

    /// The counters (shared by every client of the same [`ClientLayer`]).
    pub fn counters(&self) -> &RequestCounters {
        &self.inner.counters
    }

    /// `endpoint/segment/segment?query`, every segment percent-encoded as one path segment (so
    /// `/`, `$`, spaces, `%`, `?`, `#` in names are safe).
    ///
    /// ```
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use ingest_google::{ClientLayer, Endpoint, RetryPolicy, Service};
    /// let client = ClientLayer::new()?
    ///     .client(Service::Storage, Endpoint::emulator("127.0.0.1:4443"), RetryPolicy::default())
    ///     .await?;
    /// let url = client.url(&["storage", "v1", "b", "bucket", "o", "a/b c$d"], &[("alt", "media")]);
    /// assert_eq!(url.as_str(), "http://127.0.0.1:4443/storage/v1/b/bucket/o/a%2Fb%20c%24d?alt=media");
    /// # Ok(()) }
    /// ```
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut text = self.inner.endpoint.url.clone();
        for segment in segments {
            text.push('/');
            text.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
        let mut url = Url::parse(&text)
            .unwrap_or_else(|_| Url::parse("http://invalid.endpoint").expect("a valid URL"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends `call`, retrying what is worth retrying; the successful answer, or why not.
    pub async fn send(&self, call: &Call) -> Result<Answer, Refused> {
        let retry = &self.inner.retry;
        let started = Instant::now();
        let mut earlier_maybe_applied = false;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let result =
                match tokio::time::timeout(retry.attempt_timeout, self.attempt(call, attempt > 1))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        self.count(call, StatusClass::Transport, attempt > 1);
                        Err(Failure::timed_out(retry.attempt_timeout))
                    }
                };
            let failure = match result {
                Ok(mut answer) => {
                    answer.earlier_maybe_applied = earlier_maybe_applied;
                    return Ok(answer);
                }
                Err(failure) => failure,
            };
            let wait = match failure.class {
                FailureClass::Retryable => {
                    retry.next_retry(attempt, started.elapsed(), random_unit())
                }
                _ => None,
            };
            let Some(wait) = wait else {
                if failure.is_transient() {
                    tracing::warn!(
                        service = self.inner.service.name(), operation = call.operation,
                        about = %call.about, attempts = attempt, error = %failure.message,
                        "{} request failed; giving up retrying", self.inner.service.name()
                    );
                }
                return Err(Refused {
                    failure,
                    earlier_maybe_applied,
                });
            };
            tracing::warn!(
                service = self.inner.service.name(), operation = call.operation,
                about = %call.about, attempt, wait_ms = wait.as_millis() as u64,
                error = %failure.message, "{} request failed; retrying", self.inner.service.name()
            );
            earlier_maybe_applied |= failure.maybe_applied;
            tokio::time::sleep(wait).await;
        }
    }

    fn count(&self, call: &Call, status: StatusClass, retry: bool) {
        self.inner
            .counters
            .record(self.inner.service.name(), call.operation, status, retry);
    }

    /// One DEBUG line per attempt: service, operation, method, path and status — never a
    /// header, a query string or a body.
    fn log_attempt(&self, call: &Call, status: Option<u16>, sent: Instant, retry: bool) {
        let service = self.inner.service.name();
        tracing::debug!(
            service,
            operation = call.operation,
            about = %call.about,
            method = %call.method,
            path = call.url.path(),
            status,
            retry,
            elapsed_ms = sent.elapsed().as_secs_f64() * 1000.0,
            "{service} {}: {}",
            call.operation,
            status.map_or("no answer".to_string(), |s| format!("HTTP {s}"))
        );
    }

    /// One attempt: token, request, answer.
    async fn attempt(&self, call: &Call, retry: bool) -> Result<Answer, Failure> {
        // No token: nothing is sent, so nothing is counted.
        let authorization = self.inner.credentials.authorization().await?;
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .headers(call.headers.clone());
        if let Some(value) = authorization {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| Failure::no_token("the token is not a header value"))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some((content_type, bytes)) = &call.body {
            request = request
                .header(CONTENT_TYPE, content_type.clone())
                .body(bytes.clone());
        }
        let sent = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.count(call, StatusClass::Transport, retry);
                let failure = Failure::from_reqwest(&e);
                self.log_attempt(call, None, sent, retry);
                return Err(failure);
            }
        };
        let status = response.status().as_u16();
        self.count(call, StatusClass::of(status), retry);
        self.log_attempt(call, Some(status), sent, retry);
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| Failure {
            status: Some(status),
            ..Failure::from_reqwest(&e)
        })?;
        if (200..300).contains(&status) {
            Ok(Answer {
                status,
                headers,
                body,
                earlier_maybe_applied: false,
            })
        } else {
            Err(Failure::from_response(status, &body))
        }
    }
}
