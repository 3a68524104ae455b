"""The run report (DESIGN.md "Report"): frozen pydantic models, their JSON, status and exit codes.

Owns the shape of the JSON that the CLI (`--json`) and the HTTP function return, and the rules
that turn per-tag outcomes into a summary and a top-level status. Knows nothing of registries,
configs or how the tags were processed. Field order here is the key order of the JSON; names
are a contract (more fields may be added, none renamed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    field_validator,
)

from sync.errors import ImageSyncError, RateLimit

__all__ = [
    "Command",
    "ErrorInfo",
    "ImageReport",
    "RateLimit",
    "ReferrerReport",
    "Report",
    "Status",
    "Summary",
    "TagAction",
    "TagReport",
    "TagState",
    "build_report",
    "exit_code",
    "overall_status",
    "summarize",
]

#: What comparing a tag found; None in a TagReport when it was never compared.
TagState = Literal["up_to_date", "outdated", "missing", "upstream_missing"]
#: What the run did with a tag.
TagAction = Literal["up_to_date", "copied", "would_copy", "failed", "upstream_missing", "deferred"]
Status = Literal["ok", "partial", "failed"]
#: The command whose rules decide the status: a sync run, or the read-only `status` command.
Command = Literal["sync", "status"]

# Strict types (no "10" for 10, no "yes" for True), immutable, and a misspelt field is an error
# instead of being dropped silently.
_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)


class ErrorInfo(BaseModel):
    """Why a tag failed: a short machine code (`MANIFEST_UNKNOWN`, `DEADLINE`, ...), a message."""

    model_config = _MODEL_CONFIG

    code: str
    message: str

    @classmethod
    def from_error(cls, error: ImageSyncError) -> ErrorInfo:
        """The error's own code and message (already redacted by the error classes)."""
        return cls(code=error.code, message=error.message)


class ReferrerReport(BaseModel):
    """A tag's referrers (signatures, attestations, SBOMs): how many were copied, would be
    copied (dry run, `status`), were on the target already, or failed."""

    model_config = _MODEL_CONFIG

    copied: NonNegativeInt = 0
    would_copy: NonNegativeInt = 0
    present: NonNegativeInt = 0
    failed: NonNegativeInt = 0


class TagReport(BaseModel):
    """One tag of one image: what the comparison found (`state`) and what was done (`action`).

    `target_digest` is what the target holds at the end of the run. `bytes_copied` counts blob
    bytes sent to the target; `blobs_copied` the blobs sent, `blobs_skipped` those already there
    or mounted.
    """

    model_config = _MODEL_CONFIG

    tag: str
    state: TagState | None
    action: TagAction
    discovered: bool = False
    upstream_digest: str | None = None
    target_digest: str | None = None
    bytes_copied: NonNegativeInt = 0
    blobs_copied: NonNegativeInt = 0
    blobs_skipped: NonNegativeInt = 0
    referrers: ReferrerReport = Field(default_factory=ReferrerReport)
    error: ErrorInfo | None = None


class ImageReport(BaseModel):
    """One configured image (by its config name) and the reports of its tags, in run order."""

    model_config = _MODEL_CONFIG

    name: str
    upstream: str
    target: str
    # A list is accepted and stored as a tuple, so the model stays immutable.
    tags: Annotated[tuple[TagReport, ...], Field(strict=False)] = ()
    #: Why discovery found nothing this run (listing the upstream tags failed), or None. An
    #: addition to DESIGN.md's report; it does not change the status rules.
    discovery_error: ErrorInfo | None = None


class Summary(BaseModel):
    """Counts over every tag entry of the report. See `summarize` for what each one counts."""

    model_config = _MODEL_CONFIG

    tags: NonNegativeInt
    up_to_date: NonNegativeInt
    copied: NonNegativeInt
    failed: NonNegativeInt
    deferred: NonNegativeInt
    discovered: NonNegativeInt
    bytes_copied: NonNegativeInt
    referrers_copied: NonNegativeInt = 0
    referrers_failed: NonNegativeInt = 0


def _rate_limit(value: object) -> object:
    """The report's JSON read back: its `rate_limit` object as the `RateLimit` value."""
    if isinstance(value, dict):
        fields = {f.name for f in dataclasses.fields(RateLimit)}
        if set(value) != fields:
            raise ValueError(f"expected the keys {', '.join(sorted(fields))}")
        if not (isinstance(value["registry"], str) and _count(value["remaining"], value["limit"])):
            raise ValueError("expected a registry name and two counts")
        return RateLimit(**value)
    return value


def _count(*values: object) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


