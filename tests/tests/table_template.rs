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

/// Transform mode: the query creates no table, so bq-ingest creates the missing destination
/// from `table.json` (one `tables.insert`) before the first query over `temp_ext`; the second
/// batch finds it (the create answers "exists" and is not an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_batch_creates_its_missing_destination_from_the_template() {
    let Some(t) = TestCase::new("table_template_transform").await else {
        return;
    };
    let fields: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata("nation_schema.json")).unwrap()).unwrap();
    let template = serde_json::json!({
        "schema": {"fields": fields.clone()},
        "description": "TPC-H nation, created by bq-ingest before its first transform",
    });
    let external = serde_json::json!({
        "sourceFormat": "CSV",
        "csvOptions": {"fieldDelimiter": "|"},
        "schema": {"fields": fields},
    });
    t.upload(
        "nations/_config/table.json",
        template.to_string().into_bytes(),
    )
    .await;
    t.upload(
        "nations/_config/external.json",
        external.to_string().into_bytes(),
    )
    .await;
    t.upload(
        "nations/_config/bq_transform.sql",
        b"INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext".to_vec(),
    )
    .await;
    let service = t.spawn_service(Mode::Pull, &[]).await;
    for (batch, rows) in [("b1", 25), ("b2", 50)] {
        t.upload_dir(&format!("nations/{batch}"), testdata("nation"))
            .await;
        let marker = t.uri(&format!("nations/{batch}/_SUCCESS"));
        let outcomes = service.wait_for_outcomes(&marker, 1, TIMEOUT).await;
        assert_eq!(outcomes[0]["outcome"], "done", "{outcomes:?}");
        assert_eq!(t.count("nations").await, rows);
    }
    let description = t
        .rows(&format!(
            "SELECT option_value FROM `{}.{}.INFORMATION_SCHEMA.TABLE_OPTIONS` \
             WHERE table_name = 'nations' AND option_name = 'description'",
            t.stack.project, t.dataset
        ))
        .await;
    assert!(
        description
            .first()
            .is_some_and(|r| r.to_string().contains("TPC-H nation")),
        "{description:?}"
    );
}
