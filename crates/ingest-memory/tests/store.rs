//! Behaviour of `MemoryStore` beyond the conformance suite: buckets, generations, helpers,
//! counters, fault injection and the before-op hook.

use std::sync::{Arc, Mutex};

use chrono::Duration as ChronoDuration;
use futures::executor::block_on;
use ingest_core::ports::{Clock, ObjectStore, PutMode, StoreError};
use ingest_memory::{MemoryClock, MemoryStore, StoreOp, StoreStats, FIRST_GENERATION};

fn transient(name: &str) -> StoreError {
    StoreError::Transient {
        bucket: "b".into(),
        name: name.into(),
        message: "503 backendError".into(),
    }
}

#[test]
fn a_missing_bucket_is_not_found_for_every_operation() {
    let store = MemoryStore::new();
    block_on(async {
        let list = store.list("nope", "ds/", None, None).await;
        assert_eq!(
            list,
            Err(StoreError::NotFound {
                bucket: "nope".into(),
                name: "ds/".into()
            })
        );
        assert!(matches!(
            store.read("nope", "x").await,
            Err(StoreError::NotFound { ref bucket, ref name }) if bucket == "nope" && name == "x"
        ));
        assert!(matches!(
            store.stat("nope", "x").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.put("nope", "x", vec![1], PutMode::Overwrite).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.delete("nope", "x", None).await,
            Err(StoreError::NotFound { .. })
        ));
    });
    assert!(!store.bucket_exists("nope"));
    store.create_bucket("nope");
    assert!(store.bucket_exists("nope"));
    let page = block_on(store.list("nope", "", None, None)).expect("bucket exists now");
    assert!(page.objects.is_empty());
    assert_eq!(page.next_page_token, None);
}

#[test]
fn generations_start_realistic_and_strictly_increase_across_buckets() {
    let store = MemoryStore::new();
    store.create_bucket("a");
    store.create_bucket("b");
    let first = store.insert("a", "x", b"1".to_vec());
    assert_eq!(first.generation, FIRST_GENERATION);
    let mut last = first.generation;
    block_on(async {
        for (bucket, name) in [("b", "x"), ("a", "x"), ("a", "y"), ("b", "x")] {
            let meta = store
                .put(bucket, name, b"data".to_vec(), PutMode::Overwrite)
                .await
                .expect("put");
            assert!(meta.generation > last, "{} <= {last}", meta.generation);
            last = meta.generation;
        }
    });
}

#[test]
fn helpers_insert_read_and_remove_without_being_counted() {
    let store = MemoryStore::new();
    let meta = store.put_str("b", "ds/t/_SUCCESS", "");
    assert!(store.bucket_exists("b"), "insert creates the bucket");
    assert_eq!(meta.size, 0);
    store.insert("b", "ds/t/part-1.csv", b"1,a\n".to_vec());
    store.insert("b", "ds/t/part 0 \u{e9}.csv", b"0,z\n".to_vec());
    assert_eq!(
        store.names("b"),
        vec![
            "ds/t/_SUCCESS".to_string(),
            "ds/t/part 0 \u{e9}.csv".to_string(),
            "ds/t/part-1.csv".to_string(),
        ]
    );
    assert_eq!(store.names("other"), Vec::<String>::new());
    assert_eq!(
        store.content("b", "ds/t/part-1.csv"),
        Some(b"1,a\n".to_vec())
    );
    assert_eq!(store.content("b", "missing"), None);
    assert_eq!(
        store.meta("b", "ds/t/_SUCCESS").map(|m| m.generation),
        Some(meta.generation)
    );
    assert!(store.remove("b", "ds/t/_SUCCESS"));
    assert!(!store.remove("b", "ds/t/_SUCCESS"));
    assert_eq!(store.stats(), StoreStats::default());
}

