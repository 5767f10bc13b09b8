//! Moving a listed object away from a batch (archive after success, quarantine): a
//! create-only copy at the generation listed, then a delete guarded by that generation. Both
//! steps are safe to repeat, so a redelivery finishes what an interrupted delivery began.

use crate::ports::{ObjectMeta, ObjectStore, StoreError};

/// Copies generation `meta.generation` of `gs://bucket/<meta.name>` to `gs://to_bucket/to_name`.
///
/// `Ok(true)`: the copy is in place, made now or found there already with the same size.
/// `Ok(false)`: the source is gone or another generation replaced it since the listing (a newer
/// object is not the batch's): leave it. A different object where the copy should go is an
/// error naming both.
pub(crate) async fn copy_listed(
    store: &dyn ObjectStore,
    bucket: &str,
    meta: &ObjectMeta,
    to_bucket: &str,
    to_name: &str,
) -> Result<bool, StoreError> {
    let name = &meta.name;
    match store
        .copy(bucket, name, meta.generation, to_bucket, to_name)
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(false),
        Err(StoreError::AlreadyExists { .. }) => {
            let there = store.stat(to_bucket, to_name).await?;
            if there.size == meta.size {
                return Ok(true);
            }
            Err(StoreError::Other {
                bucket: to_bucket.to_string(),
                name: to_name.to_string(),
                message: format!(
                    "another object ({} bytes) is where gs://{bucket}/{name} ({} bytes) goes",
                    there.size, meta.size
                ),
            })
        }
        Err(e) => Err(e),
    }
}

/// Deletes `gs://bucket/<meta.name>` at its listed generation; `Ok(false)` when it is gone or
/// another generation is live (left alone).
pub(crate) async fn delete_listed(
    store: &dyn ObjectStore,
    bucket: &str,
    meta: &ObjectMeta,
) -> Result<bool, StoreError> {
    match store
        .delete(bucket, &meta.name, Some(meta.generation))
        .await
    {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound { .. } | StoreError::PreconditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
