//! [`Runtime`]: the real adapters wired to the core, as the `bq-ingest` binary runs them.

use std::sync::Arc;

use ingest_bigquery::BigQueryWarehouse;
use ingest_core::ingest::Ingestor;
use ingest_core::settings::{Settings, SettingsError};
use ingest_gcs::GcsStore;
use ingest_google::{ClientLayer, RequestCounts, RetryPolicy, SetupError};
use ingest_pubsub::{Publisher, PubsubClient, PubsubError};

use crate::clock::SystemClock;
use crate::failure_sink::TopicFailureSink;
use crate::metrics::Metrics;

/// The runtime could not be built. Each variant names the setting or the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An environment variable has an invalid value.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Neither `BQ_PROJECT` nor `GOOGLE_CLOUD_PROJECT` names the project that runs the jobs, and
    /// the environment names none either.
    #[error(
        "no project to run jobs in: set BQ_PROJECT or GOOGLE_CLOUD_PROJECT (no metadata server \
         answered, and neither the credentials file nor the gcloud configuration names one)"
    )]
    NoProject,
    /// The project the environment names is not a valid project id.
    #[error("the project {project:?} from {found_in} is not a valid project id: {message}")]
    InvalidProject {
        /// The project id found.
        project: String,
        /// Where it was found.
        found_in: String,
        /// What is wrong with it.
        message: String,
    },
    /// A client of a Google service could not be set up.
    #[error("{service}: {source}")]
    Setup {
        /// `GCS`, `BigQuery` or `Pub/Sub`.
        service: &'static str,
        /// Why.
        source: SetupError,
    },
    /// The Pub/Sub client could not be set up.
    #[error("Pub/Sub{}: {source}", for_what.map(|w| format!(" ({w})")).unwrap_or_default())]
    Pubsub {
        /// What it was for (`FAILURE_TOPIC`), if anything in particular.
        for_what: Option<&'static str>,
        /// Why.
        source: PubsubError,
    },
}

/// The adapters behind an [`Ingestor`], on one Google client layer: one HTTP client, one set
/// of credentials (Application Default Credentials, loaded once; none for emulators) and one
/// set of request counters for GCS, BigQuery and Pub/Sub.
///
/// The endpoints come from the environment (see
/// [`Endpoint::from_env`](ingest_google::Endpoint::from_env)): `STORAGE_EMULATOR_HOST`,
/// `BIGQUERY_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST` for emulators, `BQ_INGEST_*_ENDPOINT` for
/// other endpoints of the real services.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The ingestor.
    pub ingestor: Arc<Ingestor>,
    /// The client layer the adapters share.
    pub layer: ClientLayer,
    /// GCS.
    pub store: Arc<GcsStore>,
    /// BigQuery.
    pub warehouse: Arc<BigQueryWarehouse>,
    /// The metrics the ingestor and the front ends report to (`GET /metrics` renders them).
    pub metrics: Arc<Metrics>,
}

impl Runtime {
    /// Reads the settings from the environment (an invalid variable is an error naming it)
    /// and builds the runtime for them.
    pub async fn from_env() -> Result<Runtime, ServiceError> {
        Runtime::build(Settings::from_env()?).await
    }

    /// Builds the adapters for `settings`, with the default retry policy. With a
    /// `FAILURE_TOPIC`, failed batches are also published there.
    ///
    /// Without `BQ_PROJECT` or `GOOGLE_CLOUD_PROJECT`, the project is the one of the environment,
    /// found as Google's client libraries find it ([`ClientLayer::discover_project`]: the
    /// metadata server, then the credentials file, then the gcloud configuration), and logged
    /// with where it came from.
    pub async fn build(mut settings: Settings) -> Result<Runtime, ServiceError> {
        let setup = |service| move |source| ServiceError::Setup { service, source };
        let layer = ClientLayer::new().map_err(setup("Google client"))?;
        if settings.bq_project.is_none() {
            settings.bq_project = discovered_project(&layer).await?;
        }
        let project = settings
            .job_project()
            .ok_or(ServiceError::NoProject)?
            .to_string();
        let retry = RetryPolicy::default();
        let store = GcsStore::from_layer(&layer, retry)
            .await
            .map_err(setup("GCS"))?;
        let warehouse = BigQueryWarehouse::from_layer(&layer, project.clone(), retry)
            .await
            .map_err(setup("BigQuery"))?;
        let (store, warehouse) = (Arc::new(store), Arc::new(warehouse));
        let failure_sink = match &settings.failure_topic {
            Some(topic) => {
                let client = pubsub_client(&layer, Some(&project))
                    .await
                    .map_err(|source| ServiceError::Pubsub {
                        for_what: Some("FAILURE_TOPIC"),
                        source,
                    })?;
                Some(TopicFailureSink(Publisher::new(&client, topic)))
            }
            None => None,
        };
        let metrics = Arc::new(
            Metrics::new(layer.counters().clone(), settings.metrics_table_labels)
                .with_load_job_warning(settings.load_jobs_warning_per_table),
        );
        let mut ingestor = Ingestor::new(
            settings,
            store.clone(),
            warehouse.clone(),
            Arc::new(SystemClock),
        )
        .with_observer(metrics.clone());
        if let Some(sink) = failure_sink {
            ingestor = ingestor.with_failure_sink(Arc::new(sink));
        }
        Ok(Runtime {
            ingestor: Arc::new(ingestor),
            layer,
            store,
            warehouse,
            metrics,
        })
    }

    /// A Pub/Sub client on the runtime's client layer, for the project that runs the jobs.
    pub async fn pubsub(&self) -> Result<PubsubClient, ServiceError> {
        pubsub_client(&self.layer, self.ingestor.settings().job_project())
            .await
            .map_err(|source| ServiceError::Pubsub {
                for_what: None,
                source,
            })
    }

    /// Every request the runtime's clients sent so far, by service and operation.
    pub fn request_counts(&self) -> RequestCounts {
        self.layer.counters().snapshot()
    }
}

/// The environment's project, validated, when no setting names one.
async fn discovered_project(layer: &ClientLayer) -> Result<Option<String>, ServiceError> {
    let Some(found) = layer.discover_project().await else {
        return Ok(None);
    };
    if let Err(message) = ingest_core::ident::validate_project_id(&found.project) {
        return Err(ServiceError::InvalidProject {
            project: found.project,
            found_in: found.source.to_string(),
            message,
        });
    }
    tracing::info!(
        project = %found.project,
        "project {} from {} (no BQ_PROJECT or GOOGLE_CLOUD_PROJECT)",
        found.project,
        found.source
    );
    Ok(Some(found.project))
}

async fn pubsub_client(
    layer: &ClientLayer,
    project: Option<&str>,
) -> Result<PubsubClient, PubsubError> {
    PubsubClient::from_layer(layer, project, RetryPolicy::default()).await
}
