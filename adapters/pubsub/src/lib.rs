//! bq-ingest adapter: pubsub.
#![warn(missing_docs)]
