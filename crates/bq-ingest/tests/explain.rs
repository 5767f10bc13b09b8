//! `bq-ingest explain` through the real binary.

use std::process::Command;

use serde_json::Value;

fn explain(args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<Value>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bq-ingest"));
    cmd.arg("explain").args(args);
    for var in [
        "DESTINATION_REGEX",
        "SUCCESS_FILENAME",
        "BQ_PROJECT",
        "BQ_STORAGE_PROJECT",
        "GOOGLE_CLOUD_PROJECT",
        "START_BACKFILL_FILENAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run bq-ingest");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = if args.contains(&"json") {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    } else {
        Vec::new()
    };
    (out.status.code().unwrap_or(-1), lines, stdout)
}

const KEYS: [&str; 8] = [
    "path",
    "trigger",
    "destination",
    "batch",
    "batch_timestamp",
    "table_prefix",
    "job_id_prefix",
    "error",
];

#[test]
fn json_lines_have_exactly_the_documented_keys() {
    let (code, lines, _) = explain(
        &[
            "--format",
            "json",
            "gs://b/ds/t/2020/01/02/03/batch_id/_SUCCESS",
            "b/ds/t/$20201030/_SUCCESS",
            "gs://b/proj-123456.ds/t/_SUCCESS",
            "gs://b/ds/t/historical/batch_7/_SUCCESS",
            "gs://b/ds/t/part-0001.csv",
            "gs://b/ds/t/_BACKFILL",
            "gs://b/ds/t/_backlog/$20201030/_SUCCESS",
        ],
        &[("BQ_PROJECT", "my-project")],
    );
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 7);
    for line in &lines {
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{line}");
    }
    let hourly = &lines[0];
    assert_eq!(hourly["trigger"], "success");
    assert_eq!(hourly["destination"]["project"], "my-project");
    assert_eq!(hourly["destination"]["dataset"], "ds");
    assert_eq!(hourly["destination"]["table"], "t");
    assert_eq!(hourly["destination"]["partition"], "$2020010203");
    assert_eq!(hourly["batch"], "batch_id");
    assert_eq!(hourly["batch_timestamp"], "2020-01-02T03:00:00Z");
    assert_eq!(hourly["table_prefix"], "ds/t");
    assert_eq!(hourly["job_id_prefix"], "gcf-ingest-ds_t_2020010203");
    assert_eq!(hourly["error"], Value::Null);

    assert_eq!(lines[1]["destination"]["partition"], "$20201030");
    assert_eq!(lines[1]["batch"], Value::Null);
    assert_eq!(lines[2]["destination"]["project"], "proj-123456");
    assert_eq!(lines[3]["batch"], "batch_7");
    assert_eq!(lines[4]["trigger"], "ignore");
    assert_eq!(lines[4]["destination"], Value::Null);
    assert_eq!(lines[5]["trigger"], "backfill");
    assert_eq!(lines[5]["table_prefix"], "ds/t");
    assert_eq!(lines[6]["trigger"], "backlog");
}

#[test]
fn a_failing_path_prints_its_error_and_exits_1_while_the_others_still_print() {
    let (code, lines, _) = explain(
        &[
            "--format",
            "json",
            "gs://b/ds/t/_SUCCESS",
            "gs://b/my-ds/t/_SUCCESS",
            "gs://b/ds/t/$20201332/_SUCCESS",
            "gs://b/ds/t/_SUCCESS",
        ],
        &[("BQ_PROJECT", "my-project")],
    );
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["error"], Value::Null);
    let bad_dataset = lines[1]["error"].as_str().unwrap();
    assert!(
        bad_dataset.contains("gs://b/my-ds/t/_SUCCESS"),
        "{bad_dataset}"
    );
    assert!(bad_dataset.contains("dataset"), "{bad_dataset}");
    assert!(
        lines[2]["error"].as_str().unwrap().contains("partition"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["error"], Value::Null);
}

#[test]
fn options_and_settings_change_the_answer() {
    let (code, lines, _) = explain(
        &[
            "--format",
            "json",
            "--success-filename",
            "_DONE",
            "--destination-regex",
            r"^exports/(?P<dataset>\w+)/(?P<table>\w+)/(?P<yyyy>\d{4})-(?P<mm>\d{1,2})-(?P<dd>\d{1,2})/",
            "gs://b/exports/sales/orders/2024-5-6/_DONE",
            "gs://b/exports/sales/orders/2024-5-6/_SUCCESS",
        ],
        &[("BQ_STORAGE_PROJECT", "storage-proj")],
    );
    assert_eq!(code, 0);
    assert_eq!(lines[0]["trigger"], "success");
    assert_eq!(lines[0]["destination"]["project"], "storage-proj");
    assert_eq!(lines[0]["destination"]["partition"], "$20240506");
    assert_eq!(lines[1]["trigger"], "ignore");
}

