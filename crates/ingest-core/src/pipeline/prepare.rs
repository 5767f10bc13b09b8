//! From a success marker to a planned batch: the `_config/` folders on the way read (through a
//! cache keyed by generation) and merged, the destination resolved, the batch listed, its jobs
//! planned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Context, Fatal, Step};
use crate::config::{config_prefixes, files_to_read, BatchConfig, ConfigDir, ConfigFile};
use crate::destination::{resolve_batch, Batch, DestinationError};
use crate::event::ObjectEvent;
use crate::listing::Listing;
use crate::outcome::IngestError;
use crate::plan::{
    job_id_hint, plan_listed_load, plan_listed_partitioned_load, select, JobIdStem, JobIds,
    LoadPlan, PlanInput, Selection, PARTS_LABEL,
};
use crate::ports::{JobRequest, ObjectMeta, ObjectStore, PartitionGranularity, StoreError};
use crate::settings::Settings;

/// Config file contents already read, keyed by (bucket, name, generation): a generation never
/// changes content, so entries never go stale; the cache is bounded and cleared when full.
#[derive(Debug, Default)]
pub(crate) struct ConfigCache {
    entries: Mutex<HashMap<CacheKey, Arc<Vec<u8>>>>,
}

/// (bucket, object name, generation).
type CacheKey = (String, String, i64);

const CONFIG_CACHE_CAPACITY: usize = 4096;

impl ConfigCache {
    fn get(&self, bucket: &str, name: &str, generation: i64) -> Option<Arc<Vec<u8>>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(bucket.to_string(), name.to_string(), generation))
            .cloned()
    }

    fn put(&self, bucket: &str, name: &str, generation: i64, content: Arc<Vec<u8>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CONFIG_CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert((bucket.to_string(), name.to_string(), generation), content);
    }
}

/// Everything known about a batch once its configuration is read.
#[derive(Debug, Clone)]
pub(crate) struct PreparedBatch {
    pub(crate) batch: Batch,
    pub(crate) config: BatchConfig,
    /// The listing of the batch prefix.
    pub(crate) listing: Listing,
    /// Its data files.
    pub(crate) selection: Selection,
    /// The destination's time-partitioning granularity, when its files go into the partitions
    /// their names carry (`fileTimestampRegex`); `None` otherwise.
    pub(crate) file_partitions: Option<PartitionGranularity>,
}

/// The project that runs jobs.
pub(crate) fn job_project(settings: &Settings, event: &ObjectEvent) -> Result<String, Fatal> {
    settings.job_project().map(str::to_string).ok_or_else(|| {
        Fatal(format!(
            "{}: no project to run jobs in: set BQ_PROJECT or GOOGLE_CLOUD_PROJECT",
            event.uri()
        ))
    })
}

/// The destination read from the path with `DESTINATION_REGEX` alone (no config), with a
/// placeholder project when none is configured.
fn path_destination(
    settings: &Settings,
    bucket: &str,
    marker: &str,
    with_timestamp: bool,
) -> Result<Batch, DestinationError> {
    resolve_batch(
        &settings.destination_regex,
        None,
        settings.storage_project().or(Some("placeholder-project")),
        if with_timestamp {
            settings.timestamp_regex.as_ref()
        } else {
            None
        },
        bucket,
        marker,
    )
}

/// A marker's path read once with `DESTINATION_REGEX` alone (no config, `TIMESTAMP_REGEX`
/// applied), with a placeholder project when none is configured: what the handler needs before
/// anything is read (whether the path can ever be a batch, the job ids' readable part), and —
/// when no config can change it — the batch itself, so that the regex runs once per marker.
#[derive(Debug)]
pub(crate) struct PathBatch(Result<Batch, DestinationError>);

impl PathBatch {
    /// Reads `event`'s path.
    pub(crate) fn read(settings: &Settings, event: &ObjectEvent) -> Self {
        PathBatch(path_destination(settings, &event.bucket, &event.name, true))
    }

    /// Why the marker can never be a batch, when its path names an invalid project, dataset,
    /// table, partition or timestamp: no config, listing, job or row can make that path a valid
    /// destination. (A path the regex does not match, or matches without a dataset or table, is
    /// not judged here: a `_config/load.json` `destinationTable` may supply them.)
    pub(crate) fn invalid(&self) -> Option<String> {
        match &self.0 {
            Err(e @ DestinationError::Invalid { .. }) => Some(format!(
                "{e}; rejected before any request (nothing was read or recorded)"
            )),
            _ => None,
        }
    }

