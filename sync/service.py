"""The HTTP function's logic without Flask: the request into RunOptions, one run, a JSON answer.

main.py hands over plain values (method, Content-Type, at most `MAX_BODY_BYTES + 1` body bytes,
the query pairs, two logging headers) as an `Incoming` and sends back the `Answer`'s status,
headers and JSON body. Everything else is here, at the same layer as the CLI: the method,
the request's fields (parsed and checked by `sync.request`), loading the config, running the
engine within the time budget, mapping the outcome to a status (500 for a `failed` report
that is `retryable`, so Cloud Scheduler retries; 200 otherwise), and JSON log lines for Cloud
Logging. Never imports Flask or the functions framework.

The run's log lines are written through `sync.logs` (Cloud Logging JSON on stdout, the run's
context on every line); request bodies and headers are never logged.

Every request, however it ends, writes exactly one summary line (`log_summary`): `event:
"summary"`, `status`, `trigger`, `images`, `image` (when the run covered exactly one), the
summary counts, and the error `code` when there was no report. infra/monitoring.tf counts these
lines by their fields and alerts on them: fields may be added, never renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sync.errors import (
    BAD_REQUEST,
    DEADLINE,
    INTERNAL,
    METHOD_NOT_ALLOWED,
    ConfigError,
    ImageSyncError,
    clip,
)
from sync.logs import install_logging, log_context, trace_fields

if TYPE_CHECKING:
    from sync.config import Config
    from sync.engine import Engine, ProgressFactory, RunOptions
    from sync.fanout import Dispatch, FanoutSettings
    from sync.report import Report
    from sync.request import BadRequest, SyncRequest

# The request model and the config (pydantic), the engine, the report and the HTTP stack are
# imported by the first request that needs them, not by `import main`: the instance starts
# serving sooner.

__all__ = [
    "ALLOWED_METHODS",
    "DEADLINE_ENV",
    "DEFAULT_DEADLINE_SECONDS",
    "MAX_BODY_BYTES",
    "SUMMARY_EVENT",
    "Answer",
    "Incoming",
    "RunTimeout",
    "Trigger",
    "deadline_seconds",
    "error_answer",
    "handle",
    "internal_error",
    "log_summary",
    "open_engine",
    "platform_timeout_needed",
    "run_once",
    "trigger_of",
]

DEADLINE_ENV = "SYNC_DEADLINE_SECONDS"
#: 25 minutes: Cloud Scheduler waits 30 at most; in-flight copies get the rest.
DEFAULT_DEADLINE_SECONDS = 1500.0
#: Past the engine's own hard stop (`hard_stop_after`), how long cancelling the work in flight
#: may take before the run is abandoned as a last resort.
LAST_RESORT_SECONDS = 30.0
#: What is left between the last resort and the platform's timeout, for answering.
ANSWER_MARGIN_SECONDS = 60.0
MAX_BODY_BYTES = 64 * 1024
ALLOWED_METHODS = ("GET", "POST")

log = logging.getLogger(__name__)

#: The `event` of the one summary line of each request; alerting counts these lines.
SUMMARY_EVENT = "summary"
#: Who asked for a run: Cloud Scheduler, Cloud Tasks (a fanned-out image), or anyone else.
Trigger = Literal["scheduler", "task", "manual"]

_JSON_HEADERS: Mapping[str, str] = {"Cache-Control": "no-store"}


# ---------------------------------------------------------------------------------------------
# What goes in and out


@dataclass(frozen=True, slots=True)
class Incoming:
    """One HTTP request as plain values. `body` holds at most `MAX_BODY_BYTES + 1` bytes (the
    adapter stops reading there); `content_length` is the header's value, if any."""

    method: str
    content_type: str | None = None
    body: bytes = b""
    content_length: int | None = None
    query: tuple[tuple[str, str], ...] = ()
    #: `X-CloudScheduler-JobName`: for log lines only, never for access decisions.
    scheduler_job: str | None = None
    #: `X-CloudTasks-QueueName`: for log lines only, never for access decisions.
    task_queue: str | None = None
    #: `X-Cloud-Trace-Context` or `traceparent`, to tie log lines to the request's trace.
    trace_header: str | None = None
    #: `X-CloudScheduler-ScheduleTime`: the same on every retry of one scheduled run; it names
    #: the tasks of a fan-out, so a retry creates none twice.
    schedule_time: str | None = None
    #: `X-CloudTasks-TaskName`: set when Cloud Tasks delivers a task (one image of a fan-out);
    #: such a request never fans out again.
    task_name: str | None = None
    #: `X-CloudTasks-TaskRetryCount`, for log lines.
    task_retry_count: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back: status, JSON text, extra headers."""

    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


class RunTimeout(Exception):
    """The run was still going `LAST_RESORT_SECONDS` after its hard stop and was abandoned."""


def error_answer(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **more: object,
) -> Answer:
    """`{"error": {"code": ..., "message": ..., **more}}` with `status`."""
    body = json.dumps({"error": {"code": code, "message": message, **more}})
    return Answer(status, body, {**_JSON_HEADERS, **(headers or {})})


def internal_error(run_id: str | None = None) -> Answer:
    """The answer to an unexpected exception: no exception text (it might hold anything)."""
    where = f" (run {run_id})" if run_id else ""
    return error_answer(500, INTERNAL, f"internal error{where}; the function's log has details")


# ---------------------------------------------------------------------------------------------
# Running


def deadline_seconds(env: Mapping[str, str]) -> float:
    """The time budget from `SYNC_DEADLINE_SECONDS` (default 1500); ConfigError when invalid."""
    text = env.get(DEADLINE_ENV)
    if text is None or not text.strip():
        return DEFAULT_DEADLINE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            [f"{DEADLINE_ENV}: expected a number of seconds > 0, got {clip(text, 40)!r}"],
            source="environment",
        )
    return value


def platform_timeout_needed(deadline: float) -> float:
    """The budget arithmetic: for `SYNC_DEADLINE_SECONDS` = `deadline`, the platform timeout
    (the function's `timeout_seconds`, Cloud Scheduler's `attempt_deadline`) the function
    needs to answer in time. Nothing new starts after `deadline`; everything in flight is
    cancelled at `hard_stop_after(deadline)`; should that ever not end the run, it is abandoned
    `LAST_RESORT_SECONDS` later; `ANSWER_MARGIN_SECONDS` remain for the answer. With the
    defaults: 1500 + 180 + 30 + 60 = 1770 <= 1800."""
    from sync.engine import hard_stop_after  # noqa: PLC0415

    return hard_stop_after(deadline) + LAST_RESORT_SECONDS + ANSWER_MARGIN_SECONDS


@contextlib.asynccontextmanager
async def open_engine(
    config: Config,
    env: Mapping[str, str],
    *,
    insecure: Mapping[str, bool] | None = None,
    progress: ProgressFactory | None = None,
) -> AsyncIterator[Engine]:
    """An engine on `config` with its own credential resolver (secrets read once, when a
    registry first asks) and registry clients, all closed when the block ends; the one way the
    function and the CLI open one. `insecure` (from `insecure_hosts`) and `progress` are the
    CLI's `--insecure` and its progress display."""
    from sync.credentials import CredentialResolver  # noqa: PLC0415
    from sync.engine import Engine, registries_for  # noqa: PLC0415

    credentials = CredentialResolver(config, env=env)
    try:
        async with registries_for(config, credentials, insecure=insecure) as registries:
            yield Engine(config, registries, progress=progress, credentials=credentials)
    finally:
        credentials.close()


