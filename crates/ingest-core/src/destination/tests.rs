use super::*;

const BUCKET: &str = "bucket";

fn ts(s: &str) -> Option<DateTime<Utc>> {
    Some(
        DateTime::parse_from_rfc3339(s)
            .expect("test timestamp")
            .with_timezone(&Utc),
    )
}

fn resolve(marker: &str) -> Result<Batch, DestinationError> {
    resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("default-project"),
        None,
        BUCKET,
        marker,
    )
}

/// (project, dataset, table, partition, batch id, timestamp, batch prefix, table prefix)
type Expected<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
);

fn check(batch: &Batch, expected: Expected<'_>) {
    let (project, dataset, table, partition, batch_id, at, batch_prefix, table_prefix) = expected;
    assert_eq!(batch.destination.project, project, "{batch:?}");
    assert_eq!(batch.destination.dataset, dataset, "{batch:?}");
    assert_eq!(batch.destination.table, table, "{batch:?}");
    assert_eq!(
        batch.destination.partition.as_deref(),
        partition,
        "{batch:?}"
    );
    assert_eq!(batch.batch_id.as_deref(), batch_id, "{batch:?}");
    assert_eq!(batch.batch_timestamp, at.and_then(ts), "{batch:?}");
    assert_eq!(batch.batch_prefix, batch_prefix, "{batch:?}");
    assert_eq!(batch.table_prefix, table_prefix, "{batch:?}");
    assert_eq!(batch.bucket, BUCKET);
}

#[test]
fn default_regex_every_layout() {
    let cases: Vec<(&str, Expected<'_>)> = vec![
        (
            "dataset/table/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                None,
                None,
                None,
                "dataset/table/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/$20201030/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$20201030"),
                None,
                Some("2020-10-30T00:00:00Z"),
                "dataset/table/$20201030/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/$20201030/batch_id/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$20201030"),
                Some("batch_id"),
                Some("2020-10-30T00:00:00Z"),
                "dataset/table/$20201030/batch_id/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/batch_id/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                None,
                Some("batch_id"),
                None,
                "dataset/table/batch_id/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/2020/01/02/03/batch_id/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$2020010203"),
                Some("batch_id"),
                Some("2020-01-02T03:00:00Z"),
                "dataset/table/2020/01/02/03/batch_id/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/2020/01/02/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$20200102"),
                None,
                Some("2020-01-02T00:00:00Z"),
                "dataset/table/2020/01/02/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/2020/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$2020"),
                None,
                Some("2020-01-01T00:00:00Z"),
                "dataset/table/2020/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/$2020/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$2020"),
                None,
                Some("2020-01-01T00:00:00Z"),
                "dataset/table/$2020/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/$202001/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$202001"),
                None,
                Some("2020-01-01T00:00:00Z"),
                "dataset/table/$202001/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/$2020010203/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$2020010203"),
                None,
                Some("2020-01-02T03:00:00Z"),
                "dataset/table/$2020010203/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/historical/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                None,
                None,
                None,
                "dataset/table/historical/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/historical/2020/01/02/03/batch_id/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$2020010203"),
                Some("batch_id"),
                Some("2020-01-02T03:00:00Z"),
                "dataset/table/historical/2020/01/02/03/batch_id/",
                "dataset/table",
            ),
        ),
        (
            "dataset/table/incremental/$20201030/batch_id/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                Some("$20201030"),
                Some("batch_id"),
                Some("2020-10-30T00:00:00Z"),
                "dataset/table/incremental/$20201030/batch_id/",
                "dataset/table",
            ),
        ),
        (
            "my-project.dataset/table/_SUCCESS",
            (
                "my-project",
                "dataset",
                "table",
                None,
                None,
                None,
                "my-project.dataset/table/",
                "my-project.dataset/table",
            ),
        ),
        (
            "my-project.dataset/table/$2020010203/batch_id/_SUCCESS",
            (
                "my-project",
                "dataset",
                "table",
                Some("$2020010203"),
                Some("batch_id"),
                Some("2020-01-02T03:00:00Z"),
                "my-project.dataset/table/$2020010203/batch_id/",
                "my-project.dataset/table",
            ),
        ),
        (
            "dataset/table-with-dash/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table-with-dash",
                None,
                None,
                None,
                "dataset/table-with-dash/",
                "dataset/table-with-dash",
            ),
        ),
        (
            // The batch id need not be the marker's own directory (Python's behaviour);
            // the batch prefix is always the marker's directory.
            "dataset/table/batch_id/sub/_SUCCESS",
            (
                "default-project",
                "dataset",
                "table",
                None,
                Some("batch_id"),
                None,
                "dataset/table/batch_id/sub/",
                "dataset/table",
            ),
        ),
    ];
    for (marker, expected) in cases {
        let batch = resolve(marker).unwrap_or_else(|e| panic!("{marker}: {e}"));
        assert_eq!(batch.marker, marker);
        check(&batch, expected);
    }
}

