//! The real [`Clock`]: the system time and tokio's timer.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ingest_core::ports::Clock;

/// The system clock; `sleep` uses tokio's timer (requires a tokio runtime).
///
/// ```
/// use ingest_core::ports::Clock;
/// let now = ingest_service::SystemClock.now();
/// assert!(now.timestamp() > 1_600_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
