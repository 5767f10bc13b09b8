# The scheduled sweep (reconcile_schedule): a Cloud Run job that runs `bq-ingest reconcile`
# over the bucket (or object_prefix) and republishes, to the notifications topic, the
# notification of every marker without a final state row; the service then handles them as
# duplicates would be (deterministic job ids: nothing loads twice). Cloud Scheduler starts it.

locals {
  reconcile = var.reconcile_schedule != null
  reconcile_args = [
    "reconcile", "gs://${var.bucket}/${coalesce(var.object_prefix, "")}",
    "--apply", "--mode", "notifications", "--topic", google_pubsub_topic.notifications.name,
    "--since", var.reconcile_since, "--grace", var.reconcile_grace,
  ]
}

resource "google_cloud_run_v2_job" "reconcile" {
  count               = local.reconcile ? 1 : 0
  project             = var.project_id
  name                = "${var.name}-reconcile"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count = 1
    template {
      service_account = google_service_account.service.email
      timeout         = "1800s"
      max_retries     = 1
      containers {
        image = var.image
        args  = local.reconcile_args
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
      }
    }
  }
}

resource "google_service_account" "scheduler" {
  count        = local.reconcile ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name}-sched"
  display_name = "bq-ingest ${var.name}: starts the reconcile job"
}

resource "google_cloud_scheduler_job" "reconcile" {
  count     = local.reconcile ? 1 : 0
  project   = var.project_id
  region    = var.region
  name      = "${var.name}-reconcile"
  schedule  = var.reconcile_schedule
  time_zone = "Etc/UTC"

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.reconcile[0].name}:run"
    oauth_token {
      service_account_email = google_service_account.scheduler[0].email
    }
  }
  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_reconcile]
}

# The scheduler's account may run this job, and nothing else.
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_reconcile" {
  count    = local.reconcile ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.reconcile[0].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"
}

# The sweep republishes notifications to the notification topic.
resource "google_pubsub_topic_iam_member" "service_republishes_notifications" {
  count   = local.reconcile ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.notifications.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.service.email}"
}
