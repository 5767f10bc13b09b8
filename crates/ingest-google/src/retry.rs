//! The retry policy of every Google API call, and which answers are worth retrying.

use std::time::Duration;

use rand::Rng;

/// How a [`GoogleClient`](crate::GoogleClient) retries throttling (429), server errors (5xx,
/// 408), timeouts and connection errors.
///
/// The `n`-th retry (counting from 0) waits a uniformly random time in
/// `[0, min(max_delay, initial_delay · 2ⁿ))` ("full jitter"). The client gives up after
/// `max_attempts` attempts, or earlier when the next wait would end after `deadline` (counted
/// from the start of the first attempt).
///
/// ```
/// use std::time::Duration;
/// use ingest_google::RetryPolicy;
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

    /// `max_attempts` attempts that never wait long: for tests against local servers.
    ///
    /// ```
    /// let fast = ingest_google::RetryPolicy::fast(3);
    /// assert_eq!(fast.max_attempts, 3);
    /// assert!(fast.max_delay.as_millis() <= 20);
    /// ```
    pub fn fast(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
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
    /// `[0, 1]` (or NaN) are clamped into it. A pure function.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ingest_google::RetryPolicy;
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
    /// use ingest_google::RetryPolicy;
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

/// A uniformly distributed number in `[0, 1)` for the jitter (thread-local RNG).
pub(crate) fn random_unit() -> f64 {
    rand::thread_rng().gen::<f64>()
}

/// What a failed answer means, from its HTTP status (and Google's error reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// 404: the object, bucket, job, table or subscription does not exist.
    NotFound,
    /// 409 or 412: it exists already, or a precondition (generation match) did not hold.
    Conflict,
    /// 408, 429, 5xx, 403 `rateLimitExceeded`, timeouts, connection and other transport
    /// errors: retried within the policy, then transient.
    Retryable,
    /// Any other answer: retrying will not help.
    Permanent,
}

/// The one classification of answers for all three services.
///
/// ```
/// use ingest_google::{classify_status, FailureClass};
/// assert_eq!(classify_status(503, None), FailureClass::Retryable);
/// assert_eq!(classify_status(403, Some("rateLimitExceeded")), FailureClass::Retryable);
/// assert_eq!(classify_status(403, Some("accessDenied")), FailureClass::Permanent);
/// assert_eq!(classify_status(412, None), FailureClass::Conflict);
/// ```
pub fn classify_status(status: u16, reason: Option<&str>) -> FailureClass {
    match status {
        404 => FailureClass::NotFound,
        409 | 412 => FailureClass::Conflict,
        408 | 429 | 500..=599 => FailureClass::Retryable,
        403 if reason == Some("rateLimitExceeded") => FailureClass::Retryable,
        _ => FailureClass::Permanent,
    }
}

#[cfg(test)]
mod tests;
