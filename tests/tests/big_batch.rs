//! One big batch on fake-gcs-server (issue 12, §2): `BIG_BATCH_FILES` data files under one
//! folder (default 11,000; `scripts/bench-big-batch.sh` runs 100,000), planned by `bq-ingest
//! backfill --dry-run` through the real GCS listing (1,000 objects a page): the plan has one job
//! per 10,000 files with every file in it, and the command's time, CPU and peak RSS are
//! reported. (Loading them is not part of it: local-bigquery loads a file in tens of
//! milliseconds, and the memory figure is the planner's.)

use std::time::Instant;

use bq_ingest_e2e::TestCase;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_batch_on_fake_gcs_is_listed_and_planned_in_parts() {
    let Some(t) = TestCase::new("big_batch").await else {
        return;
    };
    let files: usize = std::env::var("BIG_BATCH_FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(11_000);
    let t = &t;
    let uploaded = Instant::now();
    futures::stream::iter(0..files)
        .map(|i| async move {
            t.upload(&format!("big/part-{i:07}.csv"), b"1|x\n".to_vec())
                .await;
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    t.upload("big/_SUCCESS", Vec::new()).await;
    let uploaded = uploaded.elapsed().as_secs_f64();

    let marker = t.uri("big/_SUCCESS");
    let root = format!("gs://{}/{}/big/", t.bucket(), t.dataset);
    let started = Instant::now();
    let (out, usage) = t
        .run_command_with_usage(
            &["backfill", &root, "--dry-run", "--format", "json"],
            &[("LOG_FORMAT", "text"), ("RUST_LOG", "warn")],
        )
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no plan in {stdout}"));
    assert_eq!(plan["marker"], marker.as_str(), "{plan}");
    let jobs = plan["jobs"].as_array().unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(jobs.len(), files.div_ceil(10_000), "{plan}");
    assert_eq!(plan["files"], files, "{plan}");
    let usage = usage.map_or("usage unknown".into(), |u| {
        format!(
            "{:.2} s of CPU, peak RSS {:.1} MiB",
            u.cpu_seconds,
            u.peak_rss_kib as f64 / 1024.0
        )
    });
    println!(
        "big batch on fake-gcs-server: {files} files ({uploaded:.0} s to upload) listed and \
         planned into {} jobs by backfill --dry-run in {elapsed:.1} s ({usage})",
        jobs.len()
    );
}
