//! One isolated test: its dataset, subscription, uploads, tables, queries and services.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use ingest_core::event::ObjectEvent;
use ingest_core::ports::{ObjectMeta, ObjectStore, PutMode, TableRef};
use serde_json::{json, Value};

use crate::service::{binary, target_dir, workspace_root, Mode, Service};
use crate::stack::Stack;

/// How often the `wait_for_*` helpers poll.
const POLL: Duration = Duration::from_millis(250);

/// A path under the project's test data (`<repo>/testdata`, or `BQ_INGEST_TESTDATA`).
/// Panics when the file does not exist.
///
/// ```no_run
/// let schema = bq_ingest_e2e::testdata("nation_schema.json");
/// assert!(schema.is_file());
/// ```
pub fn testdata(path: impl AsRef<Path>) -> PathBuf {
    let root = std::env::var_os("BQ_INGEST_TESTDATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("testdata"));
    let full = root.join(path.as_ref());
    assert!(
        full.exists(),
        "test data {} not found (it is part of the repository: testdata/; BQ_INGEST_TESTDATA overrides the folder)",
        full.display()
    );
    full
}

/// A random lowercase hex string of `n` characters (n ≤ 16).
fn random_hex(n: usize) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    let hex = format!("{:016x}", hasher.finish());
    hex[..n.min(16)].to_string()
}

/// `name` reduced to `[a-z0-9_]`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// A BigQuery job of this test, from the emulator's `jobs.list` (`projection=full`).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `jobReference.jobId`.
    pub id: String,
    /// `load`, `query`, `copy`, `extract` or `unknown`.
    pub kind: String,
    /// `status.state`: `DONE`, `RUNNING`, `PENDING`.
    pub state: String,
    /// `status.errorResult.message`, when the job failed.
    pub error: Option<String>,
    /// The destination as `dataset.table` (load jobs, and query jobs with one).
    pub destination: Option<String>,
    /// `configuration.load.sourceUris` (empty for other kinds).
    pub source_uris: Vec<String>,
    /// `configuration.<kind>.writeDisposition`, when set.
    pub write_disposition: Option<String>,
    /// `statistics.load.outputRows`, when reported.
    pub output_rows: Option<u64>,
    /// `configuration.labels`.
    pub labels: BTreeMap<String, String>,
    /// The whole job resource.
    pub raw: Value,
}

