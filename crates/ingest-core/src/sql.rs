//! The placeholders of a transform SQL, expanded so that no value from an object's path is ever
//! SQL text.
//!
//! A transform SQL (a `*.sql` in a `_config/` folder) may name its destination with three
//! placeholders. Each expands to something that can only ever be *one* identifier or *one*
//! query parameter, whatever the path held:
//!
//! | placeholder | outside quotes | inside a `` `…` `` identifier | inside a string literal |
//! | --- | --- | --- | --- |
//! | `{dest_dataset}` | `` `project`.`dataset` `` | `project.dataset` | `project.dataset` |
//! | `{dest_table}` | `` `table` `` (no decorator) | `table` | `table` |
//! | `{dest_partition}` | `@dest_partition` (a STRING parameter: the decorator's digits, or NULL) | the digits | the digits (a literal that is exactly `'{dest_partition}'` becomes `@dest_partition`) |
//!
//! So the Python function's `INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext` becomes
//! ``INSERT `p`.`ds`.`t` SELECT * FROM temp_ext``: still one valid table reference, now with
//! every part quoted. A BigQuery table id may contain spaces and dashes (`victim WHERE TRUE --`
//! is a legal table id); quoted, it stays a table name.
//!
//! Values are quoted only after checking that they hold no character that could end the
//! quoting: a backtick, a backslash, a quote, or a line break or other control character is
//! [`SqlTemplateError`] (none of them is ever legal in a project, dataset or table id, so this
//! only rejects what validation upstream already should have).
//!
//! Why a small lexer here rather than a SQL parser crate: expanding a placeholder needs only
//! to know whether it stands in plain SQL, a quoted identifier, a string literal or a comment;
//! a full parser (`sqlparser`) would reject the very templates users write (`{dest_table}` is
//! not SQL) and adds 30k lines for four lexical states.

use crate::ports::TableRef;

/// The query parameter `{dest_partition}` becomes outside quotes.
pub const DEST_PARTITION_PARAMETER: &str = "dest_partition";

/// A value that cannot be put inside a quoted identifier safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} holds {found:?}, which no BigQuery identifier may contain; it is not put into SQL")]
pub struct SqlTemplateError {
    /// Which part of the destination (`project id`, `dataset id`, `table id`, `partition`).
    pub what: &'static str,
    /// The value.
    pub value: String,
    /// The offending character.
    pub found: char,
}

/// Checks that `value` can sit inside a backtick-quoted identifier or a string literal without
/// ending it: no backtick, backslash, quote or control character (line breaks included).
///
/// ```
/// use ingest_core::sql::check_quotable;
/// assert!(check_quotable("table id", "victim WHERE TRUE --").is_ok());
/// assert!(check_quotable("table id", "t`; DROP TABLE x; --").is_err());
/// assert!(check_quotable("table id", "t\nx").is_err());
/// ```
pub fn check_quotable(what: &'static str, value: &str) -> Result<(), SqlTemplateError> {
    match value
        .chars()
        .find(|c| matches!(c, '`' | '\\' | '\'' | '"') || c.is_control())
    {
        Some(found) => Err(SqlTemplateError {
            what,
            value: value.to_string(),
            found,
        }),
        None => Ok(()),
    }
}

/// `` `value` ``, after [`check_quotable`].
///
/// ```
/// use ingest_core::sql::quote_identifier;
/// assert_eq!(quote_identifier("table id", "t--x").unwrap(), "`t--x`");
/// ```
pub fn quote_identifier(what: &'static str, value: &str) -> Result<String, SqlTemplateError> {
    check_quotable(what, value)?;
    Ok(format!("`{value}`"))
}

/// Where a position of SQL text stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Plain SQL (or a comment: a value there cannot leave it, as it holds no line break).
    Code,
    /// Inside a backtick-quoted identifier.
    Identifier,
    /// Inside a string or bytes literal.
    Literal,
}

/// The lexical state between two characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    LineComment,
    BlockComment,
    Identifier,
    /// A quoted literal: its quote character, whether it is triple-quoted, whether raw.
    Literal {
        quote: char,
        triple: bool,
        raw: bool,
    },
}

impl State {
    fn context(self) -> Context {
        match self {
            State::Code | State::LineComment | State::BlockComment => Context::Code,
            State::Identifier => Context::Identifier,
            State::Literal { .. } => Context::Literal,
        }
    }
}

/// The three expansions of a placeholder, one per context.
struct Expansion {
    placeholder: &'static str,
    code: String,
    raw: String,
}

/// Expands the placeholders of a transform SQL for `destination`; see the [module](self)
/// documentation for what each becomes.
///
/// ```
/// use ingest_core::ports::TableRef;
/// use ingest_core::sql::render;
/// let dest = TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(),
///                       partition: Some("$2020010203".into()) };
/// assert_eq!(
///     render("INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext", &dest).unwrap(),
///     "INSERT `p`.`ds`.`t` SELECT * FROM temp_ext"
/// );
/// assert_eq!(
///     render("DELETE FROM `{dest_dataset}.{dest_table}` WHERE p = '{dest_partition}'", &dest).unwrap(),
///     "DELETE FROM `p.ds.t` WHERE p = @dest_partition"
/// );
/// ```
pub fn render(sql: &str, destination: &TableRef) -> Result<String, SqlTemplateError> {
    check_quotable("project id", &destination.project)?;
    check_quotable("dataset id", &destination.dataset)?;
    check_quotable("table id", &destination.table)?;
    let digits = partition_digits(destination);
    check_quotable("partition", digits)?;
    let expansions = [
        Expansion {
            placeholder: "{dest_dataset}",
            code: format!("`{}`.`{}`", destination.project, destination.dataset),
            raw: format!("{}.{}", destination.project, destination.dataset),
        },
        Expansion {
            placeholder: "{dest_table}",
            code: format!("`{}`", destination.table),
            raw: destination.table.clone(),
        },
        Expansion {
            placeholder: "{dest_partition}",
            code: format!("@{DEST_PARTITION_PARAMETER}"),
            raw: digits.to_string(),
        },
    ];
    Ok(expand(sql, &expansions))
}

