//! The pieces of the `bq-ingest` binary that embedders may reuse: the system clock, the
//! Cloud Logging log format and the redaction of secrets from logs.
#![warn(missing_docs)]

pub mod clock;
pub mod logging;
pub mod redact;
