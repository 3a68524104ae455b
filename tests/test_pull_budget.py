"""The upstream pull allowance: below the floor, copies are deferred without a single pull.

A `FaultProxy` in front of the upstream adds Docker Hub's headers (`ratelimit-limit: 100;w=21600`,
`ratelimit-remaining: N;w=21600`) to every manifest answer, and `python -m sync --json sync`
runs against it. Below the floor (default 10) every tag that needs a copy is `deferred` with
PULL_BUDGET, the run is `partial` (exit 3), no manifest or blob GET reaches the upstream, and the
report's `rate_limit` says what the registry said. Above the floor, or with `--pull-floor 0`,
copies happen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import images
from tests.bed.faults import AddHeaders
from tests.bed.images import Image
from tests.bed.proxy import FaultProxy
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer
from tests.scenario import seeded_registry

SEED = 777
REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOGUE: dict[str, Image] = {
    "1.0": images.oci_index(SEED, layer_size=4096),
    "1.1": images.docker_manifest_list(SEED + 1, layer_size=4096),
    "1.2": images.oci_index_with_attestations(SEED + 2, layer_size=4096),
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    base = tmp_path_factory.mktemp("budget-upstream")
    with seeded_registry(base, {"istio/app": CATALOGUE}) as server:
        yield server


def _sync(
    upstream: FaultProxy, target: RegistryServer, tmp: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    """`python -m sync --json sync [extra]`: exit code, report, stderr."""
    config = tmp / "config.json"
    config.write_text(
        json.dumps(
            {
                "images": [
                    {
                        "name": "app",
                        "upstream": f"{upstream.host}/istio/app",
                        "target": f"{target.host}/sail-dev/app",
                        "tags": sorted(CATALOGUE),
                    }
                ],
                "check_new_tags": False,
                "registries": {
                    upstream.host: {"tls": "disabled"},
                    target.host: {"tls": "disabled"},
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["DOCKER_CONFIG"] = str(tmp)
    done = subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(config), "--json", "sync", *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip(), f"no report (exit {done.returncode}):\n{done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report, done.stderr


def _limited(upstream: RegistryServer, remaining: int) -> FaultProxy:
    proxy = FaultProxy(upstream, seed=SEED).start()
    headers = (("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", f"{remaining};w=21600"))
    proxy.add_rule(AddHeaders(headers), path=r"^/v2/.+/manifests/")
    return proxy


def _tags(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [tag for image in report["images"] for tag in image["tags"]]


def _pulls(proxy: FaultProxy) -> list[str]:
    return [
        f"{r.method} {r.bare_path}"
        for r in proxy.log()
        if r.method == "GET" and ("/manifests/" in r.bare_path or "/blobs/" in r.bare_path)
    ]


@pytest.fixture
def target(registry_factory: RegistryFactory) -> RegistryServer:
    return registry_factory("anonymous")


def test_below_the_floor_every_copy_is_deferred_without_a_pull(
    upstream: RegistryServer, target: RegistryServer, tmp_path: Path
) -> None:
    proxy = _limited(upstream, remaining=5)
    try:
        code, report, stderr = _sync(proxy, target, tmp_path)
    finally:
        proxy.stop()

    assert code == 3, stderr[-2000:]
    assert report["status"] == "partial"
    assert report["rate_limit"] == {"registry": proxy.host, "remaining": 5, "limit": 100}
    assert report["summary"]["deferred"] == len(CATALOGUE)
    assert report["summary"]["copied"] == 0
    for tag in _tags(report):
        assert tag["action"] == "deferred", tag
        assert tag["error"]["code"] == "PULL_BUDGET", tag
        assert "5" in tag["error"]["message"] and "10" in tag["error"]["message"], tag
        assert tag["state"] == "missing"
        assert tag["upstream_digest"] == CATALOGUE[tag["tag"]].digest
    assert _pulls(proxy) == [], "manifest or blob GETs reached the upstream"
    assert [r.method for r in proxy.log() if "/manifests/" in r.bare_path] == ["HEAD"] * 3
    with RawClient(target) as raw:
        assert raw.tags("sail-dev/app") == []


def test_above_the_floor_copies_happen(
    upstream: RegistryServer, target: RegistryServer, tmp_path: Path
) -> None:
    proxy = _limited(upstream, remaining=50)
    try:
        code, report, stderr = _sync(proxy, target, tmp_path)
    finally:
        proxy.stop()

    assert code == 0, stderr[-2000:]
    assert report["status"] == "ok"
    assert report["summary"]["copied"] == len(CATALOGUE)
    assert report["rate_limit"] == {"registry": proxy.host, "remaining": 50, "limit": 100}
    assert _pulls(proxy)
    with RawClient(target) as raw:
        for tag, image in CATALOGUE.items():
            assert raw.head_manifest("sail-dev/app", tag) == image.digest


def test_pull_floor_zero_copies_even_at_5_remaining(
    upstream: RegistryServer, target: RegistryServer, tmp_path: Path
) -> None:
    proxy = _limited(upstream, remaining=5)
    try:
        code, report, stderr = _sync(proxy, target, tmp_path, "--pull-floor", "0")
    finally:
        proxy.stop()

    assert code == 0, stderr[-2000:]
    assert report["summary"]["copied"] == len(CATALOGUE)
    assert report["rate_limit"] == {"registry": proxy.host, "remaining": 5, "limit": 100}
    with RawClient(target) as raw:
        for tag, image in CATALOGUE.items():
            assert raw.head_manifest("sail-dev/app", tag) == image.digest


def test_up_to_date_tags_are_not_deferred_below_the_floor(
    upstream: RegistryServer, target: RegistryServer, tmp_path: Path
) -> None:
    """Comparing is free (HEAD): a tag already mirrored stays `up_to_date`, not `deferred`."""
    with RawClient(target) as raw:
        raw.push_image("sail-dev/app", "1.0", CATALOGUE["1.0"])
    proxy = _limited(upstream, remaining=0)
    try:
        code, report, _ = _sync(proxy, target, tmp_path)
    finally:
        proxy.stop()

    assert code == 3
    actions = {tag["tag"]: tag["action"] for tag in _tags(report)}
    assert actions == {"1.0": "up_to_date", "1.1": "deferred", "1.2": "deferred"}
    assert report["rate_limit"]["remaining"] == 0
    assert _pulls(proxy) == []
