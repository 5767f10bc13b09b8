//! The shared `Warehouse` conformance suite of `ingest-core` against local-bigquery, with the
//! load's `gs://` file on fake-gcs-server.
//!
//! Needs `BIGQUERY_EMULATOR_HOST` and `STORAGE_EMULATOR_HOST` (the env file of
//! `scripts/dev-stack.sh up`); fails without them unless `BQ_INGEST_SKIP_EMULATOR_TESTS=1`.

mod support;

use std::collections::BTreeMap;

use ingest_bigquery::BigQueryWarehouse;
use ingest_core::ports::{JobKind, JobRequest, TableRef};
use ingest_core::testing::warehouse::{self, WarehouseFixture};
use serde_json::json;
use support::{emulator_env, run_id, upload};

#[tokio::test]
async fn warehouse_conformance() {
    let Some(env) = emulator_env("warehouse_conformance") else {
        return;
    };
    let wh = BigQueryWarehouse::for_emulator(env.project.clone(), &env.bigquery_host)
        .expect("emulator warehouse");
    let run = run_id();
    let dataset = format!("conformance_{run}");
    wh.create_dataset_if_missing(&env.project, &dataset)
        .await
        .expect("dataset");
    wh.create_table(
        &env.project,
        &dataset,
        "items",
        r#"[{"name": "id", "type": "INT64", "mode": "REQUIRED"},
                {"name": "name", "type": "STRING"}]"#,
    )
    .await
    .expect("table");
    let good = format!("{dataset}/items/good.csv");
    let bad = format!("{dataset}/items/bad.csv");
    upload(&env, &good, b"id,name\n1,a\n2,b\n3,c\n").await;
    // Columns that do not match the schema: `id` is not an INT64.
    upload(&env, &bad, b"id,name\nx,a\ny,b\n").await;

    let load = |job_id: &str, object: &str| JobRequest {
        project: env.project.clone(),
        job_id: job_id.into(),
        location: None,
        labels: BTreeMap::from([("component".into(), "bq-ingest-conformance".into())]),
        kind: JobKind::Load {
            destination: TableRef {
                project: env.project.clone(),
                dataset: dataset.clone(),
                table: "items".into(),
                partition: None,
            },
            source_uris: vec![format!("gs://{}/{object}", env.bucket)],
            config: json!({"sourceFormat": "CSV", "skipLeadingRows": 1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        },
    };
    let fixture = WarehouseFixture {
        load_ok: load("conformance-load", &good),
        load_ok_rows: 3,
        load_failing: load("conformance-bad", &bad),
        state_table: TableRef {
            project: env.project.clone(),
            dataset: format!("{dataset}_state"),
            table: "load_state".into(),
            partition: None,
        },
        run_id: run.clone(),
    };
    warehouse::run(&wh, &fixture).await;

    // What the suite left behind: the load's rows, and two state rows: record_outcome's (its
    // second write of the same outcome was deduplicated by its insertId) and
    // recorded_outcomes' read-back row.
    let items = TableRef {
        project: env.project.clone(),
        dataset: dataset.clone(),
        table: "items".into(),
        partition: None,
    };
    assert_eq!(wh.table_row_count(&items).await.expect("items"), 3);
    assert_eq!(
        wh.table_row_count(&fixture.state_table)
            .await
            .expect("state rows"),
        2
    );
}
