//! Behaviour of `MemoryStore` beyond the conformance suite: buckets, generations and helpers.
//! (Counting and fault injection are the core's decorators: `ingest-core/tests/decorators.rs`.)

use chrono::Duration as ChronoDuration;
use futures::executor::block_on;
use ingest_core::ports::{Clock, ObjectStore, PutMode, StoreError};
use ingest_memory::{MemoryClock, MemoryStore, FIRST_GENERATION};

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
