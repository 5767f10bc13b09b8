//! Failure handling through the real service (issue 5): a batch BigQuery rejects is announced on
//! `FAILURE_TOPIC` with everything needed to replay it, besides its state-table row.

use std::time::{Duration, Instant};

use base64::Engine;
use bq_ingest_e2e::{testdata, Mode, TestCase};
use serde_json::{json, Value};

const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_published_on_the_failure_topic() {
    let Some(t) = TestCase::new("failure_topic").await else {
        return;
    };
    let http = &t.stack.http;
    let root = t.stack.pubsub_url();
    let topic = format!("failures-{}", t.dataset);
    let subscription = format!("failures-sub-{}", t.dataset);
    let put = |url: String, body: Value| async move {
        let response = http
            .put(url.as_str())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        assert!(
            response.status().is_success(),
            "PUT {url}: {}",
            response.status()
        );
    };
    put(format!("{root}/topics/{topic}"), json!({})).await;
    put(
        format!("{root}/subscriptions/{subscription}"),
        json!({"topic": format!("projects/{}/topics/{topic}", t.stack.project), "ackDeadlineSeconds": 10}),
    )
    .await;

    // N_NAME as INT64: "ALGERIA" cannot be loaded into it.
    t.create_table_json(
        "nation",
        r#"[{"name": "N_NATIONKEY", "type": "INT64"}, {"name": "N_NAME", "type": "INT64"},
            {"name": "N_REGIONKEY", "type": "INT64"}, {"name": "N_COMMENT", "type": "STRING"}]"#,
    )
    .await;
    t.upload("_config/load.json", PIPE).await;
    let _service = t
        .spawn_service(Mode::Pull, &[("FAILURE_TOPIC", topic.as_str())])
        .await;
    t.upload_dir("nation", testdata("nation")).await;
    let marker = t.object("nation/_SUCCESS");

    // The announcement arrives on the failure topic.
    let deadline = Instant::now() + Duration::from_secs(60);
    let message = loop {
        let response: Value = http
            .post(format!("{root}/subscriptions/{subscription}:pull"))
            .header("Content-Type", "application/json")
            .body(json!({"maxMessages": 10}).to_string())
            .send()
            .await
            .expect("pull the failure subscription")
            .json()
            .await
            .expect("pull answer");
        if let Some(m) = response["receivedMessages"]
            .as_array()
            .and_then(|a| a.first())
        {
            break m["message"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no failure announced on {topic} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let attributes = &message["attributes"];
    assert_eq!(attributes["eventType"], "BQ_INGEST_FAILURE");
    assert_eq!(attributes["bucketId"], t.bucket());
    assert_eq!(attributes["objectId"], marker.as_str());
    let data = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().unwrap_or_default())
        .expect("base64 data");
    let report: Value = serde_json::from_slice(&data).expect("JSON report");
    assert_eq!(report["bucket"], t.bucket());
    assert_eq!(report["object"], marker.as_str());
    assert!(
        report["generation"].as_i64().unwrap_or_default() > 0,
        "{report}"
    );
    assert_eq!(
        report["job_ids"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains(&t.uri("nation/_SUCCESS")), "{error}");
    assert!(
        report["replay"]
            .as_str()
            .unwrap_or_default()
            .contains("re-upload"),
        "{report}"
    );
    assert!(
        report["destination"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("{}.nation", t.dataset)),
        "{report}"
    );
}
