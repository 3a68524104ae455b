"""The HTTP function `sync_images` through functions-framework's test client.

Requests that reach registries use real Distribution registries on loopback (an anonymous
upstream, a Basic-auth target); the others never get that far. Every response is JSON; log lines
are read from the captured stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import functions_framework
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import sync.engine
from sync import logs, request, service
from sync.engine import Engine, RunOptions
from sync.report import Report
from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer, start_registry
from tests.contract import ADDED_SUMMARY_KEYS, REPORT_KEYS, SUMMARY_KEYS, TAG_KEYS

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"

SCHEDULER_HEADERS = {
    "User-Agent": "Google-Cloud-Scheduler",
    "X-CloudScheduler": "true",
    "X-CloudScheduler-JobName": "image-sync-daily",
}
# Variables the function reads: the tests set what they need and nothing leaks in from outside.
FUNCTION_ENV = (
    "IMAGE_SYNC_CONFIG",
    "SYNC_DEADLINE_SECONDS",
    "LOG_LEVEL",
    "SECRET_MANAGER_ENDPOINT",
    "GOOGLE_CLOUD_PROJECT",
    "DOCKER_CONFIG",
)


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    # create_app imports main.py as the module `main`, as the functions framework does.
    app: flask.Flask = functions_framework.create_app(  # type: ignore[no-untyped-call]
        "sync_images", str(MAIN), "http"
    )
    return app.test_client()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, restore_loggers: None) -> None:
    """A clean environment (no Docker config either) and the loggers restored afterwards, so
    the function's JSON handler does not leak into other tests."""
    for name in FUNCTION_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


def write_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Mapping[str, object]
) -> Path:
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("IMAGE_SYNC_CONFIG", str(path))
    return path


# Nothing listens on port 9 (discard): requests that pass validation fail fast, on loopback.
OFFLINE_CONFIG: dict[str, object] = {
    "images": [
        {
            "name": "helloworld",
            "upstream": "127.0.0.1:9/istio/helloworld",
            "target": "127.0.0.1:9/sail-dev/helloworld",
            "tags": ["1.0", "latest"],
        },
        {
            "name": "httpbin",
            "upstream": "127.0.0.1:9/mccutchen/go-httpbin",
            "target": "127.0.0.1:9/sail-dev/httpbin",
            "tags": ["v2.15.0"],
        },
    ],
    "registries": {"127.0.0.1:9": {"tls": "disabled"}},
}


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_config(tmp_path, monkeypatch, OFFLINE_CONFIG)


def body_of(response: TestResponse) -> Any:
    assert response.mimetype == "application/json", (
        f"{response.status_code} answered {response.mimetype}: {response.get_data(as_text=True)}"
    )
    return json.loads(response.get_data(as_text=True))


def error_of(response: TestResponse, status: int, code: str) -> str:
    body = body_of(response)
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {body}"
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


def log_lines(output: str) -> list[dict[str, Any]]:
    """Every stdout line, each of which must be one JSON object with severity and message."""
    lines: list[dict[str, Any]] = []
    for text in output.splitlines():
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            pytest.fail(f"a stdout line is not JSON: {text!r}")
        assert isinstance(entry, dict), text
        assert entry.get("severity") in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, text
        assert isinstance(entry.get("message"), str), text
        lines.append(entry)
    return lines


SUMMARY_LINE_KEYS = {"event", "status", "trigger", "images", "summary", "run_id"}
TASK_HEADERS = {"X-CloudTasks-QueueName": "image-sync", "X-CloudTasks-TaskName": "t-1"}


def summary_line(output: str) -> dict[str, Any]:
    lines = log_lines(output)
    summaries = [line for line in lines if line.get("event") == "summary"]
    assert len(summaries) == 1, f"expected one summary line, got {len(summaries)}: {lines}"
    (line,) = summaries
    assert set(line) >= SUMMARY_LINE_KEYS, f"summary line lacks {SUMMARY_LINE_KEYS - set(line)}"
    assert set(line["summary"]) == SUMMARY_KEYS | ADDED_SUMMARY_KEYS, line["summary"]
    assert {entry["run_id"] for entry in lines} == {line["run_id"]}, "one run_id per request"
    return line


