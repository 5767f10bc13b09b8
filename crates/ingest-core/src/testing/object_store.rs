//! The [`ObjectStore`] conformance suite.
//!
//! Each check of the semantics documented on the trait is a public `async fn` taking a
//! [`Scratch`] (the store, a bucket, a scratch prefix, the store's capabilities), so a failing
//! check can be run alone; [`run`] runs them all. A check only touches objects under the
//! scratch prefix, and empties its own part of it first, so it can run again against a
//! persistent store (an emulator); [`run`] also empties the whole prefix before and after.

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
    /// Whether [`ObjectStore::copy`] enforces its preconditions (the source's generation, a
    /// destination that must not exist); fake-gcs-server ignores them on `rewriteTo`.
    pub copy_preconditions: bool,
}

impl Default for StoreCapabilities {
    fn default() -> Self {
        StoreCapabilities {
            delete_precondition: true,
            object_and_folder_same_name: true,
            copy_preconditions: true,
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
    let scratch = Scratch::new(store, bucket, scratch_prefix, caps);
    scratch.clean("clean_scratch_before", "").await;
    empty_listing(&scratch).await;
    put_overwrite_then_read(&scratch).await;
    overwrite_changes_generation(&scratch).await;
    missing_object(&scratch).await;
    create_only(&scratch).await;
    update_with_generation(&scratch).await;
    update_absent(&scratch).await;
    delete_unconditional(&scratch).await;
    delete_missing(&scratch).await;
    if caps.delete_precondition {
        delete_wrong_generation(&scratch).await;
    }
    delete_right_generation(&scratch).await;
    zero_byte_object(&scratch).await;
    special_names(&scratch).await;
    list_prefix_recursive(&scratch).await;
    list_paging(&scratch).await;
    copy_generation(&scratch).await;
    copy_missing(&scratch).await;
    if caps.copy_preconditions {
        copy_guards(&scratch).await;
    }
    scratch.clean("clean_scratch_after", "").await;
}

fn names(objects: &[ObjectMeta]) -> Vec<String> {
    objects.iter().map(|o| o.name.clone()).collect()
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

/// Where the checks run: a store, a bucket that exists, the scratch prefix under which every
/// check writes, and what the store can be held to.
///
/// ```
/// use ingest_core::testing::object_store::{create_only, Scratch, StoreCapabilities};
/// use ingest_memory::MemoryStore;
///
/// let store = MemoryStore::new();
/// store.create_bucket("bucket");
/// let scratch = Scratch::new(&store, "bucket", "conformance/run-1", StoreCapabilities::default());
/// assert_eq!(scratch.root(), "conformance/run-1/");
/// futures::executor::block_on(create_only(&scratch)); // one check, alone
/// ```
#[derive(Debug, Clone)]
pub struct Scratch<'a> {
    store: &'a dyn ObjectStore,
    bucket: &'a str,
    root: String,
    caps: StoreCapabilities,
}

impl<'a> Scratch<'a> {
    /// The checks' scratch area `scratch_prefix` in `bucket`; a prefix that does not end with
    /// `/` gets one appended, so that a run never touches the objects of a sibling prefix
    /// (`run-1` and `run-10`).
    pub fn new(
        store: &'a dyn ObjectStore,
        bucket: &'a str,
        scratch_prefix: &str,
        caps: StoreCapabilities,
    ) -> Self {
        let root = if scratch_prefix.ends_with('/') || scratch_prefix.is_empty() {
            scratch_prefix.to_string()
        } else {
            format!("{scratch_prefix}/")
        };
        Scratch {
            store,
            bucket,
            root,
            caps,
        }
    }

    /// The scratch prefix, ending with `/`.
    pub fn root(&self) -> &str {
        &self.root
    }
}

impl Scratch<'_> {
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

    /// Deletes `name` at `generation` and checks that it is gone.
    async fn delete_at(&self, check: &str, name: &str, generation: i64) {
        ok(
            check,
            &format!("delete {name:?} at generation {generation}"),
            self.store.delete(self.bucket, name, Some(generation)).await,
        );
        expect_not_found(
            check,
            "stat after delete",
            self.store.stat(self.bucket, name).await,
            self.bucket,
            name,
        );
    }

    /// Deletes every object under `root + area` (the whole scratch area for `""`).
    async fn clean(&self, check: &str, area: &str) {
        let prefix = self.name(area);
        let leftovers = self.list_all(check, &prefix, None).await;
        for object in leftovers {
            match self.store.delete(self.bucket, &object.name, None).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => fail(check, format!("delete {:?}: {error:?}", object.name)),
            }
        }
        let left = self.list_all(check, &prefix, None).await;
        if !left.is_empty() {
            fail(
                check,
                format!(
                    "objects remain under {prefix:?} after deleting: {:?}",
                    names(&left)
                ),
            );
        }
    }
}

