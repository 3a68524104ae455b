"""A registry that breaks: the run ends inside its deadline, complete, naming the real cause.

Real servers started here, on loopback: one that accepts connections and never answers; a real
registry behind the fault proxy that answers the ping and then hangs on everything else; one
that hangs mid-blob; a refused port. A host name that does not resolve is simulated in process
(`socket.getaddrinfo` patched for one `.invalid` name: no DNS query leaves the machine). Each
run mirrors several images with discovery on; the target is a real Distribution registry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.config import Config, parse_config
from sync.engine import Engine, RunOptions, registries_for
from sync.registry import Registries
from sync.report import Report
from sync.retry import RetryPolicy, Timeouts
from tests.bed import images
from tests.bed.faults import Delay, StallBody
from tests.bed.proxy import FaultProxy
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer, start_registry
from tests.bed.silent import (
    UNRESOLVABLE,
    SilentServer,
    mirror_config,
    refused_host,
    unresolvable,
)
from tests.function_bed import function_server

#: Short request timeouts, so that a hung host is found out in about two seconds.
QUICK = Timeouts(connect=1.0, metadata=1.0, stall=30.0)
IMAGES, TAGS = 3, 2


def _config(upstream: str, target: str, *, discover: bool = True) -> Config:
    return parse_config(mirror_config(upstream, target, IMAGES, TAGS, discover=discover))


@dataclass
class Outcome:
    report: Report
    took: float  # wall time of the whole run, clients included
    began: float  # time.monotonic() when Engine.run was called
    registries: Registries
    left: set[asyncio.Task[Any]]  # tasks still there after the report


def _run(config: Config, options: RunOptions, *, timeouts: Timeouts = QUICK) -> Outcome:
    """One run, and what is left of it."""
    began = 0.0

    async def go() -> tuple[Report, Registries, set[asyncio.Task[Any]]]:
        nonlocal began
        async with registries_for(config, None, timeouts=timeouts) as registries:
            began = time.monotonic()
            report = await Engine(config, registries).run(options)
            left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
            return report, registries, left

    started = time.monotonic()
    report, registries, left = asyncio.run(go())
    return Outcome(report, time.monotonic() - started, began, registries, left)


def _codes(report: Report) -> tuple[set[str], set[str], set[str]]:
    """The tags' actions, the tags' error codes and the images' discovery error codes."""
    tags = list(report.all_tags())
    return (
        {t.action for t in tags},
        {t.error.code for t in tags if t.error},
        {i.discovery_error.code if i.discovery_error else "none" for i in report.images},
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry("anonymous", base_dir=tmp_path_factory.mktemp("host-down-target"))
    yield server
    server.stop()


# -- a host that is down -----------------------------------------------------------------------


def _assert_failed_with(report: Report, code: str) -> None:
    actions, codes, discovery = _codes(report)
    assert len(list(report.all_tags())) == IMAGES * TAGS, report.to_json(indent=2)
    assert actions == {"failed"}, f"every tag must fail, none deferred: {report.to_json(indent=2)}"
    assert codes == {code}, report.to_json(indent=2)
    assert discovery == {code}, report.to_json(indent=2)
    assert report.status == "failed" and report.retryable, report.to_json(indent=2)


@pytest.mark.integration
def test_a_host_that_accepts_and_never_answers_fails_every_tag_with_timeout_once(
    target: RegistryServer,
) -> None:
    silent = SilentServer()
    try:
        config = _config(silent.host, target.host)
        run = _run(config, RunOptions(deadline=20, hard_deadline=25))
    finally:
        silent.close()

    _assert_failed_with(run.report, "TIMEOUT")
    assert run.took < 2 * QUICK.metadata + 3, f"a hung host took {run.took:.1f}s to give up on"
    # One ping and its one retry reached the host; then it was down: nothing more was sent.
    assert silent.accepted == RetryPolicy().unanswered_attempts, silent.accepted
    assert run.registries.health.refused.get(silent.host, 0) > 0
    assert not run.left, f"tasks left running after the report: {run.left}"


@pytest.mark.integration
def test_a_refused_port_fails_every_tag_with_unreachable_in_seconds(
    target: RegistryServer,
) -> None:
    host = refused_host()
    run = _run(_config(host, target.host), RunOptions(deadline=20))

    _assert_failed_with(run.report, "UNREACHABLE")
    assert run.took < 5, f"a refused port took {run.took:.1f}s"
    assert run.registries.health.hosts_down == {host: "UNREACHABLE"}


@pytest.mark.integration
def test_a_name_that_does_not_resolve_fails_every_tag_with_unreachable_asking_once(
    target: RegistryServer,
) -> None:
    host = f"{UNRESOLVABLE}:5000"
    with unresolvable() as asked:
        run = _run(_config(host, target.host), RunOptions(deadline=20))

    _assert_failed_with(run.report, "UNREACHABLE")
    assert run.took < 5, f"an unresolvable name took {run.took:.1f}s"
    assert len(asked) == RetryPolicy().unanswered_attempts, asked
    message = next(t.error.message for t in run.report.all_tags() if t.error)
    assert UNRESOLVABLE in message, message


@pytest.mark.integration
def test_a_registry_that_answers_the_ping_then_hangs_fails_its_tags_with_timeout(
    target: RegistryServer, registry_factory: RegistryFactory
) -> None:
    upstream = registry_factory("anonymous")
    with FaultProxy(upstream) as proxy:
        proxy.add_rule(Delay(3600), path=r"^/v2/.+")  # everything but the ping hangs
        run = _run(_config(proxy.host, target.host), RunOptions(deadline=20, hard_deadline=25))
        log = proxy.log()

    _assert_failed_with(run.report, "TIMEOUT")
    assert run.took < 2 * QUICK.metadata + 3, f"hung manifests took {run.took:.1f}s to give up"
    marked = run.registries.health.marked_at[proxy.host]
    late = [r for r in log if r.time > marked + 0.25]
    assert late == [], f"requests sent to the host after it was marked down: {late}"
    assert not run.left, f"tasks left running after the report: {run.left}"


@pytest.mark.integration
def test_tags_held_up_by_a_hung_host_at_the_hard_stop_fail_with_timeout_not_deferred(
    target: RegistryServer,
) -> None:
    # The hard stop comes before the host's timeouts: one tag at a time, the rest waiting.
    slow = Timeouts(connect=1.0, metadata=10.0, stall=30.0)
    with SilentServer() as silent:
        run = _run(
            _config(silent.host, target.host, discover=False),
            RunOptions(deadline=1.0, hard_deadline=3.0, concurrency=1),
            timeouts=slow,
        )

    actions, codes, _ = _codes(run.report)
    assert actions == {"failed"} and codes == {"TIMEOUT"}, run.report.to_json(indent=2)
    assert run.report.retryable
    assert run.took < 3.0 + 3, f"the report came {run.took:.1f}s after the start"
    assert not run.left, f"tasks left running after the report: {run.left}"


# -- the deadline --------------------------------------------------------------------------------


def test_a_blob_hung_mid_stream_is_cut_off_at_the_hard_stop_and_nothing_is_written_after(
    registry_factory: RegistryFactory,
) -> None:
    upstream = registry_factory("anonymous")
    target = registry_factory("anonymous")
    with RawClient(upstream) as raw:
        for i in range(2):
            raw.push_image(f"istio/app{i}", "1.0", images.oci_index(900 + i, layer_size=64 * 1024))
    hard = 2.0
    with FaultProxy(upstream) as up, FaultProxy(target) as down:
        up.add_rule(StallBody(after_bytes=1000), path=r"^/v2/.+/blobs/sha256:", method="GET")
        config = parse_config(
            {
                "images": [
                    {
                        "name": f"app{i}",
                        "upstream": f"{up.host}/istio/app{i}",
                        "target": f"{down.host}/sail-dev/app{i}",
                        "tags": ["1.0"],
                    }
                    for i in range(2)
                ],
                "check_new_tags": False,
                "registries": {up.host: {"tls": "disabled"}, down.host: {"tls": "disabled"}},
            }
        )
        run = _run(config, RunOptions(deadline=0.5, hard_deadline=hard))
        ended = time.monotonic()
        time.sleep(0.5)  # anything still on its way to the target would arrive now
        writes = [r for r in down.log() if r.method in {"PUT", "POST", "PATCH"}]
        deletes = [r for r in down.log() if r.method == "DELETE"]

    report = run.report
    tags = list(report.all_tags())
    assert {t.action for t in tags} == {"failed"}, report.to_json(indent=2)
    assert {t.error.code for t in tags if t.error} == {"DEADLINE"}, report.to_json(indent=2)
    assert all(t.error and "copy cut off" in t.error.message for t in tags)
    assert report.retryable, report.to_json(indent=2)
    assert run.took < hard + 3, f"the report came {run.took:.1f}s after the start"
    assert not run.left, f"tasks left running after the report: {run.left}"
    late = [r for r in writes if r.time > run.began + hard + 0.05]
    assert late == [], f"writes started after the hard stop: {late}"
    assert writes, "the copies never started their uploads: the test proves nothing"
    assert deletes, "the cut-off uploads were not cancelled"
    assert all(r.time <= ended for r in writes)
    with RawClient(target) as raw:
        for i in range(2):
            assert raw.head_manifest(f"sail-dev/app{i}", "1.0") is None, "a cut-off copy tagged"


# -- the function answers in time ------------------------------------------------------------------


@pytest.mark.integration
def test_the_function_answers_its_report_in_time_with_a_hung_upstream(
    target: RegistryServer, tmp_path: Path
) -> None:
    silent = SilentServer()
    deadline = 2.0
    config = mirror_config(silent.host, target.host, IMAGES, TAGS)
    config_path = tmp_path / "image-sync-config.json"
    config_path.write_text(json.dumps(config))
    try:
        with function_server(
            config_path,
            tmp_path,
            tasks=None,
            threads=2,
            extra_env={"SYNC_DEADLINE_SECONDS": str(deadline)},
        ) as server:
            started = time.monotonic()
            with httpx.Client(timeout=60, trust_env=False) as client:
                response = client.post(
                    server.url, json={}, headers={"User-Agent": "Google-Cloud-Scheduler"}
                )
            took = time.monotonic() - started
    finally:
        silent.close()

    report = response.json()
    # The hard stop of a 2 s budget is 5 s later; the answer must not wait for the 10 s
    # metadata timeouts of the hung host.
    assert took < deadline + 5 + 3, f"answered after {took:.1f}s"
    assert response.status_code == 500, report
    assert report["status"] == "failed" and report["retryable"] is True, report
    entries = [t for image in report["images"] for t in image["tags"]]
    assert len(entries) == IMAGES * TAGS, report
    assert {t["action"] for t in entries} == {"failed"}, report
    # Cut off by the hard stop while the host had not answered: its cause, not the deadline.
    assert {t["error"]["code"] for t in entries} == {"TIMEOUT"}, report
    assert {i["discovery_error"]["code"] for i in report["images"]} == {"TIMEOUT"}, report
