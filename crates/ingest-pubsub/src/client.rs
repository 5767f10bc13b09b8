//! The connection to Pub/Sub (or its emulator) and the adapter's error type.

use gcloud_gax::grpc::{Code, Status};
use gcloud_pubsub::client::{Client, ClientConfig};

/// The environment variable that points every client at a Pub/Sub emulator (`host:port`).
pub const EMULATOR_HOST_VAR: &str = "PUBSUB_EMULATOR_HOST";

/// A Pub/Sub call failed. Every variant names the topic or subscription concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubsubError {
    /// The client could not be created (bad endpoint, credentials not found, …).
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
    /// A Pub/Sub RPC failed.
    #[error("{operation} {resource}: {code}: {message}")]
    Rpc {
        /// The RPC (`pull`, `publish`, `create topic`, …).
        operation: &'static str,
        /// The fully qualified topic or subscription name.
        resource: String,
        /// The gRPC status code, e.g. `NotFound`.
        code: String,
        /// What the server said.
        message: String,
        /// Whether retrying the same call later may succeed.
        transient: bool,
    },
    /// A message could not be encoded.
    #[error("{resource}: could not encode the message: {message}")]
    Encode {
        /// The topic the message was for.
        resource: String,
        /// The encoder's message.
        message: String,
    },
}

impl PubsubError {
    /// Whether retrying the same call later may succeed (throttling, unavailability, …).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PubsubError::Rpc {
                transient: true,
                ..
            }
        )
    }

    /// Whether the topic or subscription does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PubsubError::Rpc { code, .. } if code == code_name(Code::NotFound))
    }

    pub(crate) fn rpc(operation: &'static str, resource: &str, status: &Status) -> Self {
        PubsubError::Rpc {
            operation,
            resource: resource.to_string(),
            code: code_name(status.code()).to_string(),
            message: status.message().to_string(),
            transient: is_transient_code(status.code()),
        }
    }
}

/// The gRPC codes after which the same call may succeed later.
pub(crate) fn is_transient_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown
            | Code::Cancelled
    )
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Makes rustls' `ring` provider the process default unless one is installed already. The
/// Google Cloud clients are built without a provider of their own (no aws-lc-sys), so some
/// provider must be installed before the first TLS connection; [`PubsubClient::connect`] calls
/// this. Idempotent.
///
/// ```
/// ingest_pubsub::install_default_tls_provider();
/// ingest_pubsub::install_default_tls_provider(); // idempotent
/// assert!(rustls::crypto::CryptoProvider::get_default().is_some());
/// ```
pub fn install_default_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one in between: then that one stays, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A Pub/Sub client scoped to one project; cheap to clone (clones share the connections).
#[derive(Clone, Debug)]
pub struct PubsubClient {
    pub(crate) inner: Client,
    project: String,
}

impl PubsubClient {
    /// Connects to Pub/Sub: to the emulator at `PUBSUB_EMULATOR_HOST` when that variable is set
    /// (no credentials), else to Google Cloud with Application Default Credentials. Installs
    /// the TLS provider first ([`install_default_tls_provider`]).
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
        install_default_tls_provider();
        let mut config = ClientConfig::default();
        if let Some(project) = project {
            config.project_id = Some(project.to_string());
        }
        let config = config.with_auth().await.map_err(|e| PubsubError::Connect {
            message: format!("credentials: {e}"),
        })?;
        let project = config.project_id.clone().ok_or(PubsubError::NoProject)?;
        let inner = Client::new(config)
            .await
            .map_err(|e| PubsubError::Connect {
                message: e.to_string(),
            })?;
        Ok(PubsubClient { inner, project })
    }

    /// The project of the topics and subscriptions named by short id.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The emulator this process talks to (`PUBSUB_EMULATOR_HOST`), if any.
    pub fn emulator_host() -> Option<String> {
        std::env::var(EMULATOR_HOST_VAR)
            .ok()
            .filter(|v| !v.is_empty())
    }

    /// `projects/PROJECT/topics/ID`, or `topic` itself when it is already fully qualified.
    pub fn topic_name(&self, topic: &str) -> String {
        self.inner.fully_qualified_topic_name(topic)
    }

    /// `projects/PROJECT/subscriptions/ID`, or `subscription` itself when it is already fully
    /// qualified.
    pub fn subscription_name(&self, subscription: &str) -> String {
        self.inner.fully_qualified_subscription_name(subscription)
    }
}
