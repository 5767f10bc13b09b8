use proptest::prelude::*;

use super::*;
use crate::ident::validate_table_id;

fn dest(table: &str, partition: Option<&str>) -> TableRef {
    TableRef {
        project: "my-project".into(),
        dataset: "ds".into(),
        table: table.into(),
        partition: partition.map(str::to_string),
    }
}

#[test]
fn the_python_functions_documented_examples_still_form_one_reference() {
    // The Python function's README and its integration tests.
    let d = dest("nation", None);
    assert_eq!(
        render(
            "INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext",
            &d
        )
        .unwrap(),
        "INSERT `my-project`.`ds`.`nation` SELECT * FROM temp_ext"
    );
    let update = "UPDATE {dest_dataset}.{dest_table} dest\n\
                  SET alpha_update = CONCAT(dest.alpha_update, src.alpha_update)\n\
                  FROM temp_ext src\n\
                  WHERE dest.id = src.id";
    assert_eq!(
        render(update, &dest("ordering", None)).unwrap(),
        "UPDATE `my-project`.`ds`.`ordering` dest\n\
         SET alpha_update = CONCAT(dest.alpha_update, src.alpha_update)\n\
         FROM temp_ext src\n\
         WHERE dest.id = src.id"
    );
    let merge = "MERGE {dest_dataset}.{dest_table} T USING temp_ext S ON T.id = S.id\n\
                 WHEN MATCHED THEN UPDATE SET v = S.v WHEN NOT MATCHED THEN INSERT ROW";
    assert!(render(merge, &d)
        .unwrap()
        .starts_with("MERGE `my-project`.`ds`.`nation` T USING temp_ext S"));
}

#[test]
fn a_hostile_table_id_stays_one_quoted_identifier() {
    // The reproduction of the audit: a legal table id that carries SQL.
    let d = dest("victim WHERE TRUE --", None);
    assert_eq!(
        render(
            "DELETE FROM {dest_dataset}.{dest_table} WHERE N_NAME = @batch_id",
            &d
        )
        .unwrap(),
        "DELETE FROM `my-project`.`ds`.`victim WHERE TRUE --` WHERE N_NAME = @batch_id"
    );
    let d = dest("t--x", None);
    assert_eq!(
        render("INSERT {dest_dataset}.{dest_table} SELECT 1", &d).unwrap(),
        "INSERT `my-project`.`ds`.`t--x` SELECT 1"
    );
}

#[test]
fn characters_that_end_quoting_are_rejected() {
    for bad in ["t`x", "t\\x", "t\nx", "t\rx", "t'x", "t\"x", "t\u{0}x"] {
        let error = render("SELECT * FROM {dest_table}", &dest(bad, None)).unwrap_err();
        assert_eq!(error.what, "table id");
        assert!(
            error.to_string().contains("no BigQuery identifier"),
            "{error}"
        );
    }
    let mut d = dest("t", None);
    d.dataset = "d`s".into();
    assert_eq!(render("{dest_dataset}", &d).unwrap_err().what, "dataset id");
    let mut d = dest("t", None);
    d.project = "p\n".into();
    assert_eq!(render("x", &d).unwrap_err().what, "project id");
}

#[test]
fn placeholders_inside_quoted_identifiers_are_not_quoted_twice() {
    let d = dest("t", Some("$2020010203"));
    assert_eq!(
        render("SELECT * FROM `{dest_dataset}.{dest_table}`", &d).unwrap(),
        "SELECT * FROM `my-project.ds.t`"
    );
    assert_eq!(
        render("SELECT * FROM `other-project.ds.{dest_table}`", &d).unwrap(),
        "SELECT * FROM `other-project.ds.t`"
    );
    // An escaped backtick inside an identifier does not end it.
    assert_eq!(
        render("SELECT `a\\`{dest_table}` FROM x", &d).unwrap(),
        "SELECT `a\\`t` FROM x"
    );
}

#[test]
fn the_partition_is_a_parameter_in_code_and_digits_in_literals() {
    let d = dest("t", Some("$2020010203"));
    assert_eq!(
        render("WHERE p = {dest_partition}", &d).unwrap(),
        "WHERE p = @dest_partition"
    );
    assert_eq!(
        render("WHERE p = '{dest_partition}'", &d).unwrap(),
        "WHERE p = @dest_partition"
    );
    assert_eq!(
        render("WHERE p = \"{dest_partition}\" AND q = 1", &d).unwrap(),
        "WHERE p = @dest_partition AND q = 1"
    );
    assert_eq!(
        render("WHERE p = 'P{dest_partition}'", &d).unwrap(),
        "WHERE p = 'P2020010203'"
    );
    assert_eq!(
        render("WHERE p = r'{dest_partition}'", &d).unwrap(),
        "WHERE p = r'2020010203'"
    );
    assert_eq!(
        render("WHERE p = '''{dest_partition}'''", &d).unwrap(),
        "WHERE p = '''2020010203'''"
    );
    assert_eq!(partition_digits(&dest("t", None)), "");
}

