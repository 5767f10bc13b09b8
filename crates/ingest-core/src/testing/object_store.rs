//! The [`ObjectStore`](crate::ports::ObjectStore) conformance suite.
//!
//! [`run`] is a sequence of named checks of the semantics documented on the trait. It only
//! touches objects under its scratch prefix: it empties that area first and deletes what it
//! wrote at the end, so it can run again against a persistent store (an emulator).

use std::fmt::Display;

use crate::ports::{ObjectMeta, ObjectStore, PutMode, StoreError};

/// What an implementation can be held to. Some emulators do not enforce every precondition;
/// what they skip must be covered by another implementation's run and said so.
#[derive(Debug, Clone, Copy)]
pub struct StoreCapabilities {
    /// Whether `delete(.., Some(generation))` is enforced (fake-gcs-server ignores it).
    pub delete_precondition: bool,
    /// Whether an object `a` and an object `a/b/c` can exist at once, as in GCS
    /// (fake-gcs-server's filesystem backend cannot: `a` would be a file and a folder).
    pub object_and_folder_same_name: bool,
}

impl Default for StoreCapabilities {
    fn default() -> Self {
        StoreCapabilities {
            delete_precondition: true,
            object_and_folder_same_name: true,
        }
    }
}

/// The most pages the suite follows in one listing before calling the listing endless.
const MAX_PAGES: usize = 1000;

/// Runs every check against `store`, using only objects under `scratch_prefix` in `bucket`
/// (which must exist). Panics with a message naming the check that failed.
///
/// A `scratch_prefix` that does not end with `/` gets one appended, so that a run never touches
/// the objects of a sibling prefix (`run-1` and `run-10`).
///
/// ```
/// use ingest_core::testing::object_store::{run, StoreCapabilities};
/// use ingest_memory::MemoryStore;
///
/// let store = MemoryStore::new();
/// store.create_bucket("bucket");
/// // fake-gcs-server ignores the delete precondition: its run says so.
/// let caps = StoreCapabilities { delete_precondition: false, ..StoreCapabilities::default() };
/// futures::executor::block_on(run(&store, "bucket", "conformance/run-1/", caps));
/// assert!(store.names("bucket").is_empty(), "the suite cleans up");
/// ```
pub async fn run(
    store: &dyn ObjectStore,
    bucket: &str,
    scratch_prefix: &str,
    caps: StoreCapabilities,
) {
    let root = if scratch_prefix.ends_with('/') || scratch_prefix.is_empty() {
        scratch_prefix.to_string()
    } else {
        format!("{scratch_prefix}/")
    };
    let suite = Suite {
        store,
        bucket,
        root: &root,
        caps,
    };
    suite.clean("clean_scratch_before").await;
    suite.empty_listing().await;
    suite.put_overwrite_then_read().await;
    suite.overwrite_changes_generation().await;
    suite.missing_object().await;
    suite.create_only().await;
    suite.update_with_generation().await;
    suite.update_absent().await;
    suite.delete_unconditional().await;
    suite.delete_missing().await;
    if caps.delete_precondition {
        suite.delete_wrong_generation().await;
    }
    suite.delete_right_generation().await;
    suite.zero_byte_object().await;
    suite.special_names().await;
    suite.list_prefix_recursive().await;
    suite.list_paging().await;
    suite.clean("clean_scratch_after").await;
}

/// Panics naming the check.
fn fail(check: &str, detail: impl Display) -> ! {
    panic!("ObjectStore conformance check `{check}` failed: {detail}")
}

fn ok<T>(check: &str, what: &str, result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => fail(check, format!("{what}: unexpected error {error:?}")),
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(check: &str, what: &str, actual: T, expected: T) {
    if actual != expected {
        fail(
            check,
            format!("{what}: expected {expected:?}, got {actual:?}"),
        );
    }
}

fn expect_not_found<T: std::fmt::Debug>(
    check: &str,
    what: &str,
    result: Result<T, StoreError>,
    bucket: &str,
    name: &str,
) {
    match result {
        Err(StoreError::NotFound {
            bucket: ref b,
            name: ref n,
        }) if b == bucket && n == name => {}
        other => fail(
            check,
            format!(
                "{what}: expected NotFound {{ bucket: {bucket:?}, name: {name:?} }}, got \
                 {other:?}"
            ),
        ),
    }
}

struct Suite<'a> {
    store: &'a dyn ObjectStore,
    bucket: &'a str,
    root: &'a str,
    caps: StoreCapabilities,
}

