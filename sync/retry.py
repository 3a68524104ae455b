"""The one retry policy: which failures are worth another try, how long to wait, how long a
request may take, and when a host is given up on for the rest of the run.

Timeouts (`Timeouts`, the defaults are the production values):

| what | default | meaning |
|---|---|---|
| `connect` | 5 s | TCP connect plus TLS handshake to any host |
| `metadata` | 10 s | waiting for an answer to a ping, token, manifest, tag list or blob HEAD |
| `stall` | 30 s | a blob download or upload during which no byte moved (whatever its size) |

A request that gets no answer (refused, name not resolved, connect timeout, or a metadata
request timing out) is tried `RetryPolicy.unanswered_attempts` times in all (one retry cycle);
then its host is marked down in the run's `HostHealth`, and every later request to that host
fails at once with the same cause (`UNREACHABLE` or `TIMEOUT`) without being sent. A failed TLS
handshake marks its host down at once (`TLS_ERROR`: a setting, no retry helps). The bound on
a whole run is its deadline (the engine cancels what is in flight at the hard stop), not the
number of retries.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from sync.errors import (
    RESPONSE_TOO_LARGE,
    TIMEOUT,
    TLS_ERROR,
    UNREACHABLE,
    RateLimit,
    RegistryError,
)

__all__ = [
    "RETRYABLE_STATUS",
    "HostHealth",
    "Reply",
    "RetryPolicy",
    "Timeouts",
    "answered_plain_http",
    "parse_rate_limit",
    "parse_retry_after",
    "send_with_retry",
    "tls_failure",
]

#: Statuses a retry can fix. Never 401/403/404: those need a different request, not the same.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with jittered exponential backoff.

    A `Retry-After` the server sends is honoured up to `max_retry_after`; a longer one (Docker
    Hub's pull limit resets in hours) is not waited for: the failure is reported instead.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    #: Tries of a request that gets no answer at all (connect failure, timeout) before its
    #: host is marked down for the run: one retry cycle, much shorter than `attempts`.
    unanswered_attempts: int = 2

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1), or None
        when no further try should be made."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return retry_after + random.uniform(0, self.base_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    @staticmethod
    def retryable_status(status: int) -> bool:
        return status in RETRYABLE_STATUS


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long requests may take (seconds; see the module's table)."""

    connect: float = 5.0
    metadata: float = 10.0
    stall: float = 30.0

    def for_metadata(self) -> httpx.Timeout:
        """Pings, tokens, manifests, tag lists, HEADs: small answers that come in seconds.
        (Waiting for a pooled connection is not bounded here: the run's deadline bounds it.)"""
        return httpx.Timeout(self.metadata, connect=self.connect, pool=None)

    def for_blob(self) -> httpx.Timeout:
        """Blob streams: httpx's read and write timeouts apply to each read or write, so a
        transfer fails when no byte moved for `stall` seconds, however long it is."""
        return httpx.Timeout(self.stall, connect=self.connect, pool=None)


def _header_number(value: str | None) -> int | None:
    if not value:
        return None
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


def parse_rate_limit(headers: httpx.Headers, registry: str) -> RateLimit | None:
    """`ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 76;w=21600` in a response of
    `registry`; none means no limit."""
    limit = _header_number(headers.get("ratelimit-limit"))
    remaining = _header_number(headers.get("ratelimit-remaining"))
    if limit is None or remaining is None:
        return None
    return RateLimit(registry=registry, remaining=remaining, limit=limit)


@dataclass(frozen=True, slots=True)
class _Down:
    kind: str
    cause: str


