"""Fan-out without running tasks: settings, units of work, task names, and the dispatch the
function answers, through the real google-cloud-tasks client against the local Cloud Tasks
server (which here delivers nothing: `max_concurrent=0`). End to end, with deliveries:
test_fanout_e2e.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync import cli, fanout, service
from sync.config import load_config
from sync.errors import ConfigError
from tests.fake_cloud_tasks import FakeCloudTasks

pytestmark = pytest.mark.usefixtures("restore_loggers")

QUEUE = "projects/test-project/locations/europe-west1/queues/image-sync"
URL = "https://europe-west1-test-project.cloudfunctions.net/image-sync"
INVOKER = "image-sync-invoker@test-project.iam.gserviceaccount.com"
SCHEDULED = "2026-12-01T02:00:00Z"
CONFIG: dict[str, Any] = {
    "images": [
        {
            "name": "helloworld-v1",
            "upstream": "docker.io/istio/examples-helloworld-v1",
            "target": "quay.io/sail-dev/examples-helloworld-v1",
            "tags": ["1.0", "latest"],
        },
        {
            "name": "httpbin",
            "upstream": "docker.io/istio/examples-httpbin",
            "target": "quay.io/sail-dev/examples-httpbin",
            "tags": ["latest"],
            "check_new_tags": False,
        },
        {
            "name": "tcp-echo",
            "upstream": "docker.io/istio/tcp-echo-server",
            "target": "quay.io/sail-dev/tcp-echo-server",
            "tags": ["1.2"],
        },
    ],
    "check_new_tags": True,
}
NAMES = [image["name"] for image in CONFIG["images"]]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "image-sync-config.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture
def tasks() -> Iterator[FakeCloudTasks]:
    with FakeCloudTasks(queues=[QUEUE], max_concurrent=0) as fake:
        yield fake


def _env(config_path: Path, tasks: FakeCloudTasks) -> dict[str, str]:
    return {
        "IMAGE_SYNC_CONFIG": str(config_path),
        "FANOUT_QUEUE": QUEUE,
        "FANOUT_URL": URL,
        "FANOUT_SERVICE_ACCOUNT": INVOKER,
        "CLOUD_TASKS_ENDPOINT": tasks.endpoint,
    }


def _scheduled(body: bytes = b"{}", at: str | None = SCHEDULED) -> service.Incoming:
    return service.Incoming(
        method="POST",
        content_type="application/json",
        body=body,
        scheduler_job="image-sync-schedule",
        schedule_time=at,
    )


def _answer(incoming: service.Incoming, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    answer = service.handle(incoming, env)
    body: dict[str, Any] = json.loads(answer.body)
    return answer.status, body


# -- settings ------------------------------------------------------------------------------------


def test_without_any_fanout_variable_there_is_no_fanout() -> None:
    assert fanout.FanoutSettings.from_env({"GOOGLE_CLOUD_PROJECT": "p"}) is None


def test_a_partial_or_malformed_fanout_setting_names_each_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        fanout.FanoutSettings.from_env({"FANOUT_QUEUE": "my-queue", "FANOUT_URL": URL})
    problems = caught.value.problems
    assert any(p.startswith("FANOUT_SERVICE_ACCOUNT: not set") for p in problems), problems
    assert any(p.startswith("FANOUT_QUEUE: expected projects/") for p in problems), problems
    assert not any(p.startswith("FANOUT_URL") for p in problems), problems


def test_dispatch_deadline_is_the_run_budget_within_cloud_tasks_bounds() -> None:
    assert fanout.dispatch_deadline(service.platform_timeout_needed(1500)) == 1770
    assert fanout.dispatch_deadline(5000) == 1800
    assert fanout.dispatch_deadline(3) == 15


# -- units and names -----------------------------------------------------------------------------


def test_plan_is_one_unit_per_image_forwarding_the_request_fields(config_path: Path) -> None:
    config = load_config(config_path)
    units = fanout.plan(config, dry_run=True, discover=False)
    assert [u.image for u in units] == NAMES
    assert units[1].body == {"images": ["httpbin"], "dry_run": True, "discover": False}


def test_plan_gives_each_image_only_the_tags_that_can_concern_it(config_path: Path) -> None:
    config = load_config(config_path)
    units = {u.image: u.body.get("tags") for u in fanout.plan(config, tags=["latest", "9.9"])}
    # helloworld and tcp-echo discover tags (9.9 may be found); httpbin only has `latest`.
    assert units == {
        "helloworld-v1": ["latest", "9.9"],
        "httpbin": ["latest"],
        "tcp-echo": ["latest", "9.9"],
    }
    no_discovery = fanout.plan(config, tags=["1.2"], discover=False)
    assert [(u.image, u.body["tags"]) for u in no_discovery] == [("tcp-echo", ["1.2"])]


def test_task_ids_repeat_for_one_schedule_time_and_differ_otherwise(config_path: Path) -> None:
    config = load_config(config_path)
    (unit, *_) = fanout.plan(config)
    (dry, *_) = fanout.plan(config, dry_run=True)
    one = fanout.task_id(unit, SCHEDULED)
    assert one == fanout.task_id(unit, SCHEDULED), "a Scheduler retry must meet the same name"
    assert one != fanout.task_id(unit, "2026-12-02T02:00:00Z"), "the next day is a new run"
    assert one != fanout.task_id(dry, SCHEDULED), "a dry run is another kind of task"
    assert "-dry-" in fanout.task_id(dry, SCHEDULED) and "-sync-" in one
    manual = {fanout.task_id(unit, None) for _ in range(5)}
    assert len(manual) == 5, "manual requests are never deduplicated"
    for task in [one, *manual]:
        # Cloud Tasks: letters, digits, '-', '_', at most 500; a hash first, not a timestamp.
        assert re.fullmatch(r"[0-9a-f]{16}-[A-Za-z0-9_-]{1,480}", task), task
    odd = fanout.Unit("a.b/c" * 60, {"images": ["x"]})
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", fanout.task_id(odd, SCHEDULED))


# -- the function's dispatch ---------------------------------------------------------------------


def test_a_scheduled_request_creates_one_named_task_per_image_and_a_retry_none(
    config_path: Path, tasks: FakeCloudTasks
) -> None:
    env = _env(config_path, tasks)
    status, answer = _answer(_scheduled(b'{"dry_run": true, "tags": ["latest"]}'), env)

    assert status == 200, answer
    assert answer["status"] == "ok" and answer["errors"] == [] and answer["dry_run"] is True
    assert [d["image"] for d in answer["dispatched"]] == NAMES
    assert not any(d["already"] for d in answer["dispatched"])
    # Created concurrently: in any order.
    by_name = {t.name: t for t in tasks.tasks}
    created = [by_name[d["task"]] for d in answer["dispatched"]]
    assert len(by_name) == 3
    assert all(t.name.startswith(f"{QUEUE}/tasks/") for t in created)
    for name, task in zip(NAMES, created, strict=True):
        assert task.json_body() == {
            "images": [name],
            "dry_run": True,
            "discover": True,
            "tags": ["latest"],
        }
        assert task.url == URL and task.method == "POST"
        assert task.oidc == {"serviceAccountEmail": INVOKER, "audience": URL}
        assert task.dispatch_deadline == 1770, "the function's whole run budget"

    again_status, again = _answer(_scheduled(b'{"dry_run": true, "tags": ["latest"]}'), env)

    assert again_status == 200 and again["status"] == "ok"
    assert [d["already"] for d in again["dispatched"]] == [True] * 3
    assert [d["task"] for d in again["dispatched"]] == [t.name for t in created]
    assert len(tasks.tasks) == 3


def test_manual_requests_get_new_tasks_every_time(config_path: Path, tasks: FakeCloudTasks) -> None:
    env = _env(config_path, tasks)
    manual = service.Incoming(method="GET", query=(("dry_run", "true"),))
    for _ in range(2):
        status, answer = _answer(manual, env)
        assert status == 200 and not any(d["already"] for d in answer["dispatched"]), answer
    assert len(tasks.tasks) == 6


def test_a_refused_enqueue_answers_500_and_the_retry_creates_only_what_is_missing(
    config_path: Path, tasks: FakeCloudTasks, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(config_path, tasks)
    tasks.fail_creates(403)

    status, answer = _answer(_scheduled(), env)

    assert status == 500, "Cloud Scheduler retries the dispatch"
    assert answer["status"] == "failed"
    (error,) = answer["errors"]
    assert error["code"] == "DISPATCH_FAILED" and error["image"] in NAMES
    assert "roles/cloudtasks.enqueuer" in error["message"] and INVOKER in error["message"]
    assert len(answer["dispatched"]) == 2
    summary = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if '"event": "summary"' in line
    ]
    assert [(s["status"], s["severity"], s["trigger"], s["kind"]) for s in summary] == [
        ("failed", "ERROR", "scheduler", "dispatch")
    ], "a dispatch is no run: the no-run alert must not count it"
    assert summary[0]["dispatch"] == {"tasks": 3, "created": 2, "already": 0, "failed": 1}

    status, retry = _answer(_scheduled(), env)

    assert status == 200 and retry["errors"] == []
    already = {d["image"]: d["already"] for d in retry["dispatched"]}
    assert already == {name: name != error["image"] for name in NAMES}
    assert len(tasks.tasks) == 3


def test_a_request_delivered_by_cloud_tasks_never_fans_out_again(
    tmp_path: Path, tasks: FakeCloudTasks
) -> None:
    path = tmp_path / "empty.json"
    path.write_text('{"images": []}')
    env = _env(path, tasks)
    from_task = service.Incoming(method="POST", task_name="0123-sync-manual-x")

    status, report = _answer(from_task, env)

    assert status == 200 and "summary" in report and "dispatched" not in report, report
    status, dispatch = _answer(service.Incoming(method="POST"), env)
    assert status == 200 and dispatch["dispatched"] == [], dispatch
    assert tasks.create_calls == 0


def test_half_configured_fanout_is_a_config_error_not_a_silent_single_run(
    config_path: Path, tasks: FakeCloudTasks
) -> None:
    env = _env(config_path, tasks)
    del env["FANOUT_URL"]

    status, answer = _answer(_scheduled(), env)

    assert status == 500 and answer["error"]["code"] == "CONFIG_INVALID", answer
    assert "FANOUT_URL" in answer["error"]["message"]
    assert tasks.create_calls == 0


# -- CLI -----------------------------------------------------------------------------------------


def test_sync_plan_prints_one_line_per_image_without_network(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"IMAGE_SYNC_CONFIG": str(config_path)}
    assert cli.main(["sync", "--plan", "--dry-run"], env) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == NAMES
    assert json.loads(lines[0].split(" ", 1)[1]) == {
        "images": ["helloworld-v1"],
        "dry_run": True,
        "discover": True,
    }

    assert cli.main(["--json", "sync", "--plan"], env) == 0
    units = json.loads(capsys.readouterr().out)
    assert [u["image"] for u in units] == NAMES
    assert units[2]["body"] == {"images": ["tcp-echo"], "dry_run": False, "discover": True}
