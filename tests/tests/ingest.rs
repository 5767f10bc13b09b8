//! End to end through the real `bq-ingest` binary and the emulators (issue 3): nation over the
//! pull and the push path, duplicate and concurrent deliveries, write dispositions, the NYC 311
//! data (CSV, gzipped CSV, Parquet), layered `_config/load.json`, a load BigQuery rejects, and
//! the empty data file.
//!
//! Every test is isolated by its own dataset (first path segment) and subscription; see the
//! harness (`bq_ingest_e2e`). Run with `scripts/test.sh`, or against a dev stack with its env
//! sourced.

use std::time::{Duration, Instant};

use bq_ingest_e2e::{testdata, Mode, ObjectMeta, Service, TestCase};
use serde_json::Value;

/// Upper bound for one notification-driven load to become visible.
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// The dataset-level config that makes nation's `|` delimiter work.
const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The one state row of `marker_uri` in state `state`, waiting for it.
async fn state_row(t: &TestCase, marker_uri: &str, state: &str) -> Value {
    t.wait_for_state_row(
        |r| text(&r["marker_uri"]) == marker_uri && text(&r["state"]) == state,
        LOAD_TIMEOUT,
    )
    .await
}

/// Nation through `bq-ingest pull` with a dataset-level `_config/load.json`: 25 rows, one load
/// job whose sources are only the non-empty `part-m-00001` (the empty `part-m-00000` is
/// skipped), and one `done` row in the load-state table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nation_via_pull_skips_the_empty_part_file() {
    let Some(t) = TestCase::new("nation_pull").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let service = t.spawn_service(Mode::Pull, &[]).await;
    let started = Instant::now();
    let marker = t
        .upload_dir("nation", testdata("nation"))
        .await
        .expect("nation has _SUCCESS");
    t.wait_for_count("nation", 25, LOAD_TIMEOUT).await;
    println!(
        "nation via pull: 25 rows visible {:?} after the uploads began",
        started.elapsed()
    );

    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 1, "one load job: {jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job.kind, "load");
    assert_eq!(job.state, "DONE");
    assert_eq!(job.error, None);
    assert_eq!(
        job.destination.as_deref(),
        Some(format!("{}.nation", t.dataset).as_str())
    );
    assert_eq!(
        job.source_uris,
        vec![t.uri("nation/part-m-00001")],
        "the empty part-m-00000 is not a source"
    );
    assert_eq!(job.output_rows, Some(25));
    assert_eq!(job.raw["configuration"]["load"]["fieldDelimiter"], "|");

    let row = state_row(&t, &t.uri("nation/_SUCCESS"), "done").await;
    assert_eq!(
        text(&row["marker_generation"]),
        marker.generation.to_string()
    );
    assert_eq!(row["job_ids"], serde_json::json!([job.id]));
    assert_eq!(text(&row["rows"]), "25");
    let outcomes = service.outcomes_for(&t.uri("nation/_SUCCESS"));
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["outcome"], "done");
    for data_file in [
        "nation/part-m-00000",
        "nation/part-m-00001",
        "_config/load.json",
    ] {
        let lines = service.outcomes_for(&t.uri(data_file));
        assert!(
            lines.iter().all(|l| l["outcome"] == "ignored"),
            "{data_file}: {lines:#?}"
        );
    }

    let names = t
        .rows(&format!(
            "SELECT N_NAME FROM {} WHERE N_NATIONKEY = 0",
            t.table_sql("nation")
        ))
        .await;
    assert_eq!(names.len(), 1);
    assert_eq!(names[0]["N_NAME"], "ALGERIA");
}

