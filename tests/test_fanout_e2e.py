"""Fan-out end to end: Cloud Scheduler's POST to the function under functions-framework creates one
Cloud Task per image in the local Cloud Tasks server (through the real google-cloud-tasks client),
which delivers each task back to the function as its own HTTP request: one ordinary one-image run.

20 images (a 2-platform OCI index and a 2-platform Docker list each) on a local upstream registry,
plus one image whose upstream cannot be reached. The scheduled dispatch runs once for the module;
each test reads one side of what happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer, start_registry
from tests.fake_cloud_tasks import FakeCloudTasks, FakeTask
from tests.function_bed import (
    INVOKER,
    QUEUE,
    FunctionServer,
    free_port,
    function_server,
    log_lines,
    scheduler_headers,
    write_config,
)

pytestmark = pytest.mark.integration

IMAGES = 20
BROKEN = "unreachable-upstream"
SCHEDULED = "2026-12-01T02:00:00Z"
ATTEMPTS = 3


@dataclass
class Run:
    hub: RegistryServer
    quay: RegistryServer
    tasks: FakeCloudTasks
    server: FunctionServer
    upstream: dict[str, dict[str, Image]]  # image name -> tag -> image
    first: httpx.Response
    second: httpx.Response


def _repo(name: str) -> str:
    return f"istio/{name}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("fanout")
    hub = start_registry("anonymous", base_dir=base / "hub")
    quay: RegistryServer | None = None
    try:
        quay = start_registry("anonymous", base_dir=base / "quay")
        upstream: dict[str, dict[str, Image]] = {}
        with RawClient(hub) as raw:
            for i in range(IMAGES):
                name = f"sample-{i:02d}"
                upstream[name] = {
                    "1.0": images.oci_index(
                        1000 + i, platforms=("linux/amd64", "linux/arm64"), layers=1, layer_size=256
                    ),
                    "latest": images.docker_manifest_list(2000 + i, layers=1, layer_size=256),
                }
                for tag, image in upstream[name].items():
                    raw.push_image(_repo(name), tag, image)
        dead = f"127.0.0.1:{free_port()}"  # nothing listens there
        entries: list[dict[str, object]] = [
            {
                "name": name,
                "upstream": f"{hub.host}/{_repo(name)}",
                "target": f"{quay.host}/sail-dev/{name}",
                "tags": list(tags),
            }
            for name, tags in upstream.items()
        ]
        entries.append(
            {
                "name": BROKEN,
                "upstream": f"{dead}/istio/gone",
                "target": f"{quay.host}/sail-dev/gone",
                "tags": ["1.0"],
            }
        )
        config = write_config(base / "image-sync-config.json", entries, [hub.host, quay.host, dead])
        with (
            FakeCloudTasks(
                queues=[QUEUE], max_concurrent=4, max_attempts=ATTEMPTS, min_backoff=0.1
            ) as tasks,
            function_server(config, base / "function", tasks=tasks, threads=6) as server,
            httpx.Client(timeout=120, trust_env=False) as client,
        ):
            first = client.post(server.url, content=b"{}", headers=scheduler_headers(SCHEDULED))
            assert tasks.wait_idle(300), "the tasks did not finish in 5 minutes"
            second = client.post(server.url, content=b"{}", headers=scheduler_headers(SCHEDULED))
            assert tasks.wait_idle(60)
            yield Run(hub, quay, tasks, server, upstream, first, second)
    finally:
        if quay is not None:
            quay.stop()
        hub.stop()


def _by_image(tasks: list[FakeTask]) -> dict[str, FakeTask]:
    out: dict[str, FakeTask] = {}
    for task in tasks:
        body = task.json_body()
        assert isinstance(body, dict), task
        (name,) = body["images"]
        assert name not in out, f"two tasks for {name}"
        out[name] = task
    return out


def test_a_scheduled_call_creates_one_task_per_image_and_answers_what_it_dispatched(
    run: Run,
) -> None:
    answer = run.first.json()
    assert run.first.status_code == 200, answer
    assert answer["status"] == "ok" and answer["errors"] == []
    names = [*run.upstream, BROKEN]
    assert [d["image"] for d in answer["dispatched"]] == names, "config order, every image"
    assert all(d["already"] is False for d in answer["dispatched"])
    tasks = _by_image(run.tasks.tasks)
    assert sorted(tasks) == sorted(names)
    assert {d["task"] for d in answer["dispatched"]} == {t.name for t in run.tasks.tasks}
    for name, task in tasks.items():
        assert task.json_body() == {"images": [name], "dry_run": False, "discover": True}
        assert task.method == "POST" and task.url == run.server.url
        assert task.headers.get("Content-Type") == "application/json"
        assert task.oidc == {"serviceAccountEmail": INVOKER, "audience": run.server.url}
        assert task.dispatch_deadline == 1770, "the function's whole run budget"


def test_every_task_ran_its_own_image_and_every_tag_landed_digest_exact(run: Run) -> None:
    tasks = _by_image(run.tasks.tasks)
    with RawClient(run.quay) as target, RawClient(run.hub) as source:
        for name, tags in run.upstream.items():
            task = tasks[name]
            assert task.state == "succeeded" and len(task.attempts) == 1, (name, task.attempts)
            report: dict[str, Any] = httpx.Response(200, content=task.attempts[0].body).json()
            assert report["status"] == "ok", report
            assert [image["name"] for image in report["images"]] == [name]
            for tag, image in tags.items():
                repo = f"sail-dev/{name}"
                assert target.head_manifest(repo, tag) == image.digest, f"{name}:{tag}"
                assert target.verify_image(repo, tag) == image.all_digests()
                assert source.head_manifest(_repo(name), tag) == image.digest


def test_a_task_whose_image_fails_is_retried_and_its_failure_is_in_its_own_report(
    run: Run,
) -> None:
    task = _by_image(run.tasks.tasks)[BROKEN]
    assert task.state == "failed"
    assert [a.status for a in task.attempts] == [500] * ATTEMPTS, "5xx is retried to the limit"
    for attempt in task.attempts:
        report = httpx.Response(200, content=attempt.body).json()
        assert report["status"] == "failed" and report["retryable"] is True, report
        ((image),) = report["images"]
        assert image["name"] == BROKEN
        (tag,) = image["tags"]
        assert tag["action"] == "failed" and tag["error"]["code"] == "UNREACHABLE", tag
    others = [t for name, t in _by_image(run.tasks.tasks).items() if name != BROKEN]
    assert all(len(t.attempts) == 1 for t in others), "one image's failure touched another"


def test_a_second_post_for_the_same_schedule_time_creates_nothing_new(run: Run) -> None:
    answer = run.second.json()
    assert run.second.status_code == 200, answer
    assert answer["status"] == "ok"
    assert all(d["already"] is True for d in answer["dispatched"]), answer["dispatched"]
    assert {d["task"] for d in answer["dispatched"]} == {
        d["task"] for d in run.first.json()["dispatched"]
    }
    assert len(run.tasks.tasks) == IMAGES + 1, "a task was created twice"


def test_the_dispatch_and_every_task_run_write_their_own_summary_line(run: Run) -> None:
    lines = log_lines(run.server.output())
    summaries = [line for line in lines if line.get("event") == "summary"]
    dispatches = [line for line in summaries if "dispatch" in line]
    assert len(dispatches) == 2, dispatches
    first, second = dispatches
    assert first["status"] == "ok" and first["trigger"] == "scheduler"
    assert first["images"] == [*run.upstream, BROKEN]
    assert first["dispatch"] == {
        "tasks": IMAGES + 1,
        "created": IMAGES + 1,
        "already": 0,
        "failed": 0,
    }
    assert second["dispatch"]["already"] == IMAGES + 1 and second["dispatch"]["created"] == 0
    task_runs = [line for line in summaries if "dispatch" not in line]
    assert len(task_runs) == IMAGES + ATTEMPTS, "one summary per delivery"
    assert all(line.get("task") for line in task_runs), "a task run's lines name its task"
    assert {line["trigger"] for line in task_runs} == {"task"}
    assert sorted({line["image"] for line in task_runs}) == sorted([*run.upstream, BROKEN])
    failed = [line for line in task_runs if line["status"] == "failed"]
    assert len(failed) == ATTEMPTS
