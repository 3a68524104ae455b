"""Fan-out over Cloud Tasks: one task per image, each an ordinary one-image run of the function.

Owns the fan-out settings read from the environment, the units of work a fan-out creates
(`plan`), task names and bodies, and creating the tasks with the google-cloud-tasks client,
which is imported only when a dispatch happens. `CLOUD_TASKS_ENDPOINT` makes that client talk
REST to that address with anonymous credentials (tests, local runs), as `SECRET_MANAGER_ENDPOINT`
does for Secret Manager. Knows nothing of HTTP requests or Flask: `sync.service` decides when to
dispatch and turns the result into an answer.

Task names make a scheduled dispatch idempotent. Cloud Scheduler sends the same
`X-CloudScheduler-ScheduleTime` on every retry of one run, so a task's id is derived from that
time, the image and the task's body (which carries the kind: dry run or not); creating it again
answers ALREADY_EXISTS, counted as already dispatched. Cloud Tasks refuses a used name for about
an hour after the task was deleted or ran (9 days for queues made with queue.yaml), which covers
Scheduler's retries (minutes apart); a run of the same schedule the next day has another time.
Cloud Tasks asks for ids that do not share sequential prefixes (a timestamp first slows the
name lookup down), so each id starts with a hash. A request without a schedule time (manual)
gets unique ids: nothing is deduplicated.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sync.errors import ConfigError, DispatchError, clip

if TYPE_CHECKING:
    from sync.config import Config

__all__ = [
    "DISPATCH_DEADLINE_MAX_SECONDS",
    "DISPATCH_DEADLINE_MIN_SECONDS",
    "ENDPOINT_ENV",
    "QUEUE_ENV",
    "SERVICE_ACCOUNT_ENV",
    "URL_ENV",
    "CloudTasksQueue",
    "Dispatch",
    "DispatchFailure",
    "Dispatched",
    "FanoutSettings",
    "TaskQueue",
    "Unit",
    "dispatch",
    "plan",
    "task_id",
]

QUEUE_ENV = "FANOUT_QUEUE"
URL_ENV = "FANOUT_URL"
SERVICE_ACCOUNT_ENV = "FANOUT_SERVICE_ACCOUNT"
ENDPOINT_ENV = "CLOUD_TASKS_ENDPOINT"
_ENV_NAMES = (QUEUE_ENV, URL_ENV, SERVICE_ACCOUNT_ENV)

#: Cloud Tasks' bounds for an HTTP task's dispatch deadline (its default is 10 minutes).
DISPATCH_DEADLINE_MIN_SECONDS = 15
DISPATCH_DEADLINE_MAX_SECONDS = 1800
#: CreateTask calls under way at once during one dispatch.
CREATE_CONCURRENCY = 8
#: How long one CreateTask may take, retries of temporary failures included.
CREATE_TIMEOUT_SECONDS = 30.0

_log = logging.getLogger(__name__)

_QUEUE = re.compile(
    r"projects/(?P<project>[a-z][a-z0-9.:-]{4,62})/locations/(?P<location>[a-z][a-z0-9-]{1,62})"
    r"/queues/(?P<queue>[A-Za-z0-9-]{1,100})"
)
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True)
class FanoutSettings:
    """Where the tasks go and how they call the function back."""

    #: `projects/P/locations/L/queues/Q`
    queue: str
    #: The URL each task POSTs to, also the audience of its OIDC token.
    url: str
    #: The account whose OIDC token each task carries (it needs run.invoker on the function).
    service_account: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FanoutSettings | None:
        """The settings when fan-out is configured, None when none of its variables is set;
        ConfigError naming each variable that is missing or malformed."""
        values = {name: (env.get(name) or "").strip() for name in _ENV_NAMES}
        if not any(values.values()):
            return None
        problems = [
            f"{name}: not set (fan-out needs {', '.join(_ENV_NAMES)})"
            for name, value in values.items()
            if not value
        ]
        queue, url, account = values[QUEUE_ENV], values[URL_ENV], values[SERVICE_ACCOUNT_ENV]
        if queue and not _QUEUE.fullmatch(queue):
            problems.append(
                f"{QUEUE_ENV}: expected projects/PROJECT/locations/LOCATION/queues/QUEUE, "
                f"got {clip(queue, 120)!r}"
            )
        if url and not _URL.fullmatch(url):
            problems.append(
                f"{URL_ENV}: expected an https:// URL, no query, got {clip(url, 120)!r}"
            )
        if account and not _EMAIL.fullmatch(account):
            problems.append(
                f"{SERVICE_ACCOUNT_ENV}: expected a service account e-mail, "
                f"got {clip(account, 120)!r}"
            )
        if problems:
            raise ConfigError(problems, source="environment")
        return cls(queue=queue, url=url, service_account=account)


def dispatch_deadline(run_budget_seconds: float) -> int:
    """A task's dispatch deadline: the function's whole run budget, within Cloud Tasks' bounds
    (15 s to 30 min)."""
    seconds = round(run_budget_seconds)
    return max(DISPATCH_DEADLINE_MIN_SECONDS, min(DISPATCH_DEADLINE_MAX_SECONDS, seconds))


# ---------------------------------------------------------------------------------------------
# Units of work


@dataclass(frozen=True, slots=True)
class Unit:
    """One task to create: the image it runs and the JSON body it POSTs to the function."""

    image: str
    body: Mapping[str, object]

    def to_dict(self) -> dict[str, object]:
        return {"image": self.image, "body": dict(self.body)}


def plan(
    config: Config,
    *,
    tags: Sequence[str] | None = None,
    dry_run: bool = False,
    discover: bool = True,
) -> tuple[Unit, ...]:
    """One unit per configured image, in config order: `{"images": [NAME]}` plus the request's
    `dry_run` and `discover`, and its `tags` as far as they can concern that image (all of them
    when the image discovers tags, else its configured ones among them). An image that none of
    the tags can concern gets no unit: its one-image run would be refused as a bad request."""
    units: list[Unit] = []
    for image in config.images:
        body: dict[str, object] = {"images": [image.name], "dry_run": dry_run, "discover": discover}
        if tags is not None:
            if discover and image.discovers_tags:
                mine = list(tags)
            else:
                mine = [tag for tag in tags if tag in image.tags]
            if not mine:
                continue
            body["tags"] = mine
        units.append(Unit(image=image.name, body=body))
    return tuple(units)


def task_id(unit: Unit, schedule_time: str | None) -> str:
    """The task's id in its queue. With a schedule time: the same for the same time, image and
    body (kind included), so Scheduler's retries of one run create nothing twice. Without one:
    unique. A hash comes first (Cloud Tasks' advice against sequential ids), then what a person
    reading the queue needs: kind, time, image."""
    kind = "dry" if unit.body.get("dry_run") else "sync"
    if schedule_time:
        seed = json.dumps({"at": schedule_time, "body": unit.body}, sort_keys=True)
        stamp = re.sub(r"\D", "", schedule_time)[:14] or "t"
    else:
        seed = uuid.uuid4().hex
        stamp = "manual"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:16]
    slug = _ID_UNSAFE.sub("_", unit.image)[:100]
    return f"{digest}-{kind}-{stamp}-{slug}"


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Dispatched:
    """A task that exists for an image: created now, or (`already`) by an earlier attempt."""

    image: str
    task: str
    already: bool

    def to_dict(self) -> dict[str, object]:
        return {"image": self.image, "task": self.task, "already": self.already}


@dataclass(frozen=True, slots=True)
class DispatchFailure:
    """An image whose task could not be created."""

    image: str
    code: str
    message: str
    temporary: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"image": self.image, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What one dispatch did, in config order."""

    queue: str
    dry_run: bool
    started_at: datetime
    duration_s: float
    dispatched: tuple[Dispatched, ...] = ()
    errors: tuple[DispatchFailure, ...] = ()

    @property
    def status(self) -> Literal["ok", "failed"]:
        return "failed" if self.errors else "ok"

    @property
    def images(self) -> list[str]:
        return [d.image for d in self.dispatched] + [e.image for e in self.errors]

    def counts(self) -> dict[str, int]:
        created = sum(1 for d in self.dispatched if not d.already)
        return {
            "tasks": len(self.dispatched) + len(self.errors),
            "created": created,
            "already": len(self.dispatched) - created,
            "failed": len(self.errors),
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "queue": self.queue,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "duration_s": round(self.duration_s, 3),
            "dispatched": [d.to_dict() for d in self.dispatched],
            "errors": [e.to_dict() for e in self.errors],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# ---------------------------------------------------------------------------------------------
# Creating tasks


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One HTTP task as Cloud Tasks takes it."""

    name: str
    url: str
    body: bytes
    service_account: str
    audience: str
    dispatch_deadline_s: int
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class TaskQueue:
    """Creates tasks in one queue. `create` returns True when the task was created and False
    when a task of that name exists (or ran recently); it raises DispatchError otherwise."""

    def create(self, spec: TaskSpec) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Releases the connection, if any."""


class CloudTasksQueue(TaskQueue):
    """A TaskQueue backed by the google-cloud-tasks client (REST to `CLOUD_TASKS_ENDPOINT` with
    anonymous credentials when that is set, else the library's default with Application
    Default Credentials). `client` injects a ready client, not closed by `close`."""

    def __init__(
        self,
        queue: str,
        *,
        env: Mapping[str, str],
        client: Any = None,
        timeout: float = CREATE_TIMEOUT_SECONDS,
    ) -> None:
        self.queue = queue
        self._env = env
        self._client: Any = client
        self._owns_client = client is None
        self._timeout = timeout
        self._lock = threading.Lock()
        self._where = f" at {env[ENDPOINT_ENV]}" if env.get(ENDPOINT_ENV) else ""

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        from google.auth.exceptions import DefaultCredentialsError  # noqa: PLC0415
        from google.cloud import tasks_v2  # noqa: PLC0415

        endpoint = (self._env.get(ENDPOINT_ENV) or "").strip().rstrip("/")
        if endpoint:
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

            # The REST transport assumes https for a bare host:port; a local server is plain
            # HTTP, so a bare `host:port` means http here.
            if not re.match(r"https?://", endpoint):
                endpoint = f"http://{endpoint}"
            return tasks_v2.CloudTasksClient(
                transport="rest",
                client_options={"api_endpoint": endpoint},
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
        try:
            return tasks_v2.CloudTasksClient()
        except DefaultCredentialsError:
            raise DispatchError(
                "cannot create Cloud Tasks: no Google credentials found (run on Google Cloud, "
                f"use `gcloud auth application-default login`, or set {ENDPOINT_ENV} for a "
                "local server)",
                temporary=False,
            ) from None

    def create(self, spec: TaskSpec) -> bool:
        from google.api_core import exceptions as gexc  # noqa: PLC0415
        from google.api_core import retry as gretry  # noqa: PLC0415
        from google.auth import exceptions as auth_exc  # noqa: PLC0415
        from google.cloud import tasks_v2  # noqa: PLC0415
        from requests import exceptions as rexc  # noqa: PLC0415

        client = self._get_client()
        task = tasks_v2.Task(
            name=spec.name,
            dispatch_deadline=timedelta(seconds=spec.dispatch_deadline_s),
            http_request=tasks_v2.HttpRequest(
                url=spec.url,
                http_method=tasks_v2.HttpMethod.POST,
                headers=dict(spec.headers),
                body=spec.body,
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=spec.service_account, audience=spec.audience
                ),
            ),
        )
        # The task is named, so a retry after a lost answer meets ALREADY_EXISTS: counted as
        # already dispatched, which it is.
        retry = gretry.Retry(
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable,
                gexc.InternalServerError,
                gexc.TooManyRequests,
                gexc.DeadlineExceeded,
                rexc.ConnectionError,
            ),
            initial=0.25,
            maximum=4.0,
            timeout=self._timeout,
        )
        try:
            client.create_task(parent=self.queue, task=task, retry=retry, timeout=self._timeout)
        except gexc.Conflict as err:
            if not _names_taken(err):
                raise DispatchError(
                    f"Cloud Tasks aborted creating a task in {self.queue}{self._where}: "
                    f"{_api_message(err)}",
                    temporary=True,
                ) from None
            return False
        except gexc.NotFound as err:
            raise DispatchError(
                f"queue {self.queue} not found{self._where}: {_api_message(err)}",
                temporary=False,
            ) from None
        except (gexc.PermissionDenied, gexc.Forbidden) as err:
            raise DispatchError(
                f"permission denied creating a task in {self.queue}{self._where}: the function's "
                "account needs roles/cloudtasks.enqueuer on the queue and "
                f"iam.serviceAccountUser on {spec.service_account} ({_api_message(err)})",
                temporary=False,
            ) from None
        except (gexc.Unauthenticated, gexc.Unauthorized, auth_exc.GoogleAuthError) as err:
            raise DispatchError(
                f"cannot authenticate to Cloud Tasks{self._where}: {type(err).__name__}",
                temporary=False,
            ) from None
        except (gexc.InvalidArgument, gexc.BadRequest, gexc.FailedPrecondition) as err:
            raise DispatchError(
                f"Cloud Tasks refused the task for {self.queue}{self._where}: {_api_message(err)}",
                temporary=False,
            ) from None
        except (rexc.RequestException, gexc.RetryError, gexc.GoogleAPICallError) as err:
            detail = _api_message(err) if isinstance(err, gexc.GoogleAPICallError) else ""
            raise DispatchError(
                f"Cloud Tasks unavailable{self._where} creating a task in {self.queue}: "
                f"{type(err).__name__}{': ' + detail if detail else ''}",
                temporary=True,
            ) from None
        return True

    def close(self) -> None:
        with self._lock:
            if self._owns_client and self._client is not None:
                self._client.transport.close()
            self._client = None


def _names_taken(err: Any) -> bool:
    """Whether a 409 is ALREADY_EXISTS (the name is taken) rather than ABORTED. Over REST the
    client raises the HTTP class (Conflict) for both; the body's `error.status` tells them
    apart, and a CreateTask conflict without one is about the name."""
    if type(err).__name__ == "AlreadyExists":
        return True
    try:
        status = str(err.response.json()["error"]["status"])
    except Exception:  # no body, not JSON, other shape: the name is what conflicts
        return True
    return status != "ABORTED"


def _api_message(err: Any) -> str:
    return clip(str(getattr(err, "message", "") or type(err).__name__), 300)


def dispatch(
    units: Iterable[Unit],
    settings: FanoutSettings,
    queue: TaskQueue,
    *,
    schedule_time: str | None,
    dispatch_deadline_s: int,
    dry_run: bool = False,
    concurrency: int = CREATE_CONCURRENCY,
    clock: Callable[[], float] = time.monotonic,
) -> Dispatch:
    """Creates one task per unit (at most `concurrency` CreateTask calls at once) and reports
    each image as dispatched (created now or already there) or failed. Never raises for one
    image's failure: the others still go out."""
    started_at = datetime.now(UTC)
    start = clock()
    units = tuple(units)

    def one(unit: Unit) -> Dispatched | DispatchFailure:
        name = f"{settings.queue}/tasks/{task_id(unit, schedule_time)}"
        spec = TaskSpec(
            name=name,
            url=settings.url,
            body=json.dumps(unit.body).encode(),
            service_account=settings.service_account,
            audience=settings.url,
            dispatch_deadline_s=dispatch_deadline_s,
        )
        try:
            created = queue.create(spec)
        except DispatchError as exc:
            _log.warning(
                "task for %s not created: %s",
                unit.image,
                exc.message,
                extra={"event": "dispatch_failed", "image": unit.image, "code": exc.code},
            )
            return DispatchFailure(unit.image, exc.code, exc.message, exc.temporary)
        _log.debug(
            "task for %s %s: %s",
            unit.image,
            "created" if created else "already there",
            name,
            extra={"event": "task_created" if created else "task_exists", "image": unit.image},
        )
        return Dispatched(unit.image, name, already=not created)

    if units:
        # Worker threads start with an empty context: give each call a copy of this one, so
        # its log lines carry the request's fields.
        context = contextvars.copy_context()
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(units)))) as pool:
            outcomes = list(pool.map(lambda unit: context.copy().run(one, unit), units))
    else:
        outcomes = []
    return Dispatch(
        queue=settings.queue,
        dry_run=dry_run,
        started_at=started_at,
        duration_s=clock() - start,
        dispatched=tuple(o for o in outcomes if isinstance(o, Dispatched)),
        errors=tuple(o for o in outcomes if isinstance(o, DispatchFailure)),
    )