/// An unused prefix lists nothing and no page token; nothing of the scratch area shows in a listing
/// of the whole bucket (the check empties the whole scratch area first).
pub async fn empty_listing(scratch: &Scratch<'_>) {
    scratch.clean("empty_listing", "").await;
    let check = "empty_listing";
    let prefix = scratch.name("empty/");
    let page = ok(
        check,
        &format!("list {prefix:?}"),
        scratch
            .store
            .list(scratch.bucket, &prefix, None, None)
            .await,
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
    let everything = scratch.list_all(check, "", None).await;
    let ours: Vec<&str> = everything
        .iter()
        .map(|o| o.name.as_str())
        .filter(|name| name.starts_with(scratch.root.as_str()))
        .collect();
    expect_eq(
        check,
        "objects of the empty scratch area in a listing of the whole bucket",
        ours,
        vec![],
    );
}

/// An overwrite writes the object; read and stat give its content, size and generation.
pub async fn put_overwrite_then_read(scratch: &Scratch<'_>) {
    scratch.clean("put_overwrite_then_read", "put/").await;
    let check = "put_overwrite_then_read";
    let name = scratch.name("put/object.txt");
    let content = b"hello, conformance\n";
    let meta = scratch.put(check, &name, content, PutMode::Overwrite).await;
    scratch
        .read_expect(check, &name, content, meta.generation)
        .await;
}

/// Overwriting an object gives it a new generation and the new content.
pub async fn overwrite_changes_generation(scratch: &Scratch<'_>) {
    scratch
        .clean("overwrite_changes_generation", "overwrite/")
        .await;
    let check = "overwrite_changes_generation";
    let name = scratch.name("overwrite/object.txt");
    let first = scratch
        .put(check, &name, b"first", PutMode::Overwrite)
        .await;
    let second = scratch
        .put(check, &name, b"second!", PutMode::Overwrite)
        .await;
    if second.generation == first.generation {
        fail(
            check,
            format!("overwriting {name:?} kept generation {}", first.generation),
        );
    }
    scratch
        .read_expect(check, &name, b"second!", second.generation)
        .await;
}

/// read and stat of a missing object are `NotFound` naming the bucket and the object.
pub async fn missing_object(scratch: &Scratch<'_>) {
    scratch.clean("missing_object", "missing/").await;
    let check = "missing_object";
    let name = scratch.name("missing/nothing-here");
    expect_not_found(
        check,
        "read of a missing object",
        scratch.store.read(scratch.bucket, &name).await,
        scratch.bucket,
        &name,
    );
    expect_not_found(
        check,
        "stat of a missing object",
        scratch.store.stat(scratch.bucket, &name).await,
        scratch.bucket,
        &name,
    );
}

/// A create-only put writes an absent object; a second one is `AlreadyExists` and changes nothing.
pub async fn create_only(scratch: &Scratch<'_>) {
    scratch.clean("create_only", "create/").await;
    let check = "create_absent";
    let name = scratch.name("create/lock");
    let created = scratch.put(check, &name, b"owner-1", PutMode::Create).await;
    scratch
        .read_expect(check, &name, b"owner-1", created.generation)
        .await;

    let check = "create_existing";
    match scratch
        .store
        .put(scratch.bucket, &name, b"owner-2".to_vec(), PutMode::Create)
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => fail(
            check,
            format!("second create of {name:?}: expected AlreadyExists, got {other:?}"),
        ),
    }
    scratch
        .read_expect(check, &name, b"owner-1", created.generation)
        .await;
}

/// A put guarded by the live generation writes; one guarded by a stale generation is
/// `PreconditionFailed` and changes nothing.
pub async fn update_with_generation(scratch: &Scratch<'_>) {
    scratch.clean("update_with_generation", "update/").await;
    let check = "update_correct_generation";
    let name = scratch.name("update/object");
    let first = scratch.put(check, &name, b"v1", PutMode::Overwrite).await;
    let second = scratch
        .put(check, &name, b"v2", PutMode::Update(first.generation))
        .await;
    if second.generation == first.generation {
        fail(
            check,
            format!("update of {name:?} kept generation {}", first.generation),
        );
    }
    scratch
        .read_expect(check, &name, b"v2", second.generation)
        .await;

    let check = "update_wrong_generation";
    match scratch
        .store
        .put(
            scratch.bucket,
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
    scratch
        .read_expect(check, &name, b"v2", second.generation)
        .await;
}

/// A generation-guarded put of an absent object is `PreconditionFailed` and creates nothing.
pub async fn update_absent(scratch: &Scratch<'_>) {
    scratch.clean("update_absent", "update/").await;
    let check = "update_absent";
    let name = scratch.name("update/absent");
    match scratch
        .store
        .put(scratch.bucket, &name, b"x".to_vec(), PutMode::Update(1))
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
        scratch.store.stat(scratch.bucket, &name).await,
        scratch.bucket,
        &name,
    );
}

