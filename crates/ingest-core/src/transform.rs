//! Transform mode: the batch is applied by a query over a temporary external table `temp_ext`.
//!
//! The SQL comes from a `*.sql` in a `_config/` on the batch's path. Its placeholders expand to
//! quoted identifiers or a query parameter ([`crate::sql`]): `{dest_dataset}` →
//! `` `project`.`dataset` ``, `{dest_table}` → `` `table` ``, `{dest_partition}` →
//! `@dest_partition`. Values from the path are passed as named query parameters, never pasted
//! into SQL text: `@batch_timestamp` (TIMESTAMP), `@batch_id` (STRING), `@source_uri` (STRING,
//! the marker) and `@dest_partition` (STRING, the decorator's digits).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::BatchConfig;
use crate::destination::Batch;
use crate::plan::{job_labels, BatchFiles, JobIdStem, LoadPlan, PlanError, PlanMode};
use crate::ports::{JobKind, JobRequest, JobStatus, QueryParameter, Warehouse, WarehouseError};
use crate::settings::{Settings, MAX_SOURCE_URIS_PER_JOB};
use crate::sql::{partition_digits, render, DEST_PARTITION_PARAMETER};

/// The name of the temporary external table the transform SQL reads.
pub const EXTERNAL_TABLE_NAME: &str = "temp_ext";

/// DML statement types whose affected-row count is checked.
pub const DML_STATEMENT_TYPES: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];

/// The external table definition used when no `external.json` is on the path.
pub fn default_external_definition() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sourceFormat".into(), Value::String("PARQUET".into()));
    m
}

/// The `temp_ext` definition for a batch: the nearest `external.json` (or
/// [`default_external_definition`]) with `sourceUris` set to the batch's data files and
/// `hivePartitioningOptions.sourceUriPrefix` completed with the batch prefix.
pub fn external_definition(
    config: &BatchConfig,
    batch: &Batch,
    files: &BatchFiles,
) -> Map<String, Value> {
    let mut def = config
        .external
        .clone()
        .unwrap_or_else(default_external_definition);
    let uris: Vec<Value> = files
        .data
        .iter()
        .map(|f| Value::String(format!("gs://{}/{}", batch.bucket, f.name)))
        .collect();
    def.insert("sourceUris".into(), Value::Array(uris));
    if let Some(Value::Object(hive)) = def.get_mut("hivePartitioningOptions") {
        if !hive.contains_key("sourceUriPrefix") {
            hive.insert(
                "sourceUriPrefix".into(),
                Value::String(format!("gs://{}/{}", batch.bucket, batch.batch_prefix)),
            );
        }
    }
    def
}

/// Plans the single query job of a batch in transform mode.
pub fn plan_transform(
    settings: &Settings,
    batch: &Batch,
    config: &BatchConfig,
    files: &BatchFiles,
    job_project: &str,
    hint: &str,
    marker_generation: i64,
) -> Result<LoadPlan, PlanError> {
    let stem = JobIdStem::of_batch(settings, hint, batch, marker_generation);
    plan_transform_with(settings, batch, config, files, job_project, &stem)
}

/// [`plan_transform`] with the stem of the batch's job ids already made.
pub(crate) fn plan_transform_with(
    settings: &Settings,
    batch: &Batch,
    config: &BatchConfig,
    files: &BatchFiles,
    job_project: &str,
    stem: &JobIdStem,
) -> Result<LoadPlan, PlanError> {
    let Some(sql_file) = config.transform_sql.as_ref() else {
        return Err(PlanError::Invalid {
            bucket: batch.bucket.clone(),
            marker: batch.marker.clone(),
            message: "transform mode without a transform SQL".into(),
        });
    };
    if files.data.is_empty() {
        return Err(PlanError::NoDataFiles {
            bucket: batch.bucket.clone(),
            marker: batch.marker.clone(),
        });
    }
    if files.data.len() > MAX_SOURCE_URIS_PER_JOB {
        return Err(PlanError::Invalid {
            bucket: batch.bucket.clone(),
            marker: batch.marker.clone(),
            message: format!(
                "{} data files: an external table takes at most {MAX_SOURCE_URIS_PER_JOB} URIs",
                files.data.len()
            ),
        });
    }
    let invalid = |message: String| PlanError::Invalid {
        bucket: batch.bucket.clone(),
        marker: batch.marker.clone(),
        message,
    };
    let sql = std::str::from_utf8(&sql_file.content)
        .map_err(|e| invalid(format!("{} is not UTF-8: {e}", sql_file.name)))?;
    let sql =
        render(sql, &batch.destination).map_err(|e| invalid(format!("{}: {e}", sql_file.name)))?;
    let mut table_definitions = BTreeMap::new();
    table_definitions.insert(
        EXTERNAL_TABLE_NAME.to_string(),
        Value::Object(external_definition(config, batch, files)),
    );
    let parameters = vec![
        QueryParameter {
            name: "batch_timestamp".into(),
            type_name: "TIMESTAMP".into(),
            value: batch
                .batch_timestamp
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        },
        QueryParameter {
            name: "batch_id".into(),
            type_name: "STRING".into(),
            value: batch.batch_id.clone(),
        },
        QueryParameter {
            name: "source_uri".into(),
            type_name: "STRING".into(),
            value: Some(format!("gs://{}/{}", batch.bucket, batch.marker)),
        },
        QueryParameter {
            name: DEST_PARTITION_PARAMETER.into(),
            type_name: "STRING".into(),
            value: Some(partition_digits(&batch.destination))
                .filter(|d| !d.is_empty())
                .map(str::to_string),
        },
    ];
    let job = JobRequest {
        project: job_project.to_string(),
        job_id: stem.part(0),
        location: settings.bq_location.clone(),
        labels: job_labels(settings, batch, config),
        kind: JobKind::Query {
            sql,
            table_definitions,
            parameters,
        },
    };
    Ok(LoadPlan {
        mode: PlanMode::Transform,
        jobs: vec![job],
        files: files.data.len(),
        bytes: files.data.iter().map(|f| f.size).sum(),
        create_table: config.table_resource.clone().map(|resource| {
            let table = crate::ports::TableRef {
                partition: None,
                ..batch.destination.clone()
            };
            (table, resource)
        }),
    })
}

/// With `FAIL_ON_ZERO_DML_ROWS_AFFECTED`: the message of the first DML statement that affected
/// no row — in a multi-statement script every child job is checked — or `None`.
pub async fn check_dml_rows(
    warehouse: &dyn Warehouse,
    statuses: &[JobStatus],
) -> Result<Option<String>, WarehouseError> {
    for status in statuses {
        if status.statement_type.as_deref() == Some("SCRIPT") {
            for child in warehouse.child_jobs(&status.job).await? {
                if let Some(msg) = zero_dml(&child) {
                    return Ok(Some(format!("{msg} (in script {})", status.job.job_id)));
                }
            }
        } else if let Some(msg) = zero_dml(status) {
            return Ok(Some(msg));
        }
    }
    Ok(None)
}

fn zero_dml(status: &JobStatus) -> Option<String> {
    let kind = status.statement_type.as_deref()?;
    if DML_STATEMENT_TYPES.contains(&kind) && status.dml_affected_rows == Some(0) {
        Some(format!(
            "job {}: {kind} affected no row (FAIL_ON_ZERO_DML_ROWS_AFFECTED=true)",
            status.job.job_id
        ))
    } else {
        None
    }
}
