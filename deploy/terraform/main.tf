# bq-ingest on Cloud Run, fed by GCS notifications through a Pub/Sub push subscription.
#
#   bucket ──OBJECT_FINALIZE──▶ <name>-notifications ──push (OIDC)──▶ Cloud Run <name>
#                                      │ after max_delivery_attempts        │ failed batches
#                                      ▼                                    ▼
#                              <name>-dead-letter (+ subscription)   <name>-failures (+ subscription)
#
# IAM is in iam.tf; every binding there is a non-authoritative *_iam_member.

data "google_project" "project" {
  project_id = var.project_id
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

locals {
  bq_project      = coalesce(var.bq_project, var.project_id)
  storage_project = coalesce(var.bq_storage_project, local.bq_project)

  # BQ_LOAD_STATE_TABLE is "dataset.table" (in the storage project) or "project.dataset.table".
  state_parts   = split(".", var.bq_load_state_table)
  state_project = length(local.state_parts) == 3 ? local.state_parts[0] : local.storage_project
  state_dataset = local.state_parts[length(local.state_parts) - 2]

  # "dataset" or "project.dataset" → { "project.dataset" = { project, dataset } }
  destination_datasets = {
    for d in var.destination_datasets : (length(split(".", d)) == 2 ? d : "${local.storage_project}.${d}") => {
      project = length(split(".", d)) == 2 ? split(".", d)[0] : local.storage_project
      dataset = element(split(".", d), length(split(".", d)) - 1)
    }
  }

  # Cloud Run's request timeout leaves bq-ingest's own deadline room to answer; the ack deadline
  # covers the whole request, so Pub/Sub never redelivers a push that is still being served.
  request_timeout_seconds = var.request_deadline_seconds + 30
  ack_deadline_seconds    = local.request_timeout_seconds

  failure_topic = var.failure_topic != null ? var.failure_topic : (
    var.failure_topic_enabled ? google_pubsub_topic.failures[0].name : null
  )

  pubsub_agent = "serviceAccount:service-${data.google_project.project.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  gcs_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"

  # Every bq-ingest setting, by its environment variable. Null values are not set, so
  # bq-ingest's built-in default applies; deploy/terraform/test_module.py checks that every
  # setting the binary reads is here.
  settings = {
    SUCCESS_FILENAME               = var.success_filename
    START_BACKFILL_FILENAME        = var.start_backfill_filename
    DESTINATION_REGEX              = var.destination_regex
    MAX_BATCH_BYTES                = var.max_batch_bytes
    JOB_PREFIX                     = var.job_prefix
    BQ_PROJECT                     = local.bq_project
    BQ_STORAGE_PROJECT             = var.bq_storage_project
    BQ_LOCATION                    = var.bq_location
    WAIT_FOR_JOB_SECONDS           = var.wait_for_job_seconds
    ORDER_PER_TABLE                = var.order_per_table
    WAIT_FOR_VALIDATION            = var.wait_for_validation
    FAIL_ON_ZERO_DML_ROWS_AFFECTED = var.fail_on_zero_dml_rows_affected
    MAX_RETRIES_ON_BIGQUERY_ERROR  = var.max_retries_on_bigquery_error
    BQ_LOAD_STATE_TABLE            = var.bq_load_state_table
    INCLUDE_PREFIXES               = length(var.include_prefixes) > 0 ? join(",", var.include_prefixes) : null
    EXCLUDE_PREFIXES               = length(var.exclude_prefixes) > 0 ? join(",", var.exclude_prefixes) : null
    TIMESTAMP_REGEX                = var.timestamp_regex
    ORDERING_LOCK_LEASE_SECONDS    = var.ordering_lock_lease_seconds
    RESTART_BUFFER_SECONDS         = var.restart_buffer_seconds
    FAILURE_TOPIC                  = local.failure_topic
    REQUEST_DEADLINE_SECONDS       = var.request_deadline_seconds
    BODY_TIMEOUT_SECONDS           = var.body_timeout_seconds
    SHUTDOWN_GRACE_SECONDS         = var.shutdown_grace_seconds
    PUSH_AUTH_AUDIENCE             = var.push_auth_audience
    PUSH_AUTH_SERVICE_ACCOUNTS     = length(var.push_auth_service_accounts) > 0 ? join(",", var.push_auth_service_accounts) : null
    PUSH_AUTH_KEYS_URL             = var.push_auth_keys_url
    METRICS_TABLE_LABELS           = var.metrics_table_labels
    LOAD_JOBS_WARNING_PER_TABLE    = var.load_jobs_warning_per_table
    LOG_FORMAT                     = var.log_format
    RUST_LOG                       = var.rust_log
  }
  env = { for k, v in local.settings : k => tostring(v) if v != null }
}

# --- identities ---------------------------------------------------------------------------------

resource "google_service_account" "service" {
  project      = var.project_id
  account_id   = var.name
  display_name = "bq-ingest ${var.name}: loads GCS batches into BigQuery"
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-push"
  display_name = "bq-ingest ${var.name}: Pub/Sub push identity (invokes the service)"
}

# --- notifications --------------------------------------------------------------------------------

resource "google_pubsub_topic" "notifications" {
  project = var.project_id
  name    = "${var.name}-notifications"
  labels  = var.labels
}

resource "google_storage_notification" "notification" {
  bucket             = var.bucket
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = var.object_prefix
  topic              = google_pubsub_topic.notifications.id
  depends_on         = [google_pubsub_topic_iam_member.gcs_publishes_notifications]
}

resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = "${var.name}-dead-letter"
  labels  = var.labels
}