#[test]
fn clones_share_objects() {
    let store = MemoryStore::new();
    let clone = store.clone();
    clone.put_str("b", "x", "shared");
    assert_eq!(store.content("b", "x"), Some(b"shared".to_vec()));
}

#[test]
fn updated_comes_from_the_clock() {
    let clock = MemoryClock::new();
    let store = MemoryStore::new().with_clock(clock.clone());
    store.create_bucket("b");
    let first = store.put_str("b", "x", "1");
    clock.advance(std::time::Duration::from_secs(90));
    let second = block_on(store.put("b", "x", b"2".to_vec(), PutMode::Overwrite)).expect("put");
    assert_eq!(
        first.updated,
        Some(clock.now() - ChronoDuration::seconds(90))
    );
    assert_eq!(second.updated, Some(clock.now()));
}

#[test]
fn stats_count_every_call_including_failed_ones() {
    let store = MemoryStore::new();
    store.create_bucket("b");
    block_on(async {
        let _ = store.list("b", "", None, None).await;
        let _ = store.list("b", "", None, None).await;
        let _ = store.read("b", "missing").await;
        let _ = store.stat("b", "missing").await;
        let _ = store.put("b", "x", vec![], PutMode::Create).await;
        let _ = store.put("b", "x", vec![], PutMode::Create).await;
        let _ = store.put("b", "x", vec![], PutMode::Create).await;
        let _ = store.delete("b", "x", None).await;
    });
    assert_eq!(
        store.stats(),
        StoreStats {
            list: 2,
            read: 1,
            stat: 1,
            put: 3,
            delete: 1
        }
    );
    assert_eq!(store.stats().total(), 8);
    store.reset_stats();
    assert_eq!(store.stats().total(), 0);
}

#[test]
fn fail_next_fails_only_the_named_operation_in_queue_order() {
    let store = MemoryStore::new();
    store.put_str("b", "x", "content");
    store.fail_next(StoreOp::Put, transient("first"));
    store.fail_next(
        StoreOp::Put,
        StoreError::Other {
            bucket: "b".into(),
            name: "second".into(),
            message: "403 forbidden".into(),
        },
    );
    block_on(async {
        // Other operations are not affected.
        assert!(store.read("b", "x").await.is_ok());
        let first = store
            .put("b", "x", b"new".to_vec(), PutMode::Overwrite)
            .await;
        assert_eq!(first, Err(transient("first")));
        let second = store
            .put("b", "x", b"new".to_vec(), PutMode::Overwrite)
            .await;
        assert!(matches!(second, Err(StoreError::Other { ref name, .. }) if name == "second"));
        // The failed puts did not write.
        assert_eq!(store.content("b", "x"), Some(b"content".to_vec()));
        assert!(store
            .put("b", "x", b"new".to_vec(), PutMode::Overwrite)
            .await
            .is_ok());
    });
    assert_eq!(store.content("b", "x"), Some(b"new".to_vec()));
    assert_eq!(store.stats().put, 3);
}

#[test]
fn clear_failures_drops_queued_faults() {
    let store = MemoryStore::new();
    store.put_str("b", "x", "content");
    store.fail_next(StoreOp::Stat, transient("x"));
    store.clear_failures();
    assert!(block_on(store.stat("b", "x")).is_ok());
}

#[test]
fn a_failed_delete_leaves_the_object() {
    let store = MemoryStore::new();
    let meta = store.put_str("b", "lock", "owner");
    store.fail_next(StoreOp::Delete, transient("lock"));
    block_on(async {
        assert!(store
            .delete("b", "lock", Some(meta.generation))
            .await
            .is_err());
        assert_eq!(
            store.delete("b", "lock", Some(meta.generation + 1)).await,
            Err(StoreError::PreconditionFailed {
                bucket: "b".into(),
                name: "lock".into()
            })
        );
        assert!(store.meta("b", "lock").is_some());
        assert_eq!(
            store.delete("b", "lock", Some(meta.generation)).await,
            Ok(())
        );
    });
    assert!(store.names("b").is_empty());
}