/// The digits of the destination's partition decorator (`$2020010203` → `2020010203`), or "".
pub fn partition_digits(destination: &TableRef) -> &str {
    destination
        .partition
        .as_deref()
        .map(|p| p.trim_start_matches('$'))
        .unwrap_or("")
}

fn expand(sql: &str, expansions: &[Expansion]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut state = State::Code;
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            if let Some(e) = expansions.iter().find(|e| rest.starts_with(e.placeholder)) {
                match state.context() {
                    Context::Code => out.push_str(&e.code),
                    Context::Identifier => out.push_str(&e.raw),
                    Context::Literal => {
                        if e.placeholder == "{dest_partition}" && literal_is_exactly(&out, rest) {
                            // `'{dest_partition}'`: the whole literal becomes the parameter.
                            out.pop();
                            out.push_str(&e.code);
                            rest = &rest[e.placeholder.len() + 1..];
                            state = State::Code;
                            continue;
                        }
                        out.push_str(&e.raw);
                    }
                }
                rest = &rest[e.placeholder.len()..];
                continue;
            }
        }
        let (next, consumed) = step(state, rest);
        out.push_str(&rest[..consumed]);
        rest = &rest[consumed..];
        state = next;
    }
    out
}

/// Whether the placeholder at the start of `rest` is the whole content of a one-character-quoted
/// literal that `out` just opened: `'{dest_partition}'`.
fn literal_is_exactly(out: &str, rest: &str) -> bool {
    let Some(open) = out.chars().last() else {
        return false;
    };
    if open != '\'' && open != '"' {
        return false;
    }
    let before = &out[..out.len() - 1];
    // Not the third quote of a triple quote, nor a raw/bytes prefix's quote.
    let prefixed = before.ends_with(open) || before.ends_with(['r', 'R', 'b', 'B']);
    let after = &rest["{dest_partition}".len()..];
    !prefixed && after.starts_with(open)
}

/// Consumes the next lexical unit of `rest` (at least one character) in `state`; returns the
/// state after it and how many bytes it took.
fn step(state: State, rest: &str) -> (State, usize) {
    let mut chars = rest.chars();
    let Some(c) = chars.next() else {
        return (state, 0);
    };
    let one = c.len_utf8();
    match state {
        State::Code => code_step(rest, c, one),
        State::LineComment => (if c == '\n' { State::Code } else { state }, one),
        State::BlockComment => {
            if rest.starts_with("*/") {
                (State::Code, 2)
            } else {
                (state, one)
            }
        }
        State::Identifier => match c {
            '\\' => (state, one + chars.next().map_or(0, char::len_utf8)),
            '`' => (State::Code, one),
            _ => (state, one),
        },
        State::Literal { quote, triple, raw } => {
            if c == '\\' && !raw {
                return (state, one + chars.next().map_or(0, char::len_utf8));
            }
            if triple {
                let close: String = [quote; 3].iter().collect();
                if rest.starts_with(&close) {
                    return (State::Code, 3);
                }
                (state, one)
            } else if c == quote {
                (State::Code, one)
            } else {
                (state, one)
            }
        }
    }
}

fn code_step(rest: &str, c: char, one: usize) -> (State, usize) {
    if rest.starts_with("--") {
        return (State::LineComment, 2);
    }
    if c == '#' {
        return (State::LineComment, 1);
    }
    if rest.starts_with("/*") {
        return (State::BlockComment, 2);
    }
    if c == '`' {
        return (State::Identifier, 1);
    }
    // A literal, with an optional r/b prefix (`r'…'`, `b"…"`, `rb'…'`, `br'…'`).
    let prefix_len = rest
        .bytes()
        .take_while(|b| matches!(b, b'r' | b'R' | b'b' | b'B'))
        .take(2)
        .count();
    let after_prefix = &rest[prefix_len..];
    if let Some(quote) = after_prefix
        .chars()
        .next()
        .filter(|q| *q == '\'' || *q == '"')
    {
        let raw = rest[..prefix_len].contains(['r', 'R']);
        let triple = after_prefix.starts_with(&[quote; 3].iter().collect::<String>());
        let len = prefix_len + if triple { 3 } else { 1 };
        return (State::Literal { quote, triple, raw }, len);
    }
    // Any other word is taken whole, so that the `r` of `bar'x'` is not read as a prefix: a
    // unit starts only after a non-word character.
    if c.is_alphanumeric() || c == '_' {
        let len = rest
            .char_indices()
            .find(|(_, ch)| !(ch.is_alphanumeric() || *ch == '_'))
            .map_or(rest.len(), |(i, _)| i);
        return (State::Code, len);
    }
    (State::Code, one)
}

#[cfg(test)]
mod tests;
