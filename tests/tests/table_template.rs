//! `_config/table.json` (issue 11, §4): the first batch into a table that does not exist creates
//! it from the template (`CREATE_IF_NEEDED` with the template's schema in the load job), and
//! later batches append to it with the same template.

use std::time::Duration;

use bq_ingest_e2e::{testdata, Mode, TestCase};

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_batch_creates_the_missing_table_from_its_template() {
    let Some(t) = TestCase::new("table_template").await else {
        return;
    };
    let fields: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("nation_schema.json")).unwrap()).unwrap();
    let template = serde_json::json!({
        "schema": {"fields": fields},
        "description": "TPC-H nation, created by bq-ingest from table.json",
    });
    t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec())
        .await;
    t.upload(
        "nations/_config/table.json",
        template.to_string().into_bytes(),
    )
    .await;
    let service = t.spawn_service(Mode::Pull, &[]).await;

    t.upload_dir("nations/b1", testdata("nation")).await;
    let outcomes = service
        .wait_for_outcomes(&t.uri("nations/b1/_SUCCESS"), 1, TIMEOUT)
        .await;
    assert_eq!(outcomes[0]["outcome"], "done", "{outcomes:?}");
    assert_eq!(
        t.count("nations").await,
        25,
        "the table was created and loaded"
    );

    t.upload_dir("nations/b2", testdata("nation")).await;
    let outcomes = service
        .wait_for_outcomes(&t.uri("nations/b2/_SUCCESS"), 1, TIMEOUT)
        .await;
    assert_eq!(outcomes[0]["outcome"], "done", "{outcomes:?}");
    assert_eq!(t.count("nations").await, 50, "the second batch appended");
}
