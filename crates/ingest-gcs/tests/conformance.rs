//! The shared `ObjectStore` conformance suite of ingest-core, run against fake-gcs-server.

mod common;

use ingest_core::testing::object_store::{run, StoreCapabilities};

use common::{emulator_store, unique_id};

#[tokio::test]
async fn gcs_store_passes_the_object_store_conformance_suite() {
    let Some((store, bucket)) = emulator_store("conformance").await else {
        return;
    };
    let scratch = format!("conformance/{}/", unique_id());
    // fake-gcs-server ignores `ifGenerationMatch` on DELETE (a delete with a wrong generation
    // deletes), so the delete precondition cannot be checked here; the memory double's run of
    // the same suite covers it. GcsStore sends the precondition, as real GCS enforces it.
    // Its filesystem backend cannot hold `a` and `a/b/c` at once (a file and a folder of one
    // name: HTTP 500), which GCS can; the memory double covers that case.
    // It also ignores `ifSourceGenerationMatch` and `ifGenerationMatch=0` on `rewriteTo` (a
    // copy onto an existing object replaces it); GcsStore sends both, and the memory double's
    // run checks what they mean.
    let capabilities = StoreCapabilities {
        delete_precondition: false,
        object_and_folder_same_name: false,
        copy_preconditions: false,
    };
    run(&store, &bucket, &scratch, capabilities).await;
    let stats = store.stats();
    assert!(stats.total() > 0, "the suite made no request: {stats:?}");
}
