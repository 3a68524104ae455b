# Alerting. Every request the function answers writes exactly one JSON log line with
# event "summary", status, trigger, images (and image when there is one) and the counts
# (sync/service.py; DESIGN.md "Logs"). One log-based metric counts those lines, and three
# policies watch the counts: a failed run, no run at all for 26 h, runs partial for 3 days.
# tests/test_infra.py renders a summary line from a real run and checks it against the fields
# named here.

locals {
  alert_channels = concat(
    [for channel in google_monitoring_notification_channel.email : channel.id],
    var.alert_notification_channels,
  )

  # The metric's name as PromQL spells it: "logging.googleapis.com/user/NAME" with the first
  # "/" as ":" and every other character outside [A-Za-z0-9_] as "_". Its points come from one
  # monitored resource type, cloud_run_revision, which PromQL wants named for log-based metrics.
  runs_promql = "logging_googleapis_com:user_${replace(google_logging_metric.runs.name, "/[^A-Za-z0-9_]/", "_")}"
  runs_of     = "monitored_resource=\"cloud_run_revision\""

  runbook = var.runbook_url != "" ? var.runbook_url : "infra/README.md, section \"Runbook\", in the image-sync repository"

  # What every alert's documentation says about where to look and how to run again.
  runbook_common = <<-EOT
    **Logs** (Logs Explorer, project `${var.project_id}`): the run's summary line

        resource.type="cloud_run_revision"
        resource.labels.service_name="${var.name_prefix}"
        jsonPayload.event="summary"

    and all lines of that run: add `jsonPayload.run_id="RUN_ID"` (from the summary line) instead
    of the event. Per-tag errors carry a `code`; the codes are explained in the repository's
    README.md, section "Troubleshooting".

    **Run again** once the cause is fixed (runs are idempotent):

        gcloud scheduler jobs run ${var.name_prefix}-schedule --location=${var.region} --project=${var.project_id}

    or by hand, for one image: `curl -sS -X POST "$(gcloud functions describe ${var.name_prefix} --region=${var.region} --project=${var.project_id} --format='value(serviceConfig.uri)')" -H "Authorization: Bearer $(gcloud auth print-identity-token)" -H 'Content-Type: application/json' -d '{"images": ["NAME"]}'`

    **Runbook**: ${local.runbook}.
  EOT
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  project      = var.project_id
  display_name = "${var.name_prefix} alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [time_sleep.apis]
}

# One point per summary line, labelled with the line's status, trigger and image. Counts only
# from its creation on: a run before the first apply of this metric is not counted.
resource "google_logging_metric" "runs" {
  project     = var.project_id
  name        = "${var.name_prefix}-runs"
  description = "Requests answered by the ${var.name_prefix} function, one per summary log line, by status, trigger and image."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloudfunctions2_function.sync.name}\"",
    "jsonPayload.event=\"summary\"",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name_prefix} runs"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "ok, partial, failed, or rejected (a bad request by hand)."
    }
    labels {
      key         = "trigger"
      value_type  = "STRING"
      description = "scheduler, task or manual."
    }
    labels {
      key         = "kind"
      value_type  = "STRING"
      description = "run (a sync, whole or of one image) or dispatch (a fan-out creating its tasks)."
    }
    labels {
      key         = "image"
      value_type  = "STRING"
      description = "The image, when the run covered exactly one; empty otherwise."
    }
  }

  label_extractors = {
    status  = "EXTRACT(jsonPayload.status)"
    trigger = "EXTRACT(jsonPayload.trigger)"
    kind    = "EXTRACT(jsonPayload.kind)"
    image   = "EXTRACT(jsonPayload.image)"
  }

  depends_on = [time_sleep.apis]
}

