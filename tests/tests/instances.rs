//! Several bq-ingest instances on one subscription (issue 12, §5), as Cloud Run scales
//! bq-ingest: two and four `bq-ingest pull` processes on one pull subscription, and two `bq-ingest
//! serve` instances behind one push subscription (a round-robin [`Balancer`] in front, as Cloud
//! Run's front end). Each scenario has unordered tables and one ordered table, 20 batches each,
//! every notification delivered twice (the bucket's and a duplicate), and one instance
//! SIGKILLed midway. Every batch loads exactly once, the ordered table in order, no job fails,
//! and no lock or backlog is left behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use bq_ingest_e2e::{free_port, testdata, Balancer, Mode, Service, TestCase};
use ingest_core::ports::{ObjectStore, StoreError};
use serde_json::Value;

/// Long enough for the killed instance's messages to come back after their ack deadline (60 s).
const TIMEOUT: Duration = Duration::from_secs(300);
const UNORDERED: [&str; 3] = ["t1", "t2", "t3"];
const ORDERED: &str = "ord";
const BATCHES: usize = 20;
/// The ordered table waits for its history (all its batches) before it is applied.
const GATE: (&str, &str) = ("START_BACKFILL_FILENAME", "_HISTORYDONE");

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

/// The batches of the ordered table that the services logged as applied, in time order across
/// all of them.
fn applied_in_order(services: &[Service]) -> Vec<String> {
    let marker = format!("/{ORDERED}/_backlog/");
    let mut lines: Vec<(String, String)> = services
        .iter()
        .flat_map(|s| s.log_lines())
        .filter(|l| Service::message(l).starts_with("applied "))
        .filter_map(|l| {
            let item = l["item"].as_str()?.to_string();
            let batch = item.split(&marker).nth(1)?.split('/').next()?.to_string();
            Some((l["time"].as_str()?.to_string(), batch))
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, batch)| batch).collect()
}

/// How the instances receive the notifications.
#[derive(Debug, Clone, Copy)]
enum Front {
    /// `pull` processes on the test's pull subscription; a new one joins after the kill.
    Pull,
    /// `serve` instances behind a balancer on the push subscription's endpoint.
    Push,
}

/// The instances of a scenario, and the balancer in front of `serve` ones.
struct Instances {
    services: Vec<Service>,
    balancer: Option<Balancer>,
}

async fn start_instances(t: &TestCase, front: Front, count: usize) -> Instances {
    let mut services = Vec::new();
    match front {
        Front::Pull => {
            for _ in 0..count {
                services.push(t.spawn_service(Mode::Pull, &[GATE]).await);
            }
            Instances {
                services,
                balancer: None,
            }
        }
        Front::Push => {
            let mut upstreams = Vec::new();
            for _ in 0..count {
                let port = free_port();
                services.push(t.spawn_serve_on(port, &[GATE]).await);
                upstreams.push(format!("http://127.0.0.1:{port}"));
            }
            let port = t.push_port().expect("a push subscription");
            let balancer = Balancer::start(port, upstreams).await;
            Instances {
                services,
                balancer: Some(balancer),
            }
        }
    }
}

/// The whole scenario with `count` instances behind `front`.
async fn several_instances(name: &str, front: Front, count: usize) {
    let Some(t) = TestCase::new(name).await else {
        return;
    };
    let t = match front {
        Front::Pull => t,
        Front::Push => t.with_push().await,
    };
    let tables: Vec<&str> = UNORDERED.iter().copied().chain([ORDERED]).collect();
    for table in &tables {
        t.create_table(table, testdata("ordering_schema.json"))
            .await;
    }
    t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec())
        .await;
    t.upload(&format!("{ORDERED}/_config/ORDERME"), Vec::new())
        .await;
    let mut instances = start_instances(&t, front, count).await;

    // Every batch notified twice: by the bucket and by a duplicate publication.
    for i in 1..=BATCHES {
        for table in &tables {
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
    // Midway: one instance dies without a word; with pull, a new one joins.
    wait_until("a few batches done", || async {
        instances.services[0]
            .log_matching(|l| l["outcome"] == "done")
            .len()
            >= 3
    })
    .await;
    instances.services[0].sigkill();
    if let Front::Pull = front {
        instances
            .services
            .push(t.spawn_service(Mode::Pull, &[GATE]).await);
    }
    // The ordered table's history is complete: open its gate.
    wait_until("the ordered backlog complete", || async {
        t.count_objects(&format!("{ORDERED}/_backlog/")).await == BATCHES
    })
    .await;
    t.upload(&format!("{ORDERED}/_HISTORYDONE"), Vec::new())
        .await;

    wait_until("every table loaded", || async {
        let mut all = true;
        for table in &tables {
            all &= t.count(table).await as usize >= BATCHES;
        }
        all && !exists(&t, &format!("{ORDERED}/_bqlock")).await
            && !exists(&t, &format!("{ORDERED}/_BACKFILL")).await
    })
    .await;
    // Settle: late duplicates and the killed instance's redeliveries are handled too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_exactly_once(&t, &tables, &instances.services).await;
    // Deliveries of markers (not of data files, which every instance is sent): `done`,
    // `queued` behind an ordered table's lock, a backlog run.
    let handled: Vec<usize> = instances
        .services
        .iter()
        .map(|s| {
            s.log_matching(|l| l["outcome"].is_string() && l["outcome"] != "ignored")
                .len()
        })
        .collect();
    println!(
        "{name}: marker deliveries per instance (the first one killed, then any that joined \
         after it): {handled:?}"
    );
    // The instances that ran from the start shared the work. One that joined after the kill
    // may find nothing left to pull (seen with four pulls), which is not a fault.
    assert!(
        handled[..count].iter().all(|n| *n > 0),
        "every instance that ran from the start took work: {handled:?}"
    );
    if let Some(balancer) = &instances.balancer {
        let forwarded = balancer.forwarded();
        assert!(forwarded.iter().all(|n| *n > 0), "{forwarded:?}");
    }
}

/// Each batch loaded by one job, no job failed, the ordered table in order, nothing left.
async fn assert_exactly_once(t: &TestCase, tables: &[&str], services: &[Service]) {
    for table in tables {
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
    assert_eq!(
        loads_per_batch.len(),
        tables.len() * BATCHES,
        "{loads_per_batch:#?}"
    );
    assert!(
        loads_per_batch.values().all(|n| *n == 1),
        "{loads_per_batch:#?}"
    );
    let failed: Vec<_> = jobs.iter().filter(|j| j.error.is_some()).collect();
    assert!(failed.is_empty(), "no job failed: {failed:#?}");
    let expected: Vec<String> = (1..=BATCHES).map(|i| format!("{i:02}")).collect();
    assert_eq!(
        applied_in_order(services),
        expected,
        "the ordered table in order, each batch once"
    );
    assert!(!exists(t, &format!("{ORDERED}/_bqlock")).await);
    let rows: Vec<Value> = t.state_rows().await;
    assert!(
        rows.iter().all(|r| r["state"] != "failed"),
        "no batch failed: {rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pull_instances_load_every_batch_once_and_in_order() {
    several_instances("instances_pull2", Front::Pull, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_pull_instances_load_every_batch_once_and_in_order() {
    several_instances("instances_pull4", Front::Pull, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_instances_behind_one_push_subscription_load_every_batch_once() {
    several_instances("instances_push2", Front::Push, 2).await;
}
