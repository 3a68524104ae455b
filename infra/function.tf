resource "google_cloudfunctions2_function" "sync" {
  # checkov:skip=CKV_GCP_124: people on invoker_members must be able to curl the function from their own machines, which internal-only ingress blocks; access is still guarded by IAM (an identity token with roles/run.invoker on the service), and no public principal is ever granted.
  project     = var.project_id
  location    = var.region
  name        = var.name_prefix
  description = "Mirrors the container images listed in ${local.config_file_name}."

  build_config {
    runtime         = "python312"
    entry_point     = "sync_images"
    service_account = google_service_account.build.id
    # Our repository with its cleanup policy (build.tf), not the default gcf-artifacts.
    docker_repository = google_artifact_registry_repository.builds.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email

    # One run at a time: a second request while a run is busy waits or fails instead of racing
    # it over the same tags. With fan-out, one instance per running task (each its own image)
    # plus the dispatching call (tasks.tf); still one request per instance.
    min_instance_count               = 0
    max_instance_count               = local.function_max_instances
    max_instance_request_concurrency = 1

    # The function's disk is RAM and blobs are streamed, so 512 MiB is plenty; a whole vCPU
    # (instead of the 1/3 that 512 MiB gets by default) keeps digest checks and TLS off the
    # critical path.
    available_memory = "512Mi"
    available_cpu    = "1"
    timeout_seconds  = local.run_deadline_seconds

    # Reachable from the internet so that people on the invoker list can curl it; every request
    # still needs an identity token with roles/run.invoker on the service (function.tf).
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    # Never secret values here: credentials are read from Secret Manager at run time.
    environment_variables = {
      GOOGLE_CLOUD_PROJECT  = var.project_id
      IMAGE_SYNC_CONFIG     = local.config_file_name
      SYNC_DEADLINE_SECONDS = tostring(local.sync_deadline_seconds)
      # Fan-out (tasks.tf): empty when it is off.
      FANOUT_QUEUE           = local.fanout_queue
      FANOUT_URL             = local.fanout_url
      FANOUT_SERVICE_ACCOUNT = local.fanout_service_account
    }
  }

  # The build account's grants must have propagated before the build starts (build.tf).
  depends_on = [time_sleep.build_grants]
}

# Gen2 functions are Cloud Run services of the same name, and invoking one is Cloud Run's
# run.invoker on that service (run.invoker through the cloudfunctions2 IAM resources is rejected).
resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = google_cloudfunctions2_function.sync.project
  location = google_cloudfunctions2_function.sync.location
  name     = google_cloudfunctions2_function.sync.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

resource "google_cloud_run_v2_service_iam_member" "human_invokers" {
  for_each = toset(var.invoker_members)

  project  = google_cloudfunctions2_function.sync.project
  location = google_cloudfunctions2_function.sync.location
  name     = google_cloudfunctions2_function.sync.name
  role     = "roles/run.invoker"
  member   = each.value
}
