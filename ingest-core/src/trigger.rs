//! Deciding what an object event means: a trigger, or a no-op with its reason.

use crate::event::ObjectEvent;
use crate::settings::Settings;

/// What an object event asks bq-ingest to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A batch's success marker (`SUCCESS_FILENAME`) was written: ingest the batch.
    Success,
    /// `<table_prefix>/_BACKFILL` was written: run the ordered subscriber of that table.
    Backfill,
    /// `<table_prefix>/<START_BACKFILL_FILENAME>` was written: open the start gate of that
    /// table's ordered backlog.
    StartBackfill,
    /// An item was written to a table's `_backlog/` (by bq-ingest itself): nothing to do.
    Backlog,
    /// Nothing to do.
    Ignore(IgnoreReason),
}

/// Why an event is a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Not a finalize event (delete, archive, metadata update).
    NotFinalize,
    /// The object lives under a `_config/` folder.
    ConfigObject,
    /// The object is not a marker (a data file, say).
    NotATrigger,
    /// The object is outside `INCLUDE_PREFIXES` or inside `EXCLUDE_PREFIXES`.
    OutOfScope,
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IgnoreReason::NotFinalize => "not an object-finalize event",
            IgnoreReason::ConfigObject => "object under _config/",
            IgnoreReason::NotATrigger => "not a trigger file",
            IgnoreReason::OutOfScope => "outside the served prefixes",
        })
    }
}

impl Trigger {
    /// The name used by `bq-ingest explain`: `success`, `backfill`, `start_backfill`,
    /// `backlog` or `ignore`.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Success => "success",
            Trigger::Backfill => "backfill",
            Trigger::StartBackfill => "start_backfill",
            Trigger::Backlog => "backlog",
            Trigger::Ignore(_) => "ignore",
        }
    }
}

/// Classifies an event. Pure and allocation-free on the no-op path.
pub fn classify(settings: &Settings, event: &ObjectEvent) -> Trigger {
    classify_name(settings, event.event_type, &event.name)
}

/// Classifies by event type and object name.
pub fn classify_name(
    settings: &Settings,
    event_type: crate::event::EventType,
    name: &str,
) -> Trigger {
    let _ = (settings, event_type, name);
    unimplemented!("helper fills this in")
}