async def run_once(
    config: Config,
    options: RunOptions,
    *,
    env: Mapping[str, str],
    hard_timeout: float | None = None,
) -> Report:
    """One engine run (`open_engine`); RunTimeout when it is still going after `hard_timeout`
    seconds."""
    async with open_engine(config, env) as engine:
        try:
            return await asyncio.wait_for(engine.run(options), timeout=hard_timeout)
        except TimeoutError:
            raise RunTimeout(
                f"the run was still going {hard_timeout:.0f}s after it started and was "
                "stopped; copies in flight were abandoned (the next run continues)"
            ) from None


def trigger_of(scheduler_job: str | None, task_queue: str | None) -> Trigger:
    """`task` for a Cloud Tasks request, `scheduler` for Cloud Scheduler's, else `manual`. The
    headers are only labels for logs and alerts; Cloud Run has checked the caller's token."""
    if task_queue:
        return "task"
    if scheduler_job:
        return "scheduler"
    return "manual"


@dataclass(slots=True)
class _Outcome:
    """What the summary line needs to know of a request, filled in as it goes."""

    images: tuple[str, ...] = ()
    dry_run: bool = False
    report: Report | None = None
    dispatch: Dispatch | None = None


def handle(incoming: Incoming, env: Mapping[str, str] | None = None) -> Answer:
    """Answers one request: 405, 400/413, 500 CONFIG_INVALID, or a run's report (500 for a
    `failed` one that is `retryable`, else 200). Never raises; an unexpected exception is
    logged at ERROR and answered 500 INTERNAL without its text. Writes one summary line however
    it ends."""
    env = os.environ if env is None else env
    run_id = uuid.uuid4().hex[:12]
    trigger = trigger_of(incoming.scheduler_job, incoming.task_queue)
    context: dict[str, object] = {"run_id": run_id, "trigger": trigger}
    if incoming.scheduler_job:
        context["scheduler_job"] = clip(incoming.scheduler_job, 200)
    if incoming.task_queue:
        context["task_queue"] = clip(incoming.task_queue, 200)
    if incoming.task_name:
        context["task"] = clip(incoming.task_name, 200)
        if incoming.task_retry_count:
            context["task_retry_count"] = clip(incoming.task_retry_count, 10)
    context.update(trace_fields(incoming.trace_header, env))
    outcome = _Outcome()
    with log_context(**context):
        try:
            install_logging(env)
            answer = _handle(incoming, env, outcome)
        except Exception:
            log.exception("internal error answering the request", extra={"event": "internal"})
            answer = internal_error(run_id)
        log_summary(
            trigger,
            answer,
            report=outcome.report,
            dispatch=outcome.dispatch,
            images=outcome.images,
            dry_run=outcome.dry_run,
        )
        return answer


