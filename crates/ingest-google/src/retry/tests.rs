//! The backoff arithmetic and the classification of answers.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn delay_cap_doubles_from_initial_and_stops_at_max() {
    let policy = RetryPolicy::default();
    let caps: Vec<Duration> = (0..8).map(|retry| policy.delay_cap(retry)).collect();
    assert_eq!(
        caps,
        vec![
            ms(100),
            ms(200),
            ms(400),
            ms(800),
            ms(1600),
            ms(3200),
            ms(5000),
            ms(5000)
        ]
    );
}

#[test]
fn delay_cap_does_not_overflow_on_huge_retry_numbers() {
    let policy = RetryPolicy {
        max_delay: Duration::MAX,
        ..RetryPolicy::default()
    };
    assert_eq!(policy.delay_cap(u32::MAX), Duration::MAX);
    assert_eq!(RetryPolicy::default().delay_cap(1_000), ms(5000));
}

#[test]
fn full_jitter_scales_the_cap_by_the_unit() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.backoff_delay(0, 0.0), Duration::ZERO);
    assert_eq!(policy.backoff_delay(1, 0.25), ms(50));
    assert_eq!(policy.backoff_delay(3, 0.5), ms(400));
    assert_eq!(policy.backoff_delay(9, 0.1), ms(500));
    // Out-of-range units are clamped, never panic.
    assert_eq!(policy.backoff_delay(0, 7.0), ms(100));
    assert_eq!(policy.backoff_delay(0, -1.0), Duration::ZERO);
    assert_eq!(policy.backoff_delay(0, f64::NAN), Duration::ZERO);
}

#[test]
fn gives_up_after_max_attempts() {
    let policy = RetryPolicy::default();
    let waits: Vec<Option<Duration>> = (1..=6)
        .map(|attempt| policy.next_retry(attempt, Duration::ZERO, 1.0))
        .collect();
    assert_eq!(
        waits,
        vec![
            Some(ms(100)),
            Some(ms(200)),
            Some(ms(400)),
            Some(ms(800)),
            None,
            None
        ]
    );
    assert_eq!(
        RetryPolicy::no_retries().next_retry(1, Duration::ZERO, 0.5),
        None
    );
    let zero = RetryPolicy {
        max_attempts: 0,
        ..RetryPolicy::default()
    };
    assert_eq!(zero.next_retry(1, Duration::ZERO, 0.5), None);
}

#[test]
fn gives_up_when_the_wait_would_end_after_the_deadline() {
    let policy = RetryPolicy {
        deadline: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    assert_eq!(policy.next_retry(2, ms(700), 1.0), Some(ms(200)));
    assert_eq!(policy.next_retry(2, ms(800), 1.0), None);
    assert_eq!(policy.next_retry(2, ms(900), 0.25), Some(ms(50)));
    assert_eq!(policy.next_retry(1, Duration::MAX, 0.5), None);
}

#[test]
fn random_units_are_in_range_and_vary() {
    let units: Vec<f64> = (0..200).map(|_| random_unit()).collect();
    assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
    let distinct = units
        .iter()
        .map(|u| u.to_bits())
        .collect::<std::collections::HashSet<_>>();
    assert!(
        distinct.len() > 190,
        "only {} distinct values",
        distinct.len()
    );
    assert!(units.iter().any(|u| *u < 0.5) && units.iter().any(|u| *u >= 0.5));
}

#[test]
fn statuses_map_to_classes() {
    assert_eq!(classify_status(404, None), FailureClass::NotFound);
    assert_eq!(classify_status(409, None), FailureClass::Conflict);
    assert_eq!(classify_status(412, None), FailureClass::Conflict);
    for status in [408, 429, 500, 502, 503, 504, 599] {
        assert_eq!(
            classify_status(status, None),
            FailureClass::Retryable,
            "{status}"
        );
    }
    for status in [400, 401, 403, 405, 410, 411, 413, 416, 600] {
        assert_eq!(
            classify_status(status, None),
            FailureClass::Permanent,
            "{status}"
        );
    }
    assert_eq!(
        classify_status(403, Some("rateLimitExceeded")),
        FailureClass::Retryable
    );
}
