//! The service's metrics, `bq_ingest_*`, in the Prometheus text format that Google Managed
//! Prometheus and the OpenTelemetry collector's `prometheus` receiver scrape.
//!
//! [`Metrics`] is the core's [`Observer`]: the ingestor and the front ends report to it, and
//! [`Metrics::render`] writes the page `GET /metrics` answers. The requests to Google are read
//! from the client layer's counters at each scrape.

use std::sync::Arc;
use std::time::Duration;

use ingest_core::ports::Observer;
use ingest_google::RequestCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `bq_ingest_notifications_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    front_end: &'static str,
    outcome: &'static str,
}

/// Labels of `bq_ingest_handle_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontEndLabels {
    front_end: &'static str,
}

/// Labels of `bq_ingest_batches_total`: the table only with `METRICS_TABLE_LABELS`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatchLabels {
    state: String,
    table: String,
}

/// Labels of `bq_ingest_jobs_submitted_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: &'static str,
    retry: &'static str,
}

/// Labels of `bq_ingest_state_row_write_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransientLabels {
    transient: &'static str,
}

/// Labels of the per-table gauges of ordered tables (only with `METRICS_TABLE_LABELS`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

/// Labels of `bq_ingest_google_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    method: &'static str,
    status_class: &'static str,
}

/// Labels of `bq_ingest_google_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    service: &'static str,
    method: &'static str,
}

/// Handle durations: 5 ms to about 160 s, doubling.
fn handle_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// The service's metrics. Cheap to update from any thread; [`Metrics::render`] at each scrape.
///
/// ```
/// use ingest_core::ports::Observer;
/// use std::time::Duration;
///
/// let metrics = ingest_service::Metrics::new(ingest_google::RequestCounters::default(), false);
/// metrics.notification_handled("push", "done", Duration::from_millis(40));
/// metrics.batch_recorded("p.ds.t", "done");
/// let page = metrics.render();
/// assert!(page.contains(r#"bq_ingest_notifications_total{front_end="push",outcome="done"} 1"#));
/// assert!(page.contains(r#"bq_ingest_batches_total{state="done",table=""} 1"#), "{page}");
/// ```
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    table_labels: bool,
    notifications: Family<NotificationLabels, Counter>,
    handle_seconds: Family<FrontEndLabels, Histogram, fn() -> Histogram>,
    batches: Family<BatchLabels, Counter>,
    jobs: Family<JobLabels, Counter>,
    state_row_failures: Family<TransientLabels, Counter>,
    marker_to_done: Histogram,
    backlog_items: Histogram,
    lock_age: Histogram,
    table_backlog: Family<TableLabels, Gauge>,
    table_lock_age: Family<TableLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    load_jobs: LoadJobsToday,
    load_jobs_max: Gauge,
    table_load_jobs: Family<TableLabels, Gauge>,
}

/// BigQuery's quota of load jobs per table and day.
pub const LOAD_JOBS_PER_TABLE_PER_DAY: u64 = 1_500;

/// The default of [`Metrics::with_load_job_warning`]: 80 % of the quota.
pub const DEFAULT_LOAD_JOB_WARNING: u64 = 1_200;

/// The load jobs this instance created per table on the current UTC day, and the count at
/// which it warns.
#[derive(Debug)]
struct LoadJobsToday {
    counts: std::sync::Mutex<std::collections::HashMap<String, (chrono::NaiveDate, u64)>>,
    warning: u64,
}

impl LoadJobsToday {
    /// Counts one job into `table` at `day`; the table's count today and the most of any table.
    fn add(&self, table: &str, day: chrono::NaiveDate) -> (u64, u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(table.to_string()).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        entry.1 += 1;
        let count = entry.1;
        counts.retain(|_, (d, _)| *d == day);
        let max = counts.values().map(|(_, n)| *n).max().unwrap_or(0);
        (count, max)
    }
}

