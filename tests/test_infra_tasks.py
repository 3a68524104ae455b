"""Static checks of the fan-out in infra/ (tasks.tf): the queue and its limits, IAM scoped to the
queue and to the invoker account, the function's capacity and environment, and that a failed
dispatch's summary line is one the failure alert counts. Parsed with python-hcl2; nothing talks
to Google Cloud (the dispatch goes to the local Cloud Tasks server)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from sync import fanout, service
from tests.fake_cloud_tasks import FakeCloudTasks
from tests.test_infra import (
    condition_of,
    filter_clauses,
    metric_filter,
    policy_with,
    run_metric,
    terraform,
)

pytestmark = pytest.mark.usefixtures("restore_loggers")

INFRA = Path(__file__).resolve().parent.parent / "infra"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
FANOUT_COUNT = "${var.fanout_enabled ? 1 : 0}"


def _parse() -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    locals_: dict[str, Any] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed: dict[str, Any] = hcl2.load(handle, serialization_options=OPTIONS)
        for item in parsed.get("resource", []):
            for rtype, named in item.items():
                for name, body in named.items():
                    resources[(rtype, name)] = body
        for item in parsed.get("locals", []):
            locals_.update(item)
    return resources, locals_


RESOURCES, LOCALS = _parse()


def _only(rtype: str) -> dict[str, Any]:
    found = [body for (kind, _), body in RESOURCES.items() if kind == rtype]
    assert len(found) == 1, f"expected one {rtype}, found {len(found)}"
    return found[0]


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"{name} should occur once: {blocks!r}"
    block: dict[str, Any] = blocks[0]
    return block


def test_the_queue_exists_only_with_fanout_and_has_rate_limits_and_retries() -> None:
    queue = _only("google_cloud_tasks_queue")
    assert queue["count"] == FANOUT_COUNT
    assert queue["location"] == "${var.region}" and queue["project"] == "${var.project_id}"
    limits = _block(queue, "rate_limits")
    assert limits["max_concurrent_dispatches"] == "${local.fanout_concurrency}"
    assert limits["max_dispatches_per_second"] == "${var.fanout_max_dispatches_per_second}"
    retry = _block(queue, "retry_config")
    assert set(retry) == {
        "max_attempts",
        "min_backoff",
        "max_backoff",
        "max_doublings",
        "max_retry_duration",
    }
    for key in ("min_backoff", "max_backoff", "max_retry_duration"):
        assert re.fullmatch(r"\d+s", retry[key]), f"{key} should be a duration: {retry[key]!r}"
    api = RESOURCES[("google_project_service", "cloudtasks")]
    assert api["service"] == "cloudtasks.googleapis.com" and api["count"] == FANOUT_COUNT


def test_default_concurrency_follows_docker_hub_credentials_in_the_config() -> None:
    # 4 tasks at once with Docker Hub credentials, 1 anonymously (arithmetic in tasks.tf).
    expression = LOCALS["fanout_concurrency"]
    assert expression == (
        "${coalesce(var.fanout_max_concurrent_dispatches, local.docker_hub_authenticated ? 4 : 1)}"
    ), expression
    assert "local.config.registries" in LOCALS["docker_hub_authenticated"]


def test_the_runtime_account_enqueues_on_this_queue_only() -> None:
    grant = _only("google_cloud_tasks_queue_iam_member")
    assert grant["count"] == FANOUT_COUNT
    assert grant["name"] == "${google_cloud_tasks_queue.images[0].name}"
    assert grant["location"] == "${google_cloud_tasks_queue.images[0].location}"
    assert grant["role"] == "roles/cloudtasks.enqueuer"
    assert grant["member"] == "serviceAccount:${google_service_account.runtime.email}"
    for (rtype, name), body in RESOURCES.items():
        role = str(body.get("role", ""))
        if rtype.startswith("google_project_iam") or rtype.startswith("google_organization_iam"):
            assert "cloudtasks" not in role, f"{rtype}.{name} grants {role} beyond the queue"
            assert role != "roles/iam.serviceAccountUser", f"{rtype}.{name} is project-wide"


def test_the_runtime_account_may_mint_tokens_of_the_invoker_account_only() -> None:
    grant = _only("google_service_account_iam_member")
    assert grant["count"] == FANOUT_COUNT
    assert grant["service_account_id"] == "${google_service_account.invoker.name}"
    assert grant["role"] == "roles/iam.serviceAccountUser"
    assert grant["member"] == "serviceAccount:${google_service_account.runtime.email}"


def test_the_function_gets_the_fanout_environment_and_an_instance_per_running_task() -> None:
    function = _only("google_cloudfunctions2_function")
    service = _block(function, "service_config")
    assert service["max_instance_request_concurrency"] == 1
    assert service["max_instance_count"] == "${local.function_max_instances}"
    assert LOCALS["function_max_instances"] == (
        "${var.fanout_enabled ? local.fanout_concurrency + 1 : 1}"
    ), "one instance per running task plus the dispatching call, else one"
    env = service["environment_variables"]
    assert env[fanout.QUEUE_ENV] == "${local.fanout_queue}"
    assert env[fanout.URL_ENV] == "${local.fanout_url}"
    assert env[fanout.SERVICE_ACCOUNT_ENV] == "${local.fanout_service_account}"
    assert "google_service_account.invoker.email" in LOCALS["fanout_service_account"]
    assert "queues/${google_cloud_tasks_queue.images[0].name}" in LOCALS["fanout_queue"]


def test_the_tasks_call_the_functions_own_cloudfunctions_url() -> None:
    default = LOCALS["fanout_function_url"]
    assert (
        "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}" in default
    ), default


@pytest.mark.parametrize("value", ["", "https://example-abc-ew.a.run.app"])
def test_the_url_override_must_be_an_https_url(value: str) -> None:
    # The variable's validation regex, checked here against Python's reading of the same regex.
    text = (INFRA / "tasks.tf").read_text(encoding="utf-8")
    match = re.search(r'can\(regex\("(\^https://[^"]+)", var\.fanout_function_url\)\)', text)
    assert match, "fanout_function_url has no https validation"
    pattern = match.group(1).replace("\\\\", "\\")
    assert value == "" or re.search(pattern, value)
    assert not re.search(pattern, "http://plain.example/")


def test_a_failed_dispatch_writes_a_summary_line_the_failure_alert_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "images": [
                    {
                        "name": "a",
                        "upstream": "docker.io/x/a",
                        "target": "quay.io/y/a",
                        "tags": ["1"],
                    }
                ]
            }
        )
    )
    queue = "projects/p-123/locations/europe-west1/queues/image-sync-images"
    with FakeCloudTasks(queues=[queue], max_concurrent=0) as tasks:
        tasks.fail_creates(403)
        env = {
            "IMAGE_SYNC_CONFIG": str(path),
            fanout.QUEUE_ENV: queue,
            fanout.URL_ENV: "https://europe-west1-p-123.cloudfunctions.net/image-sync",
            fanout.SERVICE_ACCOUNT_ENV: "invoker@p-123.iam.gserviceaccount.com",
            fanout.ENDPOINT_ENV: tasks.endpoint,
        }
        incoming = service.Incoming(method="POST", scheduler_job="image-sync-schedule")
        assert service.handle(incoming, env).status == 500
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.strip()]
    (line,) = [line for line in lines if line.get("event") == "summary"]
    assert line["dispatch"]["failed"] == 1 and line["code"] == "DISPATCH_FAILED", line

    _, metric = run_metric()
    clauses = metric_filter(terraform(), metric)
    for key, value in clauses.items():
        if key.startswith("jsonPayload."):
            assert line.get(key.removeprefix("jsonPayload.")) == value, (key, line)
    extractors = metric.get("label_extractors") or {}
    policy = policy_with("condition_threshold", 'metric.label.status="failed"')
    condition = filter_clauses(str(condition_of(policy, "condition_threshold")["filter"]))
    for key, value in condition.items():
        if key.startswith("metric.label."):
            field = str(extractors[key.removeprefix("metric.label.")])
            field = field.removeprefix("EXTRACT(jsonPayload.").removesuffix(")")
            assert line[field] == value, f"the failure alert misses a failed dispatch: {line}"
