//! [`GcsStore`]: the [`ObjectStore`] port over the GCS JSON API.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::object_access_controls::Projection;
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::objects::Object;
use ingest_core::ports::{ListPage, ObjectMeta, ObjectStore, PutMode, StoreError};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, AUTHORIZATION, LAST_MODIFIED};
use reqwest_middleware::ClientWithMiddleware;
use token_source::TokenSource;

use crate::classify::{Failure, FailureClass};
use crate::retry::{random_u64, random_unit, RetryPolicy};

/// The environment variable that points the store at an emulator (`http://127.0.0.1:4443` or
/// `127.0.0.1:4443`), as Google's own client libraries read it.
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";

/// Custom metadata key holding a random id of the write that created a generation, set on
/// create-only and generation-matched writes. After an attempt that may have succeeded without
/// its response arriving (a timeout, a 5xx), a retry fails its precondition on the store's own
/// earlier write; reading this key back tells that case from a real conflict.
pub const WRITE_ID_METADATA_KEY: &str = "bq-ingest-write-id";

/// Characters escaped in a path segment (bucket or object name): everything except RFC 3986's
/// unreserved characters, so `/`, `$`, spaces, `%`, `?` and `#` in names are safe.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long establishing a TCP (and TLS) connection may take, for the client the store builds
/// itself when the [`ClientConfig`] brings none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of building a [`GcsStore`].
#[derive(Debug, thiserror::Error)]
pub enum GcsSetupError {
    /// Application Default Credentials could not be found or loaded.
    #[error("could not load Google Application Default Credentials for Cloud Storage: {0}")]
    Credentials(String),
    /// The [`ClientConfig`] has neither credentials nor `anonymous()` access (its default token
    /// provider is a placeholder that cannot give tokens).
    #[error(
        "the Cloud Storage client config has no credentials: use ClientConfig::with_auth() or ClientConfig::anonymous()"
    )]
    NoCredentials,
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client for Cloud Storage: {0}")]
    HttpClient(String),
}

/// What kind of API request a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    List,
    Read,
    Stat,
    Put,
    Delete,
}

/// Numbers of HTTP requests a [`GcsStore`] sent, per operation, retries included.
///
/// `stat` also counts the metadata GET that `put`/`delete` make in one rare case (see
/// [`GcsStore`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `objects.list` requests.
    pub list: u64,
    /// Media downloads (`objects.get?alt=media`).
    pub read: u64,
    /// Metadata reads (`objects.get`).
    pub stat: u64,
    /// Multipart uploads (`objects.insert`).
    pub put: u64,
    /// `objects.delete` requests.
    pub delete: u64,
}

impl RequestStats {
    /// All requests together.
    pub fn total(&self) -> u64 {
        self.list + self.read + self.stat + self.put + self.delete
    }

    /// The requests made since `earlier` was taken (per field, never below zero).
    ///
    /// ```
    /// use ingest_gcs::RequestStats;
    ///
    /// let before = RequestStats { list: 2, ..RequestStats::default() };
    /// let after = RequestStats { list: 3, put: 1, ..RequestStats::default() };
    /// assert_eq!(after.since(&before).total(), 2);
    /// ```
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        RequestStats {
            list: self.list.saturating_sub(earlier.list),
            read: self.read.saturating_sub(earlier.read),
            stat: self.stat.saturating_sub(earlier.stat),
            put: self.put.saturating_sub(earlier.put),
            delete: self.delete.saturating_sub(earlier.delete),
        }
    }
}

#[derive(Debug, Default)]
struct RequestCounters {
    list: AtomicU64,
    read: AtomicU64,
    stat: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
}

