//! The [`Warehouse`](crate::ports::Warehouse) conformance suite.

use crate::ports::{JobRequest, TableRef, Warehouse};

/// What the suite needs from the environment of the implementation under test.
#[derive(Debug, Clone)]
pub struct WarehouseFixture {
    /// A load job that succeeds (its `job_id` is a base; the suite appends a unique suffix).
    pub load_ok: JobRequest,
    /// The rows `load_ok` writes.
    pub load_ok_rows: u64,
    /// A load job that the warehouse accepts but that fails (e.g. a schema mismatch).
    pub load_failing: JobRequest,
    /// Where the suite records a [`LoadRecord`](crate::ports::LoadRecord).
    pub state_table: TableRef,
    /// A token unique to this run (job ids persist in real warehouses).
    pub run_id: String,
}

/// Runs every check against `warehouse`. Panics with a message naming the check that failed.
pub async fn run(warehouse: &dyn Warehouse, fixture: &WarehouseFixture) {
    let _ = (warehouse, fixture);
    unimplemented!("helper fills this in")
}
