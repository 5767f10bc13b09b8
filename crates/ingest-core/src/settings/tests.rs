use super::*;

fn from(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(move |k| {
        vars.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    })
}

fn error(vars: &[(&str, &str)]) -> SettingsError {
    match from(vars) {
        Ok(settings) => panic!("{vars:?} should be invalid, got {settings:?}"),
        Err(e) => e,
    }
}

fn assert_error(vars: &[(&str, &str)], variable: &str, message_part: &str) {
    let err = error(vars);
    assert_eq!(err.variable, variable, "{vars:?}: {err}");
    assert!(
        err.message.contains(message_part),
        "{vars:?}: {err} lacks {message_part:?}"
    );
    assert!(
        err.to_string().starts_with(&format!("invalid {variable}=")),
        "{err}"
    );
}

#[test]
fn defaults_when_nothing_is_set() {
    let s = from(&[]).expect("defaults");
    assert_eq!(s.success_filename, "_SUCCESS");
    assert_eq!(s.start_backfill_filename, None);
    assert_eq!(
        s.destination_regex.as_str(),
        crate::destination::DEFAULT_DESTINATION_REGEX
    );
    assert_eq!(s.max_batch_bytes, 15_000_000_000_000);
    assert_eq!(s.job_prefix, "gcf-ingest-");
    assert_eq!(s.bq_project, None);
    assert_eq!(s.bq_storage_project, None);
    assert_eq!(s.bq_location, None);
    assert_eq!(s.wait_for_job, Duration::from_secs(60));
    assert!(!s.order_per_table);
    assert!(!s.wait_for_validation);
    assert!(s.fail_on_zero_dml_rows_affected);
    assert_eq!(s.max_retries_on_bigquery_error, 3);
    assert_eq!(
        s.load_state_table.as_deref(),
        Some("bigquery_loads.serverless_bq_loads")
    );
    assert!(s.include_prefixes.is_empty());
    assert!(s.exclude_prefixes.is_empty());
    assert!(s.timestamp_regex.is_none());
    assert_eq!(s.service_name, None);
    assert_eq!(s.lock_lease, Duration::from_secs(3600));
    assert_eq!(s.restart_buffer, Duration::from_secs(30));
    assert_eq!(s.failure_topic, None);
    assert_eq!(s.job_project(), None);
    assert_eq!(s.storage_project(), None);
}

#[test]
fn blank_values_count_as_unset() {
    let s = from(&[
        ("SUCCESS_FILENAME", ""),
        ("MAX_BATCH_BYTES", "  "),
        ("BQ_PROJECT", ""),
        ("GOOGLE_CLOUD_PROJECT", "fallback-project"),
        ("ORDER_PER_TABLE", ""),
        ("DESTINATION_REGEX", ""),
    ])
    .expect("valid");
    assert_eq!(s.success_filename, "_SUCCESS");
    assert_eq!(s.max_batch_bytes, DEFAULT_MAX_BATCH_BYTES);
    assert_eq!(s.bq_project.as_deref(), Some("fallback-project"));
    assert!(!s.order_per_table);
    assert_eq!(
        s.destination_regex.as_str(),
        crate::destination::DEFAULT_DESTINATION_REGEX
    );
}

#[test]
fn filenames() {
    let s = from(&[
        ("SUCCESS_FILENAME", "DONE"),
        ("START_BACKFILL_FILENAME", "_HISTORYDONE"),
    ])
    .expect("valid");
    assert_eq!(s.success_filename, "DONE");
    assert_eq!(s.start_backfill_filename.as_deref(), Some("_HISTORYDONE"));

    assert_error(
        &[("SUCCESS_FILENAME", "a/_SUCCESS")],
        "SUCCESS_FILENAME",
        "without '/'",
    );
    assert_error(
        &[("SUCCESS_FILENAME", "..")],
        "SUCCESS_FILENAME",
        "not '.' or '..'",
    );
    assert_error(
        &[("SUCCESS_FILENAME", "_BACKFILL")],
        "SUCCESS_FILENAME",
        "reserved",
    );
    assert_error(
        &[("START_BACKFILL_FILENAME", "x/y")],
        "START_BACKFILL_FILENAME",
        "without '/'",
    );
    assert_error(
        &[("START_BACKFILL_FILENAME", "_bqlock")],
        "START_BACKFILL_FILENAME",
        "reserved",
    );
    assert_error(
        &[("START_BACKFILL_FILENAME", "_SUCCESS")],
        "START_BACKFILL_FILENAME",
        "must differ from SUCCESS_FILENAME",
    );
}

