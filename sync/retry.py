"""The one retry policy: which failures are worth another try, and how long to wait."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from sync.errors import RegistryError

__all__ = [
    "RETRYABLE_STATUS",
    "Reply",
    "RetryPolicy",
    "answered_plain_http",
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
            kind="RESPONSE_TOO_LARGE",
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
) -> Reply:
    """Send one request under the retry policy.

    Retries connection failures, truncated bodies and retryable statuses, but only when the
    request body can be sent again (no body, or bytes): a streamed body is consumed by the first
    try, so its caller restarts the whole transfer instead. With `stream`, a successful
    response's body is left open for the caller (who must close it); every other body is read,
    up to MAX_BUFFERED_BODY.
    """
    replayable = content is None or isinstance(content, bytes)
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response | None = None
        try:
            request = http.build_request(method, url, headers=headers, content=content)
            response = await http.send(request, stream=True, follow_redirects=follow_redirects)
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
            tls = tls_failure(exc)
            if tls is not None:
                raise RegistryError(tls, method=method, url=str(url), kind="TLS_ERROR") from None
            error = RegistryError(
                f"{type(exc).__name__}: {exc or 'connection failed'}",
                method=method,
                url=str(url),
                temporary=True,
            )
            wait = policy.delay(attempt) if replayable else None
            if wait is None:
                raise error from None
            await asyncio.sleep(wait)
            continue
        except httpx.TransportError as exc:
            raise RegistryError(
                f"{type(exc).__name__}: {exc}", method=method, url=str(url)
            ) from None
        spent = response.headers.get("ratelimit-remaining", "").split(";", 1)[0].strip() == "0"
        if replayable and policy.retryable_status(response.status_code) and not spent:
            # (Docker Hub's pull allowance at 0 comes back in hours: report, don't wait.)
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            wait = policy.delay(attempt, retry_after)
            if wait is not None:
                await response.aclose()
                await asyncio.sleep(wait)
                continue
        return Reply(response, body)
