output "service_url" {
  description = "The Cloud Run service's URL."
  value       = module.bq_ingest.service_url
}

output "service_account_email" {
  description = "The account bq-ingest runs as."
  value       = module.bq_ingest.service_account_email
}

output "push_subscription" {
  description = "The push subscription."
  value       = module.bq_ingest.push_subscription
}

output "dead_letter_subscription" {
  description = "Where undeliverable notifications are kept."
  value       = module.bq_ingest.dead_letter_subscription
}

output "failure_subscription" {
  description = "Where failed batches are announced."
  value       = module.bq_ingest.failure_subscription
}

output "state_table" {
  description = "One row per batch outcome."
  value       = module.bq_ingest.state_table
}
