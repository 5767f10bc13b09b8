//! Direct tests of each `ObjectStore` method of `GcsStore` against fake-gcs-server
//! (`STORAGE_EMULATOR_HOST`, bucket `INGEST_BUCKET`).

mod common;

use ingest_core::ports::{ObjectStore, PutMode, StoreError};
use ingest_gcs::RequestStats;

use common::{emulator_store, unique_prefix};

#[tokio::test]
async fn put_then_read_and_stat_describe_the_same_generation() {
    let Some((store, bucket)) = emulator_store("put_read_stat").await else {
        return;
    };
    let name = format!("{}data.csv", unique_prefix("put_read_stat"));
    let written = store
        .put(&bucket, &name, b"a,b\n1,2\n".to_vec(), PutMode::Overwrite)
        .await
        .expect("put");
    assert_eq!(written.name, name);
    assert_eq!(written.size, 8);
    assert!(written.generation > 0);
    assert!(written.updated.is_some());

    let (read_meta, content) = store.read(&bucket, &name).await.expect("read");
    assert_eq!(content, b"a,b\n1,2\n");
    assert_eq!(
        (&read_meta.name, read_meta.size, read_meta.generation),
        (&name, 8, written.generation)
    );
    // The download's Last-Modified header has one-second precision.
    let whole_seconds = |meta: &ingest_core::ports::ObjectMeta| meta.updated.map(|t| t.timestamp());
    assert_eq!(whole_seconds(&read_meta), whole_seconds(&written));

    let stat = store.stat(&bucket, &name).await.expect("stat");
    assert_eq!(stat, written);
}

#[tokio::test]
async fn overwrite_makes_a_new_generation() {
    let Some((store, bucket)) = emulator_store("overwrite").await else {
        return;
    };
    let name = format!("{}f", unique_prefix("overwrite"));
    let first = store
        .put(&bucket, &name, b"one".to_vec(), PutMode::Overwrite)
        .await
        .expect("first put");
    let second = store
        .put(&bucket, &name, b"second".to_vec(), PutMode::Overwrite)
        .await
        .expect("second put");
    assert_ne!(first.generation, second.generation);
    assert_eq!(second.size, 6);
    let (meta, content) = store.read(&bucket, &name).await.expect("read");
    assert_eq!(
        (meta.generation, content),
        (second.generation, b"second".to_vec())
    );
}

#[tokio::test]
async fn list_pages_through_a_prefix_recursively_in_name_order() {
    let Some((store, bucket)) = emulator_store("list_paging").await else {
        return;
    };
    let prefix = unique_prefix("list_paging");
    let names = [
        "b.csv",
        "a.csv",
        "sub/deeper/c.csv",
        "_SUCCESS",
        "sub/d.json",
    ];
    let mut written = Vec::new();
    for name in names {
        let full = format!("{prefix}{name}");
        written.push(
            store
                .put(&bucket, &full, name.as_bytes().to_vec(), PutMode::Overwrite)
                .await
                .expect("put"),
        );
    }
    // An object just outside the prefix (same text minus the final slash) is not listed.
    let outside = format!("{}x", prefix.trim_end_matches('/'));
    store
        .put(&bucket, &outside, Vec::new(), PutMode::Overwrite)
        .await
        .expect("put outside");

    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list(&bucket, &prefix, token.as_deref(), Some(2))
            .await
            .expect("list");
        assert!(page.objects.len() <= 2, "page larger than max_results");
        pages.push(page.objects.len());
        written.retain(|meta| !page.objects.contains(meta));
        for object in &page.objects {
            assert!(
                object.name.starts_with(&prefix),
                "{} outside the prefix",
                object.name
            );
        }
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages.iter().sum::<usize>(), names.len(), "pages {pages:?}");
    assert!(
        pages.len() >= 3,
        "5 objects in pages of 2 came in {pages:?}"
    );
    assert!(
        written.is_empty(),
        "not listed (or listed with other metadata): {written:?}"
    );

    let everything = store
        .list(&bucket, &prefix, None, None)
        .await
        .expect("list all");
    let listed: Vec<&str> = everything.objects.iter().map(|o| o.name.as_str()).collect();
    let mut expected: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(everything.next_page_token, None);
}

#[tokio::test]
async fn an_empty_prefix_gives_an_empty_page() {
    let Some((store, bucket)) = emulator_store("list_empty").await else {
        return;
    };
    let page = store
        .list(&bucket, &unique_prefix("list_empty"), None, Some(10))
        .await
        .expect("list");
    assert!(page.objects.is_empty());
    assert_eq!(page.next_page_token, None);
}

