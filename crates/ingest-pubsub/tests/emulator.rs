//! `ingest-pubsub` against Google's Pub/Sub emulator (`PUBSUB_EMULATOR_HOST`), with the
//! in-memory store and warehouse behind the ingestor.
//!
//! Start the emulators first: `eval "$(scripts/dev-stack.sh up)"` (the project's test script
//! does it). Each test creates its own topic and subscription (ack deadline 10 s, the minimum).
//! "Everything was acknowledged" is checked through a snapshot of the subscription, which keeps
//! exactly the unacknowledged messages, leased or not: waiting for redeliveries would need
//! more than the ack deadline, twice when an abandoned pull request takes one first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ingest_core::decorators::{Fault, FaultyWarehouse, WarehouseMethod};
use ingest_core::event::{ObjectEvent, PubsubMessage};
use ingest_core::ingest::Ingestor;
use ingest_core::notification::parse_pubsub_message;
use ingest_core::ports::{Clock, Warehouse, WarehouseError};
use ingest_core::settings::Settings;
use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
use ingest_pubsub::{
    ensure_subscription_with_deadline, ensure_topic, ConsumerConfig, Publisher, PubsubClient,
    PullConsumer, RunStats,
};

const SKIP_VAR: &str = "BQ_INGEST_SKIP_EMULATOR_TESTS";
/// How long a test waits for the consumer to reach the expected counts.
const PATIENCE: Duration = Duration::from_secs(30);
const BUCKET: &str = "ingest-bucket";

/// Whether the emulator is there; fails the test when it is not, unless skipping was asked for.
fn emulator_available() -> bool {
    if std::env::var("PUBSUB_EMULATOR_HOST").is_ok_and(|v| !v.is_empty()) {
        return true;
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("skipped: PUBSUB_EMULATOR_HOST is not set and {SKIP_VAR}=1");
        return false;
    }
    panic!(
        "PUBSUB_EMULATOR_HOST is not set: run the project's test script, or start the emulators \
         with `eval \"$(scripts/dev-stack.sh up)\"` and run the tests again \
         (set {SKIP_VAR}=1 to skip the emulator tests)"
    );
}

fn project() -> String {
    std::env::var("GOOGLE_CLOUD_PROJECT")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "local-project".to_string())
}

/// A name no other test (or run) uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A client, and a fresh topic with a pull subscription on it (ack deadline 10 s).
struct Fixture {
    client: PubsubClient,
    topic: String,
    subscription: String,
    /// A second subscription on the topic, never pulled but by [`Fixture::unacked_messages`].
    probe: String,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        let client = PubsubClient::connect(Some(&project()))
            .await
            .expect("connect to the Pub/Sub emulator");
        let topic = unique(&format!("t-{test}"));
        let subscription = unique(&format!("s-{test}"));
        assert!(ensure_topic(&client, &topic).await.expect("create topic"));
        assert!(!ensure_topic(&client, &topic).await.expect("topic exists"));
        assert!(
            ensure_subscription_with_deadline(&client, &subscription, &topic, None, 10)
                .await
                .expect("create subscription")
        );
        let probe = unique(&format!("p-{test}"));
        ensure_subscription_with_deadline(&client, &probe, &topic, None, 10)
            .await
            .expect("create probe subscription");
        Fixture {
            client,
            topic,
            subscription,
            probe,
        }
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(&self.client, &self.topic)
    }

    fn consumer(&self, ingestor: Arc<Ingestor>) -> PullConsumer {
        PullConsumer::new(
            &self.client,
            &self.subscription,
            ingestor,
            ConsumerConfig {
                shutdown_grace: Duration::from_secs(10),
                ..ConsumerConfig::default()
            },
        )
    }

    /// Pulls (and acks) from `subscription` for `wait` and returns every message that arrives.
    async fn pull_for(&self, subscription: &str, wait: Duration) -> Vec<PubsubMessage> {
        let end = Instant::now() + wait;
        let mut received = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, self.client.pull(subscription, 10)).await {
                Err(_) => break,
                Ok(Ok(messages)) if messages.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Ok(messages)) => {
                    let ack_ids: Vec<&str> = messages.iter().map(|m| m.ack_id.as_str()).collect();
                    let _ = self.client.acknowledge(subscription, &ack_ids).await;
                    received.extend(messages.into_iter().map(|m| m.message));
                }
                Ok(Err(e)) => panic!("pull from {subscription}: {e}"),
            }
        }
        received
    }

    /// Every message of the subscription not acknowledged yet, whether in its backlog or
    /// leased to some puller (even one that went away): a snapshot of the subscription keeps
    /// exactly those, and the probe subscription sought to it delivers them at once. (The
    /// emulator only delivers to a subscription the messages published after it was created,
    /// hence a probe made up front.) Snapshots are not part of the adapter: plain REST here.
    async fn unacked_messages(&self) -> Vec<PubsubMessage> {
        let host = std::env::var("PUBSUB_EMULATOR_HOST").expect("emulator host");
        let base = format!("http://{}/v1", host.trim_start_matches("http://"));
        let http = ingest_google::reqwest::Client::new();
        let snapshot = format!("projects/{}/snapshots/{}", project(), unique("snap"));
        let subscription = self.client.subscription_name(&self.subscription);
        let probe = self.client.subscription_name(&self.probe);
        let created = http
            .put(format!("{base}/{snapshot}"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "subscription": subscription }).to_string())
            .send()
            .await
            .expect("create snapshot");
        assert!(
            created.status().is_success(),
            "create snapshot: {}",
            created.status()
        );
        let sought = http
            .post(format!("{base}/{probe}:seek"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "snapshot": snapshot }).to_string())
            .send()
            .await
            .expect("seek to snapshot");
        assert!(sought.status().is_success(), "seek: {}", sought.status());
        let left = self.pull_for(&self.probe, Duration::from_secs(3)).await;
        let _ = http.delete(format!("{base}/{snapshot}")).send().await;
        left
    }

    /// Asserts that every message published so far was acknowledged.
    async fn assert_all_acked(&self) {
        let left = self.unacked_messages().await;
        assert!(
            left.is_empty(),
            "{} has {} unacknowledged message(s): {left:?}",
            self.subscription,
            left.len()
        );
    }
}

