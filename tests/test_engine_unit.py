"""Engine behaviour that real registries do not show on demand, against in-memory fakes."""

from __future__ import annotations

import asyncio

import httpx

from sync.config import parse_config
from sync.engine import Engine, RunOptions
from sync.registry import HostSettings, Registries
from sync.report import Report
from sync.retry import RetryPolicy
from tests.bed.faults import FlipByte
from tests.bed.images import image_of
from tests.fake_registry import FakeRegistry, route
from tests.scenario import engine_run, run_now

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
SPENT = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}


def _sync(source: FakeRegistry, target: FakeRegistry, options: RunOptions) -> Report:
    config = parse_config(
        {
            "images": [
                {
                    "name": "app",
                    "upstream": f"{source.host}/istio/app",
                    "target": f"{target.host}/sail-dev/app",
                    "tags": ["1.0", "2.0"],
                }
            ]
        }
    )

    return engine_run(config, route(source, target), policy=FAST, options=options)


def _seeded() -> tuple[FakeRegistry, FakeRegistry]:
    source = FakeRegistry("hub.test", ratelimit=(100, 50))
    target = FakeRegistry("quay.test")
    source.add_image("istio/app", image_of([b"layer one"]), tag="1.0")
    source.add_image("istio/app", image_of([b"layer two"]), tag="2.0")
    return source, target


def test_a_blob_with_a_flipped_byte_fails_its_tag_and_only_its_tag() -> None:
    source, target = _seeded()
    bad = image_of([b"layer two"])
    source.add_rule(FlipByte(), method="GET", path=f"/blobs/{bad.layers[0]}$")

    report = _sync(source, target, RunOptions())

    by_tag = {t.tag: t for t in report.images[0].tags}
    assert by_tag["1.0"].action == "copied", report.to_json(indent=2)
    assert by_tag["2.0"].action == "failed", report.to_json(indent=2)
    error = by_tag["2.0"].error
    assert error is not None and error.code == "DIGEST_INVALID", error
    assert bad.layers[0] in error.message and "hub.test/istio/app" in error.message, error
    assert report.status == "failed"
    assert target.tag_digest("sail-dev/app", "2.0") is None, "a tag points at corrupt content"
    assert not target.has_manifest("sail-dev/app", bad.digest)
    assert not target.has_blob("sail-dev/app", bad.layers[0]), "the corrupt blob was committed"
    # Fetched again (a bit flipped in transit is worth another try), a bounded number of times.
    gets = source.matching("GET", f"/blobs/{bad.layers[0]}$")
    assert 2 <= len(gets) <= FAST.attempts, f"the corrupt blob was fetched {len(gets)} times"


def test_a_429_with_a_spent_allowance_mid_copy_defers_the_tag_and_the_rest_without_retrying() -> (
    None
):
    source, target = _seeded()
    refusal = httpx.Response(429, headers=SPENT, text="<html><b>Too Many Requests</b></html>")
    source.fail("GET", r"/manifests/", refusal)

    report = _sync(source, target, RunOptions(concurrency=1))

    tags = {t.tag: t for t in report.images[0].tags}
    assert report.status == "partial", report.to_json(indent=2)
    assert [tags[t].action for t in ("1.0", "2.0")] == ["deferred", "deferred"], report.to_json()
    assert all(t.error and t.error.code == "PULL_BUDGET" for t in tags.values()), tags
    first = min(tags.values(), key=lambda t: t.tag)
    assert first.error is not None and "429" in first.error.message, first.error
    gets = [r for r in source.requests if r.method == "GET" and "/manifests/" in r.path]
    assert len(gets) == 1, f"the spent allowance was retried or spent again: {source.log}"
    writes = [r for r in target.requests if r.method in {"PUT", "POST", "PATCH"}]
    assert writes == [], f"nothing may be written for deferred tags: {target.log}"


def test_a_429_from_an_upstream_without_pull_limits_defers_the_tag() -> None:
    source, target = _seeded()
    source.ratelimit = None
    slow_down = httpx.Response(429, headers={"retry-after": "3600"}, text="slow down")
    source.fail("GET", r"/manifests/", slow_down, slow_down)

    report = _sync(source, target, RunOptions(concurrency=1))

    actions = {t.tag: t.action for t in report.images[0].tags}
    assert set(actions.values()) == {"deferred"}, report.to_json(indent=2)
    assert report.status == "partial" and not report.retryable, report.to_json(indent=2)
    writes = [r for r in target.requests if r.method in {"PUT", "POST", "PATCH"}]
    assert not any("/manifests/" in r.path for r in writes), "a stopped copy tagged something"


