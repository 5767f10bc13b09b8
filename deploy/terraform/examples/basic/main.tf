# The whole pipeline for one bucket: `terraform init && terraform apply` here, with a
# terraform.tfvars made from terraform.tfvars.example. docs/deploy.md walks through it.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "bq_ingest" {
  source = "../.."

  project_id             = var.project_id
  region                 = var.region
  image                  = var.image
  bucket                 = var.bucket
  destination_datasets   = var.destination_datasets
  ordered_table_prefixes = var.ordered_table_prefixes

  # Any bq-ingest setting may follow, e.g.:
  # wait_for_job_seconds = 120
  # bq_location          = "EU"
}
