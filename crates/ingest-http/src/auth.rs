//! Authenticated push: the OIDC tokens that Pub/Sub push subscriptions and Eventarc triggers
//! send, verified as Google documents it.
//!
//! A push subscription with `pushConfig.oidcToken` (and an Eventarc trigger) sends
//! `Authorization: Bearer <JWT>`: an ID token signed by Google (RS256, keys published at
//! [`GOOGLE_CERTS_URL`]), whose `aud` is the audience configured on the subscription and whose
//! `email` is the service account the subscription pushes as. [`PushAuth`] checks exactly that:
//!
//! - the header is a Bearer token (missing or of another scheme → **401**);
//! - its header names `RS256` and a `kid` among Google's current keys (refetched once when the
//!   `kid` is unknown, at most every [`MIN_REFETCH`]; cached for their `Cache-Control: max-age`);
//! - the signature verifies; `iss` is `accounts.google.com` or `https://accounts.google.com`;
//!   `aud` is the configured audience; `exp` has not passed and `iat` is not in the future
//!   (with [`PushAuthConfig::leeway`] of clock skew); `email` is one of the allowed accounts and
//!   `email_verified` is true (any of these wrong → **403**);
//! - Google's keys cannot be fetched → **503** (the push is retried).
//!
//! Every refusal is logged with its reason — never the token. [`PushAuthLayer`] is a tower layer:
//! [`crate::router`] puts it on the notification routes when [`crate::HttpState::auth`] is set,
//! and an embedder can put it on routes of their own.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// Where Google publishes the keys that sign its ID tokens (JWK set).
pub const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The issuers of Google ID tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// By default, an unknown `kid` refetches the keys at most this often (a forged `kid` cannot
/// make every request fetch them).
pub const MIN_REFETCH: Duration = Duration::from_secs(30);

/// How long fetched keys are kept when the answer says nothing (`Cache-Control: max-age`).
const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(3600);

/// What [`PushAuth`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAuthConfig {
    /// The expected `aud`: the audience set on the push subscription (by default its push
    /// endpoint URL) or the Eventarc trigger's service URL (`PUSH_AUTH_AUDIENCE`).
    pub audience: String,
    /// The service accounts allowed to push (`PUSH_AUTH_SERVICE_ACCOUNTS`, comma-separated);
    /// never empty: any Google account can obtain a token for any audience.
    pub service_accounts: Vec<String>,
    /// Where the signing keys are fetched ([`GOOGLE_CERTS_URL`]; a test points it at a local
    /// server).
    pub keys_url: String,
    /// Clock skew allowed on `exp` and `iat` (default 30 s).
    pub leeway: Duration,
    /// An unknown `kid` refetches the keys at most this often ([`MIN_REFETCH`]).
    pub min_refetch: Duration,
}

impl PushAuthConfig {
    /// A configuration for `audience` and the allowed `service_accounts`, with Google's key
    /// endpoint and 30 s of leeway.
    ///
    /// Errors: an empty audience or no allowed account, naming the variable to set.
    ///
    /// ```
    /// use ingest_http::PushAuthConfig;
    /// let config = PushAuthConfig::new(
    ///     "https://bq-ingest-abc-uc.a.run.app/",
    ///     "pusher@my-project.iam.gserviceaccount.com, other@my-project.iam.gserviceaccount.com",
    /// ).unwrap();
    /// assert_eq!(config.service_accounts.len(), 2);
    /// assert!(PushAuthConfig::new("https://x/", " ").is_err());
    /// ```
    pub fn new(audience: &str, service_accounts: &str) -> Result<Self, String> {
        let audience = audience.trim();
        if audience.is_empty() {
            return Err("PUSH_AUTH_AUDIENCE must name the audience of the push tokens".into());
        }
        let service_accounts: Vec<String> = service_accounts
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if service_accounts.is_empty() {
            return Err(
                "PUSH_AUTH_SERVICE_ACCOUNTS must list the service accounts allowed to push \
                 (any Google account can get a token for any audience)"
                    .into(),
            );
        }
        Ok(PushAuthConfig {
            audience: audience.to_string(),
            service_accounts,
            keys_url: GOOGLE_CERTS_URL.to_string(),
            leeway: Duration::from_secs(30),
            min_refetch: MIN_REFETCH,
        })
    }

