//! Many tables at once (issue 12, §4), through one `bq-ingest pull` (its default
//! `--concurrency 8`) on the emulators: `MANY_TABLES` unordered tables (default 100;
//! `scripts/bench-many-tables.sh` runs more) each receiving one batch at the same moment, and
//! `MANY_ORDERED` ordered tables (default 10) each with a backlog of three
//! batches released at the same moment, one of them with a batch that fails. Every batch loads
//! exactly once, every healthy ordered table drains in order while the failed one stays
//! stopped, and the consumer's peak RSS is reported.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use bq_ingest_e2e::{testdata, Mode, Service, TestCase};
use futures::StreamExt;
use ingest_core::ports::{ObjectStore, StoreError};

/// How long each wait may take at least; larger runs get two seconds per batch (the emulator
/// loads 0.4 to 1.3 batches a second, slower as it holds more tables).
const TIMEOUT: Duration = Duration::from_secs(900);
const ORDERED_BATCHES: usize = 3;
/// The ordered table whose second batch does not fit its schema.
const BROKEN: &str = "ord000";
/// Uploads, table creations and queries in flight at once.
const SETUP_CONCURRENCY: usize = 16;

fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, service: &Service, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; service log:\n{}",
            service.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `f` over `items`, `SETUP_CONCURRENCY` at a time.
