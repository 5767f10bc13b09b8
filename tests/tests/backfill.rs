//! `bq-ingest backfill` end to end (issue 5): batches that landed while no service ran,
//! ingested by the real binary's `backfill` command on the emulators — a dry run, the local
//! mode (twice), an ordered table, a failing batch, the notifications mode through a running
//! `bq-ingest pull`, and backlog markers that must never be backfilled.
//!
//! Layout (the test's dataset is the first path segment): `_config/load.json` sets `|` for
//! every table; `nyc_311/h01/` and `nyc_311/h02/` hold the two hours of NYC 311 as CSV (batch
//! folders of an unpartitioned table, 126 + 74 rows); `nation/` holds the TPC-H nation batch
//! (25 rows, plus an empty part file).

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use bq_ingest_e2e::{testdata, Job, Mode, TestCase};
use ingest_core::ports::ObjectStore;
use serde_json::json;

/// Bound of every wait for the service.
const TIMEOUT: Duration = Duration::from_secs(90);
/// The dataset-level config: `|`-delimited CSV.
const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;

// ------------------------------------------------------------------------------------------
// Private helpers

/// Uploads the NYC 311 CSV hours (`nyc_311/h01`, `nyc_311/h02`) and nation, with their tables
/// and the dataset-level `load.json`; plus, under `nation/_backlog/`, a backlog item as
/// bq-ingest writes it for ordered tables, which no backfill may pick up.
async fn upload_history(t: &TestCase) {
    t.create_table("nyc_311", testdata("nyc_311_schema.json"))
        .await;
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    for (hour, dir) in [
        ("h01", "nyc_311/$2017041101"),
        ("h02", "nyc_311/$2017041102"),
    ] {
        t.upload_dir_only(&format!("nyc_311/{hour}"), testdata(dir), |n| {
            n == "nyc_311.csv" || n == "_SUCCESS"
        })
        .await;
    }
    t.upload_dir("nation", testdata("nation")).await;
    let item = json!({"marker": t.object("nation/b9/_SUCCESS"), "generation": 1});
    t.upload("nation/_backlog/b9/_SUCCESS", item.to_string().into_bytes())
        .await;
}

/// The three markers of [`upload_history`], as URIs.
fn history_markers(t: &TestCase) -> Vec<String> {
    [
        "nyc_311/h01/_SUCCESS",
        "nyc_311/h02/_SUCCESS",
        "nation/_SUCCESS",
    ]
    .iter()
    .map(|m| t.uri(m))
    .collect()
}

/// Runs `bq-ingest backfill <args>` with text logs (on stderr) so stdout holds only its report.
async fn backfill(t: &TestCase, args: &[&str]) -> Output {
    let mut all = vec!["backfill"];
    all.extend_from_slice(args);
    let started = Instant::now();
    let out = t.run_command(&all, &[("LOG_FORMAT", "text")]).await;
    println!(
        "$ bq-ingest {} ({:.1?}) → {}\n--- stdout\n{}--- stderr\n{}---",
        all.join(" "),
        started.elapsed(),
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `gs://bucket/<dataset>/` prefix of the whole test.
fn root(t: &TestCase) -> String {
    format!("gs://{}/{}/", t.bucket(), t.dataset)
}

/// Every object name under the test's dataset.
async fn all_objects(t: &TestCase) -> BTreeSet<String> {
    let prefix = format!("{}/", t.dataset);
    let mut names = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = t
            .stack
            .store
            .list(t.bucket(), &prefix, token.as_deref(), None)
            .await
            .unwrap_or_else(|e| panic!("listing gs://{}/{prefix}: {e}", t.bucket()));
        names.extend(page.objects.into_iter().map(|o| o.name));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return names,
        }
    }
}

/// The load jobs of the test, as (destination table, batch folder) → job ids.
fn loads_per_batch(t: &TestCase, jobs: &[Job]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = jobs
        .iter()
        .filter(|j| j.kind == "load")
        .map(|j| {
            let folder = j
                .source_uris
                .first()
                .and_then(|u| u.strip_prefix(&format!("gs://{}/{}/", t.bucket(), t.dataset)))
                .and_then(|rest| rest.rsplit_once('/'))
                .map(|(dir, _)| dir.to_string())
                .unwrap_or_default();
            (folder, j.id.clone())
        })
        .collect();
    out.sort();
    out
}