/// Nation through a PUSH subscription of the Pub/Sub emulator delivering to `bq-ingest serve`
/// (the Cloud Run path): 25 rows, one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nation_via_push_subscription_to_serve() {
    let Some(t) = TestCase::new("nation_push").await else {
        return;
    };
    let t = t.with_push().await;
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let service = t.spawn_service(Mode::Serve, &[]).await;
    let started = Instant::now();
    t.upload_dir("nation", testdata("nation")).await;
    t.wait_for_count("nation", 25, LOAD_TIMEOUT).await;
    println!(
        "nation via push: 25 rows visible {:?} after the uploads began",
        started.elapsed()
    );

    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].source_uris, vec![t.uri("nation/part-m-00001")]);
    let handled = service
        .wait_for_outcomes(&t.uri("nation/_SUCCESS"), 1, LOAD_TIMEOUT)
        .await;
    assert_eq!(handled[0]["outcome"], "done", "{handled:#?}");
    assert_eq!(
        handled[0]["form"], "push",
        "delivered by the push subscription: {handled:#?}"
    );
    state_row(&t, &t.uri("nation/_SUCCESS"), "done").await;
}

/// The same notification delivered 5 more times through the subscription (published again with
/// the marker's real generation): still 25 rows, exactly one job, one state row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_notifications_through_pull_make_one_job() {
    let Some(t) = TestCase::new("dup_pull").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let service = t.spawn_service(Mode::Pull, &[]).await;
    let marker = t
        .upload_dir("nation", testdata("nation"))
        .await
        .expect("marker");
    t.wait_for_count("nation", 25, LOAD_TIMEOUT).await;
    let marker_uri = t.uri("nation/_SUCCESS");
    service
        .wait_for_outcomes(&marker_uri, 1, LOAD_TIMEOUT)
        .await;

    for _ in 0..5 {
        t.publish_object_event(&marker).await;
    }
    let outcomes = service
        .wait_for_outcomes(&marker_uri, 6, LOAD_TIMEOUT)
        .await;
    assert!(
        outcomes.iter().all(|l| l["outcome"] == "done"),
        "every delivery ends as `done` (the duplicates follow the first job): {outcomes:#?}"
    );
    assert_eq!(t.count("nation").await, 25);
    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 1, "exactly one load job: {jobs:#?}");
    let rows = t.state_rows().await;
    let for_marker: Vec<_> = rows
        .iter()
        .filter(|r| text(&r["marker_uri"]) == marker_uri)
        .collect();
    assert_eq!(
        for_marker.len(),
        1,
        "duplicates write no state row: {rows:#?}"
    );
}

/// POSTs the push envelope of `marker` `n` times at once to `url`; returns each answer's
/// status and JSON body.
async fn post_concurrently(
    t: &TestCase,
    url: &str,
    marker: &ObjectMeta,
    label: &str,
    n: usize,
) -> Vec<(u16, Value)> {
    let envelopes: Vec<Value> = (0..n)
        .map(|i| t.push_envelope(marker, &format!("{label}-{i}")))
        .collect();
    futures::future::join_all(envelopes.iter().map(|body| t.post_json(url, body)))
        .await
        .into_iter()
        .map(|(status, body)| (status, serde_json::from_str(&body).unwrap_or(Value::Null)))
        .collect()
}

/// The push envelope of the marker POSTed to `serve` (the first delivery: `done`), then the
/// same envelope 5 times at once: every answer is 200 and `done`, still 25 rows, exactly one
/// job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_push_deliveries_make_one_job() {
    let Some(t) = TestCase::new("dup_push").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    // A serve without a push subscription: only the test's own POSTs reach it.
    let service = t.spawn_service(Mode::Serve, &[]).await;
    let url = format!("{}/", service.url().expect("serve has a URL"));
    let marker = t
        .upload_dir("nation", testdata("nation"))
        .await
        .expect("marker");

    let first = post_concurrently(&t, &url, &marker, "first", 1).await;
    assert_eq!(first[0].0, 200, "{first:#?}");
    assert_eq!(first[0].1["outcome"], "done", "{first:#?}");
    assert_eq!(t.count("nation").await, 25);

    let again = post_concurrently(&t, &url, &marker, "again", 5).await;
    for (status, body) in &again {
        assert_eq!(*status, 200, "{again:#?}");
        assert_eq!(
            body["outcome"], "done",
            "a delivery after the load follows its job: {again:#?}"
        );
        assert_eq!(body["rows"], 25, "{again:#?}");
    }
    assert_eq!(t.count("nation").await, 25);
    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 1, "exactly one load job: {jobs:#?}");
    assert_eq!(service.outcomes_for(&t.uri("nation/_SUCCESS")).len(), 6);
}

