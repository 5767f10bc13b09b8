//! Quarantine of bad files (`quarantine` in `ingest.json`, load mode): when a load fails
//! because of its data (`invalid`), the files to blame are moved aside and the rest of the
//! batch is loaded under new deterministic ids, instead of the whole batch failing forever.
//!
//! - **Suspects.** The data files of a failed part that its error names (`File: gs://…`,
//!   `errors[].location`). When it names none, the part's files are loaded, in halves, into a
//!   staging table `<table>_bq_ingest_quarantine` (never the destination; created with the
//!   destination's schema and a one-day expiration), at most `maxRounds` rounds: a half that
//!   fails is split again, down to single files.
//! - **Never the whole batch.** If every file would be quarantined, or no file can be blamed,
//!   the batch fails as without the option.
//! - **Moves** are a create-only copy under the quarantine prefix, then a delete guarded by the
//!   listed generation; a copy already in place (same size) or a file already gone counts as
//!   done. The batch gets a `quarantined` state row naming each file and its error, also
//!   announced on the failure topic.
//! - **The rest** is planned as a first delivery plans it (parts, wildcards), with the hint
//!   `<hint>_rest` and the label `bq-ingest-quarantine=rest`, so its ids are deterministic and a
//!   redelivery follows them; a rest that fails fails the batch (no second quarantine).
//!
//! A redelivery repeats the same steps: staging jobs and rest jobs exist and are followed, moved
//! files are found in the quarantine prefix (a bisection is not repeated once files are there).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::Quarantine;
use crate::outcome::IngestError;
use crate::pipeline::jobs::{
    follow, is_retriable_job_error, submit_all, submit_one, BatchRun, SubmitError,
};
use crate::pipeline::moves::{copy_listed, delete_listed};
use crate::pipeline::prepare::{label_batch_jobs, list_all, PreparedBatch};
use crate::pipeline::record;
use crate::pipeline::{store_error, warehouse_error, Context};
use crate::plan::{
    plan_listed_load, DataFile, JobIdStem, JobIds, LoadPlan, PlanInput, PlanMode,
    AFTER_SUCCESS_LABEL, QUARANTINE_LABEL,
};
use crate::ports::{JobKind, JobRequest, JobStatus, StoreError, TableRef};

/// The suffix of the staging table a bisection loads into (`<table>_bq_ingest_quarantine`).
pub const STAGING_SUFFIX: &str = "_bq_ingest_quarantine";

/// Whether the jobs of a batch say it has `quarantine` on.
pub(crate) fn labelled(statuses: &[JobStatus]) -> bool {
    statuses
        .iter()
        .any(|s| s.labels.get(QUARANTINE_LABEL).map(String::as_str) == Some("on"))
}

/// What the quarantine did: the plan of the rest and its jobs' first statuses.
pub(crate) struct Rest {
    pub(crate) plan: LoadPlan,
    pub(crate) statuses: Vec<JobStatus>,
}

/// Quarantines the bad files of a batch whose load failed because of its data, and submits
/// the rest; `None` when the quarantine does not apply (off, not a data error, a rest that
/// failed, nothing or everything to blame): the batch then ends as it would without it.
pub(crate) async fn quarantine(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    plan: &LoadPlan,
    statuses: &[JobStatus],
) -> Result<Option<Rest>, IngestError> {
    let Some(options) = &prepared.config.ingest.quarantine else {
        return Ok(None);
    };
    let is_rest = plan
        .jobs
        .iter()
        .any(|j| j.labels.get(QUARANTINE_LABEL).map(String::as_str) == Some("rest"));
    let failed: Vec<usize> = (0..statuses.len())
        .filter(|&i| statuses[i].error.is_some())
        .collect();
    let data_errors = failed.iter().all(|&i| {
        statuses[i]
            .error
            .as_ref()
            .is_some_and(|e| e.reason == "invalid" && !is_retriable_job_error(e))
    });
    if plan.mode != PlanMode::Load || is_rest || failed.is_empty() || !data_errors {
        return Ok(None);
    }
    let event = run.event;
    let batch = &prepared.batch;
    let files = prepared.selection.to_batch_files(&prepared.listing);
    let mut bad = already_moved(ctx, run, prepared, options).await?;
    let moved_before = !bad.is_empty();
    for &i in &failed {
        let Some(job) = plan.jobs.get(i) else {
            continue;
        };
        let error = statuses[i]
            .error
            .as_ref()
            .map_or(String::new(), |e| format!("{}: {}", e.reason, e.message));
        let part_files = files_of_job(job, &batch.bucket, &files.data);
        let named: Vec<&DataFile> = part_files
            .iter()
            .copied()
            .filter(|f| names_uri(&error, &format!("gs://{}/{}", batch.bucket, f.name)))
            .collect();
        if !named.is_empty() {
            for f in named {
                bad.insert(f.name.clone(), error.clone());
            }
        } else if !moved_before {
            bad.extend(bisect(ctx, run, prepared, job, part_files, error, options).await?);
        }
    }
    let all_bad = files.data.iter().all(|f| bad.contains_key(&f.name));
    if bad.is_empty() || all_bad {
        return Ok(None);
    }
    move_files(ctx, run, prepared, options, &bad)
        .await
        .map_err(|e| store_error(event, e))?;
    record_quarantined(ctx, run, prepared, &bad).await?;
    let rest = rest_plan(ctx, run, prepared, &bad)?;
    let Some(rest) = rest else {
        return Ok(None);
    };
    let statuses = match submit_all(ctx.ports, event, &rest).await {
        Ok(s) => s,
        Err(SubmitError::Transient(e)) => return Err(warehouse_error(event, e)),
        Err(SubmitError::Rejected(_)) => return Ok(None),
    };
    Ok(Some(Rest {
        plan: rest,
        statuses,
    }))
}