# -- real registries ---------------------------------------------------------------------------


@dataclass
class Bed:
    upstream: RegistryServer  # anonymous, Docker-Hub-like for pulling
    target: RegistryServer  # Basic auth, credentials from env: REFs

    def push(self, repo: str, tags: Mapping[str, Image]) -> None:
        with RawClient(self.upstream) as raw:
            for tag, image in tags.items():
                raw.push_image(repo, tag, image)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    base = tmp_path_factory.mktemp("function-bed")
    upstream = start_registry("anonymous", base_dir=base / "upstream")
    try:
        target = start_registry("basic", base_dir=base / "target")
    except BaseException:
        upstream.stop()
        raise
    try:
        yield Bed(upstream, target)
    finally:
        target.stop()
        upstream.stop()


def bed_image(bed: Bed, name: str, tags: list[str], **more: object) -> dict[str, object]:
    """One image whose repositories are unique to the test (the registries are shared)."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "name": name,
        "upstream": f"{bed.upstream.host}/istio/{name}-{suffix}",
        "target": f"{bed.target.host}/sail-dev/{name}-{suffix}",
        "tags": tags,
        **more,
    }


def bed_config(
    bed: Bed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    image_list: list[dict[str, object]],
    *,
    password: str | None = None,
    **top: object,
) -> dict[str, object]:
    assert bed.target.username is not None and bed.target.password is not None
    monkeypatch.setenv("TARGET_USER", bed.target.username)
    monkeypatch.setenv("TARGET_PASSWORD", password or bed.target.password)
    config: dict[str, object] = {
        "images": image_list,
        "registries": {
            bed.upstream.host: {"tls": "disabled"},
            bed.target.host: {
                "tls": "disabled",
                "username": "env:TARGET_USER",
                "password": "env:TARGET_PASSWORD",
            },
        },
        **top,
    }
    write_config(tmp_path, monkeypatch, config)
    return config


def repo_of(reference: object) -> str:
    assert isinstance(reference, str)
    return reference.split("/", 1)[1]


def tags_by_name(report: Mapping[str, Any], image: str) -> dict[str, dict[str, Any]]:
    for entry in report["images"]:
        if entry["name"] == image:
            return {tag["tag"]: tag for tag in entry["tags"]}
    raise AssertionError(f"no image {image!r} in the report: {report}")


def assert_report_shape(report: Mapping[str, Any]) -> None:
    assert set(report) >= REPORT_KEYS, f"report keys: {sorted(report)}"
    assert set(report["summary"]) >= SUMMARY_KEYS, report["summary"]
    for image in report["images"]:
        assert {"name", "upstream", "target", "tags"} <= set(image), image
        for tag in image["tags"]:
            assert set(tag) >= TAG_KEYS, f"tag entry keys: {sorted(tag)}"


# ---------------------------------------------------------------------------------------------
# Runs that reach registries


def test_scheduler_post_copies_every_tag_digest_exactly_then_finds_them_up_to_date(
    client: FlaskClient, bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, manifest_list = images.oci_index(11), images.docker_manifest_list(12)
    image = bed_image(bed, "helloworld", ["1.0", "latest"])
    bed_config(bed, tmp_path, monkeypatch, [image])
    bed.push(repo_of(image["upstream"]), {"1.0": index, "latest": manifest_list})

    first = client.post("/", data="{}", content_type="application/json", headers=SCHEDULER_HEADERS)

    report = body_of(first)
    assert first.status_code == 200, report
    assert_report_shape(report)
    assert report["status"] == "ok" and report["dry_run"] is False
    assert report["summary"]["copied"] == 2 and report["summary"]["tags"] == 2, report["summary"]
    tags = tags_by_name(report, "helloworld")
    for tag, expected in (("1.0", index), ("latest", manifest_list)):
        entry = tags[tag]
        assert entry["action"] == "copied" and entry["state"] == "missing", entry
        assert entry["upstream_digest"] == entry["target_digest"] == expected.digest, entry
        assert entry["bytes_copied"] > 0 and entry["error"] is None, entry
    with RawClient(bed.target) as raw:
        repo = repo_of(image["target"])
        assert raw.head_manifest(repo, "1.0") == index.digest
        assert raw.verify_image(repo, "1.0") == index.all_digests()
        assert raw.verify_image(repo, "latest") == manifest_list.all_digests()

    second = client.post("/", json={}, headers=SCHEDULER_HEADERS)

    again = body_of(second)
    assert second.status_code == 200, again
    assert again["status"] == "ok"
    assert {t["action"] for t in tags_by_name(again, "helloworld").values()} == {"up_to_date"}
    assert again["summary"]["bytes_copied"] == 0 and again["summary"]["up_to_date"] == 2


def test_dry_run_reports_would_copy_and_writes_nothing(
    client: FlaskClient, bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = bed_image(bed, "helloworld", ["1.0"])
    bed_config(bed, tmp_path, monkeypatch, [image])
    bed.push(repo_of(image["upstream"]), {"1.0": images.oci_manifest(21)})

    response = client.post("/", json={"dry_run": True})

    report = body_of(response)
    assert response.status_code == 200, report
    assert report["dry_run"] is True and report["status"] == "ok"
    entry = tags_by_name(report, "helloworld")["1.0"]
    assert (entry["state"], entry["action"], entry["target_digest"]) == (
        "missing",
        "would_copy",
        None,
    )
    with RawClient(bed.target) as raw:
        assert raw.head_manifest(repo_of(image["target"]), "1.0") is None, "a dry run wrote"


@pytest.mark.parametrize(
    "query",
    [
        "images=one,two&tags=1.0&dry_run=1",
        "images=one&images=two&tags=1.0&dry_run=true",
        "images=one&images=two,one&tags=1.0,1.0&dry_run=TRUE&discover=false",
    ],
)
def test_get_query_selects_images_and_tags(
    client: FlaskClient,
    bed: Bed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    configured = [bed_image(bed, name, ["1.0", "2.0"]) for name in ("one", "two", "three")]
    bed_config(bed, tmp_path, monkeypatch, configured)
    for image in configured[:2]:
        bed.push(repo_of(image["upstream"]), {"1.0": images.oci_manifest(31)})

    response = client.get(f"/?{query}")

    report = body_of(response)
    assert response.status_code == 200, report
    assert report["dry_run"] is True
    assert [i["name"] for i in report["images"]] == ["one", "two"]
    for name in ("one", "two"):
        assert list(tags_by_name(report, name)) == ["1.0"], report


def test_discovery_mirrors_new_versions_unless_the_request_turns_it_off(
    client: FlaskClient, bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = bed_image(bed, "httpbin", ["latest"], check_new_tags=True, max_tags_to_check=2)
    bed_config(bed, tmp_path, monkeypatch, [image])
    manifest = images.oci_manifest(41)
    bed.push(
        repo_of(image["upstream"]),
        {tag: manifest for tag in ("latest", "v1.9.0", "v2.0.0", "v2.1.0")},
    )

    without = body_of(client.post("/", json={"dry_run": True, "discover": False}))
    with_discovery = client.post("/", json={"dry_run": True})

    assert list(tags_by_name(without, "httpbin")) == ["latest"]
    report = body_of(with_discovery)
    tags = tags_by_name(report, "httpbin")
    assert list(tags) == ["latest", "v2.1.0", "v2.0.0"], "newest two versions, newest first"
    assert [t["discovered"] for t in tags.values()] == [False, True, True]
    assert report["summary"]["discovered"] == 2


def test_a_permanent_failure_answers_200_failed_with_the_report_and_the_others_still_copy(
    client: FlaskClient, bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = bed_image(bed, "helloworld", ["1.0", "9.9"])
    bed_config(bed, tmp_path, monkeypatch, [image])
    bed.push(repo_of(image["upstream"]), {"1.0": images.oci_manifest(51)})

    response = client.post("/", json={})

    report = body_of(response)
    # A missing upstream tag stays missing: a retry by Cloud Scheduler would fail the same way.
    assert response.status_code == 200, "a run failed for permanent reasons must not be retried"
    assert_report_shape(report)
    assert report["status"] == "failed" and report["summary"]["failed"] == 1
    assert report["retryable"] is False
    tags = tags_by_name(report, "helloworld")
    assert tags["1.0"]["action"] == "copied"
    assert tags["9.9"]["action"] == "upstream_missing"
    assert tags["9.9"]["error"]["code"] == "MANIFEST_UNKNOWN"


def test_wrong_target_password_fails_the_run_without_showing_the_password(
    client: FlaskClient,
    bed: Bed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = f"Wr0ng-{uuid.uuid4().hex}"
    image = bed_image(bed, "helloworld", ["1.0"])
    bed_config(bed, tmp_path, monkeypatch, [image], password=wrong)
    bed.push(repo_of(image["upstream"]), {"1.0": images.oci_manifest(61)})
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")

    response = client.post("/", json={})

    text = response.get_data(as_text=True)
    report = json.loads(text)
    # Refused credentials are permanent: 200 with a failed report, no retry by the scheduler.
    assert response.status_code == 200 and report["status"] == "failed", report
    assert report["retryable"] is False
    assert tags_by_name(report, "helloworld")["1.0"]["action"] == "failed"
    captured = capsys.readouterr()
    for where, content in (("response", text), ("stdout", captured.out), ("stderr", captured.err)):
        assert wrong not in content, f"the password appears in the {where}"


def test_a_spent_time_budget_defers_every_tag_and_answers_200_partial(
    client: FlaskClient, bed: Bed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = bed_image(bed, "helloworld", ["1.0", "latest"])
    bed_config(bed, tmp_path, monkeypatch, [image])
    monkeypatch.setenv("SYNC_DEADLINE_SECONDS", "1e-9")

    response = client.post("/", json={})

    report = body_of(response)
    assert response.status_code == 200, report
    assert report["status"] == "partial" and report["summary"]["deferred"] == 2
    for entry in tags_by_name(report, "helloworld").values():
        assert entry["action"] == "deferred" and entry["error"]["code"] == "DEADLINE", entry


# ---------------------------------------------------------------------------------------------
# Bad requests: 400 (413 for size) with a message naming the problem; no registry is asked

BAD_BODIES: list[tuple[str, object, str]] = [
    ("unknown image", {"images": ["nope"]}, "images: unknown image 'nope'"),
    ("unknown among known", {"images": ["helloworld", "x"]}, "unknown image 'x'"),
    ("images a string", {"images": "helloworld"}, "images: expected a list"),
    ("images empty", {"images": []}, "images: empty list"),
    ("image not a string", {"images": [1]}, "images[0]: expected a string, got 1"),
    ("images null", {"images": None}, "images: expected a list of image names, got null"),
    ("image name invalid", {"images": ["a b"]}, "images[0]: invalid image name 'a b'"),
    ("tags a string", {"tags": "1.0"}, "tags: expected a list"),
    ("tag not a string", {"tags": ["1.0", None]}, "tags[1]: expected a string, got null"),
    ("tag invalid", {"tags": ["has space"]}, "tags[0]: invalid tag 'has space'"),
    ("tag not configured", {"tags": ["7.7"]}, "tags: '7.7' not a configured tag"),
    ("dry_run yes", {"dry_run": "yes"}, 'dry_run: expected true or false, got a string "yes"'),
    ("dry_run 1", {"dry_run": 1}, "dry_run: expected true or false, got 1"),
    ("discover null", {"discover": None}, "discover: expected true or false, got null"),
    ("unknown field", {"dryrun": True}, "unknown field 'dryrun'"),
    ("a list", ["helloworld"], "body: expected a JSON object"),
    ("a string", "sync", "body: expected a JSON object"),
]


@pytest.mark.parametrize(
    ("payload", "fragment"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_a_bad_json_field_is_a_400_naming_it(
    client: FlaskClient, offline: Path, payload: object, fragment: str
) -> None:
    message = error_of(client.post("/", json=payload), 400, "BAD_REQUEST")
    assert fragment in message


BAD_RAW: list[tuple[str, bytes, str | None, str]] = [
    ("invalid JSON", b'{"dry_run": tru}', "application/json", "body: invalid JSON at line 1"),
    ("truncated", b'{"images": [', "application/json", "body: invalid JSON"),
    ("duplicate key", b'{"dry_run": false, "dry_run": true}', "application/json", "twice"),
    ("not UTF-8", b'{"tags": ["\xff"]}', "application/json", "not UTF-8"),
    ("deep nesting", b"[" * 30000 + b"]" * 30000, "application/json", "body:"),
    ("text/plain", b'{"dry_run": true}', "text/plain", "Content-Type"),
    ("form", b"dry_run=true", "application/x-www-form-urlencoded", "Content-Type"),
    ("no content type", b'{"dry_run": true}', None, "Content-Type"),
]


@pytest.mark.parametrize(
    ("data", "content_type", "fragment"), [c[1:] for c in BAD_RAW], ids=[c[0] for c in BAD_RAW]
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    client: FlaskClient, offline: Path, data: bytes, content_type: str | None, fragment: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    message = error_of(client.post("/", data=data, headers=headers), 400, "BAD_REQUEST")
    assert fragment in message


def test_a_body_over_64_kib_is_refused_with_413(client: FlaskClient, offline: Path) -> None:
    big = json.dumps({"tags": ["1.0"] * 20000}).encode()
    assert len(big) > service.MAX_BODY_BYTES
    message = error_of(
        client.post("/", data=big, content_type="application/json"), 413, "BAD_REQUEST"
    )
    assert "larger than 65536 bytes" in message


def test_a_chunked_body_over_the_limit_is_refused_too() -> None:
    incoming = service.Incoming("POST", "application/json", b" " * (service.MAX_BODY_BYTES + 1))
    answer = service.handle(incoming, env={})
    assert answer.status == 413, answer


BAD_QUERIES: list[tuple[str, str]] = [
    ("dry_run=yes", "dry_run: expected true, false, 1 or 0, got 'yes'"),
    ("discover=", "discover: expected true, false, 1 or 0"),
    ("dry_run=true&dry_run=false", "dry_run: given 2 times"),
    ("images=nope", "images: unknown image 'nope'"),
    ("images=", "images: empty value"),
    ("images=helloworld,,httpbin", "images: empty value"),
    ("tags=a%20b", "tags[0]: invalid tag"),
    ("image=helloworld", "unknown query parameter 'image'"),
]


@pytest.mark.parametrize(("query", "fragment"), BAD_QUERIES, ids=[q for q, _ in BAD_QUERIES])
def test_a_bad_query_parameter_is_a_400_naming_it(
    client: FlaskClient, offline: Path, query: str, fragment: str
) -> None:
    message = error_of(client.get(f"/?{query}"), 400, "BAD_REQUEST")
    assert fragment in message


def test_fields_come_from_one_place_only(client: FlaskClient, offline: Path) -> None:
    post = error_of(client.post("/?dry_run=true", json={}), 400, "BAD_REQUEST")
    assert "POST takes its fields in a JSON body" in post and "'dry_run'" in post
    get = error_of(
        client.get("/", data=b'{"dry_run": true}', content_type="application/json"),
        400,
        "BAD_REQUEST",
    )
    assert "GET takes its fields in the query string" in get


def test_query_lists_may_repeat_or_use_commas_and_duplicates_count_once() -> None:
    parsed = request.parse_query(
        [("images", "a, b"), ("images", "c,a"), ("dry_run", "0"), ("discover", "False")]
    )
    assert parsed == request.SyncRequest(images=("a", "b", "c"), dry_run=False, discover=False)
    assert request.parse_query([]) == request.SyncRequest()
    assert request.parse_body("application/json; charset=utf-8", b"") == request.SyncRequest()
    assert request.parse_body(None, b"  \n") == request.SyncRequest(), "an empty body is fine"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_an_allow_header(
    client: FlaskClient, offline: Path, method: str
) -> None:
    response = client.open("/", method=method)
    message = error_of(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "GET, POST"
    assert method in message


def test_head_is_405_too_and_starts_no_run(client: FlaskClient, offline: Path) -> None:
    response = client.head("/")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


# ---------------------------------------------------------------------------------------------
# Server-side failures: a clean JSON error, never a traceback


def test_an_invalid_config_is_a_500_listing_the_problems(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = {"images": [{"name": "x", "upstream": "docker.io/a/b", "tags": "1.0"}], "extra": 1}
    write_config(tmp_path, monkeypatch, broken)

    response = client.post("/", json={})

    body = body_of(response)
    assert response.status_code == 500
    assert body["error"]["code"] == "CONFIG_INVALID"
    problems = body["error"]["problems"]
    assert any(p.startswith("images[0].target: missing") for p in problems), problems
    assert any(p.startswith("extra: unknown key") for p in problems), problems
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_missing_config_file_is_a_500_config_invalid(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGE_SYNC_CONFIG", str(tmp_path / "nowhere.json"))
    message = error_of(client.post("/", json={}), 500, "CONFIG_INVALID")
    assert "nowhere.json" in message and "file not found" in message


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_an_invalid_deadline_is_a_500_config_invalid(
    client: FlaskClient, offline: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SYNC_DEADLINE_SECONDS", value)
    message = error_of(client.post("/", json={}), 500, "CONFIG_INVALID")
    assert "SYNC_DEADLINE_SECONDS" in message


def test_a_bad_request_is_answered_before_the_config_is_read(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGE_SYNC_CONFIG", str(tmp_path / "nowhere.json"))
    error_of(client.post("/", json={"dry_run": "yes"}), 400, "BAD_REQUEST")


def test_the_deadline_reaches_the_engine(
    client: FlaskClient, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[RunOptions] = []

    async def fake_run(self: Engine, options: RunOptions | None = None) -> Report:
        assert options is not None
        seen.append(options)
        raise RuntimeError("stop here")

    monkeypatch.setattr(Engine, "run", fake_run)
    client.post("/", json={"images": ["httpbin"], "tags": ["v2.15.0"], "discover": False})
    monkeypatch.setenv("SYNC_DEADLINE_SECONDS", "90.5")
    client.get("/?dry_run=1")

    assert seen == [
        RunOptions(
            images=("httpbin",),
            tags=("v2.15.0",),
            discover=False,
            deadline=1500.0,
            hard_deadline=1680.0,
        ),
        RunOptions(dry_run=True, deadline=90.5, hard_deadline=90.5 + 90.5 / 4),
    ]


def test_a_crash_in_the_run_is_a_clean_500_logged_at_error(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def crash(self: Engine, options: RunOptions | None = None) -> Report:
        raise RuntimeError("token=CRASH-DETAIL-1234 in the exception text")

    monkeypatch.setattr(Engine, "run", crash)

    response = client.post("/", json={}, headers=SCHEDULER_HEADERS)

    message = error_of(response, 500, "INTERNAL")
    text = response.get_data(as_text=True)
    for leak in ("CRASH-DETAIL-1234", "Traceback", "RuntimeError"):
        assert leak not in text, f"the response shows {leak!r}"
    lines = log_lines(capsys.readouterr().out)
    errors = [e for e in lines if e["severity"] == "ERROR" and e.get("event") != "summary"]
    assert len(errors) == 1, errors
    assert "RuntimeError" in errors[0]["stack_trace"]
    assert errors[0]["scheduler_job"] == "image-sync-daily"
    assert errors[0]["run_id"] in message, "the answer names the run to look for in the log"
    summary = summary_line("\n".join(json.dumps(line) for line in lines))
    assert (summary["status"], summary["code"], summary["trigger"]) == (
        "failed",
        "INTERNAL",
        "scheduler",
    )


def test_a_crash_in_the_adapter_is_a_clean_500(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def crash(incoming: service.Incoming, env: Mapping[str, str] | None = None) -> None:
        raise ValueError("ADAPTER-DETAIL-5678")

    monkeypatch.setattr(service, "handle", crash)

    response = client.post("/", json={})

    error_of(response, 500, "INTERNAL")
    assert "ADAPTER-DETAIL-5678" not in response.get_data(as_text=True)
    line, summary = log_lines(capsys.readouterr().out)
    assert line["severity"] == "ERROR" and "ValueError" in line["stack_trace"]
    assert summary["event"] == "summary" and summary["status"] == "failed", summary
    assert summary["code"] == "INTERNAL" and summary["trigger"] == "manual", summary


def test_a_run_that_overstays_its_budget_is_stopped_and_answered_500(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def stuck(self: Engine, options: RunOptions | None = None) -> Report:
        await asyncio.sleep(30)
        raise AssertionError("not stopped")

    monkeypatch.setattr(Engine, "run", stuck)
    monkeypatch.setattr(sync.engine, "hard_stop_after", lambda deadline: deadline + 0.05)
    monkeypatch.setattr(service, "LAST_RESORT_SECONDS", 0.0)
    monkeypatch.setenv("SYNC_DEADLINE_SECONDS", "0.05")

    message = error_of(client.post("/", json={}, headers=TASK_HEADERS), 500, "DEADLINE")
    assert "stopped" in message
    line = summary_line(capsys.readouterr().out)
    assert (line["status"], line["code"], line["trigger"]) == ("failed", "DEADLINE", "task")
    assert line["images"] == ["helloworld", "httpbin"] and "image" not in line, line


# ---------------------------------------------------------------------------------------------
# Logging


def test_every_log_line_of_a_run_is_json_with_the_job_name_and_one_summary(
    client: FlaskClient,
    bed: Bed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = bed_image(bed, "helloworld", ["1.0", "2.0"])
    bed_config(bed, tmp_path, monkeypatch, [image])
    bed.push(repo_of(image["upstream"]), {"1.0": images.oci_manifest(71)})
    monkeypatch.setenv("LOG_LEVEL", "debug")
    capsys.readouterr()

    response = client.post(
        "/",
        json={},
        headers={**SCHEDULER_HEADERS, "Authorization": "Bearer OIDC-TOKEN-abcdef"},
    )

    assert response.status_code == 200  # 2.0 is missing upstream: failed, not retryable
    captured = capsys.readouterr()
    lines = log_lines(captured.out)
    assert {e["severity"] for e in lines} >= {"DEBUG", "INFO", "ERROR"}, lines
    assert all(e.get("scheduler_job") == "image-sync-daily" for e in lines), lines
    assert len({e["run_id"] for e in lines}) == 1
    summaries = [e for e in lines if e.get("event") == "summary"]
    assert len(summaries) == 1, summaries
    assert summaries[0]["status"] == "failed"
    assert summaries[0]["summary"]["copied"] == 1
    copied = [e for e in lines if e.get("action") == "copied"]
    assert copied and copied[0]["image"] == "helloworld" and copied[0]["tag"] == "1.0"
    assert copied[0]["upstream_digest"].startswith("sha256:")
    assert "OIDC-TOKEN-abcdef" not in captured.out + captured.err


def test_the_handler_is_installed_once_and_not_at_import(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(3):
        client.get("/?dry_run=maybe")
    lines = log_lines(capsys.readouterr().out)
    assert len(lines) == 6, "a warning and a summary per request, not per installed handler"
    handlers = logging.getLogger("sync").handlers
    assert sum(type(h).__name__ == "_StdoutHandler" for h in handlers) == 1


def test_log_lines_carry_the_trace_of_the_request(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo")
    trace = "0123456789abcdef0123456789abcdef"
    client.get("/?dry_run=maybe", headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1"})
    lines = log_lines(capsys.readouterr().out)
    assert [line.get("event") for line in lines] == ["bad_request", "summary"], lines
    for line in lines:
        assert line["logging.googleapis.com/trace"] == f"projects/demo/traces/{trace}"
        assert "scheduler_job" not in line, "no job name without the Scheduler's header"


def test_an_unknown_log_level_falls_back_to_info_and_says_so(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    client.get("/?dry_run=maybe")
    lines = log_lines(capsys.readouterr().out)
    assert any("LOG_LEVEL='CHATTY' is not a level" in e["message"] for e in lines), lines
    assert logging.getLogger("sync").level == logging.INFO


def test_the_formatter_keeps_its_own_keys_and_serialises_anything() -> None:
    record = logging.LogRecord("sync.engine", logging.WARNING, __file__, 1, "hi %s", ("x",), None)
    record.__dict__.update(severity="FAKE", image="a", digests=("sha256:1",), odd=object())
    with logs.log_context(scheduler_job="job"):
        entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["severity"] == "WARNING" and entry["message"] == "hi x"
    assert entry["scheduler_job"] == "job" and entry["image"] == "a"
    assert entry["digests"] == ["sha256:1"] and entry["odd"].startswith("<object")
    assert entry["time"].endswith("Z")


def test_importing_main_loads_no_config_no_secret_manager_and_no_handler(tmp_path: Path) -> None:
    probe = (
        "import importlib.util, logging, sys\n"
        f"spec = importlib.util.spec_from_file_location('main', {str(MAIN)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert callable(module.sync_images)\n"
        "assert not [m for m in sys.modules if m.startswith('google.cloud.secretmanager')]\n"
        "assert not logging.getLogger('sync').handlers\n"
        "import asyncio\n"
        "assert asyncio.events._get_running_loop() is None\n"
        "print('ok')\n"
    )
    env = {**os.environ, "IMAGE_SYNC_CONFIG": str(tmp_path / "does-not-exist.json")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_sync_images_is_a_plain_function_of_a_flask_request(
    client: FlaskClient, offline: Path
) -> None:
    main = sys.modules["main"]  # loaded by create_app
    with flask.Flask("probe").test_request_context("/?dry_run=perhaps", method="GET"):
        response = main.sync_images(flask.request)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "BAD_REQUEST"


# ---------------------------------------------------------------------------------------------
# The run summary line: one per request, however it ends (infra/monitoring.tf counts these)


def invalid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_DEADLINE_SECONDS", "soon")


# Requests that end without a report: (body, headers, how the run breaks, status, code,
# trigger, images).
Breaks = Callable[[pytest.MonkeyPatch], None]
ENDINGS: dict[
    str, tuple[dict[str, object], Mapping[str, str], Breaks | None, str, str, str, list[str]]
] = {
    "invalid configuration": (
        {},
        SCHEDULER_HEADERS,
        invalid_config,
        "failed",
        "CONFIG_INVALID",
        "scheduler",
        [],
    ),
    "bad request by hand": (
        {"images": ["nope"]},
        {},
        None,
        "rejected",
        "BAD_REQUEST",
        "manual",
        [],
    ),
    "bad request from a task": (
        {"dry_run": "yes"},
        TASK_HEADERS,
        None,
        "failed",
        "BAD_REQUEST",
        "task",
        [],
    ),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_request_writes_one_summary_line_however_it_ends(
    client: FlaskClient,
    offline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ending: str,
) -> None:
    body, headers, breaks, status, code, trigger, names = ENDINGS[ending]
    if breaks is not None:
        breaks(monkeypatch)
    capsys.readouterr()

    response = client.post("/", json=body, headers=headers)

    line = summary_line(capsys.readouterr().out)
    assert (line["status"], line["trigger"], line["images"]) == (status, trigger, names), line
    assert line.get("code") == code, line
    assert line["http_status"] == response.status_code
    assert line["severity"] == ("WARNING" if status == "rejected" else "ERROR"), line
    assert line.get("image") == (names[0] if len(names) == 1 else None), line
    assert body_of(response)["error"]["code"] == code
    assert set(line["summary"].values()) == {0}, "nothing ran, nothing counted"


def test_a_method_not_allowed_writes_a_rejected_summary(
    client: FlaskClient, offline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    response = client.delete("/")
    assert response.status_code == 405
    line = summary_line(capsys.readouterr().out)
    assert (line["status"], line["code"], line["trigger"]) == (
        "rejected",
        "METHOD_NOT_ALLOWED",
        "manual",
    )


def test_an_ok_run_writes_its_counts_and_single_image_in_the_summary(
    client: FlaskClient,
    bed: Bed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = bed_image(bed, "helloworld", ["1.0"])
    bed_config(bed, tmp_path, monkeypatch, [image, bed_image(bed, "httpbin", ["1.0"])])
    bed.push(repo_of(image["upstream"]), {"1.0": images.oci_manifest(72)})
    capsys.readouterr()

    response = client.post("/", json={"images": ["helloworld"]}, headers=TASK_HEADERS)

    assert response.status_code == 200, body_of(response)
    line = summary_line(capsys.readouterr().out)
    assert (line["status"], line["trigger"], line["severity"]) == ("ok", "task", "INFO"), line
    assert line["images"] == ["helloworld"] and line["image"] == "helloworld", line
    assert line["summary"] == body_of(response)["summary"] and "code" not in line, line
    assert line["summary"]["copied"] == 1