#[test]
fn default_regex_table_ref_display() {
    let batch = resolve("dataset/table/$20201030/_SUCCESS").expect("resolves");
    assert_eq!(
        batch.destination.to_string(),
        "default-project.dataset.table$20201030"
    );
}

#[test]
fn no_project_anywhere_is_an_error() {
    let err = resolve_batch(
        &DestinationRegex::default(),
        None,
        None,
        None,
        BUCKET,
        "dataset/table/_SUCCESS",
    )
    .unwrap_err();
    assert_eq!(
        err,
        DestinationError::NoProject {
            object: "gs://bucket/dataset/table/_SUCCESS".to_string()
        }
    );
    // A project in the path needs no default.
    let batch = resolve_batch(
        &DestinationRegex::default(),
        None,
        None,
        None,
        BUCKET,
        "my-project.dataset/table/_SUCCESS",
    )
    .expect("project from the path");
    assert_eq!(batch.destination.project, "my-project");
}

#[test]
fn paths_that_do_not_match() {
    for marker in [
        "_SUCCESS",
        "dataset/_SUCCESS",
        "dataset//_SUCCESS",
        "/dataset/table/_SUCCESS",
    ] {
        let err = resolve(marker).unwrap_err();
        assert_eq!(
            err,
            DestinationError::NoMatch {
                object: format!("gs://bucket/{marker}"),
                pattern: DEFAULT_DESTINATION_REGEX.to_string(),
            },
            "{marker}"
        );
        assert!(err
            .to_string()
            .starts_with(&format!("gs://bucket/{marker}: ")));
    }
}

#[test]
fn invalid_dataset_id_names_the_object() {
    let err = resolve("my-ds/t/_SUCCESS").unwrap_err();
    match &err {
        DestinationError::Invalid {
            object,
            what,
            value,
            message,
        } => {
            assert_eq!(object, "gs://bucket/my-ds/t/_SUCCESS");
            assert_eq!(*what, "dataset id");
            assert_eq!(value, "my-ds");
            assert!(
                message.contains("only letters, digits and underscores"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("gs://bucket/my-ds/t/_SUCCESS: invalid dataset id \"my-ds\""),
        "{text}"
    );
}

#[test]
fn invalid_project_from_the_path() {
    let err = resolve("Bad_Project.ds/t/_SUCCESS").unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { what: "project id", value, .. } if value == "Bad_Project"),
        "{err:?}"
    );
    // Two dots: the project part keeps one and is invalid.
    let err = resolve("a.b.ds/t/_SUCCESS").unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { what: "project id", value, .. } if value == "a.b"),
        "{err:?}"
    );
}

#[test]
fn invalid_default_project() {
    let err = resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("NOT A PROJECT"),
        None,
        BUCKET,
        "ds/t/_SUCCESS",
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DestinationError::Invalid {
                what: "project id",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn invalid_table_id_from_a_custom_regex() {
    let regex =
        DestinationRegex::new(r"^(?P<dataset>\w+)/(?P<table>[^/]+)/", false).expect("valid");
    let err = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t.x/_SUCCESS",
    )
    .unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { what: "table id", value, object, .. }
            if value == "t.x" && object == "gs://bucket/ds/t.x/_SUCCESS"),
        "{err:?}"
    );
}