#[test]
fn destination_regex() {
    let pattern = r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<batch>[^/]+)/";
    let s = from(&[("DESTINATION_REGEX", pattern)]).expect("valid");
    assert_eq!(s.destination_regex.as_str(), pattern);

    assert_error(
        &[("DESTINATION_REGEX", r"^(?P<dataset>\w+)/")],
        "DESTINATION_REGEX",
        "required",
    );
    assert_error(
        &[(
            "DESTINATION_REGEX",
            r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<foo>\w+)/",
        )],
        "DESTINATION_REGEX",
        "unknown named group \"foo\"",
    );
    let err = error(&[("DESTINATION_REGEX", r"^(?P<dataset>\w+")]);
    assert_eq!(err.variable, "DESTINATION_REGEX");
    assert_eq!(err.value, r"^(?P<dataset>\w+");
}

#[test]
fn max_batch_bytes() {
    for (value, expected) in [
        ("15000000000000", 15_000_000_000_000u64),
        ("15_000_000_000_000", 15_000_000_000_000),
        ("15e12", 15_000_000_000_000),
        ("1.5E13", 15_000_000_000_000),
        ("1e+3", 1000),
        (" 1024 ", 1024),
        ("1", 1),
        ("18446744073709551615", u64::MAX),
    ] {
        let s = from(&[("MAX_BATCH_BYTES", value)]).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(s.max_batch_bytes, expected, "{value}");
    }
    for (value, part) in [
        ("0", "greater than 0"),
        ("0e5", "greater than 0"),
        ("-1", "whole number"),
        ("1.5", "whole number"),
        ("1.25e1", "not a whole number"),
        ("1e-3", "whole number"),
        ("abc", "whole number"),
        ("1__000", "whole number"),
        ("_1000", "whole number"),
        ("1000_", "whole number"),
        ("e5", "whole number"),
        ("18446744073709551616", "at most"),
        ("1e40", "at most"),
        ("15 TB", "whole number"),
    ] {
        assert_error(&[("MAX_BATCH_BYTES", value)], "MAX_BATCH_BYTES", part);
    }
}

#[test]
fn job_prefix() {
    let s = from(&[("JOB_PREFIX", "my_ingest-")]).expect("valid");
    assert_eq!(s.job_prefix, "my_ingest-");
    // Explicitly empty is an empty prefix, as in Python.
    let s = from(&[("JOB_PREFIX", "")]).expect("valid");
    assert_eq!(s.job_prefix, "");
    assert_eq!(
        from(&[("JOB_PREFIX", &"a".repeat(100))])
            .expect("valid")
            .job_prefix
            .len(),
        100
    );

    assert_error(
        &[("JOB_PREFIX", "bad prefix")],
        "JOB_PREFIX",
        "only letters, digits",
    );
    assert_error(&[("JOB_PREFIX", "a.b")], "JOB_PREFIX", "'.'");
    assert_error(
        &[("JOB_PREFIX", &"a".repeat(101))],
        "JOB_PREFIX",
        "at most 100",
    );
}

