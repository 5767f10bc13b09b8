//! A batch's listing held compactly: what planning needs of a million objects in tens of MiB.
//!
//! A `Vec<ObjectMeta>` costs one allocation per name and about 100 bytes per object; a batch
//! of 1,000,000 files then needs more memory than the rest of the service. [`Listing`] keeps
//! every name relative to the listed prefix in one string, with the sizes, generations and
//! times beside it (about 30 bytes plus the relative name per object), and is filled page by
//! page, so that a page is dropped once it is read.

use chrono::{DateTime, Utc};

use crate::ports::ObjectMeta;

/// The objects under one prefix, in the order they were listed (lexicographic, as every store
/// lists), with their names relative to the prefix.
///
/// Objects whose name does not start with the prefix (a store that breaks its contract, or a
/// caller's own list) are kept apart, whole: see [`Listing::outside`]. Times are kept to the
/// microsecond, GCS's precision.
///
/// ```
/// use ingest_core::listing::Listing;
/// use ingest_core::ports::ObjectMeta;
///
/// let object = |name: &str, size| ObjectMeta { name: name.into(), size, generation: 7, updated: None };
/// let mut listing = Listing::new("ds/t/");
/// listing.push(object("ds/t/_SUCCESS", 0));
/// listing.push(object("ds/t/a.csv", 10));
/// assert_eq!(listing.len(), 2);
/// assert_eq!(listing.relative(1), "a.csv");
/// assert_eq!(listing.name(1), "ds/t/a.csv");
/// assert_eq!(listing.find("ds/t/a.csv"), Some(1));
/// assert_eq!(listing.meta(1).size, 10);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    prefix: String,
    /// Every relative name, one after the other.
    names: String,
    /// Where each relative name ends in `names`.
    ends: Vec<usize>,
    sizes: Vec<u64>,
    generations: Vec<i64>,
    /// Microseconds since the epoch, [`NO_TIME`] when the store gave none.
    updated: Vec<i64>,
    /// Whether the relative names are in strictly increasing order (then [`Listing::find`] is
    /// a binary search).
    sorted: bool,
    outside: Vec<ObjectMeta>,
}

const NO_TIME: i64 = i64::MIN;

impl Listing {
    /// An empty listing of `prefix`.
    pub fn new(prefix: &str) -> Self {
        Listing {
            prefix: prefix.to_string(),
            sorted: true,
            ..Listing::default()
        }
    }

    /// Makes room for `objects` more objects whose names total at most `name_bytes` bytes
    /// (a page of a listing, before its objects are pushed one by one).
    pub fn reserve(&mut self, objects: usize, name_bytes: usize) {
        self.names.reserve(name_bytes);
        self.ends.reserve(objects);
        self.sizes.reserve(objects);
        self.generations.reserve(objects);
        self.updated.reserve(objects);
    }

