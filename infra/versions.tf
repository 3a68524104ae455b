terraform {
  # Only formatted and parsed offline with Terraform 1.11; nothing here needs more than 1.5.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.x and 7.x both have build_config.service_account on google_cloudfunctions2_function
      # and the v2 Cloud Run IAM resources used here.
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
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