def test_a_429_from_the_upstreams_token_service_defers_like_a_registry_429() -> None:
    source = FakeRegistry("hub.test", auth="bearer")
    target = FakeRegistry("quay.test")
    source.add_image("istio/app", image_of([b"layer one"]), tag="1.0")
    source.add_image("istio/app", image_of([b"layer two"]), tag="2.0")

    def token_429(request: httpx.Request) -> httpx.Response | None:
        if request.url.host == source.auth_host:
            return httpx.Response(429, headers={"retry-after": "3600"}, text="rate limited")
        return None

    source.hooks.append(token_429)

    report = _sync(source, target, RunOptions(concurrency=1))

    tags = report.images[0].tags
    assert {t.action for t in tags} == {"deferred"}, report.to_json(indent=2)
    assert {t.error.code for t in tags if t.error} == {"PULL_BUDGET"}, report.to_json(indent=2)
    assert report.status == "partial", report.to_json(indent=2)


def test_a_429_from_the_target_fails_the_tag_and_is_retryable() -> None:
    source, target = _seeded()
    target.fail("HEAD", r"/manifests/", *[httpx.Response(429, headers={"retry-after": "3600"})] * 2)

    report = _sync(source, target, RunOptions(concurrency=1))

    failed = [t for t in report.images[0].tags if t.action == "failed"]
    assert failed and all(t.error and t.error.code == "TOOMANYREQUESTS" for t in failed), (
        report.to_json(indent=2)
    )
    assert report.status == "failed" and report.retryable, report.to_json(indent=2)


def test_a_5xx_is_retried_even_when_the_pull_allowance_reads_zero() -> None:
    source, target = _seeded()
    source.ratelimit = (100, 50)
    source.fail("HEAD", r"/manifests/1.0$", httpx.Response(503, headers=SPENT))

    report = _sync(source, target, RunOptions(concurrency=1, pull_floor=0))

    tags = {t.tag: t for t in report.images[0].tags}
    assert tags["1.0"].action == "copied", report.to_json(indent=2)
    heads = source.matching("HEAD", r"/manifests/1.0$")
    assert len(heads) == 2, source.log


def test_permanent_failures_only_are_not_retryable() -> None:
    source, target = _seeded()
    config_tags = ["1.0", "3.0"]  # 3.0 does not exist upstream
    config = parse_config(
        {
            "images": [
                {
                    "name": "app",
                    "upstream": f"{source.host}/istio/app",
                    "target": f"{target.host}/sail-dev/app",
                    "tags": config_tags,
                }
            ]
        }
    )

    async def main() -> Report:
        registries = Registries(
            lambda _host: HostSettings(), policy=FAST, transport=route(source, target)
        )
        async with registries:
            return await Engine(config, registries).run(RunOptions())

    report = run_now(main())

    assert report.status == "failed" and not report.retryable, report.to_json(indent=2)


def test_the_pull_floor_counts_pulls_claimed_by_copies_under_way() -> None:
    source, target = _seeded()
    source.ratelimit = (100, 12)  # one copy may start (12 >= floor 9), not a second (12 - 4 < 9)

    report = _sync(source, target, RunOptions(concurrency=2, pull_floor=9))

    actions = sorted(t.action for t in report.images[0].tags)
    assert actions == ["copied", "deferred"], report.to_json(indent=2)


def test_a_hard_deadline_cuts_a_copy_off_and_the_report_still_comes() -> None:
    source, target = _seeded()

    async def stall(request: httpx.Request) -> httpx.Response | None:
        if request.method == "GET" and "/blobs/" in request.url.path:
            await asyncio.sleep(5)
        return None

    source.hooks.append(stall)

    report = _sync(source, target, RunOptions(hard_deadline=0.3))

    assert {t.action for t in report.images[0].tags} == {"failed"}, report.to_json(indent=2)
    assert {t.error.code for t in report.images[0].tags if t.error} == {"DEADLINE"}
    assert target.tag_digest("sail-dev/app", "1.0") is None, "a cut-off copy was tagged"


def test_referrers_held_up_by_a_silent_upstream_at_the_hard_stop_fail_with_timeout() -> None:
    source, target = _seeded()
    for tag, layer in (("1.0", b"layer one"), ("2.0", b"layer two")):
        target.add_image("sail-dev/app", image_of([layer]), tag=tag)

    async def hang(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/tags/list"):
            await asyncio.sleep(3600)
        return None

    source.hooks.append(hang)

    # The tag list (for the referrers) hangs past SILENT_SECONDS before the hard stop.
    report = _sync(source, target, RunOptions(hard_deadline=2.6))

    tags = report.images[0].tags
    assert {(t.state, t.action) for t in tags} == {("up_to_date", "failed")}, report.to_json()
    assert {t.error.code for t in tags if t.error} == {"TIMEOUT"}, report.to_json(indent=2)
    assert report.retryable is True
