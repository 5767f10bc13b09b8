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
