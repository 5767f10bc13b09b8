//! The emulator stack described by the environment.

use ingest_bigquery::BigQueryWarehouse;
use ingest_gcs::{GcsStore, RetryPolicy};

/// Set to `1` to skip (not fail) the end-to-end tests when no emulator stack is configured.
pub const SKIP_VAR: &str = "BQ_INGEST_SKIP_EMULATOR_TESTS";

/// The running emulator stack, read from the variables `scripts/dev-stack.sh` exports, with
/// clients for the tests' own setup and assertions (these go to the emulators directly, never
/// through a [`CountingProxy`](crate::CountingProxy)).
///
/// Clients are tied to the tokio runtime they are first used on, so each test builds its own
/// `Stack` (through [`TestCase::new`](crate::TestCase::new)); building one is cheap.
#[derive(Debug)]
pub struct Stack {
    /// `GOOGLE_CLOUD_PROJECT`: the project of datasets, jobs, topics and subscriptions.
    pub project: String,
    /// `STORAGE_EMULATOR_HOST`, e.g. `http://127.0.0.1:4443`.
    pub gcs_host: String,
    /// `BIGQUERY_EMULATOR_HOST`, e.g. `http://127.0.0.1:9050`.
    pub bigquery_host: String,
    /// `PUBSUB_EMULATOR_HOST`, e.g. `127.0.0.1:8085` (no scheme).
    pub pubsub_host: String,
    /// `INGEST_BUCKET`: the bucket whose objects are announced on [`Stack::topic`].
    pub bucket: String,
    /// `INGEST_TOPIC`: the topic fake-gcs-server publishes every OBJECT_FINALIZE to.
    pub topic: String,
    /// GCS client (uploads, reads).
    pub store: GcsStore,
    /// BigQuery client (datasets, tables, queries).
    pub warehouse: BigQueryWarehouse,
    /// Plain HTTP client for the emulators' REST APIs (never through a proxy).
    pub http: reqwest::Client,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn with_scheme(host: &str) -> String {
    if host.starts_with("http://") || host.starts_with("https://") {
        host.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", host.trim_end_matches('/'))
    }
}

impl Stack {
    /// Reads the stack from the environment (`GOOGLE_CLOUD_PROJECT`, `STORAGE_EMULATOR_HOST`,
    /// `BIGQUERY_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`, `INGEST_BUCKET`, `INGEST_TOPIC`).
    ///
    /// Returns `None` (after printing `skipped`) when `STORAGE_EMULATOR_HOST` is unset and
    /// [`SKIP_VAR`] is `1`; panics with a message to run `scripts/test.sh` when it is unset
    /// otherwise, or when another of the variables is missing.
    ///
    /// ```no_run
    /// let Some(stack) = bq_ingest_e2e::Stack::from_env() else { return };
    /// println!("GCS at {}", stack.gcs_host);
    /// ```
    pub fn from_env() -> Option<Stack> {
        if var("STORAGE_EMULATOR_HOST").is_none() {
            if var(SKIP_VAR).as_deref() == Some("1") {
                eprintln!("skipped: no emulator stack (STORAGE_EMULATOR_HOST unset, {SKIP_VAR}=1)");
                return None;
            }
            panic!(
                "STORAGE_EMULATOR_HOST is not set: the end-to-end tests need the emulator stack. \
                 Run them with scripts/test.sh (it starts an isolated stack), or start one with \
                 `DEV_STACK_DIR=target/dev-stack-me scripts/dev-stack.sh up` and \
                 `source target/dev-stack-me/env`; set {SKIP_VAR}=1 to skip them instead."
            );
        }
        let required = |name: &str| {
            var(name).unwrap_or_else(|| {
                panic!("{name} is not set; source the dev stack's env file (scripts/dev-stack.sh up prints it)")
            })
        };
        let project = required("GOOGLE_CLOUD_PROJECT");
        let gcs_host = with_scheme(&required("STORAGE_EMULATOR_HOST"));
        let bigquery_host = with_scheme(&required("BIGQUERY_EMULATOR_HOST"));
        let pubsub_host = required("PUBSUB_EMULATOR_HOST")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let bucket = required("INGEST_BUCKET");
        let topic = required("INGEST_TOPIC");
        let store = GcsStore::for_emulator(&gcs_host, RetryPolicy::default())
            .unwrap_or_else(|e| panic!("GCS client for {gcs_host}: {e}"));
        let warehouse = BigQueryWarehouse::for_emulator(project.clone(), &bigquery_host)
            .unwrap_or_else(|e| panic!("BigQuery client for {bigquery_host}: {e}"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("HTTP client: {e}"));
        Some(Stack {
            project,
            gcs_host,
            bigquery_host,
            pubsub_host,
            bucket,
            topic,
            store,
            warehouse,
            http,
        })
    }

    /// The Pub/Sub emulator's REST root for this project:
    /// `http://HOST/v1/projects/PROJECT`.
    pub fn pubsub_url(&self) -> String {
        format!("http://{}/v1/projects/{}", self.pubsub_host, self.project)
    }

    /// The BigQuery emulator's REST root for this project:
    /// `http://HOST/bigquery/v2/projects/PROJECT`.
    pub fn bigquery_url(&self) -> String {
        format!(
            "{}/bigquery/v2/projects/{}",
            self.bigquery_host, self.project
        )
    }

    /// The environment every spawned service gets for the stack: the emulator hosts,
    /// `GOOGLE_CLOUD_PROJECT` and `BQ_PROJECT`.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("GOOGLE_CLOUD_PROJECT".into(), self.project.clone()),
            ("BQ_PROJECT".into(), self.project.clone()),
            ("STORAGE_EMULATOR_HOST".into(), self.gcs_host.clone()),
            ("BIGQUERY_EMULATOR_HOST".into(), self.bigquery_host.clone()),
            ("PUBSUB_EMULATOR_HOST".into(), self.pubsub_host.clone()),
        ]
    }
}