#[test]
fn an_invalid_setting_is_named() {
    let (code, _, _) = explain(&["gs://b/ds/t/_SUCCESS"], &[("MAX_BATCH_BYTES", "lots")]);
    assert_eq!(code, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_bq-ingest"))
        .args(["explain", "gs://b/ds/t/_SUCCESS"])
        .env("MAX_BATCH_BYTES", "lots")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAX_BATCH_BYTES"), "{stderr}");
}

#[test]
fn text_format_is_readable() {
    let (code, _, text) = explain(
        &["gs://b/ds/t/$2020010203/_SUCCESS"],
        &[("BQ_PROJECT", "my-project")],
    );
    assert_eq!(code, 0);
    assert!(text.contains("trigger:         success"), "{text}");
    assert!(
        text.contains("destination:     my-project.ds.t$2020010203"),
        "{text}"
    );
}

#[test]
fn the_job_id_prefix_is_the_one_the_jobs_really_get() {
    // A table id with spaces and dashes is legal; the job ids replace what they cannot hold.
    let (code, lines, _) = explain(
        &[
            "--format",
            "json",
            "gs://b/ds/victim WHERE TRUE --/b1/_SUCCESS",
        ],
        &[
            ("BQ_PROJECT", "my-project"),
            (
                "DESTINATION_REGEX",
                "(?P<dataset>[^/]+)/(?P<table>[^/]+)/(?P<batch>[^/]+)/",
            ),
        ],
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["destination"]["table"], "victim WHERE TRUE --");
    assert_eq!(
        lines[0]["job_id_prefix"],
        "gcf-ingest-ds_victim_WHERE_TRUE_--"
    );
}

#[test]
fn without_a_project_the_destination_is_explained_with_a_null_project() {
    let (code, lines, _) = explain(&["--format", "json", "gs://b/ds/t/$20201030/_SUCCESS"], &[]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["error"], Value::Null);
    let destination = &lines[0]["destination"];
    assert_eq!(destination["project"], Value::Null);
    assert_eq!(destination["dataset"], "ds");
    assert_eq!(destination["partition"], "$20201030");

    let (code, _, text) = explain(&["gs://b/ds/t/_SUCCESS"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("destination:     (no project set).ds.t"),
        "{text}"
    );
    // A path that names its project needs no setting.
    let (_, lines, _) = explain(
        &["--format", "json", "gs://b/proj-123456.ds/t/_SUCCESS"],
        &[],
    );
    assert_eq!(lines[0]["destination"]["project"], "proj-123456");
}

#[test]
fn the_lock_of_an_ordered_table_names_its_table_prefix() {
    let (code, lines, _) = explain(&["--format", "json", "gs://b/ds/t/_bqlock"], &[]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["trigger"], "ignore");
    assert_eq!(lines[0]["table_prefix"], "ds/t");
    let (_, _, text) = explain(&["gs://b/ds/t/_bqlock"], &[]);
    assert!(
        text.contains("table prefix:    ds/t (the lock of this ordered table)"),
        "{text}"
    );
}

#[test]
fn a_regex_without_dataset_is_accepted_with_a_destination_table() {
    let regex = r"^incoming/(?P<batch>[^/]+)/";
    let path = "gs://b/incoming/batch-7/_SUCCESS";
    // Without the table, the regex is refused, naming the missing group.
    let (code, _, _) = explain(&["--destination-regex", regex, path], &[]);
    assert_eq!(code, 1);

    for (args, env) in [
        (
            vec!["--destination-regex", regex],
            vec![("BQ_PROJECT", "my-project")],
        ),
        (
            vec![],
            vec![("BQ_PROJECT", "my-project"), ("DESTINATION_REGEX", regex)],
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--destination-table", "ds.t", "--format", "json", path]);
        let (code, lines, _) = explain(&all, &env);
        assert_eq!(code, 0, "{all:?} {env:?}: {lines:?}");
        let d = &lines[0]["destination"];
        assert_eq!(
            (&d["project"], &d["dataset"], &d["table"]),
            (
                &Value::from("my-project"),
                &Value::from("ds"),
                &Value::from("t")
            )
        );
        assert_eq!(lines[0]["batch"], "batch-7");
    }
    let (code, _, _) = explain(&["--destination-table", "just-one", path], &[]);
    assert_eq!(code, 1, "a malformed --destination-table is an error");
}

fn bq_ingest(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bq-ingest"))
        .args(args)
        .output()
        .expect("run bq-ingest");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    const COMMANDS: [&str; 9] = [
        "serve",
        "pull",
        "backfill",
        "explain",
        "status",
        "reconcile",
        "resume",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let (code, script) = bq_ingest(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        for command in COMMANDS {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
        assert!(
            script.contains("destination-table"),
            "{shell}: options of subcommands"
        );
    }
    let (code, page) = bq_ingest(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH bq-ingest 1"), "{page}");
    for command in ["SERVE", "PULL", "BACKFILL", "EXPLAIN"] {
        assert!(
            page.contains(&format!(".SH \"COMMAND: {command}\"")),
            "man page lacks {command}"
        );
    }
    assert!(
        page.contains("SHUTDOWN_GRACE_SECONDS"),
        "options with their environment variables"
    );
    let (_, help) = bq_ingest(&["--help"]);
    for command in COMMANDS {
        assert!(
            help.contains(&format!("  {command} ")),
            "--help lists {command}: {help}"
        );
    }
}