/// Concurrent FIRST deliveries of a marker (5 POSTs at once, for 3 batches): one load per
/// batch, every delivery `done`, no failure recorded. The deliveries that lose the race for
/// `jobs.insert` must follow the winner's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_deliveries_load_once_and_record_no_failure() {
    let Some(t) = TestCase::new("race_push").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let service = t.spawn_service(Mode::Serve, &[]).await;
    let url = format!("{}/", service.url().expect("serve has a URL"));
    let mut answers = Vec::new();
    for batch in ["b1", "b2", "b3"] {
        let marker = t
            .upload_dir(&format!("nation/{batch}"), testdata("nation"))
            .await
            .expect("marker");
        answers.extend(post_concurrently(&t, &url, &marker, batch, 5).await);
    }
    let count = t.count("nation").await;
    let jobs = t.jobs().await.len();
    let not_done: Vec<_> = answers
        .iter()
        .filter(|(_, body)| body["outcome"] != "done")
        .collect();
    let failed_rows: Vec<_> = t
        .state_rows()
        .await
        .into_iter()
        .filter(|r| text(&r["state"]) != "done")
        .collect();
    assert!(
        count == 75 && jobs == 3 && not_done.is_empty() && failed_rows.is_empty(),
        "3 batches × 25 rows in 3 jobs, every delivery done, no failure recorded; found {count} rows, \
         {jobs} jobs, deliveries not done: {not_done:#?}, failure rows: {failed_rows:#?}"
    );
}

/// Two batch folders `b1/`, `b2/` of nation into one table with `writeDisposition` from the
/// table's `_config/load.json`; returns the final row count and the jobs' dispositions.
async fn two_batches(t: &TestCase, disposition: &str) -> (u64, Vec<String>) {
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    let config = format!(r#"{{"fieldDelimiter": "|", "writeDisposition": "{disposition}"}}"#);
    t.upload("nation/_config/load.json", config).await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    t.upload_dir("nation/b1", testdata("nation")).await;
    state_row(t, &t.uri("nation/b1/_SUCCESS"), "done").await;
    t.wait_for_count("nation", 25, LOAD_TIMEOUT).await;
    t.upload_dir("nation/b2", testdata("nation")).await;
    let row = state_row(t, &t.uri("nation/b2/_SUCCESS"), "done").await;
    assert_eq!(text(&row["batch_id"]), "b2");
    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let dispositions = jobs
        .iter()
        .map(|j| j.write_disposition.clone().unwrap_or_default())
        .collect();
    (t.count("nation").await, dispositions)
}

/// WRITE_TRUNCATE over two batches leaves the second one: 25 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_truncate_over_two_batches() {
    let Some(t) = TestCase::new("truncate").await else {
        return;
    };
    let (count, dispositions) = two_batches(&t, "WRITE_TRUNCATE").await;
    assert_eq!(count, 25);
    assert_eq!(dispositions, vec!["WRITE_TRUNCATE"; 2]);
}

/// WRITE_APPEND over two batches keeps both: 50 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_append_over_two_batches() {
    let Some(t) = TestCase::new("append").await else {
        return;
    };
    let (count, dispositions) = two_batches(&t, "WRITE_APPEND").await;
    assert_eq!(count, 50);
    assert_eq!(dispositions, vec!["WRITE_APPEND"; 2]);
}

