//! The subcommands.

pub mod backfill;
pub mod explain;
pub mod pull;
pub mod runtime;
pub mod serve;