/// Asserts that the three history batches are loaded, once each: 126 + 74 NYC rows, 25 nation
/// rows, one successful load job per batch. Returns the job ids.
async fn assert_history_loaded_once(t: &TestCase) -> Vec<String> {
    assert_eq!(t.count("nyc_311").await, 200);
    assert_eq!(t.count("nation").await, 25);
    let jobs = t.jobs().await;
    let per_batch = loads_per_batch(t, &jobs);
    let folders: Vec<&str> = per_batch.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        folders,
        ["nation", "nyc_311/h01", "nyc_311/h02"],
        "one load per batch: {jobs:#?}"
    );
    for job in &jobs {
        assert_eq!(job.state, "DONE", "{job:#?}");
        assert_eq!(job.error, None, "{job:#?}");
    }
    let mut rows: Vec<(String, Option<u64>)> = jobs
        .iter()
        .map(|j| {
            (
                j.source_uris.first().cloned().unwrap_or_default(),
                j.output_rows,
            )
        })
        .collect();
    rows.sort();
    let counts: Vec<Option<u64>> = rows.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        counts,
        [Some(25), Some(126), Some(74)],
        "rows per job: {rows:?}"
    );
    per_batch.into_iter().map(|(_, id)| id).collect()
}

/// Recreates the test's pull subscription: it then only gets what is published from now on,
/// not the notifications of the uploads made while no service ran. fake-gcs-server publishes
/// those asynchronously, so first pull them from the old subscription until every object under
/// the dataset was announced.
async fn fresh_subscription(t: &TestCase) {
    let url = format!(
        "{}/subscriptions/{}",
        t.stack.pubsub_url(),
        t.subscription()
    );
    let mut pending = all_objects(t).await;
    let deadline = Instant::now() + TIMEOUT;
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the uploads' notifications never all arrived; missing: {pending:?}"
        );
        let pulled: serde_json::Value = t
            .stack
            .http
            .post(format!("{url}:pull"))
            .json(&json!({"maxMessages": 100, "returnImmediately": true}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("pull {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("pull {url}: not JSON: {e}"));
        let messages = pulled["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for m in &messages {
            if let Some(name) = m["message"]["attributes"]["objectId"].as_str() {
                pending.remove(name);
            }
        }
        let ack_ids: Vec<&str> = messages
            .iter()
            .filter_map(|m| m["ackId"].as_str())
            .collect();
        t.stack
            .http
            .post(format!("{url}:acknowledge"))
            .json(&json!({"ackIds": ack_ids}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledge {url}: {e}"));
    }
    let deleted = t
        .stack
        .http
        .delete(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
    assert!(
        deleted.status().is_success(),
        "DELETE {url}: {}",
        deleted.status()
    );
    let body = json!({
        "topic": format!("projects/{}/topics/{}", t.stack.project, t.stack.topic),
        "ackDeadlineSeconds": 60,
    });
    let created = t
        .stack
        .http
        .put(&url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = created.status();
    assert!(
        status.is_success(),
        "PUT {url}: {status} {}",
        created.text().await.unwrap_or_default()
    );
}

// ------------------------------------------------------------------------------------------
// Tests

/// `--dry-run` prints each batch's plan (destination, job ids, files, bytes) and changes
/// nothing: no job, no row, no object, no state row. The backlog item is not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plans_and_changes_nothing() {
    let Some(t) = TestCase::new("backfill_dry_run").await else {
        return;
    };
    upload_history(&t).await;
    let before = all_objects(&t).await;

    let out = backfill(&t, &[&root(&t), "--dry-run"]).await;
    assert!(out.status.success(), "exit status {}", out.status);
    let report = stdout(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 success marker(s)"),
        "the backlog item must not count as a marker"
    );
    assert!(
        !report.contains("_backlog"),
        "a backlog item was planned:\n{report}"
    );
    let sizes = [
        ("nyc_311/h01/_SUCCESS", "nyc_311", 66_754_u64),
        (
            "nyc_311/h02/_SUCCESS",
            "nyc_311",
            std::fs::metadata(testdata("nyc_311/$2017041102/nyc_311.csv"))
                .map(|m| m.len())
                .unwrap_or(0),
        ),
        ("nation/_SUCCESS", "nation", 1_948),
    ];
    // One block per marker: its URI line, then indented fields.
    let blocks: Vec<&str> = report.split("\ngs://").collect();
    for (marker, table, bytes) in sizes {
        let uri = t.uri(marker);
        let block = blocks
            .iter()
            .find(|b| {
                b.trim_start_matches("gs://")
                    .starts_with(uri.trim_start_matches("gs://"))
            })
            .unwrap_or_else(|| panic!("no plan for {uri} in:\n{report}"));
        assert!(
            block.contains(&format!(
                "destination: {}.{}.{table}",
                t.stack.project, t.dataset
            )),
            "{uri}: destination missing:\n{block}"
        );
        assert!(
            block.contains(&format!("(1 file(s), {bytes} bytes, 1 job(s))")),
            "{uri}: files/bytes/jobs missing:\n{block}"
        );
        let job_line = block
            .lines()
            .find(|l| l.trim_start().starts_with("job:"))
            .unwrap_or_else(|| panic!("{uri}: no job id:\n{block}"));
        assert!(job_line.contains("gcf-ingest-"), "{job_line}");
        assert!(!block.contains("error:"), "{uri}: {block}");
    }

    assert!(
        t.jobs().await.is_empty(),
        "a dry run ran jobs: {:#?}",
        t.jobs().await
    );
    assert_eq!(t.count("nyc_311").await, 0);
    assert_eq!(t.count("nation").await, 0);
    assert!(
        t.state_rows().await.is_empty(),
        "a dry run recorded outcomes"
    );
    assert_eq!(all_objects(&t).await, before, "a dry run changed objects");
}

/// `--mode local --concurrency 2` loads every batch (126 + 74 and 25 rows) and reports
/// `ingested: 3, skipped: 0, failed: 0`; a second run loads nothing again (the jobs exist and
/// are followed) and the rows stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_loads_every_batch_once() {
    let Some(t) = TestCase::new("backfill_local").await else {
        return;
    };
    upload_history(&t).await;
    // The dry run's job ids are the ones the real run uses.
    let dry = backfill(&t, &[&root(&t), "--dry-run"]).await;
    assert!(dry.status.success());
    let mut planned: Vec<String> = stdout(&dry)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("job:"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    planned.sort();

    let out = backfill(&t, &[&root(&t), "--mode", "local", "--concurrency", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "exit status");
    assert!(
        stdout(&out).contains("ingested: 3, skipped: 0, failed: 0"),
        "summary:\n{}",
        stdout(&out)
    );
    let jobs = assert_history_loaded_once(&t).await;
    let mut ran = jobs.clone();
    ran.sort();
    assert_eq!(ran, planned, "the dry run announced other job ids");
    // Every recorded outcome is a `done` of one of the batches. (local-bigquery may reject one
    // of two concurrent `insertAll`s into the state table — "Failed to commit DuckLake
    // transaction" — and the service then logs the lost row at ERROR, so not every batch is
    // guaranteed a row here.)
    let states = t.state_rows().await;
    let markers: BTreeSet<String> = history_markers(&t).into_iter().collect();
    for row in &states {
        assert_eq!(row["state"], "done", "{row:#}");
        assert!(
            markers.contains(row["marker_uri"].as_str().unwrap_or("")),
            "{row:#}"
        );
    }

    // Again: duplicates are followed, never loaded again.
    let again = backfill(&t, &[&root(&t), "--mode", "local", "--concurrency", "2"]).await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "exit status of the second run"
    );
    assert!(stdout(&again).contains("failed: 0"), "{}", stdout(&again));
    assert_eq!(
        assert_history_loaded_once(&t).await,
        jobs,
        "the second run ran new jobs"
    );
}

/// An ordered table (`_config/ORDERME`) under the prefix is skipped by the local mode, with the
/// reason; the other batches load; the backlog markers are never backfilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_skips_ordered_tables() {
    let Some(t) = TestCase::new("backfill_ordered").await else {
        return;
    };
    upload_history(&t).await;
    t.create_table("ordering", testdata("ordering_schema.json"))
        .await;
    t.upload("ordering/_config/ORDERME", Vec::new()).await;
    t.upload_dir("ordering/01", testdata("ordering/01")).await;
    // As the publisher leaves it: a backlog item of the ordered table.
    let item = json!({"marker": t.object("ordering/01/_SUCCESS"), "generation": 1});
    t.upload(
        "ordering/_backlog/01/_SUCCESS",
        item.to_string().into_bytes(),
    )
    .await;

    let dry = backfill(&t, &[&root(&t), "--dry-run"]).await;
    assert!(dry.status.success());
    assert!(
        stdout(&dry).contains("ordered:     yes"),
        "{}",
        stdout(&dry)
    );

    let out = backfill(&t, &[&root(&t), "--mode", "local", "--concurrency", "2"]).await;
    let report = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "skipping is not failing:\n{report}"
    );
    assert!(
        report.contains("ingested: 3, skipped: 1, failed: 0"),
        "{report}"
    );
    let skipped = report
        .lines()
        .find(|l| l.trim_start().starts_with("skipped gs://"))
        .unwrap_or_else(|| panic!("no skipped line:\n{report}"));
    assert!(
        skipped.contains(&t.uri("ordering/01/_SUCCESS")),
        "{skipped}"
    );
    assert!(
        skipped.contains("ordered"),
        "the reason names the ordered table: {skipped}"
    );
    assert!(!report.contains("_backlog"), "{report}");
    assert_history_loaded_once(&t).await;
    assert_eq!(t.count("ordering").await, 0);
    // Nothing was queued either: the backlog is as it was, no `_BACKFILL`, no lock.
    let ordering: Vec<String> = all_objects(&t)
        .await
        .into_iter()
        .filter(|n| n.starts_with(&t.object("ordering/")))
        .collect();
    assert_eq!(
        ordering,
        [
            t.object("ordering/01/_SUCCESS"),
            t.object("ordering/01/data.csv"),
            t.object("ordering/_backlog/01/_SUCCESS"),
            t.object("ordering/_config/ORDERME"),
        ]
    );
}

/// A batch whose data does not fit its table's schema (NYC 311 rows into `nation`) fails: exit
/// status 1, and the summary counts and names it; the good batches load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_fails_the_backfill_and_is_named() {
    let Some(t) = TestCase::new("backfill_failure").await else {
        return;
    };
    upload_history(&t).await;
    t.create_table("nation_bad", testdata("nation_schema.json"))
        .await;
    t.upload_dir_only("nation_bad/b1", testdata("nyc_311/$2017041101"), |n| {
        n == "nyc_311.csv" || n == "_SUCCESS"
    })
    .await;

    // One at a time, so that every outcome reaches the state table (see
    // `local_mode_loads_every_batch_once`).
    let out = backfill(&t, &[&root(&t), "--mode", "local", "--concurrency", "1"]).await;
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "exit status:\n{report}");
    assert!(
        report.contains("ingested: 3, skipped: 0, failed: 1"),
        "{report}"
    );
    let failed = report
        .lines()
        .find(|l| l.trim_start().starts_with("failed "))
        .unwrap_or_else(|| panic!("no failed line:\n{report}"));
    assert!(
        failed.contains(&t.uri("nation_bad/b1/_SUCCESS")),
        "{failed}"
    );
    assert_history_loaded_once_plus_failure(&t).await;
    assert_eq!(t.count("nation_bad").await, 0);
    let states = t.state_rows().await;
    assert!(
        states.iter().any(|r| r["state"] == "failed"
            && r["marker_uri"].as_str() == Some(t.uri("nation_bad/b1/_SUCCESS").as_str())),
        "no failed state row: {states:#?}"
    );
}

