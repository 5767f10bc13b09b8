//! BigQuery identifier rules: project, dataset and table ids, partition decorators, labels.
//! Every identifier derived from a path passes through here before it reaches a job or SQL.

/// Why an identifier is invalid: the rule it breaks.
pub type RuleViolation = String;

/// A project id: 6–30 characters of lowercase letters, digits and hyphens, starting with a
/// letter, not ending with a hyphen; optionally prefixed by a domain (`example.com:project`).
pub fn validate_project_id(id: &str) -> Result<(), RuleViolation> {
    let _ = id;
    unimplemented!("helper fills this in")
}

/// A dataset id: 1–1024 characters of letters, digits and underscores.
pub fn validate_dataset_id(id: &str) -> Result<(), RuleViolation> {
    let _ = id;
    unimplemented!("helper fills this in")
}

/// A table id: 1–1024 characters of Unicode letters, marks, numbers, connectors, dashes and
/// spaces (BigQuery's rule), no decorator.
pub fn validate_table_id(id: &str) -> Result<(), RuleViolation> {
    let _ = id;
    unimplemented!("helper fills this in")
}

/// A partition decorator `$YYYY`, `$YYYYMM`, `$YYYYMMDD` or `$YYYYMMDDHH` naming a real date
/// (and hour), or `$__UNPARTITIONED__`.
pub fn validate_partition(decorator: &str) -> Result<(), RuleViolation> {
    let _ = decorator;
    unimplemented!("helper fills this in")
}
