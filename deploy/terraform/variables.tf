# Inputs of the bq-ingest module. The first group places the deployment; the second sizes it;
# the last group is bq-ingest's own settings, one variable per environment variable, named as
# the variable in lower case, with bq-ingest's default (null: the variable is not set and
# bq-ingest's built-in behaviour applies). docs/configuration.md describes each setting.

# --- where ------------------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "Project that holds the service, its topics and subscriptions, and runs the BigQuery jobs (unless bq_project says otherwise)."
}

variable "region" {
  type        = string
  default     = "us-central1"
  description = "Region of the Cloud Run service."
}

variable "name" {
  type        = string
  default     = "bq-ingest"
  description = "Name of the Cloud Run service and prefix of every resource this module creates (topics, subscriptions, service accounts)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name))
    error_message = "name: 2 to 22 lower-case letters, digits and hyphens, starting with a letter (it prefixes service account ids, which allow 30 characters)."
  }
}

variable "image" {
  type        = string
  description = "The bq-ingest container image (built from deploy/Containerfile), e.g. us-docker.pkg.dev/my-project/bq-ingest/bq-ingest:0.1.0."
}

variable "bucket" {
  type        = string
  description = "The existing bucket the upstream system writes batches to. The module adds a notification and IAM members to it; it does not create or own it."
}

variable "object_prefix" {
  type        = string
  default     = null
  description = "Only objects whose name starts with this prefix are notified (the notification's object_name_prefix). Null: the whole bucket."
}

variable "destination_datasets" {
  type        = list(string)
  default     = []
  description = "Datasets the service loads into, as \"dataset\" (in the storage project) or \"project.dataset\". Each gets a roles/bigquery.dataEditor member for the service account."
}

variable "ordered_table_prefixes" {
  type        = list(string)
  default     = []
  description = "Object prefixes of the ordered tables (\"dataset/table/\"). Ordering writes and deletes a backlog and a lock under each, so the service account gets roles/storage.objectUser there, limited by an IAM condition to these prefixes; elsewhere it only reads. With order_per_table = true the whole bucket needs it and this list is ignored."
}

variable "create_state_dataset" {
  type        = bool
  default     = true
  description = "Create the dataset of bq_load_state_table (bq-ingest would otherwise create it at first use, which needs roles/bigquery.dataEditor on the project instead of one dataset)."
}

variable "state_dataset_location" {
  type        = string
  default     = "US"
  description = "Location of the state dataset when the module creates it; keep it with the destination datasets."
}

variable "failure_topic_enabled" {
  type        = bool
  default     = true
  description = "Create a failure topic (and a subscription that keeps its messages) and set FAILURE_TOPIC to it, unless failure_topic names another."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels put on every resource that takes labels."
}

# --- how big ----------------------------------------------------------------------------------

variable "min_instances" {
  type        = number
  default     = 0
  description = "Cloud Run minimum instances."
}

variable "max_instances" {
  type        = number
  default     = 10
  description = "Cloud Run maximum instances."
}

variable "concurrency" {
  type        = number
  default     = 80
  description = "Requests one instance serves at once. A request waits for its load jobs, mostly idle, so high values are fine."
}

variable "cpu" {
  type        = string
  default     = "1"
  description = "CPU limit of the container."
}

variable "memory" {
  type        = string
  default     = "512Mi"
  description = "Memory limit of the container."
}

variable "ingress" {
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
  description = "Cloud Run ingress. Invocation needs roles/run.invoker whatever the ingress; INGRESS_TRAFFIC_INTERNAL_ONLY also accepts Pub/Sub push from the same project."
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Protect the Cloud Run service from terraform destroy (the state dataset is never deleted with its tables: delete_contents_on_destroy is false)."
}

# --- delivery ---------------------------------------------------------------------------------

variable "push_enabled" {
  type        = bool
  default     = true
  description = "Push notifications to the service. False: the subscription only collects them (docs/deploy.md, moving from the Python function); set it true to start."
}

