//! Wiring the real adapters to the core: settings from the environment, GCS, BigQuery, the
//! failure topic, the system clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use ingest_core::ingest::Ingestor;
use ingest_core::ports::{FailureReport, FailureSink};
use ingest_core::settings::Settings;
use ingest_pubsub::{Publisher, PubsubClient};

use bq_ingest::clock::SystemClock;

/// The adapters behind an [`Ingestor`], kept for their request counters.
#[derive(Debug)]
pub struct Runtime {
    /// The ingestor.
    pub ingestor: Arc<Ingestor>,
    /// GCS.
    pub store: Arc<ingest_gcs::GcsStore>,
    /// BigQuery.
    pub warehouse: Arc<ingest_bigquery::BigQueryWarehouse>,
}

/// Announces failed batches on `FAILURE_TOPIC`: the report as JSON, with attributes to filter
/// on (`bucketId`, `objectId`, `objectGeneration`, `eventType=BQ_INGEST_FAILURE`).
#[derive(Debug)]
pub struct TopicFailureSink(pub Publisher);

#[async_trait]
impl FailureSink for TopicFailureSink {
    async fn announce(&self, failure: &FailureReport) -> Result<(), String> {
        let attributes = BTreeMap::from([
            ("bucketId".to_string(), failure.bucket.clone()),
            ("objectId".to_string(), failure.object.clone()),
            (
                "objectGeneration".to_string(),
                failure.generation.to_string(),
            ),
            ("eventType".to_string(), "BQ_INGEST_FAILURE".to_string()),
        ]);
        let value = serde_json::to_value(failure).map_err(|e| e.to_string())?;
        self.0
            .publish_json(attributes, &value)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Reads the settings (an invalid variable is an error naming it) and connects the adapters.
pub async fn build() -> Result<Runtime, String> {
    let settings = Settings::from_env().map_err(|e| e.to_string())?;
    build_with(settings).await
}

/// Connects the adapters for `settings`.
pub async fn build_with(settings: Settings) -> Result<Runtime, String> {
    let project = settings
        .job_project()
        .ok_or("no project to run jobs in: set BQ_PROJECT or GOOGLE_CLOUD_PROJECT")?
        .to_string();
    let store = Arc::new(
        ingest_gcs::GcsStore::from_env()
            .await
            .map_err(|e| format!("GCS: {e}"))?,
    );
    let warehouse = Arc::new(
        ingest_bigquery::BigQueryWarehouse::from_env(project.clone())
            .await
            .map_err(|e| format!("BigQuery: {e}"))?,
    );
    let failure_topic = settings.failure_topic.clone();
    let mut ingestor = Ingestor::new(
        settings,
        store.clone(),
        warehouse.clone(),
        Arc::new(SystemClock),
    );
    if let Some(topic) = failure_topic {
        let client = PubsubClient::connect(Some(&project))
            .await
            .map_err(|e| format!("Pub/Sub (FAILURE_TOPIC): {e}"))?;
        ingestor =
            ingestor.with_failure_sink(Arc::new(TopicFailureSink(Publisher::new(&client, &topic))));
    }
    Ok(Runtime {
        ingestor: Arc::new(ingestor),
        store,
        warehouse,
    })
}

/// Resolves when the process receives SIGTERM (Cloud Run's stop signal) or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stop taking work, finish what is in flight"),
                    _ = int.recv() => tracing::info!("SIGINT: stop taking work, finish what is in flight"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
