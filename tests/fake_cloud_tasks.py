"""A local stand-in for Cloud Tasks (v2 REST), enough for the real google-cloud-tasks client.

It answers `POST /v2/projects/P/locations/L/queues/Q/tasks` (CreateTask) as the service does:
the created task as JSON, 404 NOT_FOUND for a queue it does not have, and 409 ALREADY_EXISTS for
a name it has seen (the real service remembers a name for about an hour after the task ran; this
one for its whole life). Then it delivers each HTTP task as a real HTTP request to the task's URL:
the task's method, headers and body, the `X-CloudTasks-*` headers Cloud Tasks adds, and an
`Authorization: Bearer` token that is NOT signed (it only carries the OIDC claims, `aud` and
`email`, for tests to read; on Google Cloud, Cloud Run checks the real one). At most
`max_concurrent` deliveries run at once, started no faster than `max_dispatches_per_second`;
a delivery that answers non-2xx, fails to connect or outlasts the task's dispatch deadline is
retried with doubling backoff until `max_attempts`, as the queue's retry config says.
Loopback only; tests only.

    with FakeCloudTasks(queues=["projects/p/locations/l/queues/q"]) as tasks:
        env = {"CLOUD_TASKS_ENDPOINT": tasks.endpoint, ...}
        ...
        assert tasks.wait_idle(60)
"""

from __future__ import annotations

import base64
import heapq
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

import httpx

from tests.fake_secret_manager import json_handler

__all__ = ["Attempt", "FakeCloudTasks", "FakeTask", "read_token"]