/// The data files a job loads: its URIs, each a file or a `prefix*` wildcard.
fn files_of_job<'f>(job: &JobRequest, bucket: &str, files: &'f [DataFile]) -> Vec<&'f DataFile> {
    let JobKind::Load { source_uris, .. } = &job.kind else {
        return Vec::new();
    };
    let base = format!("gs://{bucket}/");
    let patterns: Vec<(&str, bool)> = source_uris
        .iter()
        .filter_map(|uri| uri.strip_prefix(base.as_str()))
        .map(|name| match name.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (name, false),
        })
        .collect();
    files
        .iter()
        .filter(|f| {
            patterns.iter().any(|(p, wildcard)| {
                if *wildcard {
                    f.name.starts_with(p)
                } else {
                    f.name == *p
                }
            })
        })
        .collect()
}

/// Whether `text` names `uri` as a whole (not as the start of a longer name).
fn names_uri(text: &str, uri: &str) -> bool {
    text.match_indices(uri).any(|(i, _)| {
        text[i + uri.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || "._-/~=+%".contains(c)))
    })
}

/// Where a bad file goes: `(bucket, name)`.
fn quarantine_name(
    prepared: &PreparedBatch,
    generation: i64,
    options: &Quarantine,
    name: &str,
) -> (String, String) {
    let batch = &prepared.batch;
    match &options.to {
        Some((bucket, prefix)) => (bucket.clone(), format!("{prefix}{name}")),
        None => {
            let relative = name.strip_prefix(&batch.batch_prefix).unwrap_or(name);
            (
                batch.bucket.clone(),
                format!("{}{relative}", default_folder(prepared, generation)),
            )
        }
    }
}

/// `<table prefix>/_quarantine/<batch folder below the table>/`, or `…/<marker generation>/`
/// for a batch that is the table's own folder.
fn default_folder(prepared: &PreparedBatch, generation: i64) -> String {
    let batch = &prepared.batch;
    let table = batch.table_prefix.trim_end_matches('/');
    let below = batch
        .batch_prefix
        .strip_prefix(&format!("{table}/"))
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{generation}/"));
    if table.is_empty() {
        format!("_quarantine/{below}")
    } else {
        format!("{table}/_quarantine/{below}")
    }
}

/// The files of this batch that an earlier delivery moved to the default quarantine folder
/// (original name → why); empty with a custom prefix (shared by many batches).
async fn already_moved(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    options: &Quarantine,
) -> Result<BTreeMap<String, String>, IngestError> {
    if options.to.is_some() {
        return Ok(BTreeMap::new());
    }
    let batch = &prepared.batch;
    let folder = default_folder(prepared, run.generation);
    let listed = list_all(ctx.ports.store.as_ref(), &batch.bucket, &folder)
        .await
        .map_err(|e| store_error(run.event, e))?;
    Ok(listed
        .iter()
        .filter_map(|o| o.name.strip_prefix(&folder))
        .map(|relative| {
            (
                format!("{}{relative}", batch.batch_prefix),
                "quarantined by an earlier delivery".to_string(),
            )
        })
        .collect())
}

