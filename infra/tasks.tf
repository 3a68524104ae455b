# Optional fan-out over Cloud Tasks: the scheduled call creates one task per image, and each task
# is its own one-image run of the function with its own 30-minute budget. Off by default; turn it
# on when one run no longer fits (README: "When to turn on fan-out").

variable "fanout_enabled" {
  description = "Run each image as its own Cloud Task (one invocation per image) instead of one run for all of them."
  type        = bool
  default     = false
}

variable "fanout_max_concurrent_dispatches" {
  description = "Tasks (images) running at once. null: 4 when the config has Docker Hub credentials, else 1 (see tasks.tf)."
  type        = number
  default     = null

  validation {
    condition     = var.fanout_max_concurrent_dispatches == null ? true : (var.fanout_max_concurrent_dispatches >= 1 && var.fanout_max_concurrent_dispatches <= 100 && floor(var.fanout_max_concurrent_dispatches) == var.fanout_max_concurrent_dispatches)
    error_message = "fanout_max_concurrent_dispatches must be a whole number from 1 to 100 (each running task is one function instance)."
  }
}

variable "fanout_max_dispatches_per_second" {
  description = "Tasks started per second at most."
  type        = number
  default     = 1

  validation {
    condition     = var.fanout_max_dispatches_per_second > 0 && var.fanout_max_dispatches_per_second <= 500
    error_message = "fanout_max_dispatches_per_second must be more than 0 and at most 500 (the Cloud Tasks limit)."
  }
}

variable "fanout_max_attempts" {
  description = "Deliveries of one task at most, the first included; a task is retried only when its run answered 5xx (a failure a retry can fix)."
  type        = number
  default     = 3

  validation {
    condition     = var.fanout_max_attempts >= 1 && var.fanout_max_attempts <= 100 && floor(var.fanout_max_attempts) == var.fanout_max_attempts
    error_message = "fanout_max_attempts must be a whole number from 1 to 100."
  }
}

variable "fanout_function_url" {
  description = "URL the tasks call (and their OIDC audience). Empty: https://REGION-PROJECT.cloudfunctions.net/NAME, the function's own cloudfunctions.net URL."
  type        = string
  default     = ""

  validation {
    condition     = var.fanout_function_url == "" || can(regex("^https://[^\\s/?#]+(/[^\\s?#]*)?$", var.fanout_function_url))
    error_message = "fanout_function_url must be empty or an https:// URL without query string."
  }
}

locals {
  # Docker Hub counts a pull per manifest GET (HEAD is free): a run where nothing changed costs
  # none, and copying one new multi-platform tag costs the index plus one GET per platform (the
  # sync reserves 4 pulls per copy). Allowances per hour, from Docker's documentation (2025;
  # they change, and the sync reads the ratelimit-* headers rather than trusting numbers):
  # anonymous 10 pulls per IPv4 address (Cloud Functions share egress addresses with other
  # tenants), authenticated Personal 100 per account.
  #
  # Each running task checks the remaining allowance and stops starting copies below its floor
  # (10), but tasks that run at once each see the same remaining count, so up to
  # concurrent tasks x tags in flight x 4 pulls can go out after the floor is reached; what does
  # not fit is refused with 429 and deferred to the next day, never half-written.
  #   authenticated: 4 tasks x 3 tags x 4 pulls = 48 <= 100 per hour, so the tasks started
  #                  together stay inside one hour's allowance;
  #   anonymous:     10 per hour is less than one task's worst case (3 x 4 = 12): only 1 task
  #                  at a time, whose one process counts its own reservations, keeps the
  #                  floor exact.
  # The dispatch rate (1 per second: 200 images are all started within about 3.5 minutes) does
  # not bound pulls; the concurrency does.
  docker_hub_hosts = ["docker.io", "index.docker.io", "registry-1.docker.io"]
  docker_hub_authenticated = anytrue([
    for host, settings in try(local.config.registries, {}) :
    contains(local.docker_hub_hosts, host) && can(settings.username) && can(settings.password)
  ])
  fanout_concurrency = coalesce(var.fanout_max_concurrent_dispatches, local.docker_hub_authenticated ? 4 : 1)

  # Terraform cannot give the function its own service_config URL (a self-reference), so the
  # tasks call its deterministic cloudfunctions.net URL. Cloud Run checks that an OIDC token's
  # audience is the URL called; the token of each task is minted for exactly this URL.
  fanout_function_url = var.fanout_function_url != "" ? var.fanout_function_url : "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}"

  # The function's FANOUT_* environment; empty values (fan-out off) mean no fan-out.
  fanout_queue           = var.fanout_enabled ? "projects/${var.project_id}/locations/${var.region}/queues/${google_cloud_tasks_queue.images[0].name}" : ""
  fanout_url             = var.fanout_enabled ? local.fanout_function_url : ""
  fanout_service_account = var.fanout_enabled ? google_service_account.invoker.email : ""

  # Instances the function may scale to: one per running task plus the dispatching call; each
  # instance still serves one request at a time (max_instance_request_concurrency = 1).
  function_max_instances = var.fanout_enabled ? local.fanout_concurrency + 1 : 1
}

resource "google_project_service" "cloudtasks" {
  count = var.fanout_enabled ? 1 : 0

  project            = var.project_id
  service            = "cloudtasks.googleapis.com"
  disable_on_destroy = false
}

resource "google_cloud_tasks_queue" "images" {
  count = var.fanout_enabled ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = "${var.name_prefix}-images"

  rate_limits {
    max_dispatches_per_second = var.fanout_max_dispatches_per_second
    max_concurrent_dispatches = local.fanout_concurrency
  }

  # A task is retried only when its run answered 5xx (some failure is temporary). The first
  # retry waits a minute, then 2 and 4, at most 10: a registry outage of a few minutes passes.
  retry_config {
    max_attempts       = var.fanout_max_attempts
    min_backoff        = "60s"
    max_backoff        = "600s"
    max_doublings      = 3
    max_retry_duration = "7200s"
  }

  # Every delivery and its outcome in Cloud Logging (resource.type="cloud_tasks_queue").
  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.cloudtasks]
}

# The function creates the tasks: enqueuer on this queue only, nothing project-wide.
resource "google_cloud_tasks_queue_iam_member" "runtime_enqueuer" {
  count = var.fanout_enabled ? 1 : 0

  project  = google_cloud_tasks_queue.images[0].project
  location = google_cloud_tasks_queue.images[0].location
  name     = google_cloud_tasks_queue.images[0].name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.runtime.email}"
}

# A task carries an OIDC token of the invoker account (which has run.invoker on the function);
# creating such a task needs iam.serviceAccountUser on that account, granted on it alone.
resource "google_service_account_iam_member" "runtime_uses_invoker" {
  count = var.fanout_enabled ? 1 : 0

  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.runtime.email}"
}

output "fanout_queue" {
  description = "The Cloud Tasks queue of the fan-out (null when fan-out is off)."
  value       = var.fanout_enabled ? local.fanout_queue : null
}

output "fanout_function_url" {
  description = "The URL the tasks call and their OIDC audience; compare with function_cloudfunctions_url."
  value       = var.fanout_enabled ? local.fanout_function_url : null
}

output "function_cloudfunctions_url" {
  description = "The function's own cloudfunctions.net URL as the API reports it."
  value       = google_cloudfunctions2_function.sync.url
}