impl Job {
    fn from_resource(raw: Value) -> Job {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let config = &raw["configuration"];
        let kind = ["load", "query", "copy", "extract"]
            .into_iter()
            .find(|k| config.get(*k).is_some())
            .unwrap_or("unknown")
            .to_string();
        let kind_config = &config[kind.as_str()];
        let destination = kind_config.get("destinationTable").and_then(|t| {
            Some(format!(
                "{}.{}",
                t.get("datasetId")?.as_str()?,
                t.get("tableId")?.as_str()?
            ))
        });
        let source_uris = kind_config["sourceUris"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let output_rows = match &raw["statistics"]["load"]["outputRows"] {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let labels = config["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Job {
            id: text(&raw["jobReference"]["jobId"]).unwrap_or_default(),
            kind,
            state: text(&raw["status"]["state"]).unwrap_or_default(),
            error: text(&raw["status"]["errorResult"]["message"]),
            destination,
            source_uris,
            write_disposition: text(&kind_config["writeDisposition"]),
            output_rows,
            labels,
            raw,
        }
    }
}

/// One isolated end-to-end test: a unique dataset `e2e_<name>_<random>` (also the first path
/// segment of every object it uploads), its own subscription on `INGEST_TOPIC`, the services
/// it spawned, and helpers over the emulators.
///
/// Object names given to the helpers are relative to the dataset: `upload("nation/_SUCCESS",
/// …)` writes `gs://<bucket>/<dataset>/nation/_SUCCESS`. Table names are tables of the
/// dataset. The subscription is deleted when the case is dropped.
#[derive(Debug)]
pub struct TestCase {
    /// The emulator stack and its clients.
    pub stack: Stack,
    /// The test's name (as given, sanitized), used for the log folder.
    pub name: String,
    /// The test's dataset, also the first segment of its object names.
    pub dataset: String,
    subscription: String,
    push_port: Option<u16>,
    log_dir: PathBuf,
    services_started: Mutex<usize>,
}

impl TestCase {
    /// Creates the test's dataset and a pull subscription on `INGEST_TOPIC`. Returns `None`
    /// when the end-to-end tests are skipped (see [`Stack::from_env`]).
    ///
    /// ```no_run
    /// # async fn example() {
    /// let Some(t) = bq_ingest_e2e::TestCase::new("my_test").await else { return };
    /// assert!(t.dataset.starts_with("e2e_my_test_"));
    /// # }
    /// ```
    pub async fn new(name: &str) -> Option<TestCase> {
        let stack = Stack::from_env()?;
        let name = sanitize(name);
        let random = random_hex(8);
        let dataset = format!("e2e_{name}_{random}");
        let subscription = format!("e2e-{}-{random}", name.replace('_', "-"));
        let log_dir = target_dir().join("e2e-logs").join(&name);
        let case = TestCase {
            stack,
            name,
            dataset,
            subscription,
            push_port: None,
            log_dir,
            services_started: Mutex::new(0),
        };
        case.stack
            .warehouse
            .create_dataset_if_missing(&case.stack.project, &case.dataset)
            .await
            .unwrap_or_else(|e| panic!("creating dataset {}: {e}", case.dataset));
        case.create_subscription(None).await;
        Some(case)
    }

    /// Replaces the pull subscription with a push subscription whose endpoint is
    /// `http://127.0.0.1:PORT/`, the port [`spawn_service`](TestCase::spawn_service) gives
    /// `serve`. Spawn the service before uploading: the emulator retries a push that found
    /// nobody listening only after a backoff.
    pub async fn with_push(mut self) -> TestCase {
        self.delete_subscription_blocking();
        let port = free_port();
        self.push_port = Some(port);
        self.subscription = format!("{}-push", self.subscription);
        self.create_subscription(Some(&format!("http://127.0.0.1:{port}/")))
            .await;
        self
    }

    async fn create_subscription(&self, push_endpoint: Option<&str>) {
        let mut body = json!({
            "topic": format!("projects/{}/topics/{}", self.stack.project, self.stack.topic),
            "ackDeadlineSeconds": 60,
        });
        if let Some(endpoint) = push_endpoint {
            body["pushConfig"] = json!({ "pushEndpoint": endpoint });
        }
        let url = format!(
            "{}/subscriptions/{}",
            self.stack.pubsub_url(),
            self.subscription
        );
        let response = self
            .stack
            .http
            .put(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating subscription {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "creating subscription {url}: {status} {text}"
        );
    }

    /// Deletes the subscription with a blocking HTTP/1.1 request (usable from `Drop`).
    fn delete_subscription_blocking(&self) {
        let path = format!(
            "/v1/projects/{}/subscriptions/{}",
            self.stack.project, self.subscription
        );
        let Ok(mut stream) = std::net::TcpStream::connect(&self.stack.pubsub_host) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.stack.pubsub_host
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
        }
    }

    /// The test's subscription id (short form).
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// `projects/PROJECT/subscriptions/ID`.
    pub fn subscription_path(&self) -> String {
        format!(
            "projects/{}/subscriptions/{}",
            self.stack.project, self.subscription
        )
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.stack.bucket
    }

    /// How many objects are under `relative` (one listing page, so at most 1,000); 0 when the
    /// listing fails.
    pub async fn count_objects(&self, relative: &str) -> usize {
        self.stack
            .store
            .list(self.bucket(), &self.object(relative), None, None)
            .await
            .map(|p| p.objects.len())
            .unwrap_or(0)
    }

    /// The full object name of `relative`: `<dataset>/<relative>`.
    pub fn object(&self, relative: &str) -> String {
        format!("{}/{}", self.dataset, relative.trim_start_matches('/'))
    }

    /// `gs://<bucket>/<dataset>/<relative>`.
    pub fn uri(&self, relative: &str) -> String {
        format!("gs://{}/{}", self.stack.bucket, self.object(relative))
    }

    /// The table as a quoted SQL name: `` `project.dataset.table` ``.
    pub fn table_sql(&self, table: &str) -> String {
        format!("`{}.{}.{}`", self.stack.project, self.dataset, table)
    }

    /// The table as a [`TableRef`].
    pub fn table_ref(&self, table: &str) -> TableRef {
        TableRef {
            project: self.stack.project.clone(),
            dataset: self.dataset.clone(),
            table: table.to_string(),
            partition: None,
        }
    }

    /// Uploads `bytes` as `<dataset>/<relative>` (multipart upload, overwriting; fake-gcs-server
    /// then publishes OBJECT_FINALIZE to `INGEST_TOPIC`). Returns its metadata (generation).
    pub async fn upload(&self, relative: &str, bytes: impl Into<Vec<u8>>) -> ObjectMeta {
        let name = self.object(relative);
        self.stack
            .store
            .put(&self.stack.bucket, &name, bytes.into(), PutMode::Overwrite)
            .await
            .unwrap_or_else(|e| panic!("uploading gs://{}/{name}: {e}", self.stack.bucket))
    }

    /// Uploads the local file `path` as `<dataset>/<relative>`.
    pub async fn upload_file(&self, relative: &str, path: impl AsRef<Path>) -> ObjectMeta {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        self.upload(relative, bytes).await
    }

    /// Uploads every regular file of `local_dir` (not recursive) under `<dataset>/<prefix>/`:
    /// the data files first in name order, the `_SUCCESS` marker last. Returns the marker's
    /// metadata, when the folder has one.
    pub async fn upload_dir(
        &self,
        prefix: &str,
        local_dir: impl AsRef<Path>,
    ) -> Option<ObjectMeta> {
        self.upload_dir_only(prefix, local_dir, |_| true).await
    }

    /// [`upload_dir`](TestCase::upload_dir) restricted to the files whose name `keep` accepts
    /// (the marker too must be accepted to be uploaded).
    pub async fn upload_dir_only(
        &self,
        prefix: &str,
        local_dir: impl AsRef<Path>,
        keep: impl Fn(&str) -> bool,
    ) -> Option<ObjectMeta> {
        let dir = local_dir.as_ref();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| keep(n))
            .collect();
        names.sort();
        let prefix = prefix.trim_end_matches('/');
        let mut marker = None;
        for name in names.iter().filter(|n| n.as_str() != "_SUCCESS") {
            self.upload_file(&format!("{prefix}/{name}"), dir.join(name))
                .await;
        }
        if names.iter().any(|n| n == "_SUCCESS") {
            marker = Some(
                self.upload_file(&format!("{prefix}/_SUCCESS"), dir.join("_SUCCESS"))
                    .await,
            );
        }
        marker
    }

    /// Creates `table` in the test's dataset with the schema in the JSON file `schema_path`
    /// (an array of fields, as `bq mk --schema` takes).
    pub async fn create_table(&self, table: &str, schema_path: impl AsRef<Path>) {
        let path = schema_path.as_ref();
        let schema = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        self.create_table_json(table, &schema).await;
    }

    /// `CREATE TABLE` of `table` with NYC 311's schema (testdata), partitioned by the hour of
    /// `created_date`: run it with [`TestCase::rows`].
    pub fn hourly_nyc_311_ddl(&self, table: &str) -> String {
        let schema: Vec<Value> = serde_json::from_slice(
            &std::fs::read(testdata("nyc_311_schema.json")).expect("reading the schema"),
        )
        .expect("a JSON schema");
        let columns: Vec<String> = schema
            .iter()
            .map(|f| {
                let text = |v: &Value| v.as_str().unwrap_or("").to_string();
                format!("`{}` {}", text(&f["name"]), text(&f["type"]))
            })
            .collect();
        format!(
            "CREATE TABLE {} ({}) PARTITION BY TIMESTAMP_TRUNC(created_date, HOUR)",
            self.table_sql(table),
            columns.join(", ")
        )
    }

    /// Creates `table` in the test's dataset with the schema given as JSON text (an array of
    /// fields, or `{"fields": [...]}`).
    pub async fn create_table_json(&self, table: &str, schema_json: &str) {
        self.stack
            .warehouse
            .create_table(&self.stack.project, &self.dataset, table, schema_json)
            .await
            .unwrap_or_else(|e| panic!("creating table {}.{table}: {e}", self.dataset));
    }

    /// Runs a Standard SQL query and returns its rows as JSON objects keyed by column (values
    /// as BigQuery's REST API gives them: INT64 as strings, …). Panics on error.
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        self.stack
            .warehouse
            .query_rows(sql)
            .await
            .unwrap_or_else(|e| panic!("query {sql}: {e}"))
    }

