//! A read-only store whose listing is computed on the fly: for benchmarks of big batches and
//! long backfills, whose memory must be the ingest's own and not the double's.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use ingest_core::ports::{ListPage, ObjectMeta, ObjectStore, PutMode, StoreError};

/// The objects of one bucket, numbered in name order: `object(i)` is the `i`-th, and
/// `range(prefix)` the numbers of those whose name starts with `prefix` (the caller keeps the two
/// consistent). Lists pages of at most 1,000 objects and counts its list calls; reads find
/// nothing, except `stat` of a listed object; writes and deletes are refused.
///
/// ```
/// use ingest_core::ports::ObjectStore;
/// use ingest_memory::GeneratedStore;
/// # futures::executor::block_on(async {
/// let files = 2_500;
/// let store = GeneratedStore::new(
///     move |prefix| if "t/".starts_with(prefix) { 0..files } else { 0..0 },
///     |i| ingest_core::ports::ObjectMeta {
///         name: format!("t/f{i:05}"), size: 1, generation: 1, updated: None,
///     },
/// );
/// let page = store.list("b", "t/", None, None).await.unwrap();
/// assert_eq!(page.objects.len(), 1_000);
/// let last = store.list("b", "t/", Some("2000"), None).await.unwrap();
/// assert_eq!((last.objects.len(), last.next_page_token), (500, None));
/// assert_eq!(store.list_calls(), 2);
/// # });
/// ```
pub struct GeneratedStore {
    range: Box<RangeOf>,
    object: Box<ObjectAt>,
    lists: AtomicUsize,
}

/// The numbers of the objects under a prefix.
type RangeOf = dyn Fn(&str) -> Range<usize> + Send + Sync;
/// Object number `i`.
type ObjectAt = dyn Fn(usize) -> ObjectMeta + Send + Sync;

/// Objects per page.
const PAGE: usize = 1_000;

impl GeneratedStore {
    /// A store of the objects `object(i)`, those under a prefix being `range(prefix)`.
    pub fn new(
        range: impl Fn(&str) -> Range<usize> + Send + Sync + 'static,
        object: impl Fn(usize) -> ObjectMeta + Send + Sync + 'static,
    ) -> Self {
        GeneratedStore {
            range: Box::new(range),
            object: Box::new(object),
            lists: AtomicUsize::new(0),
        }
    }

    /// List calls so far.
    pub fn list_calls(&self) -> usize {
        self.lists.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for GeneratedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedStore")
            .field("lists", &self.list_calls())
            .finish()
    }
}

#[async_trait]
impl ObjectStore for GeneratedStore {
    async fn list(
        &self,
        _bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        let range = (self.range)(prefix);
        let start = page_token
            .and_then(|t| t.parse().ok())
            .unwrap_or(range.start)
            .max(range.start);
        let end = (start + max_results.unwrap_or(PAGE).min(PAGE)).min(range.end);
        Ok(ListPage {
            objects: (start..end).map(|i| (self.object)(i)).collect(),
            next_page_token: (end < range.end).then(|| end.to_string()),
        })
    }

    async fn read(&self, bucket: &str, name: &str) -> Result<(ObjectMeta, Vec<u8>), StoreError> {
        Err(StoreError::NotFound {
            bucket: bucket.into(),
            name: name.into(),
        })
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<ObjectMeta, StoreError> {
        let listed = (self.range)(name)
            .map(|i| (self.object)(i))
            .find(|o| o.name == name);
        listed.ok_or_else(|| StoreError::NotFound {
            bucket: bucket.into(),
            name: name.into(),
        })
    }

    async fn put(
        &self,
        bucket: &str,
        name: &str,
        _: Vec<u8>,
        _: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        Err(StoreError::Other {
            bucket: bucket.into(),
            name: name.into(),
            message: "a generated store is read-only".into(),
        })
    }

    async fn delete(&self, bucket: &str, name: &str, _: Option<i64>) -> Result<(), StoreError> {
        Err(StoreError::Other {
            bucket: bucket.into(),
            name: name.into(),
            message: "a generated store is read-only".into(),
        })
    }
}
