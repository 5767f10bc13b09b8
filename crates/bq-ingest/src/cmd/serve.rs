//! `bq-ingest serve`: the HTTP endpoint for Pub/Sub push, Eventarc and background events.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ingest_http::{router, serve, stop_signal, HttpState, PushAuthConfig};

use ingest_service::{shutdown_signal, Runtime};

use super::log_request_counts;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (Cloud Run sets `PORT`).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// How long one request may wait for its jobs, in seconds (keep it below the push
    /// subscription's ack deadline and Cloud Run's request timeout).
    #[arg(long, env = "REQUEST_DEADLINE_SECONDS", default_value_t = 240)]
    request_deadline: u64,
    /// How long a request's body may take to arrive, in seconds; a body still incomplete then
    /// gets 408.
    #[arg(long, env = "BODY_TIMEOUT_SECONDS", default_value_t = 10)]
    body_timeout: u64,
    /// After SIGTERM, how long a request in flight may still wait for its jobs before it
    /// answers 503 (its jobs keep running; the redelivery follows them), in seconds. Keep it
    /// under the platform's stop timeout (Cloud Run: 10 s).
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 5)]
    shutdown_grace: u64,
    /// Verify push tokens: the expected audience (`aud`) of the OIDC tokens that the push
    /// subscription or Eventarc trigger sends. Needs `--push-auth-service-accounts`.
    #[arg(long, env = "PUSH_AUTH_AUDIENCE")]
    push_auth_audience: Option<String>,
    /// The service accounts allowed to push (comma-separated `email`s of the tokens).
    #[arg(long, env = "PUSH_AUTH_SERVICE_ACCOUNTS")]
    push_auth_service_accounts: Option<String>,
    /// Where Google's token-signing keys are fetched (a JWK set).
    #[arg(long, env = "PUSH_AUTH_KEYS_URL", default_value = ingest_http::GOOGLE_CERTS_URL)]
    push_auth_keys_url: String,
}

impl ServeArgs {
    /// The push authentication asked for: none when neither setting is given.
    fn push_auth(&self) -> Result<Option<PushAuthConfig>, String> {
        match (&self.push_auth_audience, &self.push_auth_service_accounts) {
            (None, None) => Ok(None),
            (audience, accounts) => PushAuthConfig::new(
                audience.as_deref().unwrap_or_default(),
                accounts.as_deref().unwrap_or_default(),
            )
            .map(|c| Some(c.with_keys_url(self.push_auth_keys_url.clone()))),
        }
    }
}

/// Runs the service until SIGTERM, then finishes the requests in flight.
pub async fn run(args: ServeArgs) -> ExitCode {
    let started = Instant::now();
    // Installed before anything else, so a SIGTERM during start-up is a clean stop.
    let stop_requested = shutdown_signal();
    let runtime = match Runtime::from_env().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let auth = match args.push_auth() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, stopping) = stop_signal();
    let mut state = HttpState::new(runtime.ingestor.clone())
        .with_request_deadline(Duration::from_secs(args.request_deadline))
        .with_body_timeout(Duration::from_secs(args.body_timeout.max(1)))
        .with_stopping(stopping)
        .with_shutdown_grace(Duration::from_secs(args.shutdown_grace))
        .with_metrics(super::metrics_endpoint(&runtime));
    match auth {
        Some(auth) => {
            tracing::info!(
                audience = %auth.audience,
                accounts = auth.service_accounts.len(),
                "push authentication on: only OIDC tokens for {} from the {} allowed account(s) are accepted",
                auth.audience,
                auth.service_accounts.len()
            );
            state = state.with_auth(auth);
        }
        None => tracing::warn!(
            "push authentication off: every request is accepted; set PUSH_AUTH_AUDIENCE and \
             PUSH_AUTH_SERVICE_ACCOUNTS unless only an authenticating front (Cloud Run IAM) can \
             reach this service"
        ),
    }
    let listener = match tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen on {}:{}: {e}", args.host, args.port);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        port = args.port,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "ready"
    );
    let stopped = async move {
        stop_requested.await;
        stop.stop();
    };
    let result = serve(listener, router(state), stopped).await;
    log_request_counts(&runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server error: {e}");
            ExitCode::FAILURE
        }
    }
}
