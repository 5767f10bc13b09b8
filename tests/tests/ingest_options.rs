//! bq-ingest's own per-table options in `_config/ingest.json` (issue 11), through the real
//! binary on the emulators:
//!
//! - `fileTimestampRegex`: the two NYC 311 hours, as two files of one batch whose names carry
//!   the hour, go into `$2017041101` and `$2017041102` of an hour-partitioned table (the
//!   granularity read from the table): one job per partition, one state row for the marker;
//!   the marker again (a new generation) with WRITE_TRUNCATE replaces both hours, no more;
//! - `afterSuccess` `archiveTo` with `deleteMarker`: nation's files archived with their path,
//!   the batch folder empty. (`delete` on an ordered table is in `ordered.rs`.)

use std::time::Duration;

use bq_ingest_e2e::{testdata, Mode, TestCase};
use ingest_core::ports::ObjectStore;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(90);

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_timestamps_load_each_file_into_its_partition() {
    let Some(t) = TestCase::new("file_partitions").await else {
        return;
    };
    t.rows(&t.hourly_nyc_311_ddl("nyc311")).await;
    t.upload(
        "nyc311/_config/load.json",
        br#"{"fieldDelimiter": "|", "writeDisposition": "WRITE_TRUNCATE"}"#.to_vec(),
    )
    .await;
    t.upload(
        "nyc311/_config/ingest.json",
        br#"{"fileTimestampRegex": "_(?P<yyyy>\\d{4})(?P<mm>\\d\\d)(?P<dd>\\d\\d)(?P<hh>\\d\\d)\\.csv$"}"#
            .to_vec(),
    )
    .await;
    for hour in ["2017041101", "2017041102"] {
        t.upload_file(
            &format!("nyc311/b1/nyc_311_{hour}.csv"),
            testdata(format!("nyc_311/${hour}/nyc_311.csv")),
        )
        .await;
    }
    let first = t.upload("nyc311/b1/_SUCCESS", Vec::new()).await;
    // What the service will do, as `explain --live` prints it: one job per partition.
    let marker = t.uri("nyc311/b1/_SUCCESS");
    let explained = t.run_command(&["explain", "--live", &marker], &[]).await;
    let stdout = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.status.success(), "{stdout}");
    for hour in ["2017041101", "2017041102"] {
        let into = format!("into {}.{}.nyc311${hour}", t.stack.project, t.dataset);
        assert!(stdout.contains(&into), "{into:?} missing from:\n{stdout}");
    }
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    t.wait_for_count("nyc311", 200, TIMEOUT).await;
    let row = t
        .wait_for_state_row(|r| text(&r["marker_uri"]) == marker, TIMEOUT)
        .await;
    assert_eq!(row["state"], "done", "{row}");
    let hours = t
        .rows(&format!(
            "SELECT EXTRACT(HOUR FROM created_date) AS hour, COUNT(*) AS n FROM {} \
             GROUP BY hour ORDER BY hour",
            t.table_sql("nyc311")
        ))
        .await;
    let expected = vec![
        json!({"hour": "1", "n": "126"}),
        json!({"hour": "2", "n": "74"}),
    ];
    assert_eq!(hours, expected);
    let mut destinations: Vec<String> = t
        .jobs()
        .await
        .iter()
        .map(|j| text(&j.raw["configuration"]["load"]["destinationTable"]["tableId"]).to_string())
        .collect();
    destinations.sort();
    assert_eq!(destinations, ["nyc311$2017041101", "nyc311$2017041102"]);
    let recorded = row.to_string();
    assert_eq!(
        t.jobs()
            .await
            .iter()
            .filter(|j| recorded.contains(&j.id))
            .count(),
        2,
        "the state row names both jobs: {row}"
    );

    // The marker again: new ids, each hour truncated and reloaded, the totals unchanged.
    let again = t.upload("nyc311/b1/_SUCCESS", Vec::new()).await;
    assert_ne!(again.generation, first.generation);
    t.wait_for_state_row(
        |r| {
            text(&r["marker_uri"]) == marker
                && text(&r["marker_generation"]) == again.generation.to_string()
                && r["state"] == "done"
        },
        TIMEOUT,
    )
    .await;
    assert_eq!(t.jobs().await.len(), 4);
    let hours_again = t
        .rows(&format!(
            "SELECT EXTRACT(HOUR FROM created_date) AS hour, COUNT(*) AS n FROM {} \
             GROUP BY hour ORDER BY hour",
            t.table_sql("nyc311")
        ))
        .await;
    assert_eq!(hours_again, expected);
}

