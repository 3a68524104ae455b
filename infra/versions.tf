terraform {
  # Only formatted and parsed offline with Terraform 1.11; nothing here needs more than 1.5.
  required_version = ">= 1.5.0"

  # State lives in a versioned GCS bucket named at init time (README, "State"):
  #   terraform init -backend-config="bucket=STATE_BUCKET" -backend-config="prefix=image-sync"
  # For local state instead, see the README (a backend_override.tf with backend "local").
  backend "gcs" {}

  required_providers {
    google = {
      source = "hashicorp/google"
      # One major version. deletion_protection on secrets needs 6.43; the offline schema check
      # (tests/test_infra_schema.py) checks every google_* block against 6.50.0, so that is the
      # floor.
      version = ">= 6.50.0, < 7.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.11, < 1.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app        = var.name_prefix
    managed-by = "terraform"
  }
}