/// Loads the two hours of NYC 311 into the unpartitioned `table`: the files `keep` accepts of
/// `nyc_311/$2017041101/` and `$2017041102/` are copied to batch folders `<table>/h01/` and
/// `<table>/h02/` (batch ids, so the destination has no partition decorator), with `config` as
/// the table's `_config/load.json`. Waits for `expected` rows; returns the jobs.
async fn load_nyc_311(
    t: &TestCase,
    table: &str,
    keep: fn(&str) -> bool,
    config: &str,
    expected: u64,
) -> Vec<bq_ingest_e2e::Job> {
    t.create_table(table, testdata("nyc_311_schema.json")).await;
    t.upload(
        &format!("{table}/_config/load.json"),
        config.as_bytes().to_vec(),
    )
    .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    let started = Instant::now();
    for (hour, dir) in [
        ("h01", "nyc_311/$2017041101"),
        ("h02", "nyc_311/$2017041102"),
    ] {
        let keep_with_marker = |name: &str| name == "_SUCCESS" || keep(name);
        t.upload_dir_only(&format!("{table}/{hour}"), testdata(dir), keep_with_marker)
            .await;
    }
    t.wait_for_count(table, expected, LOAD_TIMEOUT).await;
    println!(
        "{table}: {expected} rows visible {:?} after the uploads began",
        started.elapsed()
    );
    for hour in ["h01", "h02"] {
        state_row(t, &t.uri(&format!("{table}/{hour}/_SUCCESS")), "done").await;
    }
    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 2, "one load job per hour: {jobs:#?}");
    for job in &jobs {
        assert_eq!(job.error, None, "{job:#?}");
        assert!(!job.source_uris.is_empty());
        for uri in &job.source_uris {
            let name = uri.rsplit('/').next().unwrap_or("");
            assert!(keep(name), "{uri} is not one of the batch's data files");
        }
    }
    jobs
}

/// NYC 311 CSV (`|`-delimited, no header, one quoted field holding a `|`): 126 + 74 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nyc_311_csv_into_an_unpartitioned_table() {
    let Some(t) = TestCase::new("nyc_csv").await else {
        return;
    };
    let jobs = load_nyc_311(
        &t,
        "nyc311_csv",
        |n| n == "nyc_311.csv",
        r#"{"fieldDelimiter": "|"}"#,
        200,
    )
    .await;
    let rows: Vec<u64> = jobs.iter().filter_map(|j| j.output_rows).collect();
    let mut sorted = rows.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![74, 126], "rows per hour: {rows:?}");
    let quoted = t
        .rows(&format!(
            "SELECT location FROM {} WHERE unique_key = 35925007",
            t.table_sql("nyc311_csv")
        ))
        .await;
    assert_eq!(quoted.len(), 1, "{quoted:#?}");
    assert_eq!(
        quoted[0]["location"], "(40.7602507| -73.9696243)",
        "the quoted `|` stays in its field"
    );
}

/// The same CSV gzipped (`nyc_311.csv.gz`): 200 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nyc_311_csv_gz_into_an_unpartitioned_table() {
    let Some(t) = TestCase::new("nyc_csv_gz").await else {
        return;
    };
    load_nyc_311(
        &t,
        "nyc311_csv_gz",
        |n| n == "nyc_311.csv.gz",
        r#"{"fieldDelimiter": "|"}"#,
        200,
    )
    .await;
}

/// The Parquet files (2 × 25 rows per hour, `sourceFormat` PARQUET in `load.json`): 100 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nyc_311_parquet_into_an_unpartitioned_table() {
    let Some(t) = TestCase::new("nyc_parquet").await else {
        return;
    };
    let jobs = load_nyc_311(
        &t,
        "nyc311_parquet",
        |n| n.ends_with(".parquet"),
        r#"{"sourceFormat": "PARQUET"}"#,
        100,
    )
    .await;
    for job in &jobs {
        assert_eq!(
            job.source_uris.len(),
            2,
            "both Parquet files of the hour: {job:#?}"
        );
        assert_eq!(job.raw["configuration"]["load"]["sourceFormat"], "PARQUET");
    }
}

