//! Decorators that wrap any implementation of a port, in the manner of `object_store`'s
//! `ThrottledStore` and `LimitStore`: each forwards every method of its trait (checked by
//! `clippy::missing_trait_methods`) and adds one behaviour.
//!
//! - [`CountingStore`] / [`CountingWarehouse`]: calls per method, and how they ended.
//! - [`FaultyStore`] / [`FaultyWarehouse`]: injected failures — a call that fails before it is
//!   made, an answer lost after the call took effect, a call that never answers — queued per
//!   method or decided by a [`FaultRule`] before each call.
//!
//! They wrap the in-memory doubles and the emulator-backed adapters alike, so the same counting
//! and the same fault scenario run against both; a port behind an `Arc` is a port too, so a
//! caller can keep a handle on what it wraps.
//!
//! ```
//! use std::sync::Arc;
//! use ingest_core::decorators::{CountingStore, Fault, FaultyStore, StoreMethod};
//! use ingest_core::ports::{ObjectStore, StoreError};
//! use ingest_memory::MemoryStore;
//!
//! let memory = Arc::new(MemoryStore::new());
//! memory.create_bucket("b");
//! let store = CountingStore::new(FaultyStore::new(memory.clone()));
//! store.inner().inject(StoreMethod::Stat, Fault::Fail(StoreError::Transient {
//!     bucket: "b".into(), name: "x".into(), message: "503".into(),
//! }));
//! assert!(futures::executor::block_on(store.stat("b", "x")).is_err());
//! assert_eq!(store.calls().stat, 1);
//! ```

mod counting;
mod faulty;

pub use counting::{CallResult, CountingStore, CountingWarehouse, StoreCalls, WarehouseCalls};
pub use faulty::{Fault, FaultRule, FaultyStore, FaultyWarehouse, StoreMethod, WarehouseMethod};