variable "max_delivery_attempts" {
  type        = number
  default     = 10
  description = "Deliveries of one notification before Pub/Sub moves it to the dead-letter topic (5 to 100)."
  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts: Pub/Sub accepts 5 to 100."
  }
}

variable "minimum_backoff" {
  type        = string
  default     = "10s"
  description = "Push retry policy: the shortest wait before a redelivery."
}

variable "maximum_backoff" {
  type        = string
  default     = "600s"
  description = "Push retry policy: the longest wait before a redelivery."
}

variable "message_retention_duration" {
  type        = string
  default     = "604800s"
  description = "How long the subscriptions keep unacknowledged messages (the push, dead-letter and failure subscriptions)."
}

# --- bq-ingest's settings (docs/configuration.md) ----------------------------------------------

variable "success_filename" {
  type        = string
  default     = "_SUCCESS"
  description = "SUCCESS_FILENAME: base name of the success marker that triggers a batch."
}

variable "start_backfill_filename" {
  type        = string
  default     = null
  description = "START_BACKFILL_FILENAME: base name of the start gate of ordered tables (e.g. _HISTORYDONE)."
}

variable "destination_regex" {
  type        = string
  default     = null
  description = "DESTINATION_REGEX: named-group regex from the marker's path to the destination. Null: the Python function's regex."
}

variable "max_batch_bytes" {
  type        = string
  default     = "15000000000000"
  description = "MAX_BATCH_BYTES: most bytes per load job; larger batches are split."
}

variable "job_prefix" {
  type        = string
  default     = "gcf-ingest-"
  description = "JOB_PREFIX: first part of every job id."
}

variable "bq_project" {
  type        = string
  default     = null
  description = "BQ_PROJECT: project that runs (and pays for) the jobs; the service account gets roles/bigquery.jobUser there. Null: project_id."
}

variable "bq_storage_project" {
  type        = string
  default     = null
  description = "BQ_STORAGE_PROJECT: project of destination tables whose path names none. Null: the job project."
}

variable "bq_location" {
  type        = string
  default     = null
  description = "BQ_LOCATION: location of every job (US, EU, us-central1, …)."
}

variable "wait_for_job_seconds" {
  type        = number
  default     = 60
  description = "WAIT_FOR_JOB_SECONDS: longest time one notification waits for its jobs before it is handed back and the redelivery follows them."
}

variable "order_per_table" {
  type        = bool
  default     = false
  description = "ORDER_PER_TABLE: every table is ordered, as if every path had an ORDERME."
}

variable "wait_for_validation" {
  type        = bool
  default     = false
  description = "WAIT_FOR_VALIDATION: in ordered tables, stop after each batch until a validator drops a new _BACKFILL."
}

variable "fail_on_zero_dml_rows_affected" {
  type        = bool
  default     = true
  description = "FAIL_ON_ZERO_DML_ROWS_AFFECTED: a DML statement of a transform that affects no row fails the batch."
}

variable "max_retries_on_bigquery_error" {
  type        = number
  default     = 3
  description = "MAX_RETRIES_ON_BIGQUERY_ERROR: resubmissions of a part whose job failed with a retriable error."
}

variable "bq_load_state_table" {
  type        = string
  default     = "bigquery_loads.serverless_bq_loads"
  description = "BQ_LOAD_STATE_TABLE: table of one row per batch outcome, \"dataset.table\" or \"project.dataset.table\"."
  validation {
    condition     = can(regex("^([a-z][a-z0-9-]{4,28}[a-z0-9]\\.)?[A-Za-z0-9_]{1,1024}\\.[^.]+$", var.bq_load_state_table))
    error_message = "bq_load_state_table: \"dataset.table\" or \"project.dataset.table\"."
  }
}

variable "include_prefixes" {
  type        = list(string)
  default     = []
  description = "INCLUDE_PREFIXES: object-name prefixes this deployment serves (empty: all)."
}

variable "exclude_prefixes" {
  type        = list(string)
  default     = []
  description = "EXCLUDE_PREFIXES: object-name prefixes this deployment ignores."
}