#[test]
fn before_op_hook_sees_every_call_and_can_fail_it() {
    let store = MemoryStore::new();
    store.create_bucket("b");
    let seen: Arc<Mutex<Vec<(StoreOp, String)>>> = Arc::default();
    let log = seen.clone();
    store.set_before_op(Box::new(move |op, name| {
        log.lock().expect("log").push((op, name.to_string()));
        (op == StoreOp::Delete).then(|| StoreError::Other {
            bucket: "b".into(),
            name: name.into(),
            message: "crash".into(),
        })
    }));
    block_on(async {
        store
            .put("b", "t/x", b"1".to_vec(), PutMode::Create)
            .await
            .expect("put");
        let _ = store.list("b", "t/", None, None).await;
        let _ = store.read("b", "t/x").await;
        let _ = store.stat("b", "t/x").await;
        let deleted = store.delete("b", "t/x", None).await;
        assert!(
            matches!(deleted, Err(StoreError::Other { ref message, .. }) if message == "crash")
        );
    });
    assert_eq!(
        store.names("b"),
        vec!["t/x".to_string()],
        "the delete did nothing"
    );
    assert_eq!(
        *seen.lock().expect("log"),
        vec![
            (StoreOp::Put, "t/x".to_string()),
            (StoreOp::List, "t/".to_string()),
            (StoreOp::Read, "t/x".to_string()),
            (StoreOp::Stat, "t/x".to_string()),
            (StoreOp::Delete, "t/x".to_string()),
        ]
    );
    store.clear_before_op();
    assert_eq!(block_on(store.delete("b", "t/x", None)), Ok(()));
    assert_eq!(seen.lock().expect("log").len(), 5);
}

#[test]
fn before_op_hook_may_use_the_store_to_simulate_a_concurrent_writer() {
    let store = MemoryStore::new();
    store.create_bucket("b");
    let writer = store.clone();
    store.set_before_op(Box::new(move |op, name| {
        if op == StoreOp::Put && name == "t/_lock" {
            writer.put_str("b", "t/_lock", "someone else");
        }
        None
    }));
    let result = block_on(store.put("b", "t/_lock", b"me".to_vec(), PutMode::Create));
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(
        store.content("b", "t/_lock"),
        Some(b"someone else".to_vec())
    );
}

#[test]
fn listing_pages_with_opaque_tokens() {
    let store = MemoryStore::new();
    store.create_bucket("b");
    for name in ["a/1", "a/2", "a/3", "b/1", "a0"] {
        store.put_str("b", name, name);
    }
    block_on(async {
        let page = store.list("b", "a/", None, Some(2)).await.expect("list");
        let names: Vec<_> = page.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a/1", "a/2"]);
        let token = page.next_page_token.expect("more pages");
        let page = store
            .list("b", "a/", Some(&token), Some(2))
            .await
            .expect("list");
        let names: Vec<_> = page.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a/3"]);
        assert_eq!(page.next_page_token, None);

        // An exact fit ends without a token.
        let page = store.list("b", "a/", None, Some(3)).await.expect("list");
        assert_eq!(page.objects.len(), 3);
        assert_eq!(page.next_page_token, None);

        // Some(0) means no limit.
        let page = store.list("b", "", None, Some(0)).await.expect("list");
        assert_eq!(page.objects.len(), 5);

        // A token from before the prefix starts at the prefix.
        let page = store
            .list("b", "b/", Some("a/1"), None)
            .await
            .expect("list");
        let names: Vec<_> = page.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["b/1"]);
    });
}

#[test]
fn debug_output_summarises_the_store() {
    let store = MemoryStore::new();
    store.put_str("b", "x", "1");
    let debug = format!("{store:?}");
    assert!(debug.contains("MemoryStore"), "{debug}");
    assert!(debug.contains("objects: 1"), "{debug}");
}
