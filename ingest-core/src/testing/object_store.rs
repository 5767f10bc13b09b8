//! The [`ObjectStore`](crate::ports::ObjectStore) conformance suite.

use crate::ports::ObjectStore;

/// What an implementation can be held to. Some emulators do not enforce every precondition;
/// what they skip must be covered by another implementation's run and said so.
#[derive(Debug, Clone, Copy)]
pub struct StoreCapabilities {
    /// Whether `delete(.., Some(generation))` is enforced (fake-gcs-server ignores it).
    pub delete_precondition: bool,
}

impl Default for StoreCapabilities {
    fn default() -> Self {
        StoreCapabilities { delete_precondition: true }
    }
}

/// Runs every check against `store`, using only objects under `scratch_prefix` in `bucket`
/// (which must exist). Panics with a message naming the check that failed.
pub async fn run(store: &dyn ObjectStore, bucket: &str, scratch_prefix: &str, caps: StoreCapabilities) {
    let _ = (store, bucket, scratch_prefix, caps);
    unimplemented!("helper fills this in")
}