impl RequestCounters {
    fn count(&self, kind: RequestKind) {
        let counter = match kind {
            RequestKind::List => &self.list,
            RequestKind::Read => &self.read,
            RequestKind::Stat => &self.stat,
            RequestKind::Put => &self.put,
            RequestKind::Delete => &self.delete,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RequestStats {
        RequestStats {
            list: self.list.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
            stat: self.stat.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
        }
    }
}

/// The outcome of a request with its retries.
struct Attempts<T> {
    result: Result<T, Failure>,
    /// Whether an earlier failed attempt may have taken effect on the server.
    earlier_maybe_applied: bool,
}

/// Installs rustls' `ring` crypto provider as the process default when no provider is
/// installed yet.
///
/// This crate builds `reqwest` with rustls but without a built-in provider (no aws-lc); the
/// store calls this itself before it builds any client. Call it before
/// `ClientConfig::with_auth()` when you build a [`ClientConfig`] yourself.
///
/// ```
/// ingest_gcs::install_default_tls_provider();
/// ingest_gcs::install_default_tls_provider(); // idempotent
/// ```
pub fn install_default_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// [`ObjectStore`] over Google Cloud Storage's JSON API (`gcloud-storage`), or an emulator
/// such as fake-gcs-server.
///
/// HTTP requests per call (without retries):
/// - `list`: 1 (`objects.list`, one page, no delimiter, `projection=noAcl`);
/// - `read`: 1 — a media download whose response headers (`x-goog-generation`,
///   `x-goog-stored-content-length`, `Last-Modified`) give the metadata, so content and
///   generation are always of the same generation; `updated` then has one-second precision;
/// - `stat`: 1 (`objects.get`);
/// - `put`: 1 multipart upload (the only upload kind on which fake-gcs-server enforces
///   `ifGenerationMatch`); plus 1 `objects.get` only when a retried conditional write fails its
///   precondition after an earlier attempt may have succeeded, to tell the store's own write
///   (recognised by [`WRITE_ID_METADATA_KEY`]) from a real conflict;
/// - `delete`: 1.
///
/// Throttling (429), server errors (5xx, 408), timeouts and connection errors are retried
/// according to the [`RetryPolicy`], then reported as [`StoreError::Transient`]. Each retry is
/// logged at `warn` level with `tracing`. [`GcsStore::stats`] counts the requests sent.
///
/// A `delete` retried after an attempt that may have succeeded, which then finds no object,
/// reports success: the object is gone, possibly by the store's own earlier attempt.
#[derive(Clone)]
pub struct GcsStore {
    client: Client,
    http: ClientWithMiddleware,
    token_source: Option<Arc<dyn TokenSource>>,
    endpoint: String,
    retry: RetryPolicy,
    counters: Arc<RequestCounters>,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsStore")
            .field("endpoint", &self.endpoint)
            .field("authenticated", &self.token_source.is_some())
            .field("retry", &self.retry)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GcsStore {
    /// A store configured from the environment: when `STORAGE_EMULATOR_HOST` is set (with or
    /// without `http://`), anonymous access to that emulator; otherwise Google's endpoint with
    /// Application Default Credentials (a key file in `GOOGLE_APPLICATION_CREDENTIALS`, the
    /// gcloud user credentials, or the metadata server on Cloud Run / GCE). Default
    /// [`RetryPolicy`].
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), ingest_gcs::GcsSetupError> {
    /// use ingest_core::ports::ObjectStore;
    ///
    /// let store = ingest_gcs::GcsStore::from_env().await?;
    /// let page = store.list("my-bucket", "dataset/table/", None, Some(100)).await;
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<GcsStore, GcsSetupError> {
        match std::env::var(STORAGE_EMULATOR_HOST) {
            Ok(host) if !host.trim().is_empty() => {
                GcsStore::for_emulator(&host, RetryPolicy::default())
            }
            _ => {
                install_default_tls_provider();
                let config = ClientConfig::default()
                    .with_auth()
                    .await
                    .map_err(|error| GcsSetupError::Credentials(error.to_string()))?;
                GcsStore::new(config, RetryPolicy::default())
            }
        }
    }

    /// A store with anonymous access to an emulator at `host` (`http://127.0.0.1:4443`, or
    /// `127.0.0.1:4443` which means `http://`).
    ///
    /// ```
    /// use ingest_gcs::{GcsStore, RetryPolicy};
    ///
    /// let store = GcsStore::for_emulator("127.0.0.1:4443", RetryPolicy::default())?;
    /// assert_eq!(store.endpoint(), "http://127.0.0.1:4443");
    /// # Ok::<(), ingest_gcs::GcsSetupError>(())
    /// ```
    pub fn for_emulator(host: &str, retry: RetryPolicy) -> Result<GcsStore, GcsSetupError> {
        let config = ClientConfig {
            storage_endpoint: emulator_endpoint(host),
            ..ClientConfig::default()
        }
        .anonymous();
        GcsStore::new(config, retry)
    }

    /// A store from a `gcloud-storage` client config (endpoint, credentials, HTTP client) and
    /// a retry policy. When the config brings no HTTP client, the store builds one with a
    /// 10 s connect timeout (per-request timeouts come from [`RetryPolicy::attempt_timeout`]).
    ///
    /// Errors: [`GcsSetupError::NoCredentials`] for a config that is neither `with_auth()` nor
    /// `anonymous()`.
    pub fn new(mut config: ClientConfig, retry: RetryPolicy) -> Result<GcsStore, GcsSetupError> {
        install_default_tls_provider();
        let token_source = match &config.token_source_provider {
            None => None,
            // `ClientConfig::default()`'s placeholder panics when asked for a token source.
            Some(provider) if format!("{provider:?}").starts_with("NoopTokenSourceProvider") => {
                return Err(GcsSetupError::NoCredentials)
            }
            Some(provider) => Some(provider.token_source()),
        };
        let http = match config.http.take() {
            Some(http) => http,
            None => {
                let client = reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build()
                    .map_err(|error| GcsSetupError::HttpClient(error.to_string()))?;
                reqwest_middleware::ClientBuilder::new(client).build()
            }
        };
        config.http = Some(http.clone());
        let endpoint = config.storage_endpoint.trim_end_matches('/').to_string();
        config.storage_endpoint = endpoint.clone();
        Ok(GcsStore {
            client: Client::new(config),
            http,
            token_source,
            endpoint,
            retry,
            counters: Arc::new(RequestCounters::default()),
        })
    }

    /// The JSON API endpoint, e.g. `https://storage.googleapis.com`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The numbers of HTTP requests sent so far (shared by clones of this store).
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry policy gives up.
    async fn with_retries<T, F, Fut>(
        &self,
        kind: RequestKind,
        uri: &str,
        mut attempt: F,
    ) -> Attempts<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut earlier_maybe_applied = false;
        let mut number: u32 = 0;
        loop {
            number = number.saturating_add(1);
            self.counters.count(kind);
            let result = match tokio::time::timeout(self.retry.attempt_timeout, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(Failure::timed_out(self.retry.attempt_timeout)),
            };
            let failure = match result {
                Ok(value) => {
                    return Attempts {
                        result: Ok(value),
                        earlier_maybe_applied,
                    }
                }
                Err(failure) => failure,
            };
            let wait = match failure.class {
                FailureClass::Retryable => {
                    self.retry
                        .next_retry(number, started.elapsed(), random_unit())
                }
                _ => None,
            };
            let Some(wait) = wait else {
                if failure.class == FailureClass::Retryable {
                    tracing::warn!(
                        operation = ?kind, object = %uri, attempts = number,
                        error = %failure.message, "GCS request failed; giving up retrying"
                    );
                }
                return Attempts {
                    result: Err(failure),
                    earlier_maybe_applied,
                };
            };
            tracing::warn!(
                operation = ?kind, object = %uri, attempt = number,
                wait_ms = wait.as_millis() as u64, error = %failure.message,
                "GCS request failed; retrying"
            );
            earlier_maybe_applied |= failure.maybe_applied;
            tokio::time::sleep(wait).await;
        }
    }

    /// One media download: content and metadata from the same response.
    async fn download_once(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<(ObjectMeta, Vec<u8>), Failure> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.endpoint,
            utf8_percent_encode(bucket, PATH_SEGMENT),
            utf8_percent_encode(name, PATH_SEGMENT),
        );
        let mut request = self.http.get(url).header("X-Goog-Api-Client", "rust");
        if let Some(token_source) = &self.token_source {
            let token = token_source.token().await.map_err(|error| {
                Failure::from_gcs(&gcloud_storage::http::Error::TokenSource(error))
            })?;
            request = request.header(AUTHORIZATION, token);
        }
        let response = request.send().await.map_err(Failure::from_middleware)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Failure::from_status(status.as_u16(), &error_message(&body)));
        }
        let headers = response.headers().clone();
        let content = response
            .bytes()
            .await
            .map_err(|error| Failure::from_reqwest(&error))?;
        let meta = meta_from_download_headers(name, &headers, content.len())?;
        Ok((meta, content.to_vec()))
    }

    /// Reads back the live object after a conditional write failed its precondition on a
    /// retry, and returns its metadata when it is the store's own earlier write `write_id`.
    /// The object's metadata (one `objects.get`, retried like every request).
    async fn object_metadata(&self, bucket: &str, name: &str) -> Result<Object, Failure> {
        let request = GetObjectRequest {
            bucket: bucket.to_string(),
            object: name.to_string(),
            projection: Some(Projection::NoAcl),
            ..GetObjectRequest::default()
        };
        let uri = gs_uri(bucket, name);
        let attempts = self
            .with_retries(RequestKind::Stat, &uri, || async {
                self.client
                    .get_object(&request)
                    .await
                    .map_err(|error| Failure::from_gcs(&error))
            })
            .await;
        attempts.result
    }

    async fn own_earlier_write(
        &self,
        bucket: &str,
        name: &str,
        write_id: &str,
    ) -> Option<ObjectMeta> {
        let object = self.object_metadata(bucket, name).await.ok()?;
        let ours = object
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get(WRITE_ID_METADATA_KEY))
            .is_some_and(|id| id == write_id);
        ours.then(|| object_meta(&object))
    }
}

