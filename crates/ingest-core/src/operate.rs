//! What the operator's commands read (`bq-ingest status`, `bq-ingest reconcile`): the success
//! markers under a prefix, which of them have a final state row, the jobs of those that have
//! none, and the state of every ordered table.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::{EventType, ObjectEvent};
use crate::ingest::Ingestor;
use crate::ordering::{self, LockContent, BACKLOG_DIR, LOCK_FILENAME};
use crate::ports::{JobState, LoadRecord, ObjectStore, StoreError, WarehouseError};
use crate::settings::{Settings, BACKFILL_FILENAME};
use crate::trigger::{classify_name, Trigger};

/// Every success marker under `prefix` (never those under `_backlog/`), as notifications of
/// them would read: generation, size, and the marker's time as the event time. Holds them all:
/// [`MarkerPages`] reads them a page at a time.
pub async fn list_markers(
    store: &dyn ObjectStore,
    settings: &Settings,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectEvent>, StoreError> {
    let mut pages = MarkerPages::new(store, settings, bucket, prefix);
    let mut out = Vec::new();
    while let Some(page) = pages.next_page().await? {
        out.extend(page);
    }
    Ok(out)
}

/// The success markers under a prefix, one listing page at a time (what `backfill` walks
/// without holding them all): each as [`list_markers`] gives it.
///
/// ```
/// # use ingest_core::operate::MarkerPages;
/// # use ingest_core::settings::Settings;
/// # use ingest_memory::MemoryStore;
/// # futures::executor::block_on(async {
/// let store = MemoryStore::new();
/// store.create_bucket("b");
/// store.insert("b", "ds/t/part-0.csv", b"1".to_vec());
/// store.insert("b", "ds/t/_SUCCESS", Vec::new());
/// let settings = Settings::default();
/// let mut pages = MarkerPages::new(&store, &settings, "b", "ds/");
/// let page = pages.next_page().await.unwrap().unwrap();
/// assert_eq!(page[0].name, "ds/t/_SUCCESS");
/// assert!(pages.next_page().await.unwrap().is_none());
/// # });
/// ```
#[derive(Debug)]
pub struct MarkerPages<'a> {
    store: &'a dyn ObjectStore,
    settings: &'a Settings,
    bucket: &'a str,
    prefix: &'a str,
    /// The next page's token; `None` before the first page and after the last.
    token: Option<String>,
    done: bool,
}

impl<'a> MarkerPages<'a> {
    /// The markers under `gs://bucket/prefix`, not listed yet.
    pub fn new(
        store: &'a dyn ObjectStore,
        settings: &'a Settings,
        bucket: &'a str,
        prefix: &'a str,
    ) -> Self {
        MarkerPages {
            store,
            settings,
            bucket,
            prefix,
            token: None,
            done: false,
        }
    }

    /// The markers of the next listing page (possibly none: a page of data files), or `None`
    /// once the listing is over.
    ///
    /// Errors: the store's, for this page; calling again retries it.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ObjectEvent>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .list(self.bucket, self.prefix, self.token.as_deref(), None)
            .await?;
        let mut out = Vec::new();
        for o in page.objects {
            if classify_name(self.settings, EventType::Finalize, &o.name) == Trigger::Success {
                let mut e = ObjectEvent::finalized(self.bucket, &o.name, o.generation);
                e.size = Some(o.size);
                e.event_time = o.updated;
                out.push(e);
            }
        }
        self.token = page.next_page_token;
        self.done = self.token.is_none();
        Ok(Some(out))
    }
}

/// The final states (`done`, `failed`, `skipped` by `resume --skip`) recorded per (marker URI,
/// generation), the latest row winning.
pub fn final_states(rows: &[LoadRecord]) -> HashMap<(String, i64), &LoadRecord> {
    let mut out: HashMap<(String, i64), &LoadRecord> = HashMap::new();
    let is_final = |r: &&LoadRecord| matches!(r.state.as_str(), "done" | "failed" | "skipped");
    for row in rows.iter().filter(is_final) {
        let key = (row.marker_uri.clone(), row.marker_generation);
        if out.get(&key).is_none_or(|r| r.ended_at <= row.ended_at) {
            out.insert(key, row);
        }
    }
    out
}

