resource "google_cloud_scheduler_job" "sync" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-schedule"
  description = "Runs the ${var.name_prefix} function at sync_schedule from ${local.config_file_name}."

  schedule  = local.sync_schedule
  time_zone = "Etc/UTC"

  # The same budget as the function's timeout_seconds (main.tf): Cloud Scheduler's maximum for
  # HTTP targets is 30 minutes.
  attempt_deadline = "${local.run_deadline_seconds}s"

  # A run answers 5xx only when a retry can help (see the function's contract).
  retry_config {
    retry_count          = var.scheduler_retry_count
    min_backoff_duration = "120s"
    max_backoff_duration = "900s"
    max_doublings        = 2
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.sync.service_config[0].uri
    body        = base64encode(jsonencode({}))
    headers = {
      "Content-Type" = "application/json"
    }

    # Cloud Run checks this token (audience = the service URL) before the function runs.
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.sync.service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.scheduler_invoker,
    google_secret_manager_secret_iam_member.runtime_access,
  ]
}
