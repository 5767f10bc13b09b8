//! Credentials: none for an emulator, Application Default Credentials otherwise — one chain
//! for the three services.

use std::sync::Arc;

use gcloud_auth::project::Config;
use gcloud_auth::token::DefaultTokenSourceProvider;
use token_source::{TokenSource, TokenSourceProvider};

use crate::failure::Failure;

/// The OAuth scope requested: `cloud-platform` covers Cloud Storage, BigQuery (whose load jobs
/// and external tables read `gs://` objects with the caller's credentials) and Pub/Sub.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Credentials could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("could not load Google Application Default Credentials: {0} (set GOOGLE_APPLICATION_CREDENTIALS to a key file, run `gcloud auth application-default login`, or run on Google Cloud)")]
pub struct AuthError(pub String);

/// How requests are authorized.
#[derive(Clone)]
pub enum Credentials {
    /// No `Authorization` header: for emulators.
    Anonymous,
    /// `Authorization: Bearer <token>` from a token source (cached and refreshed by it).
    Token(Arc<dyn TokenSource>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        match self {
            Credentials::Anonymous => f.write_str("Credentials::Anonymous"),
            Credentials::Token(_) => f.write_str("Credentials::Token(..)"),
        }
    }
}

/// Application Default Credentials and the project they name.
#[derive(Debug, Clone)]
pub struct DefaultCredentials {
    /// The credentials.
    pub credentials: Credentials,
    /// The project of the key file, or of the metadata server.
    pub project_id: Option<String>,
}

impl Credentials {
    /// Application Default Credentials, looked up as Google's client libraries do: the file
    /// named by `GOOGLE_APPLICATION_CREDENTIALS` (a `service_account` key, an
    /// `authorized_user`, an `external_account` for workload identity federation), else
    /// gcloud's `application_default_credentials.json`, else the metadata server (Cloud Run,
    /// GCE, GKE; `GCE_METADATA_HOST` points at another one). The first token is fetched here,
    /// so a broken setup fails at start-up, naming the cause.
    pub async fn application_default() -> Result<DefaultCredentials, AuthError> {
        crate::install_default_tls_provider();
        let scopes = [CLOUD_PLATFORM_SCOPE];
        let provider = DefaultTokenSourceProvider::new(Config::default().with_scopes(&scopes))
            .await
            .map_err(|e| AuthError(e.to_string()))?;
        Ok(DefaultCredentials {
            credentials: Credentials::Token(provider.token_source()),
            project_id: provider.project_id.clone(),
        })
    }

    /// The `Authorization` value, when there is one.
    pub(crate) async fn authorization(&self) -> Result<Option<String>, Failure> {
        match self {
            Credentials::Anonymous => Ok(None),
            Credentials::Token(source) => source
                .token()
                .await
                .map(Some)
                .map_err(|e| Failure::no_token(&e.to_string())),
        }
    }
}
