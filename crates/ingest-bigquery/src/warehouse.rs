//! [`BigQueryWarehouse`]: the [`Warehouse`] port over BigQuery's REST API v2.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ingest_core::ports::{
    JobKind, JobRef, JobRequest, JobStatus, LoadRecord, PartitionGranularity, TableRef,
    TimePartitioning, Warehouse, WarehouseError,
};
use serde_json::{json, Map, Value};

use crate::jobs::{job_resource, load_needs_table_schema, parse_job, sort_in_execution_order};
use crate::rest::{CallError, Method, Rest};
use crate::state_table::{
    load_record_from_row, load_record_insert_id, load_record_row, recorded_outcomes_sql,
    LOAD_STATE_PARTITION_FIELD, LOAD_STATE_SCHEMA_JSON,
};
use crate::stats::{Operation, RequestStats};
use ingest_google::{ClientLayer, Credentials, Endpoint, GoogleClient, RetryPolicy, Service};

/// BigQuery's production REST endpoint.
pub const BIGQUERY_V2_URL: &str = "https://bigquery.googleapis.com/bigquery/v2";

/// The environment variable naming a BigQuery emulator (`http://127.0.0.1:9050`).
pub const EMULATOR_HOST_ENV: &str = "BIGQUERY_EMULATOR_HOST";

/// The REST path prefix of BigQuery (and of local-bigquery, whose discovery document declares
/// `servicePath: "bigquery/v2/"`).
const V2_PATH: &str = "/bigquery/v2";

/// How long a fetched table schema is reused for [`SchemaFill::FromTable`].
const DEFAULT_SCHEMA_TTL: Duration = Duration::from_secs(60);

/// Pages of `jobs.list` read at most for one parent (1000 jobs a page).
const MAX_LIST_PAGES: usize = 100;

/// How long [`BigQueryWarehouse::query_rows`] waits for a query in all.
const QUERY_WAIT: Duration = Duration::from_secs(600);

/// Whether a load job without a schema gets its destination table's schema.
///
/// Real BigQuery appends a CSV or JSON file to an existing table using *the table's* schema
/// when the load names none, so there the adapter sends the load as the user wrote it
/// ([`SchemaFill::Never`], the default against BigQuery). The local-bigquery emulator instead
/// invents columns `column0..N` for such a CSV load and then fails ("Provided Schema does not
/// match Table … Cannot add fields (field: column0)"). Against an emulator
/// ([`BigQueryWarehouse::from_env`] with `BIGQUERY_EMULATOR_HOST` set) the adapter therefore
/// uses [`SchemaFill::FromTable`]: for a load of a text format (CSV, NEWLINE_DELIMITED_JSON)
/// with no `schema`/`schemaInline` and `autodetect` not true, it reads the destination table's
/// schema (`tables.get`, cached per table for a minute, counted as
/// [`RequestStats::tables_get_schema_fill`]) and passes it in `configuration.load.schema`. A
/// missing table gets no schema (the load creates it as BigQuery would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaFill {
    /// Send load configs as they are (real BigQuery).
    #[default]
    Never,
    /// Fill a missing schema from the existing destination table (emulators).
    FromTable,
}

/// Errors while building a [`BigQueryWarehouse`] (credentials, HTTP client).
pub type SetupError = ingest_google::SetupError;

