//! Embedding bq-ingest: the core needs only its three ports. Here they are the in-memory
//! doubles, loaded with the NATION batch from `testdata/nation` (or a folder given as the
//! first argument); a real program passes `ingest_gcs::GcsStore`,
//! `ingest_bigquery::BigQueryWarehouse` and a system clock instead (`ingest_service::Runtime`
//! wires them from the environment).
//!
//! The batch is ingested twice: once by calling the ingestor, once more through the HTTP routes
//! mounted under `/ingest` of an app with its own state, as a Pub/Sub push of the same
//! notification would arrive — a duplicate, which submits no second job.
//!
//! ```sh
//! cargo run -p bq-ingest-embedding -- testdata/nation
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ports::{JobKind, TableRef};
use ingest_core::settings::Settings;
use ingest_http::HttpState;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
use tower::ServiceExt as _;

/// The state of the embedding app, of which the ingest routes need only one part.
#[derive(Clone)]
struct AppState {
    ingest: HttpState,
    name: &'static str,
}

impl FromRef<AppState> for HttpState {
    fn from_ref(app: &AppState) -> HttpState {
        app.ingest.clone()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/nation"
            ))
        });
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };

    // The ports.
    let clock = MemoryClock::new();
    let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
    store.create_bucket("bucket");
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone()));

    // The batch: data files first, the success marker last, as an upstream job writes them.
    store.put_str("bucket", "_config/load.json", r#"{"fieldDelimiter": "|"}"#);
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    for path in names.iter().filter(|p| !p.ends_with("_SUCCESS")) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let content = std::fs::read(path).unwrap_or_default();
        store.insert("bucket", &format!("tpch/nation/{name}"), content);
    }
    let marker = store.insert("bucket", "tpch/nation/_SUCCESS", Vec::new());

    let settings = Settings {
        bq_project: Some("my-project".into()),
        ..Settings::default()
    };
    let ingestor = Arc::new(Ingestor::new(
        settings,
        store.clone(),
        warehouse.clone(),
        Arc::new(clock),
    ));
    let event = ObjectEvent::finalized("bucket", &marker.name, marker.generation);
    let outcome = match ingestor.handle(&event).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("transient error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "outcome: {}",
        serde_json::to_string(&outcome).unwrap_or_default()
    );
    for job in warehouse.submitted() {
        if let JobKind::Load {
            destination,
            source_uris,
            config,
        } = &job.kind
        {
            println!("job {} → {destination}", job.job_id);
            println!("  sources: {source_uris:?}");
            println!("  config:  {}", serde_json::Value::Object(config.clone()));
        }
    }
    let table = TableRef {
        project: "my-project".into(),
        dataset: "tpch".into(),
        table: "nation".into(),
        partition: None,
    };
    println!("rows in {table}: {}", warehouse.table_rows(&table));

    let duplicate = push_through_nested_routes(ingestor, &event).await;
    println!("the same notification pushed to /ingest/pubsub/push: {duplicate}");
    let jobs = warehouse.submitted().len();
    println!("jobs submitted in all: {jobs}");
    if matches!(outcome, Outcome::Done { .. }) && duplicate.starts_with("200") && jobs == 1 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Mounts the ingest routes under `/ingest` of an app with its own state and pushes `event`
/// there as Pub/Sub would; returns the status and body of the answer.
async fn push_through_nested_routes(ingestor: Arc<Ingestor>, event: &ObjectEvent) -> String {
    let app: Router = Router::new()
        .route(
            "/",
            get(|State(app): State<AppState>| async move { app.name }),
        )
        .nest("/ingest", ingest_http::routes())
        .with_state(AppState {
            ingest: HttpState::new(ingestor),
            name: "my-app",
        });
    let (attributes, data) = ingest_core::notification::object_event_message(event);
    let envelope = serde_json::json!({
        "subscription": "projects/my-project/subscriptions/bq-ingest",
        "message": {
            "attributes": attributes,
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data),
            "messageId": "1",
        },
    });
    let request = Request::post("/ingest/pubsub/push")
        .header("content-type", "application/json")
        .body(Body::from(envelope.to_string()))
        .expect("a valid request");
    let response = match app.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    format!("{} {}", status.as_u16(), String::from_utf8_lossy(&body))
}
