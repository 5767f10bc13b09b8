//! Credentials: none for an emulator, Application Default Credentials otherwise.
//!
//! Both implement `gcp_bigquery_client::auth::Authenticator`, the crate's token trait, so any
//! other implementation (for example one that shares the GCS client's token source) can be
//! passed to [`BigQueryWarehouse::with_authenticator`](crate::BigQueryWarehouse::with_authenticator).

use std::path::PathBuf;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2;

/// The OAuth scope requested for BigQuery. `cloud-platform` rather than `bigquery` because
/// load jobs and external tables read `gs://` objects with the caller's credentials.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// An authenticator that sends no credentials: for emulators, which accept anonymous calls.
/// Its token is empty, and the adapter sends no `Authorization` header for an empty token.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

#[async_trait]
impl Authenticator for NoAuth {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(String::new())
    }
}

/// Errors while setting up credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The credentials file could not be read or parsed.
    #[error("credentials file {path}: {message}")]
    CredentialsFile {
        /// The file (from `GOOGLE_APPLICATION_CREDENTIALS` or gcloud's default location).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The credentials file has a `type` this adapter does not support.
    #[error("credentials file {path}: unsupported credentials type {kind:?}")]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// Its `type` field.
        kind: String,
    },
    /// Building the token source failed.
    #[error("building the {flow} token source: {message}")]
    Build {
        /// Which flow (`service account`, `authorized user`, `metadata server`, …).
        flow: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// Application Default Credentials, looked up like Google's client libraries do:
/// 1. the file named by `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's
///    `~/.config/gcloud/application_default_credentials.json` when it exists — a
///    `service_account` key, an `authorized_user` (`gcloud auth application-default login`) or an
///    `external_account` (workload identity federation);
/// 2. otherwise the metadata server (Cloud Run, GCE, GKE workload identity).
///
/// Tokens come from `yup-oauth2` (the crate `gcp-bigquery-client` re-exports and uses), which
/// caches and refreshes them.
#[derive(Clone)]
pub struct AdcAuthenticator {
    inner: yup_oauth2::authenticator::DefaultAuthenticator,
    scopes: Vec<String>,
    flow: &'static str,
}

impl std::fmt::Debug for AdcAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdcAuthenticator")
            .field("flow", &self.flow)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

fn credentials_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        if !path.is_empty() {
            return Some(PathBuf::from(path));
        }
    }
    let home = std::env::var_os("HOME")?;
    let default = PathBuf::from(home).join(".config/gcloud/application_default_credentials.json");
    default.is_file().then_some(default)
}

impl AdcAuthenticator {
    /// Finds the Application Default Credentials (see the type's documentation).
    ///
    /// Errors: [`AuthSetupError`] naming the credentials file or the flow that failed.
    pub async fn new(scopes: &[&str]) -> Result<Self, AuthSetupError> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let (inner, flow) = match credentials_file() {
            Some(path) => Self::from_file(&path).await?,
            None => {
                let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
                let built = match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(
                    opts,
                )
                .await
                {
                    yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::InstanceMetadata(
                        b,
                    ) => b.build().await,
                    yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::ServiceAccount(
                        b,
                    ) => b.build().await,
                };
                let auth = built.map_err(|e| AuthSetupError::Build {
                    flow: "metadata server",
                    message: e.to_string(),
                })?;
                (auth, "metadata server")
            }
        };
        Ok(AdcAuthenticator {
            inner,
            scopes,
            flow,
        })
    }

    async fn from_file(
        path: &std::path::Path,
    ) -> Result<
        (
            yup_oauth2::authenticator::DefaultAuthenticator,
            &'static str,
        ),
        AuthSetupError,
    > {
        let file_error = |message: String| AuthSetupError::CredentialsFile {
            path: path.to_path_buf(),
            message,
        };
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| file_error(e.to_string()))?;
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| file_error(e.to_string()))?
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        let build_error = |flow: &'static str| {
            move |e: std::io::Error| AuthSetupError::Build {
                flow,
                message: e.to_string(),
            }
        };
        match kind.as_str() {
            "service_account" => {
                let key = yup_oauth2::parse_service_account_key(&text)
                    .map_err(|e| file_error(e.to_string()))?;
                let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await
                    .map_err(build_error("service account"))?;
                Ok((auth, "service account"))
            }
            "authorized_user" => {
                let secret: yup_oauth2::authorized_user::AuthorizedUserSecret =
                    serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
                let auth = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                    .build()
                    .await
                    .map_err(build_error("authorized user"))?;
                Ok((auth, "authorized user"))
            }
            "external_account" => {
                let secret: yup_oauth2::external_account::ExternalAccountSecret =
                    serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
                let auth = yup_oauth2::ExternalAccountAuthenticator::builder(secret)
                    .build()
                    .await
                    .map_err(build_error("external account"))?;
                Ok((auth, "external account"))
            }
            _ => Err(AuthSetupError::UnsupportedType {
                path: path.to_path_buf(),
                kind,
            }),
        }
    }
}

#[async_trait]
impl Authenticator for AdcAuthenticator {
    async fn access_token(&self) -> Result<String, BQError> {
        let token = self.inner.token(&self.scopes).await?;
        Ok(token.token().ok_or(BQError::NoToken)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn from_temp_file(name: &str, content: &str) -> Result<&'static str, AuthSetupError> {
        let path = std::env::temp_dir().join(format!("{}-{name}", std::process::id()));
        tokio::fs::write(&path, content)
            .await
            .expect("write temp file");
        let result = AdcAuthenticator::from_file(&path)
            .await
            .map(|(_, flow)| flow);
        let _ = tokio::fs::remove_file(&path).await;
        result
    }

    #[tokio::test]
    async fn credentials_files_are_checked() {
        let unsupported = from_temp_file("adc-unsupported.json", r#"{"type": "gdch"}"#).await;
        assert!(
            matches!(&unsupported, Err(AuthSetupError::UnsupportedType { kind, .. }) if kind == "gdch"),
            "{unsupported:?}"
        );
        let garbage = from_temp_file("adc-garbage.json", "not json").await;
        assert!(
            matches!(&garbage, Err(AuthSetupError::CredentialsFile { path, .. })
                if path.to_string_lossy().ends_with("adc-garbage.json")),
            "{garbage:?}"
        );
        let missing =
            AdcAuthenticator::from_file(std::path::Path::new("/nonexistent/adc.json")).await;
        assert!(matches!(
            missing,
            Err(AuthSetupError::CredentialsFile { .. })
        ));
    }

    #[tokio::test]
    async fn no_auth_gives_an_empty_token() {
        assert_eq!(NoAuth.access_token().await.ok(), Some(String::new()));
    }
}