#[async_trait]
impl ObjectStore for GcsStore {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        let request = ListObjectsRequest {
            bucket: bucket.to_string(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            page_token: page_token.map(str::to_string),
            // GCS rejects 0; a page of at least one object is the closest.
            max_results: max_results.map(|n| i32::try_from(n.max(1)).unwrap_or(i32::MAX)),
            projection: Some(Projection::NoAcl),
            ..ListObjectsRequest::default()
        };
        let uri = gs_uri(bucket, prefix);
        let attempts = self
            .with_retries(RequestKind::List, &uri, || async {
                self.client
                    .list_objects(&request)
                    .await
                    .map_err(|error| Failure::from_gcs(&error))
            })
            .await;
        match attempts.result {
            Ok(response) => Ok(ListPage {
                objects: response
                    .items
                    .unwrap_or_default()
                    .iter()
                    .map(object_meta)
                    .collect(),
                next_page_token: response.next_page_token.filter(|token| !token.is_empty()),
            }),
            Err(failure) => Err(store_error(bucket, prefix, failure)),
        }
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        let uri = gs_uri(bucket, name);
        let attempts = self
            .with_retries(RequestKind::Read, &uri, || self.download_once(bucket, name))
            .await;
        attempts
            .result
            .map_err(|failure| store_error(bucket, name, failure))
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        match self.object_metadata(bucket, name).await {
            Ok(object) => Ok(object_meta(&object)),
            Err(failure) => Err(store_error(bucket, name, failure)),
        }
    }

