//! In-memory implementations of the ports of [`ingest_core`].
#![warn(missing_docs)]
