//! Deciding what an object event means: a trigger, or a no-op with its reason.

use crate::event::{EventType, ObjectEvent};
use crate::settings::{Settings, BACKFILL_FILENAME};

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

/// Classifies by event type and object name. Allocation-free.
///
/// In order:
/// 1. anything but a finalize is `Ignore(NotFinalize)`;
/// 2. a name outside `INCLUDE_PREFIXES` (when set) or inside `EXCLUDE_PREFIXES` is
///    `Ignore(OutOfScope)`;
/// 3. a name with a `_config` folder segment (`_config/…` or `…/_config/…`) is
///    `Ignore(ConfigObject)`;
/// 4. a name with a `_backlog` folder segment is [`Trigger::Backlog`], whatever its basename;
/// 5. by basename: `SUCCESS_FILENAME` is [`Trigger::Success`], `_BACKFILL`
///    ([`BACKFILL_FILENAME`]) is [`Trigger::Backfill`], `START_BACKFILL_FILENAME` (when set) is
///    [`Trigger::StartBackfill`]; anything else is `Ignore(NotATrigger)`.
///
/// ```
/// use ingest_core::event::EventType;
/// use ingest_core::settings::Settings;
/// use ingest_core::trigger::{classify_name, IgnoreReason, Trigger};
///
/// let settings = Settings::default();
/// let finalize = EventType::Finalize;
/// assert_eq!(classify_name(&settings, finalize, "ds/tbl/2020/01/02/_SUCCESS"), Trigger::Success);
/// assert_eq!(classify_name(&settings, finalize, "ds/tbl/_BACKFILL"), Trigger::Backfill);
/// assert_eq!(
///     classify_name(&settings, finalize, "ds/tbl/_config/load.json"),
///     Trigger::Ignore(IgnoreReason::ConfigObject)
/// );
/// assert_eq!(
///     classify_name(&settings, EventType::Delete, "ds/tbl/_SUCCESS"),
///     Trigger::Ignore(IgnoreReason::NotFinalize)
/// );
/// ```
pub fn classify_name(settings: &Settings, event_type: EventType, name: &str) -> Trigger {
    if event_type != EventType::Finalize {
        return Trigger::Ignore(IgnoreReason::NotFinalize);
    }
    let included = settings.include_prefixes.is_empty()
        || settings
            .include_prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()));
    let excluded = settings
        .exclude_prefixes
        .iter()
        .any(|prefix| name.starts_with(prefix.as_str()));
    if !included || excluded {
        return Trigger::Ignore(IgnoreReason::OutOfScope);
    }
    let (folder, basename) = match name.rsplit_once('/') {
        Some((folder, basename)) => (folder, basename),
        None => ("", name),
    };
    if has_segment(folder, CONFIG_SEGMENT) {
        return Trigger::Ignore(IgnoreReason::ConfigObject);
    }
    if has_segment(folder, BACKLOG_SEGMENT) {
        return Trigger::Backlog;
    }
    if basename.is_empty() {
        // A folder placeholder (`dataset/table/`).
        return Trigger::Ignore(IgnoreReason::NotATrigger);
    }
    if basename == settings.success_filename {
        Trigger::Success
    } else if basename == BACKFILL_FILENAME {
        Trigger::Backfill
    } else if settings.start_backfill_filename.as_deref() == Some(basename) {
        Trigger::StartBackfill
    } else {
        Trigger::Ignore(IgnoreReason::NotATrigger)
    }
}

/// The folder segment of configuration files.
const CONFIG_SEGMENT: &str = "_config";
/// The folder segment of a table's ordered backlog.
const BACKLOG_SEGMENT: &str = "_backlog";

/// Whether `folder` (a `/`-separated path without the basename) has `segment` as one of its
/// segments.
fn has_segment(folder: &str, segment: &str) -> bool {
    // Fast reject: most names contain no `_config`/`_backlog` at all.
    folder.contains(segment) && folder.split('/').any(|s| s == segment)
}

#[cfg(test)]
mod tests;