class HostHealth:
    """Per run, per host (`host:port` as in URLs): the hosts found down, and why.

    Shared by every client of a run, token services and CDNs included: a host is marked down
    once a request to it went unanswered for a whole retry cycle; from then on `check` raises
    at once, with the same code, instead of letting another request go out.
    """

    def __init__(self) -> None:
        self._down: dict[str, _Down] = {}
        #: Requests refused here because their host was down (never sent), per host.
        self.refused: dict[str, int] = {}
        #: When each host was marked down (`time.monotonic()`).
        self.marked_at: dict[str, float] = {}
        #: Requests sent and not answered yet, per host: when each was sent.
        self._waiting: dict[str, dict[int, float]] = {}
        self._ids = 0

    def down(self, host: str) -> bool:
        return host in self._down

    @property
    def hosts_down(self) -> dict[str, str]:
        """Each host marked down, with its code."""
        return {host: down.kind for host, down in self._down.items()}

    def sending(self, host: str) -> int:
        """A request to `host` goes out now; `answered(host, ticket)` when its answer came."""
        self._ids += 1
        self._waiting.setdefault(host, {})[self._ids] = time.monotonic()
        return self._ids

    def answered(self, host: str, ticket: int) -> None:
        self._waiting.get(host, {}).pop(ticket, None)

    def silent_for(self, host: str) -> float:
        """How long the oldest request to `host` still without an answer has waited (0: none
        is waiting)."""
        waiting = self._waiting.get(host)
        return time.monotonic() - min(waiting.values()) if waiting else 0.0

    def mark_down(self, host: str, kind: str, cause: str) -> None:
        if host not in self._down:
            self._down[host] = _Down(kind, cause)
            self.marked_at[host] = time.monotonic()

    def cause(self, host: str, method: str = "", url: str = "") -> RegistryError | None:
        """The error of a request to `host` while it is down, or None when it is not."""
        down = self._down.get(host)
        if down is None:
            return None
        return RegistryError(
            f"{host} is down for this run (not asked again): {down.cause}",
            method=method,
            url=url,
            kind=down.kind,
            temporary=down.kind in {UNREACHABLE, TIMEOUT},
        )

    def check(self, host: str, method: str, url: str) -> None:
        """Before sending a request: raise the host's cause when it is down (and count it)."""
        error = self.cause(host, method, url)
        if error is not None:
            self.refused[host] = self.refused.get(host, 0) + 1
            raise error


# --- Applying the policy to HTTP ------------------------------------------------------------

#: Failures of the connection itself that a new attempt may not meet again.
_TRANSIENT_TRANSPORT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)

#: Bodies read into memory (manifests, tokens, tag lists, errors) are capped at this size.
MAX_BUFFERED_BODY = 8 * 1024 * 1024


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore, which wraps the ssl module's error
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_PLAIN_HTTP_MARKS = (
    "wrong_version_number",
    "wrong version number",
    "record layer failure",
    "http_request",
    "http request",
    "packet length too long",
)


def answered_plain_http(exc: BaseException) -> bool:
    """Whether `exc` is a TLS handshake that met a port speaking plain HTTP."""
    error = _ssl_error(exc)
    text = f"{error.reason or ''} {error}".lower() if error is not None else ""
    return any(mark in text for mark in _PLAIN_HTTP_MARKS)


def tls_failure(exc: BaseException) -> str | None:
    """What went wrong when `exc` is a failed TLS handshake, with the way out; else None.

    A handshake that meets a plain-HTTP port fails at once (OpenSSL's WRONG_VERSION_NUMBER,
    or "record layer failure", "http request" in other versions): no retry can help and the
    fix is a setting, so it is said at once rather than retried for seconds.
    """
    error = _ssl_error(exc)
    if error is None:
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not trusted ({error.verify_message or error.reason}); for a "
            "registry with a self-signed certificate use --insecure on the command line"
        )
    how = (
        'use --insecure on the command line, or set "tls": "disabled" for this host in the '
        'config\'s "registries"'
    )
    if answered_plain_http(exc):
        return f"TLS handshake failed: the port speaks plain HTTP, not HTTPS; {how}"
    return f"TLS handshake failed ({error.reason or error}); {how}"