#[test]
fn projects_and_fallbacks() {
    let all = [
        ("BQ_PROJECT", "bq-project"),
        ("GOOGLE_CLOUD_PROJECT", "google-cloud"),
        ("GCP_PROJECT", "gcp-project"),
        ("GCLOUD_PROJECT", "gcloud-project"),
    ];
    for skip in 0..all.len() {
        let s = from(&all[skip..]).expect("valid");
        assert_eq!(s.bq_project.as_deref(), Some(all[skip].1));
    }
    let s = from(&[
        ("BQ_PROJECT", "bq-project"),
        ("BQ_STORAGE_PROJECT", "example.com:storage"),
    ])
    .expect("valid");
    assert_eq!(s.job_project(), Some("bq-project"));
    assert_eq!(s.storage_project(), Some("example.com:storage"));
    let s = from(&[("GCP_PROJECT", "gcp-project")]).expect("valid");
    assert_eq!(s.storage_project(), Some("gcp-project"));

    assert_error(
        &[("BQ_PROJECT", "Bad_Project")],
        "BQ_PROJECT",
        "start with a lowercase letter",
    );
    assert_error(
        &[("GOOGLE_CLOUD_PROJECT", "abc")],
        "GOOGLE_CLOUD_PROJECT",
        "6 to 30",
    );
    assert_error(
        &[("GCLOUD_PROJECT", "my_proj")],
        "GCLOUD_PROJECT",
        "lowercase letters",
    );
    assert_error(
        &[("BQ_STORAGE_PROJECT", "project-")],
        "BQ_STORAGE_PROJECT",
        "hyphen",
    );
    // A valid BQ_PROJECT means the fallbacks are not read.
    assert!(from(&[("BQ_PROJECT", "bq-project"), ("GCP_PROJECT", "BAD")]).is_ok());
}

#[test]
fn location() {
    for loc in ["US", "EU", "us-central1", "asia-northeast1"] {
        assert_eq!(
            from(&[("BQ_LOCATION", loc)])
                .expect("valid")
                .bq_location
                .as_deref(),
            Some(loc)
        );
    }
    assert_error(
        &[("BQ_LOCATION", "us central")],
        "BQ_LOCATION",
        "BigQuery location",
    );
}

#[test]
fn durations() {
    let s = from(&[
        ("WAIT_FOR_JOB_SECONDS", "0"),
        ("ORDERING_LOCK_LEASE_SECONDS", "7200"),
        ("RESTART_BUFFER_SECONDS", "0"),
    ])
    .expect("valid");
    assert_eq!(s.wait_for_job, Duration::ZERO);
    assert_eq!(s.lock_lease, Duration::from_secs(7200));
    assert_eq!(s.restart_buffer, Duration::ZERO);
    let s = from(&[("WAIT_FOR_JOB_SECONDS", "540")]).expect("valid");
    assert_eq!(s.wait_for_job, Duration::from_secs(540));

    assert_error(
        &[("WAIT_FOR_JOB_SECONDS", "-1")],
        "WAIT_FOR_JOB_SECONDS",
        "whole number",
    );
    assert_error(
        &[("WAIT_FOR_JOB_SECONDS", "1.5")],
        "WAIT_FOR_JOB_SECONDS",
        "whole number",
    );
    assert_error(
        &[("WAIT_FOR_JOB_SECONDS", "1e3")],
        "WAIT_FOR_JOB_SECONDS",
        "whole number",
    );
    assert_error(
        &[("ORDERING_LOCK_LEASE_SECONDS", "0")],
        "ORDERING_LOCK_LEASE_SECONDS",
        "greater than 0",
    );
    assert_error(
        &[("ORDERING_LOCK_LEASE_SECONDS", "1h")],
        "ORDERING_LOCK_LEASE_SECONDS",
        "whole number",
    );
    assert_error(
        &[("RESTART_BUFFER_SECONDS", "x")],
        "RESTART_BUFFER_SECONDS",
        "whole number",
    );
}