/// A marker with no final state row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unrecorded {
    /// `gs://bucket/name`.
    pub marker: String,
    /// Its live generation.
    pub generation: i64,
    /// When it was written.
    pub written_at: Option<DateTime<Utc>>,
    /// Part 0's job, when it exists (`running`, `done`: the row is late or was lost) —
    /// `None`: no job either, the notification was missed or dropped.
    pub job: Option<String>,
    /// That job's state (`pending`, `running`, `done`).
    pub job_state: Option<String>,
}

/// The markers of `markers` written before `now - grace` that have no final row in `rows`,
/// each with part 0's job if it exists (one job lookup per such marker). Younger markers are
/// left out: their notification may be on its way.
pub async fn unrecorded(
    ingestor: &Ingestor,
    markers: &[ObjectEvent],
    rows: &[LoadRecord],
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<Vec<Unrecorded>, WarehouseError> {
    let finals = final_states(rows);
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
    let mut out = Vec::new();
    for marker in markers {
        let generation = marker.generation.unwrap_or_default();
        if finals.contains_key(&(marker.uri(), generation)) {
            continue;
        }
        if marker.event_time.is_some_and(|t| t > cutoff) {
            continue;
        }
        let job = ingestor.first_job(marker).await?;
        out.push(Unrecorded {
            marker: marker.uri(),
            generation,
            written_at: marker.event_time,
            job_state: job.as_ref().map(|s| job_state_name(s.state).to_string()),
            job: job.map(|s| s.job.job_id),
        });
    }
    Ok(out)
}

fn job_state_name(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Done => "done",
    }
}

/// What an ordered table's lock says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockSummary {
    /// `bq-ingest`, `python` (a bare job id of the Python function) or `manual`.
    pub kind: &'static str,
    /// The backlog item being applied (bq-ingest's lock).
    pub item: Option<String>,
    /// Its jobs.
    pub job_ids: Vec<String>,
    /// The run holding it; `None` when released for a hand-over or stopped.
    pub holder: Option<String>,
    /// Why the table stopped: a person must resume it (`bq-ingest resume`).
    pub error: Option<String>,
    /// Seconds since the lock was last written.
    pub age_seconds: Option<u64>,
    /// What a manual lock holds.
    pub text: Option<String>,
}

/// The state of one ordered table, from its objects in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderedTable {
    /// `gs://bucket/table-prefix`.
    pub table: String,
    /// The lock, if held.
    pub lock: Option<LockSummary>,
    /// Backlog items waiting (the batch being applied included).
    pub backlog: usize,
    /// Whether `_BACKFILL` exists (a subscriber runs or will start).
    pub backfill: bool,
    /// Whether the start gate (`START_BACKFILL_FILENAME`) is open; `None` without a gate.
    pub start_gate_open: Option<bool>,
    /// In one word: `parked` (stopped by the table's daily load quota: `reconcile --apply`
    /// resumes it), `stopped` (needs a person), `locked` (an operator's lock), `running`,
    /// `waiting` (backlog but no `_BACKFILL`: validation, or a lost notification),
    /// `gated` (start gate closed), `queued` (backlog and `_BACKFILL`, no lock yet), `idle`.
    pub state: &'static str,
}

impl OrderedTable {
    /// Whether a person must act: the table stopped on a failed batch, or waits with a backlog
    /// and nothing that will start it.
    pub fn needs_a_person(&self) -> bool {
        matches!(self.state, "stopped" | "waiting")
    }
}

