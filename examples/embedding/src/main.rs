//! Embedding bq-ingest: the core needs only its three ports. Here they are the in-memory
//! doubles, loaded with the NATION batch from `../shared/testdata` (or a folder given as the
//! first argument); a real program passes `ingest_gcs::GcsStore`,
//! `ingest_bigquery::BigQueryWarehouse` and a system clock instead.
//!
//! ```sh
//! cargo run -p bq-ingest-embedding -- ../shared/testdata/nation
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ingest_core::event::ObjectEvent;
use ingest_core::ingest::{Ingestor, Outcome};
use ingest_core::ports::{JobKind, TableRef};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/testdata/nation"
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
    let ingestor = Ingestor::new(settings, store.clone(), warehouse.clone(), Arc::new(clock));
    let event = ObjectEvent::finalized("bucket", &marker.name, marker.generation);
    let outcome = match futures::executor::block_on(ingestor.handle(&event)) {
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
    if matches!(outcome, Outcome::Done { .. }) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