    /// A listing of `prefix` holding `objects`.
    pub fn from_objects<'a>(
        prefix: &str,
        objects: impl IntoIterator<Item = &'a ObjectMeta>,
    ) -> Self {
        let mut listing = Listing::new(prefix);
        for object in objects {
            listing.push(object.clone());
        }
        listing
    }

    /// Adds the next listed object.
    pub fn push(&mut self, object: ObjectMeta) {
        let Some(relative) = object.name.strip_prefix(self.prefix.as_str()) else {
            self.outside.push(object);
            return;
        };
        if let Some(last) = self.len().checked_sub(1) {
            self.sorted &= self.relative(last) < relative;
        }
        self.names.push_str(relative);
        self.ends.push(self.names.len());
        self.sizes.push(object.size);
        self.generations.push(object.generation);
        self.updated.push(
            object
                .updated
                .map_or(NO_TIME, |time| time.timestamp_micros()),
        );
    }

    /// The listed prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of objects under the prefix (not counting [`Listing::outside`]).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the names are in strictly increasing order, as a store lists them (no name
    /// twice).
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Whether no object is under the prefix.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The name of object `index` relative to the prefix.
    ///
    /// Panics when `index >= self.len()`.
    pub fn relative(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.names[start..self.ends[index]]
    }

    /// The full name of object `index`.
    pub fn name(&self, index: usize) -> String {
        let mut name = String::with_capacity(self.prefix.len() + self.relative(index).len());
        name.push_str(&self.prefix);
        name.push_str(self.relative(index));
        name
    }

    /// Size in bytes of object `index`.
    pub fn size(&self, index: usize) -> u64 {
        self.sizes[index]
    }

    /// Generation of object `index`.
    pub fn generation(&self, index: usize) -> i64 {
        self.generations[index]
    }

    /// When object `index` was written, when the store said.
    pub fn updated(&self, index: usize) -> Option<DateTime<Utc>> {
        Some(self.updated[index])
            .filter(|micros| *micros != NO_TIME)
            .and_then(DateTime::from_timestamp_micros)
    }

    /// Object `index` as the store listed it.
    pub fn meta(&self, index: usize) -> ObjectMeta {
        ObjectMeta {
            name: self.name(index),
            size: self.size(index),
            generation: self.generation(index),
            updated: self.updated(index),
        }
    }

    /// The index of the (first) object named `name` (a full name), if listed.
    pub fn find(&self, name: &str) -> Option<usize> {
        let relative = name.strip_prefix(self.prefix.as_str())?;
        if self.sorted {
            let index = self.partition_point(|r| r < relative);
            (index < self.len() && self.relative(index) == relative).then_some(index)
        } else {
            (0..self.len()).find(|&i| self.relative(i) == relative)
        }
    }

    /// The first index whose relative name does not satisfy `before` (the names must be sorted
    /// and `before` true for a leading run of them).
    fn partition_point(&self, before: impl Fn(&str) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if before(self.relative(middle)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// How many leading objects are settled while the listing is still being read: every
    /// folder (below the prefix) that holds one of them has been listed to its end, so what a
    /// plan decides about them — whether a sub-folder holds another batch's marker, whether a
    /// folder's wildcard covers only one part's files — no later page can change. In a sorted
    /// listing those are all the objects before the folder of the last one (all of them when
    /// the last one lies directly under the prefix); an unsorted listing settles nothing until
    /// it ends.
    ///
    /// ```
    /// use ingest_core::listing::Listing;
    /// use ingest_core::ports::ObjectMeta;
    ///
    /// let object = |name: &str| ObjectMeta { name: name.into(), size: 1, generation: 1, updated: None };
    /// let listing = Listing::from_objects("p/", &[object("p/a/1"), object("p/b"), object("p/c/1"), object("p/c/d/2")]);
    /// assert_eq!(listing.settled_len(), 2); // `c/` may hold more
    /// let flat = Listing::from_objects("p/", &[object("p/a/1"), object("p/b")]);
    /// assert_eq!(flat.settled_len(), 2);
    /// ```
    pub fn settled_len(&self) -> usize {
        if !self.sorted {
            return 0;
        }
        let Some(last) = self.len().checked_sub(1) else {
            return 0;
        };
        match self.relative(last).split_once('/') {
            Some((top, _)) => {
                let folder = &self.relative(last)[..=top.len()];
                self.partition_point(|relative| relative < folder)
            }
            None => self.len(),
        }
    }

    /// A listing of the same prefix holding objects `range` of this one (in order; nothing of
    /// [`Listing::outside`]).
    pub(crate) fn window(&self, range: std::ops::Range<usize>) -> Listing {
        let mut window = Listing::new(&self.prefix);
        let start = range.start.checked_sub(1).map_or(0, |i| self.ends[i]);
        let end = range
            .end
            .checked_sub(1)
            .map_or(0, |i| self.ends[i])
            .max(start);
        window.names.push_str(&self.names[start..end]);
        window.ends = self.ends[range.clone()].iter().map(|e| e - start).collect();
        window.sizes = self.sizes[range.clone()].to_vec();
        window.generations = self.generations[range.clone()].to_vec();
        window.updated = self.updated[range.clone()].to_vec();
        window.sorted = self.sorted
            || window
                .indices()
                .zip(window.indices().skip(1))
                .all(|(a, b)| window.relative(a) < window.relative(b));
        window
    }

    /// Every index, in listing order.
    pub fn indices(&self) -> std::ops::Range<usize> {
        0..self.len()
    }

    /// The listed objects whose names do not start with the prefix, in listing order.
    pub fn outside(&self) -> &[ObjectMeta] {
        &self.outside
    }

    /// Every object (under the prefix, then outside it) as the store listed it.
    pub fn to_objects(&self) -> Vec<ObjectMeta> {
        self.indices()
            .map(|i| self.meta(i))
            .chain(self.outside.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, generation: i64) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            size: generation as u64,
            generation,
            updated: DateTime::from_timestamp_micros(1_600_000_000_123_456),
        }
    }

    #[test]
    fn keeps_each_field_and_gives_objects_back_whole() {
        let objects = [
            object("p/_SUCCESS", 1),
            object("p/a", 2),
            object("p/b/c", 3),
            object("elsewhere", 4),
        ];
        let listing = Listing::from_objects("p/", &objects);
        assert_eq!(listing.len(), 3);
        assert_eq!(listing.outside(), &objects[3..]);
        assert_eq!(listing.to_objects(), objects);
        assert_eq!(listing.relative(2), "b/c");
        assert_eq!(listing.updated(0), objects[0].updated);
    }

    #[test]
    fn finds_in_sorted_and_unsorted_listings() {
        let sorted = Listing::from_objects(
            "p/",
            &[object("p/a", 1), object("p/b", 2), object("p/c", 3)],
        );
        assert_eq!(sorted.find("p/b"), Some(1));
        assert_eq!(sorted.find("p/bb"), None);
        assert_eq!(sorted.find("q/b"), None);
        assert_eq!(sorted.find("p/"), None);
        let unsorted = Listing::from_objects(
            "p/",
            &[object("p/c", 1), object("p/a", 2), object("p/a", 3)],
        );
        assert_eq!(unsorted.find("p/a"), Some(1));
        assert_eq!(unsorted.find("p/c"), Some(0));
        assert_eq!(unsorted.find("p/b"), None);
    }

    #[test]
    fn a_window_holds_the_same_objects() {
        let objects: Vec<_> = (1..=5).map(|i| object(&format!("p/{i}"), i)).collect();
        let listing = Listing::from_objects("p/", &objects);
        let window = listing.window(1..4);
        assert_eq!(window.to_objects(), objects[1..4]);
        assert!(window.is_sorted());
        assert!(listing.window(2..2).is_empty());
        assert_eq!(listing.window(0..1).to_objects(), objects[..1]);
    }

    #[test]
    fn settles_what_lies_before_the_last_objects_folder() {
        let names = ["p/a", "p/b/1", "p/b/2", "p/c/x/1", "p/c/y"];
        let objects: Vec<_> = names.iter().map(|n| object(n, 1)).collect();
        let settled: Vec<_> = (0..=names.len())
            .map(|n| Listing::from_objects("p/", &objects[..n]).settled_len())
            .collect();
        assert_eq!(settled, [0, 1, 1, 1, 3, 3]);
        let unsorted = Listing::from_objects("p/", &[object("p/b", 1), object("p/a", 1)]);
        assert_eq!(unsorted.settled_len(), 0);
    }

    #[test]
    fn an_empty_prefix_keeps_whole_names() {
        let listing = Listing::from_objects("", &[object("a/b", 1)]);
        assert_eq!(listing.relative(0), "a/b");
        assert_eq!(listing.name(0), "a/b");
        assert_eq!(listing.updated(0), object("x", 1).updated);
        let none = Listing::from_objects(
            "",
            &[ObjectMeta {
                updated: None,
                ..object("a", 1)
            }],
        );
        assert_eq!(none.updated(0), None);
    }
}
