use super::*;
use crate::config::{ConfigDir, ConfigFile};
use crate::ports::TableRef;

const BUCKET: &str = "bucket";

fn batch(prefix: &str) -> Batch {
    Batch {
        bucket: BUCKET.to_string(),
        marker: format!("{prefix}_SUCCESS"),
        destination: TableRef {
            project: "storage-project".to_string(),
            dataset: "ds".to_string(),
            table: "t".to_string(),
            partition: None,
        },
        batch_id: None,
        batch_timestamp: None,
        batch_prefix: prefix.to_string(),
        table_prefix: "ds/t".to_string(),
    }
}

fn object(name: &str, size: u64) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        size,
        generation: 1,
        updated: None,
    }
}

fn names(files: &BatchFiles) -> Vec<&str> {
    files.data.iter().map(|f| f.name.as_str()).collect()
}

fn reason_of<'a>(files: &'a BatchFiles, name: &str) -> Option<&'a str> {
    files
        .skipped
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.reason)
}

fn default_config() -> BatchConfig {
    BatchConfig::merge(BUCKET, &[]).expect("defaults merge")
}

fn config_with(json: &str) -> BatchConfig {
    BatchConfig::merge(
        BUCKET,
        &[ConfigDir {
            prefix: "_config/".to_string(),
            load_json: Some(ConfigFile {
                name: "_config/load.json".to_string(),
                generation: 1,
                content: json.as_bytes().to_vec(),
            }),
            ..ConfigDir::default()
        }],
    )
    .expect("config merges")
}

fn settings_with_max_bytes(max_batch_bytes: u64) -> Settings {
    Settings {
        max_batch_bytes,
        ..Settings::default()
    }
}

/// Plans a batch whose listing is `listing` plus its marker.
fn plan_batch(
    settings: &Settings,
    prefix: &str,
    listing: &[ObjectMeta],
) -> Result<LoadPlan, PlanError> {
    plan_with(settings, &default_config(), prefix, listing)
}

fn plan_with(
    settings: &Settings,
    config: &BatchConfig,
    prefix: &str,
    listing: &[ObjectMeta],
) -> Result<LoadPlan, PlanError> {
    let batch = batch(prefix);
    let mut full = listing.to_vec();
    full.push(object(&batch.marker, 0));
    full.sort_by(|a, b| a.name.cmp(&b.name));
    let files = select_data_files(&batch, &settings.success_filename, &full);
    plan_load(
        settings,
        &batch,
        config,
        &files,
        &full,
        "job-project",
        "ds_t",
        1234,
    )
}

fn uris(job: &JobRequest) -> &[String] {
    match &job.kind {
        JobKind::Load { source_uris, .. } => source_uris,
        other => panic!("expected a load job, got {other:?}"),
    }
}

fn load_config(job: &JobRequest) -> &serde_json::Map<String, Value> {
    match &job.kind {
        JobKind::Load { config, .. } => config,
        other => panic!("expected a load job, got {other:?}"),
    }
}

/// Files named so that no wildcard applies (each in its own directory would too, but flat
/// files next to the marker are never compacted): `count` files of `size` bytes.
fn flat_files(prefix: &str, count: usize, size: u64) -> Vec<ObjectMeta> {
    (0..count)
        .map(|i| object(&format!("{prefix}part-{i:06}.csv"), size))
        .collect()
}

// ---- select_data_files ----

#[test]
fn select_skips_marker_control_files_and_folders_and_empty_objects() {
    let b = batch("ds/t/");
    let listing = [
        object("ds/t/", 0),
        object("ds/t/.hidden", 5),
        object("ds/t/_SUCCESS", 0),
        object("ds/t/_backlog/ds/t/b1/_SUCCESS", 0),
        object("ds/t/_bqlock", 40),
        object("ds/t/_config/load.json", 20),
        object("ds/t/_logs/history", 9),
        object("ds/t/_temporary/0/part-0", 9),
        object("ds/t/a.csv", 10),
        object("ds/t/b.csv", 11),
        object("ds/t/part-m-00000", 0),
        object("ds/t/sub/.crc/x", 1),
        object("ds/t/sub/c.csv", 12),
    ];
    let files = select_data_files(&b, "_SUCCESS", &listing);
    assert_eq!(
        names(&files),
        vec!["ds/t/a.csv", "ds/t/b.csv", "ds/t/sub/c.csv"]
    );
    assert_eq!(files.data[2].size, 12);
    assert_eq!(reason_of(&files, "ds/t/"), Some("folder placeholder"));
    assert_eq!(reason_of(&files, "ds/t/.hidden"), Some("control file"));
    assert_eq!(reason_of(&files, "ds/t/_SUCCESS"), Some("success marker"));
    assert_eq!(
        reason_of(&files, "ds/t/_backlog/ds/t/b1/_SUCCESS"),
        Some("backlog")
    );
    assert_eq!(reason_of(&files, "ds/t/_bqlock"), Some("control file"));
    assert_eq!(reason_of(&files, "ds/t/_config/load.json"), Some("config"));
    assert_eq!(
        reason_of(&files, "ds/t/_logs/history"),
        Some("control folder")
    );
    assert_eq!(
        reason_of(&files, "ds/t/_temporary/0/part-0"),
        Some("control folder")
    );
    assert_eq!(reason_of(&files, "ds/t/part-m-00000"), Some("empty"));
    assert_eq!(reason_of(&files, "ds/t/sub/.crc/x"), Some("control folder"));
    assert_eq!(files.data.len() + files.skipped.len(), listing.len());
}

