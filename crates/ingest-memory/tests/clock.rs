//! Behaviour of `MemoryClock`: virtual time that moves only when told to.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::executor::block_on;
use ingest_core::ports::Clock;
use ingest_memory::{MemoryClock, DEFAULT_START_SECONDS};

#[test]
fn starts_at_a_fixed_instant() {
    let clock = MemoryClock::new();
    assert_eq!(clock.now().timestamp(), DEFAULT_START_SECONDS);
    assert_eq!(MemoryClock::default().now(), clock.now());
    // Time does not move by itself.
    assert_eq!(clock.now(), clock.now());
}

#[test]
fn sleep_advances_and_is_recorded() {
    let t0 = Utc
        .with_ymd_and_hms(2021, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    let clock = MemoryClock::at(t0);
    block_on(async {
        clock.sleep(Duration::from_millis(50)).await;
        clock.sleep(Duration::from_millis(100)).await;
    });
    assert_eq!((clock.now() - t0).num_milliseconds(), 150);
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_millis(50), Duration::from_millis(100)]
    );
    assert_eq!(clock.total_slept(), Duration::from_millis(150));

    // advance is not a sleep.
    clock.advance(Duration::from_secs(1));
    assert_eq!((clock.now() - t0).num_milliseconds(), 1_150);
    assert_eq!(clock.sleeps().len(), 2);
}

#[test]
fn clones_share_the_time_and_set_can_go_back() {
    let clock = MemoryClock::new();
    let other = clock.clone();
    other.advance(Duration::from_secs(60));
    assert_eq!(clock.now(), other.now());
    let earlier = Utc
        .with_ymd_and_hms(2019, 5, 6, 7, 8, 9)
        .single()
        .expect("valid date");
    clock.set(earlier);
    assert_eq!(other.now(), earlier);
}

#[test]
fn huge_durations_saturate_instead_of_panicking() {
    let clock = MemoryClock::new();
    clock.advance(Duration::MAX);
    assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    block_on(clock.sleep(Duration::from_secs(1)));
    assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
}