def log_summary(
    trigger: Trigger,
    answer: Answer,
    *,
    report: Report | None = None,
    dispatch: Dispatch | None = None,
    images: Sequence[str] = (),
    dry_run: bool = False,
) -> None:
    """The request's one summary line. With a report: its status and counts and the images it
    covered. Without one (the request ended before or instead of a run): status `failed`, zero
    counts and the answer's error `code`; a bad request by hand is `rejected` instead, since
    the caller has the answer in front of them, while one from Cloud Scheduler or Cloud Tasks
    means the deployment itself sends something wrong. A fan-out's dispatch: its status (`ok`,
    or `failed` when a task could not be created), the images it dispatched, zero counts, and
    `dispatch` (`tasks`, `created`, `already`, `failed`); each task writes its own line."""
    # `kind` tells a fan-out's dispatch from a run: the no-run alert counts runs only, so that
    # a dispatch whose tasks never reach the function still alerts.
    kind = "dispatch" if dispatch is not None else "run"
    fields: dict[str, object] = {"event": SUMMARY_EVENT, "trigger": trigger, "kind": kind}
    if dispatch is not None:
        from sync.report import summarize  # noqa: PLC0415

        status: str = dispatch.status
        names = dispatch.images
        counts = summarize(()).model_dump()
        dry_run = dispatch.dry_run
        fields["dispatch"] = dispatch.counts()
        if dispatch.errors:
            fields["code"] = dispatch.errors[0].code
    elif report is not None:
        status = report.status
        names = [image.name for image in report.images]
        counts = report.summary.model_dump()
        dry_run = report.dry_run
    else:
        code = _error_code(answer)
        rejected = 400 <= answer.status < 500 and trigger == "manual"
        status = "rejected" if rejected else "failed"
        names = list(images)
        from sync.report import summarize  # noqa: PLC0415

        counts = summarize(()).model_dump()
        fields["code"] = code
    fields.update(
        status=status,
        images=names,
        summary=counts,
        dry_run=dry_run,
        http_status=answer.status,
    )
    if len(names) == 1:
        fields["image"] = names[0]
    level = {"ok": logging.INFO, "partial": logging.WARNING, "rejected": logging.WARNING}
    if dispatch is not None:
        done = dispatch.counts()
        log.log(
            level.get(status, logging.ERROR),
            "summary: dispatch %s (%s): %d tasks, %d created, %d already there, %d failed",
            status,
            trigger,
            done["tasks"],
            done["created"],
            done["already"],
            done["failed"],
            extra=fields,
        )
        return
    log.log(
        level.get(status, logging.ERROR),
        "summary: %s (%s, %s): %d tags, %d up to date, %d copied, %d failed, %d deferred",
        status,
        trigger,
        ", ".join(names) if names else "no image",
        counts["tags"],
        counts["up_to_date"],
        counts["copied"],
        counts["failed"],
        counts["deferred"],
        extra=fields,
    )


