use super::*;

#[test]
fn project_ids_that_are_valid() {
    for id in [
        "abcdef",
        "my-project",
        "project-123",
        "a23456789012345678901234567890",
        "example.com:my-project",
        "google.com:abcdef",
        "sub.example-1.com:proj-1x",
    ] {
        assert_eq!(validate_project_id(id), Ok(()), "{id}");
    }
}

#[test]
fn project_ids_that_are_invalid_name_the_rule() {
    let cases = [
        ("abcde", "6 to 30 characters"),
        ("a234567890123456789012345678901", "6 to 30 characters"),
        ("", "6 to 30 characters"),
        ("1project", "start with a lowercase letter"),
        ("-project", "start with a lowercase letter"),
        ("Project", "start with a lowercase letter"),
        ("my_project", "only lowercase letters, digits and hyphens"),
        ("my.project", "only lowercase letters, digits and hyphens"),
        ("myProject", "only lowercase letters, digits and hyphens"),
        ("project-", "must not end with a hyphen"),
        (":project", "domain"),
        ("Example.com:project", "domain"),
        ("example..com:project", "domain"),
        ("example.com:", "6 to 30 characters"),
        ("a:b:project", "domain"),
    ];
    for (id, rule) in cases {
        let err = validate_project_id(id).expect_err(id);
        assert!(err.contains(rule), "{id}: {err}");
    }
}

#[test]
fn dataset_ids() {
    assert_eq!(validate_dataset_id("a"), Ok(()));
    assert_eq!(validate_dataset_id("My_Dataset_01"), Ok(()));
    assert_eq!(validate_dataset_id("_x"), Ok(()));
    assert_eq!(validate_dataset_id("1"), Ok(()));
    assert_eq!(validate_dataset_id(&"d".repeat(1024)), Ok(()));

    let err = validate_dataset_id(&"d".repeat(1025)).unwrap_err();
    assert!(err.contains("at most 1024"), "{err}");
    let err = validate_dataset_id("").unwrap_err();
    assert!(err.contains("must not be empty"), "{err}");
    for bad in ["my-ds", "my.ds", "my ds", "dü", "a$b", "a/b"] {
        let err = validate_dataset_id(bad).unwrap_err();
        assert!(
            err.contains("only letters, digits and underscores"),
            "{bad}: {err}"
        );
    }
    assert!(validate_dataset_id("my-ds").unwrap_err().contains("'-'"));
}

#[test]
fn table_ids() {
    for ok in [
        "t",
        "table_1",
        "table-1",
        "table 1",
        "Tabelle_ü",
        "表格",
        "naïve",         // precomposed letter
        "nai\u{0308}ve", // combining mark (M)
        "t\u{2010}x",    // hyphen (Pd)
        "t\u{203F}x",    // undertie (Pc)
        "t\u{3000}x",    // ideographic space (Zs)
        "٣٤",            // Arabic-Indic digits (N)
    ] {
        assert_eq!(validate_table_id(ok), Ok(()), "{ok}");
    }
    assert_eq!(validate_table_id(&"t".repeat(1024)), Ok(()));
    let err = validate_table_id(&"t".repeat(1025)).unwrap_err();
    assert!(err.contains("1024 UTF-8 bytes"), "{err}");
    // 512 two-byte characters are 1024 bytes; 513 are too many.
    assert_eq!(validate_table_id(&"ü".repeat(512)), Ok(()));
    assert!(validate_table_id(&"ü".repeat(513)).is_err());

    assert!(validate_table_id("").unwrap_err().contains("empty"));
    assert!(validate_table_id("t$2020").unwrap_err().contains("'$'"));
    for bad in ["a.b", "a/b", "a\tb", "a*b", "a@b", "a😀b", "a\u{200B}b"] {
        let err = validate_table_id(bad).unwrap_err();
        assert!(err.contains("Unicode letters"), "{bad:?}: {err}");
    }
}

#[test]
fn partitions_that_are_valid() {
    for ok in [
        "$2020",
        "$202002",
        "$20200229",
        "$2020022923",
        "$2021123100",
        "$__UNPARTITIONED__",
    ] {
        assert_eq!(validate_partition(ok), Ok(()), "{ok}");
    }
}

#[test]
fn partitions_that_are_invalid() {
    for bad in [
        "2020",         // no $
        "$",            // no digits
        "$20",          // too short
        "$20201",       // 5 digits
        "$202001021",   // 9 digits
        "$20200102030", // 11 digits
        "$2020a1",      // not digits
        "$__unpartitioned__",
        "$202013",   // month 13
        "$202000",   // month 0
        "$20200230", // 30 February
        "$20210229", // not a leap year
        "$20201332",
        "$20200100",   // day 0
        "$2020010224", // hour 24
    ] {
        let err = validate_partition(bad).expect_err(bad);
        assert!(err.contains("partition decorator"), "{bad}: {err}");
    }
    assert!(validate_partition("$20200230")
        .unwrap_err()
        .contains("real date"));
    assert!(validate_partition("2020").unwrap_err().contains("'$'"));
}

#[test]
fn partition_start_times() {
    let at = |s: &str| partition_start(s).unwrap().unwrap().to_rfc3339();
    assert_eq!(at("$2020"), "2020-01-01T00:00:00+00:00");
    assert_eq!(at("$202007"), "2020-07-01T00:00:00+00:00");
    assert_eq!(at("$20200102"), "2020-01-02T00:00:00+00:00");
    assert_eq!(at("$2020010203"), "2020-01-02T03:00:00+00:00");
    assert_eq!(partition_start("$__UNPARTITIONED__"), Ok(None));
    assert!(partition_start("$20200230").is_err());
}

#[test]
fn table_paths() {
    assert_eq!(
        parse_table_path("bigquery_loads.serverless_bq_loads"),
        Ok((None, "bigquery_loads", "serverless_bq_loads"))
    );
    assert_eq!(
        parse_table_path("my-proj.ds.t"),
        Ok((Some("my-proj"), "ds", "t"))
    );
    assert_eq!(
        parse_table_path("example.com:my-proj.ds.t"),
        Ok((Some("example.com:my-proj"), "ds", "t"))
    );
    assert!(parse_table_path("t")
        .unwrap_err()
        .contains("[project.]dataset.table"));
    assert!(parse_table_path("my-ds.t")
        .unwrap_err()
        .contains("dataset id"));
    assert!(parse_table_path("Bad_Proj.ds.t")
        .unwrap_err()
        .contains("project id"));
    assert!(parse_table_path("ds.").unwrap_err().contains("table id"));
}
