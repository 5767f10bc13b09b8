//! Resuming a stopped ordered table (`bq-ingest resume`): the steps an operator took by hand —
//! skip the failed batch or keep it to retry, remove the lock, drop a new `_BACKFILL` — done
//! with generation preconditions, and refused while the lock's jobs still run.

use serde::Serialize;

use super::{first_backlog_item, marker_of_item, read_lock, LockContent, LOCK_FILENAME};
use crate::pipeline::Ports;
use crate::ports::{JobRef, JobState, PutMode, StoreError, WarehouseError};
use crate::settings::{Settings, BACKFILL_FILENAME};

/// One step of a [`ResumePlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ResumeStep {
    /// Delete the backlog item of the batch the table stopped at (`--skip`), at this generation.
    SkipItem {
        /// The backlog item.
        item: String,
        /// Its generation.
        generation: i64,
        /// The generation of the batch's marker, when the lock names it (for the `skipped`
        /// state row).
        marker_generation: Option<i64>,
    },
    /// Delete `_bqlock`, at this generation.
    RemoveLock {
        /// Its generation.
        generation: i64,
        /// What it said.
        was: String,
    },
    /// Write a new `_BACKFILL`: its notification starts the table's subscriber.
    DropBackfill,
}

/// What resuming a table will do, found by [`plan_resume`] and done by [`apply_resume`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResumePlan {
    /// `gs://bucket/table-prefix`.
    pub table: String,
    /// The batch the table stopped at (its backlog item), if any.
    pub stopped_at: Option<String>,
    /// Why it stopped, if the lock says.
    pub error: Option<String>,
    /// The steps, in order.
    pub steps: Vec<ResumeStep>,
}

/// Why a table cannot be resumed, or the store or warehouse failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Resuming now would be unsafe or pointless; nothing was changed.
    #[error("{table}: not resumed: {reason}")]
    Refused {
        /// `gs://bucket/table-prefix`.
        table: String,
        /// Why.
        reason: String,
    },
    /// The object store failed (a precondition failure means someone changed the table meanwhile).
    #[error("{table}: {source}")]
    Store {
        /// `gs://bucket/table-prefix`.
        table: String,
        /// The store's error.
        source: StoreError,
    },
    /// The warehouse failed while the lock's jobs were checked.
    #[error("{table}: {source}")]
    Warehouse {
        /// `gs://bucket/table-prefix`.
        table: String,
        /// The warehouse's error.
        source: WarehouseError,
    },
}

/// Finds what resuming the ordered table at `table_prefix` takes, changing nothing.
///
/// Refused while a bq-ingest lock without error is held (the subscriber runs or hands over and
/// needs no help), while any job of the lock is not done, and for an operator's lock. `skip`
/// names the batch to skip — its backlog item, its marker, or its directory under the table
/// (`2024/01/02/batch-7`) — and must be the batch the table stopped at (or, without a lock,
/// the first of the backlog).
pub async fn plan_resume(
    ports: &Ports,
    settings: &Settings,
    bucket: &str,
    table_prefix: &str,
    skip: Option<&str>,
) -> Result<ResumePlan, ResumeError> {
    let prefix = table_prefix.trim_matches('/');
    let table = format!("gs://{bucket}/{prefix}");
    let refused = |reason: String| ResumeError::Refused {
        table: table.clone(),
        reason,
    };
    let store_error = |source| ResumeError::Store {
        table: table.clone(),
        source,
    };
    let mut plan = ResumePlan {
        table: table.clone(),
        stopped_at: None,
        error: None,
        steps: Vec::new(),
    };
    let lock = read_lock(ports.store.as_ref(), bucket, prefix, &settings.job_prefix)
        .await
        .map_err(store_error)?;
    let mut marker_generation = None;
    if let Some((meta, content, lock)) = lock {
        let was = String::from_utf8_lossy(&content).trim().to_string();
        let jobs = match lock {
            LockContent::Ours(state) if state.error.is_none() => {
                return Err(refused(format!(
                    "the table is not stopped: its lock is held for {} ({}, heartbeat {}); the subscriber continues on its own",
                    state.item,
                    state.holder.as_deref().map_or("released for a hand-over".to_string(), |h| format!("holder {h}")),
                    state.heartbeat.to_rfc3339()
                )))
            }
            LockContent::Ours(state) => {
                plan.stopped_at = Some(state.item.clone());
                marker_generation = Some(state.marker_generation);
                plan.error = state.error.clone();
                let location = state.location.clone();
                state
                    .job_ids
                    .iter()
                    .map(|id| JobRef {
                        project: state.project.clone(),
                        job_id: id.clone(),
                        location: location.clone(),
                    })
                    .collect()
            }
            LockContent::Legacy(job_id) => vec![JobRef {
                project: settings.job_project().unwrap_or_default().to_string(),
                job_id,
                location: settings.bq_location.clone(),
            }],
            LockContent::Manual(text) => {
                return Err(refused(format!(
                    "{LOCK_FILENAME} holds {text:?}, an operator's lock, not bq-ingest's: remove it by hand if resuming is meant"
                )))
            }
        };
        check_jobs_ended(ports, &jobs).await.map_err(|e| match e {
            Ended::Running(reason) => refused(reason),
            Ended::Failed(source) => ResumeError::Warehouse {
                table: table.clone(),
                source,
            },
        })?;
        plan.steps.push(ResumeStep::RemoveLock {
            generation: meta.generation,
            was,
        });
    }
    if let Some(skip) = skip {
        let item = match &plan.stopped_at {
            Some(item) => item.clone(),
            None => {
                let success = &settings.success_filename;
                first_backlog_item(ports.store.as_ref(), success, bucket, prefix)
                    .await
                    .map_err(store_error)?
                    .0
                    .ok_or_else(|| refused(format!("--skip {skip}: the backlog is empty")))?
                    .name
            }
        };
        if !names_item(bucket, prefix, &item, skip) {
            return Err(refused(format!(
                "--skip {skip} is not the batch the table stopped at ({item})"
            )));
        }
        match ports.store.stat(bucket, &item).await {
            Ok(meta) => plan.steps.insert(
                0,
                ResumeStep::SkipItem {
                    marker_generation: marker_generation
                        .filter(|_| plan.stopped_at.as_deref() == Some(item.as_str())),
                    item,
                    generation: meta.generation,
                },
            ),
            Err(StoreError::NotFound { .. }) => {} // already gone: nothing to skip
            Err(e) => return Err(store_error(e)),
        }
    }
    plan.steps.push(ResumeStep::DropBackfill);
    Ok(plan)
}

