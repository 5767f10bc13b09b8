output "service_name" {
  description = "The Cloud Run service."
  value       = google_cloud_run_v2_service.service.name
}

output "service_url" {
  description = "The service's URL (the push endpoint)."
  value       = google_cloud_run_v2_service.service.uri
}

output "service_account_email" {
  description = "The account bq-ingest runs as (the one that needs access to new destination datasets)."
  value       = google_service_account.service.email
}

output "invoker_service_account_email" {
  description = "The push subscription's OIDC identity."
  value       = google_service_account.invoker.email
}

output "notification_topic" {
  description = "The topic the bucket's notifications go to."
  value       = google_pubsub_topic.notifications.id
}

output "notification_id" {
  description = "The bucket's notification configuration."
  value       = google_storage_notification.notification.notification_id
}

output "push_subscription" {
  description = "The push subscription that delivers notifications to the service."
  value       = google_pubsub_subscription.push.id
}

output "dead_letter_topic" {
  description = "Where notifications go after max_delivery_attempts."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "The subscription that keeps the dead letters (pull from it to inspect or replay)."
  value       = google_pubsub_subscription.dead_letter.id
}

output "failure_topic" {
  description = "FAILURE_TOPIC: where failed batches are announced (null: none)."
  value       = local.failure_topic
}

output "failure_subscription" {
  description = "The subscription that keeps the module's failure announcements (null when the module made no failure topic)."
  value       = length(google_pubsub_subscription.failures) > 0 ? google_pubsub_subscription.failures[0].id : null
}

output "state_table" {
  description = "BQ_LOAD_STATE_TABLE in full: project.dataset.table."
  value       = "${local.state_project}.${local.state_dataset}.${element(local.state_parts, length(local.state_parts) - 1)}"
}

output "reconcile_job" {
  description = "The Cloud Run job of the scheduled reconcile sweep (null without reconcile_schedule)."
  value       = length(google_cloud_run_v2_job.reconcile) > 0 ? google_cloud_run_v2_job.reconcile[0].name : null
}