    /// The readable part of the batch's job ids: what [`job_hint`] gives, without reading the
    /// path again unless it is invalid (an invalid timestamp may hide a valid table).
    pub(crate) fn job_hint(&self, settings: &Settings, event: &ObjectEvent) -> String {
        match &self.0 {
            Ok(b) => hint_of(b),
            Err(DestinationError::Invalid { .. }) => job_hint(settings, &event.bucket, &event.name),
            Err(_) => marker_dir(&event.name),
        }
    }

    /// The batch, for [`prepare_batch_from`]: `None` when the path does not resolve, or when
    /// no storage project is configured (the placeholder stood in for it).
    pub(crate) fn into_batch(self, settings: &Settings) -> Option<Batch> {
        settings.storage_project().and(self.0.ok())
    }
}

/// The readable part of the batch's job ids: from the path with `DESTINATION_REGEX` (no
/// config needed, so a duplicate can be recognised before anything is listed), else the
/// marker's directory.
pub(crate) fn job_hint(settings: &Settings, bucket: &str, marker: &str) -> String {
    match path_destination(settings, bucket, marker, false) {
        Ok(b) => hint_of(&b),
        Err(_) => marker_dir(marker),
    }
}

fn hint_of(batch: &Batch) -> String {
    let table = &batch.destination;
    job_id_hint(&table.dataset, &table.table, table.partition.as_deref())
}

fn marker_dir(marker: &str) -> String {
    marker
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default()
}

/// Lists and merges the `_config/` folders on the way to the batch, derives the destination
/// and lists the batch.
pub(crate) async fn prepare_batch(
    ctx: Context<'_>,
    event: &ObjectEvent,
) -> Result<Step<PreparedBatch>, IngestError> {
    Ok(match prepare(ctx, event, None, false).await? {
        Step::Ok(partly) => Step::Ok(partly.prepared),
        Step::Fatal(f) => Step::Fatal(f),
    })
}

/// A batch prepared from the first pages of its listing: all of its configuration is read
/// (the batch's own `_config/` folder sorts before most names and is listed), the rest of the
/// listing may not be. [`PartlyListed::finish`] lists the rest; a load can plan and submit its
/// parts while it does (`pipeline::streamed`).
#[derive(Debug)]
pub(crate) struct PartlyListed {
    /// The batch, its listing so far and the selection of that listing.
    pub(crate) prepared: PreparedBatch,
    /// The page token of the rest of the listing; `None` when it is complete.
    pub(crate) next_page: Option<String>,
}

impl PartlyListed {
    /// The batch with its whole listing (and the selection of it).
    pub(crate) async fn finish(
        self,
        ctx: Context<'_>,
        event: &ObjectEvent,
    ) -> Result<Step<PreparedBatch>, IngestError> {
        let PartlyListed {
            mut prepared,
            mut next_page,
        } = self;
        if next_page.is_none() {
            return Ok(Step::Ok(prepared));
        }
        while let Some(token) = next_page {
            let store = ctx.ports.store.as_ref();
            next_page =
                match next_batch_page(store, &event.bucket, &mut prepared.listing, &token).await {
                    Ok(next) => next,
                    Err(e) => return store_failure(event, e),
                };
        }
        prepared.selection = select(&ctx.settings.success_filename, &prepared.listing);
        Ok(Step::Ok(prepared))
    }
}

/// [`prepare_batch`], given the batch its path resolves to without config
/// ([`PathBatch::into_batch`]): used as the destination unless the merged config names its
/// own `destinationRegex` or `destinationTable`. The listing stops after the page that passes
/// the batch's own `_config/` folder (see [`PartlyListed`]).
pub(crate) async fn prepare_batch_from(
    ctx: Context<'_>,
    event: &ObjectEvent,
    path_batch: Option<Batch>,
) -> Result<Step<PartlyListed>, IngestError> {
    prepare(ctx, event, path_batch, true).await
}

