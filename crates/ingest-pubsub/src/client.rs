//! [`PubsubClient`]: Pub/Sub's REST API (v1) on the shared client layer, and the adapter's
//! error type.

use std::time::Duration;

use ingest_google::reqwest::{Method, Url};
use ingest_google::{
    Call, ClientLayer, Endpoint, Failure, GoogleClient, Refused, RetryPolicy, Service, SetupError,
};
use serde_json::{json, Value};

use crate::names::{qualified, ResourceKind};
use crate::wire::{self, ReceivedMessage};

/// The environment variable that points every client at a Pub/Sub emulator (`host:port`).
pub const EMULATOR_HOST_VAR: &str = "PUBSUB_EMULATOR_HOST";

/// The project used against an emulator when none is given (the emulator accepts any).
const EMULATOR_PROJECT: &str = "local-project";

/// How long one pull request may wait for messages before the client stops waiting and
/// reports an empty pull. Pub/Sub holds a pull "for a bounded amount of time" when no message
/// is there; this bounds it on our side too.
pub const PULL_WAIT: Duration = Duration::from_secs(90);

/// The request counters' operation names of this adapter (Pub/Sub's REST method names).
pub mod operations {
    /// `subscriptions.pull`.
    pub const PULL: &str = "subscriptions.pull";
    /// `subscriptions.acknowledge`.
    pub const ACKNOWLEDGE: &str = "subscriptions.acknowledge";
    /// `subscriptions.modifyAckDeadline` (nacks and lease extensions).
    pub const MODIFY_ACK_DEADLINE: &str = "subscriptions.modifyAckDeadline";
    /// `subscriptions.get`.
    pub const GET_SUBSCRIPTION: &str = "subscriptions.get";
    /// `subscriptions.create`.
    pub const CREATE_SUBSCRIPTION: &str = "subscriptions.create";
    /// `topics.publish`.
    pub const PUBLISH: &str = "topics.publish";
    /// `topics.create`.
    pub const CREATE_TOPIC: &str = "topics.create";
}

/// A Pub/Sub call failed. Every variant names the topic or subscription concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubsubError {
    /// The client could not be set up (bad endpoint, credentials not found, …).
    #[error("could not connect to Pub/Sub: {message}")]
    Connect {
        /// What went wrong.
        message: String,
    },
    /// No project was given and none could be found in the credentials.
    #[error(
        "no Pub/Sub project: pass one (GOOGLE_CLOUD_PROJECT) or use credentials that name one"
    )]
    NoProject,
    /// A Pub/Sub request failed (after the retries the client layer gives it).
    #[error("{operation} {resource}: {message}")]
    Request {
        /// The REST method (`subscriptions.pull`, `topics.publish`, … see [`operations`]).
        operation: &'static str,
        /// The fully qualified topic or subscription name.
        resource: String,
        /// The HTTP status, `None` when no answer came (timeout, connection error).
        status: Option<u16>,
        /// What the server said, or what went wrong on the way.
        message: String,
        /// Whether retrying the same call later may succeed.
        transient: bool,
    },
    /// An answer could not be read.
    #[error("{operation} {resource}: unreadable answer: {message}")]
    Decode {
        /// The REST method.
        operation: &'static str,
        /// The fully qualified topic or subscription name.
        resource: String,
        /// What is wrong with the answer.
        message: String,
    },
    /// A message could not be encoded.
    #[error("{resource}: could not encode the message: {message}")]
    Encode {
        /// The topic the message was for.
        resource: String,
        /// The encoder's message.
        message: String,
    },
    /// The publisher was shut down before the message was sent.
    #[error("{resource}: the publisher is shut down")]
    Closed {
        /// The topic.
        resource: String,
    },
}

impl PubsubError {
    /// Whether retrying the same call later may succeed (throttling, unavailability, …).
    pub fn is_transient(&self) -> bool {
        match self {
            PubsubError::Request { transient, .. } => *transient,
            // A garbled answer is a passing fault of the server or the connection.
            PubsubError::Decode { .. } => true,
            _ => false,
        }
    }