/// Every ordered table under `prefix` that has a lock, a backlog or a `_BACKFILL`, from one
/// listing of the prefix and one read per lock.
pub async fn ordered_tables(
    store: &dyn ObjectStore,
    settings: &Settings,
    bucket: &str,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OrderedTable>, StoreError> {
    #[derive(Default)]
    struct Seen {
        lock: bool,
        backlog: usize,
        backfill: bool,
        gate: bool,
    }
    let backlog_marker = format!("/{}", settings.success_filename);
    let gate = settings.start_backfill_filename.as_deref();
    let mut tables: BTreeMap<String, Seen> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list(bucket, prefix, token.as_deref(), None).await?;
        for o in &page.objects {
            let name = o.name.as_str();
            if let Some((table, rest)) = name.split_once(&format!("/{BACKLOG_DIR}/")) {
                if format!("/{rest}").ends_with(&backlog_marker) {
                    tables.entry(table.to_string()).or_default().backlog += 1;
                }
                continue;
            }
            let Some((table, base)) = name.rsplit_once('/') else {
                continue;
            };
            let is_gate = Some(base) == gate;
            if base == LOCK_FILENAME || base == BACKFILL_FILENAME || is_gate {
                let seen = tables.entry(table.to_string()).or_default();
                seen.lock |= base == LOCK_FILENAME;
                seen.backfill |= base == BACKFILL_FILENAME;
                seen.gate |= is_gate;
            }
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut out = Vec::new();
    for (table, seen) in tables {
        if !seen.lock && seen.backlog == 0 && !seen.backfill {
            continue; // only a start gate: not an ordered table with anything to say
        }
        let lock = if seen.lock {
            read_lock(store, settings, bucket, &table, now).await?
        } else {
            None
        };
        let start_gate_open = gate.map(|_| seen.gate);
        let parked = |l: &LockSummary| {
            l.error
                .as_deref()
                .is_some_and(|e| e.starts_with(crate::ordering::PARKED_PREFIX))
        };
        let state = match &lock {
            Some(l) if parked(l) => "parked",
            Some(l) if l.error.is_some() => "stopped",
            Some(l) if l.kind == "manual" => "locked",
            Some(_) => "running",
            None if seen.backlog > 0 && start_gate_open == Some(false) => "gated",
            None if seen.backlog > 0 && !seen.backfill => "waiting",
            None if seen.backlog > 0 => "queued",
            None => "idle",
        };
        out.push(OrderedTable {
            table: format!("gs://{bucket}/{table}"),
            lock,
            backlog: seen.backlog,
            backfill: seen.backfill,
            start_gate_open,
            state,
        });
    }
    Ok(out)
}

async fn read_lock(
    store: &dyn ObjectStore,
    settings: &Settings,
    bucket: &str,
    table: &str,
    now: DateTime<Utc>,
) -> Result<Option<LockSummary>, StoreError> {
    let Some((meta, _, lock)) =
        ordering::read_lock(store, bucket, table, &settings.job_prefix).await?
    else {
        return Ok(None);
    };
    let age_seconds = meta.updated.map(|_| ordering::age_of(&meta, now).as_secs());
    let mut summary = LockSummary {
        kind: "bq-ingest",
        item: None,
        job_ids: Vec::new(),
        holder: None,
        error: None,
        age_seconds,
        text: None,
    };
    match lock {
        LockContent::Ours(state) => {
            summary.item = Some(state.item);
            summary.job_ids = state.job_ids;
            summary.holder = state.holder;
            summary.error = state.error;
        }
        LockContent::Legacy(job) => {
            summary.kind = "python";
            summary.job_ids = vec![job];
        }
        LockContent::Manual(text) => {
            summary.kind = "manual";
            summary.text = Some(text);
        }
    }
    Ok(Some(summary))
}

/// The last `done` row per destination table (decorator dropped), newest first.
pub fn last_success_per_table(rows: &[LoadRecord]) -> Vec<&LoadRecord> {
    let mut last: BTreeMap<&str, &LoadRecord> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.state == "done" && !r.destination.is_empty())
    {
        let table = row.destination.split('$').next().unwrap_or_default();
        if last.get(table).is_none_or(|r| r.ended_at < row.ended_at) {
            last.insert(table, row);
        }
    }
    let mut out: Vec<&LoadRecord> = last.into_values().collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.ended_at));
    out
}

/// The failed rows whose marker (at that generation) has no later `done` row: the batches
/// that are still failed.
pub fn still_failed(rows: &[LoadRecord]) -> Vec<&LoadRecord> {
    let finals = final_states(rows);
    let mut out: Vec<&LoadRecord> = finals
        .into_values()
        .filter(|r| r.state == "failed")
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.ended_at));
    out
}

/// The load-state table the settings name (`BQ_LOAD_STATE_TABLE`), with its project filled in;
/// `None` when rows are not recorded.
pub fn state_table(settings: &Settings) -> Option<crate::ports::TableRef> {
    crate::pipeline::record::state_table(settings)
}