@dataclass(slots=True)
class Reply:
    """A response whose body is already read (`body`), or still open for streaming."""

    response: httpx.Response
    body: bytes
    #: The pull allowance this response announced (Docker Hub's `ratelimit-*` headers), or
    #: None; named by the registry the request was sent for.
    rate_limit: RateLimit | None = None

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    def too_large(size: str) -> RegistryError:
        return RegistryError(
            f"response of {size} bytes is larger than the {limit} allowed",
            status=response.status_code,
            method=response.request.method,
            url=str(response.request.url),
            kind=RESPONSE_TOO_LARGE,
        )

    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(declared)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise too_large(f"more than {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def _unanswered(exc: httpx.TransportError, metadata: bool) -> str | None:
    """The code of a failure that means the host did not answer at all (UNREACHABLE, TIMEOUT),
    or None for one that a retry of this request may simply not meet again (a reset, a
    truncated body, a slow blob stream, a full connection pool)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        # Refused, name not resolved, no SYN-ACK in time (a failed TLS handshake is told
        # apart before: `tls_failure`).
        return UNREACHABLE
    if isinstance(exc, httpx.ReadTimeout) and metadata:
        return TIMEOUT
    return None


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc)
    if not text and isinstance(exc, httpx.TimeoutException):
        limits = exc.request.extensions.get("timeout", {}) if exc.request is not None else {}
        phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        seconds = limits.get(phase)
        text = f"nothing within {seconds:g}s" if isinstance(seconds, int | float) else ""
    return f"{type(exc).__name__}: {text or 'no detail'}"


async def send_with_retry(
    http: httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    *,
    policy: RetryPolicy,
    headers: Mapping[str, str] | None = None,
    content: bytes | AsyncIterable[bytes] | None = None,
    stream: bool = False,
    follow_redirects: bool = False,
    health: HostHealth | None = None,
    request_timeout: httpx.Timeout | None = None,
    registry: str | None = None,
) -> Reply:
    """Send one request under the retry policy.

    Retries connection failures, truncated bodies and retryable statuses, but only when the
    request body can be sent again (no body, or bytes): a streamed body is consumed by the first
    try, so its caller restarts the whole transfer instead. With `stream`, a successful
    response's body is left open for the caller (who must close it); every other body is read,
    up to MAX_BUFFERED_BODY.

    With `health`, a request to a host marked down fails at once, and a host that leaves this
    request unanswered for `policy.unanswered_attempts` tries is marked down.
    `request_timeout` (else the client's) decides what "unanswered" means; only requests
    without a streamed body or response (metadata) mark a host down by timing out.
    The reply's pull allowance is named `registry` (by default the host that answered).
    """
    replayable = content is None or isinstance(content, bytes)
    metadata = not stream and replayable
    target = url if isinstance(url, httpx.URL) else httpx.URL(url)
    attempt = 0
    unanswered = 0
    while True:
        if health is not None:
            health.check(target.netloc.decode("ascii"), method, str(target))
        attempt += 1
        response: httpx.Response | None = None
        try:
            extensions = {} if request_timeout is None else {"timeout": request_timeout.as_dict()}
            request = http.build_request(
                method, target, headers=headers, content=content, extensions=extensions
            )
            host = target.netloc.decode("ascii")
            ticket = health.sending(host) if health is not None else 0
            try:
                response = await http.send(request, stream=True, follow_redirects=follow_redirects)
            finally:
                if health is not None:
                    health.answered(host, ticket)
            body = b""
            if method == "HEAD":
                # No body, whatever Content-Length says (for a blob, its size): nothing to read
                # or cap; reading the empty body keeps the connection for the next request.
                await response.aread()
                await response.aclose()
            elif not stream or response.status_code >= 300:
                try:
                    body = await _read_capped(response, MAX_BUFFERED_BODY)
                finally:
                    await response.aclose()
        except _TRANSIENT_TRANSPORT as exc:
            if response is not None:
                await response.aclose()
            # The host that did not answer: after a redirect, not necessarily the first one.
            failed_url = exc.request.url if exc.request is not None else target
            tls = tls_failure(exc)
            if tls is not None:
                # A failed handshake (a certificate not trusted, a plain-HTTP port) is a
                # setting, not luck: said at once, and the host is down for the run.
                if health is not None:
                    health.mark_down(failed_url.netloc.decode("ascii"), TLS_ERROR, tls)
                raise RegistryError(tls, method=method, url=str(url), kind=TLS_ERROR) from None
            kind = _unanswered(exc, metadata)
            if kind is None:
                error = RegistryError(
                    _describe(exc), method=method, url=str(failed_url), temporary=True
                )
                wait = policy.delay(attempt) if replayable else None
            else:
                unanswered += 1
                host = failed_url.netloc.decode("ascii")
                cause = f"no answer ({_describe(exc)})"
                down = "; marked down for this run" if health is not None else ""
                error = RegistryError(
                    f"{host}: {cause} after {unanswered} tries{down}",
                    method=method,
                    url=str(failed_url),
                    temporary=True,
                    kind=kind,
                )
                wait = None
                if unanswered < policy.unanswered_attempts and replayable:
                    wait = policy.delay(attempt)
                if wait is None and health is not None:
                    health.mark_down(host, kind, cause)
            if wait is None:
                raise error from None
            await asyncio.sleep(wait)
            continue
        except httpx.TransportError as exc:
            raise RegistryError(_describe(exc), method=method, url=str(target)) from None
        if replayable and policy.retryable_status(response.status_code):
            remaining = _header_number(response.headers.get("ratelimit-remaining"))
            # A 429 with the pull allowance at 0 (Docker Hub) comes back in hours: report it,
            # don't wait. Any other retryable status (5xx) is retried whatever the allowance.
            spent = response.status_code == 429 and remaining == 0
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            wait = None if spent else policy.delay(attempt, retry_after)
            if wait is not None:
                await response.aclose()
                await asyncio.sleep(wait)
                continue
        announced = parse_rate_limit(
            response.headers, registry or response.request.url.netloc.decode("ascii")
        )
        return Reply(response, body, announced)
