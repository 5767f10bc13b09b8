//! The subcommands.

pub mod explain;