/// An ingestor over the memory doubles with virtual time.
fn ingestor(store: &Arc<MemoryStore>, warehouse: &Arc<MemoryWarehouse>) -> Arc<Ingestor> {
    ingestor_over(store, warehouse.clone())
}

/// An ingestor over the memory store and any warehouse, with virtual time.
fn ingestor_over(store: &Arc<MemoryStore>, warehouse: Arc<dyn Warehouse>) -> Arc<Ingestor> {
    let settings = Settings {
        bq_project: Some("test-project".to_string()),
        ..Settings::default()
    };
    Arc::new(Ingestor::new(
        settings,
        store.clone(),
        warehouse,
        Arc::new(MemoryClock::new()),
    ))
}

/// Runs the consumer until `done` holds for its counts (or [`PATIENCE`] runs out), then shuts
/// it down and returns what `run` returned.
async fn run_until(consumer: &PullConsumer, done: impl Fn(&RunStats) -> bool) -> RunStats {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = async {
        let start = Instant::now();
        while !done(&consumer.stats()) && start.elapsed() < PATIENCE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(
        consumer.run(async {
            let _ = stopped.await;
        }),
        watcher
    );
    result.expect("consumer run")
}

async fn publish_all(publisher: &Publisher, events: &[ObjectEvent]) {
    for event in events {
        publisher
            .publish_object_event(event)
            .await
            .unwrap_or_else(|e| panic!("publish {}: {e}", event.uri()));
    }
}

/// A batch `ds/t/` with two data files and its `_SUCCESS`, in a memory store.
fn batch_store() -> (Arc<MemoryStore>, Vec<ObjectEvent>) {
    let store = Arc::new(MemoryStore::new());
    store.create_bucket(BUCKET);
    let part0 = store.insert(BUCKET, "ds/t/part-0.csv", b"1,a\n2,b\n".to_vec());
    let part1 = store.insert(BUCKET, "ds/t/part-1.csv", b"3,c\n".to_vec());
    let marker = store.insert(BUCKET, "ds/t/_SUCCESS", Vec::new());
    let events = vec![
        ObjectEvent::finalized(BUCKET, "ds/t/part-0.csv", part0.generation),
        ObjectEvent::finalized(BUCKET, "ds/t/part-1.csv", part1.generation),
        ObjectEvent::finalized(BUCKET, "ds/t/_SUCCESS", marker.generation),
    ];
    (store, events)
}

#[tokio::test]
async fn a_batch_and_two_data_files_make_one_job_and_are_all_acked() {
    if !emulator_available() {
        return;
    }
    let fixture = Fixture::new("batch").await;
    let (store, events) = batch_store();
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    let consumer = fixture.consumer(ingestor(&store, &warehouse));
    let publisher = fixture.publisher();
    publish_all(&publisher, &events).await;

    let stats = run_until(&consumer, |s| s.acked + s.nacked >= 3).await;

    assert_eq!(stats.received, 3, "{stats:?}");
    assert_eq!((stats.done, stats.ignored), (1, 2), "{stats:?}");
    assert_eq!((stats.acked, stats.nacked), (3, 0), "{stats:?}");
    let jobs = warehouse.submitted();
    assert_eq!(jobs.len(), 1, "exactly one job: {jobs:?}");
    fixture.assert_all_acked().await;
    publisher.shutdown().await;
}

/// A `MakeWriter` that keeps everything logged.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test]
async fn a_malformed_message_is_logged_and_acked_not_redelivered() {
    if !emulator_available() {
        return;
    }
    // A current-thread runtime: every task of the test sees this thread's log subscriber.
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let fixture = Fixture::new("malformed").await;
    let store = Arc::new(MemoryStore::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    let consumer = fixture.consumer(ingestor(&store, &warehouse));
    let publisher = fixture.publisher();
    let attributes: BTreeMap<String, String> = [
        ("objectId", "ds/t/_SUCCESS"),
        ("eventType", "OBJECT_FINALIZE"),
        ("payloadFormat", "JSON_API_V1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let message_id = publisher
        .publish_raw(
            attributes,
            br#"{"kind": "storage#object", "name": "ds/t/_SUCCESS"}"#.to_vec(),
        )
        .await
        .expect("publish");

    let stats = run_until(&consumer, |s| s.acked + s.nacked >= 1).await;

    assert_eq!(
        (stats.received, stats.malformed, stats.acked, stats.nacked),
        (1, 1, 1, 0),
        "{stats:?}"
    );
    assert!(warehouse.submitted().is_empty());
    let logged = logs.text();
    let line = logged
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&message_id))
        .unwrap_or_else(|| panic!("no ERROR line names message {message_id}:\n{logged}"));
    assert!(line.contains("missing bucketId"), "{line}");
    assert!(line.contains("objectId"), "attributes are logged: {line}");
    assert!(
        line.contains(r#"{"kind": "storage#object""#),
        "data prefix is logged: {line}"
    );
    fixture.assert_all_acked().await;
    publisher.shutdown().await;
}

#[tokio::test]
async fn a_transient_warehouse_error_is_nacked_redelivered_then_done() {
    if !emulator_available() {
        return;
    }
    let fixture = Fixture::new("transient").await;
    let (store, events) = batch_store();
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    let faulty = Arc::new(FaultyWarehouse::new(warehouse.clone()));
    faulty.inject(
        WarehouseMethod::Submit,
        Fault::Fail(WarehouseError::Transient {
            what: "job load-1".to_string(),
            message: "503 backendError".to_string(),
        }),
    );
    let consumer = fixture.consumer(ingestor_over(&store, faulty));
    let publisher = fixture.publisher();
    publish_all(&publisher, &events[2..]).await;

    let stats = run_until(&consumer, |s| s.done >= 1).await;

    assert_eq!(stats.transient_errors, 1, "{stats:?}");
    assert_eq!(stats.received, 2, "delivered twice: {stats:?}");
    assert_eq!(
        (stats.done, stats.acked, stats.nacked),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(warehouse.submitted().len(), 1, "one job");
    fixture.assert_all_acked().await;
    publisher.shutdown().await;
}

#[tokio::test]
async fn shutdown_while_idle_returns_promptly() {
    if !emulator_available() {
        return;
    }
    let fixture = Fixture::new("idle").await;
    let store = Arc::new(MemoryStore::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    let consumer = fixture.consumer(ingestor(&store, &warehouse));

    // Generous bound: what matters is that a pending pull does not hold the shutdown up.
    let stats = tokio::time::timeout(
        Duration::from_secs(5),
        consumer.run(tokio::time::sleep(Duration::from_millis(300))),
    )
    .await
    .expect("run returns soon after the shutdown signal")
    .expect("run succeeds");
    assert_eq!(stats, RunStats::default());
}

#[tokio::test]
async fn a_missing_subscription_stops_the_run_with_not_found() {
    if !emulator_available() {
        return;
    }
    let client = PubsubClient::connect(Some(&project()))
        .await
        .expect("connect");
    let store = Arc::new(MemoryStore::new());
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    let missing = unique("s-missing");
    let consumer = PullConsumer::new(
        &client,
        &missing,
        ingestor(&store, &warehouse),
        ConsumerConfig::default(),
    );
    let error = tokio::time::timeout(PATIENCE, consumer.run(std::future::pending::<()>()))
        .await
        .expect("run stops")
        .expect_err("no such subscription");
    assert!(error.is_not_found(), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains(&missing), "{error}");
}

#[tokio::test]
async fn published_object_events_arrive_as_gcs_would_send_them() {
    if !emulator_available() {
        return;
    }
    let fixture = Fixture::new("wire").await;
    let publisher = fixture.publisher();
    let mut event = ObjectEvent::finalized(BUCKET, "ds/t/2020/10/26/_SUCCESS", 1_603_670_400_123);
    event.size = Some(0);
    let without_time = event.clone();
    event.event_time = Some(chrono::DateTime::from_timestamp(1_603_670_400, 0).expect("time"));
    publish_all(&publisher, &[event.clone(), without_time.clone()]).await;
    let mut body = BTreeMap::new();
    body.insert("state".to_string(), "failed".to_string());
    publisher
        .publish_json(body, &serde_json::json!({"marker": event.uri()}))
        .await
        .expect("publish json");

    let mut received = Vec::new();
    let start = Instant::now();
    while received.len() < 3 && start.elapsed() < PATIENCE {
        received.extend(
            fixture
                .pull_for(&fixture.subscription, Duration::from_secs(1))
                .await,
        );
    }
    assert_eq!(received.len(), 3, "{received:?}");
    let mut parsed_events = Vec::new();
    let mut json = None;
    for message in &received {
        if message.attributes.contains_key("state") {
            json = Some(message.clone());
            continue;
        }
        assert_eq!(message.attributes["payloadFormat"], "JSON_API_V1");
        assert!(message.attributes.contains_key("eventTime"), "{message:?}");
        parsed_events.push(parse_pubsub_message(message).expect("parses"));
    }
    assert!(parsed_events.contains(&event), "{parsed_events:?}");
    let stamped = parsed_events
        .iter()
        .find(|e| **e != event)
        .expect("the event published without a time");
    assert!(stamped.event_time.is_some(), "given the publish time");
    assert_eq!(
        ObjectEvent {
            event_time: None,
            ..stamped.clone()
        },
        without_time
    );
    let json = json.expect("the JSON message");
    let value: serde_json::Value = serde_json::from_slice(&json.data).expect("JSON data");
    assert_eq!(value["marker"], event.uri());
    publisher.shutdown().await;
}

/// Real time, for the test whose handler has to outlive the ack deadline.
#[derive(Debug)]
struct TokioClock;

#[async_trait::async_trait]
impl Clock for TokioClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[tokio::test]
async fn the_lease_is_extended_while_a_message_is_handled() {
    if !emulator_available() {
        return;
    }
    let fixture = Fixture::new("lease").await;
    let (store, events) = batch_store();
    let warehouse = Arc::new(MemoryWarehouse::with_store(store.clone()));
    // The job reports running for 8 polls: with the ingestor's poll delays (50 ms doubling,
    // at most 5 s) that is about 11 s of real time, past the subscription's 10 s ack deadline.
    warehouse.set_job_duration(8);
    let settings = Settings {
        bq_project: Some("test-project".to_string()),
        ..Settings::default()
    };
    let ingestor = Arc::new(Ingestor::new(
        settings,
        store.clone(),
        warehouse.clone(),
        Arc::new(TokioClock),
    ));
    let consumer = fixture.consumer(ingestor);
    let publisher = fixture.publisher();
    publish_all(&publisher, &events[2..]).await;

    let started = Instant::now();
    let stats = run_until(&consumer, |s| s.done >= 1).await;

    assert!(
        started.elapsed() > Duration::from_secs(10),
        "the job outlived the ack deadline"
    );
    assert!(stats.lease_extensions >= 1, "{stats:?}");
    assert_eq!(
        (stats.received, stats.done, stats.acked),
        (1, 1, 1),
        "not redelivered while handled: {stats:?}"
    );
    assert_eq!(warehouse.submitted().len(), 1);
    publisher.shutdown().await;
}

#[tokio::test]
async fn concurrent_publications_share_few_requests_and_all_arrive() {
    use futures::StreamExt as _;
    if !emulator_available() {
        return;
    }
    let fixture = Fixture::new("batching").await;
    let publisher = fixture.publisher();
    let counters = fixture.client.google_client().counters().clone();
    let before = counters.snapshot();
    let events: Vec<ObjectEvent> = (0..250)
        .map(|i| ObjectEvent::finalized(BUCKET, &format!("ds/t/part-{i}.csv"), i + 1))
        .collect();
    let ids: Vec<String> = futures::stream::iter(&events)
        .map(|event| publisher.publish_object_event(event))
        .buffer_unordered(250)
        .map(|r| r.expect("publish"))
        .collect()
        .await;
    let requests = counters.snapshot().since(&before);
    let publishes = requests.calls(ingest_pubsub::operations::PUBLISH);
    assert!(
        (3..=10).contains(&publishes),
        "250 messages in batches of at most 100 make 3 or a few more requests, not {publishes}"
    );
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 250, "every message has its own id");

    let mut objects = BTreeSet::new();
    let end = Instant::now() + PATIENCE;
    while objects.len() < 250 && Instant::now() < end {
        for message in fixture
            .pull_for(&fixture.subscription, Duration::from_secs(1))
            .await
        {
            let event = parse_pubsub_message(&message).expect("a GCS notification");
            objects.insert(event.name);
        }
    }
    assert_eq!(objects.len(), 250, "every published event arrives once");
    publisher.clone().shutdown().await;
    let error = publisher
        .publish_object_event(&events[0])
        .await
        .expect_err("a shut-down publisher publishes nothing");
    assert!(error.to_string().contains("shut down"), "{error}");
}
