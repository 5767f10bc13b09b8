//! [`GcsStore`]: the [`ObjectStore`] port over the GCS JSON API, on the shared client layer.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ingest_core::ports::{ListPage, ObjectMeta, ObjectStore, PutMode, StoreError};
use ingest_google::reqwest::header::{HeaderMap, HeaderValue, LAST_MODIFIED};
use ingest_google::reqwest::Method;
use ingest_google::{
    Call, ClientLayer, Credentials, Endpoint, Failure, FailureClass, GoogleClient, Refused,
    RetryPolicy, Service, SetupError,
};
use serde::Deserialize;

/// The environment variable that points the store at an emulator (`http://127.0.0.1:4443` or
/// `127.0.0.1:4443`), as Google's own client libraries read it.
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";

/// Custom metadata key holding a random id of the write that created a generation, set on
/// create-only and generation-matched writes. After an attempt that may have succeeded without
/// its response arriving (a timeout, a 5xx), a retry fails its precondition on the store's own
/// earlier write; reading this key back tells that case from a real conflict.
pub const WRITE_ID_METADATA_KEY: &str = "bq-ingest-write-id";

/// The request counters' operation names of this store.
pub mod operations {
    /// `objects.list`.
    pub const LIST: &str = "objects.list";
    /// `objects.get` with `alt=media` (a download).
    pub const READ: &str = "objects.get (media)";
    /// `objects.get` (metadata).
    pub const STAT: &str = "objects.get";
    /// `objects.insert` (multipart upload).
    pub const PUT: &str = "objects.insert";
    /// `objects.delete`.
    pub const DELETE: &str = "objects.delete";
    /// `objects.rewrite` (a copy on the server).
    pub const COPY: &str = "objects.rewrite";
}

/// Numbers of HTTP requests a [`GcsStore`] sent, per operation, retries included: a view of
/// the client layer's counters ([`GoogleClient::counters`]).
///
/// `stat` also counts the metadata GET that `put` makes in one rare case (see [`GcsStore`]).
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

/// [`ObjectStore`] over Google Cloud Storage's JSON API, or an emulator such as
/// fake-gcs-server.
///
/// HTTP requests per call (without retries):
/// - `list`: 1 (`objects.list`, one page, no delimiter, only the fields the port returns);
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
/// Retries are the client layer's ([`GoogleClient::send`]); what is left transient is
/// [`StoreError::Transient`]. A `delete` retried after an attempt that may have succeeded,
/// which then finds no object, reports success: the object is gone, possibly by the store's
/// own earlier attempt.
#[derive(Debug, Clone)]
pub struct GcsStore {
    client: GoogleClient,
}

impl GcsStore {
    /// A store configured from the environment ([`Endpoint::from_env`]): an emulator at
    /// `STORAGE_EMULATOR_HOST` without credentials; otherwise Google's endpoint (or
    /// `BQ_INGEST_STORAGE_ENDPOINT`) with Application Default Credentials. Default
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
    pub async fn from_env() -> Result<GcsStore, SetupError> {
        let layer = ClientLayer::new()?;
        GcsStore::from_layer(&layer, RetryPolicy::default()).await
    }

    /// A store on a shared client layer, its endpoint from the environment.
    pub async fn from_layer(
        layer: &ClientLayer,
        retry: RetryPolicy,
    ) -> Result<GcsStore, SetupError> {
        let client = layer
            .client(
                Service::Storage,
                Endpoint::from_env(Service::Storage),
                retry,
            )
            .await?;
        Ok(GcsStore::new(client))
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
    pub fn for_emulator(host: &str, retry: RetryPolicy) -> Result<GcsStore, SetupError> {
        let client = ClientLayer::new()?.client_with(
            Service::Storage,
            Endpoint::emulator(host).validated()?,
            Credentials::Anonymous,
            retry,
        );
        Ok(GcsStore::new(client))
    }

    /// A store over a client of the storage service.
    pub fn new(client: GoogleClient) -> GcsStore {
        GcsStore { client }
    }

    /// The JSON API endpoint, e.g. `https://storage.googleapis.com`.
    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        self.client.retry_policy()
    }

