variable "project_id" {
  type        = string
  description = "Project to deploy into."
}

variable "region" {
  type        = string
  default     = "us-central1"
  description = "Region of the Cloud Run service."
}

variable "image" {
  type        = string
  description = "The pushed bq-ingest image."
}

variable "bucket" {
  type        = string
  description = "The bucket that receives the batches."
}

variable "destination_datasets" {
  type        = list(string)
  default     = []
  description = "Datasets bq-ingest loads into."
}

variable "ordered_table_prefixes" {
  type        = list(string)
  default     = []
  description = "Prefixes (\"dataset/table/\") of ordered tables."
}