/// [`prepare_batch_from`]; `stop_early` whether the batch listing may stop once the batch's
/// configuration is listed.
async fn prepare(
    ctx: Context<'_>,
    event: &ObjectEvent,
    path_batch: Option<Batch>,
    stop_early: bool,
) -> Result<Step<PartlyListed>, IngestError> {
    let batch_prefix = match event.name.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/"),
        None => String::new(),
    };
    let own_config = format!("{batch_prefix}_config/");
    // One per ancestor folder and the batch's own: 8 covers the default regex's depths.
    let mut dirs = Vec::with_capacity(8);
    for prefix in config_prefixes(&batch_prefix) {
        if prefix == own_config {
            continue;
        }
        let objects = match list_all(ctx.ports.store.as_ref(), &event.bucket, &prefix).await {
            Ok(o) => o,
            Err(e) => return store_failure(event, e),
        };
        match config_dir(ctx, event, &prefix, &objects).await? {
            Step::Ok(d) => dirs.push(d),
            Step::Fatal(f) => return Ok(Step::Fatal(f)),
        }
    }
    let store = ctx.ports.store.as_ref();
    let (listing, next_page) =
        match list_batch(store, &event.bucket, &batch_prefix, stop_early).await {
            Ok(o) => o,
            Err(e) => return store_failure(event, e),
        };
    // The batch's own `_config/` comes from the batch listing: no listing of its own.
    let own: Vec<ObjectMeta> = listing
        .indices()
        .filter(|&i| listing.relative(i).starts_with("_config/"))
        .map(|i| listing.meta(i))
        .collect();
    match config_dir(ctx, event, &own_config, &own).await? {
        Step::Ok(d) => dirs.push(d),
        Step::Fatal(f) => return Ok(Step::Fatal(f)),
    }
    let mut prepared = match resolve(ctx.settings, event, &dirs, listing, path_batch) {
        Step::Ok(p) => p,
        Step::Fatal(f) => return Ok(Step::Fatal(f)),
    };
    if prepared.config.ingest.file_timestamp_regex.is_some() {
        match partition_granularity(ctx, event, &prepared).await? {
            Step::Ok(g) => prepared.file_partitions = Some(g),
            Step::Fatal(f) => return Ok(Step::Fatal(f)),
        }
    }
    Ok(Step::Ok(PartlyListed {
        prepared,
        next_page,
    }))
}

/// The destination's time-partitioning granularity: from the configuration's
/// `timePartitioning` (`load.json` or `table.json`; `type` defaults to `DAY`), else from the
/// table itself (one `tables.get`). A table not partitioned by time is a final error.
async fn partition_granularity(
    ctx: Context<'_>,
    event: &ObjectEvent,
    prepared: &PreparedBatch,
) -> Result<Step<PartitionGranularity>, IngestError> {
    let table = &prepared.batch.destination;
    let fatal = |why: String| {
        Ok(Step::Fatal(Fatal(format!(
            "{}: fileTimestampRegex loads each file into its partition, but {why}",
            event.uri()
        ))))
    };
    if let Some(partitioning) = prepared.config.load.get("timePartitioning") {
        let kind = partitioning
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("DAY");
        return match PartitionGranularity::parse(kind) {
            Some(g) => Ok(Step::Ok(g)),
            None => fatal(format!(
                "the configured timePartitioning.type {kind:?} is not HOUR, DAY, MONTH or YEAR"
            )),
        };
    }
    match ctx.ports.warehouse.time_partitioning(table).await {
        Ok(Some(partitioning)) => Ok(Step::Ok(partitioning.granularity)),
        Ok(None) => fatal(format!(
            "{}.{}.{} is not partitioned by time",
            table.project, table.dataset, table.table
        )),
        Err(e) if e.is_transient() => Err(super::warehouse_error(event, e)),
        Err(e) => fatal(format!(
            "its partitioning cannot be read ({e}); for a table that does not exist yet, give \
             timePartitioning in table.json"
        )),
    }
}

/// Merges the config folders and resolves the batch's destination (`path_batch` when the
/// config changes neither the regex nor the table).
fn resolve(
    settings: &Settings,
    event: &ObjectEvent,
    dirs: &[ConfigDir],
    listing: Listing,
    path_batch: Option<Batch>,
) -> Step<PreparedBatch> {
    let config = match BatchConfig::merge(&event.bucket, dirs) {
        Ok(c) => c,
        Err(e) => return Step::Fatal(Fatal(e.to_string())),
    };
    let from_path = config.destination_regex.is_none() && config.destination_table.is_none();
    let resolved = match path_batch.filter(|_| from_path) {
        Some(batch) => Ok(batch),
        None => resolve_batch(
            config
                .destination_regex
                .as_ref()
                .unwrap_or(&settings.destination_regex),
            config.destination_table.as_ref(),
            settings.storage_project(),
            settings.timestamp_regex.as_ref(),
            &event.bucket,
            &event.name,
        ),
    };
    match resolved {
        Ok(batch) => Step::Ok(PreparedBatch {
            selection: select(&settings.success_filename, &listing),
            batch,
            config,
            listing,
            file_partitions: None,
        }),
        Err(e) => Step::Fatal(Fatal(e.to_string())),
    }
}