    /// `SELECT COUNT(*)` of a table of the test's dataset.
    pub async fn count(&self, table: &str) -> u64 {
        self.stack
            .warehouse
            .table_row_count(&self.table_ref(table))
            .await
            .unwrap_or_else(|e| panic!("counting {}.{table}: {e}", self.dataset))
    }

    /// Polls `table` until it has exactly `n` rows and returns `n`; panics after `timeout`, or
    /// at once if it has more than `n`. A failing query (table not there yet) counts as "not
    /// yet".
    pub async fn wait_for_count(&self, table: &str, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self
                .stack
                .warehouse
                .table_row_count(&self.table_ref(table))
                .await
            {
                Ok(count) if count == n => return count,
                Ok(count) if count > n => panic!(
                    "{}.{table} has {count} rows, more than the {n} expected; {}",
                    self.dataset,
                    self.logs_hint()
                ),
                Ok(count) => last = format!("{count} rows"),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                panic!(
                    "{}.{table} did not reach {n} rows within {timeout:?} (last: {last}); {}",
                    self.dataset,
                    self.logs_hint()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The BigQuery jobs of this test (their id or destination names the test's dataset), from
    /// the emulator's `jobs.list` with `projection=full`, oldest first. The test's own queries
    /// are not among them.
    pub async fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![
                ("allUsers", "true".to_string()),
                ("projection", "full".to_string()),
                ("maxResults", "1000".to_string()),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let url = format!("{}/jobs", self.stack.bigquery_url());
            let response: Value = self
                .stack
                .http
                .get(&url)
                .query(&query)
                .send()
                .await
                .unwrap_or_else(|e| panic!("jobs.list {url}: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("jobs.list {url}: not JSON: {e}"));
            for raw in response["jobs"].as_array().cloned().unwrap_or_default() {
                let job = Job::from_resource(raw);
                let ours = job.id.contains(&self.dataset)
                    || job
                        .destination
                        .as_deref()
                        .is_some_and(|d| d.split('.').next() == Some(self.dataset.as_str()));
                if ours {
                    jobs.push(job);
                }
            }
            match response["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(token) if page_token.as_deref() != Some(token) => {
                    page_token = Some(token.to_string())
                }
                _ => break,
            }
        }
        jobs.sort_by_key(|j| {
            j.raw["statistics"]["creationTime"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .map(|ms| ms as i64)
                .or_else(|| j.raw["statistics"]["creationTime"].as_i64())
                .unwrap_or(0)
        });
        jobs
    }

    /// The name of the load-state table the spawned services write to:
    /// `<dataset>.load_state`.
    pub fn state_table(&self) -> String {
        format!("{}.load_state", self.dataset)
    }

    /// The rows of the test's load-state table (`<dataset>.load_state`), ordered by
    /// `ended_at`; empty while the table does not exist.
    pub async fn state_rows(&self) -> Vec<Value> {
        let sql = format!(
            "SELECT * FROM {} ORDER BY ended_at",
            self.table_sql("load_state")
        );
        self.stack
            .warehouse
            .query_rows(&sql)
            .await
            .unwrap_or_default()
    }

    /// Polls the load-state table until a row matches `predicate` and returns that row;
    /// panics after `timeout`.
    pub async fn wait_for_state_row(
        &self,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.state_rows().await;
            if let Some(row) = rows.iter().find(|r| predicate(r)) {
                return row.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching row in {} within {timeout:?}; rows: {rows:#?}; {}",
                    self.state_table(),
                    self.logs_hint()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The finalize event GCS announces for an uploaded object (bucket, name, generation,
    /// size).
    pub fn finalize_event(&self, object: &ObjectMeta) -> ObjectEvent {
        let mut event = ObjectEvent::finalized(&self.stack.bucket, &object.name, object.generation);
        event.size = Some(object.size);
        event
    }

    /// Publishes the notification GCS would publish for `object` to `INGEST_TOPIC`
    /// (`ingest_pubsub::object_event_message`, over the emulator's REST API). Returns the
    /// message id. Every subscription on the topic gets it, like a real redelivery.
    pub async fn publish_object_event(&self, object: &ObjectMeta) -> String {
        let mut event = self.finalize_event(object);
        event.event_time = Some(chrono_now());
        let (attributes, data) = ingest_pubsub::object_event_message(&event);
        let body = json!({"messages": [{
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": attributes,
        }]});
        let url = format!(
            "{}/topics/{}:publish",
            self.stack.pubsub_url(),
            self.stack.topic
        );
        let response: Value = self
            .stack
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("publish {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("publish {url}: not JSON: {e}"));
        response["messageIds"][0]
            .as_str()
            .unwrap_or_else(|| panic!("publish {url}: no message id in {response}"))
            .to_string()
    }

    /// The body Pub/Sub push POSTs for `object`'s notification on the test's subscription:
    /// `{"message": {"data", "attributes", "messageId", "publishTime"}, "subscription"}`.
    pub fn push_envelope(&self, object: &ObjectMeta, message_id: &str) -> Value {
        let mut event = self.finalize_event(object);
        let now = chrono_now();
        event.event_time = Some(now);
        let (attributes, data) = ingest_pubsub::object_event_message(&event);
        json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "attributes": attributes,
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            "subscription": self.subscription_path(),
        })
    }

    /// POSTs `body` as JSON to `url`; returns the status and the response body.
    pub async fn post_json(&self, url: &str, body: &Value) -> (u16, String) {
        let response = self
            .stack
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// The environment every service of this test gets (before `extra_env`): the stack's
    /// hosts and project, `INCLUDE_PREFIXES=<dataset>/`,
    /// `BQ_LOAD_STATE_TABLE=<dataset>.load_state`, `LOG_FORMAT=json`.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let mut env = self.stack.service_env();
        env.push(("INCLUDE_PREFIXES".into(), format!("{}/", self.dataset)));
        env.push(("BQ_LOAD_STATE_TABLE".into(), self.state_table()));
        env.push(("LOG_FORMAT".into(), "json".into()));
        env
    }

    fn merged_env(&self, extra_env: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.service_env();
        for (key, value) in extra_env {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value.to_string()));
        }
        env
    }

    fn next_log_path(&self, what: &str) -> PathBuf {
        let n = {
            let mut started = self
                .services_started
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *started += 1;
            *started
        };
        self.log_dir
            .join(format!("{}-{what}-{n}.log", self.dataset))
    }

    /// Starts `bq-ingest pull --subscription <the test's subscription>` or `bq-ingest serve`
    /// (on the push endpoint's port, else a free one) with [`service_env`](TestCase::service_env)
    /// plus `extra_env` (which overrides), and waits until it is ready.
    ///
    /// ```no_run
    /// # async fn example(t: &bq_ingest_e2e::TestCase) {
    /// use bq_ingest_e2e::Mode;
    /// let service = t.spawn_service(Mode::Pull, &[("WAIT_FOR_JOB_SECONDS", "30")]).await;
    /// println!("log: {}", service.log_path().display());
    /// # }
    /// ```
    pub async fn spawn_service(&self, mode: Mode, extra_env: &[(&str, &str)]) -> Service {
        let env = self.merged_env(extra_env);
        let (args, port, what) = match mode {
            Mode::Pull => (
                vec![
                    "pull".to_string(),
                    "--subscription".to_string(),
                    self.subscription.clone(),
                ],
                None,
                "pull",
            ),
            Mode::Serve => {
                let port = self.push_port.unwrap_or_else(free_port);
                (
                    vec![
                        "serve".to_string(),
                        "--host".to_string(),
                        "127.0.0.1".to_string(),
                        "--port".to_string(),
                        port.to_string(),
                    ],
                    Some(port),
                    "serve",
                )
            }
        };
        Service::start(mode, args, env, self.next_log_path(what), port).await
    }

    /// Starts `bq-ingest serve` on `127.0.0.1:<port>` with the test's environment plus
    /// `extra_env`: one of several instances behind a [`crate::Balancer`] on the push port.
    pub async fn spawn_serve_on(&self, port: u16, extra_env: &[(&str, &str)]) -> Service {
        let env = self.merged_env(extra_env);
        let args = ["serve", "--host", "127.0.0.1", "--port", &port.to_string()]
            .map(str::to_string)
            .to_vec();
        Service::start(
            Mode::Serve,
            args,
            env,
            self.next_log_path("serve"),
            Some(port),
        )
        .await
    }

    /// The port of the push subscription's endpoint ([`TestCase::with_push`]).
    pub fn push_port(&self) -> Option<u16> {
        self.push_port
    }

    /// Starts `bq-ingest pull --subscription <subscription>` (another subscription than the
    /// test's own, e.g. on a topic the test publishes to by hand) with the test's environment
    /// plus `extra_env`.
    pub async fn spawn_pull_on(&self, subscription: &str, extra_env: &[(&str, &str)]) -> Service {
        let env = self.merged_env(extra_env);
        let args = vec![
            "pull".to_string(),
            "--subscription".to_string(),
            subscription.to_string(),
        ];
        Service::start(Mode::Pull, args, env, self.next_log_path("pull"), None).await
    }

    /// Creates a topic and a pull subscription on it (ids unique to the test), for messages
    /// the test publishes by hand; returns (topic, subscription). Both are left to the
    /// emulator's reset.
    pub async fn create_side_topic(&self, name: &str) -> (String, String) {
        let topic = format!("{name}-{}", self.dataset);
        let subscription = format!("{name}-sub-{}", self.dataset);
        let root = self.stack.pubsub_url();
        for (url, body) in [
            (format!("{root}/topics/{topic}"), json!({})),
            (
                format!("{root}/subscriptions/{subscription}"),
                json!({"topic": format!("projects/{}/topics/{topic}", self.stack.project),
                       "ackDeadlineSeconds": 60}),
            ),
        ] {
            let response = self
                .stack
                .http
                .put(&url)
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
            assert!(
                response.status().is_success(),
                "PUT {url}: {}",
                response.status()
            );
        }
        (topic, subscription)
    }

    /// Publishes a message with `attributes` and `data` (raw bytes) to `topic`; returns its id.
    pub async fn publish_raw(&self, topic: &str, attributes: &Value, data: &[u8]) -> String {
        let body = json!({"messages": [{
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": attributes,
        }]});
        let url = format!("{}/topics/{topic}:publish", self.stack.pubsub_url());
        let response: Value = self
            .stack
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("publish {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("publish {url}: not JSON: {e}"));
        response["messageIds"][0]
            .as_str()
            .unwrap_or_else(|| panic!("publish {url}: no message id in {response}"))
            .to_string()
    }

    /// Runs a one-shot `bq-ingest` command (`backfill`, `explain`, …) with the test's service
    /// environment plus `extra_env`, and returns its output (not checked).
    pub async fn run_command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        self.run_command_via(None, args, extra_env).await
    }

    /// [`TestCase::run_command`] through GNU `time`, with what the command used (`None` when
    /// `/usr/bin/time` is not installed). `time`'s line is taken off the end of stderr.
    pub async fn run_command_with_usage(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> (Output, Option<Usage>) {
        const TIME: &str = "/usr/bin/time";
        if !Path::new(TIME).exists() {
            return (self.run_command(args, extra_env).await, None);
        }
        let mut out = self.run_command_via(Some(TIME), args, extra_env).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let Some((rest, line)) = stderr.rsplit_once(USAGE_MARK) else {
            return (out, None);
        };
        let fields: Vec<f64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let usage = match fields[..] {
            [kib, user, system] => Some(Usage {
                peak_rss_kib: kib as u64,
                cpu_seconds: user + system,
            }),
            _ => None,
        };
        out.stderr = rest.as_bytes().to_vec();
        (out, usage)
    }

    async fn run_command_via(
        &self,
        time: Option<&'static str>,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Output {
        let env = self.merged_env(extra_env);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let bin = binary().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut command = match time {
                Some(time) => {
                    let mut command = Command::new(time);
                    command
                        .arg("-f")
                        .arg(format!("{USAGE_MARK}%M %U %S"))
                        .arg(&bin);
                    command
                }
                None => Command::new(&bin),
            };
            command.args(&args).env_clear().stdin(Stdio::null());
            for key in ["PATH", "HOME", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE"] {
                if let Some(value) = std::env::var_os(key) {
                    command.env(key, value);
                }
            }
            command.env("NO_PROXY", "127.0.0.1,localhost");
            for (key, value) in &env {
                command.env(key, value);
            }
            command
                .output()
                .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
        })
        .await
        .unwrap_or_else(|e| panic!("bq-ingest command task: {e}"))
    }

    /// Where this test's service logs are.
    fn logs_hint(&self) -> String {
        format!("service logs in {}", self.log_dir.display())
    }
}

/// What a command used, as GNU `time` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Peak resident set size, KiB.
    pub peak_rss_kib: u64,
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
}

/// What starts GNU `time`'s line on stderr.
const USAGE_MARK: &str = "bq-ingest-usage=";

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl Drop for TestCase {
    fn drop(&mut self) {
        self.delete_subscription_blocking();
    }
}
