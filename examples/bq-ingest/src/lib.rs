//! The pieces of the `bq-ingest` binary that embedders may reuse: the system clock and the
//! Cloud Logging log format.
#![warn(missing_docs)]

pub mod clock;
pub mod logging;
