//! bq-ingest adapter: bigquery.
#![warn(missing_docs)]