/// An unconditional delete removes the object: stat and read are then `NotFound`.
pub async fn delete_unconditional(scratch: &Scratch<'_>) {
    scratch.clean("delete_unconditional", "delete/").await;
    let check = "delete_unconditional";
    let name = scratch.name("delete/plain");
    scratch.put(check, &name, b"bye", PutMode::Overwrite).await;
    ok(
        check,
        &format!("delete {name:?}"),
        scratch.store.delete(scratch.bucket, &name, None).await,
    );
    expect_not_found(
        check,
        "stat after delete",
        scratch.store.stat(scratch.bucket, &name).await,
        scratch.bucket,
        &name,
    );
    expect_not_found(
        check,
        "read after delete",
        scratch.store.read(scratch.bucket, &name).await,
        scratch.bucket,
        &name,
    );
}

/// Deleting a missing object is `NotFound`.
pub async fn delete_missing(scratch: &Scratch<'_>) {
    scratch.clean("delete_missing", "delete/").await;
    let check = "delete_missing";
    let name = scratch.name("delete/never-written");
    match scratch.store.delete(scratch.bucket, &name, None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => fail(
            check,
            format!("delete of missing {name:?}: expected NotFound, got {other:?}"),
        ),
    }
}

/// A delete guarded by another generation is `PreconditionFailed` and keeps the object (only for
/// stores with [`StoreCapabilities::delete_precondition`]).
pub async fn delete_wrong_generation(scratch: &Scratch<'_>) {
    scratch.clean("delete_wrong_generation", "delete/").await;
    let check = "delete_wrong_generation";
    let name = scratch.name("delete/guarded");
    let meta = scratch
        .put(check, &name, b"keep me", PutMode::Overwrite)
        .await;
    let wrong = meta.generation.wrapping_add(1);
    match scratch
        .store
        .delete(scratch.bucket, &name, Some(wrong))
        .await
    {
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
    scratch
        .read_expect(check, &name, b"keep me", meta.generation)
        .await;
}

/// A delete guarded by the live generation removes the object.
pub async fn delete_right_generation(scratch: &Scratch<'_>) {
    scratch.clean("delete_right_generation", "delete/").await;
    let check = "delete_right_generation";
    let name = scratch.name("delete/guarded");
    let meta = scratch.put(check, &name, b"go", PutMode::Overwrite).await;
    scratch.delete_at(check, &name, meta.generation).await;
}

/// A copy of the live generation has its content under the new name (in a new folder), and
/// the source stays.
pub async fn copy_generation(scratch: &Scratch<'_>) {
    scratch.clean("copy_generation", "copy/").await;
    let check = "copy_generation";
    let (from, to) = (
        scratch.name("copy/from.csv"),
        scratch.name("copy/archive/from.csv"),
    );
    let meta = scratch
        .put(check, &from, b"1,a\n", PutMode::Overwrite)
        .await;
    let copied = ok(
        check,
        "copy",
        scratch
            .store
            .copy(scratch.bucket, &from, meta.generation, scratch.bucket, &to)
            .await,
    );
    expect_eq(check, "copy's name", copied.name.as_str(), to.as_str());
    expect_eq(check, "copy's size", copied.size, 4);
    scratch
        .read_expect(check, &to, b"1,a\n", copied.generation)
        .await;
    scratch
        .read_expect(check, &from, b"1,a\n", meta.generation)
        .await;
}

/// A copy of an object that does not exist is `NotFound` naming the source.
pub async fn copy_missing(scratch: &Scratch<'_>) {
    scratch.clean("copy_missing", "copy/").await;
    let check = "copy_missing";
    let (from, to) = (scratch.name("copy/missing"), scratch.name("copy/to"));
    let result = scratch
        .store
        .copy(scratch.bucket, &from, 1, scratch.bucket, &to)
        .await;
    expect_not_found(
        check,
        "copy of a missing object",
        result,
        scratch.bucket,
        &from,
    );
}

/// A copy of another generation than the live one is `PreconditionFailed`; a copy onto an
/// existing object is `AlreadyExists` and leaves it as it was.
pub async fn copy_guards(scratch: &Scratch<'_>) {
    scratch.clean("copy_guards", "copy/").await;
    let check = "copy_guards";
    let (from, to) = (scratch.name("copy/from"), scratch.name("copy/to"));
    let meta = scratch.put(check, &from, b"new", PutMode::Overwrite).await;
    let stale = meta.generation.wrapping_add(1);
    match scratch
        .store
        .copy(scratch.bucket, &from, stale, scratch.bucket, &to)
        .await
    {
        Err(StoreError::PreconditionFailed { .. }) => {}
        other => fail(
            check,
            format!("copy of generation {stale}: expected PreconditionFailed, got {other:?}"),
        ),
    }
    let existing = scratch.put(check, &to, b"there", PutMode::Overwrite).await;
    match scratch
        .store
        .copy(scratch.bucket, &from, meta.generation, scratch.bucket, &to)
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => fail(
            check,
            format!("copy onto {to:?}: expected AlreadyExists, got {other:?}"),
        ),
    }
    scratch
        .read_expect(check, &to, b"there", existing.generation)
        .await;
}