#[test]
fn select_skips_sub_batches_with_their_own_marker() {
    let b = batch("ds/t/");
    let listing = [
        object("ds/t/$2020010100/_SUCCESS", 0),
        object("ds/t/$2020010100/a.csv", 10),
        object("ds/t/$2020010100/deep/b.csv", 10),
        object("ds/t/$2020010200/c.csv", 10),
        object("ds/t/_SUCCESS", 0),
        object("ds/t/d.csv", 10),
    ];
    let files = select_data_files(&b, "_SUCCESS", &listing);
    assert_eq!(names(&files), vec!["ds/t/$2020010200/c.csv", "ds/t/d.csv"]);
    assert_eq!(
        reason_of(&files, "ds/t/$2020010100/_SUCCESS"),
        Some("success marker")
    );
    assert_eq!(
        reason_of(&files, "ds/t/$2020010100/a.csv"),
        Some("other batch")
    );
    assert_eq!(
        reason_of(&files, "ds/t/$2020010100/deep/b.csv"),
        Some("other batch")
    );
}

#[test]
fn select_uses_the_configured_success_filename() {
    let b = batch("ds/t/");
    let listing = [
        object("ds/t/DONE", 0),
        object("ds/t/_SUCCESS", 3),
        object("ds/t/x/DONE", 0),
        object("ds/t/x/y.csv", 3),
        object("ds/t/z.csv", 3),
    ];
    let files = select_data_files(&b, "DONE", &listing);
    assert_eq!(names(&files), vec!["ds/t/z.csv"]);
    assert_eq!(reason_of(&files, "ds/t/DONE"), Some("success marker"));
    assert_eq!(reason_of(&files, "ds/t/_SUCCESS"), Some("control file"));
    assert_eq!(reason_of(&files, "ds/t/x/y.csv"), Some("other batch"));
}

#[test]
fn select_underscores_inside_names_are_data() {
    let b = batch("ds/t/");
    let listing = [object("ds/t/my_file.csv", 1), object("ds/t/dir_x/f.csv", 1)];
    let files = select_data_files(&b, "_SUCCESS", &listing);
    assert_eq!(names(&files), vec!["ds/t/dir_x/f.csv", "ds/t/my_file.csv"]);
}

#[test]
fn select_sorts_data_by_name_and_ignores_objects_outside_the_batch() {
    let b = batch("ds/t/b1/");
    let listing = [
        object("ds/t/b1/z.csv", 1),
        object("ds/t/b1/a.csv", 1),
        object("ds/t/b10/a.csv", 1),
        object("elsewhere.csv", 1),
    ];
    let files = select_data_files(&b, "_SUCCESS", &listing);
    assert_eq!(names(&files), vec!["ds/t/b1/a.csv", "ds/t/b1/z.csv"]);
    assert_eq!(reason_of(&files, "ds/t/b10/a.csv"), Some("outside batch"));
    assert_eq!(reason_of(&files, "elsewhere.csv"), Some("outside batch"));
}

#[test]
fn select_at_the_bucket_root() {
    let b = batch("");
    let listing = [
        object("_SUCCESS", 0),
        object("_config/load.json", 5),
        object("a.csv", 5),
        object("d/b.csv", 5),
    ];
    let files = select_data_files(&b, "_SUCCESS", &listing);
    assert_eq!(names(&files), vec!["a.csv", "d/b.csv"]);
}

// ---- job ids ----

#[test]
fn job_id_hint_formats() {
    assert_eq!(job_id_hint("ds", "t", None), "ds_t");
    assert_eq!(
        job_id_hint("ds", "t", Some("$2020010203")),
        "ds_t_2020010203"
    );
    assert_eq!(job_id_hint("ds", "t", Some("2020")), "ds_t_2020");
    assert_eq!(job_id_hint("ds", "t", Some("$")), "ds_t");
}

#[test]
fn job_id_has_the_documented_format() {
    let id = job_id("gcf-ingest-", "ds_t_2020010203", "b", "ds/t/_SUCCESS", 5, 3);
    let mut hasher = Sha256::new();
    hasher.update(b"b\0ds/t/_SUCCESS\x005");
    let digest = hasher.finalize();
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(id, format!("gcf-ingest-ds_t_2020010203_{hash}_3"));
}

#[test]
fn job_id_is_deterministic_and_changes_with_each_input() {
    let base = job_id("p-", "ds_t", "b", "ds/t/_SUCCESS", 1, 0);
    assert_eq!(base, job_id("p-", "ds_t", "b", "ds/t/_SUCCESS", 1, 0));
    for other in [
        job_id("p-", "ds_t", "b", "ds/t/_SUCCESS", 2, 0),
        job_id("p-", "ds_t", "b2", "ds/t/_SUCCESS", 1, 0),
        job_id("p-", "ds_t", "b", "ds/t2/_SUCCESS", 1, 0),
        job_id("p-", "ds_t", "b", "ds/t/_SUCCESS", 1, 1),
    ] {
        assert_ne!(base, other);
    }
    // The NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    assert_ne!(
        job_id("p-", "h", "ab", "c", 1, 0),
        job_id("p-", "h", "a", "bc", 1, 0)
    );
}

#[test]
fn job_id_sanitizes_to_the_allowed_characters() {
    let id = job_id("gcf ingest.", "ds_tâble$2020 x", "b", "m", 1, 0);
    assert!(id.starts_with("gcf_ingest_ds_t_ble_2020_x_"), "{id}");
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
}

