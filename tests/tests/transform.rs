//! The Python function's headline flows through the real binary on the emulators (issue 14),
//! which run them since bq-ingest's patch to local-bigquery
//! (`scripts/dev-stack/local-bigquery/`): transform mode, a query over the temporary external
//! table `temp_ext`, and loads into partition decorators.
//!
//! - nation and NYC 311 (CSV, `.csv.gz`, Parquet) through `INSERT … SELECT * FROM temp_ext`,
//!   with the `external.json` in a parent folder;
//! - the file-name timestamp recipe: `_FILE_NAME` parsed into a TIMESTAMP column;
//! - NYC 311 loaded into `$2017041101` and `$2017041102` of an hour-partitioned table with
//!   WRITE_TRUNCATE: 126 + 74 rows, and a second truncate of one hour leaves the other alone.
//!
//! The ordered `UPDATE` that concatenates (`ABC`, then `ABCD`) is in `ordered.rs`.

use std::time::Duration;

use bq_ingest_e2e::{testdata, Job, Mode, TestCase};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(90);
const INSERT_ALL: &[u8] = b"INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext";

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An `external.json` for `|`-delimited CSV with the schema in `schema_file` (testdata).
fn csv_external(schema_file: &str) -> Vec<u8> {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(testdata(schema_file)).expect("reading the schema"))
            .expect("a JSON schema");
    serde_json::to_vec(&json!({
        "sourceFormat": "CSV",
        "csvOptions": {"fieldDelimiter": "|"},
        "schema": {"fields": schema},
    }))
    .expect("JSON")
}

/// The query jobs of the case, each checked to be done without error.
async fn transform_jobs(t: &TestCase) -> Vec<Job> {
    let jobs: Vec<Job> = t
        .jobs()
        .await
        .into_iter()
        .filter(|j| {
            j.kind == "query" && j.raw["configuration"]["query"]["tableDefinitions"].is_object()
        })
        .collect();
    for job in &jobs {
        assert_eq!(job.error, None, "{job:#?}");
    }
    jobs
}

/// The marker's state row, once it is `done`.
async fn done(t: &TestCase, relative_marker: &str) -> Value {
    let marker = t.uri(relative_marker);
    let row = t
        .wait_for_state_row(|r| text(&r["marker_uri"]) == marker, TIMEOUT)
        .await;
    assert_eq!(row["state"], "done", "{row}");
    row
}

/// nation (`|`-delimited, an empty part file and one of 25 rows) through `temp_ext`, with the
/// `external.json` at the bucket's dataset level and the SQL beside the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nation_through_an_external_table_query() {
    let Some(t) = TestCase::new("transform_nation").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/external.json", csv_external("nation_schema.json"))
        .await;
    t.upload("nation/_config/bq_transform.sql", INSERT_ALL.to_vec())
        .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    t.upload_dir("nation/b1", testdata("nation")).await;
    t.wait_for_count("nation", 25, TIMEOUT).await;
    done(&t, "nation/b1/_SUCCESS").await;

    let jobs = transform_jobs(&t).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let query = &jobs[0].raw["configuration"]["query"];
    assert_eq!(
        text(&query["query"]),
        format!(
            "INSERT `{}`.`{}`.`nation` SELECT * FROM temp_ext",
            t.stack.project, t.dataset
        )
    );
    let external = &query["tableDefinitions"]["temp_ext"];
    assert_eq!(external["csvOptions"]["fieldDelimiter"], "|", "{external}");
    assert_eq!(
        jobs[0].raw["statistics"]["query"]["numDmlAffectedRows"], "25",
        "{:#}",
        jobs[0].raw
    );
    let algeria = t
        .rows(&format!(
            "SELECT N_NAME FROM {} WHERE N_NATIONKEY = 0",
            t.table_sql("nation")
        ))
        .await;
    assert_eq!(algeria, vec![json!({"N_NAME": "ALGERIA"})]);
}

