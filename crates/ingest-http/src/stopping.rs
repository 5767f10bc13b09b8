//! Stopping: the signal that tells the handlers the service is going away (SIGTERM), and how
//! long the requests in flight may still take.

use std::time::Duration;

use tokio::sync::watch;

/// The default [`HttpState::shutdown_grace`](crate::HttpState::shutdown_grace): Cloud Run gives
/// a stopping instance 10 s after SIGTERM; 5 s leaves room to answer and close.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The handlers' side of the stop signal; cheap to clone. Made with [`stop_signal`].
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

/// The side that stops the service: [`StopHandle::stop`], usually when SIGTERM arrives.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<bool>);

/// A new stop signal: the handle for whoever sees SIGTERM, and the [`Stopping`] for the
/// [`HttpState`](crate::HttpState) (and anything else that must stop taking work).
///
/// ```
/// let (handle, stopping) = ingest_http::stop_signal();
/// assert!(!stopping.is_stopping());
/// handle.stop();
/// assert!(stopping.is_stopping());
/// ```
pub fn stop_signal() -> (StopHandle, Stopping) {
    let (sender, receiver) = watch::channel(false);
    (StopHandle(sender), Stopping(receiver))
}

impl StopHandle {
    /// Signals every [`Stopping`]: new notifications get 503 at once, those in flight get at
    /// most the shutdown grace more. Idempotent.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stopping {
    /// A signal that never fires (a state without a stop handle).
    pub fn never() -> Self {
        let (sender, receiver) = watch::channel(false);
        // The receiver keeps the last value; with the sender gone it never changes.
        drop(sender);
        Stopping(receiver)
    }

    /// Whether the service is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the service starts stopping (never, for [`Stopping::never`]).
    pub async fn stopped(&self) {
        let mut receiver = self.0.clone();
        if receiver.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Completes `grace` after the service started stopping.
    pub async fn stopped_for(&self, grace: Duration) {
        self.stopped().await;
        tokio::time::sleep(grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_grace_runs_from_the_stop() {
        let (handle, stopping) = stop_signal();
        let waiting = tokio::spawn({
            let stopping = stopping.clone();
            async move { stopping.stopped_for(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "nothing before the stop");
        handle.stop();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!waiting.is_finished(), "the grace is not over");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(waiting.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn never_never_fires() {
        let never = Stopping::never();
        assert!(!never.is_stopping());
        let fired = tokio::time::timeout(Duration::from_secs(3600), never.stopped()).await;
        assert!(fired.is_err());
    }
}
