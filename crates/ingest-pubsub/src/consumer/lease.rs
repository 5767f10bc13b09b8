//! Keeping the lease of a message while it is handled.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::count;
use super::handler::Shared;
use crate::wire::ReceivedMessage;

/// Extends a message's ack deadline periodically until dropped.
#[derive(Debug)]
pub(super) struct LeaseKeeper(JoinHandle<()>);

impl LeaseKeeper {
    /// First after [`Shared::first_extension`], then every
    /// [`LeaseExtension::effective_interval`](super::LeaseExtension), by
    /// [`LeaseExtension::extend_by`](super::LeaseExtension::extend_by).
    pub(super) fn start(shared: &Arc<Shared>, received: &ReceivedMessage) -> Self {
        let shared = shared.clone();
        let ack_id = received.ack_id.clone();
        let message_id = received.message_id().to_string();
        let extension = shared.config.ack_deadline_extension;
        let extend_by = extension.extend_by_seconds();
        let interval = extension.effective_interval();
        LeaseKeeper(tokio::spawn(async move {
            let mut wait = shared.first_extension;
            loop {
                tokio::time::sleep(wait).await;
                wait = interval;
                let extended = shared
                    .client
                    .modify_ack_deadline(&shared.subscription, &[ack_id.as_str()], extend_by)
                    .await;
                match extended {
                    Ok(()) => {
                        count(&shared.stats, |s| s.lease_extensions += 1);
                        tracing::debug!(message_id, extend_by_s = extend_by, "lease extended");
                    }
                    Err(error) => {
                        tracing::warn!(message_id, "could not extend the lease: {error}")
                    }
                }
            }
        }))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