/// The good batches of [`a_failing_batch_fails_the_backfill_and_is_named`] loaded once.
async fn assert_history_loaded_once_plus_failure(t: &TestCase) {
    assert_eq!(t.count("nyc_311").await, 200);
    assert_eq!(t.count("nation").await, 25);
    let jobs = t.jobs().await;
    let good: Vec<&Job> = jobs.iter().filter(|j| j.error.is_none()).collect();
    assert_eq!(good.len(), 3, "{jobs:#?}");
}

/// `--mode notifications --topic <topic>` publishes one notification per marker (none for the
/// backlog item); the running `bq-ingest pull` on the test's subscription loads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_mode_goes_through_the_service() {
    let Some(t) = TestCase::new("backfill_notify").await else {
        return;
    };
    upload_history(&t).await;
    // The uploads' own notifications are not what we test: start from an empty subscription.
    fresh_subscription(&t).await;
    let service = t.spawn_service(Mode::Pull, &[]).await;

    // As the Python function's backfill.py is called: -p, an upper-case mode, --pubsub_topic
    // with the topic's full name.
    let topic = format!("projects/{}/topics/{}", t.stack.project, t.stack.topic);
    let out = backfill(
        &t,
        &[
            "-p",
            &root(&t),
            "-m",
            "NOTIFICATIONS",
            "--pubsub_topic",
            &topic,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "exit status");
    assert!(
        stdout(&out).contains("published: 3, skipped: 0, failed: 0"),
        "{}",
        stdout(&out)
    );

    t.wait_for_count("nyc_311", 200, TIMEOUT).await;
    t.wait_for_count("nation", 25, TIMEOUT).await;
    assert_history_loaded_once(&t).await;
    // The service handled exactly the three markers it was sent (and no backlog item).
    let deadline = Instant::now() + TIMEOUT;
    let handled = loop {
        let handled: BTreeSet<String> = service
            .log_lines()
            .iter()
            .filter(|l| l["outcome"] == "done")
            .filter_map(|l| l["object"].as_str().map(str::to_string))
            .collect();
        if handled.len() >= 3 || Instant::now() > deadline {
            break handled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(handled, history_markers(&t).into_iter().collect());
    assert!(
        !service.log_text().contains("_backlog/b9"),
        "the backlog item was published:\n{}",
        service.log_tail(40)
    );
}

/// Backfill's rates on the emulators (issue 12 §3): `BACKFILL_MARKERS` one-row nation batches
/// (default 200; `scripts/bench-backfill.sh` runs 2,000) through `--dry-run`, `--mode
/// notifications` (to a side topic nobody reads) and `--mode local --concurrency 8`, each
/// timed with its peak RSS. Every batch is planned, published and then loaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_rates_on_the_emulators() {
    use futures::StreamExt;
    let Some(t) = TestCase::new("backfill_rates").await else {
        return;
    };
    let markers: usize = std::env::var("BACKFILL_MARKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    let uploads = futures::stream::iter(0..markers)
        .map(|i| {
            let t = &t;
            async move {
                let dir = format!("nation/b{i:05}");
                t.upload(
                    &format!("{dir}/part-0.csv"),
                    format!("{i}|NATION {i}|0|x\n").into_bytes(),
                )
                .await;
                t.upload(&format!("{dir}/_SUCCESS"), Vec::new()).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>();
    uploads.await;
    // Measure once the emulator has published the uploads' notifications.
    fresh_subscription(&t).await;
    let (topic, _) = t.create_side_topic("backfill-rates").await;
    let root = root(&t);
    let mut figures = Vec::new();
    let runs: [(&str, Vec<&str>, &str); 3] = [
        ("--dry-run", vec!["--dry-run", "--concurrency", "8"], ""),
        (
            "notifications",
            vec!["--mode", "notifications", "--topic", &topic],
            "published",
        ),
        (
            "local",
            vec!["--mode", "local", "--concurrency", "8"],
            "ingested",
        ),
    ];
    for (name, flags, verb) in runs {
        let mut args = vec!["backfill", root.as_str()];
        args.extend(flags);
        let started = Instant::now();
        let (out, usage) = t
            .run_command_with_usage(&args, &[("LOG_FORMAT", "text"), ("RUST_LOG", "warn")])
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stdout(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{markers} success marker(s)")),
            "{name}: {stderr}"
        );
        if verb.is_empty() {
            let jobs = stdout(&out).lines().filter(|l| l.contains("job:")).count();
            assert_eq!(jobs, markers, "{name}: a job planned per batch");
        } else {
            let summary = format!("{verb}: {markers}, skipped: 0, failed: 0");
            assert!(stdout(&out).contains(&summary), "{name}: {}", stdout(&out));
        }
        let usage = usage.map_or("usage unknown".into(), |u| {
            format!(
                "{:.2} s of CPU, peak RSS {:.1} MiB",
                u.cpu_seconds,
                u.peak_rss_kib as f64 / 1024.0
            )
        });
        figures.push(format!(
            "{name} {:.0} markers/s ({elapsed:.1} s, {usage})",
            markers as f64 / elapsed,
        ));
    }
    assert_eq!(
        t.count("nation").await,
        markers as u64,
        "each batch loaded once"
    );
    println!(
        "backfill on the emulators, {markers} markers: {}",
        figures.join("; ")
    );
}
