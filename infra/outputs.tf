output "function_uri" {
  description = "HTTPS endpoint of the function (its Cloud Run service URL)."
  value       = google_cloudfunctions2_function.sync.service_config[0].uri
}

output "curl_command" {
  description = "Calls the function by hand as the gcloud user (who must be in invoker_members). Add \"dry_run\": true to the body to write nothing."
  value       = "curl -sS -X POST '${google_cloudfunctions2_function.sync.service_config[0].uri}' -H \"Authorization: Bearer $(gcloud auth print-identity-token)\" -H 'Content-Type: application/json' -d '{}'"
}

output "scheduler_job_name" {
  description = "Name of the Cloud Scheduler job."
  value       = google_cloud_scheduler_job.sync.name
}

output "scheduler_run_command" {
  description = "Starts the scheduled run now."
  value       = "gcloud scheduler jobs run ${google_cloud_scheduler_job.sync.name} --location=${var.region} --project=${var.project_id}"
}

output "secret_version_commands" {
  description = "Per secret, the command that adds its value read from stdin (pipe it in without a trailing newline, e.g. printf '%s' \"$VALUE\" | ...)."
  value = {
    for id, secret in google_secret_manager_secret.registry :
    id => "gcloud secrets versions add ${secret.secret_id} --project=${var.project_id} --data-file=-"
  }
}

output "logs_command" {
  description = "Reads the function's recent logs."
  value       = "gcloud logging read 'resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.sync.name}\"' --project=${var.project_id} --freshness=1d --limit=100"
}

output "runtime_service_account" {
  description = "Email of the account the function runs as."
  value       = google_service_account.runtime.email
}

output "invoker_service_account" {
  description = "Email of the account Cloud Scheduler calls the function as."
  value       = google_service_account.invoker.email
}

output "source_object" {
  description = "The uploaded source zip (its name carries the zip's MD5)."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
}

output "run_metric" {
  description = "The log-based metric that counts the function's summary lines (labels: status, trigger, image)."
  value       = "logging.googleapis.com/user/${google_logging_metric.runs.name}"
}

output "alert_policies" {
  description = "The alert policies, by what they watch."
  value = {
    run_failed    = google_monitoring_alert_policy.run_failed.name
    no_run        = google_monitoring_alert_policy.no_run.name
    stuck_partial = google_monitoring_alert_policy.stuck_partial.name
  }
}

output "notification_channels" {
  description = "The channels every alert notifies: one per alert_emails address, then alert_notification_channels."
  value       = local.alert_channels
}

output "build_repository" {
  description = "The Artifact Registry repository the function's images are built into."
  value       = google_artifact_registry_repository.builds.id
}
