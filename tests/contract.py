"""DESIGN.md's report keys, written out by hand: the tests compare output with this copy of the
contract, never with the code's own models."""

REPORT_KEYS = {
    "status",
    "dry_run",
    "started_at",
    "duration_s",
    "summary",
    "images",
    "retryable",
    "rate_limit",
}
SUMMARY_KEYS = {"tags", "up_to_date", "copied", "failed", "deferred", "discovered", "bytes_copied"}
#: Summary fields this project added (issue 13: referrers).
ADDED_SUMMARY_KEYS = {"referrers_copied", "referrers_failed"}
IMAGE_KEYS = {"name", "upstream", "target", "tags"}
#: Fields this project added to the report (DESIGN.md: "More fields may be added").
ADDED_IMAGE_KEYS = {"discovery_error"}
TAG_KEYS = {
    "tag",
    "state",
    "action",
    "discovered",
    "upstream_digest",
    "target_digest",
    "bytes_copied",
    "blobs_copied",
    "blobs_skipped",
    "referrers",
    "error",
}
REFERRER_KEYS = {"copied", "would_copy", "present", "failed"}
