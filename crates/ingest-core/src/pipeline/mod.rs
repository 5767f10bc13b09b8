//! The steps that the unordered path (`crate::unordered`) and the ordered protocol
//! (`crate::ordering`) share, so that neither needs the other:
//!
//! - `prepare`: the `_config/` cache, reading and merging the config on the way to a batch,
//!   resolving its destination, listing it, and planning its jobs;
//! - `jobs`: job attempts and their ids, retriable errors, submitting, polling and following;
//! - `record`: state-table rows and failure reports;
//! - `after_success`: archiving or deleting a done batch's files (`ingest.json`);
//! - `moves`: copying a listed object away and deleting it at its generation.
//!
//! Every step takes the [`Ports`] it needs (and the settings), nothing else; `Context` bundles
//! what the `Ingestor` owns for the steps that need it all.

use std::sync::Arc;
use std::time::Duration;

use crate::event::ObjectEvent;
use crate::outcome::IngestError;
use crate::ports::{
    Clock, FailureSink, NoObserver, ObjectStore, Observer, StoreError, Warehouse, WarehouseError,
};
use crate::settings::Settings;

pub(crate) mod after_success;
pub(crate) mod jobs;
pub(crate) mod moves;
pub(crate) mod prepare;
pub(crate) mod record;
pub(crate) mod streamed;

/// The ports an `Ingestor` works through: the object store, the warehouse, the clock and,
/// optionally, where failed batches are announced.
///
/// ```
/// use std::sync::Arc;
/// use ingest_core::pipeline::Ports;
/// use ingest_memory::{MemoryClock, MemoryStore, MemoryWarehouse};
///
/// let ports = Ports::new(
///     Arc::new(MemoryStore::new()),
///     Arc::new(MemoryWarehouse::new()),
///     Arc::new(MemoryClock::new()),
/// );
/// assert!(ports.failures.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Ports {
    /// Where batches and `_config/` live (GCS).
    pub store: Arc<dyn ObjectStore>,
    /// Where jobs run and outcomes are recorded (BigQuery).
    pub warehouse: Arc<dyn Warehouse>,
    /// Time, for polling and deadlines.
    pub clock: Arc<dyn Clock>,
    /// Where failed batches are announced (`FAILURE_TOPIC`), when set.
    pub failures: Option<Arc<dyn FailureSink>>,
    /// What happened, for metrics ([`NoObserver`] unless set).
    pub observer: Arc<dyn Observer>,
}

impl Ports {
    /// The three required ports, with no failure sink.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        warehouse: Arc<dyn Warehouse>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Ports {
            store,
            warehouse,
            clock,
            failures: None,
            observer: Arc::new(NoObserver),
        }
    }
}

/// What the steps that need everything read: the settings, the ports and the config cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) ports: &'a Ports,
    pub(crate) cache: &'a prepare::ConfigCache,
}

/// A failure that is final for this event; turned into a failed outcome and recorded.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

/// A step's result: transient errors propagate as `Err`, final ones as [`Step::Fatal`].
pub(crate) enum Step<T> {
    Ok(T),
    Fatal(Fatal),
}

/// `d` as a chrono duration (saturating).
pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A transient store error, about `event`.
pub(crate) fn store_error(event: &ObjectEvent, e: StoreError) -> IngestError {
    IngestError::Store {
        event: event.uri(),
        source: e,
    }
}

/// A transient warehouse error, about `event`.
pub(crate) fn warehouse_error(event: &ObjectEvent, e: WarehouseError) -> IngestError {
    IngestError::Warehouse {
        event: event.uri(),
        source: e,
    }
}
