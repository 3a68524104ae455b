# How the function is built: Cloud Functions copies the uploaded zip into its own source bucket,
# then Cloud Build (as the account below) builds an image and pushes it to the repository below.

locals {
  # Cloud Functions (2nd gen) copies the source zip from our bucket into this bucket of its own
  # (gcf-v2-sources-PROJECT_NUMBER-REGION, created by the service on the first deployment in the
  # region) and the build reads it from there, not from our bucket.
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"

  # How many images of the function the repository keeps (the newest, which is the one serving,
  # and a few before it to roll back to); older ones are deleted after a day.
  build_images_kept = 5
}

# The identity Cloud Build uses to build the function. Since July 2024, new projects no longer give
# the default build account enough rights to build functions, so the build gets its own account,
# with only what a 2nd-gen build needs (below).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "${var.name_prefix} function build"
  description  = "Builds the ${var.name_prefix} function's container image with Cloud Build."

  depends_on = [time_sleep.apis]
}

# Build logs go to the project's Cloud Logging.
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Reading the source: objectViewer on the objects of Google's gcf-v2-sources bucket only, never
# on our own buckets (a project-wide storage role would let a build rewrite any object, this
# deployment's Terraform state included). A grant on the bucket itself cannot be made before
# the bucket exists, and Cloud Functions creates it only while creating the function, which is
# exactly when the build needs the grant; so the grant is at the project, with an IAM condition
# that holds only for objects in that one bucket. Without it the first build fails with
# "Access to bucket gcf-v2-sources-... denied. You must grant Storage Object Viewer permission".
resource "google_project_iam_member" "build_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources objects only"
    description = "Objects of the bucket Cloud Functions copies the ${var.name_prefix} source into."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}/objects/\")"
  }
}

# The function's images, in a repository this configuration owns (instead of the gcf-artifacts
# repository Cloud Functions would create and never clean up).
resource "google_artifact_registry_repository" "builds" {
  # checkov:skip=CKV_GCP_84: the images hold only the public source of this repository; Google-managed encryption is enough, and a customer-managed key would add a KMS key ring this deployment otherwise has no use for.
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-builds"
  format        = "DOCKER"
  description   = "Container images of the ${var.name_prefix} function, built by Cloud Build."

  cleanup_policy_dry_run = false

  # KEEP wins over DELETE: the newest images stay whatever their age.
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = local.build_images_kept
    }
  }

  cleanup_policies {
    id     = "delete-older"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "86400s"
    }
  }

  depends_on = [time_sleep.apis]
}

# The build pushes to this repository only.
resource "google_artifact_registry_repository_iam_member" "build_push" {
  project    = google_artifact_registry_repository.builds.project
  location   = google_artifact_registry_repository.builds.location
  repository = google_artifact_registry_repository.builds.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# IAM grants take a minute or so to reach Cloud Build; a build started at once fails with a
# permission error on the first apply. A changed grant waits again.
resource "time_sleep" "build_grants" {
  create_duration = local.propagation_wait

  triggers = {
    logs    = google_project_iam_member.build_logs.id
    sources = google_project_iam_member.build_sources.id
    push    = google_artifact_registry_repository_iam_member.build_push.id
  }
}
