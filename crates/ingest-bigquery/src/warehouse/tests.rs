use super::*;

#[test]
fn emulator_urls() {
    let base =
        |host: &str| BigQueryWarehouse::for_emulator("p", host).map(|w| w.base_url().to_string());
    assert_eq!(
        base("http://127.0.0.1:9050/").ok().as_deref(),
        Some("http://127.0.0.1:9050/bigquery/v2")
    );
    assert_eq!(
        base("localhost:9050").ok().as_deref(),
        Some("http://localhost:9050/bigquery/v2")
    );
    assert!(base("http://").is_err());
}

#[test]
fn schemas_are_read_from_both_shapes() {
    let array = table_schema_from_json(r#"[{"name":"a","type":"STRING"}]"#);
    let object = table_schema_from_json(r#"{"fields":[{"name":"a","type":"STRING"}]}"#);
    assert_eq!(array, object);
    assert_eq!(
        array.ok(),
        Some(json!({"fields": [{"name": "a", "type": "STRING"}]}))
    );
    assert!(table_schema_from_json("[]").is_err());
    assert!(table_schema_from_json(r#"[{"name":"a"}]"#).is_err());
    assert!(table_schema_from_json("nope").is_err());
}

#[test]
fn quoting_refuses_backticks() {
    let table = |name: &str| TableRef {
        project: "p".into(),
        dataset: "d".into(),
        table: name.into(),
        partition: Some("$2020".into()),
    };
    assert_eq!(quoted_table(&table("t")).ok().as_deref(), Some("`p.d.t`"));
    assert!(quoted_table(&table("t` OR 1=1 --")).is_err());
    assert!(quoted_table(&table("")).is_err());
}

#[test]
fn query_rows_are_keyed_by_column() {
    let response = json!({
        "schema": {"fields": [
            {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "rec", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]},
            {"name": "none", "type": "STRING"}
        ]},
        "rows": [{"f": [
            {"v": "1"},
            {"v": [{"v": "a"}, {"v": "b"}]},
            {"v": {"f": [{"v": "y"}]}},
            {"v": null}
        ]}]
    });
    let mut rows = Vec::new();
    response_rows(&response, &mut rows);
    assert_eq!(
        rows,
        vec![json!({"id": "1", "tags": ["a", "b"], "rec": {"x": "y"}, "none": null})]
    );
}

#[test]
fn insert_errors_are_read() {
    assert_eq!(insert_errors(&json!({})), None);
    assert_eq!(insert_errors(&json!({"insertErrors": []})), None);
    let (retryable, message) = insert_errors(&json!({"insertErrors": [
        {"index": 0, "errors": [{"reason": "invalid", "message": "no such field: x."}]}
    ]}))
    .expect("errors");
    assert!(!retryable);
    assert_eq!(message, "insertAll row errors: invalid: no such field: x.");
    let (retryable, _) = insert_errors(&json!({"insertErrors": [
        {"index": 0, "errors": [{"reason": "backendError", "message": ""}]}
    ]}))
    .expect("errors");
    assert!(retryable);
}

#[test]
fn only_commit_conflicts_are_retried() {
    assert!(is_commit_conflict(
        "Failed to commit DuckLake transaction: conflict on table load_state"
    ));
    assert!(!is_commit_conflict("no such field: foo"));
    assert!(!is_commit_conflict("Failed to commit"));
}