/// A `load.json` in a parent folder (the dataset: `fieldDelimiter` `|`) and one in the batch's
/// own folder (`writeDisposition` WRITE_TRUNCATE) both apply: the batch loaded twice (its
/// marker uploaded again, a new generation) leaves 25 rows, not 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_and_batch_folder_configs_both_apply() {
    let Some(t) = TestCase::new("config_layers").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    t.upload(
        "nation/b1/_config/load.json",
        br#"{"writeDisposition": "WRITE_TRUNCATE"}"#.to_vec(),
    )
    .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    let first = t
        .upload_dir("nation/b1", testdata("nation"))
        .await
        .expect("marker");
    let marker_uri = t.uri("nation/b1/_SUCCESS");
    t.wait_for_state_row(
        |r| {
            text(&r["marker_uri"]) == marker_uri
                && text(&r["marker_generation"]) == first.generation.to_string()
        },
        LOAD_TIMEOUT,
    )
    .await;
    assert_eq!(t.count("nation").await, 25);
    let second = t
        .upload_file("nation/b1/_SUCCESS", testdata("nation/_SUCCESS"))
        .await;
    assert_ne!(second.generation, first.generation);
    let row = t
        .wait_for_state_row(
            |r| {
                text(&r["marker_uri"]) == marker_uri
                    && text(&r["marker_generation"]) == second.generation.to_string()
            },
            LOAD_TIMEOUT,
        )
        .await;
    assert_eq!(text(&row["state"]), "done", "{row:#?}");
    assert_eq!(
        t.count("nation").await,
        25,
        "WRITE_TRUNCATE from the batch folder applied"
    );
    let jobs = t.jobs().await;
    assert_eq!(
        jobs.len(),
        2,
        "a new marker generation is a new load: {jobs:#?}"
    );
    for job in &jobs {
        let load = &job.raw["configuration"]["load"];
        assert_eq!(
            load["fieldDelimiter"], "|",
            "the parent's config applied: {job:#?}"
        );
        assert_eq!(
            load["writeDisposition"], "WRITE_TRUNCATE",
            "the batch folder's config applied"
        );
        assert!(
            job.source_uris.iter().all(|u| !u.contains("/_config/")),
            "config files are not data: {:?}",
            job.source_uris
        );
    }
}

/// A load BigQuery rejects (the table's schema does not fit the data): a recorded failure
/// (state row `failed`, the error names the marker), the service keeps serving (a following
/// good batch loads), and the message is acknowledged, not redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_load_is_recorded_and_not_redelivered() {
    let Some(t) = TestCase::new("rejected").await else {
        return;
    };
    // N_NAME as INT64: "ALGERIA" cannot be loaded into it.
    t.create_table_json(
        "nation_bad",
        r#"[{"name": "N_NATIONKEY", "type": "INT64"}, {"name": "N_NAME", "type": "INT64"},
            {"name": "N_REGIONKEY", "type": "INT64"}, {"name": "N_COMMENT", "type": "STRING"}]"#,
    )
    .await;
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let service = t.spawn_service(Mode::Pull, &[]).await;
    t.upload_dir("nation_bad", testdata("nation")).await;
    let bad_marker = t.uri("nation_bad/_SUCCESS");

    let row = state_row(&t, &bad_marker, "failed").await;
    let error = text(&row["error"]);
    assert!(!error.is_empty(), "the failure has an error: {row:#?}");
    assert!(
        error.contains(&bad_marker),
        "the error names the batch {bad_marker}: {error}"
    );
    let failed = service
        .wait_for_outcomes(&bad_marker, 1, LOAD_TIMEOUT)
        .await;
    assert_eq!(failed[0]["outcome"], "failed", "{failed:#?}");
    assert!(
        Service::message(&failed[0]).contains("acknowledged"),
        "the failed message is acknowledged: {failed:#?}"
    );
    assert_eq!(t.count("nation_bad").await, 0);

    // The service keeps serving.
    t.upload_dir("nation", testdata("nation")).await;
    t.wait_for_count("nation", 25, LOAD_TIMEOUT).await;

    // Not redelivered: after 10 s still exactly one handling of the bad marker.
    let quiet_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < quiet_until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let handled = service.outcomes_for(&bad_marker);
    assert_eq!(
        handled.len(),
        1,
        "the failed message is not redelivered: {handled:#?}"
    );
    let failed_rows: Vec<_> = t
        .state_rows()
        .await
        .into_iter()
        .filter(|r| text(&r["marker_uri"]) == bad_marker)
        .collect();
    println!("failure recorded as: {failed_rows:#?}");
    assert!(failed_rows.iter().all(|r| text(&r["state"]) != "done"));
}
