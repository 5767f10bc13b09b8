//! `GET /metrics`: the page a Prometheus scraper reads, rendered by whoever holds the metrics.

use std::fmt;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the `GET /metrics` page (Prometheus text format) on each scrape. The router does
/// not know the metrics: the service passes a renderer (`ingest_service::Metrics::render`).
///
/// ```
/// let endpoint = ingest_http::MetricsEndpoint::new(|| "bq_ingest_up 1\n".to_string());
/// assert_eq!(endpoint.render(), "bq_ingest_up 1\n");
/// ```
#[derive(Clone)]
pub struct MetricsEndpoint(Arc<dyn Fn() -> String + Send + Sync>);

impl MetricsEndpoint {
    /// An endpoint that answers what `render` returns.
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        MetricsEndpoint(Arc::new(render))
    }

    /// The page, now.
    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsEndpoint")
    }
}

/// The answer to `GET /metrics`: the page, or 404 when metrics are not enabled.
pub(crate) fn metrics_answer(metrics: Option<&MetricsEndpoint>) -> Response {
    match metrics {
        Some(m) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], m.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
