//! In-memory implementations of the ports of [`ingest_core`]: an object store, a warehouse and
//! a clock, for tests and for embedding bq-ingest without Google Cloud.
//!
//! Every double passes the conformance suites of `ingest_core::testing` and adds what tests of
//! the core need: job failures, adjustable job durations, query outcomes and virtual time.
//! Counting calls and failing calls are not theirs: wrap them (or any other port) in the core's
//! decorators, `ingest_core::decorators::{CountingStore, FaultyStore, CountingWarehouse,
//! FaultyWarehouse}`.
//!
//! - [`MemoryStore`]: an [`ObjectStore`](ingest_core::ports::ObjectStore) with generations and
//!   every precondition enforced.
//! - [`MemoryWarehouse`]: a [`Warehouse`](ingest_core::ports::Warehouse) that runs load jobs
//!   against a [`MemoryStore`] and counts rows per table and partition.
//! - [`MemoryClock`]: a [`Clock`](ingest_core::ports::Clock) whose `sleep` advances virtual
//!   time instantly.
//! - [`MemoryObserver`]: an [`Observer`](ingest_core::ports::Observer) that keeps every report.
//!
//! ```
//! use std::sync::Arc;
//! use ingest_core::ports::{ObjectStore, Warehouse};
//! use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
//!
//! let clock = MemoryClock::new();
//! let store = Arc::new(MemoryStore::new().with_clock(clock.clone()));
//! store.create_bucket("b");
//! let warehouse = MemoryWarehouse::with_store(store.clone()).with_clock(clock.clone());
//! let _ports: (Arc<dyn ObjectStore>, Arc<dyn Warehouse>) = (store, Arc::new(warehouse));
//! ```
#![warn(missing_docs)]

mod clock;
mod forgetful;
mod generated;
mod observer;
mod store;
mod warehouse;

pub use clock::{MemoryClock, DEFAULT_START_SECONDS};
pub use forgetful::ForgetfulWarehouse;
pub use generated::GeneratedStore;
pub use observer::{MemoryObserver, Observed};
pub use store::{MemoryStore, DEFAULT_PAGE_SIZE, FIRST_GENERATION};
pub use warehouse::{MemoryWarehouse, QueryOutcome, QueryResponder};
