variable "project_id" {
  description = "Google Cloud project that holds the function, its secrets and the scheduler job."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 characters: lowercase letters, digits, hyphens), not a project name or number."
  }
}

variable "region" {
  description = "Region of the function, its source bucket and the Cloud Scheduler job."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Name of the function and prefix of every other resource name (service accounts, bucket, scheduler job)."
  type        = string
  default     = "image-sync"

  validation {
    # Service account ids are 6-30 characters; the longest suffix used is "-invoker" (8).
    condition     = can(regex("^[a-z][a-z0-9-]{2,19}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 4-21 characters: lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "invoker_members" {
  description = "Principals allowed to call the function by hand (curl with an identity token), for example [\"user:alice@example.com\", \"group:oncall@example.com\"]. The scheduler's own service account is always allowed."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for member in var.invoker_members :
      can(regex("^(user|group|serviceAccount|domain):[^\\s]+$", member))
    ])
    error_message = "Each invoker_members entry must be one IAM principal of the form user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:DOMAIN; public principals are not accepted."
  }
}

variable "scheduler_retry_count" {
  description = "How many times Cloud Scheduler retries a run that answered non-2xx or timed out (0-5)."
  type        = number
  default     = 2

  validation {
    condition     = var.scheduler_retry_count >= 0 && var.scheduler_retry_count <= 5 && floor(var.scheduler_retry_count) == var.scheduler_retry_count
    error_message = "scheduler_retry_count must be a whole number from 0 to 5 (the Cloud Scheduler limit)."
  }
}

variable "alerting_enabled" {
  description = "Whether the alert policies notify (a failed run, no run for 26 h, runs partial for 3 days). On by default; the log-based metric is kept either way."
  type        = bool
  default     = true
}

variable "alert_emails" {
  description = "E-mail addresses that receive the alerts; each becomes an e-mail notification channel. At least one address or one alert_notification_channels entry is needed while alerting_enabled is true."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for address in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", address))
    ])
    error_message = "Each alert_emails entry must be one e-mail address, such as oncall@example.com."
  }
}

variable "alert_notification_channels" {
  description = "Existing Cloud Monitoring notification channels (ids of the form projects/PROJECT/notificationChannels/ID, e.g. a PagerDuty or Slack channel) that receive the alerts too."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for channel in var.alert_notification_channels :
      can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))
    ])
    error_message = "Each alert_notification_channels entry must be a channel id: projects/PROJECT/notificationChannels/ID."
  }
}

variable "runbook_url" {
  description = "Where the alerts' runbook can be read, e.g. the URL of infra/README.md#runbook in your repository host; named in every alert's documentation. Empty: the alerts name the file."
  type        = string
  default     = ""
}
