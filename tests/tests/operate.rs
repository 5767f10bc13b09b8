//! The operator's commands through the real binary on the emulators (issue 10): `status` and
//! `reconcile` on a batch whose notification nobody received, then on a failed batch. (`resume`
//! and `status` of a stopped ordered table: `ordered.rs`.)

use bq_ingest_e2e::{testdata, TestCase};
use serde_json::Value;

const PIPE: &[u8] = br#"{"fieldDelimiter": "|"}"#;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn explain(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_marker_is_found_reconciled_once_and_a_failed_batch_is_reported() {
    let Some(t) = TestCase::new("operate").await else {
        return;
    };
    t.create_table("nation", testdata("nation_schema.json"))
        .await;
    t.upload("_config/load.json", PIPE).await;
    // No service runs: the notification of this batch is never handled.
    t.upload_dir("nation", testdata("nation")).await;
    let prefix = t.uri("");
    let marker = t.uri("nation/_SUCCESS");

    let status = t
        .run_command(
            &["status", &prefix, "--grace", "0s", "--format", "json"],
            &[],
        )
        .await;
    assert_eq!(status.status.code(), Some(1), "{}", explain(&status));
    let report: Value = serde_json::from_str(stdout(&status).trim()).unwrap();
    assert_eq!(report["needs_a_person"], true);
    assert_eq!(
        report["unrecorded"][0]["marker"],
        marker.as_str(),
        "{report}"
    );
    assert_eq!(report["unrecorded"][0]["job"], Value::Null, "{report}");
    // Within the grace, a fresh marker is in flight, not missed.
    let fresh = t
        .run_command(&["status", &prefix, "--grace", "1h"], &[])
        .await;
    assert!(fresh.status.success(), "{}", explain(&fresh));
    assert!(
        stdout(&fresh).contains("markers without a final row: 0"),
        "{}",
        explain(&fresh)
    );

    let found = t
        .run_command(&["reconcile", &prefix, "--grace", "0s"], &[])
        .await;
    assert_eq!(found.status.code(), Some(1), "{}", explain(&found));
    assert!(
        stdout(&found).contains(&format!("{marker} (")),
        "{}",
        explain(&found)
    );
    assert_eq!(t.count("nation").await, 0, "reporting changes nothing");

    let applied = t
        .run_command(&["reconcile", &prefix, "--grace", "0s", "--apply"], &[])
        .await;
    assert!(applied.status.success(), "{}", explain(&applied));
    assert!(
        stdout(&applied).contains("ingested: 1"),
        "{}",
        explain(&applied)
    );
    assert_eq!(t.count("nation").await, 25);
    let again = t
        .run_command(&["reconcile", &prefix, "--grace", "0s", "--apply"], &[])
        .await;
    assert!(again.status.success(), "{}", explain(&again));
    assert!(
        stdout(&again).contains("0 marker(s) without a final row"),
        "{}",
        explain(&again)
    );
    assert_eq!(t.count("nation").await, 25, "loaded once");
    let jobs = t.jobs().await;
    assert_eq!(jobs.len(), 1, "one job");

    // explain --live and backfill --dry-run read the bucket and give the real plan: the job
    // that ran, its file, and the merged _config/load.json.
    let live = t
        .run_command(&["explain", "--live", "--format", "json", &marker], &[])
        .await;
    assert!(live.status.success(), "{}", explain(&live));
    let line: Value = serde_json::from_str(stdout(&live).trim()).unwrap();
    assert_eq!(line["trigger"], "success", "{line}");
    assert_eq!(
        line["live"]["jobs"][0]["job_id"],
        jobs[0].id.as_str(),
        "{line}"
    );
    assert_eq!(line["live"]["files"], 1, "{line}"); // part-m-00000 is empty: not loaded
    assert_eq!(
        line["live"]["jobs"][0]["config"]["fieldDelimiter"], "|",
        "{line}"
    );
    let text = t.run_command(&["explain", "--live", &marker], &[]).await;
    assert!(stdout(&text).contains("live plan:"), "{}", explain(&text));
    let dry = t
        .run_command(
            &[
                "backfill",
                "--dry-run",
                "--format",
                "json",
                &t.uri("nation/"),
            ],
            &[],
        )
        .await;
    assert!(dry.status.success(), "{}", explain(&dry));
    let plan: Value = serde_json::from_str(stdout(&dry).trim()).unwrap();
    assert_eq!(plan["jobs"][0]["job_id"], jobs[0].id.as_str(), "{plan}");
    assert_eq!(t.jobs().await.len(), 1, "explaining submits nothing");

    // A batch that fails: status names it and exits 1; the last success stays nation's.
    t.upload("nation/bad-batch/part-0", b"not-a-number|X|1|c\n".to_vec())
        .await;
    t.upload("nation/bad-batch/_SUCCESS", Vec::new()).await;
    let backfill = t
        .run_command(&["backfill", &t.uri("nation/bad-batch/")], &[])
        .await;
    assert_eq!(backfill.status.code(), Some(1), "{}", explain(&backfill));
    let status = t
        .run_command(&["status", &prefix, "--grace", "0s"], &[])
        .await;
    let text = stdout(&status);
    assert_eq!(status.status.code(), Some(1), "{}", explain(&status));
    assert!(text.contains("failed batches: 1"), "{text}");
    assert!(text.contains(&t.uri("nation/bad-batch/_SUCCESS")), "{text}");
    assert!(text.contains("last success per table: 1"), "{text}");
    assert!(text.contains(".nation "), "{text}");
    println!("{text}"); // docs/operations.md quotes it
}