variable "timestamp_regex" {
  type        = string
  default     = null
  description = "TIMESTAMP_REGEX: finds the batch timestamp in the marker's name when the destination gives none."
}

variable "ordering_lock_lease_seconds" {
  type        = number
  default     = 3600
  description = "ORDERING_LOCK_LEASE_SECONDS: how long an ordered table's lock may go without a heartbeat before another run takes it over."
}

variable "restart_buffer_seconds" {
  type        = number
  default     = 30
  description = "RESTART_BUFFER_SECONDS: how long before its deadline the ordered subscriber hands over to a fresh run."
}

variable "failure_topic" {
  type        = string
  default     = null
  description = "FAILURE_TOPIC: an existing topic (id) where failed batches are announced. Null: the module's own failure topic if failure_topic_enabled, else none."
}

variable "request_deadline_seconds" {
  type        = number
  default     = 240
  description = "REQUEST_DEADLINE_SECONDS: longest time one push request may take. The Cloud Run request timeout and the subscription's ack deadline are derived from it (+30 s), so keep it at most 570."
  validation {
    condition     = var.request_deadline_seconds >= 10 && var.request_deadline_seconds <= 570
    error_message = "request_deadline_seconds: 10 to 570 (the ack deadline, 30 s more, is at most 600 s)."
  }
}

variable "body_timeout_seconds" {
  type        = number
  default     = 10
  description = "BODY_TIMEOUT_SECONDS: longest time to read one request body."
}

variable "shutdown_grace_seconds" {
  type        = number
  default     = 5
  description = "SHUTDOWN_GRACE_SECONDS: after SIGTERM, how long in-flight pushes may still finish before they are answered 503 (Cloud Run kills the container 10 s after SIGTERM)."
  validation {
    condition     = var.shutdown_grace_seconds >= 0 && var.shutdown_grace_seconds < 10
    error_message = "shutdown_grace_seconds: under Cloud Run's 10 s."
  }
}

variable "push_auth_audience" {
  type        = string
  default     = null
  description = "PUSH_AUTH_AUDIENCE: check the push's OIDC token in bq-ingest too. Null: Cloud Run's IAM check (roles/run.invoker) is the only one, which suffices here."
}

variable "push_auth_service_accounts" {
  type        = list(string)
  default     = []
  description = "PUSH_AUTH_SERVICE_ACCOUNTS: service accounts whose push tokens bq-ingest accepts (with push_auth_audience)."
}

variable "push_auth_keys_url" {
  type        = string
  default     = null
  description = "PUSH_AUTH_KEYS_URL: where Google's signing keys are read. Null: Google's."
}

variable "metrics_table_labels" {
  type        = bool
  default     = false
  description = "METRICS_TABLE_LABELS: label per-table metrics (batches, ordered backlog and lock) with the table; off, the number of series stays bounded."
}

variable "load_jobs_warning_per_table" {
  type        = number
  default     = 1200
  description = "LOAD_JOBS_WARNING_PER_TABLE: warn when one instance has created this many load jobs into one table today (BigQuery allows 1,500; batches beyond it are parked)."
}

variable "log_format" {
  type        = string
  default     = "json"
  description = "LOG_FORMAT: json (Cloud Logging) or text."
}

variable "rust_log" {
  type        = string
  default     = "info"
  description = "RUST_LOG: the log filter."
}

# --- the scheduled reconcile sweep (bq-ingest reconcile) ------------------------------------

variable "reconcile_schedule" {
  type        = string
  default     = null
  description = "A cron expression (Cloud Scheduler, UTC), e.g. \"17 * * * *\": run `bq-ingest reconcile --apply --mode notifications` as a Cloud Run job on it, republishing the notification of every marker that has no final state row (missed notifications). Null: no sweep."
}

variable "reconcile_since" {
  type        = string
  default     = "24h"
  description = "How far back the sweep looks (--since)."
}

variable "reconcile_grace" {
  type        = string
  default     = "10m"
  description = "How old a marker without a row must be before the sweep counts it missed (--grace)."
}
