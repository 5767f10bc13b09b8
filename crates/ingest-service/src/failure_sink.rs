//! The failure topic: a [`FailureSink`] that publishes each report to Pub/Sub.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ingest_core::ports::{FailureReport, FailureSink};
use ingest_pubsub::Publisher;

/// Announces failed batches on a topic (`FAILURE_TOPIC`): the report as JSON, with attributes
/// to filter on (`bucketId`, `objectId`, `objectGeneration`, `eventType=BQ_INGEST_FAILURE`).
#[derive(Debug, Clone)]
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