    /// The client.
    pub fn client(&self) -> &GoogleClient {
        &self.client
    }

    /// The numbers of HTTP requests sent so far (by every store on the same client layer).
    pub fn stats(&self) -> RequestStats {
        let counts = self.client.counters().snapshot().of_service("storage");
        RequestStats {
            list: counts.calls(operations::LIST),
            read: counts.calls(operations::READ),
            stat: counts.calls(operations::STAT),
            put: counts.calls(operations::PUT),
            delete: counts.calls(operations::DELETE),
        }
    }

    fn object_url(
        &self,
        bucket: &str,
        name: &str,
        query: &[(&str, &str)],
    ) -> ingest_google::reqwest::Url {
        self.client
            .url(&["storage", "v1", "b", bucket, "o", name], query)
    }

    /// The object's metadata (one `objects.get`, retried like every request).
    async fn object_resource(&self, bucket: &str, name: &str) -> Result<ObjectResource, Refused> {
        let url = self.object_url(bucket, name, &[("projection", "noAcl")]);
        let call = Call::new(operations::STAT, gs_uri(bucket, name), Method::GET, url);
        let answer = self.client.send(&call).await?;
        parse_answer(&answer.body)
    }

    /// Reads back the live object after a conditional write failed its precondition on a
    /// retry, and returns its metadata when it is the store's own earlier write `write_id`.
    async fn own_earlier_write(
        &self,
        bucket: &str,
        name: &str,
        write_id: &str,
    ) -> Option<ObjectMeta> {
        let object = self.object_resource(bucket, name).await.ok()?;
        let ours = object
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get(WRITE_ID_METADATA_KEY))
            .is_some_and(|id| id == write_id);
        ours.then(|| object.meta())
    }
}

