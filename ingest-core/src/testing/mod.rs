//! Conformance suites that every implementation of the ports must pass (feature `testing`).
//!
//! The in-memory doubles of `ingest-memory` and the emulator-backed adapters run the same
//! suites, so the core can rely on exactly the semantics documented on the traits.
//!
//! ```ignore
//! ingest_core::testing::object_store::run(&store, "bucket", "conformance/run-1/", caps).await;
//! ```

pub mod object_store;
pub mod warehouse;