/// Does the steps of `plan` in order, each with its generation precondition: a table changed
/// since the plan fails with [`StoreError::PreconditionFailed`] at that step. A skipped batch
/// gets a `skipped` state row, so that it no longer counts as failed.
pub async fn apply_resume(
    ports: &Ports,
    settings: &Settings,
    bucket: &str,
    plan: &ResumePlan,
) -> Result<(), ResumeError> {
    let prefix = plan
        .table
        .strip_prefix(&format!("gs://{bucket}/"))
        .unwrap_or(&plan.table);
    let store_error = |source| ResumeError::Store {
        table: plan.table.clone(),
        source,
    };
    for step in &plan.steps {
        match step {
            ResumeStep::SkipItem {
                item,
                generation,
                marker_generation,
            } => {
                let deleted = ports.store.delete(bucket, item, Some(*generation)).await;
                deleted.map_err(store_error)?;
                record_skip(ports, settings, bucket, item, *marker_generation, plan).await;
                Ok(())
            }
            ResumeStep::RemoveLock { generation, .. } => {
                let lock = format!("{prefix}/{LOCK_FILENAME}");
                ports.store.delete(bucket, &lock, Some(*generation)).await
            }
            ResumeStep::DropBackfill => {
                let name = format!("{prefix}/{BACKFILL_FILENAME}");
                let put = ports
                    .store
                    .put(bucket, &name, Vec::new(), PutMode::Overwrite);
                put.await.map(|_| ())
            }
        }
        .map_err(store_error)?;
    }
    Ok(())
}

/// The `skipped` row of a skipped batch; a failure to write it is logged and changes nothing
/// (the batch was skipped all the same).
async fn record_skip(
    ports: &Ports,
    settings: &Settings,
    bucket: &str,
    item: &str,
    marker_generation: Option<i64>,
    plan: &ResumePlan,
) {
    let marker = marker_of_item(item).unwrap_or_else(|| item.to_string());
    let reason = format!(
        "skipped by bq-ingest resume --skip (was: {})",
        plan.error.as_deref().unwrap_or("no error recorded")
    );
    let record = crate::pipeline::record::row(
        format!("gs://{bucket}/{marker}"),
        marker_generation.unwrap_or_default(),
        &[],
        "skipped",
        Some(reason),
        ports.clock.now(),
    );
    if let Err(e) = crate::pipeline::record::write(settings, ports, &record).await {
        let marker = &record.marker_uri;
        tracing::error!(marker = %marker, error = %e, "could not record the skip of {marker}: {e}");
    }
}

enum Ended {
    Running(String),
    Failed(WarehouseError),
}

/// Every job has ended (or does not exist); else which one still runs.
async fn check_jobs_ended(ports: &Ports, jobs: &[JobRef]) -> Result<(), Ended> {
    for job in jobs {
        match ports
            .warehouse
            .job_status(job)
            .await
            .map_err(Ended::Failed)?
        {
            Some(status) if status.state != JobState::Done => {
                return Err(Ended::Running(format!(
                    "job {} of the lock is still {:?}: wait for it to end",
                    job.job_id, status.state
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `given` names backlog `item`: the item, its marker, or the batch directory under the
/// table, with or without `gs://bucket/` and trailing `/`.
fn names_item(bucket: &str, prefix: &str, item: &str, given: &str) -> bool {
    let given = given
        .strip_prefix(&format!("gs://{bucket}/"))
        .unwrap_or(given)
        .trim_end_matches('/');
    let marker = marker_of_item(item).unwrap_or_default();
    let batch_dir = marker
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .unwrap_or_default();
    let relative = batch_dir
        .strip_prefix(&format!("{prefix}/"))
        .unwrap_or(batch_dir);
    [item, marker.as_str(), batch_dir, relative]
        .iter()
        .any(|candidate| !candidate.is_empty() && *candidate == given)
}

#[cfg(test)]
mod tests {
    use super::names_item;

    #[test]
    fn a_batch_is_named_by_item_marker_or_directory() {
        let item = "ds/t/_backlog/2024/01/02/b2/_SUCCESS";
        for given in [
            item,
            "gs://bkt/ds/t/_backlog/2024/01/02/b2/_SUCCESS",
            "ds/t/2024/01/02/b2/_SUCCESS",
            "ds/t/2024/01/02/b2",
            "2024/01/02/b2/",
        ] {
            assert!(names_item("bkt", "ds/t", item, given), "{given}");
        }
        for given in ["2024/01/02", "b2", "", "ds/t"] {
            assert!(!names_item("bkt", "ds/t", item, given), "{given}");
        }
    }
}