#[test]
fn booleans_accept_what_strtobool_accepts() {
    for (value, expected) in [
        ("y", true),
        ("YES", true),
        ("t", true),
        ("True", true),
        ("on", true),
        ("1", true),
        ("n", false),
        ("No", false),
        ("F", false),
        ("false", false),
        ("OFF", false),
        ("0", false),
    ] {
        for variable in [
            "ORDER_PER_TABLE",
            "WAIT_FOR_VALIDATION",
            "FAIL_ON_ZERO_DML_ROWS_AFFECTED",
        ] {
            let s = from(&[(variable, value)]).unwrap_or_else(|e| panic!("{e}"));
            let got = match variable {
                "ORDER_PER_TABLE" => s.order_per_table,
                "WAIT_FOR_VALIDATION" => s.wait_for_validation,
                _ => s.fail_on_zero_dml_rows_affected,
            };
            assert_eq!(got, expected, "{variable}={value}");
        }
    }
    for variable in [
        "ORDER_PER_TABLE",
        "WAIT_FOR_VALIDATION",
        "FAIL_ON_ZERO_DML_ROWS_AFFECTED",
    ] {
        for bad in ["2", "maybe", "enabled", "tru"] {
            assert_error(&[(variable, bad)], variable, "must be a boolean");
        }
    }
}

#[test]
fn load_jobs_warning_per_table() {
    assert_eq!(Settings::default().load_jobs_warning_per_table, 1_200);
    let s = from(&[("LOAD_JOBS_WARNING_PER_TABLE", "1000")]).expect("valid");
    assert_eq!(s.load_jobs_warning_per_table, 1_000);
    assert_error(
        &[("LOAD_JOBS_WARNING_PER_TABLE", "lots")],
        "LOAD_JOBS_WARNING_PER_TABLE",
        "whole number",
    );
}

#[test]
fn max_retries() {
    let s = from(&[("MAX_RETRIES_ON_BIGQUERY_ERROR", "0")]).expect("valid");
    assert_eq!(s.max_retries_on_bigquery_error, 0);
    let s = from(&[("MAX_RETRIES_ON_BIGQUERY_ERROR", "10")]).expect("valid");
    assert_eq!(s.max_retries_on_bigquery_error, 10);
    assert_error(
        &[("MAX_RETRIES_ON_BIGQUERY_ERROR", "4294967296")],
        "MAX_RETRIES_ON_BIGQUERY_ERROR",
        "at most",
    );
    assert_error(
        &[("MAX_RETRIES_ON_BIGQUERY_ERROR", "three")],
        "MAX_RETRIES_ON_BIGQUERY_ERROR",
        "whole number",
    );
}

#[test]
fn load_state_table() {
    for off in ["", "none", "None", "NONE", "  "] {
        let s = from(&[("BQ_LOAD_STATE_TABLE", off)]).expect("valid");
        assert_eq!(s.load_state_table, None, "{off:?}");
    }
    for on in [
        "loads.state",
        "my-project.loads.state",
        "example.com:my-project.loads.state",
    ] {
        let s = from(&[("BQ_LOAD_STATE_TABLE", on)]).expect("valid");
        assert_eq!(s.load_state_table.as_deref(), Some(on));
    }
    assert_error(
        &[("BQ_LOAD_STATE_TABLE", "state")],
        "BQ_LOAD_STATE_TABLE",
        "[project.]dataset.table",
    );
    assert_error(
        &[("BQ_LOAD_STATE_TABLE", "bad-ds.state")],
        "BQ_LOAD_STATE_TABLE",
        "dataset id",
    );
    assert_error(
        &[("BQ_LOAD_STATE_TABLE", "P.ds.state")],
        "BQ_LOAD_STATE_TABLE",
        "project id",
    );
    assert_error(
        &[("BQ_LOAD_STATE_TABLE", "ds.st$2020")],
        "BQ_LOAD_STATE_TABLE",
        "'$'",
    );
}

#[test]
fn prefixes() {
    let s = from(&[
        ("INCLUDE_PREFIXES", " ds1/ , ds2/t/,, ,ds3"),
        ("EXCLUDE_PREFIXES", "ds1/tmp/"),
    ])
    .expect("valid");
    assert_eq!(s.include_prefixes, vec!["ds1/", "ds2/t/", "ds3"]);
    assert_eq!(s.exclude_prefixes, vec!["ds1/tmp/"]);
    let s = from(&[("INCLUDE_PREFIXES", ", ,")]).expect("valid");
    assert!(s.include_prefixes.is_empty());
}

