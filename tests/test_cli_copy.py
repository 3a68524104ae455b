"""`image-sync copy SRC DST` through the real command line, as a subprocess.

The config (`"images": []`) names each test-bed registry under `registries` with
`tls: "disabled"` and `env:` credential references; the subprocess gets those variables. Targets
are then checked with the bed's raw client: digest-exact, and never tagged when the copy failed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer
from tests.scenario import PAIRS, Pair

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Cli:
    """Runs `python -m sync --config CONFIG ...` with credentials in the environment only."""

    config: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sync", "--config", str(self.config), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _cli(
    tmp_path: Path, servers: dict[str, RegistryServer | None], *, anonymous: tuple[str, ...] = ()
) -> Cli:
    """A config naming every server by its prefix (SRC, DST, ...): plain HTTP, and for those
    not in `anonymous`, `env:PREFIX_USER` / `env:PREFIX_PASS` (dummy values when the registry
    wants none: credentials are only used when a registry asks)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMAGE_SYNC", "REGISTRY_", "DOCKER_"))
    }
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir(exist_ok=True)
    env["DOCKER_CONFIG"] = str(docker_config)  # nothing from the host's ~/.docker
    registries: dict[str, dict[str, str]] = {}
    for prefix, server in servers.items():
        host = server.host if server is not None else prefix
        entry = {"tls": "disabled"}
        if server is not None and prefix not in anonymous:
            entry |= {"username": f"env:{prefix}_USER", "password": f"env:{prefix}_PASS"}
            env[f"{prefix}_USER"] = server.username or "unused-user"
            env[f"{prefix}_PASS"] = server.password or "unused-password"
        registries[host] = entry
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"images": [], "registries": registries}, indent=2))
    return Cli(config, env)


def _push(server: RegistryServer, repo: str, tag: str, image: Image) -> None:
    with RawClient(server) as client:
        client.push_image(repo, tag, image)


def _assert_mirrored(
    source: RegistryServer, source_repo: str, target: RegistryServer, target_repo: str, tag: str
) -> None:
    with RawClient(source) as up, RawClient(target) as down:
        up_manifest = up.get_manifest(source_repo, tag)
        assert down.get_manifest(target_repo, tag) == up_manifest
        assert down.verify_image(target_repo, tag) == up.verify_image(source_repo, tag)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line reason, got: {stderr!r}"
    return lines[0]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- copying ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=[p.id for p in PAIRS])
def test_copy_is_digest_exact_in_every_auth_mode(
    pair: Pair, registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    source, target = registry_factory(pair.source), registry_factory(pair.target)
    app = images.oci_index_with_attestations(0)
    listed = images.docker_manifest_list(1)
    _push(source, "up/app", "v1", app)
    _push(source, "up/list", "1.0", listed)
    cli = _cli(
        tmp_path,
        {"SRC": source, "DST": target},
        anonymous=("SRC",) if pair.anonymous_source else (),
    )

    plain = cli.run("copy", source.ref("up/app", "v1"), target.ref("mirror/app", "v1"))
    assert plain.returncode == 0, plain.stderr
    assert app.digest in plain.stdout
    assert plain.stderr == ""
    _assert_mirrored(source, "up/app", target, "mirror/app", "v1")

    # DST without a tag takes the source's; --json reports digest and bytes.
    as_json = cli.run("--json", "copy", source.ref("up/list", "1.0"), f"{target.host}/mirror/list")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["digest"] == listed.digest
    assert report["media_type"] == images.DOCKER_MANIFEST_LIST
    assert report["destination"] == target.ref("mirror/list", "1.0")
    assert report["bytes_copied"] == sum(len(blob) for blob in listed.blobs.values())
    assert report["blobs_copied"] == len(listed.blobs)
    _assert_mirrored(source, "up/list", target, "mirror/list", "1.0")

    # Again: everything is there already.
    again = json.loads(
        cli.run(
            "--json", "copy", source.ref("up/list", "1.0"), target.ref("mirror/list", "1.0")
        ).stdout
    )
    assert (again["digest"], again["bytes_copied"], again["blobs_copied"]) == (
        listed.digest,
        0,
        0,
    )


# -- failures --------------------------------------------------------------------------------


@pytest.mark.integration
def test_an_unparseable_reference_is_a_usage_error(tmp_path: Path) -> None:
    cli = _cli(tmp_path, {})
    result = cli.run("copy", "Not A//Reference!", "127.0.0.1:5000/mirror/app:v1")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    reason = _one_line(result.stderr)
    assert reason.startswith("image-sync: "), reason
    assert "Not A//Reference!" in reason

    bad_target = cli.run("copy", "127.0.0.1:5000/up/app:v1", "127.0.0.1:5000/UPPER/case:v1")
    assert bad_target.returncode == 2, (bad_target.stdout, bad_target.stderr)
    assert "UPPER/case" in _one_line(bad_target.stderr)


def test_an_unreachable_registry_fails_with_a_clear_reason(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    target = registry_factory("anonymous")
    port = _closed_port()
    nowhere = f"127.0.0.1:{port}"
    cli = _cli(tmp_path, {nowhere: None, "DST": target})

    started = time.monotonic()
    result = cli.run("copy", f"{nowhere}/up/app:v1", target.ref("mirror/app", "v1"))
    elapsed = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    reason = _one_line(result.stderr)
    assert reason.startswith("image-sync: UNREACHABLE: "), reason
    assert nowhere in reason
    assert re.search(r"connect|refused", reason, re.IGNORECASE), reason
    with RawClient(target) as client:
        assert client.catalog() == []
    # Connection refused counts as temporary: the default policy makes 5 attempts with
    # backoff (0.25-0.5, 0.5-1, 1-2, 2-4 s), so this takes about 4-8 s (7.7 s measured).
    assert elapsed < 20, f"took {elapsed:.1f}s"
