"""The command line (`python -m sync`) as a subprocess: output, JSON, exit codes; against real
registries on loopback (a Docker-Hub-like upstream and a Quay-like target)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer
from tests.contract import (
    ADDED_IMAGE_KEYS,
    ADDED_SUMMARY_KEYS,
    IMAGE_KEYS,
    REFERRER_KEYS,
    REPORT_KEYS,
    SUMMARY_KEYS,
    TAG_KEYS,
)
from tests.scenario import CliResult, Scenario, run_cli, seed, storage_snapshot, writes

pytestmark = pytest.mark.integration

NAME = "examples-helloworld-v1"
UPSTREAM_REPO = Scenario.upstream_repo(NAME)
TARGET_REPO = Scenario.target_repo(NAME)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_DRIFT = 0, 1, 2, 3, 4


def _expect(result: CliResult, code: int) -> None:
    assert result.returncode == code, f"want exit {code}; {result.describe()}"


def _seeded(
    scenario: Scenario, tags: dict[str, Image], configured: list[str] | None = None
) -> None:
    scenario.add_image(NAME, configured if configured is not None else list(tags))
    seed(scenario.upstream, UPSTREAM_REPO, tags)


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -- sync: report JSON and exit codes -------------------------------------------------------------


def test_sync_json_prints_only_the_report_with_the_design_keys_and_logs_on_stderr(
    scenario: Scenario,
) -> None:
    tags = {"1.0": images.oci_index(1), "2.0": images.oci_manifest(2)}
    scenario.add_image(NAME, ["1.0"], check_new_tags=True, max_tags_to_check=3)
    seed(scenario.upstream, UPSTREAM_REPO, tags)

    result = scenario.cli("--json", "sync")

    _expect(result, EXIT_OK)
    report = result.json()  # the whole of stdout is one JSON document
    assert set(report) == REPORT_KEYS, f"report keys: {sorted(report)}"
    assert set(report["summary"]) == SUMMARY_KEYS | ADDED_SUMMARY_KEYS, (
        f"summary keys: {sorted(report['summary'])}"
    )
    assert report["status"] == "ok" and report["dry_run"] is False
    assert datetime.fromisoformat(report["started_at"]).utcoffset() is not None
    assert isinstance(report["duration_s"], float)
    assert report["rate_limit"] is None, "the test registries announce no pull limit"
    assert report["summary"] == {
        "tags": 2,
        "up_to_date": 0,
        "copied": 2,
        "failed": 0,
        "deferred": 0,
        "discovered": 1,
        "bytes_copied": sum(len(b) for image in tags.values() for b in image.blobs.values()),
        "referrers_copied": 0,
        "referrers_failed": 0,
    }, report["summary"]
    [image] = report["images"]
    assert set(image) - ADDED_IMAGE_KEYS == IMAGE_KEYS, f"image keys: {sorted(image)}"
    assert image["discovery_error"] is None
    assert (image["name"], image["upstream"], image["target"]) == (
        NAME,
        f"{scenario.upstream.host}/{UPSTREAM_REPO}",
        f"{scenario.target.host}/{TARGET_REPO}",
    )
    by_tag = {t["tag"]: t for t in image["tags"]}
    for entry in image["tags"]:
        assert set(entry) == TAG_KEYS, f"tag keys: {sorted(entry)}"
        assert entry["referrers"] == dict.fromkeys(REFERRER_KEYS, 0), entry["referrers"]
    assert by_tag["2.0"]["discovered"] is True and by_tag["1.0"]["discovered"] is False
    for tag, built in tags.items():
        entry = by_tag[tag]
        assert (entry["state"], entry["action"], entry["error"]) == ("missing", "copied", None)
        assert entry["upstream_digest"] == entry["target_digest"] == built.digest
        assert entry["blobs_copied"] == len(built.blobs) and entry["blobs_skipped"] == 0
    assert "run ok" in result.stderr, f"the run's log should be on stderr: {result.stderr!r}"


def test_sync_with_a_tag_missing_upstream_reports_it_with_an_error_object_and_exits_1(
    scenario: Scenario,
) -> None:
    _seeded(scenario, {"1.0": images.oci_manifest(1)}, configured=["1.0", "1.1"])

    result = scenario.cli("--json", "sync")

    _expect(result, EXIT_FAILED)
    report = result.json()
    assert report["status"] == "failed"
    by_tag = {t["tag"]: t for t in report["images"][0]["tags"]}
    missing = by_tag["1.1"]
    assert (missing["state"], missing["action"]) == ("upstream_missing", "upstream_missing")
    assert set(missing["error"]) == {"code", "message"}, f"error keys: {missing['error']}"
    assert by_tag["1.0"]["action"] == "copied", "the other tag must still be copied"
    assert report["summary"]["failed"] == 1 and report["summary"]["copied"] == 1


def test_sync_dry_run_exits_0_reports_would_copy_and_writes_nothing(scenario: Scenario) -> None:
    _seeded(scenario, {"1.0": images.oci_index(1), "latest": images.oci_manifest(2)})
    before = storage_snapshot(scenario.target)
    scenario.clear_requests()

    result = scenario.cli("--json", "sync", "--dry-run")

    _expect(result, EXIT_OK)
    report = result.json()
    assert report["dry_run"] is True
    actions = {t["tag"]: t["action"] for t in report["images"][0]["tags"]}
    assert actions == {"1.0": "would_copy", "latest": "would_copy"}, actions
    assert not writes(scenario.target.requests()), "sync --dry-run wrote to the target"
    assert storage_snapshot(scenario.target) == before, "sync --dry-run changed the target"


def test_sync_image_tag_touches_only_that_tag_of_that_image(scenario: Scenario) -> None:
    one = {"1.0": images.oci_index(1), "1.1": images.oci_index(2)}
    other = {"1.0": images.oci_manifest(3)}
    scenario.add_image(NAME, list(one))
    scenario.add_image("other", list(other))
    seed(scenario.upstream, UPSTREAM_REPO, one)
    seed(scenario.upstream, Scenario.upstream_repo("other"), other)
    scenario.clear_requests()

    result = scenario.cli("--json", "sync", NAME, "1.1")

    _expect(result, EXIT_OK)
    report = result.json()
    listed = [(i["name"], t["tag"], t["action"]) for i in report["images"] for t in i["tags"]]
    assert listed == [(NAME, "1.1", "copied")], f"sync {NAME} 1.1 reported {listed}"
    with RawClient(scenario.target) as raw:
        assert raw.catalog() == [TARGET_REPO], f"target repos: {raw.catalog()}"
        assert raw.tags(TARGET_REPO) == ["1.1"]
    for side, server in (("upstream", scenario.upstream), ("target", scenario.target)):
        for r in server.requests():
            if r.path == "/v2/":
                continue
            assert "/other/" not in r.path, f"{side} saw a request for the other image: {r}"
            if "/manifests/" in r.path:
                ref = r.path.rsplit("/", 1)[1]
                assert ref in ("1.1",) or ref.startswith("sha256:"), (
                    f"{side} saw a manifest request for another tag: {r}"
                )


def test_sync_with_a_tiny_deadline_defers_every_tag_exits_3_and_writes_nothing(
    scenario: Scenario,
) -> None:
    _seeded(scenario, {"1.0": images.oci_manifest(1), "latest": images.oci_manifest(2)})
    scenario.clear_requests()

    result = scenario.cli("--json", "sync", "--deadline", "0.000001")

    _expect(result, EXIT_PARTIAL)
    report = result.json()
    assert report["status"] == "partial"
    got = {t["tag"]: (t["state"], t["action"]) for t in report["images"][0]["tags"]}
    assert got == {"1.0": (None, "deferred"), "latest": (None, "deferred")}, got
    assert report["summary"]["deferred"] == 2
    assert not writes(scenario.target.requests()), "deferred tags were written"


def test_sync_names_the_unset_credential_variable_and_fails(scenario: Scenario) -> None:
    _seeded(scenario, {"1.0": images.oci_manifest(1)})
    variable = scenario.password_var(scenario.target)
    scenario.env_overrides[variable] = None

    result = scenario.cli("sync")

    _expect(result, EXIT_FAILED)
    assert variable in result.stdout, (
        f"the report should say that {variable} is not set; {result.describe()}"
    )
    assert re.search(rf"{variable}\b.*not set", result.stdout + result.stderr), result.describe()


def _three_multi_platform_tags(scenario: Scenario) -> None:
    _seeded(
        scenario,
        {
            "1.0": images.oci_index(1),
            "1.1": images.oci_index(
                2, platforms=("linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le")
            ),
            "latest": images.oci_index_with_attestations(3),
        },
    )


def test_sync_with_a_pull_only_robot_fails_each_tag_without_stray_tracebacks(
    scenario: Scenario,
) -> None:
    _three_multi_platform_tags(scenario)
    token_server = scenario.target.token_server
    assert token_server is not None and scenario.target.username and scenario.target.password
    # A Quay robot with read permission only: HEADs work, the first upload is refused.
    token_server.add_user(scenario.target.username, scenario.target.password, actions=["pull"])

    result = scenario.cli("--json", "sync")

    _expect(result, EXIT_FAILED)
    entries = result.json()["images"][0]["tags"]
    assert [t["action"] for t in entries] == ["failed"] * 3, result.describe()
    assert "Traceback" not in result.stderr and "never retrieved" not in result.stderr, (
        f"a failed copy left tasks running past the run:\n{result.stderr[-3000:]}"
    )


# -- status ---------------------------------------------------------------------------------------


def test_status_exits_4_while_a_tag_differs_then_0_after_sync_and_never_writes(
    scenario: Scenario,
) -> None:
    _seeded(scenario, {"1.0": images.oci_index(1), "latest": images.oci_manifest(2)})
    before = storage_snapshot(scenario.target)
    scenario.clear_requests()

    pending = scenario.cli("--json", "status")

    _expect(pending, EXIT_DRIFT)
    states = {t["tag"]: (t["state"], t["action"]) for t in pending.json()["images"][0]["tags"]}
    assert states == {"1.0": ("missing", "would_copy"), "latest": ("missing", "would_copy")}
    assert not writes(scenario.target.requests()), "status wrote to the target"
    assert storage_snapshot(scenario.target) == before, "status changed the target"

    _expect(scenario.cli("sync"), EXIT_OK)
    scenario.clear_requests()
    done = scenario.cli("status", NAME)
    _expect(done, EXIT_OK)
    assert "up_to_date" in done.stdout, done.describe()
    assert not writes(scenario.target.requests()), "status wrote to the target"


@pytest.mark.parametrize(
    "command", [["status", "no-such-image"], ["sync", "no-such-image"], ["discover", "nope"]]
)
def test_unknown_image_name_exits_2_with_a_one_line_reason(
    tmp_path: Path, dead_port: int, command: list[str]
) -> None:
    # Loopback only (a port that refuses), in case the CLI ever connects before checking names.
    host = f"127.0.0.1:{dead_port}"
    image = _image(upstream=f"{host}/{UPSTREAM_REPO}", target=f"{host}/{TARGET_REPO}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config(images=[image], registries={host: {"tls": "disabled"}})))
    result = run_cli("--config", str(config), *command)
    _expect(result, EXIT_USAGE)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and command[1] in lines[0], (
        f"want one line naming {command[1]!r}; {result.describe()}"
    )
    assert "Traceback" not in result.stderr


# -- discover -------------------------------------------------------------------------------------


def test_discover_lists_exactly_the_window_sync_mirrors_newest_first(
    scenario: Scenario,
) -> None:
    tags = {
        tag: images.no_layers_image(i)
        for i, tag in enumerate(["1.0", "1.1", "1.9", "1.10", "2.0-rc.1", "v2.0", "latest"])
    }
    _seeded(scenario, tags, configured=["1.9", "latest"])
    scenario.images[0].update(check_new_tags=True, max_tags_to_check=4)
    seed(scenario.target, TARGET_REPO, {"1.10": tags["1.10"]})
    before = storage_snapshot(scenario.target)
    scenario.clear_requests()

    result = scenario.cli("--json", "discover", NAME)
    wider = scenario.cli("discover", NAME, "6", "--json")
    dry_run = scenario.cli("--json", "sync", "--dry-run")

    _expect(result, EXIT_OK)
    assert result.json() == {
        "image": NAME,
        "tags": [
            {"tag": "v2.0", "configured": False, "on_target": False},
            {"tag": "2.0-rc.1", "configured": False, "on_target": False},
            {"tag": "1.10", "configured": False, "on_target": True},
            {"tag": "1.9", "configured": True, "on_target": False},
        ],
    }, result.describe()
    assert [t["tag"] for t in wider.json()["tags"]] == [
        "v2.0", "2.0-rc.1", "1.10", "1.9", "1.1", "1.0"
    ]  # fmt: skip
    mirrored = {t["tag"] for t in dry_run.json()["images"][0]["tags"] if t["discovered"]}
    window = {t["tag"] for t in result.json()["tags"] if not t["configured"]}
    assert mirrored == window, f"sync discovers {mirrored}, discover shows {window}"
    assert not writes(scenario.target.requests()), "discover wrote to the target"
    assert storage_snapshot(scenario.target) == before, "discover changed the target"


def test_sync_image_tag_outside_the_window_is_refused_before_the_run(scenario: Scenario) -> None:
    tags = {tag: images.no_layers_image(i) for i, tag in enumerate(["1.0", "1.1", "1.2"])}
    _seeded(scenario, tags, configured=["1.2"])
    scenario.images[0].update(check_new_tags=True, max_tags_to_check=2)

    refused = scenario.cli("sync", NAME, "1.0")
    accepted = scenario.cli("--json", "sync", NAME, "1.1")

    _expect(refused, EXIT_USAGE)
    assert "1.2, 1.1" in refused.stderr, refused.describe()
    assert "run " not in refused.stderr, f"the run must not start: {refused.stderr!r}"
    _expect(accepted, EXIT_OK)
    [entry] = accepted.json()["images"][0]["tags"]
    assert (entry["tag"], entry["discovered"], entry["action"]) == ("1.1", True, "copied")


def test_logs_neither_repeat_nor_contradict_the_table(scenario: Scenario) -> None:
    _seeded(scenario, {"1.0": images.oci_manifest(1), "latest": images.no_layers_image(2)})

    status = scenario.cli("status")
    synced = scenario.cli("sync")

    _expect(status, EXIT_DRIFT)
    _expect(synced, EXIT_OK)
    assert "not up to date: 2 tags" in status.stdout, status.describe()
    log_lines = [line for line in status.stderr.splitlines() if line.strip()]
    assert log_lines == ["INFO status not up to date: 2 tags, 0 up to date, 2 to copy, 0 failed"], (
        status.describe()
    )
    for result in (status, synced):
        for tag in ("1.0", "latest"):
            assert f":{tag}" not in result.stderr, f"a log line repeats the table: {result.stderr}"
    assert [ln for ln in synced.stderr.splitlines() if ln.strip()] == [
        ln for ln in synced.stderr.splitlines() if ln.startswith("INFO run ok")
    ], synced.describe()


# -- check-deps -----------------------------------------------------------------------------------


def test_check_deps_exits_0_when_every_registry_answers_and_authenticates(
    scenario: Scenario,
) -> None:
    _seeded(scenario, {"1.0": images.oci_manifest(1)})
    result = scenario.cli("check-deps")
    _expect(result, EXIT_OK)
    for server in (scenario.upstream, scenario.target):
        assert server.host in result.stdout, f"{server.host} not checked; {result.describe()}"


def test_check_deps_with_a_wrong_password_exits_1_naming_the_registry_not_the_password(
    scenario: Scenario,
) -> None:
    _seeded(scenario, {"1.0": images.oci_manifest(1)})
    wrong = "wrong-robot-token-7f3a"
    scenario.env_overrides[scenario.password_var(scenario.target)] = wrong

    result = scenario.cli("check-deps")

    _expect(result, EXIT_FAILED)
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and scenario.target.host in failing[0], (
        f"want one FAIL line naming {scenario.target.host}; {result.describe()}"
    )
    assert wrong not in result.stdout + result.stderr, "check-deps printed the password"


def test_check_deps_with_an_unreachable_registry_exits_1_naming_it(
    scenario: Scenario, dead_port: int
) -> None:
    scenario.add_image(NAME, ["1.0"])
    dead = f"127.0.0.1:{dead_port}"
    scenario.images[0]["target"] = f"{dead}/sail-dev/{NAME}"
    config = scenario.config_dict()
    config["registries"] = {**scenario.registries(), dead: {"tls": "disabled"}}
    path = scenario.workdir / "unreachable.json"
    path.write_text(json.dumps(config))

    result = scenario.cli("check-deps", config=path)

    _expect(result, EXIT_FAILED)
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and dead in failing[0], (
        f"want one FAIL line naming {dead}; {result.describe()}"
    )


def test_check_deps_fails_credentials_that_cannot_be_resolved_even_where_none_are_asked_for(
    scenario: Scenario, anon_registry: RegistryServer
) -> None:
    host = anon_registry.host  # no auth at all: it never asks for the credentials
    config = {
        "images": [
            {"name": NAME, "upstream": f"{host}/i/a", "target": f"{host}/s/a", "tags": ["1.0"]}
        ],
        "registries": {
            host: {"tls": "disabled", "username": "env:NOPE_USER", "password": "env:NOPE_PASS"}
        },
    }
    path = scenario.workdir / "unresolvable.json"
    path.write_text(json.dumps(config))

    result = scenario.cli("check-deps", config=path)

    _expect(result, EXIT_FAILED)
    failing = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and "credentials" in failing[0] and "NOPE_USER" in failing[0], (
        f"want one FAIL line naming the credentials and the variable; {result.describe()}"
    )


# -- copy -----------------------------------------------------------------------------------------


def test_copy_copies_one_reference_with_every_platform_digest_exactly(scenario: Scenario) -> None:
    image = images.oci_index_with_attestations(6)
    seed(scenario.upstream, UPSTREAM_REPO, {"1.0": image})
    scenario.images.clear()

    result = scenario.cli(
        "--json",
        "copy",
        scenario.upstream.ref(UPSTREAM_REPO, "1.0"),
        scenario.target.ref(TARGET_REPO, "1.0"),
    )

    _expect(result, EXIT_OK)
    assert result.json()["digest"] == image.digest
    with RawClient(scenario.target) as raw:
        assert raw.head_manifest(TARGET_REPO, "1.0") == image.digest
        assert raw.verify_image(TARGET_REPO, "1.0") >= image.all_digests()


# -- validate and list ----------------------------------------------------------------------------

_IMAGE = {
    "name": NAME,
    "upstream": f"docker.io/{UPSTREAM_REPO}",
    "target": f"quay.io/{TARGET_REPO}",
    "tags": ["1.0", "latest"],
}
_VALID: dict[str, object] = {
    "images": [_IMAGE],
    "check_new_tags": True,
    "max_tags_to_check": 10,
}


def _image(**changes: object) -> dict[str, object]:
    return {**_IMAGE, **changes}


def _config(**changes: object) -> dict[str, object]:
    return {**_VALID, **changes}


_PLAINTEXT_PASSWORD = "hunter2-in-the-file"

# name -> (config file text, or None for no file; JSON paths each problem line must name)
_INVALID: dict[str, tuple[str | None, list[str]]] = {
    "unknown top-level key": (json.dumps(_config(check_new_tag=True)), ["check_new_tag"]),
    "unknown image key": (json.dumps(_config(images=[_image(tagz=["1"])])), ["images[0].tagz"]),
    "max_tags_to_check as a string": (
        json.dumps(_config(max_tags_to_check="10")),
        ["max_tags_to_check"],
    ),
    "check_new_tags as yes": (json.dumps(_config(check_new_tags="yes")), ["check_new_tags"]),
    "image check_new_tags as yes": (
        json.dumps(_config(images=[_image(check_new_tags="yes")])),
        ["images[0].check_new_tags"],
    ),
    "image max_tags_to_check as a string": (
        json.dumps(_config(images=[_image(max_tags_to_check="3")])),
        ["images[0].max_tags_to_check"],
    ),
    "bad upstream reference": (
        json.dumps(_config(images=[_image(upstream="docker.io/Istio/UPPER")])),
        ["images[0].upstream"],
    ),
    "target with a tag": (
        json.dumps(_config(images=[_image(target="quay.io/sail-dev/x:1.0")])),
        ["images[0].target"],
    ),
    "duplicate names": (
        json.dumps(_config(images=[_image(), _image(target="quay.io/sail-dev/other")])),
        ["images[1].name"],
    ),
    "duplicate targets": (
        json.dumps(_config(images=[_image(), _image(name="other")])),
        ["images[1].target"],
    ),
    "bad regex": (
        json.dumps(_config(images=[_image(tag_pattern="(")])),
        ["images[0].tag_pattern"],
    ),
    "negative max_tags_to_check": (
        json.dumps(_config(max_tags_to_check=-1)),
        ["max_tags_to_check"],
    ),
    "negative image max_tags_to_check": (
        json.dumps(_config(images=[_image(max_tags_to_check=-2)])),
        ["images[0].max_tags_to_check"],
    ),
    "no tags and discovery off": (
        json.dumps(_config(check_new_tags=False, images=[_image(tags=[])])),
        ["images[0].tags"],
    ),
    "target same as upstream": (
        json.dumps(_config(images=[_image(target=f"index.docker.io/{UPSTREAM_REPO}")])),
        ["images[0].target"],
    ),
    "registry tls off": (
        json.dumps(_config(registries={"quay.io": {"tls": "off"}})),
        ['registries["quay.io"].tls'],
    ),
    "registry password in plain text": (
        json.dumps(
            _config(registries={"quay.io": {"username": "env:U", "password": _PLAINTEXT_PASSWORD}})
        ),
        ['registries["quay.io"].password'],
    ),
    "registry key with a scheme": (
        json.dumps(_config(registries={"https://quay.io": {"tls": "enabled"}})),
        ['registries["https://quay.io"]'],
    ),
    "registry username without password": (
        json.dumps(_config(registries={"quay.io": {"username": "env:U"}})),
        ['registries["quay.io"].password'],
    ),
    "tags not a list": (json.dumps(_config(images=[_image(tags="1.0")])), ["images[0].tags"]),
    "duplicate tag": (
        json.dumps(_config(images=[_image(tags=["1.0", "1.0"])])),
        ["images[0].tags[1]"],
    ),
    "images missing": (json.dumps({"check_new_tags": False}), ["images"]),
    "bad cron": (json.dumps(_config(sync_schedule="every day")), ["sync_schedule"]),
    "root not an object": ("[]", ["(root)"]),
    "invalid JSON": ('{"images": [', ["(root)"]),
    "missing file": (None, ["(root)"]),
}


@pytest.mark.parametrize("case", sorted(_INVALID))
def test_validate_rejects_an_invalid_config_with_exit_2_naming_the_json_path(
    tmp_path: Path, case: str
) -> None:
    text, paths = _INVALID[case]
    config = tmp_path / "config.json"
    if text is not None:
        config.write_text(text)

    result = run_cli("--config", str(config), "validate")

    _expect(result, EXIT_USAGE)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(paths), f"{case}: want {len(paths)} problem lines; {result.describe()}"
    for line, path in zip(lines, paths, strict=True):
        assert line.startswith(f"{config}: {path}: "), (
            f"{case}: the line should name {path}: {line!r}"
        )
    assert _PLAINTEXT_PASSWORD not in result.stdout + result.stderr, "validate echoed a secret"


def test_validate_lists_every_problem_of_one_config_each_on_its_own_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "images": [
                    _image(check_new_tags="yes"),
                    _image(name="b", target="quay.io/sail-dev/b", tag_pattern="["),
                    _image(name="c", target="quay.io/sail-dev/c", tags=["ok", "bad tag"]),
                ],
                "max_tags_to_check": "10",
                "bogus": 1,
                "registries": {"quay.io": {"tls": "off"}},
            }
        )
    )

    result = run_cli("--config", str(config), "validate")

    _expect(result, EXIT_USAGE)
    expected = [
        "images[0].check_new_tags",
        "images[1].tag_pattern",
        "images[2].tags[1]",
        "max_tags_to_check",
        "bogus",
        'registries["quay.io"].tls',
    ]
    named = {line.split(": ")[1] for line in result.stdout.splitlines() if line.strip()}
    assert named == set(expected), f"want one line per problem at {expected}; {result.describe()}"
    assert len(result.stdout.splitlines()) == len(expected), result.describe()


def test_validate_accepts_the_seed_format_with_exit_0(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_VALID))
    result = run_cli("--config", str(config), "validate")
    _expect(result, EXIT_OK)
    assert "valid" in result.stdout, result.describe()


def test_list_shows_each_image_with_its_tags_and_upstream_to_target(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    second = _image(
        name="helloworld-v2",
        upstream="docker.io/istio/examples-helloworld-v2",
        target="quay.io/sail-dev/examples-helloworld-v2",
        tags=["2.0"],
        check_new_tags=False,
    )
    config.write_text(json.dumps(_config(images=[_IMAGE, second])))

    table = run_cli("--config", str(config), "list")
    as_json = run_cli("--config", str(config), "--json", "list")

    _expect(table, EXIT_OK)
    rows = table.stdout.splitlines()
    assert len(rows) == 3, f"want a header and two rows; {table.describe()}"
    first_row = next(r for r in rows if r.startswith(NAME))
    assert "1.0,latest" in first_row
    assert f"docker.io/{UPSTREAM_REPO} -> quay.io/{TARGET_REPO}" in first_row, first_row
    second_row = next(r for r in rows if r.startswith("helloworld-v2"))
    assert "2.0" in second_row and "off" in second_row, second_row
    _expect(as_json, EXIT_OK)
    listed = as_json.json()["images"]
    assert [(i["name"], i["tags"], i["check_new_tags"]) for i in listed] == [
        (NAME, ["1.0", "latest"], True),
        ("helloworld-v2", ["2.0"], False),
    ], listed