impl Metrics {
    /// Metrics over the client layer's request `counters`; `table_labels` is
    /// `METRICS_TABLE_LABELS`.
    pub fn new(counters: RequestCounters, table_labels: bool) -> Metrics {
        let mut registry = Registry::with_prefix("bq_ingest");
        let metrics = Metrics {
            table_labels,
            notifications: Family::default(),
            handle_seconds: Family::new_with_constructor(handle_histogram),
            batches: Family::default(),
            jobs: Family::default(),
            state_row_failures: Family::default(),
            marker_to_done: Histogram::new(exponential_buckets(0.25, 2.0, 16)),
            backlog_items: Histogram::new([0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]),
            lock_age: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            table_backlog: Family::default(),
            table_lock_age: Family::default(),
            load_jobs: LoadJobsToday {
                counts: Default::default(),
                warning: DEFAULT_LOAD_JOB_WARNING,
            },
            load_jobs_max: Gauge::default(),
            table_load_jobs: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "notifications",
            "Notifications handled, by front end (the notification's form, or pull) and outcome",
            metrics.notifications.clone(),
        );
        registry.register(
            "handle_duration_seconds",
            "Time from receiving a notification to answering it, by front end",
            metrics.handle_seconds.clone(),
        );
        registry.register(
            "batches",
            "Batch outcome rows written (state done, failed, retried); every delivery that sees a batch end writes its row (BigQuery drops repeats by insertId) and counts here, a duplicate without the table; table only with METRICS_TABLE_LABELS",
            metrics.batches.clone(),
        );
        registry.register(
            "jobs_submitted",
            "BigQuery jobs created, by kind (load, query) and whether they retry a failed part",
            metrics.jobs.clone(),
        );
        registry.register(
            "state_row_write_failures",
            "State-table rows that could not be written (transient: handed back for a redelivery to write)",
            metrics.state_row_failures.clone(),
        );
        registry.register(
            "marker_to_done_seconds",
            "Time from a success marker's notification event to a delivery that sees its batch done (a duplicate delivery adds a later sample)",
            metrics.marker_to_done.clone(),
        );
        registry.register(
            "ordered_backlog_items",
            "Backlog lengths of ordered tables, as their subscribers listed them (first page: exact up to 100)",
            metrics.backlog_items.clone(),
        );
        registry.register(
            "ordered_lock_age_seconds",
            "Ages of ordered tables' locks (since last written), as their subscribers read them",
            metrics.lock_age.clone(),
        );
        registry.register(
            "load_jobs_today_max",
            "The most load jobs this instance created today (UTC) for one table; BigQuery allows 1,500 per table and day, and batches beyond it are parked",
            metrics.load_jobs_max.clone(),
        );
        if table_labels {
            registry.register(
                "table_load_jobs_today",
                "Load jobs this instance created today (UTC), per table",
                metrics.table_load_jobs.clone(),
            );
            registry.register(
                "ordered_table_backlog_items",
                "Last backlog length seen, per ordered table",
                metrics.table_backlog.clone(),
            );
            registry.register(
                "ordered_table_lock_age_seconds",
                "Age of the lock last seen (0: none), per ordered table",
                metrics.table_lock_age.clone(),
            );
        }
        registry.register_collector(Box::new(GoogleRequests(counters)));
        let info: Family<Vec<(String, String)>, Gauge> = Family::default();
        info.get_or_create(&vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )])
        .set(1);
        registry.register("build_info", "bq-ingest's version", info);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Warns (a WARN log per table and day) when a table's load jobs today reach `threshold`
    /// (`LOAD_JOBS_WARNING_PER_TABLE`, default [`DEFAULT_LOAD_JOB_WARNING`]).
    ///
    /// ```
    /// use ingest_core::ports::Observer;
    /// let metrics = ingest_service::Metrics::new(ingest_google::RequestCounters::default(), true)
    ///     .with_load_job_warning(2);
    /// let now = chrono::Utc::now();
    /// metrics.load_job_created("p.ds.t", now);
    /// metrics.load_job_created("p.ds.t", now); // warns: 2 of 1,500
    /// metrics.load_job_created("p.ds.u", now);
    /// let page = metrics.render();
    /// assert!(page.contains("bq_ingest_load_jobs_today_max 2"), "{page}");
    /// assert!(page.contains(r#"bq_ingest_table_load_jobs_today{table="p.ds.u"} 1"#), "{page}");
    /// ```
    pub fn with_load_job_warning(mut self, threshold: u64) -> Metrics {
        self.load_jobs.warning = threshold;
        self
    }

    /// The page `GET /metrics` answers: every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut page = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut page, &self.registry)
        {
            tracing::error!(error = %e, "could not render the metrics: {e}");
        }
        page
    }

    fn table(&self, table: &str) -> String {
        if self.table_labels {
            table.to_string()
        } else {
            String::new()
        }
    }
}

