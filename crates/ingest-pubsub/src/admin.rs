//! Idempotent creation of topics and subscriptions, for tests and the dev stack.

use crate::client::{PubsubClient, PubsubError};

/// The ack deadline of subscriptions created by [`ensure_subscription`]: long enough for the
/// consumer's first lease extension (see [`LeaseExtension`](crate::LeaseExtension)).
pub const SUBSCRIPTION_ACK_DEADLINE_SECONDS: u32 = 60;

/// Creates `topic` (a short id in the client's project, or `projects/P/topics/T`) unless it
/// exists. Returns whether it was created.
///
/// ```no_run
/// # async fn example(client: &ingest_pubsub::PubsubClient) -> Result<(), ingest_pubsub::PubsubError> {
/// ingest_pubsub::ensure_topic(client, "gcs-notifications").await?;
/// // A second call finds it and changes nothing.
/// assert!(!ingest_pubsub::ensure_topic(client, "gcs-notifications").await?);
/// # Ok(())
/// # }
/// ```
pub async fn ensure_topic(client: &PubsubClient, topic: &str) -> Result<bool, PubsubError> {
    created(client.create_topic(topic).await)
}

/// Creates `subscription` on `topic` unless it exists, and returns whether it was created.
/// With `push_endpoint` it is a push subscription that POSTs each message to that URL (the
/// standard push envelope); without, a pull subscription. Its ack deadline is
/// [`SUBSCRIPTION_ACK_DEADLINE_SECONDS`]. An existing subscription is left as it is.
///
/// ```no_run
/// # async fn example(client: &ingest_pubsub::PubsubClient) -> Result<(), ingest_pubsub::PubsubError> {
/// use ingest_pubsub::{ensure_subscription, ensure_topic};
/// ensure_topic(client, "gcs-notifications").await?;
/// ensure_subscription(client, "bq-ingest-pull", "gcs-notifications", None).await?;
/// ensure_subscription(
///     client,
///     "bq-ingest-push",
///     "gcs-notifications",
///     Some("http://127.0.0.1:8080/"),
/// )
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn ensure_subscription(
    client: &PubsubClient,
    subscription: &str,
    topic: &str,
    push_endpoint: Option<&str>,
) -> Result<bool, PubsubError> {
    ensure_subscription_with_deadline(
        client,
        subscription,
        topic,
        push_endpoint,
        SUBSCRIPTION_ACK_DEADLINE_SECONDS,
    )
    .await
}

/// [`ensure_subscription`] with a chosen ack deadline (10 to 600 seconds; clamped).
pub async fn ensure_subscription_with_deadline(
    client: &PubsubClient,
    subscription: &str,
    topic: &str,
    push_endpoint: Option<&str>,
    ack_deadline_seconds: u32,
) -> Result<bool, PubsubError> {
    created(
        client
            .create_subscription(subscription, topic, push_endpoint, ack_deadline_seconds)
            .await,
    )
}

/// `Ok(true)` for created, `Ok(false)` for "already exists".
fn created(result: Result<(), PubsubError>) -> Result<bool, PubsubError> {
    match result {
        Ok(()) => Ok(true),
        Err(error) if error.is_already_exists() => Ok(false),
        Err(error) => Err(error),
    }
}