    /// Sets [`PushAuthConfig::keys_url`].
    pub fn with_keys_url(mut self, url: impl Into<String>) -> Self {
        self.keys_url = url.into();
        self
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header: a push must carry the subscription's OIDC token")]
    Missing,
    /// An `Authorization` header of another scheme (Basic, …).
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    /// Not a JWT, or a JWT of another algorithm (`none`, HS256, …).
    #[error("the bearer token is not an RS256 JWT: {0}")]
    Malformed(String),
    /// Signed with a key Google does not publish (also after refetching the keys).
    #[error("the token's key {kid:?} is not one of Google's signing keys")]
    UnknownKey {
        /// The token's `kid`.
        kid: String,
    },
    /// The signature, issuer, audience or a time claim is wrong.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// Signed by Google, but for an account that may not push.
    #[error("the token's account {email:?} is not allowed to push (PUSH_AUTH_SERVICE_ACCOUNTS)")]
    Account {
        /// The token's `email` (empty when it has none).
        email: String,
    },
    /// The account's email is not verified.
    #[error("the token's email {email:?} is not verified")]
    Unverified {
        /// The token's `email`.
        email: String,
    },
    /// Google's keys could not be fetched.
    #[error("Google's signing keys could not be fetched from {url}: {message}")]
    KeysUnavailable {
        /// The key endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl AuthError {
    /// 401 for no credentials, 503 when the keys are unavailable, 403 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::NotBearer => StatusCode::UNAUTHORIZED,
            AuthError::KeysUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// The claims of a Google ID token that [`PushAuth`] reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PushClaims {
    /// The account that pushed.
    #[serde(default)]
    pub email: String,
    /// Whether Google verified that email.
    #[serde(default)]
    pub email_verified: bool,
    /// The subject (the account's unique id).
    #[serde(default)]
    pub sub: String,
    /// When the token was issued (seconds since the epoch).
    pub iat: u64,
}

/// Google's signing keys, fetched when needed and cached.
#[derive(Debug)]
struct KeyCache {
    url: String,
    min_refetch: Duration,
    http: reqwest::Client,
    keys: RwLock<Option<FetchedKeys>>,
    /// Held while fetching; the time of the last fetch.
    fetching: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct FetchedKeys {
    by_kid: HashMap<String, DecodingKey>,
    expires: Instant,
}

impl KeyCache {
    fn new(url: String, min_refetch: Duration) -> Self {
        crate::tls::install_default_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        KeyCache {
            url,
            min_refetch,
            http,
            keys: RwLock::new(None),
            fetching: Mutex::new(None),
        }
    }

    /// The key named `kid`: from the cache while it is fresh, else fetched (an unknown `kid`
    /// refetches at most every [`PushAuthConfig::min_refetch`]).
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let fresh = |keys: &Option<FetchedKeys>| {
            keys.as_ref()
                .filter(|k| k.expires > Instant::now())
                .map(|k| k.by_kid.get(kid).cloned())
        };
        if let Some(Some(key)) = fresh(&*self.keys.read().await) {
            return Ok(key);
        }
        let mut last_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let cached = fresh(&*self.keys.read().await);
        match cached {
            Some(Some(key)) => return Ok(key),
            Some(None) if last_fetch.is_some_and(|t| t.elapsed() < self.min_refetch) => {
                return Err(AuthError::UnknownKey {
                    kid: kid.to_string(),
                })
            }
            _ => {}
        }
        let fetched = self.fetch().await?;
        *last_fetch = Some(Instant::now());
        let key = fetched.by_kid.get(kid).cloned();
        *self.keys.write().await = Some(fetched);
        key.ok_or_else(|| AuthError::UnknownKey {
            kid: kid.to_string(),
        })
    }

    async fn fetch(&self) -> Result<FetchedKeys, AuthError> {
        let unavailable = |message: String| AuthError::KeysUnavailable {
            url: self.url.clone(),
            message,
        };
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let ttl = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_KEYS_TTL);
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("not a JWK set: {e}")))?;
        let by_kid = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect();
        tracing::debug!(url = %self.url, ttl_s = ttl.as_secs(), "fetched Google's signing keys");
        Ok(FetchedKeys {
            by_kid,
            expires: Instant::now() + ttl,
        })
    }
}

