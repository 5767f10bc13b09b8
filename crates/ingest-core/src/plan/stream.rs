//! Planning a load while its listing is still being read, so that a big batch's jobs can go out
//! as their parts fill (issue 12 §2).
//!
//! [`PartStream`] gives the same parts, ids, URIs and load configuration as
//! [`super::plan_listed_load`] over the whole listing. It only decides about *settled* objects
//! ([`Listing::settled_len`]): every folder holding one has been listed to its end, so no later
//! page can show a sub-folder's own marker ("other batch") or an object that spoils a
//! folder's wildcard. A part is closed when the next settled data file does not fit into it;
//! its wildcards are then worked out on the objects from the one before its first file to that
//! next file: any folder that reaches beyond them holds a file of another part or an object
//! that is not one (the names of a folder are one run of a sorted listing), so it gets no
//! wildcard here either, as over the whole listing.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::{
    compact_uris, fits, job_labels, load_config, marker_folder, object_skip_reason, part_config,
    too_large, JobIds, Part, PlanError, PlanInput, PART_LABEL,
};
use crate::config::BatchConfig;
use crate::destination::Batch;
use crate::listing::Listing;
use crate::ports::{JobKind, JobRequest};

/// The load jobs of one batch, planned part by part as its (sorted) listing grows; see the
/// module docs. Jobs carry the [`job_labels`] and `bq-ingest-part`, not the number of parts,
/// which is only known at the end.
pub(crate) struct PartStream<'a> {
    ids: &'a JobIds<'a>,
    batch: &'a Batch,
    success_filename: &'a str,
    labels: BTreeMap<String, String>,
    load: Map<String, Value>,
    /// Sub-folders (relative, ending with `/`) that hold their own marker.
    other_batches: HashSet<String>,
    /// Objects `0..classified` of the listing are sorted into data files and others.
    classified: usize,
    /// The data files of the part being filled, and their bytes.
    open: Vec<usize>,
    open_bytes: u64,
    /// Parts closed so far.
    closed: usize,
    files: usize,
    bytes: u64,
}

/// What a [`PartStream`] planned in all.
#[derive(Debug)]
pub(crate) struct StreamTotals {
    /// Data files.
    pub(crate) files: usize,
    /// Their bytes.
    pub(crate) bytes: u64,
}

impl<'a> PartStream<'a> {
    /// A stream of the load jobs of `batch` under `config`, ids from `ids`.
    pub(crate) fn new(
        ids: &'a JobIds<'a>,
        batch: &'a Batch,
        config: &BatchConfig,
        success_filename: &'a str,
    ) -> Self {
        PartStream {
            ids,
            batch,
            success_filename,
            labels: job_labels(ids.settings, batch, config),
            load: load_config(config),
            other_batches: HashSet::new(),
            classified: 0,
            open: Vec::new(),
            open_bytes: 0,
            closed: 0,
            files: 0,
            bytes: 0,
        }
    }

    /// Takes in the objects of `listing` settled since the last call; the jobs of the parts
    /// they closed, in part order. An unsorted listing settles nothing.
    pub(crate) fn advance(&mut self, listing: &Listing) -> Result<Vec<JobRequest>, PlanError> {
        self.take_in(listing, listing.settled_len())
    }

    /// The listing is complete: takes in the rest and closes the last part. The jobs of the
    /// parts still to come, and the totals; no data file at all is [`PlanError::NoDataFiles`].
    pub(crate) fn finish(
        mut self,
        listing: &Listing,
    ) -> Result<(Vec<JobRequest>, StreamTotals), PlanError> {
        let mut jobs = self.take_in(listing, listing.len())?;
        if !self.open.is_empty() {
            jobs.push(self.close(listing, None));
        }
        if self.files == 0 {
            return Err(PlanError::NoDataFiles {
                bucket: self.batch.bucket.clone(),
                marker: self.batch.marker.clone(),
            });
        }
        let totals = StreamTotals {
            files: self.files,
            bytes: self.bytes,
        };
        Ok((jobs, totals))
    }