    async fn put(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        let if_generation_match = match mode {
            PutMode::Overwrite => None,
            PutMode::Create => Some(0),
            // Generations are positive; GCS would read 0 as "create only" and reject negatives.
            PutMode::Update(generation) if generation <= 0 => {
                return Err(StoreError::PreconditionFailed {
                    bucket: bucket.to_string(),
                    name: name.to_string(),
                })
            }
            PutMode::Update(generation) => Some(generation),
        };
        let write_id =
            if_generation_match.map(|_| format!("{:016x}{:016x}", random_u64(), random_u64()));
        let metadata = Object {
            name: name.to_string(),
            metadata: write_id
                .as_ref()
                .map(|id| HashMap::from([(WRITE_ID_METADATA_KEY.to_string(), id.clone())])),
            ..Object::default()
        };
        let upload_type = UploadType::Multipart(Box::new(metadata));
        let request = UploadObjectRequest {
            bucket: bucket.to_string(),
            if_generation_match,
            projection: Some(Projection::NoAcl),
            ..UploadObjectRequest::default()
        };
        let content = Bytes::from(content);
        let uri = gs_uri(bucket, name);
        let attempts = self
            .with_retries(RequestKind::Put, &uri, || async {
                self.client
                    .upload_object(&request, content.clone(), &upload_type)
                    .await
                    .map_err(|error| Failure::from_gcs(&error))
            })
            .await;
        let failure = match attempts.result {
            Ok(object) => return Ok(object_meta(&object)),
            Err(failure) => failure,
        };
        if failure.class != FailureClass::Conflict {
            return Err(store_error(bucket, name, failure));
        }
        if let (true, Some(write_id)) = (attempts.earlier_maybe_applied, &write_id) {
            if let Some(meta) = self.own_earlier_write(bucket, name, write_id).await {
                tracing::info!(
                    object = %uri, generation = meta.generation,
                    "GCS write succeeded on an attempt whose response was lost"
                );
                return Ok(meta);
            }
        }
        let (bucket, name) = (bucket.to_string(), name.to_string());
        Err(match mode {
            PutMode::Create => StoreError::AlreadyExists { bucket, name },
            PutMode::Update(_) => StoreError::PreconditionFailed { bucket, name },
            PutMode::Overwrite => StoreError::Other {
                bucket,
                name,
                message: failure.message,
            },
        })
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        let request = DeleteObjectRequest {
            bucket: bucket.to_string(),
            object: name.to_string(),
            if_generation_match: if_generation,
            ..DeleteObjectRequest::default()
        };
        let uri = gs_uri(bucket, name);
        let attempts = self
            .with_retries(RequestKind::Delete, &uri, || async {
                self.client
                    .delete_object(&request)
                    .await
                    .map_err(|error| Failure::from_gcs(&error))
            })
            .await;
        match attempts.result {
            Ok(()) => Ok(()),
            Err(failure)
                if failure.class == FailureClass::NotFound && attempts.earlier_maybe_applied =>
            {
                tracing::info!(object = %uri, "GCS delete: gone after an attempt whose response was lost");
                Ok(())
            }
            Err(failure) if failure.class == FailureClass::Conflict && if_generation.is_some() => {
                Err(StoreError::PreconditionFailed {
                    bucket: bucket.to_string(),
                    name: name.to_string(),
                })
            }
            Err(failure) => Err(store_error(bucket, name, failure)),
        }
    }
}