def _error_code(answer: Answer) -> str:
    """The `code` of an `{"error": ...}` answer (this module wrote it), else `INTERNAL`."""
    try:
        body = json.loads(answer.body)
        code = body["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return INTERNAL
    return code if isinstance(code, str) else INTERNAL


def _handle(incoming: Incoming, env: Mapping[str, str], outcome: _Outcome) -> Answer:
    if incoming.method not in ALLOWED_METHODS:
        log.warning(
            "method %s not allowed",
            clip(incoming.method, 20),
            extra={"event": "bad_request", "status": 405},
        )
        return error_answer(
            405,
            METHOD_NOT_ALLOWED,
            f"method {clip(incoming.method, 20)} not allowed; use POST (JSON body) or GET "
            "(query string)",
            headers={"Allow": ", ".join(ALLOWED_METHODS)},
        )
    from sync.config import load_config, resolve_config_path  # noqa: PLC0415
    from sync.fanout import FanoutSettings  # noqa: PLC0415
    from sync.request import BadRequest, parse_request  # noqa: PLC0415

    try:
        wanted = parse_request(incoming)
    except BadRequest as exc:
        return _bad_request(exc)
    outcome.dry_run = wanted.dry_run

    try:
        deadline = deadline_seconds(env)
        config = load_config(resolve_config_path(None, env))
        fanout_settings = FanoutSettings.from_env(env)
    except ConfigError as exc:
        log.error(
            "invalid configuration: %s",
            exc,
            extra={"event": "config_invalid", "code": exc.code, "problems": list(exc.problems)},
        )
        return error_answer(500, exc.code, str(exc), problems=list(exc.problems))
    try:
        options = wanted.options(config, deadline)
    except BadRequest as exc:
        return _bad_request(exc)
    # The images the run covers, once they are known to be configured ones.
    outcome.images = options.images if options.images is not None else config.image_names
    # A request Cloud Tasks delivered is one image of a fan-out: it never fans out again.
    from_task = incoming.task_queue is not None or incoming.task_name is not None
    if fanout_settings is not None and wanted.images is None and not from_task:
        return _dispatch(
            incoming, wanted, config, fanout_settings, env=env, deadline=deadline, outcome=outcome
        )
    log.info(
        "run starting%s",
        " (dry run)" if options.dry_run else "",
        extra={
            "event": "run_started",
            "method": incoming.method,
            "images": list(options.images) if options.images is not None else None,
            "tags": list(options.tags) if options.tags is not None else None,
            "dry_run": options.dry_run,
            "discover": options.discover,
            "deadline_s": deadline,
        },
    )
    try:
        report = asyncio.run(
            # The engine cuts copies off at its hard deadline and still reports; this outer
            # limit is only the last resort should that ever fail.
            run_once(
                config,
                options,
                env=env,
                hard_timeout=(options.hard_deadline or deadline) + LAST_RESORT_SECONDS,
            )
        )
    except RunTimeout as exc:
        log.error("%s", exc, extra={"event": "run_timeout", "code": DEADLINE})
        return error_answer(500, DEADLINE, str(exc))
    except ImageSyncError as exc:  # before any tag ran; messages are redacted by design
        log.error("run failed: %s", exc, extra={"event": "run_failed", "code": exc.code})
        return error_answer(500, exc.code, exc.message)
    outcome.report = report
    # 500 only when a retry can help: Cloud Scheduler and task queues retry any non-2xx, and a
    # run whose failures are all permanent would fail again the same way.
    status = 500 if report.status == "failed" and report.retryable else 200
    return Answer(status, report.to_json(), dict(_JSON_HEADERS))


def _dispatch(
    incoming: Incoming,
    wanted: SyncRequest,
    config: Config,
    settings: FanoutSettings,
    *,
    env: Mapping[str, str],
    deadline: float,
    outcome: _Outcome,
) -> Answer:
    """Fan-out: one Cloud Task per image instead of a run here; 200 when every task exists,
    500 when some could not be created (Cloud Scheduler retries; the named tasks that exist
    are not created twice). The summary line (`log_summary`) reports the dispatch."""
    from sync import fanout  # noqa: PLC0415

    units = fanout.plan(config, tags=wanted.tags, dry_run=wanted.dry_run, discover=wanted.discover)
    log.info(
        "dispatching %d tasks to %s%s",
        len(units),
        settings.queue,
        " (dry run)" if wanted.dry_run else "",
        extra={
            "event": "dispatch_started",
            "method": incoming.method,
            "queue": settings.queue,
            "tasks": len(units),
            "schedule_time": clip(incoming.schedule_time, 64) if incoming.schedule_time else None,
        },
    )
    queue = fanout.CloudTasksQueue(settings.queue, env=env)
    try:
        result = fanout.dispatch(
            units,
            settings,
            queue,
            schedule_time=incoming.schedule_time,
            dispatch_deadline_s=fanout.dispatch_deadline(platform_timeout_needed(deadline)),
            dry_run=wanted.dry_run,
        )
    finally:
        queue.close()
    counts = result.counts()
    log.log(
        logging.ERROR if result.errors else logging.INFO,
        "dispatch %s: %d tasks created, %d already there, %d failed in %.1fs",
        result.status,
        counts["created"],
        counts["already"],
        counts["failed"],
        result.duration_s,
        extra={"event": "dispatch_finished", "dispatch": counts},
    )
    outcome.dispatch = result
    return Answer(500 if result.errors else 200, result.to_json(), dict(_JSON_HEADERS))


def _bad_request(exc: BadRequest) -> Answer:
    log.warning(
        "bad request: %s", exc.message, extra={"event": "bad_request", "status": exc.status}
    )
    return error_answer(exc.status, BAD_REQUEST, exc.message)
