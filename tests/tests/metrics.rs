//! `GET /metrics` through the real binary on the emulators (issue 10): the nation batch goes
//! through `serve` (push, a duplicate push and a malformed request) and through `pull` (the
//! notifications the bucket published), and the scraped values say exactly what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use bq_ingest_e2e::{free_port, testdata, Mode, TestCase};

const TIMEOUT: Duration = Duration::from_secs(90);
const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;

/// The samples of a Prometheus text page: `name{labels}` → value.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(t: &TestCase, url: &str) -> (String, BTreeMap<String, f64>) {
    let response = t.stack.http.get(url).send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let page = response.text().await.unwrap();
    let parsed = samples(&page);
    (page, parsed)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_counts_pushes_batches_jobs_and_requests() {
    let Some(t) = TestCase::new("metrics_serve").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let service = t
        .spawn_service(Mode::Serve, &[("METRICS_TABLE_LABELS", "true")])
        .await;
    let base = service.url().expect("serve has a url");
    let marker = t
        .upload_dir_only("nation", testdata("nation"), |_| true)
        .await
        .unwrap();
    let push = t.push_envelope(&marker, "m-metrics");
    for _ in 0..2 {
        let (status, body) = t.post_json(&format!("{base}/pubsub/push"), &push).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"outcome\":\"done\""), "{body}");
    }
    let (status, _) = t
        .post_json(
            &format!("{base}/pubsub/push"),
            &serde_json::json!({"not": "a push"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(t.count("nation").await, 25);

    let (page, m) = scrape(&t, &format!("{base}/metrics")).await;
    println!("{page}"); // shown with --nocapture: docs/operations.md quotes it
    let table = format!(
        "{}.{}.nation",
        t.stack.project,
        t.table_ref("nation").dataset
    );
    let expect = [
        (r#"bq_ingest_notifications_total{front_end="push",outcome="done"}"#.to_string(), 2.0),
        (r#"bq_ingest_notifications_total{front_end="http",outcome="malformed"}"#.to_string(), 1.0),
        (r#"bq_ingest_handle_duration_seconds_count{front_end="push"}"#.to_string(), 2.0),
        // The batch loads once. Each delivery that sees it end writes its done row (BigQuery
        // drops the repeat by insertId) and counts it: the duplicate, which did not plan the
        // batch, without its table.
        (r#"bq_ingest_jobs_submitted_total{kind="load",retry="false"}"#.to_string(), 1.0),
        (format!(r#"bq_ingest_batches_total{{state="done",table="{table}"}}"#), 1.0),
        (r#"bq_ingest_batches_total{state="done",table=""}"#.to_string(), 1.0),
        ("bq_ingest_marker_to_done_seconds_count".to_string(), 2.0),
        (
            r#"bq_ingest_google_requests_total{service="bigquery",method="jobs.insert",status_class="2xx"}"#
                .to_string(),
            1.0,
        ),
        (r#"bq_ingest_build_info{version="0.1.0"}"#.to_string(), 1.0),
    ];
    for (series, want) in expect {
        assert_eq!(value(&m, &series), want, "{series}\n{page}");
    }
    assert!(
        value(
            &m,
            r#"bq_ingest_google_requests_total{service="storage",method="objects.list",status_class="2xx"}"#
        ) >= 1.0,
        "{page}"
    );
    assert_eq!(
        value(
            &m,
            r#"bq_ingest_state_row_write_failures_total{transient="true"}"#
        ),
        0.0
    );
    // No series names an object.
    assert!(
        !page.contains("_SUCCESS") && !page.contains("part-m-"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_serves_metrics_on_its_health_port() {
    let Some(t) = TestCase::new("metrics_pull").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let port = free_port().to_string();
    let service = t.spawn_service(Mode::Pull, &[("HEALTH_PORT", &port)]).await;
    t.upload_dir("nation", testdata("nation")).await;
    let outcomes = service
        .wait_for_outcomes(&t.uri("nation/_SUCCESS"), 1, TIMEOUT)
        .await;
    assert_eq!(outcomes[0]["outcome"], "done", "{outcomes:?}");

    let url = format!("http://127.0.0.1:{port}/metrics");
    let (page, m) = scrape(&t, &url).await;
    assert_eq!(
        value(
            &m,
            r#"bq_ingest_notifications_total{front_end="pull",outcome="done"}"#
        ),
        1.0,
        "{page}"
    );
    assert!(
        value(
            &m,
            r#"bq_ingest_notifications_total{front_end="pull",outcome="ignored"}"#
        ) >= 2.0,
        "{page}"
    );
    assert_eq!(
        value(
            &m,
            r#"bq_ingest_jobs_submitted_total{kind="load",retry="false"}"#
        ),
        1.0,
        "{page}"
    );
    // Without METRICS_TABLE_LABELS, batches carry no table.
    assert_eq!(
        value(&m, r#"bq_ingest_batches_total{state="done",table=""}"#),
        1.0,
        "{page}"
    );
    assert!(
        value(
            &m,
            r#"bq_ingest_google_requests_total{service="pubsub",method="subscriptions.pull",status_class="2xx"}"#
        ) >= 1.0,
        "{page}"
    );
    assert!(
        !page.contains("nation"),
        "no table names without METRICS_TABLE_LABELS:\n{page}"
    );
}
