//! The stop signal of a service.

use std::future::Future;

/// A future that resolves when the process receives SIGTERM (Cloud Run's stop signal) or
/// SIGINT (Ctrl-C). The handlers are installed when this function is called, not when the
/// future is first polled: call it first thing, so that a SIGTERM during start-up stops the
/// service cleanly instead of killing it. Needs a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match streams {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: stop taking work, finish what is in flight"),
                        _ = int.recv() => tracing::info!("SIGINT: stop taking work, finish what is in flight"),
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
