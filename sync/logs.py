"""The one logging setup of image-sync, for the function and the CLI alike.

Every module logs under its own name (`logging.getLogger(__name__)`: `sync.engine`,
`sync.service`, `sync.credentials`, ...), so the `logger` of a line says which module wrote it,
and all of them sit below the one project logger in `LOGGERS`, `sync`, where the handlers go.
The function writes them as Cloud Logging JSON lines on stdout (`install_logging`); the CLI as
plain text through its own handler (`install_handler`). Neither lets httpx log its requests:
their URLs carry query strings.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import traceback
import types
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from sync.errors import clip

__all__ = [
    "LOGGERS",
    "LOG_LEVEL_ENV",
    "JsonFormatter",
    "install_handler",
    "install_logging",
    "log_context",
    "trace_fields",
]

LOG_LEVEL_ENV = "LOG_LEVEL"
#: The project's logger, parent of every module's (`sync.<module>`): handlers and level go here.
LOGGERS = ("sync",)

log = logging.getLogger(__name__)


_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "image_sync_log_context", default=types.MappingProxyType({})
)

# Attributes every LogRecord has: everything else on a record came in through `extra`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}
_LEVELS |= {"ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Adds `fields` to every log line written inside (in this thread and the tasks and
    threads it starts: asyncio and `to_thread` copy the context)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def trace_fields(header: str | None, env: Mapping[str, str]) -> dict[str, object]:
    """Cloud Logging's trace field from `X-Cloud-Trace-Context: TRACE/SPAN;o=1` or
    `traceparent: 00-TRACE-SPAN-01`, when the project is known."""
    project = env.get("GOOGLE_CLOUD_PROJECT")
    if not header or not project:
        return {}
    text = header.strip().lower()
    trace = text.split("-")[1] if text.startswith("00-") and text.count("-") >= 2 else text
    trace = trace.split("/", 1)[0]
    if not _TRACE_ID.fullmatch(trace):
        return {}
    return {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace}"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, as Cloud Logging reads structured lines from stdout:
    `severity`, `message`, `time`, `logger`, the `log_context` fields, then the record's
    `extra` fields (never overriding those before them); a traceback goes in `stack_trace`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": _SEVERITY.get(record.levelno, record.levelname),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
        }
        for key, value in _CONTEXT.get().items():
            entry.setdefault(key, value)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["stack_trace"] = "".join(traceback.format_exception(*record.exc_info))
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, default=str)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is when a record comes (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout  # the handler's lock is held here
        super().emit(record)


def _level(env: Mapping[str, str]) -> tuple[int, str | None]:
    text = (env.get(LOG_LEVEL_ENV) or "").strip().upper()
    if not text:
        return logging.INFO, None
    if text == "WARN":
        text = "WARNING"
    if text not in _LEVELS:
        return logging.INFO, f"{LOG_LEVEL_ENV}={clip(text, 20)!r} is not a level; using INFO"
    return _LEVELS[text], None


def install_logging(env: Mapping[str, str] | None = None) -> None:
    """JSON lines on stdout for the project's loggers at `LOG_LEVEL`. Idempotent: the handler
    is added once; the level follows the environment on every call."""
    level, problem = _level(os.environ if env is None else env)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
            logger.addHandler(_StdoutHandler())
        logger.setLevel(level)
        # Not to the root logger too: the functions framework may give it a handler of its own.
        logger.propagate = False
    # httpx logs every request at INFO (URLs with query strings): never here.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, level))
    if problem:
        log.warning("%s", problem, extra={"event": "log_level_invalid"})


def install_handler(handler: logging.Handler, level: int) -> None:
    """`handler` as the only one of the project's loggers, at `level` (the CLI's setup)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)