/// The [`Warehouse`] port over BigQuery's REST API v2, on the shared client layer
/// (`ingest-google`: one `reqwest` client with rustls, Application Default Credentials).
///
/// Every request is retried on 429, 5xx, 403 `rateLimitExceeded`, timeouts and connection
/// errors with capped exponential back-off and full jitter ([`RetryPolicy`]); what outlives
/// the retries is [`WarehouseError::Transient`]. Other 4xx are
/// [`WarehouseError::Rejected`]; a 409 on `jobs.insert` is [`WarehouseError::AlreadyExists`].
/// Statuses are read from the response itself, so an HTML or plain-text error body maps the
/// same as Google's JSON errors.
///
/// Requests per [`Warehouse`] method (without retries):
/// - `submit`: 1 `jobs.insert` (+ 1 `tables.get` for [`SchemaFill::FromTable`] loads whose
///   schema is not cached);
/// - `job_status`: 1 `jobs.get`;
/// - `child_jobs`: 1 `jobs.list` per page of 1000 children;
/// - `record_outcome`: 1 `tabledata.insertAll`; when the table is missing, + 1
///   `datasets.insert` + 1 `tables.insert` + 1 `tabledata.insertAll`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use ingest_bigquery::BigQueryWarehouse;
/// use ingest_core::ports::{JobRef, Warehouse};
///
/// // BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050 → the emulator, else ADC and BigQuery.
/// let warehouse = BigQueryWarehouse::from_env("my-project").await?;
/// let job = JobRef { project: "my-project".into(), job_id: "j1".into(), location: None };
/// if let Some(status) = warehouse.job_status(&job).await? {
///     println!("{:?} {:?}", status.state, status.error);
/// }
/// println!("{} requests", warehouse.stats().total());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BigQueryWarehouse {
    rest: Rest,
    project: String,
    schema_fill: SchemaFill,
    schema_ttl: Duration,
    schema_cache: Mutex<HashMap<String, (Instant, Value)>>,
    dataset_location: Option<String>,
}

/// Quotes `project.dataset.table` for Standard SQL, refusing names that could break out of
/// the backticks.
fn quoted_table(table: &TableRef) -> Result<String, WarehouseError> {
    let parts = [&table.project, &table.dataset, &table.table];
    if parts
        .iter()
        .any(|p| p.is_empty() || p.chars().any(|c| c == '`' || c == '\\' || c.is_control()))
    {
        return Err(WarehouseError::Rejected {
            what: table.to_string(),
            message: "table name is empty or contains a backtick, backslash or control character"
                .into(),
        });
    }
    Ok(format!(
        "`{}.{}.{}`",
        table.project, table.dataset, table.table
    ))
}

/// `[...]` or `{"fields": [...]}` → the `TableSchema` JSON `{"fields": [...]}`, checking that
/// every field has a string `name` and `type`.
fn table_schema_from_json(schema_json: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(schema_json).map_err(|e| e.to_string())?;
    let fields = match value {
        Value::Array(fields) => fields,
        Value::Object(mut object) => match object.remove("fields") {
            Some(Value::Array(fields)) => fields,
            _ => return Err("expected an array of fields or {\"fields\": [...]}".into()),
        },
        _ => return Err("expected an array of fields or {\"fields\": [...]}".into()),
    };
    if fields.is_empty() {
        return Err("the schema has no fields".into());
    }
    for (index, field) in fields.iter().enumerate() {
        let name = field.get("name").and_then(Value::as_str);
        let kind = field.get("type").and_then(Value::as_str);
        if name.is_none() || kind.is_none() {
            return Err(format!(
                "field {index} needs a string \"name\" and \"type\""
            ));
        }
    }
    Ok(json!({ "fields": fields }))
}

/// The value of one cell (`{"v": …}` content) of a `jobs.query` row, as JSON: REPEATED
/// fields become arrays, RECORDs objects, scalars stay as BigQuery sends them (strings, or
/// null for NULL).
fn cell_value(field: &Value, value: &Value) -> Value {
    let repeated = field.get("mode").and_then(Value::as_str) == Some("REPEATED");
    if repeated {
        let mut element = field.clone();
        if let Some(object) = element.as_object_mut() {
            object.insert("mode".into(), json!("NULLABLE"));
        }
        return match value.as_array() {
            Some(items) => Value::Array(
                items
                    .iter()
                    .map(|item| cell_value(&element, item.get("v").unwrap_or(&Value::Null)))
                    .collect(),
            ),
            None => Value::Array(vec![]),
        };
    }
    let kind = field
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(kind, "RECORD" | "STRUCT") {
        let empty = Vec::new();
        let sub_fields = field
            .get("fields")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        return match value.get("f").and_then(Value::as_array) {
            Some(cells) => Value::Object(row_object(sub_fields, cells)),
            None => Value::Null,
        };
    }
    value.clone()
}

/// One `{"f": [{"v": …}, …]}` row as an object keyed by the schema's field names.
fn row_object(fields: &[Value], cells: &[Value]) -> Map<String, Value> {
    fields
        .iter()
        .zip(cells)
        .map(|(field, cell)| {
            let name = field
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (
                name,
                cell_value(field, cell.get("v").unwrap_or(&Value::Null)),
            )
        })
        .collect()
}