class Report(BaseModel):
    """The outcome of one run, serialised exactly as DESIGN.md's "Report" section shows."""

    model_config = _MODEL_CONFIG

    status: Status
    dry_run: bool
    #: When the run started: ISO 8601 in UTC, e.g. "2026-11-27T02:00:00Z".
    started_at: str
    duration_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    summary: Summary
    images: Annotated[tuple[ImageReport, ...], Field(strict=False)] = ()
    #: Whether running again may fix a failure: the status is `failed` and at least one failure
    #: is temporary (unreachable, timeout, 5xx, deadline). The HTTP answer is 500 only then.
    retryable: bool = False
    #: The tightest upstream pull allowance announced in the run (`RateLimit`, from the
    #: registry layer: registry, remaining, limit).
    rate_limit: Annotated[RateLimit | None, BeforeValidator(_rate_limit)] = None

    @field_validator("started_at")
    @classmethod
    def _utc_iso8601(cls, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date and time: {value!r}") from None
        if moment.utcoffset() != timedelta(0):
            raise ValueError(f"not in UTC (needs Z or +00:00): {value!r}")
        return value

    def to_json(self, *, indent: int | None = None) -> str:
        """The report as JSON, keys in DESIGN.md's order; one line unless `indent` is given."""
        return self.model_dump_json(indent=indent)

    def exit_code(self, command: Command = "sync") -> int:
        """The CLI exit code for this report (see `exit_code`). For `status`: 0 when all is up
        to date, 4 when every tag was compared and some would be copied (the image or only its
        referrers), 1 when some tag could not be compared."""
        if command == "status" and self.status != "ok":
            compared = all(
                tag.state in ("up_to_date", "outdated", "missing")
                and tag.action in ("up_to_date", "would_copy")
                for tag in self.all_tags()
            )
            return 4 if compared else 1
        return exit_code(self.status, command)

    def all_tags(self) -> Iterable[TagReport]:
        """Every tag entry, image by image."""
        for image in self.images:
            yield from image.tags


def summarize(images: Iterable[ImageReport]) -> Summary:
    """The counts over every tag entry of `images`.

    - `tags`: all entries (configured and discovered);
    - `up_to_date`, `copied`, `deferred`: entries with that action. A dry run's `would_copy`
      is NOT counted as copied (nothing was written); it is the remainder, `tags - up_to_date -
      copied - failed - deferred`;
    - `failed`: entries whose action is `failed` OR `upstream_missing`, i.e. exactly the entries
      that make a sync `failed`, so a reader sees the reason for the status in the summary
      (per tag, the action tells the two apart);
    - `discovered`: entries with `discovered: true`, whatever their action;
    - `bytes_copied`: the sum of the entries' `bytes_copied`;
    - `referrers_copied`, `referrers_failed`: the sums of the entries' referrer counts. A tag
      whose image was up to date but whose referrers were copied has action `copied` and is
      counted in `copied`.
    """
    entries = [tag for image in images for tag in image.tags]
    actions = [tag.action for tag in entries]
    return Summary(
        tags=len(entries),
        up_to_date=actions.count("up_to_date"),
        copied=actions.count("copied"),
        failed=actions.count("failed") + actions.count("upstream_missing"),
        deferred=actions.count("deferred"),
        discovered=sum(1 for tag in entries if tag.discovered),
        bytes_copied=sum(tag.bytes_copied for tag in entries),
        referrers_copied=sum(tag.referrers.copied for tag in entries),
        referrers_failed=sum(tag.referrers.failed for tag in entries),
    )


def overall_status(images: Iterable[ImageReport], command: Command = "sync") -> Status:
    """The top-level status by DESIGN.md's rules.

    sync: `failed` when any tag's action is `failed` or `upstream_missing`; else `partial` when
    any is `deferred` or any image has a `discovery_error`; else `ok`. status (the command):
    `ok` when every tag's state and action are `up_to_date` (a tag whose referrers would be
    copied is not), else `failed` (a tag never compared has state None, so it fails too).
    With no tags at all, both are `ok`.
    """
    images = list(images)
    entries = [tag for image in images for tag in image.tags]
    if command == "status":
        settled = all(tag.state == tag.action == "up_to_date" for tag in entries)
        return "ok" if settled else "failed"
    actions = {tag.action for tag in entries}
    if actions & {"failed", "upstream_missing"}:
        return "failed"
    if "deferred" in actions or any(image.discovery_error for image in images):
        return "partial"
    return "ok"


def exit_code(status: Status, command: Command = "sync") -> int:
    """The CLI exit code: sync 0 for ok, 3 for partial, 1 for failed; status 0 for ok, else 1."""
    if status == "ok":
        return 0
    if command == "sync" and status == "partial":
        return 3
    return 1


def _iso8601_utc(moment: datetime) -> str:
    """`moment` in UTC to the second, e.g. "2026-11-27T02:00:00Z"; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("started_at must be timezone-aware (use datetime.now(UTC))")
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def build_report(
    images: Sequence[ImageReport],
    *,
    dry_run: bool,
    started_at: datetime,
    duration_s: float,
    rate_limit: RateLimit | None,
    command: Command = "sync",
    temporary_failure: bool = False,
) -> Report:
    """The report of a run: summary and status computed from `images` by the rules above.
    `temporary_failure` says whether some failure of the run is temporary: the report is
    `retryable` when it is and the status is `failed`.

    `started_at` must be timezone-aware; it is written in UTC, truncated to the second.
    `duration_s` is rounded to milliseconds.
    """
    status = overall_status(images, command)
    return Report(
        status=status,
        dry_run=dry_run,
        started_at=_iso8601_utc(started_at),
        duration_s=round(float(duration_s), 3),
        summary=summarize(images),
        images=tuple(images),
        retryable=status == "failed" and temporary_failure and command == "sync",
        rate_limit=rate_limit,
    )
