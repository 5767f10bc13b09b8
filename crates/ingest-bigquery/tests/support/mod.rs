//! A tiny HTTP/1.1 server for tests: records every request and answers with a scripted reply.
#![allow(dead_code)]

use ingest_google::reqwest;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, percent-decoded segments kept encoded (e.g. `/bigquery/v2/projects/p/jobs`).
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers with lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Self {
        Reply {
            status,
            content_type: "application/json; charset=UTF-8",
            body: body.to_string(),
            delay: None,
        }
    }
    pub fn text(status: u16, content_type: &'static str, body: &str) -> Self {
        Reply {
            status,
            content_type,
            body: body.to_string(),
            delay: None,
        }
    }
}

/// Decides the reply to the `n`-th request (0-based).
pub type Responder = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

/// The running server; stops when dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn serve(
    mut stream: TcpStream,
    requests: Arc<Mutex<Vec<Recorded>>>,
    responder: Responder,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[header_end..(header_end + length).min(buf.len())].to_vec();
    let url = reqwest::Url::parse(&format!("http://recorder{target}"))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let recorded = Recorded {
        method,
        path: url.path().to_string(),
        query: url.query_pairs().into_owned().collect(),
        headers,
        body,
    };
    let index = {
        let mut all = requests.lock().expect("requests lock");
        all.push(recorded.clone());
        all.len() - 1
    };
    let reply = responder(&recorded, index);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let response = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.body
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

impl Recorder {
    /// Starts a server on 127.0.0.1 (a free port) answering with `responder`.
    pub async fn start(responder: Responder) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let requests = shared.clone();
                let responder = responder.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, requests, responder).await;
                });
            }
        });
        Recorder {
            addr,
            requests,
            task,
        }
    }

    /// The REST v2 root of this server, as a `BigQueryWarehouse` base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/bigquery/v2", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests lock").clone()
    }
}

/// A realistic `jobs.insert` response to `request` (a Job resource): BigQuery echoes the
/// configuration and jobReference and adds id, selfLink, status and statistics.
pub fn inserted_job(request: &Value, state: &str) -> Value {
    let reference = &request["jobReference"];
    let project = reference["projectId"].as_str().unwrap_or_default();
    let job_id = reference["jobId"].as_str().unwrap_or_default();
    let location = reference["location"].as_str().unwrap_or("US");
    let mut configuration = request["configuration"].clone();
    let job_type = if configuration.get("load").is_some() {
        "LOAD"
    } else {
        "QUERY"
    };
    configuration["jobType"] = Value::from(job_type);
    serde_json::json!({
        "kind": "bigquery#job",
        "etag": "pZ1bVyhwQk9X7lPBNYMfGQ==",
        "id": format!("{project}:{location}.{job_id}"),
        "selfLink": format!("https://bigquery.googleapis.com/bigquery/v2/projects/{project}/jobs/{job_id}?location={location}"),
        "user_email": "ingest@test-project.iam.gserviceaccount.com",
        "configuration": configuration,
        "jobReference": {"projectId": project, "jobId": job_id, "location": location},
        "statistics": {"creationTime": "1700000000123", "startTime": "1700000000456"},
        "status": {"state": state},
        "principal_subject": "serviceAccount:ingest@test-project.iam.gserviceaccount.com",
        "jobCreationReason": {"code": "REQUESTED"}
    })
}

/// Where the emulators of the dev stack listen (from `scripts/dev-stack.sh`'s env file).
#[derive(Debug, Clone)]
pub struct EmulatorEnv {
    /// `GOOGLE_CLOUD_PROJECT`.
    pub project: String,
    /// `INGEST_BUCKET`.
    pub bucket: String,
    /// `STORAGE_EMULATOR_HOST` (fake-gcs-server).
    pub storage_host: String,
    /// `BIGQUERY_EMULATOR_HOST` (local-bigquery).
    pub bigquery_host: String,
}

/// The emulator stack from the environment. Without `BIGQUERY_EMULATOR_HOST` the test fails
/// with instructions, unless `BQ_INGEST_SKIP_EMULATOR_TESTS=1` (then it prints "skipped" and
/// the caller returns).
pub fn emulator_env(test: &str) -> Option<EmulatorEnv> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(bigquery_host) = var("BIGQUERY_EMULATOR_HOST") else {
        if var("BQ_INGEST_SKIP_EMULATOR_TESTS").as_deref() == Some("1") {
            println!(
                "{test}: skipped (BQ_INGEST_SKIP_EMULATOR_TESTS=1, no BIGQUERY_EMULATOR_HOST)"
            );
            return None;
        }
        panic!(
            "{test} needs the local emulators: BIGQUERY_EMULATOR_HOST is not set. Run the \
             project's test script, or start the stack yourself with `scripts/dev-stack.sh up` \
             and `source target/dev-stack/env` (set BQ_INGEST_SKIP_EMULATOR_TESTS=1 to skip)."
        );
    };
    let storage_host = var("STORAGE_EMULATOR_HOST").unwrap_or_else(|| {
        panic!("{test}: BIGQUERY_EMULATOR_HOST is set but STORAGE_EMULATOR_HOST is not")
    });
    Some(EmulatorEnv {
        project: var("GOOGLE_CLOUD_PROJECT").unwrap_or_else(|| "local-project".into()),
        bucket: var("INGEST_BUCKET").unwrap_or_else(|| "ingest-bucket".into()),
        storage_host: storage_host.trim_end_matches('/').to_string(),
        bigquery_host,
    })
}

/// A token unique to this test run (job ids and datasets persist in the emulator).
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}_{:x}", std::process::id(), nanos)
}

/// Uploads `content` to `gs://{bucket}/{name}` on fake-gcs-server with plain HTTP (media
/// upload), creating the bucket when missing.
pub async fn upload(env: &EmulatorEnv, name: &str, content: &[u8]) {
    let http = reqwest::Client::new();
    let bucket_url = format!("{}/storage/v1/b/{}", env.storage_host, env.bucket);
    let exists = http
        .get(&bucket_url)
        .send()
        .await
        .expect("GET bucket")
        .status()
        .is_success();
    if !exists {
        let status = http
            .post(format!(
                "{}/storage/v1/b?project={}",
                env.storage_host, env.project
            ))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "name": env.bucket }).to_string())
            .send()
            .await
            .expect("create bucket")
            .status();
        assert!(
            status.is_success() || status.as_u16() == 409,
            "create bucket: {status}"
        );
    }
    let mut url = reqwest::Url::parse(&format!(
        "{}/upload/storage/v1/b/{}/o",
        env.storage_host, env.bucket
    ))
    .expect("upload url");
    url.query_pairs_mut()
        .append_pair("uploadType", "media")
        .append_pair("name", name);
    let response = http
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .expect("upload");
    assert!(
        response.status().is_success(),
        "upload gs://{}/{name}: {}",
        env.bucket,
        response.status()
    );
}