#[test]
fn invalid_partitions() {
    for (marker, value) in [
        ("dataset/table/$20201332/_SUCCESS", "$20201332"),
        ("dataset/table/$20200230/_SUCCESS", "$20200230"),
        ("dataset/table/$2020010224/_SUCCESS", "$2020010224"),
        ("dataset/table/$123/_SUCCESS", "$123"),
        ("dataset/table/2020/13/01/_SUCCESS", "$20201301"),
        ("dataset/table/2020/02/30/_SUCCESS", "$20200230"),
        ("dataset/table/2020/01/01/24/b/_SUCCESS", "$2020010124"),
    ] {
        let err = resolve(marker).unwrap_err();
        match &err {
            DestinationError::Invalid {
                object,
                what,
                value: v,
                ..
            } => {
                assert_eq!(object, &format!("gs://bucket/{marker}"));
                assert_eq!(*what, "partition decorator", "{marker}");
                assert_eq!(v, value, "{marker}");
            }
            other => panic!("{marker}: unexpected {other:?}"),
        }
    }
}

#[test]
fn custom_regex_pads_single_digit_date_parts() {
    let regex = DestinationRegex::new(
        r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<yyyy>[0-9]{4})/(?P<mm>[0-9]{1,2})/(?P<dd>[0-9]{1,2})/(?P<hh>[0-9]{1,2})/",
        false,
    )
    .expect("valid");
    let batch = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/2020/4/5/6/_SUCCESS",
    )
    .expect("resolves");
    check(
        &batch,
        (
            "proj-1",
            "ds",
            "t",
            Some("$2020040506"),
            None,
            Some("2020-04-05T06:00:00Z"),
            "ds/t/2020/4/5/6/",
            "ds/t",
        ),
    );
    let batch = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/2020/12/31/23/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.destination.partition.as_deref(), Some("$2020123123"));

    // Year, month only.
    let regex = DestinationRegex::new(
        r"^(?P<dataset>\w+)/(?P<table>\w+)/y=(?P<yyyy>[0-9]{4})/m=(?P<mm>[0-9]{1,2})/",
        false,
    )
    .expect("valid");
    let batch = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/y=2021/m=7/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.destination.partition.as_deref(), Some("$202107"));
    assert_eq!(batch.batch_timestamp, ts("2021-07-01T00:00:00Z"));
}

#[test]
fn custom_regex_date_groups_must_be_digits_without_gaps() {
    let regex = DestinationRegex::new(
        r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<yyyy>\w+)/(?:(?P<mm>\w+)/)?(?P<dd>\w+)/",
        false,
    )
    .expect("valid");
    let err = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/20x0/01/02/_SUCCESS",
    )
    .unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { what: "partition decorator", message, .. }
            if message.contains("yyyy group must be 4 digits")),
        "{err:?}"
    );
    let err = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/2020/02/_SUCCESS",
    )
    .unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { message, .. }
            if message.contains("dd group matched but the mm group")),
        "{err:?}"
    );
    let err = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/2020/123/02/_SUCCESS",
    )
    .unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { message, .. } if message.contains("1 or 2 digits")),
        "{err:?}"
    );
}

#[test]
fn partition_group_wins_over_date_groups() {
    let regex = DestinationRegex::new(
        r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<partition>\$[0-9]+)/(?P<yyyy>[0-9]{4})/",
        false,
    )
    .expect("valid");
    let batch = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/$20201030/2019/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.destination.partition.as_deref(), Some("$20201030"));
    assert_eq!(batch.batch_timestamp, ts("2020-10-30T00:00:00Z"));
}

#[test]
fn unpartitioned_decorator_keeps_the_date_groups_time() {
    let regex = DestinationRegex::new(
        r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<partition>\$__UNPARTITIONED__)/(?P<yyyy>[0-9]{4})/(?P<mm>[0-9]{2})/",
        false,
    )
    .expect("valid");
    let batch = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "ds/t/$__UNPARTITIONED__/2019/05/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(
        batch.destination.partition.as_deref(),
        Some("$__UNPARTITIONED__")
    );
    assert_eq!(batch.batch_timestamp, ts("2019-05-01T00:00:00Z"));
}