/// `max-age=N` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| value.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

/// Verifies push tokens: Google-signed OIDC ID tokens (RS256, issuer `accounts.google.com`) for
/// the configured audience, from one of the allowed service accounts, with a verified email;
/// the signing keys are fetched from [`PushAuthConfig::keys_url`] and cached.
#[derive(Debug)]
pub struct PushAuth {
    config: PushAuthConfig,
    keys: KeyCache,
    validation: Validation,
}

impl PushAuth {
    /// A verifier for `config` (keys are fetched on the first request).
    pub fn new(config: PushAuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        PushAuth {
            keys: KeyCache::new(config.keys_url.clone(), config.min_refetch),
            config,
            validation,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PushAuthConfig {
        &self.config
    }

    /// Checks an `Authorization` header; the token's claims when it may push.
    pub async fn verify(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<PushClaims, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::NotBearer)?.trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthError::NotBearer),
        };
        let jwt_header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if jwt_header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?}, not RS256",
                jwt_header.alg
            )));
        }
        let kid = jwt_header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid in its header".into()))?;
        let key = self.keys.key(&kid).await?;
        let claims = jsonwebtoken::decode::<PushClaims>(token, &key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        let now = jsonwebtoken::get_current_timestamp();
        if claims.iat > now + self.config.leeway.as_secs() {
            return Err(AuthError::Invalid(format!(
                "issued in the future (iat {} > now {now})",
                claims.iat
            )));
        }
        if !self.config.service_accounts.contains(&claims.email) {
            return Err(AuthError::Account {
                email: claims.email,
            });
        }
        if !claims.email_verified {
            return Err(AuthError::Unverified {
                email: claims.email,
            });
        }
        Ok(claims)
    }
}

/// A tower layer that lets through only requests whose push token [`PushAuth`] accepts; others
/// get 401, 403 or 503 with a JSON reason.
///
/// ```
/// use std::sync::Arc;
/// use axum::{routing::post, Router};
/// use ingest_http::{PushAuth, PushAuthConfig, PushAuthLayer};
///
/// let config = PushAuthConfig::new("https://my-service/", "pusher@p.iam.gserviceaccount.com").unwrap();
/// let app: Router = Router::new()
///     .route("/my-push", post(|| async { "ok" }))
///     .layer(PushAuthLayer::new(Arc::new(PushAuth::new(config))));
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct PushAuthLayer {
    auth: Arc<PushAuth>,
}

impl PushAuthLayer {
    /// A layer over `auth`.
    pub fn new(auth: Arc<PushAuth>) -> Self {
        PushAuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for PushAuthLayer {
    type Service = PushAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PushAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service of [`PushAuthLayer`].
#[derive(Debug, Clone)]
pub struct PushAuthService<S> {
    inner: S,
    auth: Arc<PushAuth>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for PushAuthService<S>
where
    S: tower::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.verify(request.headers().get(AUTHORIZATION)).await {
                Ok(_) => inner.call(request).await,
                Err(error) => Ok(refusal(request.uri().path(), &error)),
            }
        })
    }
}

/// The answer to a refused request, logged with its reason (never the token).
pub(crate) fn refusal(path: &str, error: &AuthError) -> Response {
    let status = error.status();
    tracing::warn!(
        path,
        status = status.as_u16(),
        outcome = "unauthorized",
        error = %error,
        "push refused ({}): {error}",
        status.as_u16()
    );
    let body = serde_json::json!({
        "outcome": if status == StatusCode::UNAUTHORIZED { "unauthenticated" } else { "forbidden" },
        "error": error.to_string(),
        "retry": status == StatusCode::SERVICE_UNAVAILABLE,
    });
    let mut response = (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19800, must-revalidate, no-transform"),
            Some(Duration::from_secs(19800))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("Max-Age=5"), Some(Duration::from_secs(5)));
    }

    #[test]
    fn statuses_say_who_should_act() {
        assert_eq!(AuthError::Missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(AuthError::NotBearer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::Invalid("x".into()).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            AuthError::KeysUnavailable {
                url: "u".into(),
                message: "m".into()
            }
            .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
