//! Conformance suites that every implementation of the ports must pass (feature `testing`).
//!
//! The in-memory doubles of `ingest-memory` and the emulator-backed adapters run the same
//! suites, so the core can rely on exactly the semantics documented on the traits. Each suite is
//! a plain `async fn` (no runtime needed) made of named checks; a failed check panics with a
//! message naming it, e.g. ``ObjectStore conformance check `create_existing` failed: …``.
//!
//! - [`object_store::run`] only touches objects under its scratch prefix; each of its checks
//!   (`object_store::create_only`, …) runs alone over an [`object_store::Scratch`].
//! - [`warehouse::run`] makes its job ids unique with [`warehouse::WarehouseFixture::run_id`];
//!   each of its checks (`warehouse::duplicate_submit`, …) runs alone.
//!
//! ```
//! use ingest_core::testing::object_store::{self, StoreCapabilities};
//! use ingest_memory::MemoryStore;
//!
//! let store = MemoryStore::new();
//! store.create_bucket("bucket");
//! futures::executor::block_on(object_store::run(
//!     &store,
//!     "bucket",
//!     "conformance/run-1/",
//!     StoreCapabilities::default(),
//! ));
//! ```

pub mod object_store;
pub mod warehouse;
