//! Shared set-up of the emulator-backed tests: the store, the bucket and a unique prefix.
#![allow(dead_code)] // each test binary uses a part of it

use std::time::{SystemTime, UNIX_EPOCH};

use ingest_gcs::{GcsStore, RetryPolicy, STORAGE_EMULATOR_HOST};

/// Set to `1` to skip (instead of fail) the emulator-backed tests when no emulator is running.
pub const SKIP_VAR: &str = "BQ_INGEST_SKIP_EMULATOR_TESTS";

/// The bucket the tests use when `INGEST_BUCKET` is unset.
pub const DEFAULT_BUCKET: &str = "ingest-bucket";

/// A store on the emulator of `STORAGE_EMULATOR_HOST` and a bucket (`INGEST_BUCKET`) that
/// exists; `None` (after saying so) when emulator tests are skipped.
///
/// Panics when no emulator is configured and skipping was not asked for.
pub async fn emulator_store(test: &str) -> Option<(GcsStore, String)> {
    let host = std::env::var(STORAGE_EMULATOR_HOST).unwrap_or_default();
    if host.trim().is_empty() {
        if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
            eprintln!("{test}: skipped ({SKIP_VAR}=1 and {STORAGE_EMULATOR_HOST} is not set)");
            return None;
        }
        panic!(
            "{test}: {STORAGE_EMULATOR_HOST} is not set. These tests need fake-gcs-server: run them \
             through the project's test script (scripts/test.sh), or start the emulators first with \
             `eval \"$(scripts/dev-stack.sh up)\"` (set {SKIP_VAR}=1 to skip them)"
        );
    }
    let store = match GcsStore::for_emulator(&host, RetryPolicy::default()) {
        Ok(store) => store,
        Err(error) => panic!("{test}: cannot build the store for {host}: {error}"),
    };
    let bucket = std::env::var("INGEST_BUCKET")
        .ok()
        .filter(|bucket| !bucket.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BUCKET.to_string());
    ensure_bucket(store.endpoint(), &bucket).await;
    Some((store, bucket))
}

/// Creates `bucket` on the emulator unless it exists (plain JSON API call).
pub async fn ensure_bucket(endpoint: &str, bucket: &str) {
    ingest_gcs::install_default_tls_provider();
    let client = ingest_google::reqwest::Client::new();
    let url = format!("{endpoint}/storage/v1/b?project=test-project");
    let body = format!("{{\"name\": \"{bucket}\"}}");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() || response.status().as_u16() == 409 => {}
        Ok(response) => panic!(
            "creating bucket {bucket} on {endpoint} answered {}",
            response.status()
        ),
        Err(error) => panic!("cannot reach the GCS emulator at {endpoint}: {error}"),
    }
}

/// A prefix no other test run uses: `tests/<test>/<unique id>/`.
pub fn unique_prefix(test: &str) -> String {
    format!("tests/{test}/{}/", unique_id())
}

/// An id no other test run uses: `<time in ns, hex>-<pid>`.
pub fn unique_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", std::process::id())
}