/// The object names under `<dataset>/<relative_prefix>` in `bucket`.
async fn names(t: &TestCase, bucket: &str, relative_prefix: &str) -> Vec<String> {
    let prefix = t.object(relative_prefix);
    let page = t
        .stack
        .store
        .list(bucket, &prefix, None, None)
        .await
        .unwrap_or_else(|e| panic!("listing gs://{bucket}/{prefix}: {e}"));
    assert!(page.next_page_token.is_none());
    page.objects.into_iter().map(|o| o.name).collect()
}

/// `afterSuccess: {"archiveTo": …}` with `deleteMarker`: once nation is loaded (25 rows), its
/// two files are under the archive prefix with their path, and nothing is left of the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_success_archives_the_files_and_deletes_the_marker() {
    let Some(t) = TestCase::new("after_success").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec())
        .await;
    let ingest_json = json!({
        "afterSuccess": {"archiveTo": format!("gs://{}/archive", t.bucket())},
        "deleteMarker": true,
    });
    t.upload(
        "nation/_config/ingest.json",
        ingest_json.to_string().into_bytes(),
    )
    .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    t.upload_dir("nation/b1", testdata("nation")).await;
    t.wait_for_count("nation", 25, TIMEOUT).await;
    let marker = t.uri("nation/b1/_SUCCESS");
    let row = t
        .wait_for_state_row(|r| text(&r["marker_uri"]) == marker, TIMEOUT)
        .await;
    assert_eq!(row["state"], "done", "{row}");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !names(&t, t.bucket(), "nation/b1/").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let archived: Vec<String> = t
        .stack
        .store
        .list(
            t.bucket(),
            &format!("archive/{}", t.object("nation/b1/")),
            None,
            None,
        )
        .await
        .expect("listing the archive")
        .objects
        .into_iter()
        .map(|o| o.name)
        .collect();
    // The empty part-m-00000 was not loaded, but it is the batch's: archived too.
    assert_eq!(
        archived,
        [
            format!("archive/{}", t.object("nation/b1/part-m-00000")),
            format!("archive/{}", t.object("nation/b1/part-m-00001")),
        ],
    );
    assert_eq!(t.count("nation").await, 25);
}

/// `quarantine`: one corrupt CSV among nation's files. The emulator's error names it (bq-ingest's
/// patch: `File: gs://…`); it goes to `nation/_quarantine/b1/`, the batch's `quarantined` row
/// names it, the 25 good rows load once under the rest's ids, and a redelivery of the marker
/// loads nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_is_quarantined_and_the_rest_loaded_once() {
    let Some(t) = TestCase::new("quarantine").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec())
        .await;
    t.upload(
        "nation/_config/ingest.json",
        br#"{"quarantine": true}"#.to_vec(),
    )
    .await;
    let service = t.spawn_service(Mode::Pull, &[]).await;
    t.upload("nation/b1/bad.csv", b"not-a-number|X|0|bad row\n".to_vec())
        .await;
    t.upload_dir("nation/b1", testdata("nation")).await;
    let marker = t.uri("nation/b1/_SUCCESS");
    let outcomes = service.wait_for_outcomes(&marker, 1, TIMEOUT).await;
    assert_eq!(outcomes[0]["outcome"], "done", "{outcomes:?}");
    assert_eq!(t.count("nation").await, 25);
    assert_eq!(
        names(&t, t.bucket(), "nation/_quarantine/").await,
        [t.object("nation/_quarantine/b1/bad.csv")]
    );
    assert!(!names(&t, t.bucket(), "nation/b1/")
        .await
        .contains(&t.object("nation/b1/bad.csv")));
    let rows = t.state_rows().await;
    let quarantined: Vec<&Value> = rows
        .iter()
        .filter(|r| r["state"] == "quarantined")
        .collect();
    assert_eq!(quarantined.len(), 1, "{rows:?}");
    assert!(
        text(&quarantined[0]["error"]).contains(&t.uri("nation/b1/bad.csv")),
        "{:?}",
        quarantined[0]
    );
    let jobs = t.jobs().await.len();

    // The marker's notification again: nothing is loaded twice.
    let meta = t
        .stack
        .store
        .stat(t.bucket(), &t.object("nation/b1/_SUCCESS"))
        .await
        .unwrap();
    t.publish_object_event(&meta).await;
    let outcomes = service.wait_for_outcomes(&marker, 2, TIMEOUT).await;
    assert_eq!(outcomes[1]["outcome"], "done", "{outcomes:?}");
    assert_eq!(t.count("nation").await, 25);
    assert_eq!(t.jobs().await.len(), jobs, "no job submitted again");
}