/// Finds the bad files among `files` (whose load failed with `error`) by loading halves into
/// the staging table, at most `options.max_rounds` rounds; each blamed file with its error.
async fn bisect(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    failed_job: &JobRequest,
    files: Vec<&DataFile>,
    error: String,
    options: &Quarantine,
) -> Result<BTreeMap<String, String>, IngestError> {
    let event = run.event;
    let staging = staging_table(ctx, run, prepared, failed_job).await?;
    let mut bad = BTreeMap::new();
    let Some((staging, config)) = staging else {
        return Ok(bad);
    };
    let mut failing: Vec<(Vec<&DataFile>, String, u32)> = vec![(files, error, 0)];
    while let Some((set, error, round)) = failing.pop() {
        if set.len() == 1 || round >= options.max_rounds {
            for f in set {
                bad.insert(f.name.clone(), error.clone());
            }
            continue;
        }
        let (left, right) = set.split_at(set.len() / 2);
        let mut halves = Vec::new();
        for half in [left, right] {
            let job = staging_job(failed_job, &prepared.batch.bucket, &staging, &config, half);
            let status = match submit_one(ctx.ports, event, &job).await {
                Ok(s) => s,
                Err(SubmitError::Transient(e)) => return Err(warehouse_error(event, e)),
                Err(SubmitError::Rejected(_)) => return Ok(BTreeMap::new()),
            };
            halves.push((half.to_vec(), status));
        }
        let statuses: Vec<JobStatus> = halves.iter().map(|(_, s)| s.clone()).collect();
        let statuses = follow(ctx.ports, statuses, run.deadline)
            .await
            .map_err(|e| warehouse_error(event, e))?;
        if statuses
            .iter()
            .any(|s| s.state != crate::ports::JobState::Done)
        {
            // Out of time: the redelivery follows the same staging jobs.
            let job = statuses[0].job.job_id.clone();
            return Err(warehouse_error(
                event,
                crate::ports::WarehouseError::Transient {
                    what: format!("job {job}"),
                    message: "quarantine staging loads still running at the deadline".into(),
                },
            ));
        }
        for ((half, _), status) in halves.into_iter().zip(statuses) {
            if let Some(e) = status.error {
                failing.push((half, format!("{}: {}", e.reason, e.message), round + 1));
            }
        }
    }
    Ok(bad)
}

/// The staging table (created from the destination's schema, expiring after a day) and the
/// load configuration of staging jobs; `None` when the destination's schema cannot be read.
async fn staging_table(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    failed_job: &JobRequest,
) -> Result<Option<(TableRef, serde_json::Map<String, serde_json::Value>)>, IngestError> {
    let JobKind::Load { config, .. } = &failed_job.kind else {
        return Ok(None);
    };
    let destination = TableRef {
        partition: None,
        ..prepared.batch.destination.clone()
    };
    let schema = match config.get("schema") {
        Some(schema) => Some(schema.clone()),
        None => match ctx.ports.warehouse.table_schema(&destination).await {
            Ok(schema) => schema,
            Err(e) if e.is_transient() => return Err(warehouse_error(run.event, e)),
            Err(_) => None,
        },
    };
    let Some(schema) = schema else {
        return Ok(None);
    };
    let staging = TableRef {
        table: format!("{}{STAGING_SUFFIX}", destination.table),
        ..destination
    };
    let expires = ctx.ports.clock.now() + chrono::Duration::days(1);
    let mut resource = serde_json::Map::new();
    resource.insert("schema".into(), schema.clone());
    resource.insert(
        "expirationTime".into(),
        serde_json::Value::String(expires.timestamp_millis().to_string()),
    );
    match ctx.ports.warehouse.create_table(&staging, &resource).await {
        Ok(_) => {}
        Err(e) if e.is_transient() => return Err(warehouse_error(run.event, e)),
        Err(_) => return Ok(None),
    }
    let mut staging_config = config.clone();
    for key in [
        "timePartitioning",
        "rangePartitioning",
        "clustering",
        "destinationTableProperties",
        "schemaUpdateOptions",
    ] {
        staging_config.remove(key);
    }
    staging_config.insert("schema".into(), schema);
    staging_config.insert("writeDisposition".into(), "WRITE_TRUNCATE".into());
    staging_config.insert("createDisposition".into(), "CREATE_NEVER".into());
    Ok(Some((staging, staging_config)))
}