/// One `_config/` folder: the files that matter, read from the cache or the store.
async fn config_dir(
    ctx: Context<'_>,
    event: &ObjectEvent,
    prefix: &str,
    objects: &[ObjectMeta],
) -> Result<Step<ConfigDir>, IngestError> {
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let (to_read, orderme) = files_to_read(prefix, &names);
    let mut dir = ConfigDir {
        prefix: prefix.to_string(),
        orderme,
        ..ConfigDir::default()
    };
    for name in to_read {
        let Some(meta) = objects.iter().find(|o| o.name == name) else {
            continue;
        };
        let content = match ctx.cache.get(&event.bucket, &name, meta.generation) {
            Some(c) => c,
            None => match ctx.ports.store.read(&event.bucket, &name).await {
                Ok((m, bytes)) => {
                    let bytes = Arc::new(bytes);
                    ctx.cache
                        .put(&event.bucket, &name, m.generation, bytes.clone());
                    bytes
                }
                // Deleted between the listing and the read: as if it were not there.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return store_failure(event, e),
            },
        };
        let file = ConfigFile {
            name: name.clone(),
            generation: meta.generation,
            content: content.as_ref().clone(),
        };
        let base = name.rsplit('/').next().unwrap_or("");
        if base == "load.json" {
            dir.load_json = Some(file);
        } else if base == "external.json" {
            dir.external_json = Some(file);
        } else if base == crate::config::TABLE_JSON {
            dir.table_json = Some(file);
        } else if base == crate::config::INGEST_JSON {
            dir.ingest_json = Some(file);
        } else if base.ends_with(".sql") {
            dir.sql.push(file);
        }
    }
    Ok(Step::Ok(dir))
}

