use super::*;
use serde_json::json;

const BUCKET: &str = "bucket";

fn file(name: &str, content: &str) -> ConfigFile {
    ConfigFile {
        name: name.to_string(),
        generation: 1,
        content: content.as_bytes().to_vec(),
    }
}

fn load_dir(prefix: &str, json: &str) -> ConfigDir {
    ConfigDir {
        prefix: prefix.to_string(),
        load_json: Some(file(&format!("{prefix}load.json"), json)),
        ..ConfigDir::default()
    }
}

fn empty_dir(prefix: &str) -> ConfigDir {
    ConfigDir {
        prefix: prefix.to_string(),
        ..ConfigDir::default()
    }
}

// ---- config_prefixes ----

#[test]
fn prefixes_go_from_root_to_the_batch_own_dir() {
    assert_eq!(
        config_prefixes("ds/t/$2020/"),
        vec![
            "_config/",
            "ds/_config/",
            "ds/t/_config/",
            "ds/t/$2020/_config/"
        ]
    );
    assert_eq!(
        config_prefixes("ds/t/"),
        vec!["_config/", "ds/_config/", "ds/t/_config/"]
    );
}

#[test]
fn prefixes_of_a_root_batch_are_only_the_root() {
    assert_eq!(config_prefixes(""), vec!["_config/"]);
}

#[test]
fn prefixes_of_a_prefix_without_trailing_slash_include_it() {
    assert_eq!(
        config_prefixes("ds/t"),
        vec!["_config/", "ds/_config/", "ds/t/_config/"]
    );
}

#[test]
fn prefixes_keep_unusual_characters() {
    assert_eq!(
        config_prefixes("ds/tâble/b 1/"),
        vec![
            "_config/",
            "ds/_config/",
            "ds/tâble/_config/",
            "ds/tâble/b 1/_config/"
        ]
    );
}

// ---- files_to_read ----

#[test]
fn files_to_read_picks_load_external_sql_and_orderme() {
    let (read, orderme) = files_to_read(
        "ds/_config/",
        &[
            "ds/_config/ORDERME",
            "ds/_config/bq_transform.sql",
            "ds/_config/external.json",
            "ds/_config/load.json",
            "ds/_config/README.md",
        ],
    );
    assert_eq!(
        read,
        vec![
            "ds/_config/bq_transform.sql",
            "ds/_config/external.json",
            "ds/_config/load.json"
        ]
    );
    assert!(orderme);
}

#[test]
fn files_to_read_ignores_deeper_folders_and_other_prefixes() {
    let (read, orderme) = files_to_read(
        "ds/_config/",
        &[
            "ds/_config/archive/load.json",
            "ds/_config/archive/ORDERME",
            "ds/_config/archive/x.sql",
            "ds/t/_config/load.json",
            "other/_config/load.json",
            "ds/_config/.sql",
            "ds/_config/load.json.bak",
        ],
    );
    assert!(read.is_empty(), "{read:?}");
    assert!(!orderme);
}

#[test]
fn files_to_read_of_nothing_is_nothing() {
    assert_eq!(files_to_read("_config/", &[]), (Vec::new(), false));
}

#[test]
fn files_to_read_reports_two_sql_files_for_merge_to_reject() {
    let (read, _) = files_to_read("_config/", &["_config/b.sql", "_config/a.sql"]);
    assert_eq!(read, vec!["_config/a.sql", "_config/b.sql"]);
}

// ---- merge: load.json ----

#[test]
fn merge_of_nothing_gives_the_base_defaults() {
    let config = BatchConfig::merge(BUCKET, &[]).unwrap();
    assert_eq!(
        Value::Object(config.load),
        json!({"sourceFormat": "CSV", "writeDisposition": "WRITE_APPEND"})
    );
    assert!(config.destination_regex.is_none());
    assert!(config.destination_table.is_none());
    assert!(config.data_source_name.is_none());
    assert!(config.external.is_none());
    assert!(config.transform_sql.is_none());
    assert!(!config.ordered);
    assert!(config.sources.is_empty());
}