/// A zero-byte object (a `_SUCCESS` marker) is written, read and listed with size 0.
pub async fn zero_byte_object(scratch: &Scratch<'_>) {
    scratch.clean("zero_byte_object", "zero/").await;
    let check = "zero_byte_object";
    let name = scratch.name("zero/_SUCCESS");
    let meta = scratch.put(check, &name, b"", PutMode::Create).await;
    scratch
        .read_expect(check, &name, b"", meta.generation)
        .await;
    let listed = scratch.list_all(check, &scratch.name("zero/"), None).await;
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

/// Names with `$`, spaces and non-ASCII letters are written, read, listed and deleted as they are.
pub async fn special_names(scratch: &Scratch<'_>) {
    scratch.clean("special_names", "ds/").await;
    let check = "special_names";
    let name = scratch.name("ds/t/$2020010203/part 1 é");
    let content = "ünïcödé, $ and spaces\n".as_bytes();
    let meta = scratch.put(check, &name, content, PutMode::Create).await;
    scratch
        .read_expect(check, &name, content, meta.generation)
        .await;
    let listed = scratch
        .list_all(check, &scratch.name("ds/t/$2020010203/"), None)
        .await;
    expect_eq(check, "names listed", names(&listed), vec![name.clone()]);
    scratch.delete_at(check, &name, meta.generation).await;
}

/// A listing is recursive, in lexicographic order, with sizes and generations, and a prefix that is
/// not a folder matches names that merely start with it.
pub async fn list_prefix_recursive(scratch: &Scratch<'_>) {
    scratch.clean("list_prefix_recursive", "lis").await;
    let check = "list_prefix_recursive";
    let both = scratch.caps.object_and_folder_same_name;
    let inside: &[&str] = if both {
        &["list/b", "list/a/b/c", "list/ab", "list/a"]
    } else {
        &["list/b", "list/a/b/c", "list/ab", "list/ax"]
    };
    let outside = ["listx/other", "lis"];
    let mut written = Vec::new();
    for relative in inside.iter().chain(outside.iter()) {
        let name = scratch.name(relative);
        let meta = scratch
            .put(check, &name, relative.as_bytes(), PutMode::Overwrite)
            .await;
        written.push(meta);
    }
    let listed = scratch.list_all(check, &scratch.name("list/"), None).await;
    let mut expected: Vec<String> = inside.iter().map(|r| scratch.name(r)).collect();
    expected.sort();
    expect_eq(
        check,
        "names under the prefix, in lexicographic order",
        names(&listed),
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

    let listed = scratch.list_all(check, &scratch.name("list/a"), None).await;
    expect_eq(
        check,
        "names under a prefix that is not a folder",
        names(&listed),
        if both {
            vec![
                scratch.name("list/a"),
                scratch.name("list/a/b/c"),
                scratch.name("list/ab"),
            ]
        } else {
            vec![
                scratch.name("list/a/b/c"),
                scratch.name("list/ab"),
                scratch.name("list/ax"),
            ]
        },
    );
}

/// Paging with `max_results` returns every object once, in order, across pages, with a next-page
/// token while more remain.
pub async fn list_paging(scratch: &Scratch<'_>) {
    scratch.clean("list_paging", "page/").await;
    let check = "list_paging";
    let prefix = scratch.name("page/");
    let mut expected = Vec::new();
    for i in 0..5 {
        let name = format!("{prefix}object-{i}");
        scratch
            .put(check, &name, format!("{i}").as_bytes(), PutMode::Overwrite)
            .await;
        expected.push(name);
    }
    let first = ok(
        check,
        "first page with max_results 2",
        scratch
            .store
            .list(scratch.bucket, &prefix, None, Some(2))
            .await,
    );
    if first.next_page_token.is_none() {
        fail(
            check,
            format!(
                "listing 5 objects with max_results 2 gave no next page token (page: {:?})",
                names(&first.objects)
            ),
        );
    }
    let listed = scratch.list_all(check, &prefix, Some(2)).await;
    expect_eq(
        check,
        "every object exactly once, in order, across pages",
        names(&listed),
        expected,
    );
}
