locals {
  # One budget for a scheduled run. Cloud Scheduler waits at most 30 minutes for an HTTP target,
  # so the function's timeout and the job's attempt_deadline are both this value, and the sync
  # stops starting new copies a margin before it (the rest is reported as deferred; the next run
  # continues, the sync is idempotent).
  run_deadline_seconds  = 1800
  sync_margin_seconds   = 300
  sync_deadline_seconds = local.run_deadline_seconds - local.sync_margin_seconds

  services = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  # Roles of the build service account, as documented for a user-specified Cloud Build service
  # account of a function: build logs, the built image, and reading the uploaded source.
  build_roles = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectAdmin",
  ])
}

resource "google_project_service" "services" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The identity the function runs as. It has no project roles: only secretAccessor on its own
# secrets (secrets.tf). Logs written to stdout/stderr reach Cloud Logging without any role.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-run"
  display_name = "${var.name_prefix} function runtime"
  description  = "Runs the ${var.name_prefix} function; reads the registry credentials in Secret Manager."

  depends_on = [google_project_service.services]
}

# The identity Cloud Scheduler signs its OIDC token with; its only right is run.invoker on the
# function's Cloud Run service (function.tf).
resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-invoker"
  display_name = "${var.name_prefix} scheduler invoker"
  description  = "Identity of the Cloud Scheduler job that calls the ${var.name_prefix} function."

  depends_on = [google_project_service.services]
}

# The identity Cloud Build uses to build the function. Since July 2024, new projects no longer give
# the default build account enough rights to build functions, so the build gets its own account.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "${var.name_prefix} function build"
  description  = "Builds the ${var.name_prefix} function's container image with Cloud Build."

  depends_on = [google_project_service.services]
}

resource "google_project_iam_member" "build" {
  for_each = local.build_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}
