//! bq-ingest adapter: gcs.
#![warn(missing_docs)]