    /// Whether the topic or subscription does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PubsubError::Request {
                status: Some(404),
                ..
            }
        )
    }

    /// Whether the topic or subscription exists already (on create).
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self,
            PubsubError::Request {
                status: Some(409),
                ..
            }
        )
    }

    pub(crate) fn request(operation: &'static str, resource: &str, failure: &Failure) -> Self {
        PubsubError::Request {
            operation,
            resource: resource.to_string(),
            status: failure.status,
            message: failure.message.clone(),
            transient: failure.is_transient(),
        }
    }

    fn decode(operation: &'static str, resource: &str, message: impl ToString) -> Self {
        PubsubError::Decode {
            operation,
            resource: resource.to_string(),
            message: message.to_string(),
        }
    }
}

impl From<SetupError> for PubsubError {
    fn from(error: SetupError) -> Self {
        PubsubError::Connect {
            message: error.to_string(),
        }
    }
}

/// A Pub/Sub client scoped to one project, over the REST API; cheap to clone (clones share the
/// HTTP connections and the request counters of their [`ClientLayer`]).
///
/// Acknowledgements, deadline changes, publications and administration are retried by the
/// client layer's [`RetryPolicy`] (all of them are safe to repeat). Pulls are not: the
/// [`PullConsumer`](crate::PullConsumer) backs off between failed pulls itself, and a pull
/// that waited [`PULL_WAIT`] (90 s) without an answer is reported as empty.
#[derive(Clone, Debug)]
pub struct PubsubClient {
    calls: GoogleClient,
    pulls: GoogleClient,
    project: String,
}

