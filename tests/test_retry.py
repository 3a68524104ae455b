"""The retry policy: Retry-After parsing, backoff bounds, and what send_with_retry repeats."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

import sync.retry
from sync.errors import RegistryError
from sync.retry import (
    RETRYABLE_STATUS,
    HostHealth,
    RetryPolicy,
    parse_retry_after,
    send_with_retry,
)
from tests.conftest import Waits

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
URL = "https://registry.test/v2/"

# --- parse_retry_after ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("7", 7.0), (" 120 ", 120.0), ("86400", 86400.0)],
)
def test_parse_retry_after_reads_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds, value


def test_parse_retry_after_reads_an_http_date_relative_to_now() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(header, now=now) == 90.0, header


def test_parse_retry_after_reads_the_rfc_example_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0


def test_parse_retry_after_a_past_date_means_no_wait() -> None:
    now = datetime(2025, 1, 2, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e3", "Wed, 99 Foo"])
def test_parse_retry_after_ignores_what_it_cannot_read(value: str | None) -> None:
    assert parse_retry_after(value) is None, f"{value!r} should be ignored"


# --- RetryPolicy.delay ----------------------------------------------------------------------


def test_delay_is_jittered_within_half_to_full_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        samples = [policy.delay(attempt) for _ in range(200)]
        for sample in samples:
            assert sample is not None, f"attempt {attempt} gave up early"
            assert ceiling / 2 <= sample <= ceiling, f"attempt {attempt}: {sample} not in range"
        assert len(set(samples)) > 1, f"attempt {attempt}: no jitter in {samples[:3]}"


def test_delay_is_none_once_attempts_are_used_up() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.1)
    assert policy.delay(1) is not None and policy.delay(2) is not None
    assert policy.delay(3) is None, "a third attempt of three must be the last"
    assert policy.delay(4) is None
    assert policy.delay(3, retry_after=0.1) is None, "Retry-After must not add attempts"


def test_delay_honours_retry_after_plus_jitter() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_retry_after=30.0)
    for _ in range(100):
        wait = policy.delay(1, retry_after=10.0)
        assert wait is not None and 10.0 <= wait <= 10.5, wait


def test_delay_refuses_a_retry_after_beyond_the_cap() -> None:
    policy = RetryPolicy(attempts=5, max_retry_after=30.0)
    assert policy.delay(1, retry_after=30.0) is not None, "exactly the cap is still waited"
    assert policy.delay(1, retry_after=30.5) is None, "Docker Hub's hours-long reset is no wait"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    assert RetryPolicy.retryable_status(status)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 405, 409, 501])
def test_statuses_never_retried(status: int) -> None:
    assert not RetryPolicy.retryable_status(status), status
    assert status not in RETRYABLE_STATUS


# --- send_with_retry ------------------------------------------------------------------------


def run_with(
    answers: list[httpx.Response | Exception],
    call: Callable[[httpx.AsyncClient], object],
) -> tuple[object, list[httpx.Request]]:
    """Serve `answers` in order (an exception is raised instead of answering)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            result = call(http)
            assert asyncio.iscoroutine(result)
            try:
                return await result
            except RegistryError as exc:
                return exc

    return asyncio.run(main()), seen


def get(http: httpx.AsyncClient) -> object:
    return send_with_retry(http, "GET", URL, policy=FAST)


def test_send_retries_503_until_success(waits: Waits) -> None:
    reply, seen = run_with([httpx.Response(503), httpx.Response(503), httpx.Response(200)], get)
    assert isinstance(reply, sync.retry.Reply) and reply.status == 200, reply
    assert len(seen) == 3, f"{len(seen)} requests for two 503s and a 200"
    assert len(waits.seconds) == 2 and all(0 < w <= 0.01 for w in waits.seconds), waits.seconds


def test_send_gives_up_after_the_policy_attempts(waits: Waits) -> None:
    reply, seen = run_with([httpx.Response(503)], get)
    assert isinstance(reply, sync.retry.Reply) and reply.status == 503
    assert len(seen) == FAST.attempts, f"{len(seen)} attempts, policy allows {FAST.attempts}"
    assert len(waits.seconds) == FAST.attempts - 1


def test_send_waits_for_retry_after_on_429(waits: Waits) -> None:
    reply, _ = run_with(
        [httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200)], get
    )
    assert isinstance(reply, sync.retry.Reply) and reply.status == 200
    assert len(waits.seconds) == 1 and 1.0 <= waits.seconds[0] <= 1.001, waits.seconds


def test_send_does_not_wait_for_a_retry_after_beyond_the_cap(waits: Waits) -> None:
    reply, seen = run_with([httpx.Response(429, headers={"Retry-After": "3600"})], get)
    assert isinstance(reply, sync.retry.Reply) and reply.status == 429
    assert len(seen) == 1 and waits.seconds == [], "an hour-long Retry-After must not be slept"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_send_never_retries_client_errors(status: int, waits: Waits) -> None:
    reply, seen = run_with([httpx.Response(status)], get)
    assert isinstance(reply, sync.retry.Reply) and reply.status == status
    assert len(seen) == 1, f"HTTP {status} was retried"


def test_send_retries_connection_failures_then_succeeds(waits: Waits) -> None:
    reply, seen = run_with(
        [httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.Response(200)], get
    )
    assert isinstance(reply, sync.retry.Reply) and reply.status == 200
    assert len(seen) == 3


