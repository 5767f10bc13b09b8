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
mod tests {
    use super::*;

    fn finalize(settings: &Settings, name: &str) -> Trigger {
        classify_name(settings, EventType::Finalize, name)
    }

    #[test]
    fn success_markers_in_default_regex_forms() {
        let settings = Settings::default();
        for name in [
            "dataset/table/_SUCCESS",
            "dataset/table/$20200506/_SUCCESS",
            "dataset/table/2020/05/06/15/_SUCCESS",
            "dataset/table/2020/05/06/15/batch_42/_SUCCESS",
            "dataset/table/historical/2020/05/_SUCCESS",
            "dataset/table/incremental/batch-7/_SUCCESS",
            "_SUCCESS",
        ] {
            assert_eq!(finalize(&settings, name), Trigger::Success, "{name}");
        }
    }

    #[test]
    fn data_files_and_look_alikes_are_not_triggers() {
        let settings = Settings::default();
        for name in [
            "dataset/table/2020/05/06/15/part-00000.parquet",
            "dataset/table/$2020050615/part-m-00001",
            "dataset/table/_SUCCESS.tmp",
            "dataset/table/x_SUCCESS",
            "dataset/table/_success",
            "dataset/table/_SUCCESS/part-0",
            "dataset/table/",
            "",
            "dataset/table/_BACKFILL.bak",
            "dataset/table/_bqlock",
        ] {
            assert_eq!(
                finalize(&settings, name),
                Trigger::Ignore(IgnoreReason::NotATrigger),
                "{name}"
            );
        }
    }

    #[test]
    fn non_finalize_events_are_ignored_even_for_markers() {
        let settings = Settings::default();
        for event_type in [
            EventType::Delete,
            EventType::Archive,
            EventType::MetadataUpdate,
        ] {
            for name in [
                "dataset/table/_SUCCESS",
                "dataset/table/_BACKFILL",
                "a/_backlog/b",
            ] {
                assert_eq!(
                    classify_name(&settings, event_type, name),
                    Trigger::Ignore(IgnoreReason::NotFinalize),
                    "{event_type:?} {name}"
                );
            }
        }
    }

    #[test]
    fn config_folders_are_ignored_even_for_success_markers() {
        let settings = Settings::default();
        for name in [
            "_config/load.json",
            "_config/_SUCCESS",
            "dataset/_config/_SUCCESS",
            "dataset/table/_config/load.json",
            "dataset/table/_config/bq_transform.sql",
            "dataset/table/_config/sub/_BACKFILL",
        ] {
            assert_eq!(
                finalize(&settings, name),
                Trigger::Ignore(IgnoreReason::ConfigObject),
                "{name}"
            );
        }
        // Only a whole folder segment counts.
        assert_eq!(
            finalize(&settings, "dataset/table/my_config/_SUCCESS"),
            Trigger::Success
        );
        assert_eq!(
            finalize(&settings, "dataset/table_config/_SUCCESS"),
            Trigger::Success
        );
        assert_eq!(
            finalize(&settings, "dataset/table/_config"),
            Trigger::Ignore(IgnoreReason::NotATrigger)
        );
    }

    #[test]
    fn backlog_items_are_backlog_whatever_their_basename() {
        let settings = Settings::default();
        for name in [
            "dataset/table/_backlog/2020/05/06/_SUCCESS",
            "dataset/table/_backlog/batch_1/_SUCCESS",
            "dataset/table/_backlog/_BACKFILL",
            "_backlog/x",
        ] {
            assert_eq!(finalize(&settings, name), Trigger::Backlog, "{name}");
        }
        assert_eq!(
            finalize(&settings, "dataset/table/not_backlog/_SUCCESS"),
            Trigger::Success
        );
    }

    #[test]
    fn backfill_and_start_backfill_markers() {
        let mut settings = Settings::default();
        assert_eq!(
            finalize(&settings, "dataset/table/_BACKFILL"),
            Trigger::Backfill
        );
        assert_eq!(
            finalize(&settings, "dataset/table/_HISTORYDONE"),
            Trigger::Ignore(IgnoreReason::NotATrigger)
        );
        settings.start_backfill_filename = Some("_HISTORYDONE".to_string());
        assert_eq!(
            finalize(&settings, "dataset/table/_HISTORYDONE"),
            Trigger::StartBackfill
        );
        assert_eq!(
            finalize(&settings, "dataset/table/_BACKFILL"),
            Trigger::Backfill
        );
    }

    #[test]
    fn custom_success_filename() {
        let settings = Settings {
            success_filename: "_DONE".to_string(),
            ..Settings::default()
        };
        assert_eq!(
            finalize(&settings, "dataset/table/2020/05/_DONE"),
            Trigger::Success
        );
        assert_eq!(
            finalize(&settings, "dataset/table/2020/05/_SUCCESS"),
            Trigger::Ignore(IgnoreReason::NotATrigger)
        );
        assert_eq!(
            finalize(&settings, "dataset/table/_config/_DONE"),
            Trigger::Ignore(IgnoreReason::ConfigObject)
        );
        assert_eq!(
            finalize(&settings, "dataset/table/_backlog/x/_DONE"),
            Trigger::Backlog
        );
    }

    #[test]
    fn include_and_exclude_prefixes() {
        let settings = Settings {
            include_prefixes: vec!["sales/".to_string(), "ops/".to_string()],
            exclude_prefixes: vec!["sales/tmp".to_string()],
            ..Settings::default()
        };
        assert_eq!(
            finalize(&settings, "sales/orders/_SUCCESS"),
            Trigger::Success
        );
        assert_eq!(
            finalize(&settings, "ops/events/_BACKFILL"),
            Trigger::Backfill
        );
        for name in [
            "marketing/clicks/_SUCCESS",
            "sales/tmp_orders/_SUCCESS",
            "sales/tmp/_config/load.json",
            "salesforce/x/_SUCCESS",
        ] {
            assert_eq!(
                finalize(&settings, name),
                Trigger::Ignore(IgnoreReason::OutOfScope),
                "{name}"
            );
        }
        // Exclusion alone: everything else is served.
        let settings = Settings {
            exclude_prefixes: vec!["archive/".to_string()],
            ..Settings::default()
        };
        assert_eq!(
            finalize(&settings, "sales/orders/_SUCCESS"),
            Trigger::Success
        );
        assert_eq!(
            finalize(&settings, "archive/orders/_SUCCESS"),
            Trigger::Ignore(IgnoreReason::OutOfScope)
        );
    }

    #[test]
    fn classify_uses_the_event_name_and_type() {
        let settings = Settings::default();
        let mut event = ObjectEvent::finalized("bucket", "dataset/table/_SUCCESS", 1);
        assert_eq!(classify(&settings, &event), Trigger::Success);
        event.event_type = EventType::Delete;
        assert_eq!(
            classify(&settings, &event),
            Trigger::Ignore(IgnoreReason::NotFinalize)
        );
    }

    #[test]
    fn trigger_names_and_reasons() {
        assert_eq!(Trigger::StartBackfill.name(), "start_backfill");
        assert_eq!(Trigger::Ignore(IgnoreReason::ConfigObject).name(), "ignore");
        assert_eq!(
            IgnoreReason::OutOfScope.to_string(),
            "outside the served prefixes"
        );
    }
}