/// `gs://bucket/name`, for logs.
fn gs_uri(bucket: &str, name: &str) -> String {
    format!("gs://{bucket}/{name}")
}

/// The JSON API endpoint for an emulator host given with or without scheme.
fn emulator_endpoint(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

/// The store error for a failure that no operation-specific rule turned into something else.
fn store_error(bucket: &str, name: &str, failure: Failure) -> StoreError {
    let (bucket, name) = (bucket.to_string(), name.to_string());
    match failure.class {
        FailureClass::NotFound => StoreError::NotFound { bucket, name },
        FailureClass::Retryable => StoreError::Transient {
            bucket,
            name,
            message: failure.message,
        },
        FailureClass::Conflict | FailureClass::Permanent => StoreError::Other {
            bucket,
            name,
            message: failure.message,
        },
    }
}

/// The metadata of an object resource.
fn object_meta(object: &Object) -> ObjectMeta {
    ObjectMeta {
        name: object.name.clone(),
        size: u64::try_from(object.size).unwrap_or(0),
        generation: object.generation,
        updated: object
            .updated
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.unix_timestamp(), t.nanosecond())),
    }
}

/// The metadata of a downloaded object, from the response headers of the media download.
fn meta_from_download_headers(
    name: &str,
    headers: &HeaderMap,
    body_len: usize,
) -> Result<ObjectMeta, Failure> {
    let header = |key: &str| headers.get(key).and_then(|value| value.to_str().ok());
    let generation = header("x-goog-generation")
        .and_then(|value| value.trim().parse::<i64>().ok())
        .ok_or_else(|| Failure {
            class: FailureClass::Permanent,
            maybe_applied: false,
            message: "the download response has no valid x-goog-generation header".to_string(),
        })?;
    // The stored size differs from the body when GCS decompresses a gzip-encoded object.
    let size = header("x-goog-stored-content-length")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(body_len as u64);
    let updated = headers
        .get(LAST_MODIFIED)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| DateTime::parse_from_rfc2822(value).ok())
        .map(|time| time.with_timezone(&Utc));
    Ok(ObjectMeta {
        name: name.to_string(),
        size,
        generation,
        updated,
    })
}