# Keeps what reaches the dead-letter topic (a topic without a subscription drops messages).
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic" "failures" {
  count   = var.failure_topic == null && var.failure_topic_enabled ? 1 : 0
  project = var.project_id
  name    = "${var.name}-failures"
  labels  = var.labels
}

resource "google_pubsub_subscription" "failures" {
  count                      = length(google_pubsub_topic.failures)
  project                    = var.project_id
  name                       = "${var.name}-failures"
  topic                      = google_pubsub_topic.failures[0].id
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels
  expiration_policy {
    ttl = ""
  }
}

# --- the service ----------------------------------------------------------------------------------

resource "google_cloud_run_v2_service" "service" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    service_account                  = google_service_account.service.email
    timeout                          = "${local.request_timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency
    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }
    containers {
      image = var.image
      args  = ["serve"]
      ports {
        container_port = 8080
      }
      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
      }
      dynamic "env" {
        for_each = local.env
        content {
          name  = env.key
          value = env.value
        }
      }
      # /health, not /healthz: Cloud Run reserves paths ending in "z".
      startup_probe {
        period_seconds    = 1
        timeout_seconds   = 1
        failure_threshold = 30
        http_get {
          path = "/health"
        }
      }
      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/health"
        }
      }
    }
  }
}

# --- delivery --------------------------------------------------------------------------------------

resource "google_pubsub_subscription" "push" {
  project                    = var.project_id
  name                       = "${var.name}-push"
  topic                      = google_pubsub_topic.notifications.id
  ack_deadline_seconds       = local.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  labels                     = var.labels

  # Without push (push_enabled = false) the subscription is a pull subscription that nothing
  # reads: notifications wait in it, as the switch-over from the Python function needs.
  dynamic "push_config" {
    for_each = var.push_enabled ? [google_cloud_run_v2_service.service.uri] : []
    content {
      push_endpoint = "${push_config.value}/pubsub/push"
      oidc_token {
        service_account_email = google_service_account.invoker.email
        audience              = push_config.value
      }
    }
  }
  retry_policy {
    minimum_backoff = var.minimum_backoff
    maximum_backoff = var.maximum_backoff
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }
  expiration_policy {
    ttl = ""
  }
  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes_service,
    google_pubsub_topic_iam_member.pubsub_publishes_dead_letters,
  ]
}

# --- the state table's dataset ------------------------------------------------------------------------

resource "google_bigquery_dataset" "state" {
  count                      = var.create_state_dataset ? 1 : 0
  project                    = local.state_project
  dataset_id                 = local.state_dataset
  location                   = var.state_dataset_location
  description                = "bq-ingest's state table ${var.bq_load_state_table}: one row per batch outcome."
  delete_contents_on_destroy = false
  labels                     = var.labels
}
