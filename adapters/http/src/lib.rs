//! bq-ingest adapter: http.
#![warn(missing_docs)]