#[test]
fn custom_regex_with_batch_and_project() {
    let regex = DestinationRegex::new(
        r"^(?P<project>[a-z][a-z0-9.:-]+)/(?P<dataset>\w+)/(?P<table>\w+)/run=(?P<batch>[^/]+)/",
        false,
    )
    .expect("valid");
    let batch = resolve_batch(
        &regex,
        None,
        None,
        None,
        BUCKET,
        "example.com:my-proj/ds/events/run=42/_SUCCESS",
    )
    .expect("resolves");
    check(
        &batch,
        (
            "example.com:my-proj",
            "ds",
            "events",
            None,
            Some("42"),
            None,
            "example.com:my-proj/ds/events/run=42/",
            "example.com:my-proj/ds/events",
        ),
    );
}

#[test]
fn match_is_anchored_at_the_start_like_python_re_match() {
    let regex =
        DestinationRegex::new(r"data/(?P<dataset>\w+)/(?P<table>\w+)/", false).expect("valid");
    let batch = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "data/ds/t/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(
        (
            batch.destination.dataset.as_str(),
            batch.destination.table.as_str()
        ),
        ("ds", "t")
    );
    assert_eq!(batch.table_prefix, "data/ds/t");
    let err = resolve_batch(
        &regex,
        None,
        Some("proj-1"),
        None,
        BUCKET,
        "raw/data/ds/t/_SUCCESS",
    )
    .unwrap_err();
    assert!(matches!(err, DestinationError::NoMatch { .. }), "{err:?}");
}