impl PubsubClient {
    /// Connects to Pub/Sub: to the emulator at `PUBSUB_EMULATOR_HOST` when that variable is set
    /// (no credentials), else to Google (or `BQ_INGEST_PUBSUB_ENDPOINT`) with Application
    /// Default Credentials. A client layer of its own; [`PubsubClient::from_layer`] shares one.
    ///
    /// `project` is the project of the topics and subscriptions named by short id; when `None`,
    /// the credentials' project is used (`local-project` against an emulator).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), ingest_pubsub::PubsubError> {
    /// let client = ingest_pubsub::PubsubClient::connect(Some("my-project")).await?;
    /// assert_eq!(client.project(), "my-project");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(project: Option<&str>) -> Result<Self, PubsubError> {
        let layer = ClientLayer::new()?;
        PubsubClient::from_layer(&layer, project, RetryPolicy::default()).await
    }

    /// A client on a shared client layer, its endpoint from the environment
    /// ([`Endpoint::from_env`]); `retry` governs every call but pulls.
    pub async fn from_layer(
        layer: &ClientLayer,
        project: Option<&str>,
        retry: RetryPolicy,
    ) -> Result<Self, PubsubError> {
        let endpoint = Endpoint::from_env(Service::PubSub);
        let emulator = endpoint.emulator;
        let calls = layer.client(Service::PubSub, endpoint, retry).await?;
        let project = match project.filter(|p| !p.is_empty()) {
            Some(project) => project.to_string(),
            None if emulator => EMULATOR_PROJECT.to_string(),
            None => layer
                .default_credentials()
                .await
                .map_err(SetupError::from)?
                .project_id
                .clone()
                .ok_or(PubsubError::NoProject)?,
        };
        Ok(PubsubClient::new(calls, &project))
    }

    /// A client over `client` (a [`Service::PubSub`] client of the layer) for `project`.
    pub fn new(client: GoogleClient, project: &str) -> Self {
        let pulls = client.with_retry_policy(RetryPolicy {
            max_attempts: 1,
            attempt_timeout: PULL_WAIT + Duration::from_secs(30),
            ..*client.retry_policy()
        });
        PubsubClient {
            calls: client,
            pulls,
            project: project.to_string(),
        }
    }

    /// The project of the topics and subscriptions named by short id.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The client layer's client (its endpoint, counters and retry policy).
    pub fn google_client(&self) -> &GoogleClient {
        &self.calls
    }

    /// The emulator this process talks to (`PUBSUB_EMULATOR_HOST`), if any.
    pub fn emulator_host() -> Option<String> {
        std::env::var(EMULATOR_HOST_VAR)
            .ok()
            .filter(|v| !v.is_empty())
    }

    /// `projects/PROJECT/topics/ID`, or `topic` itself when it is already fully qualified.
    ///
    /// ```
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use ingest_google::{ClientLayer, Endpoint, RetryPolicy, Service};
    /// let google = ClientLayer::new()?
    ///     .client(Service::PubSub, Endpoint::emulator("127.0.0.1:8085"), RetryPolicy::default())
    ///     .await?;
    /// let client = ingest_pubsub::PubsubClient::new(google, "p");
    /// assert_eq!(client.topic_name("t"), "projects/p/topics/t");
    /// assert_eq!(client.topic_name("projects/q/topics/t"), "projects/q/topics/t");
    /// # Ok(()) }
    /// ```
    pub fn topic_name(&self, topic: &str) -> String {
        qualified(&self.project, ResourceKind::Topic, topic)
    }

    /// `projects/PROJECT/subscriptions/ID`, or `subscription` itself when it is already fully
    /// qualified.
    pub fn subscription_name(&self, subscription: &str) -> String {
        qualified(&self.project, ResourceKind::Subscription, subscription)
    }

    /// Pulls at most `max_messages` (1..=1000) messages from `subscription` (a short id or a
    /// fully qualified name). Waits, as Pub/Sub does, until some message is there or a bounded
    /// time has passed; after [`PULL_WAIT`] without an answer, returns none. Not retried.
    ///
    /// Errors: [`PubsubError::Request`] (`is_not_found` for a missing subscription,
    /// `is_transient` for throttling and unavailability), [`PubsubError::Decode`].
    pub async fn pull(
        &self,
        subscription: &str,
        max_messages: usize,
    ) -> Result<Vec<ReceivedMessage>, PubsubError> {
        let name = self.subscription_name(subscription);
        let body = json!({ "maxMessages": max_messages.clamp(1, 1000) });
        let call = Call::new(
            operations::PULL,
            &name,
            Method::POST,
            self.url(&name, Some("pull")),
        )
        .json(&body);
        let answer = match tokio::time::timeout(PULL_WAIT, self.pulls.send(&call)).await {
            Err(_waited) => return Ok(Vec::new()),
            Ok(answer) => answer.map_err(|r| refused(operations::PULL, &name, r))?,
        };
        wire::received_messages(&answer.body)
            .map_err(|e| PubsubError::decode(operations::PULL, &name, e))
    }

    /// Acknowledges messages of `subscription` by ack id: Pub/Sub will not redeliver them.
    /// An ack id whose lease has expired is ignored by Pub/Sub (the message comes back).
    pub async fn acknowledge(
        &self,
        subscription: &str,
        ack_ids: &[&str],
    ) -> Result<(), PubsubError> {
        let name = self.subscription_name(subscription);
        let body = json!({ "ackIds": ack_ids });
        self.post(operations::ACKNOWLEDGE, &name, "acknowledge", &body)
            .await
            .map(drop)
    }

    /// Sets the ack deadline of leased messages to `seconds` from now (0..=600; 0 hands them
    /// back for redelivery at once, a "nack").
    pub async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: &[&str],
        seconds: u32,
    ) -> Result<(), PubsubError> {
        let name = self.subscription_name(subscription);
        let body = json!({ "ackIds": ack_ids, "ackDeadlineSeconds": seconds.min(600) });
        self.post(
            operations::MODIFY_ACK_DEADLINE,
            &name,
            "modifyAckDeadline",
            &body,
        )
        .await
        .map(drop)
    }

    /// The ack deadline of `subscription`, in seconds.
    pub async fn ack_deadline_seconds(&self, subscription: &str) -> Result<u32, PubsubError> {
        let name = self.subscription_name(subscription);
        let call = Call::new(
            operations::GET_SUBSCRIPTION,
            &name,
            Method::GET,
            self.url(&name, None),
        );
        let answer = self
            .calls
            .send(&call)
            .await
            .map_err(|r| refused(operations::GET_SUBSCRIPTION, &name, r))?;
        wire::ack_deadline_seconds(&answer.body)
            .map_err(|e| PubsubError::decode(operations::GET_SUBSCRIPTION, &name, e))
    }

    /// Publishes `messages` (attributes, data) to `topic` in one request (at most 1000
    /// messages and 10 MB) and returns their message ids, in order.
    pub async fn publish(
        &self,
        topic: &str,
        messages: &[wire::OutgoingMessage],
    ) -> Result<Vec<String>, PubsubError> {
        let name = self.topic_name(topic);
        let body = json!({ "messages": messages });
        let answer = self
            .post(operations::PUBLISH, &name, "publish", &body)
            .await?;
        let ids = wire::message_ids(&answer)
            .map_err(|e| PubsubError::decode(operations::PUBLISH, &name, e))?;
        if ids.len() != messages.len() {
            return Err(PubsubError::decode(
                operations::PUBLISH,
                &name,
                format!("{} message ids for {} messages", ids.len(), messages.len()),
            ));
        }
        Ok(ids)
    }

    /// Creates `topic`. Errors with [`PubsubError::is_already_exists`] when it exists.
    pub async fn create_topic(&self, topic: &str) -> Result<(), PubsubError> {
        let name = self.topic_name(topic);
        self.put(operations::CREATE_TOPIC, &name, &json!({})).await
    }

    /// Creates `subscription` on `topic`: a push subscription POSTing to `push_endpoint` when
    /// given, else a pull subscription; its ack deadline is `ack_deadline_seconds` (clamped to
    /// 10..=600). Errors with [`PubsubError::is_already_exists`] when it exists.
    pub async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        push_endpoint: Option<&str>,
        ack_deadline_seconds: u32,
    ) -> Result<(), PubsubError> {
        let name = self.subscription_name(subscription);
        let mut body = json!({
            "topic": self.topic_name(topic),
            "ackDeadlineSeconds": ack_deadline_seconds.clamp(10, 600),
        });
        if let Some(endpoint) = push_endpoint {
            body["pushConfig"] = json!({ "pushEndpoint": endpoint });
        }
        self.put(operations::CREATE_SUBSCRIPTION, &name, &body)
            .await
    }

    /// `endpoint/v1/projects/P/KIND/ID[:verb]`, each part one encoded path segment.
    fn url(&self, qualified_name: &str, verb: Option<&str>) -> Url {
        let mut segments = vec!["v1"];
        segments.extend(qualified_name.split('/'));
        let mut url = self.calls.url(&segments, &[]);
        if let Some(verb) = verb {
            let path = format!("{}:{verb}", url.path());
            url.set_path(&path);
        }
        url
    }

    async fn post(
        &self,
        operation: &'static str,
        name: &str,
        verb: &str,
        body: &Value,
    ) -> Result<Value, PubsubError> {
        let call = Call::new(operation, name, Method::POST, self.url(name, Some(verb))).json(body);
        let answer = self
            .calls
            .send(&call)
            .await
            .map_err(|r| refused(operation, name, r))?;
        answer
            .json()
            .map_err(|f| PubsubError::decode(operation, name, f.message))
    }

    async fn put(
        &self,
        operation: &'static str,
        name: &str,
        body: &Value,
    ) -> Result<(), PubsubError> {
        let call = Call::new(operation, name, Method::PUT, self.url(name, None)).json(body);
        match self.calls.send(&call).await {
            Ok(_) => Ok(()),
            // A retry that finds what its own lost attempt created.
            Err(r) if r.earlier_maybe_applied && r.failure.status == Some(409) => Ok(()),
            Err(r) => Err(refused(operation, name, r)),
        }
    }
}

fn refused(operation: &'static str, name: &str, refused: Refused) -> PubsubError {
    PubsubError::request(operation, name, &refused.failure)
}