_CREATE_PATH = re.compile(r"/v2/(?P<queue>projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks")
_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
_METHODS = {1: "POST", 2: "GET", 3: "HEAD", 4: "PUT", 5: "DELETE", 6: "PATCH", 7: "OPTIONS"}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery of a task: its HTTP status (None when no answer came) and the body."""

    number: int
    status: int | None
    body: bytes
    started: float
    ended: float


@dataclass
class FakeTask:
    """A task as created, with its deliveries so far."""

    name: str
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    oidc: dict[str, str] | None
    dispatch_deadline: float
    created: float
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "queued"  # queued, running, succeeded, failed

    @property
    def id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def json_body(self) -> object:
        return json.loads(self.body) if self.body else None


def read_token(header: str | None) -> dict[str, object]:
    """The claims of a token this fake put in `Authorization: Bearer ...`."""
    if not header or not header.startswith("Bearer "):
        return {}
    parts = header[len("Bearer ") :].split(".")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _duration(text: object, default: float) -> float:
    if isinstance(text, str) and text.endswith("s"):
        try:
            return float(text[:-1])
        except ValueError:
            pass
    return default


class FakeCloudTasks:
    """A threaded Cloud Tasks REST server on a free loopback port, with its own dispatcher."""

    def __init__(
        self,
        *,
        queues: Iterable[str],
        max_concurrent: int = 4,
        max_dispatches_per_second: float | None = None,
        max_attempts: int = 5,
        min_backoff: float = 0.05,
        max_backoff: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.queues = frozenset(queues)
        self.max_concurrent = max_concurrent
        self.max_dispatches_per_second = max_dispatches_per_second
        self.max_attempts = max_attempts
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._lock = threading.Condition()
        self._tasks: dict[str, FakeTask] = {}
        self._order: list[str] = []
        self._ready: list[tuple[float, int, str]] = []  # (due, sequence, task name)
        self._sequence = 0
        self._busy = 0
        self._create_calls = 0
        self._create_errors: list[int] = []
        self._last_start = 0.0
        self._stopping = False
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """What goes in CLOUD_TASKS_ENDPOINT."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeCloudTasks:
        if not self._threads:
            server = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-cloud-tasks",
                daemon=True,
            )
            server.start()
            self._threads.append(server)
            for i in range(self.max_concurrent):
                worker = threading.Thread(
                    target=self._work, name=f"fake-cloud-tasks-dispatch-{i}", daemon=True
                )
                worker.start()
                self._threads.append(worker)
        return self

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._threads:
            self._server.shutdown()
            for thread in self._threads:
                thread.join(timeout=30)
            self._threads = []
        self._server.server_close()

    def __enter__(self) -> FakeCloudTasks:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests read and steer -------------------------------------------------------------

    @property
    def tasks(self) -> list[FakeTask]:
        """Every task created, in creation order."""
        with self._lock:
            return [self._tasks[name] for name in self._order]

    @property
    def create_calls(self) -> int:
        with self._lock:
            return self._create_calls

    def fail_creates(self, *statuses: int) -> None:
        """The next CreateTask calls answer these HTTP statuses (one call each)."""
        with self._lock:
            self._create_errors.extend(statuses)

    def wait_idle(self, timeout: float) -> bool:
        """Waits until every task has succeeded or run out of attempts; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._ready or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.5))
            return True

    # -- CreateTask ----------------------------------------------------------------------------

    def _create(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict[str, object]]:
        path = unquote(urlsplit(raw_path).path)
        m = _CREATE_PATH.fullmatch(path)
        if method != "POST" or m is None:
            return _error(HTTPStatus.NOT_FOUND, f"no such method: {method} {path}")
        queue = m["queue"]
        with self._lock:
            self._create_calls += 1
            injected = self._create_errors.pop(0) if self._create_errors else None
        if injected is not None:
            return _error(HTTPStatus(injected), "injected failure")
        if queue not in self.queues:
            return _error(HTTPStatus.NOT_FOUND, f"Queue does not exist. Queue: {queue}")
        try:
            request = json.loads(body or b"{}")
            task = request["task"]
            http = task["httpRequest"]
            url = http["url"]
        except (ValueError, KeyError, TypeError) as exc:
            return _error(HTTPStatus.BAD_REQUEST, f"invalid CreateTask body: {exc!r}")
        name = task.get("name") or f"{queue}/tasks/{self._next_id()}"
        if not name.startswith(f"{queue}/tasks/") or not _TASK_ID.fullmatch(name.rsplit("/")[-1]):
            return _error(HTTPStatus.BAD_REQUEST, f"invalid task name {name!r}")
        method_value = http.get("httpMethod", "POST")
        oidc = http.get("oidcToken")
        created = FakeTask(
            name=name,
            url=url,
            method=_METHODS.get(method_value, str(method_value))
            if isinstance(method_value, int)
            else str(method_value),
            headers=dict(http.get("headers") or {}),
            body=base64.b64decode(http.get("body") or ""),
            oidc=dict(oidc) if oidc else None,
            dispatch_deadline=_duration(task.get("dispatchDeadline"), 600.0),
            created=time.monotonic(),
        )
        with self._lock:
            if name in self._tasks:
                return _error(
                    HTTPStatus.CONFLICT,
                    "The task cannot be created because a task with this name existed too "
                    "recently.",
                )
            self._tasks[name] = created
            self._order.append(name)
            self._enqueue(name, 0.0)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return HTTPStatus.OK, {
            "name": name,
            "createTime": now,
            "scheduleTime": now,
            "dispatchDeadline": f"{created.dispatch_deadline:.0f}s",
            "httpRequest": {"url": url, "httpMethod": created.method},
            "view": "BASIC",
        }

    def _next_id(self) -> str:
        with self._lock:
            self._sequence += 1
            return f"{int(time.time() * 1000)}{self._sequence:06d}"

    def _enqueue(self, name: str, delay: float) -> None:
        # Called with the lock held.
        self._sequence += 1
        heapq.heappush(self._ready, (time.monotonic() + delay, self._sequence, name))
        self._lock.notify_all()

    # -- delivering tasks ----------------------------------------------------------------------

    def _next(self) -> FakeTask | None:
        with self._lock:
            while not self._stopping:
                if self._ready:
                    due, _, name = self._ready[0]
                    wait = due - time.monotonic()
                    if self.max_dispatches_per_second:
                        gap = 1.0 / self.max_dispatches_per_second
                        wait = max(wait, self._last_start + gap - time.monotonic())
                    if wait <= 0:
                        heapq.heappop(self._ready)
                        self._busy += 1
                        self._last_start = time.monotonic()
                        task = self._tasks[name]
                        task.state = "running"
                        return task
                    self._lock.wait(wait)
                else:
                    self._lock.wait(0.5)
            return None

    def _work(self) -> None:
        with httpx.Client(trust_env=False) as client:
            while (task := self._next()) is not None:
                number = len(task.attempts) + 1
                started = time.monotonic()
                status, body = self._deliver(client, task, number)
                with self._lock:
                    task.attempts.append(Attempt(number, status, body, started, time.monotonic()))
                    if status is not None and 200 <= status < 300:
                        task.state = "succeeded"
                    elif number >= self.max_attempts:
                        task.state = "failed"
                    else:
                        task.state = "queued"
                        backoff = min(self.max_backoff, self.min_backoff * 2 ** (number - 1))
                        self._enqueue(task.name, backoff)
                    self._busy -= 1
                    self._lock.notify_all()

    def _deliver(
        self, client: httpx.Client, task: FakeTask, number: int
    ) -> tuple[int | None, bytes]:
        headers = dict(task.headers)
        queue_id = task.name.split("/queues/", 1)[1].split("/", 1)[0]
        headers |= {
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": queue_id,
            "X-CloudTasks-TaskName": task.id,
            "X-CloudTasks-TaskRetryCount": str(number - 1),
            "X-CloudTasks-TaskExecutionCount": str(sum(1 for a in task.attempts if a.status)),
            "X-CloudTasks-TaskETA": f"{time.time():.6f}",
        }
        if task.oidc:
            claims = {
                "aud": task.oidc.get("audience") or task.url,
                "email": task.oidc.get("serviceAccountEmail", ""),
                "iss": "https://accounts.google.com",
            }
            header = _b64(json.dumps({"alg": "none"}).encode())
            unsigned = f"{header}.{_b64(json.dumps(claims).encode())}."
            headers["Authorization"] = f"Bearer {unsigned}"
        try:
            response = client.request(
                task.method,
                task.url,
                content=task.body,
                headers=headers,
                timeout=task.dispatch_deadline,
            )
        except httpx.HTTPError:
            return None, b""
        return response.status_code, response.content

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return json_handler(lambda method, path, _, body: self._create(method, path, body))


_STATUS = {
    HTTPStatus.NOT_FOUND: "NOT_FOUND",
    HTTPStatus.CONFLICT: "ALREADY_EXISTS",
    HTTPStatus.BAD_REQUEST: "INVALID_ARGUMENT",
    HTTPStatus.FORBIDDEN: "PERMISSION_DENIED",
    HTTPStatus.TOO_MANY_REQUESTS: "RESOURCE_EXHAUSTED",
    HTTPStatus.SERVICE_UNAVAILABLE: "UNAVAILABLE",
    HTTPStatus.INTERNAL_SERVER_ERROR: "INTERNAL",
}


def _error(status: HTTPStatus, message: str) -> tuple[int, dict[str, object]]:
    return status, {
        "error": {"code": int(status), "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    }