impl Observer for Metrics {
    fn notification_handled(
        &self,
        front_end: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.notifications
            .get_or_create(&NotificationLabels { front_end, outcome })
            .inc();
        self.handle_seconds
            .get_or_create(&FrontEndLabels { front_end })
            .observe(elapsed.as_secs_f64());
    }

    fn batch_recorded(&self, table: &str, state: &str) {
        let labels = BatchLabels {
            state: state.to_string(),
            table: self.table(table),
        };
        self.batches.get_or_create(&labels).inc();
    }

    fn job_submitted(&self, kind: &'static str, retry: bool) {
        let retry = if retry { "true" } else { "false" };
        self.jobs.get_or_create(&JobLabels { kind, retry }).inc();
    }

    fn load_job_created(&self, table: &str, at: chrono::DateTime<chrono::Utc>) {
        let (count, max) = self.load_jobs.add(table, at.date_naive());
        self.load_jobs_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        if self.table_labels {
            let labels = TableLabels {
                table: table.to_string(),
            };
            self.table_load_jobs
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        if count == self.load_jobs.warning {
            tracing::warn!(
                table, count, quota = LOAD_JOBS_PER_TABLE_PER_DAY,
                "table {table}: {count} load jobs today from this instance, of BigQuery's {LOAD_JOBS_PER_TABLE_PER_DAY} per table and day; batches beyond the quota are parked until reconcile loads them"
            );
        }
    }

    fn state_row_failed(&self, transient: bool) {
        let transient = if transient { "true" } else { "false" };
        self.state_row_failures
            .get_or_create(&TransientLabels { transient })
            .inc();
    }

    fn marker_done(&self, latency: Duration) {
        self.marker_to_done.observe(latency.as_secs_f64());
    }

    fn ordered_backlog_observed(&self, table_prefix: &str, items: usize) {
        self.backlog_items.observe(items as f64);
        if self.table_labels {
            let labels = TableLabels {
                table: table_prefix.to_string(),
            };
            self.table_backlog
                .get_or_create(&labels)
                .set(i64::try_from(items).unwrap_or(i64::MAX));
        }
    }

    fn ordered_lock_observed(&self, table_prefix: &str, age: Option<Duration>) {
        if let Some(age) = age {
            self.lock_age.observe(age.as_secs_f64());
        }
        if self.table_labels {
            let labels = TableLabels {
                table: table_prefix.to_string(),
            };
            let seconds = age.map(|a| a.as_secs_f64()).unwrap_or(0.0);
            self.table_lock_age.get_or_create(&labels).set(seconds);
        }
    }
}

/// The client layer's request counters, read at each scrape.
#[derive(Debug)]
struct GoogleRequests(RequestCounters);

impl Collector for GoogleRequests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.snapshot();
        let mut family = encoder.encode_descriptor(
            "google_requests",
            "Requests to Google (GCS, BigQuery, Pub/Sub), by service, method and status class",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (key, count) in &counts.requests {
            let labels = RequestLabels {
                service: key.service,
                method: key.operation,
                status_class: key.status.as_str(),
            };
            ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "google_retries",
            "Requests to Google that were retries of an earlier attempt, by service and method",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for ((service, method), count) in &counts.retries {
            let (service, method) = (*service, *method);
            let labels = RetryLabels { service, method };
            ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A shared [`Metrics`], as the ingestor's observer and the router's renderer hold it.
pub type SharedMetrics = Arc<Metrics>;
