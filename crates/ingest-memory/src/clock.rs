//! [`MemoryClock`]: a [`Clock`] with virtual time.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use ingest_core::ports::Clock;

/// The instant a [`MemoryClock::new`] starts at: 2020-10-26T00:00:00Z.
pub const DEFAULT_START_SECONDS: i64 = 1_603_670_400;

/// A [`Clock`] whose time only moves when told to.
///
/// [`Clock::sleep`] advances the virtual time by the requested duration and returns at once, so
/// polling loops and deadlines run instantly and deterministically. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use ingest_core::ports::Clock;
/// use ingest_memory::MemoryClock;
///
/// let clock = MemoryClock::new();
/// let start = clock.now();
/// futures::executor::block_on(clock.sleep(Duration::from_secs(5)));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!((clock.now() - start).num_seconds(), 6);
/// assert_eq!(clock.sleeps(), vec![Duration::from_secs(5)]);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryClock {
    inner: Arc<Mutex<ClockState>>,
}

#[derive(Debug)]
struct ClockState {
    now: DateTime<Utc>,
    sleeps: Vec<Duration>,
}

impl MemoryClock {
    /// A clock at the fixed instant 2020-10-26T00:00:00Z ([`DEFAULT_START_SECONDS`]).
    pub fn new() -> Self {
        let start = Utc
            .timestamp_opt(DEFAULT_START_SECONDS, 0)
            .single()
            .unwrap_or_default();
        MemoryClock::at(start)
    }

    /// A clock at `start`.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use ingest_core::ports::Clock;
    /// use ingest_memory::MemoryClock;
    ///
    /// let t = Utc.with_ymd_and_hms(2021, 3, 4, 5, 6, 7).unwrap();
    /// assert_eq!(MemoryClock::at(t).now(), t);
    /// ```
    pub fn at(start: DateTime<Utc>) -> Self {
        MemoryClock {
            inner: Arc::new(Mutex::new(ClockState {
                now: start,
                sleeps: Vec::new(),
            })),
        }
    }

    /// Moves the virtual time forward by `duration` (saturating at the largest instant).
    pub fn advance(&self, duration: Duration) {
        let mut state = self.lock();
        state.now = add_saturating(state.now, duration);
    }

    /// Sets the virtual time to `instant` (which may be earlier than now).
    pub fn set(&self, instant: DateTime<Utc>) {
        self.lock().now = instant;
    }

    /// Every duration passed to [`Clock::sleep`] so far, in call order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    /// The sum of every duration passed to [`Clock::sleep`] so far.
    pub fn total_slept(&self) -> Duration {
        self.lock()
            .sleeps
            .iter()
            .fold(Duration::ZERO, |sum, d| sum.saturating_add(*d))
    }

    fn lock(&self) -> MutexGuard<'_, ClockState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryClock {
    fn default() -> Self {
        MemoryClock::new()
    }
}

#[async_trait]
impl Clock for MemoryClock {
    fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    async fn sleep(&self, duration: Duration) {
        let mut state = self.lock();
        state.now = add_saturating(state.now, duration);
        state.sleeps.push(duration);
    }
}

fn add_saturating(instant: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| instant.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