#[test]
fn literals_and_comments_are_followed() {
    let d = dest("t", None);
    // A quote inside a comment opens nothing; a placeholder there is expanded as code.
    assert_eq!(
        render("-- it's {dest_table}\nSELECT '{dest_table}'", &d).unwrap(),
        "-- it's `t`\nSELECT 't'"
    );
    assert_eq!(
        render("/* ' */ {dest_table} # '\n{dest_table}", &d).unwrap(),
        "/* ' */ `t` # '\n`t`"
    );
    // An escaped quote does not end a literal; a raw literal has no escapes.
    assert_eq!(
        render("SELECT 'a\\'{dest_table}', {dest_table}", &d).unwrap(),
        "SELECT 'a\\'t', `t`"
    );
    assert_eq!(
        render("SELECT r'a\\', {dest_table}", &d).unwrap(),
        "SELECT r'a\\', `t`"
    );
    // A word ending in r or b before a quote is a word, not a literal prefix.
    assert_eq!(
        render("SELECT bar'{dest_table}'", &d).unwrap(),
        "SELECT bar't'"
    );
    // Triple-quoted literals end only at three quotes.
    assert_eq!(
        render("SELECT \"\"\"a\"b\"\"\", {dest_table}", &d).unwrap(),
        "SELECT \"\"\"a\"b\"\"\", `t`"
    );
    // Unknown braces and unicode pass through.
    assert_eq!(
        render("SELECT '{x}' -- ü {dest}", &d).unwrap(),
        "SELECT '{x}' -- ü {dest}"
    );
}

/// Pieces of legal table ids: characters of every category BigQuery allows (L, M, N, Pc, Pd,
/// Zs), SQL words and comment starts made of them (`--`, `WHERE TRUE`).
fn legal_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_]{1,8}",
        Just(" ".to_string()),
        Just("-".to_string()),
        Just("--".to_string()),
        Just("é".to_string()),
        Just("e\u{301}".to_string()), // a combining mark
        Just("中文".to_string()),
        Just("\u{2013}".to_string()), // an en dash (Pd)
        Just("\u{3000}".to_string()), // an ideographic space (Zs)
        Just("\u{203F}".to_string()), // undertie (Pc)
        Just("WHERE TRUE".to_string()),
    ]
}

/// Pieces that no table id may hold: comment and statement ends, quotes, escapes, line breaks.
fn hostile_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/*".to_string()),
        Just("*/".to_string()),
        Just(";".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("`".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("#".to_string()),
    ]
}

fn legal_table_id() -> impl Strategy<Value = String> {
    prop::collection::vec(legal_piece(), 1..40).prop_map(|pieces| pieces.concat())
}

fn any_table_id() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![3 => legal_piece(), 1 => hostile_piece()], 1..40)
        .prop_map(|pieces| pieces.concat())
}

const TEMPLATES: [(&str, &str); 3] = [
    (
        "DELETE FROM {dest_dataset}.{dest_table} WHERE N_NAME = @batch_id -- {dest_partition}",
        "DELETE FROM `my-project`.`ds`.`zzsafe` WHERE N_NAME = @batch_id -- @dest_partition",
    ),
    (
        "INSERT {dest_dataset}.{dest_table} SELECT *, '{dest_table}' AS t FROM temp_ext",
        "INSERT `my-project`.`ds`.`zzsafe` SELECT *, 'zzsafe' AS t FROM temp_ext",
    ),
    (
        "UPDATE `{dest_dataset}.{dest_table}` d SET v = 1 /* {dest_table} */ WHERE p = {dest_partition}",
        "UPDATE `my-project.ds.zzsafe` d SET v = 1 /* `zzsafe` */ WHERE p = @dest_partition",
    ),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever legal table id a path holds, the rendered SQL is the template's with that id
    /// in exactly the places a harmless one takes: inside one quoted identifier, or inside a
    /// literal it cannot leave (no quote, backslash or line break is legal in a table id).
    #[test]
    fn a_legal_table_id_never_changes_the_statement(table in legal_table_id()) {
        prop_assume!(validate_table_id(&table).is_ok());
        prop_assert!(!table.contains(['`', '\\', '\'', '"', '\n']));
        for (template, expected_safe) in TEMPLATES {
            let safe = render(template, &dest("zzsafe", Some("$2020010203"))).unwrap();
            prop_assert_eq!(&safe, expected_safe);
            let rendered = render(template, &dest(&table, Some("$2020010203"))).unwrap();
            prop_assert_eq!(rendered, safe.replace("zzsafe", &table));
        }
    }

    /// Any value at all either renders inside quotes it cannot leave, or is refused.
    #[test]
    fn any_value_is_quoted_safely_or_refused(table in any_table_id()) {
        let template = TEMPLATES[0].0;
        match render(template, &dest(&table, None)) {
            Ok(rendered) => {
                prop_assert!(!table.contains(['`', '\\', '\'', '"']));
                prop_assert!(!table.chars().any(char::is_control));
                prop_assert_eq!(rendered, TEMPLATES[0].1.replace("zzsafe", &table));
            }
            Err(e) => prop_assert!(table.contains(e.found)),
        }
    }
}

#[test]
fn a_table_id_of_1024_bytes_is_one_identifier() {
    let table = "x-- ".repeat(256);
    assert_eq!(table.len(), 1024);
    validate_table_id(&table).unwrap();
    let rendered = render("SELECT 1 FROM {dest_table} WHERE TRUE", &dest(&table, None)).unwrap();
    assert_eq!(rendered, format!("SELECT 1 FROM `{table}` WHERE TRUE"));
}
