"""HTTP entry point `sync_images` for Cloud Functions (functions-framework): a thin adapter.

It turns the Flask request into plain values, reading at most 64 KiB + 1 of the body, and the
answer into a JSON response; `sync.service` does the rest. Importing this module loads no
config, reads no secret and starts no event loop.
"""

from __future__ import annotations

import contextlib

import flask
import functions_framework

from sync import logs, service

__all__ = ["sync_images"]

# Headers that only label log lines (Cloud Run has checked the caller's token before this runs).
_SCHEDULER_JOB = "X-CloudScheduler-JobName"
_TASK_QUEUE = "X-CloudTasks-QueueName"


@functions_framework.http
def sync_images(request: flask.Request) -> flask.Response:
    """Cloud Scheduler's POST (JSON body, may be empty) or a GET with a query string; answers
    the run's report as JSON (500 when it failed and a retry can help, else 200) or
    `{"error": {...}}`."""
    try:
        answer = service.handle(_incoming(request))
    except Exception:  # the edge: never a traceback (or anything in it) in a response
        with contextlib.suppress(Exception):
            logs.install_logging()
        trigger = service.trigger_of(
            request.headers.get(_SCHEDULER_JOB), request.headers.get(_TASK_QUEUE)
        )
        answer = service.internal_error()
        with logs.log_context(trigger=trigger):
            service.log.exception("internal error in the HTTP adapter", extra={"event": "internal"})
            # handle() writes the summary line of every request it answers; this one it did not.
            service.log_summary(trigger, answer)
    return flask.Response(
        answer.body, status=answer.status, headers=dict(answer.headers), mimetype="application/json"
    )


def _incoming(request: flask.Request) -> service.Incoming:
    length = request.content_length
    too_long = length is not None and length > service.MAX_BODY_BYTES
    # Past the limit nothing more is read here: the answer is 413 whatever follows.
    body = b"" if too_long else request.stream.read(service.MAX_BODY_BYTES + 1)
    return service.Incoming(
        method=request.method,
        content_type=request.headers.get("Content-Type"),
        body=body,
        content_length=length,
        query=tuple(request.args.items(multi=True)),
        scheduler_job=request.headers.get(_SCHEDULER_JOB),
        schedule_time=request.headers.get("X-CloudScheduler-ScheduleTime"),
        task_queue=request.headers.get(_TASK_QUEUE),
        task_name=request.headers.get("X-CloudTasks-TaskName"),
        task_retry_count=request.headers.get("X-CloudTasks-TaskRetryCount"),
        trace_header=request.headers.get("X-Cloud-Trace-Context")
        or request.headers.get("traceparent"),
    )
