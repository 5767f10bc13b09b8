//! Decorators that wrap any implementation of a port, in the manner of `object_store`'s
//! `ThrottledStore` and `LimitStore`: each forwards every method of its trait (checked by
//! `clippy::missing_trait_methods`) and adds one behaviour.
//!
//! - [`FaultyStore`] / [`FaultyWarehouse`]: injected failures — a call that fails before it is
//!   made, an answer lost after the call took effect, a call that never answers.
//!
//! They wrap the in-memory doubles and the emulator-backed adapters alike, so the same fault
//! scenario runs against both.

mod faulty;

pub use faulty::{Fault, FaultyStore, FaultyWarehouse, StoreMethod, WarehouseMethod};