    fn take_in(&mut self, listing: &Listing, settled: usize) -> Result<Vec<JobRequest>, PlanError> {
        let new = self.classified..settled.max(self.classified);
        // A sub-folder's marker settles with the folder, so with every object it concerns.
        for i in new.clone() {
            if let Some(folder) = marker_folder(listing.relative(i), self.success_filename) {
                self.other_batches.insert(folder.to_string());
            }
        }
        let mut jobs = Vec::new();
        for i in new {
            let other = &self.other_batches;
            let is_other_batch = |dir: &str| other.contains(dir);
            if object_skip_reason(listing, i, self.success_filename, is_other_batch).is_some() {
                continue;
            }
            let size = listing.size(i);
            let max_bytes = self.ids.settings.max_batch_bytes;
            if size > max_bytes {
                return Err(too_large(self.batch, listing, i, max_bytes));
            }
            if !fits(self.open.len(), self.open_bytes, size, max_bytes) && !self.open.is_empty() {
                jobs.push(self.close(listing, Some(i)));
            }
            self.open.push(i);
            self.open_bytes += size;
            self.files += 1;
            self.bytes = self.bytes.saturating_add(size);
        }
        self.classified = self.classified.max(settled);
        Ok(jobs)
    }

    /// The job of the open part; `next` is the data file that does not fit into it (none for
    /// the last part).
    fn close(&mut self, listing: &Listing, next: Option<usize>) -> JobRequest {
        let files = std::mem::take(&mut self.open);
        self.open_bytes = 0;
        let part = self.closed;
        self.closed += 1;
        // From the object before the part's first file to `next` (or the listing's end).
        let start = files[0].saturating_sub(1);
        let end = next.map_or(listing.len(), |n| n + 1);
        let window = listing.window(start..end);
        let one = [Part {
            destination: self.batch.destination.clone(),
            index_in_destination: part,
            files: files.iter().map(|f| f - start).collect(),
        }];
        let input = PlanInput {
            listing: &window,
            listed: window.len(),
            data: &one[0].files,
        };
        let source_uris = compact_uris(self.batch, &input, &one)
            .pop()
            .unwrap_or_default();
        let mut labels = self.labels.clone();
        labels.insert(PART_LABEL.to_string(), part.to_string());
        JobRequest {
            project: self.ids.project.to_string(),
            job_id: self.ids.stem.part(part),
            location: self.ids.settings.bq_location.clone(),
            labels,
            kind: JobKind::Load {
                destination: self.batch.destination.clone(),
                source_uris,
                config: part_config(self.load.clone(), part),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::plan::{plan_listed_load, select, JobIdStem, PARTS_LABEL};
    use crate::ports::{ObjectMeta, TableRef};
    use crate::settings::Settings;

    fn batch() -> Batch {
        Batch {
            bucket: "b".into(),
            marker: "ds/t/_SUCCESS".into(),
            destination: TableRef {
                project: "p".into(),
                dataset: "ds".into(),
                table: "t".into(),
                partition: None,
            },
            batch_id: None,
            batch_timestamp: None,
            batch_prefix: "ds/t/".into(),
            table_prefix: "ds/t".into(),
        }
    }

    /// Folders and names a listing is made of: nested folders, a sub-folder with its own
    /// marker, control files and folders, upper case and digits that sort before `_`.
    const FOLDERS: &[&str] = &[
        "", "a/", "a/b/", "a/b/c/", "B/", "d/", "d/e/", "_config/", "_x/",
    ];
    const NAMES: &[&str] = &[
        "_SUCCESS", "0.csv", "1.csv", "Z.csv", "f.csv", "g.csv", "_tmp", "h",
    ];

    /// The jobs of `objects` (sorted, unique) streamed page by page, and planned at once.
    fn both(
        objects: &[ObjectMeta],
        pages: &[usize],
        max_bytes: u64,
    ) -> (
        Result<Vec<JobRequest>, String>,
        Result<Vec<JobRequest>, String>,
    ) {
        let settings = Settings {
            max_batch_bytes: max_bytes,
            ..Settings::default()
        };
        let batch = batch();
        let config = BatchConfig::merge("b", &[]).unwrap();
        let stem = JobIdStem::of_batch(&settings, "ds_t", &batch, 7);
        let ids = JobIds::new(&settings, "runner", &stem);

        let whole = Listing::from_objects(&batch.batch_prefix, objects);
        let selection = select("_SUCCESS", &whole);
        let at_once = plan_listed_load(&ids, &batch, &config, &PlanInput::of(&whole, &selection))
            .map(|plan| plan.jobs)
            .map_err(|e| e.to_string());

        let mut stream = PartStream::new(&ids, &batch, &config, "_SUCCESS");
        let mut listing = Listing::new(&batch.batch_prefix);
        let mut jobs = Vec::new();
        let mut rest = objects;
        let mut page = pages.iter().cycle();
        let streamed = loop {
            let n = (*page.next().unwrap()).min(rest.len());
            for object in &rest[..n] {
                listing.push(object.clone());
            }
            rest = &rest[n..];
            if rest.is_empty() {
                break stream.finish(&listing).map(|(last, totals)| {
                    jobs.extend(last);
                    assert_eq!(totals.files, selection.data.len());
                    jobs
                });
            }
            match stream.advance(&listing) {
                Ok(closed) => jobs.extend(closed),
                Err(e) => break Err(e),
            }
        };
        (streamed.map_err(|e| e.to_string()), at_once)
    }

    fn without_parts_label(mut jobs: Vec<JobRequest>) -> Vec<JobRequest> {
        for job in &mut jobs {
            job.labels.remove(PARTS_LABEL);
        }
        jobs
    }

    proptest! {
        #[test]
        fn streamed_parts_are_the_parts_planned_at_once(
            picks in proptest::collection::btree_set((0..FOLDERS.len(), 0..NAMES.len(), 0u8..4), 1..60),
            sizes in proptest::collection::vec(0u64..6, 60),
            pages in proptest::collection::vec(1usize..7, 1..5),
            max_bytes in 1u64..20,
        ) {
            let mut names: Vec<String> = picks
                .iter()
                .map(|&(f, n, copy)| match copy {
                    0 => format!("ds/t/{}{}", FOLDERS[f], NAMES[n]),
                    copy => format!("ds/t/{}{copy}{}", FOLDERS[f], NAMES[n]),
                })
                .collect();
            names.push("ds/t/_SUCCESS".into());
            names.sort();
            names.dedup();
            let objects: Vec<ObjectMeta> = names
                .iter()
                .zip(sizes.iter().cycle())
                .map(|(name, &size)| ObjectMeta { name: name.clone(), size, generation: 1, updated: None })
                .collect();
            let (streamed, at_once) = both(&objects, &pages, max_bytes);
            match (streamed, at_once) {
                (Ok(streamed), Ok(at_once)) => {
                    prop_assert_eq!(streamed, without_parts_label(at_once));
                }
                (Err(s), Err(a)) => prop_assert_eq!(s, a),
                (s, a) => prop_assert!(false, "streamed {:?}, at once {:?}", s, a),
            }
        }
    }

    /// The case the module is for: a batch of 25,000 flat files in pages of 1,000 closes its
    /// first two parts while the listing is read (part 0 once file 10,001 is listed), and
    /// gives the same three jobs as the plan of the whole listing.
    #[test]
    fn a_flat_batch_closes_its_parts_while_it_is_listed() {
        let objects: Vec<ObjectMeta> = std::iter::once("ds/t/_SUCCESS".to_string())
            .chain((0..25_000).map(|i| format!("ds/t/part-{i:05}.csv")))
            .map(|name| ObjectMeta {
                name,
                size: 10,
                generation: 1,
                updated: None,
            })
            .collect();
        let settings = Settings::default();
        let batch = batch();
        let config = BatchConfig::merge("b", &[]).unwrap();
        let stem = JobIdStem::of_batch(&settings, "ds_t", &batch, 7);
        let ids = JobIds::new(&settings, "runner", &stem);
        let mut stream = PartStream::new(&ids, &batch, &config, "_SUCCESS");
        let mut listing = Listing::new(&batch.batch_prefix);
        let mut closed_after = Vec::new();
        for (page, objects) in objects.chunks(1_000).enumerate() {
            objects.iter().for_each(|o| listing.push(o.clone()));
            for job in stream.advance(&listing).unwrap() {
                closed_after.push((job.labels[PART_LABEL].clone(), page));
            }
        }
        assert_eq!(closed_after, [("0".into(), 10), ("1".into(), 20)]);
        let (last, totals) = stream.finish(&listing).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!((totals.files, totals.bytes), (25_000, 250_000));
        let JobKind::Load { source_uris, .. } = &last[0].kind else {
            unreachable!()
        };
        assert_eq!(source_uris.len(), 5_000);
        assert_eq!(source_uris[0], "gs://b/ds/t/part-20000.csv");
    }
}
