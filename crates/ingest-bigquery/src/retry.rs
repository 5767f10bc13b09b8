//! Retry policy: which HTTP outcomes are retried, and how long to wait between attempts.
//!
//! BigQuery asks clients to retry 5xx responses "later" with exponential back-off (REST
//! reference, "Error messages": *"Response codes in the 5xx range indicate a server-side error.
//! If you receive a 5xx response code, then retry the request later"*), and rate limits come as
//! 429 or as 403 with reason `rateLimitExceeded`. [`backoff_delay`] is the capped exponential
//! back-off with *full jitter*: the wait before retry `n` is drawn uniformly from
//! `[0, min(max_backoff, initial_backoff * 2^n)]`.

use std::time::Duration;

/// How many times, and how patiently, a request is retried.
///
/// The bound is `max_attempts` requests in all. With the defaults (5 attempts, waits capped at
/// 1, 2, 4, 8 s, 30 s per request) a call gives up after at most 15 s of waiting plus
/// 5 × 30 s of requests — within Cloud Run's default 300 s request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per call, the first one included (at least 1).
    pub max_attempts: u32,
    /// Cap of the first wait.
    pub initial_backoff: Duration,
    /// Cap of every wait.
    pub max_backoff: Duration,
    /// Timeout of one HTTP request (connect + response); a timeout is retried like a 503.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(32),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never waits long: for tests against local servers.
    ///
    /// ```
    /// use ingest_bigquery::RetryPolicy;
    /// let fast = RetryPolicy::fast(3);
    /// assert_eq!(fast.max_attempts, 3);
    /// assert!(fast.max_backoff.as_millis() <= 20);
    /// ```
    pub fn fast(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(20),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The wait before retry number `retry` (0 for the wait after the first failed attempt), given
/// `unit_random` drawn uniformly from `[0, 1)`: capped exponential back-off with full jitter.
///
/// Pure, so it is unit-tested; values of `unit_random` outside `[0, 1]` are clamped.
///
/// ```
/// use std::time::Duration;
/// use ingest_bigquery::{backoff_delay, RetryPolicy};
/// let policy = RetryPolicy::default(); // 1 s doubling, capped at 32 s
/// assert_eq!(backoff_delay(&policy, 0, 1.0), Duration::from_secs(1));
/// assert_eq!(backoff_delay(&policy, 3, 0.5), Duration::from_secs(4));
/// assert_eq!(backoff_delay(&policy, 30, 1.0), Duration::from_secs(32));
/// ```
pub fn backoff_delay(policy: &RetryPolicy, retry: u32, unit_random: f64) -> Duration {
    let ceiling = policy
        .initial_backoff
        .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(policy.max_backoff)
        .min(policy.max_backoff);
    let fraction = if unit_random.is_nan() {
        0.0
    } else {
        unit_random.clamp(0.0, 1.0)
    };
    ceiling.mul_f64(fraction)
}

/// Whether an HTTP status is worth retrying: throttling (429), server errors (500, 502, 503,
/// 504), or 403 whose Google error reason is `rateLimitExceeded` (BigQuery's "Error messages"
/// table lists `rateLimitExceeded` with HTTP 403).
pub fn is_retryable_status(status: u16, reason: Option<&str>) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
        || (status == 403 && reason == Some("rateLimitExceeded"))
}

/// A source of uniform numbers in `[0, 1)` for the jitter, without an RNG dependency: each
/// draw hashes a counter with the process's random `RandomState` keys.
#[derive(Debug, Default)]
pub(crate) struct Jitter {
    state: std::collections::hash_map::RandomState,
    counter: std::sync::atomic::AtomicU64,
}

impl Jitter {
    /// A number in `[0, 1)`.
    pub(crate) fn next_unit(&self) -> f64 {
        use std::hash::{BuildHasher, Hasher};
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut hasher = self.state.build_hasher();
        hasher.write_u64(n);
        // 53 random bits → a double in [0, 1).
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1_000),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        let ceilings: Vec<u128> = (0..6)
            .map(|n| backoff_delay(&p, n, 1.0).as_millis())
            .collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn full_jitter_scales_the_ceiling() {
        let p = policy();
        assert_eq!(backoff_delay(&p, 2, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(&p, 2, 0.25), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 2, 0.5), Duration::from_millis(200));
    }

    #[test]
    fn out_of_range_randoms_are_clamped() {
        let p = policy();
        assert_eq!(backoff_delay(&p, 0, 7.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 0, -1.0), Duration::ZERO);
        assert_eq!(backoff_delay(&p, 0, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let p = RetryPolicy::default();
        assert_eq!(backoff_delay(&p, u32::MAX, 1.0), p.max_backoff);
        assert_eq!(backoff_delay(&p, 64, 1.0), p.max_backoff);
    }

    #[test]
    fn retryable_statuses() {
        for status in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(status, None), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 412, 501] {
            assert!(!is_retryable_status(status, None), "{status}");
        }
        assert!(is_retryable_status(403, Some("rateLimitExceeded")));
        assert!(!is_retryable_status(403, Some("accessDenied")));
    }

    #[test]
    fn jitter_draws_are_in_unit_interval_and_vary() {
        let jitter = Jitter::default();
        let draws: Vec<f64> = (0..200).map(|_| jitter.next_unit()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|d| d.to_bits()).collect();
        assert!(distinct.len() > 190);
    }
}
