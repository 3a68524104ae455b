"""What a run overlaps, against in-memory registries: the upstream tag list (for referrers) is
read while tags are compared, and a tag's compare slot is not held while it waits for its
referrers or a copy slot, so the next tags' comparisons go on meanwhile."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sync import engine as engine_module
from sync.config import parse_config
from sync.engine import RunOptions
from sync.report import Report
from sync.retry import RetryPolicy
from tests.bed.images import image_of
from tests.fake_registry import FakeRegistry, route
from tests.scenario import engine_run

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
TAGS = ["1.0", "1.1", "1.2", "1.3"]
#: How long a held request waits for what it waits for before giving up (a bound on a test
#: that would otherwise hang when the overlap is missing, not a measurement).
HOLD_S = 5.0


def _registries(*, synced: bool) -> tuple[FakeRegistry, FakeRegistry]:
    source = FakeRegistry("hub.test")
    target = FakeRegistry("quay.test")
    for i, tag in enumerate(TAGS):
        image = image_of([f"layer {i}".encode()])
        source.add_image("istio/app", image, tag=tag)
        if synced:
            target.add_image("sail-dev/app", image, tag=tag)
    return source, target


def _run(source: FakeRegistry, target: FakeRegistry, options: RunOptions | None = None) -> Report:
    config = parse_config(
        {
            "images": [
                {
                    "name": "app",
                    "upstream": f"{source.host}/istio/app",
                    "target": f"{target.host}/sail-dev/app",
                    "tags": TAGS,
                }
            ],
            "check_new_tags": False,
        }
    )
    return engine_run(config, route(source, target), policy=FAST, options=options)


def _answered_heads(fake: FakeRegistry) -> int:
    return sum(
        1 for r in fake.requests if r.method == "HEAD" and "/manifests/" in r.path and r.status
    )


def test_the_upstream_tag_list_for_referrers_is_asked_before_any_comparison_is_answered() -> None:
    source, target = _registries(synced=True)
    seen: list[int] = []

    def at_tag_list(request: httpx.Request) -> None:
        if request.url.path.endswith("/tags/list"):
            seen.append(_answered_heads(source) + _answered_heads(target))

    source.hooks.append(at_tag_list)

    report = _run(source, target)

    assert report.status == "ok", report.to_json(indent=2)
    assert seen == [0], f"tag list asked once, after {seen} manifest HEADs were answered"


def test_without_referrers_no_tag_list_is_read() -> None:
    source, target = _registries(synced=True)
    config = parse_config(
        {
            "images": [
                {
                    "name": "app",
                    "upstream": f"{source.host}/istio/app",
                    "target": f"{target.host}/sail-dev/app",
                    "tags": TAGS,
                    "referrers": False,
                }
            ],
            "check_new_tags": False,
        }
    )

    report = engine_run(config, route(source, target), policy=FAST)

    assert report.status == "ok", report.to_json(indent=2)
    assert source.matching("GET", "/tags/list") == []


def test_a_run_past_its_deadline_reads_no_tag_list() -> None:
    source, target = _registries(synced=True)

    report = _run(source, target, RunOptions(deadline=0.0))

    assert {t.action for t in report.images[0].tags} == {"deferred"}, report.to_json(indent=2)
    assert source.requests == [], [str(r) for r in source.requests]


def _hold_until_heads(fake: FakeRegistry, path_end: str, heads: int, late: list[str]) -> None:
    """Hold requests whose path ends with `path_end` until `heads` upstream manifest HEADs have
    arrived (or HOLD_S passed: then `late` says so)."""

    async def hold(request: httpx.Request) -> None:
        if not request.url.path.endswith(path_end):
            return
        waited = 0.0
        while sum(1 for r in fake.requests if r.method == "HEAD" and "/manifests/" in r.path) < (
            heads
        ):
            if waited >= HOLD_S:
                late.append(request.url.path)
                return
            await asyncio.sleep(0.01)
            waited += 0.01

    fake.hooks.append(hold)


def test_a_tag_waiting_for_its_referrers_leaves_its_compare_slot_to_the_next_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One compare slot: the tag list (which every tag's referrers wait for) is answered only
    # once every tag has been compared. Held through the referrers, the slot would keep the
    # second tag from being compared until the hold gave up.
    monkeypatch.setattr(engine_module, "COMPARE_CONCURRENCY", 1)
    source, target = _registries(synced=True)
    late: list[str] = []
    _hold_until_heads(source, "/tags/list", len(TAGS), late)

    report = _run(source, target)

    assert report.status == "ok", report.to_json(indent=2)
    assert late == [], "the tags were compared one after another's referrers"


def test_a_tag_waiting_for_a_copy_slot_leaves_its_compare_slot_to_the_next_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One compare slot, one copy slot: the first copy's index GET is answered only once every
    # tag has been compared (the others queue for the copy slot meanwhile).
    monkeypatch.setattr(engine_module, "COMPARE_CONCURRENCY", 1)
    source, target = _registries(synced=False)
    late: list[str] = []
    first = source.tag_digest("istio/app", TAGS[0])
    assert first is not None
    _hold_until_heads(source, f"/manifests/{first}", len(TAGS), late)

    report = _run(source, target, RunOptions(concurrency=1))

    assert report.status == "ok", report.to_json(indent=2)
    assert {t.action for t in report.images[0].tags} == {"copied"}
    assert late == [], "a tag queued for a copy slot held its compare slot"
