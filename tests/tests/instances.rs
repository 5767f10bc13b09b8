//! Several `bq-ingest pull` processes on one subscription (issue 12, §5), as Cloud Run scales
//! bq-ingest: three unordered tables and one ordered table, five batches each, every
//! notification delivered twice (the bucket's and a duplicate), one instance SIGKILLed midway
//! and a third started. Every batch loads exactly once, the ordered table in order, and no
//! lock or backlog is left behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use bq_ingest_e2e::{testdata, Mode, Service, TestCase};
use ingest_core::ports::{ObjectStore, StoreError};
use serde_json::Value;

/// Long enough for the killed instance's messages to come back after their ack deadline (60 s).
const TIMEOUT: Duration = Duration::from_secs(240);
const UNORDERED: [&str; 3] = ["t1", "t2", "t3"];
const ORDERED: &str = "ord";
const BATCHES: usize = 5;

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn exists(t: &TestCase, relative: &str) -> bool {
    match t.stack.store.stat(t.bucket(), &t.object(relative)).await {
        Ok(_) => true,
        Err(StoreError::NotFound { .. }) => false,
        Err(e) => panic!("stat {}: {e}", t.uri(relative)),
    }
}

/// The ordered batches the services logged as applied, in time order across all of them.
fn applied_in_order(services: &[&Service]) -> Vec<String> {
    let mut lines: Vec<(String, String)> = services
        .iter()
        .flat_map(|s| s.log_lines())
        .filter(|l| Service::message(l).starts_with("applied "))
        .filter_map(|l| {
            let item = l["item"].as_str()?.to_string();
            let batch = item
                .split("/_backlog/")
                .nth(1)?
                .split('/')
                .next()?
                .to_string();
            Some((l["time"].as_str()?.to_string(), batch))
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, batch)| batch).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_pull_instances_load_every_batch_once_and_in_order() {
    let Some(t) = TestCase::new("instances").await else {
        return;
    };
    for table in UNORDERED.iter().chain([&ORDERED]) {
        t.create_table(table, testdata("ordering_schema.json"))
            .await;
    }
    t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec())
        .await;
    t.upload(&format!("{ORDERED}/_config/ORDERME"), Vec::new())
        .await;
    let env = [("START_BACKFILL_FILENAME", "_HISTORYDONE")];
    let mut first = t.spawn_service(Mode::Pull, &env).await;
    let second = t.spawn_service(Mode::Pull, &env).await;

    // 20 batches, each notified twice: by the bucket and by a duplicate publication.
    for i in 1..=BATCHES {
        for table in UNORDERED.iter().chain([&ORDERED]) {
            let dir = format!("{table}/{i:02}");
            t.upload(
                &format!("{dir}/data.csv"),
                format!("{i}|{table}\n").into_bytes(),
            )
            .await;
            let marker = t.upload(&format!("{dir}/_SUCCESS"), Vec::new()).await;
            t.publish_object_event(&marker).await;
        }
    }
    // Midway: one instance dies without a word; a third one joins.
    wait_until("a few batches done", || async {
        first.log_matching(|l| l["outcome"] == "done").len() >= 3
    })
    .await;
    first.sigkill();
    let third = t.spawn_service(Mode::Pull, &env).await;
    // The ordered table's history is complete: open its gate.
    wait_until("the ordered backlog complete", || async {
        let items = t
            .stack
            .store
            .list(
                t.bucket(),
                &t.object(&format!("{ORDERED}/_backlog/")),
                None,
                None,
            )
            .await
            .map(|p| p.objects.len())
            .unwrap_or(0);
        items == BATCHES
    })
    .await;
    t.upload(&format!("{ORDERED}/_HISTORYDONE"), Vec::new())
        .await;

    wait_until("every table loaded", || async {
        let mut all = true;
        for table in UNORDERED.iter().chain([&ORDERED]) {
            all &= t.count(table).await as usize >= BATCHES;
        }
        all && !exists(&t, &format!("{ORDERED}/_bqlock")).await
            && !exists(&t, &format!("{ORDERED}/_BACKFILL")).await
    })
    .await;
    // Settle: late duplicates and the killed instance's redeliveries are handled too.
    tokio::time::sleep(Duration::from_secs(3)).await;

    for table in UNORDERED.iter().chain([&ORDERED]) {
        assert_eq!(
            t.count(table).await as usize,
            BATCHES,
            "{table}: each batch once"
        );
    }
    let jobs = t.jobs().await;
    let mut loads_per_batch: BTreeMap<String, usize> = BTreeMap::new();
    for job in jobs.iter().filter(|j| j.error.is_none()) {
        let uris = job.raw["configuration"]["load"]["sourceUris"].to_string();
        *loads_per_batch.entry(uris).or_default() += 1;
    }
    assert_eq!(loads_per_batch.len(), 4 * BATCHES, "{loads_per_batch:#?}");
    assert!(
        loads_per_batch.values().all(|n| *n == 1),
        "{loads_per_batch:#?}"
    );
    let failed: Vec<_> = jobs.iter().filter(|j| j.error.is_some()).collect();
    assert!(failed.is_empty(), "no job failed: {failed:#?}");
    let order = applied_in_order(&[&first, &second, &third]);
    let expected: Vec<String> = (1..=BATCHES).map(|i| format!("{i:02}")).collect();
    assert_eq!(
        order, expected,
        "the ordered table in order, each batch once"
    );
    assert!(!exists(&t, &format!("{ORDERED}/_bqlock")).await);
    let rows: Vec<Value> = t.state_rows().await;
    assert!(
        rows.iter().all(|r| r["state"] != "failed"),
        "no batch failed: {rows:#?}"
    );
}