#[test]
fn merge_goes_from_root_to_the_batch_own_dir_nearest_wins() {
    let dirs = [
        load_dir(
            "_config/",
            r#"{"sourceFormat": "NEWLINE_DELIMITED_JSON", "maxBadRecords": 1, "ignoreUnknownValues": true}"#,
        ),
        load_dir("ds/_config/", r#"{"maxBadRecords": 2}"#),
        empty_dir("ds/t/_config/"),
        load_dir(
            "ds/t/$2020/_config/",
            r#"{"maxBadRecords": 3, "writeDisposition": "WRITE_TRUNCATE"}"#,
        ),
    ];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert_eq!(
        Value::Object(config.load),
        json!({
            "sourceFormat": "NEWLINE_DELIMITED_JSON",
            "writeDisposition": "WRITE_TRUNCATE",
            "maxBadRecords": 3,
            "ignoreUnknownValues": true
        })
    );
    assert_eq!(
        config.sources,
        vec![
            "_config/load.json",
            "ds/_config/load.json",
            "ds/t/$2020/_config/load.json"
        ]
    );
}

#[test]
fn merge_deep_merges_objects_and_replaces_lists() {
    let dirs = [
        load_dir(
            "_config/",
            r#"{
                "schema": {"fields": [{"name": "a", "type": "STRING"}, {"name": "b", "type": "INT64"}]},
                "hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": "gs://b/x"},
                "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION", "ALLOW_FIELD_RELAXATION"]
            }"#,
        ),
        load_dir(
            "ds/_config/",
            r#"{
                "schema": {"fields": [{"name": "c", "type": "DATE"}]},
                "hivePartitioningOptions": {"mode": "STRINGS"},
                "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION"]
            }"#,
        ),
    ];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert_eq!(
        config.load["schema"],
        json!({"fields": [{"name": "c", "type": "DATE"}]})
    );
    assert_eq!(
        config.load["hivePartitioningOptions"],
        json!({"mode": "STRINGS", "sourceUriPrefix": "gs://b/x"})
    );
    assert_eq!(
        config.load["schemaUpdateOptions"],
        json!(["ALLOW_FIELD_ADDITION"])
    );
}

#[test]
fn merge_null_removes_an_inherited_key() {
    let dirs = [
        load_dir(
            "_config/",
            r#"{"maxBadRecords": 5, "hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": "gs://b/x"}}"#,
        ),
        load_dir(
            "ds/_config/",
            r#"{"maxBadRecords": null, "hivePartitioningOptions": {"sourceUriPrefix": null}, "new": {"a": null, "b": 1}}"#,
        ),
    ];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert!(!config.load.contains_key("maxBadRecords"));
    assert_eq!(
        config.load["hivePartitioningOptions"],
        json!({"mode": "AUTO"})
    );
    assert_eq!(config.load["new"], json!({"b": 1}));
}