/// Every object under `prefix`, following pages.
pub(crate) async fn list_all(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list(bucket, prefix, token.as_deref(), None).await?;
        out.extend(page.objects);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The listing of a batch prefix, read page by page into a [`Listing`] (each page dropped
/// once it is read); with `stop_early`, a sorted listing stops after the page that passes the
/// batch's own `_config/` folder, and the token of the rest comes with it.
async fn list_batch(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
    stop_early: bool,
) -> Result<(Listing, Option<String>), StoreError> {
    let mut listing = Listing::new(prefix);
    let page = store.list(bucket, prefix, None, None).await?;
    let mut next_page = add_page(&mut listing, page);
    while let Some(token) = next_page.take() {
        if stop_early && config_listed(&listing) {
            return Ok((listing, Some(token)));
        }
        next_page = next_batch_page(store, bucket, &mut listing, &token).await?;
    }
    Ok((listing, None))
}

/// Whether a sorted listing of a batch holds all of the batch's own `_config/` folder: its
/// last name sorts after every name in it.
fn config_listed(listing: &Listing) -> bool {
    listing.is_sorted()
        && listing
            .len()
            .checked_sub(1)
            .is_some_and(|last| listing.relative(last) >= "_config0")
}

/// Reads the page of `token` into `listing`; the token of the page after it.
pub(crate) async fn next_batch_page(
    store: &dyn ObjectStore,
    bucket: &str,
    listing: &mut Listing,
    token: &str,
) -> Result<Option<String>, StoreError> {
    let page = store
        .list(bucket, listing.prefix(), Some(token), None)
        .await?;
    Ok(add_page(listing, page))
}

/// Adds a page's objects to `listing`; its next page token.
fn add_page(listing: &mut Listing, page: crate::ports::ListPage) -> Option<String> {
    let name_bytes = page.objects.iter().map(|o| o.name.len()).sum();
    listing.reserve(page.objects.len(), name_bytes);
    for object in page.objects {
        listing.push(object);
    }
    page.next_page_token
}

/// A store error met while reading a batch: transient errors are handed back for redelivery;
/// anything else is final for this notification — a missing bucket or a permission problem
/// does not go away by redelivering, so it is recorded (with how to replay it once fixed)
/// instead of answering "retry" until the subscription dead-letters it.
pub(crate) fn store_failure<T>(event: &ObjectEvent, e: StoreError) -> Result<Step<T>, IngestError> {
    store_fatal(event, e).map(Step::Fatal)
}

/// [`store_failure`]: the transient error handed back, or what is final about the others.
pub(crate) fn store_fatal(event: &ObjectEvent, e: StoreError) -> Result<Fatal, IngestError> {
    match e {
        e if e.is_transient() => Err(super::store_error(event, e)),
        StoreError::NotFound { bucket, .. } => Ok(Fatal(format!(
            "{}: bucket gs://{bucket} does not exist, or this service's account may not list \
             it (it needs roles/storage.objectViewer on the bucket)",
            event.uri()
        ))),
        e => Ok(Fatal(format!(
            "{}: cannot read the batch: {e} (is the bucket readable by this service's \
             account?)",
            event.uri()
        ))),
    }
}

/// Labels every job of `plan` with the number of parts ([`PARTS_LABEL`]) and what
/// [`label_job`] adds.
pub(crate) fn label_batch_jobs(
    prepared: &PreparedBatch,
    plan: &mut LoadPlan,
    quarantine: Option<&str>,
) {
    let parts = plan.jobs.len().to_string();
    for job in &mut plan.jobs {
        // Load plans have it already (`plan::load_plan`); transforms do not.
        if job.labels.get(PARTS_LABEL) != Some(&parts) {
            job.labels.insert(PARTS_LABEL.to_string(), parts.clone());
        }
        label_job(prepared, job, quarantine);
    }
}

/// Labels a job of the batch with [`crate::plan::AFTER_SUCCESS_LABEL`] when the batch's files
/// are archived or deleted once it is done, and with `quarantine` as
/// [`crate::plan::QUARANTINE_LABEL`] when given.
pub(crate) fn label_job(prepared: &PreparedBatch, job: &mut JobRequest, quarantine: Option<&str>) {
    if let Some(value) = super::after_success::label_value(prepared) {
        job.labels.insert(
            crate::plan::AFTER_SUCCESS_LABEL.to_string(),
            value.to_string(),
        );
    }
    if let Some(value) = quarantine {
        job.labels
            .insert(crate::plan::QUARANTINE_LABEL.to_string(), value.to_string());
    }
}

/// The quarantine label's value of the batch's jobs ([`label_job`]).
pub(crate) fn quarantine_label(prepared: &PreparedBatch) -> Option<&'static str> {
    prepared.config.ingest.quarantine.is_some().then_some("on")
}

/// Plans the jobs of a prepared batch (load or transform); every job carries the number of
/// parts ([`PARTS_LABEL`]), so that a duplicate can find them all from part 0, and, when the
/// batch's files are archived or deleted once it is done, [`crate::plan::AFTER_SUCCESS_LABEL`].
pub(crate) fn plan_batch(
    settings: &Settings,
    prepared: &PreparedBatch,
    project: &str,
    stem: &JobIdStem,
) -> Result<LoadPlan, Fatal> {
    let ids = JobIds::new(settings, project, stem);
    let input = PlanInput::of(&prepared.listing, &prepared.selection);
    let planned = if let Some(granularity) = prepared.file_partitions {
        plan_listed_partitioned_load(&ids, &prepared.batch, &prepared.config, &input, granularity)
    } else if prepared.config.transform_sql.is_some() {
        crate::transform::plan_transform_with(
            settings,
            &prepared.batch,
            &prepared.config,
            &prepared.selection.to_batch_files(&prepared.listing),
            project,
            stem,
        )
    } else {
        plan_listed_load(&ids, &prepared.batch, &prepared.config, &input)
    };
    let mut plan = planned.map_err(|e| Fatal(e.to_string()))?;
    label_batch_jobs(prepared, &mut plan, quarantine_label(prepared));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(timestamp_regex: Option<&str>) -> Settings {
        Settings {
            bq_project: Some("my-project".into()),
            timestamp_regex: timestamp_regex.map(|r| regex::Regex::new(r).unwrap()),
            ..Settings::default()
        }
    }

    /// Reading the path once gives the hint that reading it without the timestamp gives, for a
    /// path that resolves, one the regex does not match, and one whose timestamp is invalid.
    #[test]
    fn the_path_read_once_gives_the_same_hint_and_verdict() {
        let with_bad_timestamp = settings(Some(r"(?P<yyyy>\d{4})-(?P<mm>\d{2})-(?P<dd>\d{2})"));
        let cases = [
            (settings(None), "ds/t/2020/01/02/03/_SUCCESS", false),
            (settings(None), "_SUCCESS", false),
            (with_bad_timestamp, "ds/t/b-2020-13-45/_SUCCESS", true),
        ];
        for (settings, marker, invalid) in cases {
            let event = ObjectEvent::finalized("bucket", marker, 1);
            let path = PathBatch::read(&settings, &event);
            assert_eq!(path.invalid().is_some(), invalid, "{marker}: {path:?}");
            assert_eq!(
                path.job_hint(&settings, &event),
                job_hint(&settings, "bucket", marker),
                "{marker}"
            );
        }
    }
}