/// The fields of a JSON API object resource the store reads (int64s are strings).
#[derive(Debug, Default, Deserialize)]
struct ObjectResource {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

impl ObjectResource {
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: self.name.clone(),
            size: self
                .size
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            generation: self
                .generation
                .as_deref()
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            updated: self
                .updated
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// `objects.list`'s answer.
#[derive(Debug, Default, Deserialize)]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
}

fn parse_answer<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| Refused {
        failure: Failure::permanent(format!(
            "unexpected answer ({e}): {}",
            ingest_google::body_snippet(body)
        )),
        earlier_maybe_applied: false,
    })
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
        // GCS rejects 0; a page of at least one object is the closest.
        let max = max_results.map(|n| n.max(1).to_string());
        let mut query = vec![
            ("projection", "noAcl"),
            (
                "fields",
                "items(name,size,generation,updated),nextPageToken",
            ),
        ];
        if !prefix.is_empty() {
            query.push(("prefix", prefix));
        }
        if let Some(token) = page_token {
            query.push(("pageToken", token));
        }
        if let Some(max) = &max {
            query.push(("maxResults", max));
        }
        let url = self
            .client
            .url(&["storage", "v1", "b", bucket, "o"], &query);
        let call = Call::new(operations::LIST, gs_uri(bucket, prefix), Method::GET, url);
        let list: ObjectList = match self.client.send(&call).await {
            Ok(answer) => parse_answer(&answer.body),
            Err(refused) => Err(refused),
        }
        .map_err(|refused| store_error(bucket, prefix, refused.failure))?;
        Ok(ListPage {
            objects: list.items.iter().map(ObjectResource::meta).collect(),
            next_page_token: list.next_page_token.filter(|token| !token.is_empty()),
        })
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        let url = self.object_url(bucket, name, &[("alt", "media")]);
        let call = Call::new(operations::READ, gs_uri(bucket, name), Method::GET, url);
        let answer = self
            .client
            .send(&call)
            .await
            .map_err(|refused| store_error(bucket, name, refused.failure))?;
        let meta = meta_from_download_headers(name, &answer.headers, answer.body.len())
            .map_err(|failure| store_error(bucket, name, failure))?;
        Ok((meta, answer.body.to_vec()))
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        match self.object_resource(bucket, name).await {
            Ok(object) => Ok(object.meta()),
            Err(refused) => Err(store_error(bucket, name, refused.failure)),
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
        let write_id = if_generation_match.map(|_| format!("{:032x}", rand::random::<u128>()));
        let call = self.upload_call(
            bucket,
            name,
            content,
            if_generation_match,
            write_id.as_deref(),
        );
        let refused = match self.client.send(&call).await {
            Ok(answer) => {
                return parse_answer::<ObjectResource>(&answer.body)
                    .map(|object| object.meta())
                    .map_err(|refused| store_error(bucket, name, refused.failure))
            }
            Err(refused) => refused,
        };
        if refused.failure.class != FailureClass::Conflict {
            return Err(store_error(bucket, name, refused.failure));
        }
        if let (true, Some(write_id)) = (refused.earlier_maybe_applied, &write_id) {
            if let Some(meta) = self.own_earlier_write(bucket, name, write_id).await {
                tracing::info!(
                    object = %gs_uri(bucket, name), generation = meta.generation,
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
                message: refused.failure.message,
            },
        })
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        if_generation: Option<i64>,
    ) -> Result<(), StoreError> {
        let generation = if_generation.map(|g| g.to_string());
        let query: Vec<(&str, &str)> = generation
            .as_deref()
            .map(|g| vec![("ifGenerationMatch", g)])
            .unwrap_or_default();
        let url = self.object_url(bucket, name, &query);
        let uri = gs_uri(bucket, name);
        let call = Call::new(operations::DELETE, uri.clone(), Method::DELETE, url);
        match self.client.send(&call).await {
            Ok(_) => Ok(()),
            Err(refused)
                if refused.failure.class == FailureClass::NotFound
                    && refused.earlier_maybe_applied =>
            {
                tracing::info!(object = %uri, "GCS delete: gone after an attempt whose response was lost");
                Ok(())
            }
            Err(refused)
                if refused.failure.class == FailureClass::Conflict && if_generation.is_some() =>
            {
                Err(StoreError::PreconditionFailed {
                    bucket: bucket.to_string(),
                    name: name.to_string(),
                })
            }
            Err(refused) => Err(store_error(bucket, name, refused.failure)),
        }
    }

    /// `objects.rewrite` with `ifSourceGenerationMatch` and `ifGenerationMatch=0`, repeated
    /// with its `rewriteToken` until `done` (large objects take several calls). A 412 is told
    /// apart by one `objects.get` of the destination: there, `AlreadyExists` (also when an
    /// attempt whose answer was lost made the copy: the caller compares it); else the source's
    /// generation is not live.
    async fn copy(
        &self,
        bucket: &str,
        name: &str,
        generation: i64,
        to_bucket: &str,
        to_name: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let source_generation = generation.to_string();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("ifSourceGenerationMatch", source_generation.as_str()),
                ("ifGenerationMatch", "0"),
                ("projection", "noAcl"),
            ];
            if let Some(t) = &token {
                query.push(("rewriteToken", t));
            }
            let url = self.client.url(
                &[
                    "storage",
                    "v1",
                    "b",
                    bucket,
                    "o",
                    name,
                    "rewriteTo",
                    "b",
                    to_bucket,
                    "o",
                    to_name,
                ],
                &query,
            );
            let call = Call::new(operations::COPY, gs_uri(bucket, name), Method::POST, url)
                .json(&serde_json::json!({}));
            let refused = match self.client.send(&call).await {
                Ok(answer) => {
                    let rewrite: RewriteAnswer = parse_answer(&answer.body)
                        .map_err(|refused| store_error(bucket, name, refused.failure))?;
                    match (rewrite.done, rewrite.resource, rewrite.rewrite_token) {
                        (true, Some(resource), _) => return Ok(resource.meta()),
                        (false, _, Some(next)) => {
                            token = Some(next);
                            continue;
                        }
                        _ => {
                            return Err(StoreError::Other {
                                bucket: bucket.to_string(),
                                name: name.to_string(),
                                message: "objects.rewrite answered neither done nor a token".into(),
                            })
                        }
                    }
                }
                Err(refused) => refused,
            };
            if refused.failure.class != FailureClass::Conflict {
                return Err(store_error(bucket, name, refused.failure));
            }
            return Err(self.copy_conflict(bucket, name, to_bucket, to_name).await);
        }
    }
}

