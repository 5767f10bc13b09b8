//! [`MemoryObserver`]: an [`Observer`] that keeps every report, for tests.

use std::sync::Mutex;
use std::time::Duration;

use ingest_core::ports::Observer;

/// One report to an [`Observer`], as [`MemoryObserver`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// [`Observer::notification_handled`] (the duration is not kept).
    Notification {
        /// The front end.
        front_end: &'static str,
        /// The outcome.
        outcome: &'static str,
    },
    /// [`Observer::batch_recorded`].
    Batch {
        /// `project.dataset.table`, or empty.
        table: String,
        /// `done`, `failed` or `retried`.
        state: String,
    },
    /// [`Observer::job_submitted`].
    Job {
        /// `load` or `query`.
        kind: &'static str,
        /// Whether it retries a failed part.
        retry: bool,
    },
    /// [`Observer::state_row_failed`].
    StateRowFailed {
        /// Whether the notification was handed back.
        transient: bool,
    },
    /// [`Observer::marker_done`].
    MarkerDone(Duration),
    /// [`Observer::ordered_backlog_observed`].
    Backlog {
        /// The table prefix.
        table: String,
        /// Items counted.
        items: usize,
    },
    /// [`Observer::ordered_lock_observed`].
    Lock {
        /// The table prefix.
        table: String,
        /// The lock's age, `None` without a lock.
        age: Option<Duration>,
    },
}

/// An [`Observer`] that keeps every report in order.
///
/// ```
/// use ingest_core::ports::Observer;
/// use ingest_memory::{MemoryObserver, Observed};
///
/// let observer = MemoryObserver::new();
/// observer.job_submitted("load", false);
/// assert_eq!(observer.reports(), [Observed::Job { kind: "load", retry: false }]);
/// ```
#[derive(Debug, Default)]
pub struct MemoryObserver {
    reports: Mutex<Vec<Observed>>,
    load_jobs: Mutex<Vec<String>>,
}

impl MemoryObserver {
    /// An observer with no report yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every report so far, in order.
    pub fn reports(&self) -> Vec<Observed> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The table of every load job created so far ([`Observer::load_job_created`]), in order;
    /// kept apart from [`MemoryObserver::reports`].
    pub fn load_jobs(&self) -> Vec<String> {
        self.load_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many reports `matches` accepts.
    pub fn count(&self, matches: impl Fn(&Observed) -> bool) -> usize {
        self.reports().iter().filter(|r| matches(r)).count()
    }

    fn keep(&self, report: Observed) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report);
    }
}

impl Observer for MemoryObserver {
    fn notification_handled(&self, front_end: &'static str, outcome: &'static str, _: Duration) {
        self.keep(Observed::Notification { front_end, outcome });
    }

    fn batch_recorded(&self, table: &str, state: &str) {
        self.keep(Observed::Batch {
            table: table.to_string(),
            state: state.to_string(),
        });
    }

    fn job_submitted(&self, kind: &'static str, retry: bool) {
        self.keep(Observed::Job { kind, retry });
    }

    fn load_job_created(&self, table: &str, _: chrono::DateTime<chrono::Utc>) {
        self.load_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(table.to_string());
    }

    fn state_row_failed(&self, transient: bool) {
        self.keep(Observed::StateRowFailed { transient });
    }

    fn marker_done(&self, latency: Duration) {
        self.keep(Observed::MarkerDone(latency));
    }

    fn ordered_backlog_observed(&self, table_prefix: &str, items: usize) {
        self.keep(Observed::Backlog {
            table: table_prefix.to_string(),
            items,
        });
    }

    fn ordered_lock_observed(&self, table_prefix: &str, age: Option<Duration>) {
        self.keep(Observed::Lock {
            table: table_prefix.to_string(),
            age,
        });
    }
}