#[test]
fn invalid_regexes() {
    let err = DestinationRegex::new(r"^(?P<dataset>\w+)/(?P<table>\w+)/(?P<day>\d+)/", false)
        .unwrap_err();
    match &err {
        DestinationError::InvalidRegex { pattern, message } => {
            assert!(pattern.contains("(?P<day>"));
            assert!(message.contains("unknown named group \"day\""), "{message}");
            assert!(message.contains("dataset, table"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = DestinationRegex::new(r"^(?P<dataset>\w+)/", false).unwrap_err();
    assert!(
        matches!(&err, DestinationError::InvalidRegex { message, .. }
            if message.contains("table") && message.contains("required")),
        "{err:?}"
    );
    let err = DestinationRegex::new(r"^([^/]+)/", false).unwrap_err();
    assert!(
        matches!(&err, DestinationError::InvalidRegex { message, .. }
            if message.contains("dataset and table")),
        "{err:?}"
    );
    // Syntax errors and constructs the regex crate does not support (look-around).
    for bad in [
        r"^(?P<dataset>\w+",
        r"^(?P<dataset>\w+)/(?P<table>\w+)(?=/)",
    ] {
        let err = DestinationRegex::new(bad, false).unwrap_err();
        assert!(
            matches!(err, DestinationError::InvalidRegex { .. }),
            "{bad}"
        );
        assert!(
            err.to_string().starts_with("invalid destination regex"),
            "{err}"
        );
    }
    // Without dataset/table is fine when a destinationTable is configured.
    let regex = DestinationRegex::new(r"^(?P<batch>[^/]+)/", true).expect("valid");
    assert!(regex.has_group("batch"));
    assert!(!regex.has_group("table"));
    assert_eq!(regex.as_str(), r"^(?P<batch>[^/]+)/");
    // The project group is allowed.
    assert!(DestinationRegex::new(
        r"^(?P<project>[^/]+)/(?P<dataset>\w+)/(?P<table>\w+)/",
        false
    )
    .is_ok());
}

fn config_table(project: Option<&str>, dataset: &str, table: &str) -> DestinationTable {
    DestinationTable {
        project_id: project.map(str::to_string),
        dataset_id: dataset.to_string(),
        table_id: table.to_string(),
    }
}

#[test]
fn destination_table_overrides_the_path() {
    let dt = config_table(Some("cfg-project"), "cfg_ds", "cfg_table");
    let batch = resolve_batch(
        &DestinationRegex::default(),
        Some(&dt),
        Some("default-project"),
        None,
        BUCKET,
        "ds/t/$20201030/b1/_SUCCESS",
    )
    .expect("resolves");
    check(
        &batch,
        (
            "cfg-project",
            "cfg_ds",
            "cfg_table",
            Some("$20201030"),
            Some("b1"),
            Some("2020-10-30T00:00:00Z"),
            "ds/t/$20201030/b1/",
            "ds/t",
        ),
    );

    // A decorator in the configured table id wins; the path still gives the batch.
    let dt = config_table(None, "cfg_ds", "cfg_table$2021");
    let batch = resolve_batch(
        &DestinationRegex::default(),
        Some(&dt),
        Some("default-project"),
        None,
        BUCKET,
        "ds/t/2020/01/02/b1/_SUCCESS",
    )
    .expect("resolves");
    check(
        &batch,
        (
            "default-project",
            "cfg_ds",
            "cfg_table",
            Some("$2021"),
            Some("b1"),
            Some("2021-01-01T00:00:00Z"),
            "ds/t/2020/01/02/b1/",
            "ds/t",
        ),
    );
}

#[test]
fn destination_table_with_a_regex_without_table() {
    let regex = DestinationRegex::new(r"^exports/(?P<batch>[^/]+)/", true).expect("valid");
    let dt = config_table(None, "cfg_ds", "cfg_table");
    let batch = resolve_batch(
        &regex,
        Some(&dt),
        Some("proj-1"),
        None,
        BUCKET,
        "exports/run-1/_SUCCESS",
    )
    .expect("resolves");
    check(
        &batch,
        (
            "proj-1",
            "cfg_ds",
            "cfg_table",
            None,
            Some("run-1"),
            None,
            "exports/run-1/",
            "exports/run-1",
        ),
    );
    // A path the regex does not match is allowed: no batch id, no partition.
    let batch = resolve_batch(
        &regex,
        Some(&dt),
        Some("proj-1"),
        None,
        BUCKET,
        "other/x/_SUCCESS",
    )
    .expect("resolves");
    check(
        &batch,
        (
            "proj-1",
            "cfg_ds",
            "cfg_table",
            None,
            None,
            None,
            "other/x/",
            "other/x",
        ),
    );
    // A marker at the bucket root.
    let batch = resolve_batch(&regex, Some(&dt), Some("proj-1"), None, BUCKET, "_SUCCESS")
        .expect("resolves");
    assert_eq!(
        (batch.batch_prefix.as_str(), batch.table_prefix.as_str()),
        ("", "")
    );
}

#[test]
fn destination_table_is_validated() {
    let regex = DestinationRegex::default();
    for (dt, what) in [
        (config_table(None, "bad-ds", "t"), "dataset id"),
        (config_table(None, "ds", "t.x"), "table id"),
        (
            config_table(None, "ds", "t$20201332"),
            "partition decorator",
        ),
        (config_table(Some("Bad"), "ds", "t"), "project id"),
    ] {
        let err = resolve_batch(
            &regex,
            Some(&dt),
            Some("proj-1"),
            None,
            BUCKET,
            "ds/t/_SUCCESS",
        )
        .unwrap_err();
        assert!(
            matches!(&err, DestinationError::Invalid { what: w, object, .. }
                if *w == what && object == "gs://bucket/ds/t/_SUCCESS"),
            "{dt:?}: {err:?}"
        );
    }
    let err = resolve_batch(
        &regex,
        Some(&config_table(None, "ds", "t")),
        None,
        None,
        BUCKET,
        "x/_SUCCESS",
    )
    .unwrap_err();
    assert!(matches!(err, DestinationError::NoProject { .. }), "{err:?}");
}

#[test]
fn destination_table_deserializes_from_load_json() {
    let dt: DestinationTable =
        serde_json::from_str(r#"{"projectId":"p-12345","datasetId":"ds","tableId":"t$2020"}"#)
            .expect("parses");
    assert_eq!(dt, config_table(Some("p-12345"), "ds", "t$2020"));
    let dt: DestinationTable =
        serde_json::from_str(r#"{"datasetId":"ds","tableId":"t"}"#).expect("parses");
    assert_eq!(dt.project_id, None);
}

#[test]
fn timestamp_regex_from_a_file_name() {
    let timestamp =
        regex::Regex::new(r"(?P<yyyy>\d{4})(?P<mm>\d{2})(?P<dd>\d{2})T(?P<hh>\d{2})(?P<mi>\d{2})")
            .expect("valid");
    let batch = resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("proj-1"),
        Some(&timestamp),
        BUCKET,
        "ds/t/export_20201030T1200/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.batch_id.as_deref(), Some("export_20201030T1200"));
    assert_eq!(batch.destination.partition, None);
    assert_eq!(batch.batch_timestamp, ts("2020-10-30T12:00:00Z"));

    let hive = regex::Regex::new(r"dt=(?P<yyyy>\d{4})-(?P<mm>\d{2})-(?P<dd>\d{2})").expect("valid");
    let batch = resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("proj-1"),
        Some(&hive),
        BUCKET,
        "ds/t/dt=2020-10-30/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.batch_timestamp, ts("2020-10-30T00:00:00Z"));
    assert_eq!(batch.batch_prefix, "ds/t/dt=2020-10-30/");

    // No match: no timestamp.
    let batch = resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("proj-1"),
        Some(&hive),
        BUCKET,
        "ds/t/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.batch_timestamp, None);

    // A partition gives the time; the timestamp regex is not consulted.
    let batch = resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("proj-1"),
        Some(&timestamp),
        BUCKET,
        "ds/t/$2019/export_20201030T1200/_SUCCESS",
    )
    .expect("resolves");
    assert_eq!(batch.batch_timestamp, ts("2019-01-01T00:00:00Z"));

    // An impossible date is an error naming the object.
    let err = resolve_batch(
        &DestinationRegex::default(),
        None,
        Some("proj-1"),
        Some(&hive),
        BUCKET,
        "ds/t/dt=2020-02-30/_SUCCESS",
    )
    .unwrap_err();
    assert!(
        matches!(&err, DestinationError::Invalid { what: "timestamp", object, value, .. }
            if object == "gs://bucket/ds/t/dt=2020-02-30/_SUCCESS" && value == "dt=2020-02-30"),
        "{err:?}"
    );
}

#[test]
fn table_prefix_of_table_objects() {
    let regex = DestinationRegex::default();
    let level = ["_BACKFILL", "_HISTORYDONE", "_bqlock"];
    let prefix = |name: &str| table_prefix(&regex, name, &level);
    assert_eq!(prefix("ds/t/_SUCCESS").as_deref(), Some("ds/t"));
    assert_eq!(prefix("ds/t/$2020/b1/_SUCCESS").as_deref(), Some("ds/t"));
    assert_eq!(
        prefix("ds/t/_backlog/$2020/b1/_SUCCESS").as_deref(),
        Some("ds/t")
    );
    assert_eq!(prefix("ds/t/_backlog/_SUCCESS").as_deref(), Some("ds/t"));
    assert_eq!(
        prefix("ds/t/_backlog/2020/01/02/03/_SUCCESS").as_deref(),
        Some("ds/t")
    );
    assert_eq!(
        prefix("proj-1.ds/t/_backlog/b/_SUCCESS").as_deref(),
        Some("proj-1.ds/t")
    );
    assert_eq!(prefix("ds/t/_BACKFILL").as_deref(), Some("ds/t"));
    assert_eq!(prefix("ds/t/_HISTORYDONE").as_deref(), Some("ds/t"));
    assert_eq!(prefix("ds/t/_bqlock").as_deref(), Some("ds/t"));
    assert_eq!(prefix("deep/er/t/_bqlock").as_deref(), Some("deep/er/t"));
    assert_eq!(prefix("_BACKFILL").as_deref(), Some(""));
    assert_eq!(prefix("ds/_SUCCESS"), None);
    assert_eq!(prefix("_SUCCESS"), None);
    // Empty entries (an unset start-backfill name) never match.
    assert_eq!(
        table_prefix(&regex, "ds/t/", &[""]).as_deref(),
        Some("ds/t")
    );
    // A regex without a table group gives no table prefix.
    let no_table = DestinationRegex::new(r"^(?P<batch>[^/]+)/", true).expect("valid");
    assert_eq!(table_prefix(&no_table, "x/_SUCCESS", &level), None);
    assert_eq!(
        table_prefix(&no_table, "x/_bqlock", &level).as_deref(),
        Some("x")
    );
}