async fn each<T, F, Fut>(items: impl IntoIterator<Item = T>, f: F)
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()>,
{
    futures::stream::iter(items)
        .map(f)
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

async fn exists(t: &TestCase, relative: &str) -> bool {
    match t.stack.store.stat(t.bucket(), &t.object(relative)).await {
        Ok(_) => true,
        Err(StoreError::NotFound { .. }) => false,
        Err(e) => panic!("stat {}: {e}", t.uri(relative)),
    }
}

/// CPU time (user + system) of a running process so far, seconds (`/proc/<pid>/stat`, at the
/// usual 100 ticks a second).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak RSS of a running process, MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tables_at_once_load_exactly_once() {
    let Some(t) = TestCase::new("many_tables").await else {
        return;
    };
    let unordered: Vec<String> = (0..count_from_env("MANY_TABLES", 100))
        .map(|i| format!("t{i:04}"))
        .collect();
    let ordered: Vec<String> = (0..count_from_env("MANY_ORDERED", 10))
        .map(|i| format!("ord{i:03}"))
        .collect();
    let batches = unordered.len() + ordered.len() * ORDERED_BATCHES;
    let limit = TIMEOUT.max(Duration::from_secs(2 * batches as u64));
    let t = &t;
    let setup = Instant::now();
    each(unordered.iter().chain(&ordered), |table| async move {
        t.create_table(table, testdata("ordering_schema.json"))
            .await
    })
    .await;
    t.upload("_config/load.json", br#"{"fieldDelimiter": "|"}"#.to_vec())
        .await;
    each(&ordered, |table| async move {
        t.upload(&format!("{table}/_config/ORDERME"), Vec::new())
            .await;
    })
    .await;
    let service = t
        .spawn_service(Mode::Pull, &[("START_BACKFILL_FILENAME", "_HISTORYDONE")])
        .await;

    // The ordered tables' backlogs: three batches each, held until `_HISTORYDONE`.
    let ordered_batches = ordered
        .iter()
        .flat_map(|table| (1..=ORDERED_BATCHES).map(move |i| (table, i)));
    each(ordered_batches, |(table, i)| async move {
        let row = if table == BROKEN && i == 2 {
            "not-a-number|broken\n".to_string()
        } else {
            format!("{i}|{table}\n")
        };
        let dir = format!("{table}/{i:02}");
        t.upload(&format!("{dir}/data.csv"), row.into_bytes()).await;
        t.upload(&format!("{dir}/_SUCCESS"), Vec::new()).await;
    })
    .await;
    // Every unordered table's data first, then every marker at once.
    each(&unordered, |table| async move {
        t.upload(
            &format!("{table}/b/data.csv"),
            format!("1|{table}\n").into_bytes(),
        )
        .await;
    })
    .await;
    let setup = setup.elapsed();
    let started = Instant::now();
    each(&unordered, |table| async move {
        t.upload(&format!("{table}/b/_SUCCESS"), Vec::new()).await;
    })
    .await;
    wait_until("every unordered table loaded", limit, &service, || async {
        service.log_matching(|l| l["outcome"] == "done").len() >= unordered.len()
    })
    .await;
    let unordered_elapsed = started.elapsed();

    // Release every ordered table's history at the same moment.
    wait_until(
        "every ordered backlog complete",
        limit,
        &service,
        || async {
            let mut complete = 0;
            for table in &ordered {
                let items = t.count_objects(&format!("{table}/_backlog/")).await;
                complete += usize::from(items == ORDERED_BATCHES);
            }
            complete == ordered.len()
        },
    )
    .await;
    let released = Instant::now();
    each(&ordered, |table| async move {
        t.upload(&format!("{table}/_HISTORYDONE"), Vec::new()).await;
    })
    .await;
    let healthy: Vec<&String> = ordered.iter().filter(|t| *t != BROKEN).collect();
    wait_until(
        "every healthy ordered table drained",
        limit,
        &service,
        || async {
            let mut drained = 0;
            for table in &healthy {
                drained += usize::from(
                    !exists(t, &format!("{table}/_bqlock")).await
                        && !exists(t, &format!("{table}/_BACKFILL")).await,
                );
            }
            drained == healthy.len()
        },
    )
    .await;
    let ordered_elapsed = released.elapsed();
    service
        .wait_for_log(
            |l| Service::message(l).contains("stopped at"),
            Duration::from_secs(60),
        )
        .await;
    let peak = service.pid().and_then(peak_rss_mib);
    let cpu = service.pid().and_then(cpu_seconds);

    // Exactly once: one row per batch in every table, and one successful job per batch.
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let tables: Vec<&String> = unordered.iter().chain(&ordered).collect();
    let counted: Vec<(String, u64)> = futures::stream::iter(tables.iter().copied())
        .map(|table| async move { (table.clone(), t.count(table).await) })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    rows.extend(counted);
    for table in &unordered {
        assert_eq!(rows[table], 1, "{table}: its batch once");
    }
    for table in &healthy {
        assert_eq!(
            rows[*table] as usize, ORDERED_BATCHES,
            "{table}: each batch once"
        );
    }
    assert_eq!(rows[BROKEN], 1, "{BROKEN}: stopped after its first batch");
    assert!(
        exists(t, &format!("{BROKEN}/_bqlock")).await,
        "{BROKEN} keeps its lock"
    );
    let jobs = t.jobs().await;
    let good = jobs.iter().filter(|j| j.error.is_none()).count();
    let bad = jobs.iter().filter(|j| j.error.is_some()).count();
    assert_eq!(
        good,
        unordered.len() + healthy.len() * ORDERED_BATCHES + 1,
        "one job a batch"
    );
    assert_eq!(bad, 1, "only the broken batch failed");
    println!(
        "many tables on the emulators, one pull (--concurrency 8): {} unordered tables loaded \
         {:.1} s after their markers ({:.1} batches/s); {} ordered tables × {ORDERED_BATCHES} \
         batches drained {:.1} s after their release, {BROKEN} stopped at its bad batch; the \
         consumer's peak RSS {}, CPU {}; setup {:.0} s",
        unordered.len(),
        unordered_elapsed.as_secs_f64(),
        unordered.len() as f64 / unordered_elapsed.as_secs_f64(),
        ordered.len(),
        ordered_elapsed.as_secs_f64(),
        peak.map_or("unknown".into(), |p| format!("{p:.1} MiB")),
        cpu.map_or("unknown".into(), |c| format!("{c:.1} s")),
        setup.as_secs_f64(),
    );
}
