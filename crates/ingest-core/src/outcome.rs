//! What handling one notification comes to: an [`Outcome`] or a transient [`IngestError`],
//! and what a front end does with either ([`Disposition`]): the one place that policy lives.

use std::time::Duration;

use crate::ports::{JobRef, StoreError, WarehouseError};

/// What handling one event came to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to do.
    Ignored {
        /// Why.
        reason: String,
    },
    /// The batch was queued on its table's ordered backlog.
    Queued {
        /// The backlog item written.
        backlog_item: String,
    },
    /// The jobs are still running at the deadline; handling the same event again follows them.
    Running {
        /// The jobs.
        jobs: Vec<JobRef>,
    },
    /// Every job of the batch succeeded.
    Done {
        /// The jobs.
        jobs: Vec<JobRef>,
        /// Rows written.
        rows: u64,
        /// Bytes read.
        bytes: u64,
    },
    /// The batch hit BigQuery's daily quota of load jobs of its table: it is recorded as
    /// `parked`, not failed, and loads under its next attempt's ids when it is handled again
    /// (`bq-ingest reconcile --apply`, a redelivery) once the quota allows.
    Parked {
        /// The jobs that hit the quota.
        jobs: Vec<JobRef>,
        /// The quota error, naming the marker.
        error: String,
    },
    /// The batch failed for good; the failure was recorded.
    Failed {
        /// What failed, naming the object or job.
        error: String,
    },
    /// The notification names a marker that cannot be a batch — its path gives an invalid
    /// destination — and no request was made for it: nothing was read, submitted or recorded.
    /// Front ends log it at ERROR and do not ask for it again.
    Rejected {
        /// Why, naming the object.
        error: String,
    },
}

/// What a front end does with a notification once it was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Final: acknowledge it (Pub/Sub ack, HTTP 200).
    Acknowledge,
    /// Not final: hand it back so that it comes again after about this long (Pub/Sub nack
    /// with that delay, HTTP 503 with `Retry-After`). Handling it again is safe.
    RetryAfter(Duration),
    /// Final, but the notification itself cannot be processed: do not ask for it again and log
    /// it at ERROR (Pub/Sub pull: ack; HTTP: 400, which a push subscription's dead-letter policy
    /// routes to its dead-letter topic).
    Reject,
}

/// How long a notification handed back with [`Disposition::RetryAfter`] should wait before it
/// comes again, unless a front end is configured otherwise.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

impl Outcome {
    /// Whether the outcome is final: the notification is not needed again.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Running { .. })
    }

    /// What the front end does with the notification: the one place this policy lives.
    ///
    /// ```
    /// use ingest_core::ingest::{Disposition, Outcome, DEFAULT_RETRY_AFTER};
    /// assert_eq!(Outcome::Failed { error: "e".into() }.disposition(), Disposition::Acknowledge);
    /// assert_eq!(Outcome::Running { jobs: vec![] }.disposition(), Disposition::RetryAfter(DEFAULT_RETRY_AFTER));
    /// assert_eq!(Outcome::Rejected { error: "e".into() }.disposition(), Disposition::Reject);
    /// ```
    pub fn disposition(&self) -> Disposition {
        match self {
            Outcome::Running { .. } => Disposition::RetryAfter(DEFAULT_RETRY_AFTER),
            Outcome::Rejected { .. } => Disposition::Reject,
            // A parked batch waits for hours (the quota is per day): a redelivery every few
            // minutes would only burn delivery attempts. `reconcile` picks it up.
            Outcome::Ignored { .. }
            | Outcome::Queued { .. }
            | Outcome::Done { .. }
            | Outcome::Parked { .. }
            | Outcome::Failed { .. } => Disposition::Acknowledge,
        }
    }

    /// The jobs the outcome names (running or done), else none.
    pub fn jobs(&self) -> &[JobRef] {
        match self {
            Outcome::Running { jobs }
            | Outcome::Done { jobs, .. }
            | Outcome::Parked { jobs, .. } => jobs,
            Outcome::Ignored { .. }
            | Outcome::Queued { .. }
            | Outcome::Failed { .. }
            | Outcome::Rejected { .. } => &[],
        }
    }

    /// A short name: `ignored`, `queued`, `running`, `done`, `parked`, `failed`, `rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ignored { .. } => "ignored",
            Outcome::Queued { .. } => "queued",
            Outcome::Running { .. } => "running",
            Outcome::Done { .. } => "done",
            Outcome::Parked { .. } => "parked",
            Outcome::Failed { .. } => "failed",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// A transient failure: the event should be delivered again later
/// ([`IngestError::disposition`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The object store failed transiently.
    #[error("{event}: {source}")]
    Store {
        /// `gs://bucket/name` of the event.
        event: String,
        /// The store's error.
        source: StoreError,
    },
    /// The warehouse failed transiently.
    #[error("{event}: {source}")]
    Warehouse {
        /// `gs://bucket/name` of the event.
        event: String,
        /// The warehouse's error.
        source: WarehouseError,
    },
}

impl IngestError {
    /// Always [`Disposition::RetryAfter`]: the store or the warehouse may answer later.
    pub fn disposition(&self) -> Disposition {
        Disposition::RetryAfter(DEFAULT_RETRY_AFTER)
    }
}
