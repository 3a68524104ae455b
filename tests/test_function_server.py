"""The function in a real `functions-framework` server, called the way Cloud Scheduler calls it.

Everything runs on loopback: a Docker-Hub-like upstream registry (anonymous pull), a Quay-like
target (robot credentials required), the fake Secret Manager holding those credentials, and the
server process (gunicorn, as in production) reading the config from `IMAGE_SYNC_CONFIG`. The
server logs at DEBUG; its stdout and stderr are captured to files and searched for the secret.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer, start_registry
from tests.fake_secret_manager import FakeSecretManager
from tests.function_bed import function_server

pytestmark = pytest.mark.integration

PROJECT = "test-project"
JOB = "image-sync-daily"
SCHEDULER_HEADERS = {
    "User-Agent": "Google-Cloud-Scheduler",
    "X-CloudScheduler": "true",
    "X-CloudScheduler-JobName": JOB,
    "Content-Type": "application/json",
}
UPSTREAM_REPO, TARGET_REPO = "istio/examples-helloworld-v1", "sail-dev/examples-helloworld-v1"
ROBOT = "sail-dev+function"


@dataclass
class Setup:
    hub: RegistryServer
    quay: RegistryServer
    secrets: FakeSecretManager
    password: str  # the robot's real password, only in the fake Secret Manager
    url: str  # the function's URL
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    upstream: dict[str, Image]

    def call(self, client: httpx.Client, body: bytes = b"{}") -> httpx.Response:
        return client.post(self.url, content=body, headers=SCHEDULER_HEADERS)

    def output(self) -> tuple[str, str]:
        return (
            self.stdout.read_text("utf-8", "replace"),
            self.stderr.read_text("utf-8", "replace"),
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("function-server")
    started: list[RegistryServer] = []
    secrets: FakeSecretManager | None = None
    try:
        hub = start_registry("bearer-hub", base_dir=base / "hub")
        started.append(hub)
        quay = start_registry("bearer-quay", base_dir=base / "quay")
        started.append(quay)
        password = f"S3cr3t-V4lue-{uuid.uuid4().hex}"
        assert quay.token_server is not None
        quay.token_server.add_user(ROBOT, password)
        secrets = FakeSecretManager(
            {"quay-user": ROBOT, "quay-password": password}, project=PROJECT
        ).start()

        upstream = {
            "1.0": images.oci_index(81),
            "latest": images.docker_manifest_list(82),
            "1.1": images.oci_manifest(83),  # not configured: found by discovery
        }
        with RawClient(hub) as raw:
            for tag, image in upstream.items():
                raw.push_image(UPSTREAM_REPO, tag, image)

        config = {
            "images": [
                {
                    "name": "examples-helloworld-v1",
                    "upstream": f"{hub.host}/{UPSTREAM_REPO}",
                    "target": f"{quay.host}/{TARGET_REPO}",
                    "tags": ["1.0", "latest"],
                }
            ],
            "check_new_tags": True,
            "max_tags_to_check": 5,
            "registries": {
                hub.host: {"tls": "disabled"},
                quay.host: {
                    "tls": "disabled",
                    "username": "secret:quay-user",
                    "password": "secret:quay-password",
                },
            },
        }
        config_path = base / "image-sync-config.json"
        config_path.write_text(json.dumps(config))
        extra_env = {"SECRET_MANAGER_ENDPOINT": secrets.endpoint, "LOG_LEVEL": "DEBUG"}
        with function_server(
            config_path, base, tasks=None, threads=2, extra_env=extra_env
        ) as function:
            yield Setup(
                hub=hub,
                quay=quay,
                secrets=secrets,
                password=password,
                url=function.url,
                process=function.process,
                stdout=function.stdout,
                stderr=function.stderr,
                upstream=upstream,
            )
    finally:
        if secrets is not None:
            secrets.close()
        for server in reversed(started):
            server.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120, trust_env=False) as c:
        yield c


def _tags(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (image,) = report["images"]
    return {entry["tag"]: entry for entry in image["tags"]}


def test_a_scheduler_call_mirrors_digest_exactly_then_finds_everything_up_to_date(
    setup: Setup, client: httpx.Client
) -> None:
    first = setup.call(client)

    assert first.headers["content-type"].startswith("application/json")
    report = first.json()
    assert first.status_code == 200, report
    assert report["status"] == "ok" and report["summary"]["copied"] == 3, report["summary"]
    tags = _tags(report)
    assert {tag: entry["action"] for tag, entry in tags.items()} == {
        "1.0": "copied",
        "latest": "copied",
        "1.1": "copied",
    }
    assert tags["1.1"]["discovered"] is True
    with RawClient(setup.quay) as target, RawClient(setup.hub) as source:
        for tag, image in setup.upstream.items():
            assert tags[tag]["target_digest"] == image.digest
            assert target.head_manifest(TARGET_REPO, tag) == source.head_manifest(
                UPSTREAM_REPO, tag
            )
            # index, every child, every blob: present on the target and hashing right
            assert target.verify_image(TARGET_REPO, tag) == source.verify_image(UPSTREAM_REPO, tag)
            assert target.verify_image(TARGET_REPO, tag) == image.all_digests()
    assert setup.secrets.access_count("quay-password") == 1, "one read per run"

    second = setup.call(client)

    again = second.json()
    assert second.status_code == 200, again
    assert {entry["action"] for entry in _tags(again).values()} == {"up_to_date"}
    assert again["summary"]["bytes_copied"] == 0
    assert setup.secrets.access_count("quay-password") == 2, "secrets are read again per run"


def test_the_secret_appears_in_no_response_and_no_log_line(
    setup: Setup, client: httpx.Client
) -> None:
    responses = [
        setup.call(client, b'{"dry_run": true}'),
        setup.call(client, b'{"images": ["nope"]}'),
        setup.call(client, b"not json"),
        client.get(setup.url, params={"dry_run": "1"}),
    ]
    assert [r.status_code for r in responses] == [200, 400, 400, 200]

    for response in responses:
        assert setup.password not in response.text
        assert "Traceback" not in response.text
    out, err = setup.output()
    assert setup.password not in out, "the secret is in the server's stdout"
    assert setup.password not in err, "the secret is in the server's stderr"
    assert setup.secrets.access_count("quay-password") >= 1, "the secret was in use"


def test_stdout_is_json_lines_with_severity_and_the_scheduler_job(
    setup: Setup, client: httpx.Client
) -> None:
    assert setup.call(client).status_code == 200
    out, _ = setup.output()

    lines = []
    for text in out.splitlines():
        if text.strip():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                pytest.fail(f"a stdout line is not JSON: {text!r}")
    assert lines, "the server logged nothing on stdout"
    assert all(line.get("severity") for line in lines), "a line without severity"
    assert {line["severity"] for line in lines} >= {"DEBUG", "INFO"}, "LOG_LEVEL=DEBUG is honoured"
    scheduled = [line for line in lines if line.get("scheduler_job") == JOB]
    summaries = [line for line in scheduled if line.get("event") == "summary"]
    assert summaries, "no summary line carries the Scheduler job name"
    # A GET by hand (previous test) carries no job name; every Scheduler run does on each line.
    by_run: dict[str, set[object]] = {}
    for line in lines:
        by_run.setdefault(line["run_id"], set()).add(line.get("scheduler_job"))
    assert all(len(jobs) == 1 for jobs in by_run.values()), by_run