#[tokio::test]
async fn create_only_refuses_a_live_object() {
    let Some((store, bucket)) = emulator_store("create_only").await else {
        return;
    };
    let name = format!("{}_bqlock", unique_prefix("create_only"));
    let created = store
        .put(&bucket, &name, b"first".to_vec(), PutMode::Create)
        .await
        .expect("first create");
    let error = store
        .put(&bucket, &name, b"second".to_vec(), PutMode::Create)
        .await
        .expect_err("second create must fail");
    assert_eq!(
        error,
        StoreError::AlreadyExists {
            bucket: bucket.clone(),
            name: name.clone()
        }
    );
    assert_eq!(
        error.to_string(),
        format!("gs://{bucket}/{name} already exists")
    );
    let (meta, content) = store.read(&bucket, &name).await.expect("read");
    assert_eq!(
        (meta.generation, content),
        (created.generation, b"first".to_vec())
    );

    // Once deleted, the name can be created again.
    store.delete(&bucket, &name, None).await.expect("delete");
    store
        .put(&bucket, &name, b"third".to_vec(), PutMode::Create)
        .await
        .expect("create after delete");
}

#[tokio::test]
async fn update_requires_the_live_generation() {
    let Some((store, bucket)) = emulator_store("update").await else {
        return;
    };
    let name = format!("{}_bqlock", unique_prefix("update"));
    let first = store
        .put(&bucket, &name, b"v1".to_vec(), PutMode::Create)
        .await
        .expect("create");
    let second = store
        .put(
            &bucket,
            &name,
            b"v2".to_vec(),
            PutMode::Update(first.generation),
        )
        .await
        .expect("update with the live generation");
    assert_ne!(second.generation, first.generation);

    let stale = store
        .put(
            &bucket,
            &name,
            b"v3".to_vec(),
            PutMode::Update(first.generation),
        )
        .await
        .expect_err("update with a stale generation");
    assert_eq!(
        stale,
        StoreError::PreconditionFailed {
            bucket: bucket.clone(),
            name: name.clone()
        }
    );
    let (meta, content) = store.read(&bucket, &name).await.expect("read");
    assert_eq!(
        (meta.generation, content),
        (second.generation, b"v2".to_vec())
    );

    let missing = format!("{name}-missing");
    let error = store
        .put(
            &bucket,
            &missing,
            b"x".to_vec(),
            PutMode::Update(first.generation),
        )
        .await
        .expect_err("update of a missing object");
    assert!(
        matches!(error, StoreError::PreconditionFailed { .. }),
        "{error:?}"
    );

    // Generation 0 would mean "create only" to GCS; no live object has it.
    let before = store.stats();
    let error = store
        .put(&bucket, &missing, b"x".to_vec(), PutMode::Update(0))
        .await
        .expect_err("update to generation 0");
    assert!(
        matches!(error, StoreError::PreconditionFailed { .. }),
        "{error:?}"
    );
    assert_eq!(store.stats().since(&before).total(), 0, "no request needed");
    assert!(matches!(
        store.stat(&bucket, &missing).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn delete_removes_the_object_and_then_reports_not_found() {
    let Some((store, bucket)) = emulator_store("delete").await else {
        return;
    };
    let prefix = unique_prefix("delete");
    let name = format!("{prefix}f");
    store
        .put(&bucket, &name, b"x".to_vec(), PutMode::Overwrite)
        .await
        .expect("put");
    store.delete(&bucket, &name, None).await.expect("delete");
    assert!(matches!(
        store.stat(&bucket, &name).await,
        Err(StoreError::NotFound { .. })
    ));
    let error = store
        .delete(&bucket, &name, None)
        .await
        .expect_err("second delete");
    assert_eq!(
        error,
        StoreError::NotFound {
            bucket: bucket.clone(),
            name: name.clone()
        }
    );

    // With the live generation as precondition. (fake-gcs-server ignores a wrong one, so the
    // refusal is covered by the memory double's run of the conformance suite.)
    let meta = store
        .put(&bucket, &name, b"y".to_vec(), PutMode::Overwrite)
        .await
        .expect("put again");
    store
        .delete(&bucket, &name, Some(meta.generation))
        .await
        .expect("delete with the live generation");
    assert!(store
        .list(&bucket, &prefix, None, None)
        .await
        .expect("list")
        .objects
        .is_empty());
}

#[tokio::test]
async fn missing_objects_and_buckets_are_not_found() {
    let Some((store, bucket)) = emulator_store("not_found").await else {
        return;
    };
    let name = format!("{}nothing-here", unique_prefix("not_found"));
    let read = store.read(&bucket, &name).await.expect_err("read");
    assert_eq!(
        read,
        StoreError::NotFound {
            bucket: bucket.clone(),
            name: name.clone()
        }
    );
    assert_eq!(read.to_string(), format!("gs://{bucket}/{name} not found"));
    assert!(matches!(
        store.stat(&bucket, &name).await,
        Err(StoreError::NotFound { .. })
    ));
    let no_bucket = "bq-ingest-no-such-bucket";
    assert!(matches!(
        store.list(no_bucket, "", None, None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.read(no_bucket, "x").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn names_with_special_characters_round_trip() {
    let Some((store, bucket)) = emulator_store("special_names").await else {
        return;
    };
    let prefix = unique_prefix("special_names");
    let specials = [
        "dataset/table$20201030/batch 1/_SUCCESS",
        "dataset/table/a%20b.csv",
        "dataset/table/what?#x.csv",
        "dataset/table/plus+and&equals=.csv",
        "dataset/tablé/ünïcødé 名前.csv",
    ];
    for special in specials {
        let name = format!("{prefix}{special}");
        let content = special.as_bytes().to_vec();
        let written = store
            .put(&bucket, &name, content.clone(), PutMode::Create)
            .await
            .unwrap_or_else(|error| panic!("put {name:?}: {error}"));
        assert_eq!(written.name, name);
        let (meta, read) = store
            .read(&bucket, &name)
            .await
            .unwrap_or_else(|error| panic!("read {name:?}: {error}"));
        assert_eq!((meta.generation, read), (written.generation, content));
        assert_eq!(store.stat(&bucket, &name).await.as_ref(), Ok(&written));
        let listed = store
            .list(&bucket, &name, None, None)
            .await
            .unwrap_or_else(|error| panic!("list {name:?}: {error}"));
        assert_eq!(listed.objects, vec![written.clone()]);
        store
            .delete(&bucket, &name, Some(written.generation))
            .await
            .unwrap_or_else(|error| panic!("delete {name:?}: {error}"));
        assert!(matches!(
            store.read(&bucket, &name).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

#[tokio::test]
async fn empty_objects_are_fine() {
    let Some((store, bucket)) = emulator_store("empty_object").await else {
        return;
    };
    let name = format!("{}_SUCCESS", unique_prefix("empty_object"));
    let meta = store
        .put(&bucket, &name, Vec::new(), PutMode::Create)
        .await
        .expect("put");
    assert_eq!(meta.size, 0);
    let (read_meta, content) = store.read(&bucket, &name).await.expect("read");
    assert!(content.is_empty());
    assert_eq!((read_meta.size, read_meta.generation), (0, meta.generation));
}

#[tokio::test]
async fn each_method_makes_one_request() {
    let Some((store, bucket)) = emulator_store("request_counts").await else {
        return;
    };
    let prefix = unique_prefix("request_counts");
    let name = format!("{prefix}f");
    let mut before = store.stats();
    let mut step = |expected: RequestStats, what: &str| {
        let now = store.stats();
        assert_eq!(now.since(&before), expected, "{what}");
        before = now;
    };
    let one = RequestStats::default();
    let meta = store
        .put(&bucket, &name, b"x".to_vec(), PutMode::Create)
        .await
        .expect("put");
    step(RequestStats { put: 1, ..one }, "put");
    store.read(&bucket, &name).await.expect("read");
    step(RequestStats { read: 1, ..one }, "read");
    store.stat(&bucket, &name).await.expect("stat");
    step(RequestStats { stat: 1, ..one }, "stat");
    store
        .list(&bucket, &prefix, None, None)
        .await
        .expect("list");
    step(RequestStats { list: 1, ..one }, "list");
    let _ = store
        .put(&bucket, &name, b"y".to_vec(), PutMode::Create)
        .await;
    step(RequestStats { put: 1, ..one }, "refused create");
    store
        .delete(&bucket, &name, Some(meta.generation))
        .await
        .expect("delete");
    step(RequestStats { delete: 1, ..one }, "delete");
    let _ = store.read(&bucket, &name).await;
    step(RequestStats { read: 1, ..one }, "read of a missing object");
}