#[test]
fn timestamp_regex() {
    let pattern =
        r"(?P<yyyy>\d{4})-(?P<mm>\d{2})-(?P<dd>\d{2})T(?P<hh>\d{2})(?P<mi>\d{2})(?P<ss>\d{2})";
    let s = from(&[("TIMESTAMP_REGEX", pattern)]).expect("valid");
    let regex = s.timestamp_regex.expect("set");
    assert_eq!(regex.as_str(), pattern);
    assert!(regex.is_match("x/2020-10-30T120000/_SUCCESS"));

    assert_error(
        &[("TIMESTAMP_REGEX", r"(?P<yyyy>\d{4})-(?P<mm>\d{2})")],
        "TIMESTAMP_REGEX",
        "missing dd",
    );
    assert_error(
        &[(
            "TIMESTAMP_REGEX",
            r"(?P<yyyy>\d{4})(?P<mm>\d{2})(?P<dd>\d{2})(?P<min>\d{2})",
        )],
        "TIMESTAMP_REGEX",
        "unknown named group \"min\"",
    );
    let err = error(&[("TIMESTAMP_REGEX", r"(?P<yyyy>\d{4}")]);
    assert_eq!(err.variable, "TIMESTAMP_REGEX");
}

#[test]
fn service_name() {
    let s = from(&[("K_SERVICE", "bq-ingest"), ("FUNCTION_NAME", "gcs_ocn")]).expect("valid");
    assert_eq!(s.service_name.as_deref(), Some("bq-ingest"));
    let s = from(&[("FUNCTION_NAME", "gcs_ocn")]).expect("valid");
    assert_eq!(s.service_name.as_deref(), Some("gcs_ocn"));
    let s = from(&[("K_SERVICE", ""), ("FUNCTION_NAME", "gcs_ocn")]).expect("valid");
    assert_eq!(s.service_name.as_deref(), Some("gcs_ocn"));
}

#[test]
fn failure_topic() {
    for ok in [
        "ingest-failures",
        "projects/my-project/topics/ingest-failures",
        "abc.def~+%_x",
    ] {
        let s = from(&[("FAILURE_TOPIC", ok)]).expect("valid");
        assert_eq!(s.failure_topic.as_deref(), Some(ok));
    }
    assert_error(&[("FAILURE_TOPIC", "ab")], "FAILURE_TOPIC", "3 to 255");
    assert_error(
        &[("FAILURE_TOPIC", "1topic")],
        "FAILURE_TOPIC",
        "starting with a letter",
    );
    assert_error(
        &[("FAILURE_TOPIC", "google-topic")],
        "FAILURE_TOPIC",
        "goog",
    );
    assert_error(
        &[("FAILURE_TOPIC", "projects/p/x/topics/t")],
        "FAILURE_TOPIC",
        "projects/<project>/topics/<topic>",
    );
    assert_error(
        &[("FAILURE_TOPIC", "projects/Bad/topics/topic")],
        "FAILURE_TOPIC",
        "project id",
    );
}

#[test]
fn errors_carry_the_value() {
    let err = error(&[("MAX_BATCH_BYTES", "lots")]);
    assert_eq!(err.value, "lots");
    assert_eq!(
        err.to_string(),
        "invalid MAX_BATCH_BYTES=\"lots\": must be a non-negative whole number such as \
         15000000000000, 15_000_000_000_000 or 15e12"
    );
}

#[test]
fn parse_integer_directly() {
    assert_eq!(parse_integer("007", false), Ok(7));
    assert_eq!(parse_integer("0", false), Ok(0));
    assert_eq!(parse_integer(".5e1", true), Ok(5));
    assert_eq!(parse_integer("2.50e2", true), Ok(250));
    assert!(parse_integer("", false).is_err());
    assert!(parse_integer("1e3", false).is_err());
}