#[test]
fn job_id_is_capped_at_1024_keeping_hash_and_part() {
    let long_hint = "t".repeat(5000);
    let id = job_id("gcf-ingest-", &long_hint, "b", "m", 1, 12);
    assert_eq!(id.len(), MAX_JOB_ID_LEN);
    let short = job_id("gcf-ingest-", "t", "b", "m", 1, 12);
    let tail = &short[short.len() - "_0123456789abcdef_12".len()..];
    assert!(id.ends_with(tail), "{id} does not keep {tail}");
    // Non-ASCII characters count as one `_` each, so the cap still holds.
    let id = job_id("gcf-ingest-", &"é".repeat(3000), "b", "m", 1, usize::MAX);
    assert_eq!(id.len(), MAX_JOB_ID_LEN);
    assert!(id.ends_with(&format!("_{}", usize::MAX)));
    // A huge prefix is cut too.
    let id = job_id(&"p".repeat(2000), "h", "b", "m", 1, 0);
    assert_eq!(id.len(), MAX_JOB_ID_LEN);
}

// ---- labels ----

#[test]
fn labels_of_a_plain_batch() {
    let labels = job_labels(&Settings::default(), &batch("ds/t/"), &default_config());
    let expected: BTreeMap<String, String> = [
        ("component", "event-based-gcs-ingest"),
        ("bucket", "bucket"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expected);
}

#[test]
fn labels_with_batch_service_and_data_source_are_sanitized() {
    let mut b = batch("ds/t/Batch.01/");
    b.bucket = "My.Bucket_EU".to_string();
    b.batch_id = Some("Batch.01".to_string());
    let settings = Settings {
        service_name: Some("BQ-Ingest Service".to_string()),
        ..Settings::default()
    };
    let mut config = default_config();
    config.data_source_name = Some(format!("Ünïcode-{}", "x".repeat(100)));
    let labels = job_labels(&settings, &b, &config);
    assert_eq!(labels["bucket"], "my_bucket_eu");
    assert_eq!(labels["batch-id"], "batch_01");
    assert_eq!(labels["cloud-function-name"], "bq-ingest_service");
    let source = &labels["data-source"];
    assert_eq!(source.chars().count(), MAX_LABEL_LEN);
    assert!(source.starts_with("_n_code-xxx"), "{source}");
    for (key, value) in &labels {
        assert!(key.len() <= MAX_LABEL_LEN && value.len() <= MAX_LABEL_LEN);
        assert!(key.starts_with(|c: char| c.is_ascii_lowercase()), "{key}");
        for c in key.chars().chain(value.chars()) {
            assert!(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        }
    }
}

#[test]
fn label_values_may_be_empty_and_keys_start_with_a_letter() {
    assert_eq!(sanitize_label_value(""), "");
    assert_eq!(sanitize_label_key(""), "x");
    assert_eq!(sanitize_label_key("_private"), "x_private");
    assert_eq!(sanitize_label_key(&"9".repeat(100)).len(), MAX_LABEL_LEN);
    assert_eq!(sanitize_label_key("Data-Source"), "data-source");
}

// ---- plan_load: splitting on URIs ----

#[test]
fn ten_thousand_files_make_one_job() {
    let plan = plan_batch(
        &Settings::default(),
        "ds/t/",
        &flat_files("ds/t/", 10_000, 1),
    )
    .unwrap();
    assert_eq!(plan.jobs.len(), 1);
    assert_eq!(uris(&plan.jobs[0]).len(), 10_000);
    assert_eq!((plan.files, plan.bytes), (10_000, 10_000));
}

#[test]
fn ten_thousand_and_one_files_make_two_jobs() {
    let plan = plan_batch(
        &Settings::default(),
        "ds/t/",
        &flat_files("ds/t/", 10_001, 1),
    )
    .unwrap();
    assert_eq!(plan.jobs.len(), 2);
    assert_eq!(uris(&plan.jobs[0]).len(), 10_000);
    assert_eq!(uris(&plan.jobs[1]), &["gs://bucket/ds/t/part-010000.csv"]);
    assert_eq!(plan.files, 10_001);
}

#[test]
fn twenty_five_thousand_files_make_three_jobs_in_name_order() {
    let plan = plan_batch(
        &Settings::default(),
        "ds/t/",
        &flat_files("ds/t/", 25_000, 2),
    )
    .unwrap();
    let sizes: Vec<usize> = plan.jobs.iter().map(|j| uris(j).len()).collect();
    assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
    assert_eq!(uris(&plan.jobs[0])[0], "gs://bucket/ds/t/part-000000.csv");
    assert_eq!(uris(&plan.jobs[1])[0], "gs://bucket/ds/t/part-010000.csv");
    assert_eq!(
        uris(&plan.jobs[2])[4_999],
        "gs://bucket/ds/t/part-024999.csv"
    );
    assert_eq!((plan.files, plan.bytes), (25_000, 50_000));
    // Every file once, none lost, none twice.
    let all: HashSet<&String> = plan.jobs.iter().flat_map(|j| uris(j).iter()).collect();
    assert_eq!(all.len(), 25_000);
}

// ---- plan_load: splitting on bytes ----

#[test]
fn byte_limit_splits_files_of_40_into_pairs() {
    let plan = plan_batch(
        &settings_with_max_bytes(100),
        "ds/t/",
        &flat_files("ds/t/", 5, 40),
    )
    .unwrap();
    let parts: Vec<Vec<&str>> = plan
        .jobs
        .iter()
        .map(|j| uris(j).iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        parts,
        vec![
            vec![
                "gs://bucket/ds/t/part-000000.csv",
                "gs://bucket/ds/t/part-000001.csv"
            ],
            vec![
                "gs://bucket/ds/t/part-000002.csv",
                "gs://bucket/ds/t/part-000003.csv"
            ],
            vec!["gs://bucket/ds/t/part-000004.csv"],
        ]
    );
    assert_eq!(plan.bytes, 200);
}

#[test]
fn byte_limit_exact_fit_is_one_part() {
    let plan = plan_batch(
        &settings_with_max_bytes(100),
        "ds/t/",
        &flat_files("ds/t/", 2, 50),
    )
    .unwrap();
    assert_eq!(plan.jobs.len(), 1);
    assert_eq!(uris(&plan.jobs[0]).len(), 2);
    // One byte more does not fit.
    let listing = [object("ds/t/a", 50), object("ds/t/b", 51)];
    let plan = plan_batch(&settings_with_max_bytes(100), "ds/t/", &listing).unwrap();
    assert_eq!(plan.jobs.len(), 2);
}

#[test]
fn a_file_at_the_byte_limit_is_a_part_of_its_own() {
    let listing = [
        object("ds/t/a", 100),
        object("ds/t/b", 1),
        object("ds/t/c", 100),
    ];
    let plan = plan_batch(&settings_with_max_bytes(100), "ds/t/", &listing).unwrap();
    let sizes: Vec<usize> = plan.jobs.iter().map(|j| uris(j).len()).collect();
    assert_eq!(sizes, vec![1, 1, 1]);
}

#[test]
fn a_file_over_the_byte_limit_is_an_error_naming_it() {
    let listing = [object("ds/t/a", 10), object("ds/t/huge", 101)];
    let err = plan_batch(&settings_with_max_bytes(100), "ds/t/", &listing).unwrap_err();
    match &err {
        PlanError::Invalid {
            bucket,
            marker,
            message,
        } => {
            assert_eq!(bucket, BUCKET);
            assert_eq!(marker, "ds/t/_SUCCESS");
            assert!(message.contains("gs://bucket/ds/t/huge"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn huge_sizes_do_not_overflow() {
    let listing = [object("ds/t/a", u64::MAX), object("ds/t/b", u64::MAX)];
    let plan = plan_batch(&settings_with_max_bytes(u64::MAX), "ds/t/", &listing).unwrap();
    assert_eq!(plan.jobs.len(), 2);
    assert_eq!(plan.bytes, u64::MAX);
}

#[test]
fn both_limits_together() {
    // 10,050 files of 1 byte, except three heavier ones; at most 10,500 bytes a part.
    // Part 0 stops at 10,000 files (10,000 bytes: the URI limit bites); part 1 holds
    // files 10,000..=10,039 (38 + 1,000 + 5,000 = 6,038 bytes; file 10,040 of 5,000 bytes
    // would make 11,038: the byte limit bites); part 2 holds the last 10.
    let mut listing = flat_files("ds/t/", 10_050, 1);
    listing[10_020].size = 1_000;
    listing[10_030].size = 5_000;
    listing[10_040].size = 5_000;
    let plan = plan_batch(&settings_with_max_bytes(10_500), "ds/t/", &listing).unwrap();
    let sizes: Vec<usize> = plan.jobs.iter().map(|j| uris(j).len()).collect();
    assert_eq!(sizes, vec![10_000, 40, 10]);
    assert_eq!(uris(&plan.jobs[2])[0], "gs://bucket/ds/t/part-010040.csv");
    let size_of: HashMap<String, u64> = listing
        .iter()
        .map(|o| (format!("gs://bucket/{}", o.name), o.size))
        .collect();
    let bytes: Vec<u64> = plan
        .jobs
        .iter()
        .map(|j| uris(j).iter().map(|u| size_of[u]).sum())
        .collect();
    assert_eq!(bytes, vec![10_000, 6_038, 5_009]);
    assert_eq!(plan.bytes, 10_000 + 6_038 + 5_009);
}

#[test]
fn no_data_files_is_an_error() {
    let listing = [
        object("ds/t/_config/load.json", 3),
        object("ds/t/empty.csv", 0),
    ];
    let err = plan_batch(&Settings::default(), "ds/t/", &listing).unwrap_err();
    assert_eq!(
        err,
        PlanError::NoDataFiles {
            bucket: BUCKET.to_string(),
            marker: "ds/t/_SUCCESS".to_string(),
        }
    );
}

// ---- plan_load: wildcards ----

#[test]
fn wildcard_for_a_directory_fully_of_data_files() {
    let listing = [
        object("ds/t/b1/data/part-0", 5),
        object("ds/t/b1/data/part-1", 5),
        object("ds/t/b1/data/part-2", 5),
        object("ds/t/b1/single/only", 5),
        object("ds/t/b1/top.csv", 5),
    ];
    let plan = plan_batch(&Settings::default(), "ds/t/b1/", &listing).unwrap();
    assert_eq!(
        uris(&plan.jobs[0]),
        &[
            "gs://bucket/ds/t/b1/data/*",
            "gs://bucket/ds/t/b1/single/only",
            "gs://bucket/ds/t/b1/top.csv"
        ]
    );
    assert_eq!(plan.files, 5);
}

#[test]
fn no_wildcard_in_the_marker_directory() {
    let listing = flat_files("ds/t/", 3, 5);
    let plan = plan_batch(&Settings::default(), "ds/t/", &listing).unwrap();
    assert_eq!(uris(&plan.jobs[0]).len(), 3);
    assert!(uris(&plan.jobs[0]).iter().all(|u| !u.contains('*')));
}

#[test]
fn no_wildcard_when_the_directory_holds_a_success_marker() {
    // A directory with its own _SUCCESS is another batch: not loaded at all. When the marker
    // is not the success filename of this deployment but an `_SUCCESS` of a tool, still no
    // wildcard.
    let listing = [
        object("ds/t/d/_SUCCESS", 0),
        object("ds/t/d/a", 5),
        object("ds/t/d/b", 5),
        object("ds/t/x.csv", 5),
    ];
    let settings = Settings {
        success_filename: "DONE".to_string(),
        ..Settings::default()
    };
    let b = Batch {
        marker: "ds/t/DONE".to_string(),
        ..batch("ds/t/")
    };
    let mut full = listing.to_vec();
    full.push(object("ds/t/DONE", 0));
    let files = select_data_files(&b, "DONE", &full);
    let plan = plan_load(
        &settings,
        &b,
        &default_config(),
        &files,
        &full,
        "p",
        "ds_t",
        1,
    )
    .unwrap();
    assert_eq!(
        uris(&plan.jobs[0]),
        &[
            "gs://bucket/ds/t/d/a",
            "gs://bucket/ds/t/d/b",
            "gs://bucket/ds/t/x.csv"
        ]
    );
}

#[test]
fn no_wildcard_when_the_directory_holds_an_empty_file() {
    let listing = [
        object("ds/t/b1/d/a", 5),
        object("ds/t/b1/d/b", 5),
        object("ds/t/b1/d/part-m-00000", 0),
    ];
    let plan = plan_batch(&Settings::default(), "ds/t/b1/", &listing).unwrap();
    assert_eq!(
        uris(&plan.jobs[0]),
        &["gs://bucket/ds/t/b1/d/a", "gs://bucket/ds/t/b1/d/b"]
    );
}

#[test]
fn no_wildcard_when_a_subdirectory_holds_a_control_file() {
    // `d/*` would also match `d/sub/_temporary/x` and `d/sub/.crc`: BigQuery's `*` crosses `/`.
    for control in ["ds/t/b1/d/sub/_temporary/x", "ds/t/b1/d/sub/.part-0.crc"] {
        let listing = [
            object("ds/t/b1/d/a", 5),
            object("ds/t/b1/d/b", 5),
            object("ds/t/b1/d/sub/c", 5),
            object(control, 5),
        ];
        let plan = plan_batch(&Settings::default(), "ds/t/b1/", &listing).unwrap();
        assert_eq!(
            uris(&plan.jobs[0]),
            &[
                "gs://bucket/ds/t/b1/d/a",
                "gs://bucket/ds/t/b1/d/b",
                "gs://bucket/ds/t/b1/d/sub/c"
            ],
            "{control}"
        );
    }
}

#[test]
fn wildcard_covers_nested_directories_once() {
    let listing = [
        object("ds/t/b1/d/a", 5),
        object("ds/t/b1/d/sub/b", 5),
        object("ds/t/b1/d/sub/c", 5),
        object("ds/t/b1/e/f", 5),
    ];
    let plan = plan_batch(&Settings::default(), "ds/t/b1/", &listing).unwrap();
    assert_eq!(
        uris(&plan.jobs[0]),
        &["gs://bucket/ds/t/b1/d/*", "gs://bucket/ds/t/b1/e/f"]
    );
}

#[test]
fn no_wildcard_for_a_directory_split_across_parts() {
    // max 10 bytes: d/a + d/b (part 0), d/c + e/x (part 1)... each directory's files must all
    // be in one part for a wildcard.
    let listing = [
        object("ds/t/b1/d/a", 5),
        object("ds/t/b1/d/b", 5),
        object("ds/t/b1/d/c", 5),
        object("ds/t/b1/e/x", 5),
        object("ds/t/b1/f/y", 4),
        object("ds/t/b1/f/z", 4),
    ];
    let plan = plan_batch(&settings_with_max_bytes(10), "ds/t/b1/", &listing).unwrap();
    let parts: Vec<&[String]> = plan.jobs.iter().map(uris).collect();
    assert_eq!(
        parts,
        vec![
            &[
                "gs://bucket/ds/t/b1/d/a".to_string(),
                "gs://bucket/ds/t/b1/d/b".to_string()
            ][..],
            &[
                "gs://bucket/ds/t/b1/d/c".to_string(),
                "gs://bucket/ds/t/b1/e/x".to_string()
            ][..],
            &["gs://bucket/ds/t/b1/f/*".to_string()][..],
        ]
    );
}

#[test]
fn no_wildcard_when_a_data_file_is_missing_from_the_listing() {
    let b = batch("ds/t/b1/");
    let listing = [object("ds/t/b1/_SUCCESS", 0), object("ds/t/b1/d/a", 5)];
    let files = BatchFiles {
        data: vec![
            DataFile {
                name: "ds/t/b1/d/a".to_string(),
                size: 5,
            },
            DataFile {
                name: "ds/t/b1/d/b".to_string(),
                size: 5,
            },
        ],
        skipped: Vec::new(),
    };
    let plan = plan_load(
        &Settings::default(),
        &b,
        &default_config(),
        &files,
        &listing,
        "p",
        "h",
        1,
    )
    .unwrap();
    assert_eq!(
        uris(&plan.jobs[0]),
        &["gs://bucket/ds/t/b1/d/a", "gs://bucket/ds/t/b1/d/b"]
    );
}

#[test]
fn no_wildcard_for_a_directory_with_a_star() {
    let listing = [object("ds/t/b1/d*/a", 5), object("ds/t/b1/d*/b", 5)];
    let plan = plan_batch(&Settings::default(), "ds/t/b1/", &listing).unwrap();
    assert_eq!(uris(&plan.jobs[0]).len(), 2);
}

#[test]
fn wildcards_with_many_files_per_directory_stay_within_limits() {
    // 12,000 files in 12 directories of 1,000: parts of 10,000 files, 10 wildcards in the
    // first part, 2 in the second.
    let listing: Vec<ObjectMeta> = (0..12)
        .flat_map(|d| (0..1_000).map(move |f| object(&format!("ds/t/b/d{d:02}/f{f:04}"), 1)))
        .collect();
    let plan = plan_batch(&Settings::default(), "ds/t/b/", &listing).unwrap();
    assert_eq!(plan.jobs.len(), 2);
    assert_eq!(uris(&plan.jobs[0]).len(), 10);
    assert_eq!(uris(&plan.jobs[0])[0], "gs://bucket/ds/t/b/d00/*");
    assert_eq!(
        uris(&plan.jobs[1]),
        &["gs://bucket/ds/t/b/d10/*", "gs://bucket/ds/t/b/d11/*"]
    );
    assert_eq!(plan.files, 12_000);
}

// ---- plan_load: jobs ----

#[test]
fn jobs_carry_ids_labels_location_destination_and_config() {
    let settings = Settings {
        bq_location: Some("EU".to_string()),
        service_name: Some("ingest".to_string()),
        max_batch_bytes: 10,
        ..Settings::default()
    };
    let config = config_with(
        r#"{"sourceFormat": "NEWLINE_DELIMITED_JSON", "fieldDelimiter": "\u0010", "dataSourceName": "crm"}"#,
    );
    let listing = flat_files("ds/t/", 2, 10);
    let plan = plan_with(&settings, &config, "ds/t/", &listing).unwrap();
    assert_eq!(plan.mode, PlanMode::Load);
    assert_eq!(plan.jobs.len(), 2);
    for (part, job) in plan.jobs.iter().enumerate() {
        assert_eq!(job.project, "job-project");
        assert_eq!(
            job.job_id,
            job_id("gcf-ingest-", "ds_t", BUCKET, "ds/t/_SUCCESS", 1234, part)
        );
        assert_eq!(job.location.as_deref(), Some("EU"));
        assert_eq!(job.labels[PART_LABEL], part.to_string());
        assert_eq!(job.labels[PARTS_LABEL], "2");
        assert_eq!(job.labels["component"], COMPONENT);
        assert_eq!(job.labels["cloud-function-name"], "ingest");
        assert_eq!(job.labels["data-source"], "crm");
        let JobKind::Load {
            destination,
            config,
            ..
        } = &job.kind
        else {
            panic!("expected a load job");
        };
        assert_eq!(destination, &batch("ds/t/").destination);
        assert_eq!(config["sourceFormat"], "NEWLINE_DELIMITED_JSON");
        assert_eq!(config["fieldDelimiter"], "\u{10}");
        assert!(!config.contains_key("dataSourceName"));
    }
    assert_ne!(plan.jobs[0].job_id, plan.jobs[1].job_id);
}

#[test]
fn plan_is_deterministic() {
    let listing = flat_files("ds/t/", 30, 7);
    let a = plan_batch(&settings_with_max_bytes(50), "ds/t/", &listing).unwrap();
    let b = plan_batch(&settings_with_max_bytes(50), "ds/t/", &listing).unwrap();
    assert_eq!(a, b);
}

#[test]
fn write_truncate_applies_to_the_first_part_only() {
    let config = config_with(r#"{"writeDisposition": "WRITE_TRUNCATE"}"#);
    let plan = plan_with(
        &settings_with_max_bytes(10),
        &config,
        "ds/t/",
        &flat_files("ds/t/", 3, 10),
    )
    .unwrap();
    let dispositions: Vec<&str> = plan
        .jobs
        .iter()
        .map(|j| load_config(j)["writeDisposition"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        dispositions,
        vec!["WRITE_TRUNCATE", "WRITE_APPEND", "WRITE_APPEND"]
    );
}

#[test]
fn write_empty_applies_to_the_first_part_only() {
    let config = config_with(r#"{"writeDisposition": "WRITE_EMPTY"}"#);
    let plan = plan_with(
        &settings_with_max_bytes(10),
        &config,
        "ds/t/",
        &flat_files("ds/t/", 2, 10),
    )
    .unwrap();
    assert_eq!(
        load_config(&plan.jobs[0])["writeDisposition"],
        "WRITE_EMPTY"
    );
    assert_eq!(
        load_config(&plan.jobs[1])["writeDisposition"],
        "WRITE_APPEND"
    );
}

#[test]
fn write_truncate_single_part_stays() {
    let config = config_with(r#"{"writeDisposition": "WRITE_TRUNCATE"}"#);
    let plan = plan_with(
        &Settings::default(),
        &config,
        "ds/t/",
        &flat_files("ds/t/", 3, 10),
    )
    .unwrap();
    assert_eq!(plan.jobs.len(), 1);
    assert_eq!(
        load_config(&plan.jobs[0])["writeDisposition"],
        "WRITE_TRUNCATE"
    );
}

#[test]
fn load_config_never_carries_source_uris_or_own_keys() {
    let mut config = default_config();
    config
        .load
        .insert("sourceUris".to_string(), Value::from(vec!["gs://x/*"]));
    config
        .load
        .insert("destinationTable".to_string(), Value::from("x"));
    config
        .load
        .insert("destinationRegex".to_string(), Value::from("x"));
    let plan = plan_with(
        &Settings::default(),
        &config,
        "ds/t/",
        &flat_files("ds/t/", 1, 1),
    )
    .unwrap();
    let load = load_config(&plan.jobs[0]);
    for key in [
        "sourceUris",
        "destinationTable",
        "destinationRegex",
        "dataSourceName",
    ] {
        assert!(!load.contains_key(key), "{key}");
    }
    assert_eq!(load["sourceFormat"], "CSV");
}

// ---- per-file partitions (fileTimestampRegex) ----

fn partitioned_config(ingest_json: &str, load_json: &str) -> BatchConfig {
    let file = |name: &str, json: &str| ConfigFile {
        name: name.to_string(),
        generation: 1,
        content: json.as_bytes().to_vec(),
    };
    BatchConfig::merge(
        BUCKET,
        &[ConfigDir {
            prefix: "_config/".to_string(),
            load_json: Some(file("_config/load.json", load_json)),
            ingest_json: Some(file("_config/ingest.json", ingest_json)),
            ..ConfigDir::default()
        }],
    )
    .expect("config merges")
}

const HOURLY: &str =
    r#"{"fileTimestampRegex": "(?P<yyyy>\\d{4})(?P<mm>\\d\\d)(?P<dd>\\d\\d)T(?P<hh>\\d\\d)"}"#;

fn plan_partitioned(
    settings: &Settings,
    config: &BatchConfig,
    granularity: PartitionGranularity,
    prefix: &str,
    listing: &[ObjectMeta],
) -> Result<LoadPlan, PlanError> {
    let batch = batch(prefix);
    let mut full = listing.to_vec();
    full.push(object(&batch.marker, 0));
    full.sort_by(|a, b| a.name.cmp(&b.name));
    let files = select_data_files(&batch, &settings.success_filename, &full);
    plan_partitioned_load(
        settings,
        &batch,
        config,
        &files,
        &full,
        granularity,
        "job-project",
        "ds_t",
        1234,
    )
}

fn destination_of(job: &JobRequest) -> String {
    match &job.kind {
        JobKind::Load { destination, .. } => destination.to_string(),
        other => panic!("expected a load job, got {other:?}"),
    }
}

fn disposition_of(job: &JobRequest) -> &str {
    match &job.kind {
        JobKind::Load { config, .. } => config["writeDisposition"].as_str().unwrap(),
        other => panic!("expected a load job, got {other:?}"),
    }
}

#[test]
fn each_file_goes_into_the_partition_of_its_name_one_job_per_partition() {
    let config = partitioned_config(HOURLY, r#"{"writeDisposition": "WRITE_TRUNCATE"}"#);
    let listing = [
        object("ds/t/b1/events-20240102T03.csv", 10),
        object("ds/t/b1/events-20240102T04.csv", 10),
        object("ds/t/b1/more/events-20240102T03.csv", 10),
    ];
    let plan = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Hour,
        "ds/t/b1/",
        &listing,
    )
    .unwrap();
    let destinations: Vec<String> = plan.jobs.iter().map(destination_of).collect();
    assert_eq!(
        destinations,
        [
            "storage-project.ds.t$2024010203",
            "storage-project.ds.t$2024010204"
        ]
    );
    assert_eq!(
        uris(&plan.jobs[0]),
        [
            "gs://bucket/ds/t/b1/events-20240102T03.csv",
            "gs://bucket/ds/t/b1/more/events-20240102T03.csv"
        ]
    );
    assert_eq!(
        uris(&plan.jobs[1]),
        ["gs://bucket/ds/t/b1/events-20240102T04.csv"]
    );
    // WRITE_TRUNCATE replaces each partition: the first job of every partition keeps it.
    assert!(plan
        .jobs
        .iter()
        .all(|j| disposition_of(j) == "WRITE_TRUNCATE"));
    assert_eq!((plan.files, plan.bytes), (3, 30));
    // Ids are numbered across the batch, distinct and the same on every plan of it.
    assert!(plan.jobs[0].job_id.ends_with("_0"));
    assert!(plan.jobs[1].job_id.ends_with("_1"));
    assert_eq!(plan.jobs[1].labels[PART_LABEL], "1");
    let again = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Hour,
        "ds/t/b1/",
        &listing,
    )
    .unwrap();
    assert_eq!(plan, again);
}

#[test]
fn the_granularity_decides_the_decorator() {
    let config = partitioned_config(HOURLY, "{}");
    let listing = [
        object("ds/t/a-20240102T03.csv", 10),
        object("ds/t/b-20240102T23.csv", 10),
        object("ds/t/c-20240203T00.csv", 10),
    ];
    let day = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Day,
        "ds/t/",
        &listing,
    )
    .unwrap();
    let destinations: Vec<String> = day.jobs.iter().map(destination_of).collect();
    assert_eq!(
        destinations,
        [
            "storage-project.ds.t$20240102",
            "storage-project.ds.t$20240203"
        ]
    );
    let month = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Month,
        "ds/t/",
        &listing,
    )
    .unwrap();
    let destinations: Vec<String> = month.jobs.iter().map(destination_of).collect();
    assert_eq!(
        destinations,
        ["storage-project.ds.t$202401", "storage-project.ds.t$202402"]
    );
}

#[test]
fn a_partition_with_more_files_than_one_job_takes_is_split_and_only_its_first_part_truncates() {
    let config = partitioned_config(HOURLY, r#"{"writeDisposition": "WRITE_TRUNCATE"}"#);
    let mut listing: Vec<ObjectMeta> = (0..MAX_SOURCE_URIS_PER_JOB + 1)
        .map(|i| object(&format!("ds/t/{i:05}-20240102T03.csv"), 1))
        .collect();
    listing.push(object("ds/t/z-20240102T04.csv", 1));
    let plan = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Hour,
        "ds/t/",
        &listing,
    )
    .unwrap();
    let summary: Vec<(String, &str)> = plan
        .jobs
        .iter()
        .map(|j| (destination_of(j), disposition_of(j)))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "storage-project.ds.t$2024010203".to_string(),
                "WRITE_TRUNCATE"
            ),
            (
                "storage-project.ds.t$2024010203".to_string(),
                "WRITE_APPEND"
            ),
            (
                "storage-project.ds.t$2024010204".to_string(),
                "WRITE_TRUNCATE"
            ),
        ]
    );
    assert_eq!(plan.jobs[2].labels[PARTS_LABEL], "3");
}

#[test]
fn a_file_without_a_timestamp_fails_the_batch_naming_it() {
    let config = partitioned_config(HOURLY, "{}");
    let listing = [
        object("ds/t/events-20240102T03.csv", 10),
        object("ds/t/notes.csv", 10),
    ];
    let err = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Hour,
        "ds/t/",
        &listing,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("gs://bucket/ds/t/notes.csv"), "{err}");
    assert!(err.contains("defaultPartition"), "{err}");
}

#[test]
fn a_file_without_a_timestamp_goes_to_the_default_partition_when_configured() {
    let ingest = r#"{"fileTimestampRegex": "(?P<yyyy>\\d{4})(?P<mm>\\d\\d)(?P<dd>\\d\\d)T(?P<hh>\\d\\d)", "defaultPartition": "2000010100"}"#;
    let config = partitioned_config(ingest, "{}");
    let listing = [
        object("ds/t/events-20240102T03.csv", 10),
        object("ds/t/notes.csv", 10),
    ];
    let plan = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Hour,
        "ds/t/",
        &listing,
    )
    .unwrap();
    let destinations: Vec<String> = plan.jobs.iter().map(destination_of).collect();
    assert_eq!(
        destinations,
        [
            "storage-project.ds.t$2000010100",
            "storage-project.ds.t$2024010203"
        ]
    );
    // A default partition of another granularity is an error.
    let err = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Day,
        "ds/t/",
        &listing,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("defaultPartition") && err.contains("DAY"),
        "{err}"
    );
}

#[test]
fn an_impossible_file_timestamp_and_a_path_partition_are_errors() {
    let config = partitioned_config(HOURLY, "{}");
    let err = plan_partitioned(
        &Settings::default(),
        &config,
        PartitionGranularity::Hour,
        "ds/t/",
        &[object("ds/t/events-20240231T03.csv", 10)],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gs://bucket/ds/t/events-20240231T03.csv"),
        "{err}"
    );
    assert!(err.contains("fileTimestampRegex"), "{err}");

    let mut in_partition = batch("ds/t/$2024010203/");
    in_partition.destination.partition = Some("$2024010203".into());
    let listing = [object("ds/t/$2024010203/events-20240102T03.csv", 10)];
    let files = select_data_files(&in_partition, "_SUCCESS", &listing);
    let err = plan_partitioned_load(
        &Settings::default(),
        &in_partition,
        &config,
        &files,
        &listing,
        PartitionGranularity::Hour,
        "p",
        "h",
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("$2024010203") && err.contains("one or the other"),
        "{err}"
    );
}

#[test]
fn without_file_timestamps_the_plan_is_the_plain_one() {
    let listing = [object("ds/t/a.csv", 10), object("ds/t/b.csv", 10)];
    let plain = plan_batch(&Settings::default(), "ds/t/", &listing).unwrap();
    let partitioned = plan_partitioned(
        &Settings::default(),
        &default_config(),
        PartitionGranularity::Day,
        "ds/t/",
        &listing,
    )
    .unwrap();
    assert_eq!(plain, partitioned);
}

/// Schema evolution in load mode is BigQuery's `schemaUpdateOptions`, from `load.json` into
/// every part (docs/configuration.md).
#[test]
fn schema_update_options_reach_every_part() {
    let config = config_with(
        r#"{"schemaUpdateOptions": ["ALLOW_FIELD_ADDITION", "ALLOW_FIELD_RELAXATION"]}"#,
    );
    let listing: Vec<ObjectMeta> = (0..MAX_SOURCE_URIS_PER_JOB + 1)
        .map(|i| object(&format!("ds/t/{i:05}.csv"), 1))
        .collect();
    let plan = plan_with(&Settings::default(), &config, "ds/t/", &listing).unwrap();
    assert_eq!(plan.jobs.len(), 2);
    for job in &plan.jobs {
        let JobKind::Load { config, .. } = &job.kind else {
            panic!("{job:?}")
        };
        assert_eq!(
            config["schemaUpdateOptions"],
            serde_json::json!(["ALLOW_FIELD_ADDITION", "ALLOW_FIELD_RELAXATION"])
        );
    }
}
