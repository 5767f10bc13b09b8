# Least privilege, and only non-authoritative members: this module adds to the IAM of shared
# resources (the project, the bucket, the datasets) and never replaces it. No *_iam_policy, no
# *_iam_binding, no primitive role (owner, editor, viewer). The table in docs/deploy.md lists
# each member; deploy/terraform/test_module.py checks it.

# --- the service's account ------------------------------------------------------------------------

# Run jobs in the job project.
resource "google_project_iam_member" "service_runs_jobs" {
  project = local.bq_project
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.service.email}"
}

# Load into (and transform in) the destination datasets.
resource "google_bigquery_dataset_iam_member" "service_edits_destinations" {
  for_each   = local.destination_datasets
  project    = each.value.project
  dataset_id = each.value.dataset
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.service.email}"
}

# Create and append to the state table.
resource "google_bigquery_dataset_iam_member" "service_edits_state" {
  project    = local.state_project
  dataset_id = var.create_state_dataset ? google_bigquery_dataset.state[0].dataset_id : local.state_dataset
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.service.email}"
}

# Read the batches, the _config/ files and the markers (load jobs read the files as this account).
resource "google_storage_bucket_iam_member" "service_reads_bucket" {
  bucket = var.bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.service.email}"
}

# Ordered tables: create and delete the backlog, the lock and _BACKFILL under their prefixes
# only (the whole bucket with order_per_table).
resource "google_storage_bucket_iam_member" "service_orders_tables" {
  for_each = var.order_per_table ? toset([""]) : toset(var.ordered_table_prefixes)
  bucket   = var.bucket
  role     = "roles/storage.objectUser"
  member   = "serviceAccount:${google_service_account.service.email}"
  dynamic "condition" {
    for_each = each.key == "" ? [] : [each.key]
    content {
      title       = "bq-ingest ordering under ${condition.value}"
      description = "Backlog, lock and _BACKFILL of the ordered tables under this prefix."
      expression  = "resource.name.startsWith(\"projects/_/buckets/${var.bucket}/objects/${condition.value}\")"
    }
  }
}

# Announce failed batches.
resource "google_pubsub_topic_iam_member" "service_publishes_failures" {
  count   = local.failure_topic != null ? 1 : 0
  project = var.project_id
  topic   = local.failure_topic
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.service.email}"
}

# --- Google's agents and the push identity ----------------------------------------------------------

# Cloud Storage publishes the bucket's notifications.
resource "google_pubsub_topic_iam_member" "gcs_publishes_notifications" {
  project = var.project_id
  topic   = google_pubsub_topic.notifications.name
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent
}

# The push subscription's OIDC identity may invoke the service, and nothing else.
resource "google_cloud_run_v2_service_iam_member" "push_invokes_service" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# Pub/Sub mints the push identity's OIDC tokens (needed in projects older than April 2021).
resource "google_service_account_iam_member" "pubsub_signs_push_tokens" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Pub/Sub moves undeliverable notifications to the dead-letter topic: it publishes there and
# acknowledges them on the push subscription.
resource "google_pubsub_topic_iam_member" "pubsub_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_forwards_dead_letters" {
  project      = var.project_id
  subscription = google_pubsub_subscription.push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
