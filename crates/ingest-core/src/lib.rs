//! # ingest-core
//!
//! The pure domain of bq-ingest: event-driven ingest from Google Cloud Storage into BigQuery.
//!
//! An upstream system writes a batch of files under a GCS prefix and then an empty `_SUCCESS`
//! marker; GCS notifies; bq-ingest derives the destination from the path, merges the
//! `_config/` files on the way, plans BigQuery jobs with deterministic ids and follows them.
//!
//! This crate does no I/O: it reaches storage, the warehouse and time only through the traits
//! in [`ports`]. Adapters (GCS, BigQuery, Pub/Sub, HTTP, in-memory) live in their own crates.
//!
//! ```
//! use ingest_core::event::ObjectEvent;
//! use ingest_core::settings::Settings;
//! use ingest_core::trigger::{classify, Trigger};
//!
//! let settings = Settings::default();
//! let event = ObjectEvent::finalized("bucket", "dataset/table/_SUCCESS", 1);
//! assert_eq!(classify(&settings, &event), Trigger::Success);
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod decorators;
pub mod destination;
pub mod event;
pub mod explain;
pub mod ident;
pub mod ingest;
pub mod listing;
pub mod notification;
pub mod operate;
pub mod ordering;
mod outcome;
pub mod pipeline;
pub mod plan;
pub mod ports;
mod quarantine;
pub mod settings;
pub mod sql;
pub mod transform;
pub mod trigger;
mod unordered;

#[cfg(feature = "testing")]
pub mod testing;