# A run that ended failed, whatever started it: the report has a failed or upstream_missing tag,
# or the run ended before it could report (invalid configuration, internal error, timeout).
resource "google_monitoring_alert_policy" "run_failed" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: a run failed"
  combiner              = "OR"
  severity              = "ERROR"
  enabled               = var.alerting_enabled
  notification_channels = local.alert_channels

  conditions {
    display_name = "summary line with status failed"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.runs.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.status=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.trigger", "metric.label.image"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    # No new summary line for a day closes the incident; the next failed run opens a new one.
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: a mirror run failed"
    content   = <<-EOT
      A run of **${var.name_prefix}** ended `failed`: some tag could not be mirrored (its
      `error.code` says why), a configured tag is gone upstream (`upstream_missing`), or the
      run stopped before reporting (the summary line's `code`: `CONFIG_INVALID`, `INTERNAL`,
      `DEADLINE`, ...). The other tags were still mirrored. Cloud Scheduler has retried already
      when a retry could help.

      ${local.runbook_common}
    EOT
  }

  lifecycle {
    precondition {
      condition     = !var.alerting_enabled || length(local.alert_channels) > 0
      error_message = "Alerting is on but reaches nobody: set alert_emails (or alert_notification_channels), or set alerting_enabled = false."
    }
  }
}

# No run summary at all for 26 h (a request refused by hand, status "rejected", is not a run,
# nor is a fan-out's dispatch, kind "dispatch": its tasks may never reach the function):
# the scheduler job is paused or broken, the function fails before it can log (a broken
# deployment, a crash at import), or it was never deployed right.
#
# Why PromQL: a metric-absence condition (condition_absent) looks back at most 23.5 h, less than
# the 24 h between two daily runs, so it would fire every day shortly before the next run. A
# PromQL condition can look back 26 h: the daily period plus two hours of slack for a slow or
# retried run. It also fires right after the first deployment until the first run is logged;
# the README's first-apply checklist runs the job once for that reason.
resource "google_monitoring_alert_policy" "no_run" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: no run for 26 h"
  combiner              = "OR"
  severity              = "ERROR"
  enabled               = var.alerting_enabled
  notification_channels = local.alert_channels

  conditions {
    display_name = "no summary line in 26 h"
    condition_prometheus_query_language {
      query               = "absent_over_time(${local.runs_promql}{${local.runs_of},kind=\"run\",status!=\"rejected\"}[26h])"
      duration            = "0s"
      evaluation_interval = "300s"
      # The metric has no data until the first run is logged; create the policy anyway.
      disable_metric_validation = true
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: no run for 26 hours"
    content   = <<-EOT
      No run of **${var.name_prefix}** has been logged for 26 hours, although it is scheduled
      every day. Check, in this order: the scheduler job
      (`gcloud scheduler jobs describe ${var.name_prefix}-schedule --location=${var.region} --project=${var.project_id}`:
      state `ENABLED`? `status` of the last attempt?), its attempts in the logs
      (`resource.type="cloud_scheduler_job"`), and the function's own logs for a crash or a
      failed deployment (`resource.type="cloud_run_revision"` with `severity>=ERROR`).

      ${local.runbook_common}
    EOT
  }
}

# Runs that stay partial (tags deferred: the time budget or Docker Hub's pull allowance ran out,
# or new versions could not be discovered) mean the mirror falls behind. Fires when, over 3 days,
# at least 3 runs ended partial and none ended ok, per image when runs are per image (whole runs
# have an empty image label and count together).
resource "google_monitoring_alert_policy" "stuck_partial" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: runs partial for 3 days"
  combiner              = "OR"
  severity              = "WARNING"
  enabled               = var.alerting_enabled
  notification_channels = local.alert_channels

  conditions {
    display_name = "3 days of partial runs and no ok run"
    condition_prometheus_query_language {
      query                     = <<-EOT
        sum by (image) (increase(${local.runs_promql}{${local.runs_of},kind="run",status="partial"}[3d])) >= 3
        unless on (image)
        sum by (image) (increase(${local.runs_promql}{${local.runs_of},kind="run",status="ok"}[3d])) > 0
      EOT
      duration                  = "0s"
      evaluation_interval       = "3600s"
      disable_metric_validation = true
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: the mirror is falling behind"
    content   = <<-EOT
      Runs of **${var.name_prefix}** have ended `partial` for 3 days without an `ok` run: some
      tags are `deferred` every time (`DEADLINE`: the run's time budget is too small for the
      backlog; `PULL_BUDGET`/429: Docker Hub's pull allowance is spent) or an image's
      `discovery_error` keeps new versions from being looked for. Nothing is broken yet, but
      the mirror is behind. Catch up by hand with `image-sync sync` from a workstation, give
      Docker Hub credentials under `registries."docker.io"`, or narrow `max_tags_to_check`.

      ${local.runbook_common}
    EOT
  }
}
