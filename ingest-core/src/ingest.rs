//! The unordered ingest path: from an event to jobs that are followed to completion.

use crate::ports::JobRef;

/// What handling one event came to.
#[derive(Debug, Clone, PartialEq)]
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
    /// Jobs submitted; the caller asked not to wait.
    Submitted {
        /// The jobs.
        jobs: Vec<JobRef>,
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
    /// The batch failed for good; the failure was recorded.
    Failed {
        /// What failed, naming the object or job.
        error: String,
    },
}

impl Outcome {
    /// Whether the outcome is final: the notification can be acknowledged.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Running { .. })
    }
}