impl Suite<'_> {
    fn name(&self, relative: &str) -> String {
        format!("{}{relative}", self.root)
    }

    /// Every object under `prefix`, following every page.
    async fn list_all(
        &self,
        check: &str,
        prefix: &str,
        max_results: Option<usize>,
    ) -> Vec<ObjectMeta> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = ok(
                check,
                &format!("list {prefix:?} (max_results {max_results:?})"),
                self.store
                    .list(self.bucket, prefix, token.as_deref(), max_results)
                    .await,
            );
            if let Some(max) = max_results {
                if page.objects.len() > max {
                    fail(
                        check,
                        format!(
                            "list {prefix:?} returned {} objects in a page with max_results {max}",
                            page.objects.len()
                        ),
                    );
                }
            }
            objects.extend(page.objects);
            match page.next_page_token {
                Some(next) if token.as_deref() == Some(next.as_str()) => fail(
                    check,
                    format!("list {prefix:?} returned the same page token {next:?} twice"),
                ),
                Some(next) => token = Some(next),
                None => return objects,
            }
        }
        fail(
            check,
            format!("list {prefix:?} still had a next page after {MAX_PAGES} pages"),
        )
    }

    fn names(objects: &[ObjectMeta]) -> Vec<String> {
        objects.iter().map(|o| o.name.clone()).collect()
    }

    async fn put(&self, check: &str, name: &str, content: &[u8], mode: PutMode) -> ObjectMeta {
        let meta = ok(
            check,
            &format!("put {name:?} ({mode:?})"),
            self.store
                .put(self.bucket, name, content.to_vec(), mode)
                .await,
        );
        expect_eq(
            check,
            "name of the written object",
            meta.name.as_str(),
            name,
        );
        expect_eq(
            check,
            "size of the written object",
            meta.size,
            content.len() as u64,
        );
        if meta.generation <= 0 {
            fail(
                check,
                format!("put {name:?} returned generation {}", meta.generation),
            );
        }
        meta
    }

    async fn read_expect(&self, check: &str, name: &str, content: &[u8], generation: i64) {
        let (meta, read) = ok(
            check,
            &format!("read {name:?}"),
            self.store.read(self.bucket, name).await,
        );
        expect_eq(check, "content read", read.as_slice(), content);
        expect_eq(check, "name read", meta.name.as_str(), name);
        expect_eq(check, "size read", meta.size, content.len() as u64);
        expect_eq(check, "generation read", meta.generation, generation);
        let stat = ok(
            check,
            &format!("stat {name:?}"),
            self.store.stat(self.bucket, name).await,
        );
        expect_eq(check, "name of stat", stat.name.as_str(), name);
        expect_eq(check, "size of stat", stat.size, content.len() as u64);
        expect_eq(check, "generation of stat", stat.generation, generation);
    }

    async fn clean(&self, check: &str) {
        let leftovers = self.list_all(check, self.root, None).await;
        for object in leftovers {
            match self.store.delete(self.bucket, &object.name, None).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => fail(check, format!("delete {:?}: {error:?}", object.name)),
            }
        }
        let left = self.list_all(check, self.root, None).await;
        if !left.is_empty() {
            fail(
                check,
                format!(
                    "objects remain under {:?} after deleting: {:?}",
                    self.root,
                    Self::names(&left)
                ),
            );
        }
    }

    async fn empty_listing(&self) {
        let check = "empty_listing";
        let prefix = self.name("empty/");
        let page = ok(
            check,
            &format!("list {prefix:?}"),
            self.store.list(self.bucket, &prefix, None, None).await,
        );
        expect_eq(
            check,
            "objects under an unused prefix",
            page.objects,
            vec![],
        );
        expect_eq(
            check,
            "next page token of an empty listing",
            page.next_page_token,
            None,
        );
        let everything = self.list_all(check, "", None).await;
        let ours: Vec<&str> = everything
            .iter()
            .map(|o| o.name.as_str())
            .filter(|name| name.starts_with(self.root))
            .collect();
        expect_eq(
            check,
            "objects of the empty scratch area in a listing of the whole bucket",
            ours,
            vec![],
        );
    }

    async fn put_overwrite_then_read(&self) {
        let check = "put_overwrite_then_read";
        let name = self.name("put/object.txt");
        let content = b"hello, conformance\n";
        let meta = self.put(check, &name, content, PutMode::Overwrite).await;
        self.read_expect(check, &name, content, meta.generation)
            .await;
    }

    async fn overwrite_changes_generation(&self) {
        let check = "overwrite_changes_generation";
        let name = self.name("overwrite/object.txt");
        let first = self.put(check, &name, b"first", PutMode::Overwrite).await;
        let second = self.put(check, &name, b"second!", PutMode::Overwrite).await;
        if second.generation == first.generation {
            fail(
                check,
                format!("overwriting {name:?} kept generation {}", first.generation),
            );
        }
        self.read_expect(check, &name, b"second!", second.generation)
            .await;
    }

    async fn missing_object(&self) {
        let check = "missing_object";
        let name = self.name("missing/nothing-here");
        expect_not_found(
            check,
            "read of a missing object",
            self.store.read(self.bucket, &name).await,
            self.bucket,
            &name,
        );
        expect_not_found(
            check,
            "stat of a missing object",
            self.store.stat(self.bucket, &name).await,
            self.bucket,
            &name,
        );
    }

    async fn create_only(&self) {
        let check = "create_absent";
        let name = self.name("create/lock");
        let created = self.put(check, &name, b"owner-1", PutMode::Create).await;
        self.read_expect(check, &name, b"owner-1", created.generation)
            .await;

        let check = "create_existing";
        match self
            .store
            .put(self.bucket, &name, b"owner-2".to_vec(), PutMode::Create)
            .await
        {
            Err(StoreError::AlreadyExists { .. }) => {}
            other => fail(
                check,
                format!("second create of {name:?}: expected AlreadyExists, got {other:?}"),
            ),
        }
        self.read_expect(check, &name, b"owner-1", created.generation)
            .await;
    }

    async fn update_with_generation(&self) {
        let check = "update_correct_generation";
        let name = self.name("update/object");
        let first = self.put(check, &name, b"v1", PutMode::Overwrite).await;
        let second = self
            .put(check, &name, b"v2", PutMode::Update(first.generation))
            .await;
        if second.generation == first.generation {
            fail(
                check,
                format!("update of {name:?} kept generation {}", first.generation),
            );
        }
        self.read_expect(check, &name, b"v2", second.generation)
            .await;

        let check = "update_wrong_generation";
        match self
            .store
            .put(
                self.bucket,
                &name,
                b"v3".to_vec(),
                PutMode::Update(first.generation),
            )
            .await
        {
            Err(StoreError::PreconditionFailed { .. }) => {}
            other => fail(
                check,
                format!(
                    "update of {name:?} with stale generation {}: expected PreconditionFailed, \
                     got {other:?}",
                    first.generation
                ),
            ),
        }
        self.read_expect(check, &name, b"v2", second.generation)
            .await;
    }

    async fn update_absent(&self) {
        let check = "update_absent";
        let name = self.name("update/absent");
        match self
            .store
            .put(self.bucket, &name, b"x".to_vec(), PutMode::Update(1))
            .await
        {
            Err(StoreError::PreconditionFailed { .. }) => {}
            other => fail(
                check,
                format!("update of absent {name:?}: expected PreconditionFailed, got {other:?}"),
            ),
        }
        expect_not_found(
            check,
            "stat after a failed update",
            self.store.stat(self.bucket, &name).await,
            self.bucket,
            &name,
        );
    }

    async fn delete_unconditional(&self) {
        let check = "delete_unconditional";
        let name = self.name("delete/plain");
        self.put(check, &name, b"bye", PutMode::Overwrite).await;
        ok(
            check,
            &format!("delete {name:?}"),
            self.store.delete(self.bucket, &name, None).await,
        );
        expect_not_found(
            check,
            "stat after delete",
            self.store.stat(self.bucket, &name).await,
            self.bucket,
            &name,
        );
        expect_not_found(
            check,
            "read after delete",
            self.store.read(self.bucket, &name).await,
            self.bucket,
            &name,
        );
    }

    async fn delete_missing(&self) {
        let check = "delete_missing";
        let name = self.name("delete/never-written");
        match self.store.delete(self.bucket, &name, None).await {
            Err(StoreError::NotFound { .. }) => {}
            other => fail(
                check,
                format!("delete of missing {name:?}: expected NotFound, got {other:?}"),
            ),
        }
    }

    async fn delete_wrong_generation(&self) {
        let check = "delete_wrong_generation";
        let name = self.name("delete/guarded");
        let meta = self.put(check, &name, b"keep me", PutMode::Overwrite).await;
        let wrong = meta.generation.wrapping_add(1);
        match self.store.delete(self.bucket, &name, Some(wrong)).await {
            Err(StoreError::PreconditionFailed { .. }) => {}
            other => fail(
                check,
                format!(
                    "delete of {name:?} with generation {wrong} (live: {}): expected \
                     PreconditionFailed, got {other:?}",
                    meta.generation
                ),
            ),
        }
        self.read_expect(check, &name, b"keep me", meta.generation)
            .await;
    }

    async fn delete_right_generation(&self) {
        let check = "delete_right_generation";
        let name = self.name("delete/guarded");
        let meta = self.put(check, &name, b"go", PutMode::Overwrite).await;
        ok(
            check,
            &format!("delete {name:?} at generation {}", meta.generation),
            self.store
                .delete(self.bucket, &name, Some(meta.generation))
                .await,
        );
        expect_not_found(
            check,
            "stat after delete",
            self.store.stat(self.bucket, &name).await,
            self.bucket,
            &name,
        );
    }

    async fn zero_byte_object(&self) {
        let check = "zero_byte_object";
        let name = self.name("zero/_SUCCESS");
        let meta = self.put(check, &name, b"", PutMode::Create).await;
        self.read_expect(check, &name, b"", meta.generation).await;
        let listed = self.list_all(check, &self.name("zero/"), None).await;
        expect_eq(
            check,
            "listing of the zero-byte object",
            listed
                .iter()
                .map(|o| (o.name.as_str(), o.size, o.generation))
                .collect::<Vec<_>>(),
            vec![(name.as_str(), 0, meta.generation)],
        );
    }

    async fn special_names(&self) {
        let check = "special_names";
        let name = self.name("ds/t/$2020010203/part 1 é");
        let content = "ünïcödé, $ and spaces\n".as_bytes();
        let meta = self.put(check, &name, content, PutMode::Create).await;
        self.read_expect(check, &name, content, meta.generation)
            .await;
        let listed = self
            .list_all(check, &self.name("ds/t/$2020010203/"), None)
            .await;
        expect_eq(
            check,
            "names listed",
            Self::names(&listed),
            vec![name.clone()],
        );
        ok(
            check,
            &format!("delete {name:?}"),
            self.store
                .delete(self.bucket, &name, Some(meta.generation))
                .await,
        );
        expect_not_found(
            check,
            "stat after delete",
            self.store.stat(self.bucket, &name).await,
            self.bucket,
            &name,
        );
    }

    async fn list_prefix_recursive(&self) {
        let check = "list_prefix_recursive";
        let both = self.caps.object_and_folder_same_name;
        let inside: &[&str] = if both {
            &["list/b", "list/a/b/c", "list/ab", "list/a"]
        } else {
            &["list/b", "list/a/b/c", "list/ab", "list/ax"]
        };
        let outside = ["listx/other", "lis"];
        let mut written = Vec::new();
        for relative in inside.iter().chain(outside.iter()) {
            let name = self.name(relative);
            let meta = self
                .put(check, &name, relative.as_bytes(), PutMode::Overwrite)
                .await;
            written.push(meta);
        }
        let listed = self.list_all(check, &self.name("list/"), None).await;
        let mut expected: Vec<String> = inside.iter().map(|r| self.name(r)).collect();
        expected.sort();
        expect_eq(
            check,
            "names under the prefix, in lexicographic order",
            Self::names(&listed),
            expected,
        );
        for object in &listed {
            let Some(meta) = written.iter().find(|m| m.name == object.name) else {
                fail(
                    check,
                    format!("listed {:?}, which was not written", object.name),
                );
            };
            expect_eq(check, "size listed", object.size, meta.size);
            expect_eq(
                check,
                "generation listed",
                object.generation,
                meta.generation,
            );
        }

        let listed = self.list_all(check, &self.name("list/a"), None).await;
        expect_eq(
            check,
            "names under a prefix that is not a folder",
            Self::names(&listed),
            if both {
                vec![
                    self.name("list/a"),
                    self.name("list/a/b/c"),
                    self.name("list/ab"),
                ]
            } else {
                vec![
                    self.name("list/a/b/c"),
                    self.name("list/ab"),
                    self.name("list/ax"),
                ]
            },
        );
    }

    async fn list_paging(&self) {
        let check = "list_paging";
        let prefix = self.name("page/");
        let mut expected = Vec::new();
        for i in 0..5 {
            let name = format!("{prefix}object-{i}");
            self.put(check, &name, format!("{i}").as_bytes(), PutMode::Overwrite)
                .await;
            expected.push(name);
        }
        let first = ok(
            check,
            "first page with max_results 2",
            self.store.list(self.bucket, &prefix, None, Some(2)).await,
        );
        if first.next_page_token.is_none() {
            fail(
                check,
                format!(
                    "listing 5 objects with max_results 2 gave no next page token (page: {:?})",
                    Self::names(&first.objects)
                ),
            );
        }
        let listed = self.list_all(check, &prefix, Some(2)).await;
        expect_eq(
            check,
            "every object exactly once, in order, across pages",
            Self::names(&listed),
            expected,
        );
    }
}
