//! Ordered ingest per table: a backlog and a lock kept in the object store.

use chrono::{DateTime, Utc};

use crate::event::ObjectEvent;
use crate::ingest::{IngestError, Ingestor, Outcome, PreparedBatch};

/// Queues a batch of an ordered table on its backlog.
pub(crate) async fn publish(
    ingestor: &Ingestor,
    event: &ObjectEvent,
    prepared: &PreparedBatch,
) -> Result<Outcome, IngestError> {
    let _ = (ingestor, prepared);
    Ok(Outcome::Failed {
        error: format!("{}: ordered ingest is not available yet", event.uri()),
    })
}

/// Runs the subscriber of one table's backlog.
pub(crate) async fn run_subscriber(
    ingestor: &Ingestor,
    event: &ObjectEvent,
    deadline: DateTime<Utc>,
) -> Result<Outcome, IngestError> {
    let _ = (ingestor, deadline);
    Ok(Outcome::Failed {
        error: format!("{}: ordered ingest is not available yet", event.uri()),
    })
}

/// Opens the start gate of one table's backlog.
pub(crate) async fn open_start_gate(
    ingestor: &Ingestor,
    event: &ObjectEvent,
) -> Result<Outcome, IngestError> {
    let _ = ingestor;
    Ok(Outcome::Failed {
        error: format!("{}: ordered ingest is not available yet", event.uri()),
    })
}