impl GcsStore {
    /// What a 412 of `objects.rewrite` means (see [`ObjectStore::copy`]): the destination
    /// exists, or else the source's generation is not live.
    async fn copy_conflict(
        &self,
        bucket: &str,
        name: &str,
        to_bucket: &str,
        to_name: &str,
    ) -> StoreError {
        match self.object_resource(to_bucket, to_name).await {
            Ok(_) => StoreError::AlreadyExists {
                bucket: to_bucket.to_string(),
                name: to_name.to_string(),
            },
            Err(refused) if refused.failure.class == FailureClass::NotFound => {
                StoreError::PreconditionFailed {
                    bucket: bucket.to_string(),
                    name: name.to_string(),
                }
            }
            Err(refused) => store_error(to_bucket, to_name, refused.failure),
        }
    }
}

/// `objects.rewrite`'s answer.
#[derive(Debug, Default, Deserialize)]
struct RewriteAnswer {
    #[serde(default)]
    done: bool,
    #[serde(rename = "rewriteToken", default)]
    rewrite_token: Option<String>,
    #[serde(default)]
    resource: Option<ObjectResource>,
}

/// The boundary of the multipart upload body: cannot occur in the JSON part, and is checked
/// against the content.
const BOUNDARY_PREFIX: &str = "bq-ingest-boundary-";

impl GcsStore {
    /// The multipart upload (`uploadType=multipart`): the metadata part (name, and the write id
    /// of a conditional write) and the content.
    fn upload_call(
        &self,
        bucket: &str,
        name: &str,
        content: Vec<u8>,
        if_generation_match: Option<i64>,
        write_id: Option<&str>,
    ) -> Call {
        let generation = if_generation_match.map(|g| g.to_string());
        let mut query = vec![("uploadType", "multipart"), ("projection", "noAcl")];
        if let Some(g) = &generation {
            query.push(("ifGenerationMatch", g));
        }
        let url = self
            .client
            .url(&["upload", "storage", "v1", "b", bucket, "o"], &query);
        let mut metadata = serde_json::json!({ "name": name });
        if let Some(id) = write_id {
            metadata["metadata"] = serde_json::json!({ WRITE_ID_METADATA_KEY: id });
        }
        let boundary = boundary_for(&content);
        let mut body = Vec::with_capacity(content.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type =
            HeaderValue::from_str(&format!("multipart/related; boundary={boundary}"))
                .unwrap_or_else(|_| HeaderValue::from_static("multipart/related"));
        Call::new(operations::PUT, gs_uri(bucket, name), Method::POST, url)
            .body(content_type, Bytes::from(body))
    }
}

/// A boundary that does not occur in `content`.
fn boundary_for(content: &[u8]) -> String {
    loop {
        let boundary = format!("{BOUNDARY_PREFIX}{:016x}", rand::random::<u64>());
        let needle = boundary.as_bytes();
        if !content.windows(needle.len()).any(|w| w == needle) {
            return boundary;
        }
    }
}

/// `gs://bucket/name`, for logs.
fn gs_uri(bucket: &str, name: &str) -> String {
    format!("gs://{bucket}/{name}")
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

/// The metadata of a downloaded object, from the response headers of the media download.
fn meta_from_download_headers(
    name: &str,
    headers: &HeaderMap,
    body_len: usize,
) -> Result<ObjectMeta, Failure> {
    let header = |key: &str| headers.get(key).and_then(|value| value.to_str().ok());
    let generation = header("x-goog-generation")
        .and_then(|value| value.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            Failure::permanent(
                "the download response has no valid x-goog-generation header".to_string(),
            )
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

#[cfg(test)]
mod tests;
