//! A big batch's load jobs submitted as their parts fill, while the rest of its listing is
//! read (issue 12 §2): against GCS the list calls of a batch of a million files take a minute
//! or more, and the first 10,000 files need not wait for them.
//!
//! The parts, ids, URIs and load configuration are those the batch gets when it is planned at
//! once ([`crate::plan::PartStream`]). Part 0 goes out **last**, with the number of parts
//! ([`PARTS_LABEL`]): a duplicate delivery that finds part 0 knows every part exists, and one
//! that does not find it plans the batch again, finds the parts that went out (same ids) and
//! follows them — as after a crash between two submissions of a batch planned at once. Parts
//! sent before the end do not carry the number of parts (nothing reads it but on part 0).
//!
//! Only a plain load streams: not a transform or a load into the partitions its file names
//! carry (both need every file first), not a `WRITE_TRUNCATE` or `WRITE_EMPTY` load (that
//! disposition is part 0's alone, which must not go out last), and only when `MAX_BATCH_BYTES`
//! is at least GCS's largest object, so that no file found later can fail the plan after parts
//! went out.

use super::jobs::{submit_one, BatchRun, SubmitError};
use super::prepare::{
    label_job, next_batch_page, quarantine_label, store_fatal, PartlyListed, PreparedBatch,
};
use super::{Context, Fatal};
use crate::outcome::IngestError;
use crate::plan::{erases_table, select, JobIds, LoadPlan, PartStream, PlanMode, PARTS_LABEL};
use crate::ports::{JobRequest, JobStatus};
use crate::settings::Settings;

/// The largest object GCS holds: 5 TiB.
pub(crate) const GCS_MAX_OBJECT_BYTES: u64 = 5 << 40;

/// Whether a batch whose listing is not complete yet may submit its parts while it is read
/// (see the module docs).
pub(crate) fn streamable(settings: &Settings, partly: &PartlyListed) -> bool {
    let prepared = &partly.prepared;
    partly.next_page.is_some()
        && prepared.listing.is_sorted()
        && prepared.file_partitions.is_none()
        && prepared.config.transform_sql.is_none()
        && !erases_table(&prepared.config.load)
        && settings.max_batch_bytes >= GCS_MAX_OBJECT_BYTES
}

/// Why a streamed batch stopped before all of its parts went out.
#[derive(Debug)]
pub(crate) enum Halt {
    /// Submitting a part failed.
    Submit(SubmitError),
    /// The batch cannot be loaded (a store error that redelivery does not mend, a plan error).
    Fatal(Fatal),
}

/// A streamed batch: the batch with its whole listing (as far as it was read), the plan of the
/// parts made, and the first status of every part, in part order.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub(crate) prepared: PreparedBatch,
    pub(crate) plan: LoadPlan,
    pub(crate) submitted: Result<Vec<JobStatus>, Halt>,
}

/// Lists the rest of the batch, submitting each part but the first as it fills, then the
/// parts left at the end and part 0. A transient store error is handed back for redelivery
/// (the parts that went out are found again by their ids).
pub(crate) async fn plan_and_submit(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    partly: PartlyListed,
) -> Result<Streamed, IngestError> {
    let PartlyListed {
        mut prepared,
        mut next_page,
    } = partly;
    let event = run.event;
    let ids = JobIds::new(ctx.settings, run.project, run.stem);
    let batch = prepared.batch.clone();
    let success = ctx.settings.success_filename.as_str();
    let mut stream = PartStream::new(&ids, &batch, &prepared.config, success);
    let quarantine = quarantine_label(&prepared);
    let mut jobs: Vec<JobRequest> = Vec::new();
    let mut sent: Vec<JobStatus> = Vec::new();
    let halt = |prepared, jobs, halt| Ok(stopped(prepared, jobs, halt));
    loop {
        let closed = match stream.advance(&prepared.listing) {
            Ok(closed) => closed,
            Err(e) => return halt(prepared, jobs, Halt::Fatal(Fatal(e.to_string()))),
        };
        for mut job in closed {
            label_job(&prepared, &mut job, quarantine);
            if !jobs.is_empty() {
                match submit_one(ctx.ports, event, &job).await {
                    Ok(status) => sent.push(status),
                    Err(e) => return halt(prepared, jobs, Halt::Submit(e)),
                }
            }
            jobs.push(job);
        }
        let Some(token) = next_page.take() else {
            break;
        };
        let store = ctx.ports.store.as_ref();
        next_page = match next_batch_page(store, &event.bucket, &mut prepared.listing, &token).await
        {
            Ok(next) => next,
            Err(e) => return halt(prepared, jobs, Halt::Fatal(store_fatal(event, e)?)),
        };
    }
    let (rest, totals) = match stream.finish(&prepared.listing) {
        Ok(done) => done,
        Err(e) => return halt(prepared, jobs, Halt::Fatal(Fatal(e.to_string()))),
    };
    let early = sent.len();
    for mut job in rest {
        label_job(&prepared, &mut job, quarantine);
        jobs.push(job);
    }
    // The parts left at the end, then part 0, all with the number of parts.
    let parts = jobs.len().to_string();
    for i in (early + 1..jobs.len()).chain(0..1) {
        let job = &mut jobs[i];
        job.labels.insert(PARTS_LABEL.to_string(), parts.clone());
        match submit_one(ctx.ports, event, job).await {
            Ok(status) => sent.push(status),
            Err(e) => return halt(prepared, jobs, Halt::Submit(e)),
        }
    }
    sent.rotate_right(1);
    prepared.selection = select(success, &prepared.listing);
    Ok(Streamed {
        prepared,
        plan: load_plan(jobs, totals.files, totals.bytes),
        submitted: Ok(sent),
    })
}

/// The batch as far as it went, the plan of the parts it made, and why it stopped.
fn stopped(prepared: PreparedBatch, jobs: Vec<JobRequest>, halt: Halt) -> Streamed {
    Streamed {
        prepared,
        plan: load_plan(jobs, 0, 0),
        submitted: Err(halt),
    }
}

fn load_plan(jobs: Vec<JobRequest>, files: usize, bytes: u64) -> LoadPlan {
    LoadPlan {
        mode: PlanMode::Load,
        jobs,
        files,
        bytes,
        create_table: None,
    }
}