#[test]
fn merge_keeps_a_control_character_field_delimiter() {
    let dirs = [load_dir("ds/_config/", r#"{"fieldDelimiter": "\u0010"}"#)];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert_eq!(
        config.load["fieldDelimiter"],
        Value::String("\u{10}".to_string())
    );
    // And it serializes back to the same single character for BigQuery.
    let round_trip: Value =
        serde_json::from_str(&serde_json::to_string(&config.load).unwrap()).unwrap();
    assert_eq!(round_trip["fieldDelimiter"].as_str(), Some("\u{10}"));
}

#[test]
fn merge_keeps_tab_and_unicode_field_delimiters() {
    let config = BatchConfig::merge(
        BUCKET,
        &[load_dir("_config/", r#"{"fieldDelimiter": "\t"}"#)],
    )
    .unwrap();
    assert_eq!(config.load["fieldDelimiter"], "\t");
    let config = BatchConfig::merge(
        BUCKET,
        &[load_dir("_config/", r#"{"fieldDelimiter": "þ"}"#)],
    )
    .unwrap();
    assert_eq!(config.load["fieldDelimiter"], "þ");
}

#[test]
fn merge_takes_own_keys_out_of_load() {
    let dirs = [load_dir(
        "ds/_config/",
        r#"{
            "dataSourceName": "crm",
            "destinationTable": {"projectId": "p-123456", "datasetId": "d", "tableId": "t$2020"},
            "sourceUris": ["gs://elsewhere/*"],
            "sourceFormat": "AVRO"
        }"#,
    )];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    for key in [
        "dataSourceName",
        "destinationTable",
        "destinationRegex",
        "sourceUris",
    ] {
        assert!(!config.load.contains_key(key), "{key} left in load");
    }
    assert_eq!(config.load["sourceFormat"], "AVRO");
    assert_eq!(config.data_source_name.as_deref(), Some("crm"));
    assert_eq!(
        config.destination_table,
        Some(DestinationTable {
            project_id: Some("p-123456".to_string()),
            dataset_id: "d".to_string(),
            table_id: "t$2020".to_string(),
        })
    );
}

#[test]
fn merge_own_keys_nearest_wins_whole_and_null_unsets() {
    let dirs = [
        load_dir(
            "_config/",
            r#"{"dataSourceName": "root", "destinationTable": {"projectId": "p-123456", "datasetId": "d", "tableId": "t"}}"#,
        ),
        load_dir(
            "ds/_config/",
            r#"{"dataSourceName": null, "destinationTable": {"datasetId": "d2", "tableId": "t2"}}"#,
        ),
    ];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert_eq!(config.data_source_name, None);
    // Not merged with the root's projectId: a destination is taken whole.
    assert_eq!(
        config.destination_table,
        Some(DestinationTable {
            project_id: None,
            dataset_id: "d2".to_string(),
            table_id: "t2".to_string(),
        })
    );
}

#[test]
fn merge_compiles_the_nearest_destination_regex() {
    let dirs = [
        load_dir(
            "_config/",
            r#"{"destinationRegex": "^(?P<dataset>[a-z]+)/(?P<table>[a-z]+)/"}"#,
        ),
        load_dir(
            "ds/_config/",
            r#"{"destinationRegex": "^(?P<dataset>[a-z]+)/(?P<table>[a-z]+)/(?P<batch>[0-9]+)/"}"#,
        ),
    ];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert_eq!(
        config
            .destination_regex
            .map(|r| r.as_str().to_string())
            .as_deref(),
        Some("^(?P<dataset>[a-z]+)/(?P<table>[a-z]+)/(?P<batch>[0-9]+)/")
    );
    assert!(!config.load.contains_key("destinationRegex"));
}

#[test]
fn merge_destination_regex_without_table_is_fine_with_a_destination_table() {
    let dirs = [load_dir(
        "_config/",
        r#"{"destinationRegex": "^(?P<batch>[0-9]+)/", "destinationTable": {"datasetId": "d", "tableId": "t"}}"#,
    )];
    let config = BatchConfig::merge(BUCKET, &dirs).unwrap();
    assert!(config.destination_regex.is_some());
    assert!(config.destination_table.is_some());
}

#[test]
fn merge_rejects_an_invalid_destination_regex_naming_the_file() {
    let dirs = [load_dir(
        "ds/_config/",
        r#"{"destinationRegex": "^(?P<batch>[0-9]+)/"}"#,
    )];
    match BatchConfig::merge(BUCKET, &dirs) {
        Err(ConfigError::InvalidValue {
            bucket, name, key, ..
        }) => {
            assert_eq!(bucket, BUCKET);
            assert_eq!(name, "ds/_config/load.json");
            assert_eq!(key, "destinationRegex");
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn merge_rejects_wrong_kinds_of_own_keys() {
    let cases = [
        (r#"{"destinationRegex": 5}"#, "destinationRegex"),
        (r#"{"destinationTable": "d.t"}"#, "destinationTable"),
        (
            r#"{"destinationTable": {"datasetId": "d"}}"#,
            "destinationTable",
        ),
        (r#"{"dataSourceName": ["a"]}"#, "dataSourceName"),
        (r#"{"fieldDelimiter": 44}"#, "fieldDelimiter"),
        (r#"{"writeDisposition": "TRUNCATE"}"#, "writeDisposition"),
        (r#"{"sourceFormat": {"csv": true}}"#, "sourceFormat"),
    ];
    for (json, expected_key) in cases {
        let dirs = [load_dir("ds/t/_config/", json)];
        match BatchConfig::merge(BUCKET, &dirs) {
            Err(ConfigError::InvalidValue { name, key, .. }) => {
                assert_eq!(name, "ds/t/_config/load.json", "{json}");
                assert_eq!(key, expected_key, "{json}");
            }
            other => panic!("{json}: expected InvalidValue, got {other:?}"),
        }
    }
}

#[test]
fn merge_invalid_json_names_the_object() {
    let dirs = [
        load_dir("_config/", r#"{"sourceFormat": "CSV"}"#),
        load_dir("ds/t/_config/", r#"{"sourceFormat": "CSV",}"#),
    ];
    let err = BatchConfig::merge(BUCKET, &dirs).unwrap_err();
    match &err {
        ConfigError::InvalidJson { bucket, name, .. } => {
            assert_eq!(bucket, BUCKET);
            assert_eq!(name, "ds/t/_config/load.json");
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("gs://bucket/ds/t/_config/load.json: invalid JSON"));
}

#[test]
fn merge_rejects_json_that_is_not_an_object() {
    for json in ["[1, 2]", "\"CSV\"", "null", "", "   "] {
        let dirs = [load_dir("ds/_config/", json)];
        match BatchConfig::merge(BUCKET, &dirs) {
            Err(ConfigError::InvalidJson { name, .. }) => {
                assert_eq!(name, "ds/_config/load.json")
            }
            other => panic!("{json:?}: expected InvalidJson, got {other:?}"),
        }
    }
}

#[test]
fn merge_accepts_a_utf8_byte_order_mark() {
    let mut dir = load_dir("_config/", "");
    if let Some(f) = dir.load_json.as_mut() {
        f.content = b"\xEF\xBB\xBF{\"sourceFormat\": \"PARQUET\"}".to_vec();
    }
    let config = BatchConfig::merge(BUCKET, &[dir]).unwrap();
    assert_eq!(config.load["sourceFormat"], "PARQUET");
}

#[test]
fn merge_rejects_invalid_utf8_json() {
    let mut dir = load_dir("_config/", "");
    if let Some(f) = dir.load_json.as_mut() {
        f.content = b"{\"fieldDelimiter\": \"\xFF\"}".to_vec();
    }
    assert!(matches!(
        BatchConfig::merge(BUCKET, &[dir]),
        Err(ConfigError::InvalidJson { .. })
    ));
}

// ---- merge: external.json ----

#[test]
fn merge_external_nearest_wins_not_merged() {
    let mut root = empty_dir("_config/");
    root.external_json = Some(file(
        "_config/external.json",
        r#"{"sourceFormat": "CSV", "csvOptions": {"skipLeadingRows": 1}}"#,
    ));
    let mut near = empty_dir("ds/t/_config/");
    near.external_json = Some(file(
        "ds/t/_config/external.json",
        r#"{"sourceFormat": "PARQUET"}"#,
    ));
    let config =
        BatchConfig::merge(BUCKET, &[root.clone(), empty_dir("ds/_config/"), near]).unwrap();
    assert_eq!(
        config.external.map(Value::Object),
        Some(json!({"sourceFormat": "PARQUET"}))
    );
    assert_eq!(config.sources, vec!["ds/t/_config/external.json"]);
    // external.json does not touch the load config.
    assert_eq!(config.load["sourceFormat"], "CSV");

    let config = BatchConfig::merge(BUCKET, &[root, empty_dir("ds/_config/")]).unwrap();
    assert_eq!(
        config.external.map(Value::Object),
        Some(json!({"sourceFormat": "CSV", "csvOptions": {"skipLeadingRows": 1}}))
    );
}

#[test]
fn merge_external_must_be_an_object() {
    let mut dir = empty_dir("ds/_config/");
    dir.external_json = Some(file("ds/_config/external.json", "[]"));
    match BatchConfig::merge(BUCKET, &[dir]) {
        Err(ConfigError::InvalidJson { name, .. }) => {
            assert_eq!(name, "ds/_config/external.json")
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
}

// ---- merge: *.sql ----

#[test]
fn merge_two_sql_files_in_one_dir_is_an_error() {
    let mut dir = empty_dir("ds/_config/");
    dir.sql = vec![
        file("ds/_config/b.sql", "SELECT 2"),
        file("ds/_config/a.sql", "SELECT 1"),
    ];
    let err = BatchConfig::merge(BUCKET, &[empty_dir("_config/"), dir]).unwrap_err();
    assert_eq!(
        err,
        ConfigError::TwoSqlFiles {
            bucket: BUCKET.to_string(),
            prefix: "ds/_config/".to_string(),
            names: vec![
                "ds/_config/a.sql".to_string(),
                "ds/_config/b.sql".to_string()
            ],
        }
    );
    assert!(err.to_string().contains("gs://bucket/ds/_config/"));
}

#[test]
fn merge_nearest_sql_wins() {
    let mut root = empty_dir("_config/");
    root.sql = vec![file("_config/root.sql", "SELECT 1")];
    let mut near = empty_dir("ds/t/_config/");
    near.sql = vec![file(
        "ds/t/_config/bq_transform.sql",
        "INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext",
    )];
    let config =
        BatchConfig::merge(BUCKET, &[root.clone(), empty_dir("ds/_config/"), near]).unwrap();
    let sql = config.transform_sql.unwrap();
    assert_eq!(sql.name, "ds/t/_config/bq_transform.sql");
    assert_eq!(config.sources, vec!["ds/t/_config/bq_transform.sql"]);

    let config = BatchConfig::merge(BUCKET, &[root, empty_dir("ds/_config/")]).unwrap();
    assert_eq!(
        config.transform_sql.map(|f| f.name).as_deref(),
        Some("_config/root.sql")
    );
}

#[test]
fn merge_sql_must_be_utf8() {
    let mut dir = empty_dir("ds/_config/");
    dir.sql = vec![ConfigFile {
        name: "ds/_config/t.sql".to_string(),
        generation: 3,
        content: vec![b'S', 0xC3, 0x28],
    }];
    match BatchConfig::merge(BUCKET, &[dir]) {
        Err(ConfigError::InvalidValue { name, .. }) => assert_eq!(name, "ds/_config/t.sql"),
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

// ---- merge: ORDERME ----

#[test]
fn merge_orderme_anywhere_orders() {
    let mut root = empty_dir("_config/");
    root.orderme = true;
    let config = BatchConfig::merge(BUCKET, &[root, empty_dir("ds/_config/")]).unwrap();
    assert!(config.ordered);
    assert_eq!(config.sources, vec!["_config/ORDERME"]);

    let mut own = empty_dir("ds/t/_config/");
    own.orderme = true;
    let config = BatchConfig::merge(BUCKET, &[empty_dir("_config/"), own]).unwrap();
    assert!(config.ordered);

    let config =
        BatchConfig::merge(BUCKET, &[empty_dir("_config/"), empty_dir("ds/_config/")]).unwrap();
    assert!(!config.ordered);
}

#[test]
fn merge_sources_are_root_first_across_kinds() {
    let mut root = load_dir("_config/", "{}");
    root.orderme = true;
    root.external_json = Some(file("_config/external.json", "{}"));
    let mut near = load_dir("ds/_config/", "{}");
    near.sql = vec![file("ds/_config/x.sql", "SELECT 1")];
    let config = BatchConfig::merge(BUCKET, &[root, near]).unwrap();
    assert_eq!(
        config.sources,
        vec![
            "_config/load.json",
            "_config/external.json",
            "_config/ORDERME",
            "ds/_config/load.json",
            "ds/_config/x.sql"
        ]
    );
}

// ---- table.json ----

fn table_dir(prefix: &str, json: &str) -> ConfigDir {
    ConfigDir {
        prefix: prefix.to_string(),
        table_json: Some(file(&format!("{prefix}table.json"), json)),
        ..ConfigDir::default()
    }
}

#[test]
fn a_table_template_goes_into_the_load_job_and_the_nearest_wins() {
    let root = table_dir(
        "_config/",
        r#"{"schema": {"fields": [{"name": "old", "type": "STRING"}]}}"#,
    );
    let near = table_dir(
        "ds/t/_config/",
        r#"{"schema": {"fields": [{"name": "id", "type": "INT64"}]},
            "timePartitioning": {"type": "DAY", "field": "ts"},
            "clustering": {"fields": ["id"]}, "description": "orders", "labels": {"team": "crm"}}"#,
    );
    let config = BatchConfig::merge(BUCKET, &[root, near]).unwrap();
    assert_eq!(
        config.table_template.as_deref(),
        Some("ds/t/_config/table.json")
    );
    assert_eq!(config.load["schema"]["fields"][0]["name"], "id");
    assert_eq!(config.load["timePartitioning"]["field"], "ts");
    assert_eq!(config.load["clustering"]["fields"][0], "id");
    assert_eq!(
        config.load["destinationTableProperties"]["description"],
        "orders"
    );
    assert_eq!(
        config.load["destinationTableProperties"]["labels"]["team"],
        "crm"
    );
    assert_eq!(config.load["createDisposition"], "CREATE_IF_NEEDED");
    assert!(config
        .sources
        .contains(&"ds/t/_config/table.json".to_string()));
    assert!(!config.sources.contains(&"_config/table.json".to_string()));
}

#[test]
fn load_json_wins_over_the_template_for_the_same_key() {
    let template = table_dir(
        "_config/",
        r#"{"schema": {"fields": [{"name": "a", "type": "STRING"}]}}"#,
    );
    let load = load_dir(
        "ds/_config/",
        r#"{"schema": {"fields": [{"name": "b", "type": "STRING"}]}}"#,
    );
    let config = BatchConfig::merge(BUCKET, &[template, load]).unwrap();
    assert_eq!(config.load["schema"]["fields"][0]["name"], "b");
}

#[test]
fn an_unknown_template_key_is_an_error_naming_the_file() {
    let dir = table_dir(
        "ds/_config/",
        r#"{"schema": {"fields": []}, "expirationTime": "1"}"#,
    );
    let err = BatchConfig::merge(BUCKET, &[dir]).unwrap_err().to_string();
    assert!(err.contains("ds/_config/table.json"), "{err}");
    assert!(
        err.contains("expirationTime") && err.contains("allowed: schema"),
        "{err}"
    );
}

/// In transform mode a template is not put into any job: it is kept as the `Table` resource
/// the destination is created from before the first query (checked like in load mode).
#[test]
fn a_template_in_transform_mode_is_the_resource_to_create_the_table_from() {
    let mut dir = table_dir(
        "ds/_config/",
        r#"{"schema": {"fields": []}, "description": "d"}"#,
    );
    dir.sql = vec![file(
        "ds/_config/bq_transform.sql",
        "INSERT INTO {dest_dataset}.{dest_table} SELECT * FROM temp_ext",
    )];
    let config = BatchConfig::merge(BUCKET, std::slice::from_ref(&dir)).unwrap();
    let resource = config.table_resource.expect("the resource");
    assert_eq!(resource["description"], "d");
    assert!(!config.load.contains_key("schema"));
    assert!(!config.load.contains_key("createDisposition"));

    dir.table_json = Some(file("ds/_config/table.json", r#"{"expirationTime": 1}"#));
    let err = BatchConfig::merge(BUCKET, &[dir]).unwrap_err().to_string();
    assert!(err.contains("ds/_config/table.json"), "{err}");
}

// ---- ingest.json ----

fn ingest_dir(prefix: &str, json: &str) -> ConfigDir {
    ConfigDir {
        prefix: prefix.to_string(),
        ingest_json: Some(file(&format!("{prefix}ingest.json"), json)),
        ..ConfigDir::default()
    }
}

#[test]
fn ingest_json_is_merged_root_to_batch_and_never_reaches_the_load_job() {
    let config = BatchConfig::merge(
        BUCKET,
        &[
            ingest_dir(
                "_config/",
                r#"{"fileTimestampRegex": "(?P<yyyy>\\d{4})(?P<mm>\\d\\d)(?P<dd>\\d\\d)", "afterSuccess": "delete"}"#,
            ),
            ingest_dir(
                "ds/t/_config/",
                r#"{"afterSuccess": {"archiveTo": "gs://archive/old"}, "deleteMarker": true, "defaultPartition": "$20240101"}"#,
            ),
        ],
    )
    .unwrap();
    let options = &config.ingest;
    assert!(options.file_timestamp_regex.is_some());
    assert_eq!(options.default_partition.as_deref(), Some("20240101"));
    assert_eq!(
        options.after_success,
        AfterSuccess::ArchiveTo {
            bucket: "archive".into(),
            prefix: "old/".into()
        }
    );
    assert!(options.delete_marker);
    for key in INGEST_KEYS {
        assert!(
            !config.load.contains_key(*key),
            "{key} leaked into the load job"
        );
    }
    assert!(config.sources.contains(&"_config/ingest.json".to_string()));
    assert!(config
        .sources
        .contains(&"ds/t/_config/ingest.json".to_string()));
}

#[test]
fn a_null_in_a_nearer_ingest_json_unsets_the_option() {
    let config = BatchConfig::merge(
        BUCKET,
        &[
            ingest_dir("_config/", r#"{"afterSuccess": "delete"}"#),
            ingest_dir("ds/_config/", r#"{"afterSuccess": null}"#),
        ],
    )
    .unwrap();
    assert_eq!(config.ingest.after_success, AfterSuccess::Keep);
}

#[test]
fn an_unknown_ingest_json_key_is_an_error_naming_the_file_and_the_key() {
    let err = BatchConfig::merge(
        BUCKET,
        &[ingest_dir("ds/_config/", r#"{"afterSucess": "delete"}"#)],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("gs://bucket/ds/_config/ingest.json"), "{err}");
    assert!(err.contains("afterSucess"), "{err}");
    assert!(err.contains("fileTimestampRegex"), "{err}");
}

#[test]
fn invalid_ingest_json_values_name_the_file_that_set_them() {
    let cases = [
        (
            r#"{"fileTimestampRegex": "(?P<year>\\d{4})"}"#,
            "fileTimestampRegex",
        ),
        (r#"{"fileTimestampRegex": "("}"#, "fileTimestampRegex"),
        (r#"{"defaultPartition": "20241301"}"#, "defaultPartition"),
        (r#"{"defaultPartition": "2024010"}"#, "defaultPartition"),
        (r#"{"afterSuccess": "archive"}"#, "afterSuccess"),
        (
            r#"{"afterSuccess": {"archiveTo": "s3://x"}}"#,
            "afterSuccess",
        ),
        (
            r#"{"afterSuccess": {"archiveTo": "gs://bucket"}}"#,
            "afterSuccess",
        ),
        (r#"{"deleteMarker": "yes"}"#, "deleteMarker"),
        (r#"{"quarantine": "yes"}"#, "quarantine"),
        (r#"{"quarantine": {"maxRounds": 0}}"#, "maxRounds"),
        (r#"{"quarantine": {"maxRounds": 21}}"#, "maxRounds"),
        (r#"{"quarantine": {"prefix": "s3://x"}}"#, "quarantine"),
        (r#"{"quarantine": {"rounds": 3}}"#, "rounds"),
    ];
    for (json, key) in cases {
        let err = BatchConfig::merge(
            BUCKET,
            &[
                ingest_dir("_config/", "{}"),
                ingest_dir("ds/t/_config/", json),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("gs://bucket/ds/t/_config/ingest.json"),
            "{json}: {err}"
        );
        assert!(err.contains(key), "{json}: {err}");
    }
}

#[test]
fn file_timestamps_are_refused_in_transform_mode() {
    let mut dir = ingest_dir(
        "ds/_config/",
        r#"{"fileTimestampRegex": "(?P<yyyy>\\d{4})(?P<mm>\\d\\d)(?P<dd>\\d\\d)"}"#,
    );
    dir.sql = vec![file("ds/_config/bq_transform.sql", "SELECT 1")];
    let err = BatchConfig::merge(BUCKET, &[dir]).unwrap_err().to_string();
    assert!(err.contains("ds/_config/ingest.json"), "{err}");
    assert!(err.contains("_FILE_NAME"), "{err}");
}

#[test]
fn quarantine_options_are_read_with_their_defaults() {
    let on =
        BatchConfig::merge(BUCKET, &[ingest_dir("_config/", r#"{"quarantine": true}"#)]).unwrap();
    assert_eq!(
        on.ingest.quarantine,
        Some(Quarantine {
            to: None,
            max_rounds: DEFAULT_QUARANTINE_ROUNDS
        })
    );
    let custom = BatchConfig::merge(
        BUCKET,
        &[ingest_dir(
            "_config/",
            r#"{"quarantine": {"prefix": "gs://q/bad", "maxRounds": 3}}"#,
        )],
    )
    .unwrap();
    assert_eq!(
        custom.ingest.quarantine,
        Some(Quarantine {
            to: Some(("q".into(), "bad/".into())),
            max_rounds: 3
        })
    );
    let mut transform = ingest_dir("ds/_config/", r#"{"quarantine": true}"#);
    transform.sql = vec![file("ds/_config/bq_transform.sql", "SELECT 1")];
    let err = BatchConfig::merge(BUCKET, &[transform])
        .unwrap_err()
        .to_string();
    assert!(err.contains("load mode"), "{err}");
}

#[test]
fn ingest_json_is_read_from_a_config_listing() {
    let (read, _) = files_to_read("ds/_config/", &["ds/_config/ingest.json"]);
    assert_eq!(read, vec!["ds/_config/ingest.json"]);
}