def test_send_reports_a_lasting_connection_failure_as_temporary(waits: Waits) -> None:
    error, seen = run_with([httpx.ConnectError("refused")], get)
    assert isinstance(error, RegistryError), error
    assert error.temporary and error.status is None and error.code == "UNREACHABLE"
    assert "ConnectError" in str(error) and len(seen) == FAST.unanswered_attempts


def test_send_does_not_retry_a_streamed_body(waits: Waits) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data"

    def put(http: httpx.AsyncClient) -> object:
        return send_with_retry(http, "PUT", URL, policy=FAST, content=body())

    reply, seen = run_with([httpx.Response(503), httpx.Response(201)], put)
    assert isinstance(reply, sync.retry.Reply) and reply.status == 503, "a stream was replayed"
    assert len(seen) == 1
    error, seen = run_with([httpx.ReadError("reset"), httpx.Response(201)], put)
    assert isinstance(error, RegistryError) and len(seen) == 1, "a stream was replayed"


def test_send_retries_a_bytes_body_with_the_same_bytes(waits: Waits) -> None:
    def put(http: httpx.AsyncClient) -> object:
        return send_with_retry(http, "PUT", URL, policy=FAST, content=b"exact")

    _, seen = run_with([httpx.Response(500), httpx.Response(201)], put)
    assert [r.content for r in seen] == [b"exact", b"exact"]


def test_send_refuses_a_body_over_the_buffer_cap(
    waits: Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync.retry, "MAX_BUFFERED_BODY", 10)
    error, _ = run_with([httpx.Response(200, content=b"x" * 11)], get)
    assert isinstance(error, RegistryError) and "larger than" in str(error), error


# --- host health ------------------------------------------------------------------------------


def _with_health(
    health: HostHealth, *, stream: bool = False
) -> Callable[[httpx.AsyncClient], object]:
    def call(http: httpx.AsyncClient) -> object:
        return send_with_retry(http, "GET", URL, policy=FAST, health=health, stream=stream)

    return call


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "UNREACHABLE"),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "UNREACHABLE"),
        (httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"), "UNREACHABLE"),
        (httpx.ConnectTimeout(""), "UNREACHABLE"),
        (httpx.ReadTimeout(""), "TIMEOUT"),
    ],
    ids=["refused", "dns", "tls", "connect-timeout", "read-timeout"],
)
def test_a_host_without_answer_is_marked_down_after_one_retry_cycle_and_not_asked_again(
    failure: Exception, code: str, waits: Waits
) -> None:
    health = HostHealth()
    error, seen = run_with([failure], _with_health(health))
    assert isinstance(error, RegistryError) and error.code == code, error
    assert len(seen) == FAST.unanswered_attempts, f"{len(seen)} tries before giving up"
    assert health.hosts_down == {"registry.test": code}

    again, seen_again = run_with([httpx.Response(200)], _with_health(health))
    assert isinstance(again, RegistryError) and again.code == code, again
    assert "down for this run" in str(again) and again.temporary
    assert seen_again == [], "a request went to a host marked down"
    assert health.refused == {"registry.test": 1}


def test_a_stalled_blob_stream_does_not_mark_its_host_down(waits: Waits) -> None:
    health = HostHealth()
    error, _ = run_with([httpx.ReadTimeout("")], _with_health(health, stream=True))
    assert isinstance(error, RegistryError) and error.temporary, error
    assert health.hosts_down == {}, "a slow blob is not a down host"


def test_a_reset_connection_is_retried_under_the_full_policy_and_marks_nothing(
    waits: Waits,
) -> None:
    health = HostHealth()
    error, seen = run_with([httpx.ReadError("reset")], _with_health(health))
    assert isinstance(error, RegistryError) and len(seen) == FAST.attempts, error
    assert health.hosts_down == {}


def test_a_429_with_the_allowance_at_zero_is_not_retried_but_a_503_is(waits: Waits) -> None:
    spent = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
    reply, seen = run_with([httpx.Response(429, headers=spent)], get)
    assert isinstance(reply, sync.retry.Reply) and reply.status == 429 and len(seen) == 1
    assert reply.rate_limit is not None and reply.rate_limit.remaining == 0
    reply, seen = run_with([httpx.Response(503, headers=spent), httpx.Response(200)], get)
    assert isinstance(reply, sync.retry.Reply) and reply.status == 200 and len(seen) == 2


def test_a_failed_tls_handshake_is_said_at_once_and_marks_the_host_down(waits: Waits) -> None:
    failure = httpx.ConnectError("handshake failed")
    cause = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    cause.reason = "WRONG_VERSION_NUMBER"  # set by the ssl module on a real handshake failure
    failure.__cause__ = cause
    health = HostHealth()
    error, seen = run_with([failure], _with_health(health))
    assert isinstance(error, RegistryError) and error.code == "TLS_ERROR", error
    assert len(seen) == 1, "a TLS handshake failure was retried"
    assert health.hosts_down == {"registry.test": "TLS_ERROR"}
    again, seen_again = run_with([httpx.Response(200)], _with_health(health))
    assert isinstance(again, RegistryError) and again.code == "TLS_ERROR", again
    assert not again.temporary and seen_again == []
