//! The retry policy and its backoff computation: capped exponential backoff with full jitter,
//! bounded by a number of attempts and a total deadline.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How [`GcsStore`](crate::GcsStore) retries throttling (429), server errors (5xx), timeouts and
/// connection errors.
///
/// The `n`-th retry (counting from 0) waits a uniformly random time in
/// `[0, min(max_delay, initial_delay · 2ⁿ))` ("full jitter"). The store gives up — and reports
/// [`StoreError::Transient`](ingest_core::ports::StoreError::Transient) — after `max_attempts`
/// attempts, or earlier when the next wait would end after `deadline` (counted from the start
/// of the first attempt).
///
/// ```
/// use std::time::Duration;
/// use ingest_gcs::RetryPolicy;
///
/// let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
/// assert_eq!(policy.initial_delay, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; `1` disables retries, `0` counts as `1`.
    pub max_attempts: u32,
    /// The upper bound of the first retry's wait.
    pub initial_delay: Duration,
    /// The cap of every wait.
    pub max_delay: Duration,
    /// No retry starts after this much time from the first attempt.
    pub deadline: Duration,
    /// How long one attempt (one HTTP request, response body included) may take before it is
    /// abandoned and counted as a timeout.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits from 100 ms capped at 5 s, 30 s deadline, 30 s per attempt.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes exactly one attempt (no retries).
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The upper bound of the wait before retry number `retry` (0 for the first retry):
    /// `min(max_delay, initial_delay · 2^retry)`, without overflow.
    pub fn delay_cap(&self, retry: u32) -> Duration {
        1u32.checked_shl(retry)
            .and_then(|factor| self.initial_delay.checked_mul(factor))
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// The wait before retry number `retry` (0 for the first retry), given a uniformly random
    /// `unit` in `[0, 1)`: full jitter, `unit · delay_cap(retry)`. Values of `unit` outside
    /// `[0, 1]` (or NaN) are clamped into it. A pure function: the store passes a random unit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ingest_gcs::RetryPolicy;
    ///
    /// let policy = RetryPolicy::default();
    /// assert_eq!(policy.backoff_delay(0, 0.5), Duration::from_millis(50));
    /// assert_eq!(policy.backoff_delay(10, 0.5), Duration::from_millis(2500));
    /// ```
    pub fn backoff_delay(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.delay_cap(retry).mul_f64(unit)
    }

    /// What to do after failed attempt number `attempt` (1 for the first attempt) at `elapsed`
    /// time since the first attempt started, given a random `unit` in `[0, 1)` for the jitter:
    /// `Some(wait)` to retry after `wait`, `None` to give up. A pure function.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ingest_gcs::RetryPolicy;
    ///
    /// let policy = RetryPolicy::default();
    /// assert!(policy.next_retry(1, Duration::ZERO, 0.5).is_some());
    /// assert_eq!(policy.next_retry(5, Duration::ZERO, 0.5), None); // attempts used up
    /// assert_eq!(policy.next_retry(1, Duration::from_secs(30), 0.5), None); // past the deadline
    /// ```
    pub fn next_retry(&self, attempt: u32, elapsed: Duration, unit: f64) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let wait = self.backoff_delay(attempt.saturating_sub(1), unit);
        match elapsed.checked_add(wait) {
            Some(resume_at) if resume_at < self.deadline => Some(wait),
            _ => None,
        }
    }
}

/// A uniformly distributed number in `[0, 1)` for the jitter, from std's randomly keyed hasher
/// (no RNG crate needed; jitter does not need cryptographic quality).
pub(crate) fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random 64-bit number (randomly keyed SipHash of a process-wide counter).
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
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
}