/// The staging load of `files`: `<failed job id>-q<hash of the names>`, so a redelivery
/// finds it.
fn staging_job(
    failed_job: &JobRequest,
    bucket: &str,
    staging: &TableRef,
    config: &serde_json::Map<String, serde_json::Value>,
    files: &[&DataFile],
) -> JobRequest {
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(f.name.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let mut labels = failed_job.labels.clone();
    labels.remove(AFTER_SUCCESS_LABEL);
    labels.insert(QUARANTINE_LABEL.to_string(), "staging".to_string());
    JobRequest {
        job_id: format!("{}-q{hash}", failed_job.job_id),
        labels,
        kind: JobKind::Load {
            destination: staging.clone(),
            source_uris: files
                .iter()
                .map(|f| format!("gs://{bucket}/{}", f.name))
                .collect(),
            config: config.clone(),
        },
        ..failed_job.clone()
    }
}

/// Copies each bad file under the quarantine prefix (create-only), then deletes it under its
/// listed generation.
async fn move_files(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    options: &Quarantine,
    bad: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let store = ctx.ports.store.as_ref();
    let bucket = &prepared.batch.bucket;
    for name in bad.keys() {
        let Some(meta) = prepared
            .listing
            .find(name)
            .map(|i| prepared.listing.meta(i))
        else {
            continue; // moved by an earlier delivery
        };
        let meta = &meta;
        let (to_bucket, to_name) = quarantine_name(prepared, run.generation, options, name);
        if !copy_listed(store, bucket, meta, &to_bucket, &to_name).await? {
            continue;
        }
        delete_listed(store, bucket, meta).await?;
        tracing::warn!(object = %format!("gs://{bucket}/{name}"), quarantine = %format!("gs://{to_bucket}/{to_name}"), "quarantined gs://{bucket}/{name}: {}", bad[name]);
    }
    Ok(())
}

/// The `quarantined` state row of the batch: each file, where it went and its error (also
/// announced on the failure topic).
async fn record_quarantined(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    bad: &BTreeMap<String, String>,
) -> Result<(), IngestError> {
    let options = prepared.config.ingest.quarantine.as_ref();
    let lines: Vec<String> = bad
        .iter()
        .map(|(name, error)| {
            let to = options.map_or(String::new(), |o| {
                let (b, n) = quarantine_name(prepared, run.generation, o, name);
                format!(" → gs://{b}/{n}")
            });
            format!("gs://{}/{name}{to}: {error}", prepared.batch.bucket)
        })
        .collect();
    let error = format!(
        "{}: {} file(s) quarantined, the rest loaded apart: {}",
        run.event.uri(),
        bad.len(),
        lines.join("; ")
    );
    let mut row = record::row(
        run.event.uri(),
        run.generation,
        &[],
        "quarantined",
        Some(error),
        ctx.ports.clock.now(),
    );
    row = record::with_batch(row, &prepared.batch);
    row.mode = PlanMode::Load.as_str().to_string();
    record::write(ctx.settings, ctx.ports, &row)
        .await
        .map_err(|e| warehouse_error(run.event, e))
}

/// The plan of the files that are not bad, with the hint `<hint>_rest`; `None` when none is
/// left.
fn rest_plan(
    ctx: Context<'_>,
    run: BatchRun<'_>,
    prepared: &PreparedBatch,
    bad: &BTreeMap<String, String>,
) -> Result<Option<LoadPlan>, IngestError> {
    let listing = &prepared.listing;
    let rest: Vec<usize> = prepared
        .selection
        .data
        .iter()
        .copied()
        .filter(|&i| !bad.contains_key(&listing.name(i)))
        .collect();
    if rest.is_empty() {
        return Ok(None);
    }
    let hint = format!("{}_rest", run.hint);
    let stem = JobIdStem::of_batch(ctx.settings, &hint, &prepared.batch, run.generation);
    let ids = JobIds::new(ctx.settings, run.project, &stem);
    let input = PlanInput {
        listing,
        listed: listing.len(),
        data: &rest,
    };
    let planned = plan_listed_load(&ids, &prepared.batch, &prepared.config, &input);
    let Ok(mut plan) = planned else {
        return Ok(None);
    };
    label_batch_jobs(prepared, &mut plan, Some("rest"));
    Ok(Some(plan))
}

#[cfg(test)]
mod tests {
    use super::names_uri;

    #[test]
    fn a_uri_is_named_whole() {
        let text = "CSV error. File: gs://b/ds/t/a.csv; other";
        assert!(names_uri(text, "gs://b/ds/t/a.csv"));
        assert!(!names_uri(
            "File: gs://b/ds/t/a.csv.gz",
            "gs://b/ds/t/a.csv"
        ));
        assert!(names_uri("(location: gs://b/x)", "gs://b/x"));
    }
}
