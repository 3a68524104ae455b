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
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  # How long to wait after enabling APIs and after granting roles: both are eventually
  # consistent, and the first calls that need them fail for a minute or so (Google's own
  # Cloud Functions gen2 example waits 60 s).
  propagation_wait = "60s"
}

resource "google_project_service" "services" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Everything that calls an API enabled above depends on this wait, not on the services
# themselves: a freshly enabled API answers "has not been used in project ... or it is disabled"
# for a while. A new API in the list waits again.
resource "time_sleep" "apis" {
  create_duration = local.propagation_wait

  triggers = {
    services = join(",", sort(tolist(local.services)))
  }

  depends_on = [google_project_service.services]
}

data "google_project" "this" {
  project_id = var.project_id

  depends_on = [time_sleep.apis]
}

# The identity the function runs as. It has no project roles: only secretAccessor on its own
# secrets (secrets.tf). Logs written to stdout/stderr reach Cloud Logging without any role.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-run"
  display_name = "${var.name_prefix} function runtime"
  description  = "Runs the ${var.name_prefix} function; reads the registry credentials in Secret Manager."

  depends_on = [time_sleep.apis]
}

# The identity Cloud Scheduler signs its OIDC token with; its only right is run.invoker on the
# function's Cloud Run service (function.tf).
resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-invoker"
  display_name = "${var.name_prefix} scheduler invoker"
  description  = "Identity of the Cloud Scheduler job that calls the ${var.name_prefix} function."

  depends_on = [time_sleep.apis]
}
