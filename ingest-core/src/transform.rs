//! Transform mode: the batch is applied by a query over a temporary external table `temp_ext`.
//!
//! The SQL comes from a `*.sql` in a `_config/` on the batch's path. Placeholders are replaced
//! with validated identifiers only: `{dest_dataset}` (`` `project`.dataset ``), `{dest_table}`
//! (the table id without decorator) and `{dest_partition}` (the decorator's digits, or empty).
//! Values from the path are passed as named query parameters, never pasted into SQL text:
//! `@batch_timestamp` (TIMESTAMP), `@batch_id` (STRING) and `@source_uri` (STRING, the marker).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::BatchConfig;
use crate::destination::Batch;
use crate::plan::{job_id, job_labels, BatchFiles, LoadPlan, PlanError, PlanMode};
use crate::ports::{JobKind, JobRequest, JobStatus, QueryParameter, Warehouse, WarehouseError};
use crate::settings::{Settings, MAX_SOURCE_URIS_PER_JOB};

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

/// Replaces the placeholders of a transform SQL with the batch's validated identifiers.
///
/// ```
/// use ingest_core::ports::TableRef;
/// use ingest_core::transform::render_sql;
/// let dest = TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(),
///                       partition: Some("$2020010203".into()) };
/// assert_eq!(
///     render_sql("INSERT {dest_dataset}.{dest_table} SELECT * FROM temp_ext -- {dest_partition}", &dest),
///     "INSERT `p`.ds.t SELECT * FROM temp_ext -- 2020010203"
/// );
/// ```
pub fn render_sql(sql: &str, destination: &crate::ports::TableRef) -> String {
    let partition = destination
        .partition
        .as_deref()
        .map(|p| p.trim_start_matches('$'))
        .unwrap_or("");
    sql.replace(
        "{dest_dataset}",
        &format!("`{}`.{}", destination.project, destination.dataset),
    )
    .replace("{dest_table}", &destination.table)
    .replace("{dest_partition}", partition)
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
    let sql = std::str::from_utf8(&sql_file.content).map_err(|e| PlanError::Invalid {
        bucket: batch.bucket.clone(),
        marker: batch.marker.clone(),
        message: format!("{} is not UTF-8: {e}", sql_file.name),
    })?;
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
    ];
    let job = JobRequest {
        project: job_project.to_string(),
        job_id: job_id(
            &settings.job_prefix,
            hint,
            &batch.bucket,
            &batch.marker,
            marker_generation,
            0,
        ),
        location: settings.bq_location.clone(),
        labels: job_labels(settings, batch, config),
        kind: JobKind::Query {
            sql: render_sql(sql, &batch.destination),
            table_definitions,
            parameters,
        },
    };
    Ok(LoadPlan {
        mode: PlanMode::Transform,
        jobs: vec![job],
        files: files.data.len(),
        bytes: files.data.iter().map(|f| f.size).sum(),
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

/// The JSON shape of a query job's parameters, as BigQuery's REST API takes them
/// (`queryParameters`), for adapters.
pub fn query_parameters_json(parameters: &[QueryParameter]) -> Value {
    Value::Array(
        parameters
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "parameterType": {"type": p.type_name},
                    "parameterValue": {"value": p.value},
                })
            })
            .collect(),
    )
}