/// Rows of a `jobs.query` / `jobs.getQueryResults` response as objects.
fn response_rows(response: &Value, out: &mut Vec<Value>) {
    let empty = Vec::new();
    let fields = response
        .get("schema")
        .and_then(|s| s.get("fields"))
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for row in response
        .get("rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cells = row.get("f").and_then(Value::as_array).unwrap_or(&empty);
        out.push(Value::Object(row_object(fields, cells)));
    }
}

/// Per-row errors of a `tabledata.insertAll` response, as (any retryable?, message).
fn insert_errors(response: &Value) -> Option<(bool, String)> {
    let errors = response.get("insertErrors")?.as_array()?;
    if errors.is_empty() {
        return None;
    }
    let mut retryable = false;
    let mut messages = Vec::new();
    for row in errors {
        for error in row
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let reason = error
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            retryable |= matches!(reason, "backendError" | "internalError" | "timeout");
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            messages.push(format!("{reason}: {message}"));
        }
    }
    Some((
        retryable,
        format!("insertAll row errors: {}", messages.join("; ")),
    ))
}

impl BigQueryWarehouse {
    /// A warehouse for `project` (the project that runs helper queries and is the default for
    /// [`query_rows`](Self::query_rows)), its endpoint from the environment
    /// ([`Endpoint::from_env`]):
    /// - `BIGQUERY_EMULATOR_HOST` set (e.g. `http://127.0.0.1:9050`, scheme optional) → that
    ///   emulator at `{host}/bigquery/v2`, no credentials, [`SchemaFill::FromTable`];
    /// - otherwise BigQuery (or `BQ_INGEST_BIGQUERY_ENDPOINT`) with Application Default
    ///   Credentials and [`SchemaFill::Never`].
    ///
    /// Errors: [`SetupError`] when no credentials are found.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ingest_bigquery::SetupError> {
    /// let warehouse = ingest_bigquery::BigQueryWarehouse::from_env("my-project").await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_env(project: impl Into<String>) -> Result<Self, SetupError> {
        let layer = ClientLayer::new()?;
        Self::from_layer(&layer, project, RetryPolicy::default()).await
    }

    /// A warehouse on a shared client layer, its endpoint from the environment (as
    /// [`from_env`](Self::from_env)).
    pub async fn from_layer(
        layer: &ClientLayer,
        project: impl Into<String>,
        retry: RetryPolicy,
    ) -> Result<Self, SetupError> {
        let root = Endpoint::from_env(Service::BigQuery);
        let emulator = root.emulator;
        let endpoint = Endpoint {
            url: format!("{}{V2_PATH}", root.url),
            emulator,
        };
        let client = layer.client(Service::BigQuery, endpoint, retry).await?;
        let warehouse = Self::new(project, client);
        Ok(if emulator {
            warehouse.with_schema_fill(SchemaFill::FromTable)
        } else {
            warehouse
        })
    }

    /// A warehouse talking to an emulator at `host` (`http://127.0.0.1:9050` or
    /// `127.0.0.1:9050`) without credentials, with [`SchemaFill::FromTable`].
    ///
    /// ```
    /// let warehouse = ingest_bigquery::BigQueryWarehouse::for_emulator("p", "127.0.0.1:9050")?;
    /// assert_eq!(warehouse.base_url(), "http://127.0.0.1:9050/bigquery/v2");
    /// assert_eq!(warehouse.schema_fill(), ingest_bigquery::SchemaFill::FromTable);
    /// # Ok::<(), ingest_bigquery::SetupError>(())
    /// ```
    pub fn for_emulator(project: impl Into<String>, host: &str) -> Result<Self, SetupError> {
        let root = Endpoint::emulator(host).validated()?;
        let endpoint = Endpoint {
            url: format!("{}{V2_PATH}", root.url),
            emulator: true,
        };
        let client = ClientLayer::new()?.client_with(
            Service::BigQuery,
            endpoint,
            Credentials::Anonymous,
            RetryPolicy::default(),
        );
        Ok(Self::new(project, client).with_schema_fill(SchemaFill::FromTable))
    }

    /// A warehouse for `project` at `base_url` (the REST v2 root, e.g. [`BIGQUERY_V2_URL`])
    /// with the given credentials, [`SchemaFill::Never`] and the default [`RetryPolicy`].
    ///
    /// ```
    /// use ingest_bigquery::{BigQueryWarehouse, RetryPolicy};
    /// use ingest_google::Credentials;
    /// let warehouse = BigQueryWarehouse::at("p", "http://127.0.0.1:1/bigquery/v2", Credentials::Anonymous)?
    ///     .with_retry_policy(RetryPolicy::fast(2));
    /// assert_eq!(warehouse.project(), "p");
    /// # Ok::<(), ingest_bigquery::SetupError>(())
    /// ```
    pub fn at(
        project: impl Into<String>,
        base_url: &str,
        credentials: Credentials,
    ) -> Result<Self, SetupError> {
        let client = ClientLayer::new()?.client_with(
            Service::BigQuery,
            Endpoint::google(base_url).validated()?,
            credentials,
            RetryPolicy::default(),
        );
        Ok(Self::new(project, client))
    }

    /// A warehouse for `project` over a client whose endpoint is the REST v2 root.
    pub fn new(project: impl Into<String>, client: GoogleClient) -> Self {
        BigQueryWarehouse {
            rest: Rest { client },
            project: project.into(),
            schema_fill: SchemaFill::Never,
            schema_ttl: DEFAULT_SCHEMA_TTL,
            schema_cache: Mutex::new(HashMap::new()),
            dataset_location: None,
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(self, policy: RetryPolicy) -> Self {
        let client = self.rest.client.with_retry_policy(policy);
        BigQueryWarehouse {
            rest: Rest { client },
            ..self
        }
    }

    /// Sets whether loads without a schema get the destination table's (see [`SchemaFill`]).
    pub fn with_schema_fill(mut self, fill: SchemaFill) -> Self {
        self.schema_fill = fill;
        self
    }

    /// How long a table schema fetched for [`SchemaFill::FromTable`] is reused (default 60 s).
    pub fn with_schema_cache_ttl(mut self, ttl: Duration) -> Self {
        self.schema_ttl = ttl;
        self
    }

    /// The location of datasets this adapter creates (`US`, `EU`, …; default: BigQuery's).
    pub fn with_dataset_location(mut self, location: impl Into<String>) -> Self {
        self.dataset_location = Some(location.into());
        self
    }

    /// The default project.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The REST v2 root URL requests go to.
    pub fn base_url(&self) -> &str {
        self.rest.client.endpoint()
    }

    /// The client.
    pub fn client(&self) -> &GoogleClient {
        &self.rest.client
    }

    /// The schema-fill mode (see [`SchemaFill`]).
    pub fn schema_fill(&self) -> SchemaFill {
        self.schema_fill
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        *self.rest.client.retry_policy()
    }

    /// Requests sent so far, per operation (see [`RequestStats::since`] to count a batch's).
    pub fn stats(&self) -> RequestStats {
        RequestStats::of(&self.rest.client.counters().snapshot())
    }

    /// The destination schema to put in a load without one, per [`SchemaFill`].
    async fn schema_for(&self, request: &JobRequest) -> Result<Option<Value>, WarehouseError> {
        let JobKind::Load {
            destination,
            config,
            ..
        } = &request.kind
        else {
            return Ok(None);
        };
        if self.schema_fill != SchemaFill::FromTable || !load_needs_table_schema(config) {
            return Ok(None);
        }
        let key = format!(
            "{}.{}.{}",
            destination.project, destination.dataset, destination.table
        );
        if let Ok(cache) = self.schema_cache.lock() {
            if let Some((fetched, schema)) = cache.get(&key) {
                if fetched.elapsed() < self.schema_ttl {
                    return Ok(Some(schema.clone()));
                }
            }
        }
        let table = match self
            .rest
            .call(
                Operation::TablesGetSchemaFill,
                Method::Get,
                &[
                    "projects",
                    &destination.project,
                    "datasets",
                    &destination.dataset,
                    "tables",
                    &destination.table,
                ],
                &[],
                None,
            )
            .await
        {
            Ok(table) => table,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e.into_warehouse(key)),
        };
        let Some(schema) = table.get("schema").filter(|s| {
            s.get("fields")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
        }) else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.schema_cache.lock() {
            cache.insert(key, (Instant::now(), schema.clone()));
        }
        Ok(Some(schema.clone()))
    }

    /// Creates dataset `project.dataset` unless it exists (`datasets.insert`, one request; a
    /// 409 means it exists). Returns whether this call created it.
    ///
    /// Errors: [`WarehouseError::Rejected`] / [`WarehouseError::Transient`] naming the dataset.
    ///
    /// ```no_run
    /// # async fn demo(warehouse: &ingest_bigquery::BigQueryWarehouse) -> Result<(), ingest_core::ports::WarehouseError> {
    /// let created = warehouse.create_dataset_if_missing("my-project", "ingest_state").await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_dataset_if_missing(
        &self,
        project: &str,
        dataset: &str,
    ) -> Result<bool, WarehouseError> {
        let mut body = json!({
            "datasetReference": { "projectId": project, "datasetId": dataset },
        });
        if let Some(location) = &self.dataset_location {
            body["location"] = json!(location);
        }
        match self
            .rest
            .call(
                Operation::DatasetsInsert,
                Method::Post,
                &["projects", project, "datasets"],
                &[],
                Some(&body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(409) => Ok(false),
            Err(e) => Err(e.into_warehouse(format!("dataset {project}.{dataset}"))),
        }
    }

    /// Creates table `project.dataset.table` with `schema_json` (a JSON array of fields as
    /// `bq mk --schema` takes, or `{"fields": [...]}`), unless it exists. Returns whether this
    /// call created it (`false`: the table existed, its schema untouched).
    ///
    /// Errors: [`WarehouseError::Rejected`] for an invalid schema or a missing dataset,
    /// naming the table.
    ///
    /// ```no_run
    /// # async fn demo(warehouse: &ingest_bigquery::BigQueryWarehouse) -> Result<(), ingest_core::ports::WarehouseError> {
    /// warehouse
    ///     .create_table("my-project", "ds", "t", r#"[{"name": "id", "type": "INT64"}]"#)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
        schema_json: &str,
    ) -> Result<bool, WarehouseError> {
        self.create_table_partitioned(project, dataset, table, schema_json, None)
            .await
    }

    async fn create_table_partitioned(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
        schema_json: &str,
        day_partition_field: Option<&str>,
    ) -> Result<bool, WarehouseError> {
        let what = format!("{project}.{dataset}.{table}");
        let schema =
            table_schema_from_json(schema_json).map_err(|message| WarehouseError::Rejected {
                what: what.clone(),
                message: format!("invalid schema: {message}"),
            })?;
        let mut body = json!({
            "tableReference": { "projectId": project, "datasetId": dataset, "tableId": table },
            "schema": schema,
        });
        if let Some(field) = day_partition_field {
            body["timePartitioning"] = json!({ "type": "DAY", "field": field });
        }
        match self
            .rest
            .call(
                Operation::TablesInsert,
                Method::Post,
                &["projects", project, "datasets", dataset, "tables"],
                &[],
                Some(&body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(409) => Ok(false),
            Err(e) => Err(e.into_warehouse(what)),
        }
    }

    /// `tables.get` of `table` (its decorator ignored) with `query`.
    async fn tables_get(
        &self,
        table: &TableRef,
        query: &[(&str, &str)],
    ) -> Result<Value, CallError> {
        let path = [
            "projects",
            table.project.as_str(),
            "datasets",
            table.dataset.as_str(),
            "tables",
            table.table.as_str(),
        ];
        self.rest
            .call(Operation::TablesGet, Method::Get, &path, query, None)
            .await
    }

    /// Runs a Standard SQL query in the default project (`jobs.query`, then
    /// `jobs.getQueryResults` while it runs or has more pages) and returns its rows as JSON
    /// objects keyed by column name. Values are as BigQuery's REST API gives them: scalars as
    /// strings (INT64 `"3"`, TIMESTAMP as epoch seconds `"1.6E9"`), NULL as `null`, REPEATED as
    /// arrays, RECORD as objects. For tests and the demo; not used by the trait methods.
    ///
    /// Errors: [`WarehouseError::Rejected`] for an invalid query, naming the SQL's start.
    ///
    /// ```no_run
    /// # async fn demo(warehouse: &ingest_bigquery::BigQueryWarehouse) -> Result<(), ingest_core::ports::WarehouseError> {
    /// let rows = warehouse.query_rows("SELECT 1 AS one").await?;
    /// assert_eq!(rows[0]["one"], "1");
    /// # Ok(()) }
    /// ```
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Value>, WarehouseError> {
        let what = {
            let start: String = sql.chars().take(80).collect();
            format!("query {start:?}")
        };
        let mut body = json!({ "query": sql, "useLegacySql": false, "timeoutMs": 10_000 });
        if let Some(location) = &self.dataset_location {
            body["location"] = json!(location);
        }
        let project = self.project.clone();
        let mut response = self
            .rest
            .call(
                Operation::JobsQuery,
                Method::Post,
                &["projects", &project, "queries"],
                &[],
                Some(&body),
            )
            .await
            .map_err(|e| e.into_warehouse(what.clone()))?;
        let reference = response.get("jobReference").cloned().unwrap_or(Value::Null);
        let job_id = reference
            .get("jobId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let location = reference
            .get("location")
            .and_then(Value::as_str)
            .map(str::to_string);
        let deadline = Instant::now() + QUERY_WAIT;
        let mut rows = Vec::new();
        let mut seen_tokens = Vec::new();
        loop {
            let complete = response
                .get("jobComplete")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let mut page_token = None;
            if complete {
                response_rows(&response, &mut rows);
                page_token = response
                    .get("pageToken")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                match &page_token {
                    None => return Ok(rows),
                    Some(token) if seen_tokens.contains(token) => return Ok(rows),
                    Some(token) => seen_tokens.push(token.clone()),
                }
            }
            let Some(job_id) = &job_id else {
                return Err(WarehouseError::Rejected {
                    what,
                    message: "incomplete query response without a jobReference".into(),
                });
            };
            if Instant::now() > deadline {
                return Err(WarehouseError::Transient {
                    what,
                    message: format!("job {job_id} still running after {QUERY_WAIT:?}"),
                });
            }
            let mut query: Vec<(&str, &str)> = vec![("timeoutMs", "10000")];
            if let Some(location) = &location {
                query.push(("location", location));
            }
            if let Some(token) = &page_token {
                query.push(("pageToken", token));
            }
            response = self
                .rest
                .call(
                    Operation::JobsGetQueryResults,
                    Method::Get,
                    &["projects", &project, "queries", job_id],
                    &query,
                    None,
                )
                .await
                .map_err(|e| e.into_warehouse(format!("job {job_id}")))?;
        }
    }

    /// The number of rows of `table` (`SELECT COUNT(*)` through [`query_rows`](Self::query_rows),
    /// so rows still in the streaming buffer count). A partition decorator is ignored: the
    /// whole table is counted.
    ///
    /// Errors: [`WarehouseError::Rejected`] for a missing table or a name that cannot be
    /// quoted.
    ///
    /// ```no_run
    /// # async fn demo(warehouse: &ingest_bigquery::BigQueryWarehouse) -> Result<(), ingest_core::ports::WarehouseError> {
    /// use ingest_core::ports::TableRef;
    /// let table = TableRef { project: "p".into(), dataset: "ds".into(), table: "t".into(), partition: None };
    /// let rows = warehouse.table_row_count(&table).await?;
    /// # Ok(()) }
    /// ```
    pub async fn table_row_count(&self, table: &TableRef) -> Result<u64, WarehouseError> {
        let sql = format!("SELECT COUNT(*) AS n FROM {}", quoted_table(table)?);
        let rows = self.query_rows(&sql).await?;
        rows.first()
            .and_then(|row| crate::jobs::int64(row.get("n")))
            .ok_or_else(|| WarehouseError::Rejected {
                what: table.to_string(),
                message: format!("COUNT(*) returned no number: {rows:?}"),
            })
    }

    /// `tabledata.insertAll` of one row.
    async fn insert_row(&self, table: &TableRef, body: &Value) -> Result<(), CallError> {
        let response = self
            .rest
            .call(
                Operation::TabledataInsertAll,
                Method::Post,
                &[
                    "projects",
                    &table.project,
                    "datasets",
                    &table.dataset,
                    "tables",
                    &table.table,
                    "insertAll",
                ],
                &[],
                Some(body),
            )
            .await?;
        match insert_errors(&response) {
            None => Ok(()),
            Some((transient, message)) => Err(CallError {
                status: Some(200),
                reason: None,
                message,
                transient,
            }),
        }
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    async fn submit(&self, request: &JobRequest) -> Result<JobStatus, WarehouseError> {
        let schema = self.schema_for(request).await?;
        let body = job_resource(request, schema.as_ref());
        let fallback = JobRef {
            project: request.project.clone(),
            job_id: request.job_id.clone(),
            location: request.location.clone(),
        };
        match self
            .rest
            .call(
                Operation::JobsInsert,
                Method::Post,
                &["projects", &request.project, "jobs"],
                &[],
                Some(&body),
            )
            .await
        {
            Ok(job) => Ok(parse_job(&job, &fallback)),
            Err(e) if e.status == Some(409) => Err(WarehouseError::AlreadyExists {
                job_id: request.job_id.clone(),
            }),
            Err(e) => Err(e.into_warehouse(format!("job {}", request.job_id))),
        }
    }

    async fn job_status(&self, job: &JobRef) -> Result<Option<JobStatus>, WarehouseError> {
        let mut query = Vec::new();
        if let Some(location) = &job.location {
            query.push(("location", location.as_str()));
        }
        match self
            .rest
            .call(
                Operation::JobsGet,
                Method::Get,
                &["projects", &job.project, "jobs", &job.job_id],
                &query,
                None,
            )
            .await
        {
            Ok(resource) => Ok(Some(parse_job(&resource, job))),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e.into_warehouse(format!("job {}", job.job_id))),
        }
    }

    async fn child_jobs(&self, parent: &JobRef) -> Result<Vec<JobStatus>, WarehouseError> {
        let mut children = Vec::new();
        let mut page_token: Option<String> = None;
        let mut seen_tokens: Vec<String> = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![
                ("parentJobId", parent.job_id.as_str()),
                ("allUsers", "false"),
                ("projection", "full"),
                ("maxResults", "1000"),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.as_str()));
            }
            let page = self
                .rest
                .call(
                    Operation::JobsList,
                    Method::Get,
                    &["projects", &parent.project, "jobs"],
                    &query,
                    None,
                )
                .await
                .map_err(|e| e.into_warehouse(format!("children of job {}", parent.job_id)))?;
            let fallback = JobRef {
                project: parent.project.clone(),
                job_id: String::new(),
                location: parent.location.clone(),
            };
            for item in page
                .get("jobs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let status = parse_job(item, &fallback);
                if !status.job.job_id.is_empty() && status.job.job_id != parent.job_id {
                    children.push(status);
                }
            }
            page_token = page
                .get("nextPageToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            match &page_token {
                None => break,
                Some(token) if seen_tokens.contains(token) => break,
                Some(token) => seen_tokens.push(token.clone()),
            }
        }
        sort_in_execution_order(&mut children);
        Ok(children)
    }

    async fn record_outcome(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        self.record_outcome_row(table, record).await
    }

    async fn recorded_outcomes(
        &self,
        table: &TableRef,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<LoadRecord>, WarehouseError> {
        // One tables.get first: a missing table (or dataset) has no rows, and a query of it
        // would fail with an error whose wording differs between BigQuery and emulators.
        let exists = self.tables_get(table, &[]).await;
        match exists {
            Ok(_) => {}
            Err(e) if e.status == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(e.into_warehouse(table.to_string())),
        }
        let rows = self
            .query_rows(&recorded_outcomes_sql(table, since))
            .await?;
        Ok(rows.iter().filter_map(load_record_from_row).collect())
    }

    async fn time_partitioning(
        &self,
        table: &TableRef,
    ) -> Result<Option<TimePartitioning>, WarehouseError> {
        let resource = self
            .tables_get(table, &[("fields", "timePartitioning")])
            .await
            .map_err(|e| e.into_warehouse(table_what(table)))?;
        Ok(time_partitioning_of(&resource))
    }

    async fn create_table(
        &self,
        table: &TableRef,
        resource: &serde_json::Map<String, Value>,
    ) -> Result<bool, WarehouseError> {
        let mut body = Value::Object(resource.clone());
        body["tableReference"] = json!({
            "projectId": table.project, "datasetId": table.dataset, "tableId": table.table,
        });
        let path = [
            "projects",
            table.project.as_str(),
            "datasets",
            table.dataset.as_str(),
            "tables",
        ];
        match self
            .rest
            .call(
                Operation::TablesInsert,
                Method::Post,
                &path,
                &[],
                Some(&body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(409) => Ok(false),
            Err(e) => Err(e.into_warehouse(table_what(table))),
        }
    }

    async fn table_schema(&self, table: &TableRef) -> Result<Option<Value>, WarehouseError> {
        let resource = self
            .tables_get(table, &[("fields", "schema")])
            .await
            .map_err(|e| e.into_warehouse(table_what(table)))?;
        Ok(resource.get("schema").cloned())
    }
}

/// `table p.ds.t` (without decorator), as errors about a table name it.
fn table_what(table: &TableRef) -> String {
    format!("table {}.{}.{}", table.project, table.dataset, table.table)
}

/// `Table.timePartitioning` of a `tables.get` answer: `type` (BigQuery's default `DAY` when
/// absent) and `field`; `None` without it or with a type this version does not know.
fn time_partitioning_of(table: &Value) -> Option<TimePartitioning> {
    let partitioning = table.get("timePartitioning")?.as_object()?;
    let kind = partitioning
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("DAY");
    Some(TimePartitioning {
        granularity: PartitionGranularity::parse(kind)?,
        field: partitioning
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

impl BigQueryWarehouse {
    /// `insertAll`, retried (at most 5 times, from 50 ms) when the answer is a commit conflict
    /// between concurrent inserts. local-bigquery (DuckLake) answers concurrent `insertAll`s
    /// into one table with `400 Failed to commit DuckLake transaction`; BigQuery's streaming
    /// inserts never do, so against BigQuery this never retries. Every other error is returned
    /// at once.
    async fn insert_row_retrying_conflicts(
        &self,
        target: &TableRef,
        body: &Value,
    ) -> Result<(), CallError> {
        let mut attempt = 0u32;
        loop {
            match self.insert_row(target, body).await {
                Err(e) if attempt < 5 && is_commit_conflict(&e.message) => {
                    tokio::time::sleep(Duration::from_millis(50u64 << attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn record_outcome_row(
        &self,
        table: &TableRef,
        record: &LoadRecord,
    ) -> Result<(), WarehouseError> {
        // The state table is written whole: a partition decorator on `table` is ignored (rows
        // land in the partition of their `ended_at`).
        let target = TableRef {
            partition: None,
            ..table.clone()
        };
        let what = target.to_string();
        let body = json!({
            "rows": [{
                "insertId": load_record_insert_id(record),
                "json": Value::Object(load_record_row(record)),
            }],
        });
        match self.insert_row_retrying_conflicts(&target, &body).await {
            Ok(()) => return Ok(()),
            Err(e) if e.status == Some(404) => {
                tracing::info!(table = %what, "load-state table missing; creating it");
            }
            Err(e) => return Err(e.into_warehouse(what)),
        }
        self.create_dataset_if_missing(&target.project, &target.dataset)
            .await?;
        self.create_table_partitioned(
            &target.project,
            &target.dataset,
            &target.table,
            LOAD_STATE_SCHEMA_JSON,
            Some(LOAD_STATE_PARTITION_FIELD),
        )
        .await?;
        match self.insert_row_retrying_conflicts(&target, &body).await {
            Ok(()) => Ok(()),
            // BigQuery may take a while before streaming inserts see a new table: try later.
            Err(e) if e.status == Some(404) => Err(WarehouseError::Transient {
                what,
                message: format!(
                    "table created but not yet visible to insertAll: {}",
                    e.message
                ),
            }),
            Err(e) => Err(e.into_warehouse(what)),
        }
    }
}

/// Whether an error message is a commit conflict between concurrent writes (an emulator's).
fn is_commit_conflict(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("failed to commit") && m.contains("transaction")
}

#[cfg(test)]
mod tests;
