//! bq-ingest adapter for Google Cloud Pub/Sub, over Pub/Sub's REST API on the shared client
//! layer (`ingest-google`: one HTTP client, Application Default Credentials, one retry policy,
//! one set of request counters).
//!
//! - [`PullConsumer`]: pulls GCS notifications from a subscription, hands each to
//!   [`Ingestor::handle_until`](ingest_core::ingest::Ingestor::handle_until) with bounded
//!   concurrency, keeps the lease of messages whose jobs run long, and acknowledges a message
//!   only when its outcome is final.
//! - [`Publisher`]: publishes object events exactly as a GCS notification configuration would
//!   (used by backfills), or any JSON document (used for the failure topic).
//! - [`ensure_topic`] / [`ensure_subscription`]: idempotent set-up for tests and the dev stack.
//!
//! - [`PubsubClient`]: the REST calls themselves (`pull`, `acknowledge`, `modifyAckDeadline`,
//!   `publish`, topic and subscription creation), each counted under its [`operations`] name.
//!
//! [`PubsubClient::connect`] reads `PUBSUB_EMULATOR_HOST`: when it is set, every call goes to
//! that emulator without credentials; otherwise Application Default Credentials are used
//! (`BQ_INGEST_PUBSUB_ENDPOINT` names another endpoint).
//!
//! # Acknowledgement rules
//!
//! | what happened | action |
//! | --- | --- |
//! | final outcome (`done`, `ignored`, `queued`, `failed` — a failure is recorded by the ingestor — and `rejected`) | ack |
//! | malformed message (not a GCS notification bq-ingest can parse) | logged at ERROR with its id, attributes and the start of its data, then **ack**: redelivery would not help. With a dead-letter topic on the subscription, Pub/Sub does the rest for messages that keep failing. |
//! | `Outcome::Running` (jobs still running at the handling deadline) | nack: the redelivery follows the same jobs (their ids are deterministic) |
//! | `Err(IngestError)` (transient: throttling, server errors) | nack, so Pub/Sub redelivers (with the subscription's retry policy, if any) |
//! | handling took longer than [`ConsumerConfig::handle_deadline`] (plus 30 s), or panicked | nack |
//!
//! "nack" is a modify-ack-deadline to 0: the message is redelivered at once (or after the
//! subscription's retry-policy backoff).
//!
//! The ingestor waits for jobs until the earlier of the handling deadline and
//! `WAIT_FOR_JOB_SECONDS` (60 s by default): a longer job makes a `Running` outcome, a nack,
//! and a redelivery that follows the same job. Raise `WAIT_FOR_JOB_SECONDS` to keep one
//! delivery for the whole job.
//!
//! # Pulling
//!
//! Messages are fetched with `subscriptions.pull` requests for at most as many messages as there are
//! free handling slots ([`ConsumerConfig::max_concurrency`]), rather than over StreamingPull:
//! no message ever waits in a client-side buffer while its ack deadline runs, and the flow
//! control is exact. An empty pull is followed by the next one at once (after 100 ms when the
//! server answered quickly); failed pulls back off.
//!
//! # Leases
//!
//! While a message is handled its ack deadline is extended every
//! [`LeaseExtension::interval`] by [`LeaseExtension::extend_by`], the first time after half the
//! subscription's ack deadline at the latest, so Pub/Sub does not redeliver a message whose
//! jobs are still running.
//!
//! # Shutdown
//!
//! When the shutdown future completes, the consumer stops pulling (an outstanding pull request
//! is cancelled: a message the server had already sent on it is redelivered after the
//! subscription's ack deadline), finishes the messages in flight for at most
//! [`ConsumerConfig::shutdown_grace`], nacks those still unfinished, and returns.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! # use ingest_core::ingest::Ingestor;
//! use ingest_pubsub::{ConsumerConfig, PubsubClient, PullConsumer};
//!
//! # async fn example(ingestor: Arc<Ingestor>) -> Result<(), ingest_pubsub::PubsubError> {
//! let client = PubsubClient::connect(Some("my-project")).await?;
//! let consumer = PullConsumer::new(&client, "bq-ingest-pull", ingestor, ConsumerConfig::default());
//! let stats = consumer
//!     .run(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! println!("{} messages acknowledged", stats.acked);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod admin;
mod client;
mod consumer;
mod names;
mod publisher;
mod wire;

pub use admin::{
    ensure_subscription, ensure_subscription_with_deadline, ensure_topic,
    SUBSCRIPTION_ACK_DEADLINE_SECONDS,
};
pub use client::{operations, PubsubClient, PubsubError, EMULATOR_HOST_VAR, PULL_WAIT};
pub use consumer::{ConsumerConfig, LeaseExtension, PullConsumer, RunStats};
pub use ingest_google::{install_default_tls_provider, RetryPolicy};
pub use publisher::{object_event_message, Publisher, PublisherConfig};
pub use wire::{OutgoingMessage, ReceivedMessage};