/// NYC 311, both hours, in three forms: `|`-delimited CSV (one quoted field holds a `|`), the
/// same gzipped, and Parquet with the default `external.json` (PARQUET, schema from the files).
async fn nyc_311_transform(
    name: &str,
    keep: fn(&str) -> bool,
    external: Option<Vec<u8>>,
    rows: u64,
) {
    let Some(t) = TestCase::new(name).await else {
        return;
    };
    t.create_table("nyc311", testdata("nyc_311_schema.json"))
        .await;
    if let Some(external) = external {
        t.upload("_config/external.json", external).await;
    }
    t.upload("nyc311/_config/bq_transform.sql", INSERT_ALL.to_vec())
        .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    for (hour, dir) in [
        ("h01", "nyc_311/$2017041101"),
        ("h02", "nyc_311/$2017041102"),
    ] {
        let keep_with_marker = |n: &str| n == "_SUCCESS" || keep(n);
        t.upload_dir_only(&format!("nyc311/{hour}"), testdata(dir), keep_with_marker)
            .await;
    }
    t.wait_for_count("nyc311", rows, TIMEOUT).await;
    for hour in ["h01", "h02"] {
        done(&t, &format!("nyc311/{hour}/_SUCCESS")).await;
    }
    let jobs = transform_jobs(&t).await;
    assert_eq!(jobs.len(), 2, "one query per hour: {jobs:#?}");
    for job in &jobs {
        let uris = job.raw["configuration"]["query"]["tableDefinitions"]["temp_ext"]["sourceUris"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!uris.is_empty());
        for uri in uris {
            let file = text(&uri).rsplit('/').next().unwrap_or("");
            assert!(keep(file), "{uri} is not one of the batch's data files");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nyc_311_csv_through_an_external_table_query() {
    let external = csv_external("nyc_311_schema.json");
    nyc_311_transform("transform_csv", |n| n == "nyc_311.csv", Some(external), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nyc_311_csv_gz_through_an_external_table_query() {
    let external = csv_external("nyc_311_schema.json");
    nyc_311_transform(
        "transform_gz",
        |n| n == "nyc_311.csv.gz",
        Some(external),
        200,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nyc_311_parquet_through_an_external_table_query() {
    nyc_311_transform("transform_parquet", |n| n.ends_with(".parquet"), None, 100).await;
}

/// The recipe of docs/configuration.md: the timestamp in each file's name goes into a column,
/// parsed from the `_FILE_NAME` pseudo-column of `temp_ext`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_name_timestamps_into_a_column() {
    let Some(t) = TestCase::new("transform_file_name").await else {
        return;
    };
    t.create_table_json(
        "events",
        r#"[{"name": "id", "type": "INT64"}, {"name": "alpha_update", "type": "STRING"},
            {"name": "file_time", "type": "TIMESTAMP"}]"#,
    )
    .await;
    t.upload(
        "_config/external.json",
        csv_external("ordering_schema.json"),
    )
    .await;
    t.upload(
        "events/_config/bq_transform.sql",
        br"INSERT {dest_dataset}.{dest_table} (id, alpha_update, file_time)
SELECT id, alpha_update,
  PARSE_TIMESTAMP('%Y%m%dT%H%M', REGEXP_EXTRACT(_FILE_NAME, r'_(\d{8}T\d{4})\.csv$'))
FROM temp_ext"
            .to_vec(),
    )
    .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    t.upload("events/b1/events_20240102T0300.csv", b"1|A\n".to_vec())
        .await;
    t.upload("events/b1/events_20240102T0415.csv", b"2|B\n".to_vec())
        .await;
    t.upload("events/b1/_SUCCESS", Vec::new()).await;
    t.wait_for_count("events", 2, TIMEOUT).await;
    done(&t, "events/b1/_SUCCESS").await;
    let rows = t
        .rows(&format!(
            "SELECT id, FORMAT_TIMESTAMP('%Y-%m-%d %H:%M', file_time) AS at FROM {} ORDER BY id",
            t.table_sql("events")
        ))
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": "1", "at": "2024-01-02 03:00"}),
            json!({"id": "2", "at": "2024-01-02 04:15"}),
        ]
    );
}

async fn rows_per_hour(t: &TestCase) -> Vec<Value> {
    t.rows(&format!(
        "SELECT EXTRACT(HOUR FROM created_date) AS hour, COUNT(*) AS n FROM {} \
         GROUP BY hour ORDER BY hour",
        t.table_sql("nyc311")
    ))
    .await
}

/// The batches `nyc311/$2017041101/` and `…02/` load into those partitions of an
/// hour-partitioned table with WRITE_TRUNCATE: 126 + 74 rows. Loading the first hour again
/// replaces its 126 rows and leaves the second hour's 74 alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_decorators_truncate_one_hour_each() {
    let Some(t) = TestCase::new("partitions").await else {
        return;
    };
    t.rows(&t.hourly_nyc_311_ddl("nyc311")).await;
    t.upload(
        "nyc311/_config/load.json",
        br#"{"fieldDelimiter": "|", "writeDisposition": "WRITE_TRUNCATE"}"#.to_vec(),
    )
    .await;
    let _service = t.spawn_service(Mode::Pull, &[]).await;
    let csv_only = |n: &str| n == "_SUCCESS" || n == "nyc_311.csv";
    for hour in ["$2017041101", "$2017041102"] {
        t.upload_dir_only(
            &format!("nyc311/{hour}"),
            testdata(format!("nyc_311/{hour}")),
            csv_only,
        )
        .await;
    }
    t.wait_for_count("nyc311", 200, TIMEOUT).await;
    for hour in ["$2017041101", "$2017041102"] {
        done(&t, &format!("nyc311/{hour}/_SUCCESS")).await;
    }
    let hours = vec![
        json!({"hour": "1", "n": "126"}),
        json!({"hour": "2", "n": "74"}),
    ];
    assert_eq!(rows_per_hour(&t).await, hours);
    let jobs = t.jobs().await;
    let mut destinations: Vec<String> = jobs
        .iter()
        .map(|j| text(&j.raw["configuration"]["load"]["destinationTable"]["tableId"]).to_string())
        .collect();
    destinations.sort();
    assert_eq!(destinations, ["nyc311$2017041101", "nyc311$2017041102"]);

    // The first hour again (a new generation of its marker): WRITE_TRUNCATE of that hour only.
    let again = t
        .upload_file(
            "nyc311/$2017041101/_SUCCESS",
            testdata("nyc_311/$2017041101/_SUCCESS"),
        )
        .await;
    let marker = t.uri("nyc311/$2017041101/_SUCCESS");
    t.wait_for_state_row(
        |r| {
            text(&r["marker_uri"]) == marker
                && text(&r["marker_generation"]) == again.generation.to_string()
                && r["state"] == "done"
        },
        TIMEOUT,
    )
    .await;
    assert_eq!(t.jobs().await.len(), 3, "a third load job");
    assert_eq!(rows_per_hour(&t).await, hours, "still 126 + 74");
    let tables = t
        .rows(&format!(
            "SELECT table_name FROM `{}.{}.INFORMATION_SCHEMA.TABLES` WHERE table_name LIKE 'nyc311%'",
            t.stack.project, t.dataset
        ))
        .await;
    assert_eq!(
        tables,
        vec![json!({"table_name": "nyc311"})],
        "no table named after a decorator"
    );
}