/// The message of a Google JSON error body (`{"error": {"message": …}}`), else the body itself
/// (shortened).
fn error_message(body: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|value| value.pointer("/error/message"))
        .and_then(|value| value.as_str());
    match message {
        Some(message) => message.to_string(),
        None => body.trim().chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn emulator_host_is_accepted_with_or_without_scheme() {
        assert_eq!(emulator_endpoint("127.0.0.1:4443"), "http://127.0.0.1:4443");
        assert_eq!(
            emulator_endpoint("http://127.0.0.1:4443/"),
            "http://127.0.0.1:4443"
        );
        assert_eq!(
            emulator_endpoint(" https://gcs.local "),
            "https://gcs.local"
        );
    }

    #[test]
    fn names_are_escaped_as_one_path_segment() {
        let escaped = utf8_percent_encode("a/b c$d%e?f#g~h", PATH_SEGMENT).to_string();
        assert_eq!(escaped, "a%2Fb%20c%24d%25e%3Ff%23g~h");
    }

    #[test]
    fn download_headers_give_the_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-goog-generation",
            HeaderValue::from_static("1795502777080823"),
        );
        headers.insert(
            "x-goog-stored-content-length",
            HeaderValue::from_static("42"),
        );
        headers.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Tue, 24 Nov 2026 06:46:17 GMT"),
        );
        let meta = meta_from_download_headers("d/t/_SUCCESS", &headers, 5).expect("valid headers");
        assert_eq!(meta.name, "d/t/_SUCCESS");
        assert_eq!(meta.generation, 1_795_502_777_080_823);
        assert_eq!(meta.size, 42);
        assert_eq!(
            meta.updated.map(|t| t.to_rfc3339()),
            Some("2026-11-24T06:46:17+00:00".to_string())
        );

        headers.remove("x-goog-stored-content-length");
        headers.remove(LAST_MODIFIED);
        let meta = meta_from_download_headers("x", &headers, 5).expect("valid headers");
        assert_eq!((meta.size, meta.updated), (5, None));
    }

    #[test]
    fn download_without_generation_is_a_permanent_failure() {
        let failure = meta_from_download_headers("x", &HeaderMap::new(), 0)
            .expect_err("no generation header");
        assert_eq!(failure.class, FailureClass::Permanent);
    }

    #[test]
    fn google_error_bodies_give_their_message() {
        let body = r#"{"error": {"code": 404, "message": "No such object: b/o", "errors": []}}"#;
        assert_eq!(error_message(body), "No such object: b/o");
        assert_eq!(error_message("  not found\n"), "not found");
        assert_eq!(error_message(&"x".repeat(1000)).len(), 300);
    }

    #[test]
    fn failures_become_store_errors_naming_the_object() {
        let error = store_error("b", "d/t/f.csv", Failure::from_status(503, "backendError"));
        assert_eq!(
            error,
            StoreError::Transient {
                bucket: "b".into(),
                name: "d/t/f.csv".into(),
                message: "HTTP 503: backendError".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "gs://b/d/t/f.csv: transient error: HTTP 503: backendError"
        );
        assert!(matches!(
            store_error("b", "n", Failure::from_status(404, "")),
            StoreError::NotFound { .. }
        ));
        assert!(matches!(
            store_error("b", "n", Failure::from_status(403, "forbidden")),
            StoreError::Other { .. }
        ));
    }

    #[test]
    fn a_config_without_credentials_is_an_error_not_a_panic() {
        let error = GcsStore::new(ClientConfig::default(), RetryPolicy::default())
            .expect_err("the default config has a placeholder token provider");
        assert!(matches!(error, GcsSetupError::NoCredentials));
    }

    #[test]
    fn stats_count_per_operation() {
        let counters = RequestCounters::default();
        counters.count(RequestKind::Put);
        counters.count(RequestKind::Put);
        counters.count(RequestKind::List);
        let stats = counters.snapshot();
        assert_eq!(
            (stats.put, stats.list, stats.read, stats.total()),
            (2, 1, 0, 3)
        );
    }
}
