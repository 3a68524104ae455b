"""SIGKILL mid-copy: the target never serves a half-copied tag, and the next run converges.

`python -m sync --config CFG sync` runs as a subprocess against a real upstream and a real target
reached through `FaultProxy`, which slows writes down a little and kills the process at seeded
points: when the uploads it has seen reach a fraction of all blob bytes, at the Nth manifest PUT,
or after a seeded delay. Then the target is checked with the raw client (every tag it serves
resolves fully, with the upstream's digest), and a rerun must end digest-exact.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import images
from tests.bed.faults import Delay, Invoke
from tests.bed.images import Image
from tests.bed.proxy import FaultProxy
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer
from tests.scenario import seeded_registry

SEED = 4242
LAYER = 160 * 1024
#: Added to every write, so that a run lasts long enough for the timed kill points.
WRITE_DELAY = 0.1
REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOGUE: dict[str, dict[str, Image]] = {
    "istio/app": {
        "1.0": images.oci_index(SEED + 1, layer_size=LAYER),
        "1.1": images.oci_index_with_attestations(SEED + 2, layer_size=LAYER),
    },
    "istio/tool": {"2.0": images.docker_manifest_list(SEED + 3, layer_size=LAYER)},
}
TOTAL_BLOB_BYTES = sum(
    len(data)
    for tags in CATALOGUE.values()
    for image in tags.values()
    for data in image.blobs.values()
)
TAGS = sum(len(tags) for tags in CATALOGUE.values())
MANIFESTS = sum(
    len(image.manifest_digests()) for tags in CATALOGUE.values() for image in tags.values()
)


def _kill_points() -> list[tuple[str, float]]:
    """Seeded kill points: (kind, where). `upload`: fraction of all blob bytes uploaded;
    `manifest`: the Nth manifest PUT (children by digest, then tags); `tag`: the Nth PUT of a
    manifest by tag; `delay`: seconds after start."""
    rng = random.Random(SEED)
    return [
        ("upload", round(rng.uniform(0.05, 0.5), 3)),
        ("upload", round(rng.uniform(0.5, 0.95), 3)),
        ("manifest", float(rng.randrange(2, 6))),
        ("manifest", float(rng.randrange(8, MANIFESTS))),
        ("tag", 2.0),
        ("delay", round(rng.uniform(0.6, 1.2), 3)),
    ]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with seeded_registry(tmp_path_factory.mktemp("crash-upstream"), CATALOGUE) as server:
        yield server


def _drop(method: str, target: str) -> None:
    raise ConnectionAbortedError("the client is dead")


def _write_config(path: Path, upstream: str, target: str) -> Path:
    config = {
        "images": [
            {
                "name": repo.split("/")[1],
                "upstream": f"{upstream}/{repo}",
                "target": f"{target}/sail-dev/{repo.split('/')[1]}",
                "tags": sorted(tags),
            }
            for repo, tags in CATALOGUE.items()
        ],
        "check_new_tags": False,
        "registries": {upstream: {"tls": "disabled"}, target: {"tls": "disabled"}},
    }
    path.write_text(json.dumps(config))
    return path


def _env(tmp: Path) -> dict[str, str]:
    """The parent's environment minus proxies and Docker credentials: loopback only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("IMAGE_SYNC")
    }
    docker = tmp / "docker-config"
    docker.mkdir(exist_ok=True)
    env["DOCKER_CONFIG"] = str(docker)
    return env


def _start_sync(config: Path, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    out = (tmp / f"{name}.stdout").open("wb")
    err = (tmp / f"{name}.stderr").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(config), "--json", "sync"],
            cwd=REPO_ROOT,
            env=_env(tmp),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    finally:
        out.close()
        err.close()


def _report(tmp: Path, name: str) -> dict[str, Any]:
    text = (tmp / f"{name}.stdout").read_text()
    assert text.strip(), f"no report; stderr:\n{(tmp / f'{name}.stderr').read_text()[-2000:]}"
    report: dict[str, Any] = json.loads(text)
    return report


def _assert_target_consistent(target: RegistryServer) -> int:
    """Every tag the target serves resolves fully and is upstream's; returns how many."""
    served = 0
    with RawClient(target) as raw:
        for repo, tags in CATALOGUE.items():
            name = f"sail-dev/{repo.split('/')[1]}"
            for tag in raw.tags(name):
                assert tag in tags, f"{name}:{tag} is not an upstream tag"
                assert raw.head_manifest(name, tag) == tags[tag].digest, f"{name}:{tag} differs"
                seen = raw.verify_image(name, tag)
                missing = tags[tag].all_digests() - seen
                assert not missing, f"{name}:{tag} is served but lacks {sorted(missing)}"
                served += 1
    return served


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "where"), _kill_points(), ids=str)
def test_sigkill_mid_copy_leaves_only_whole_tags_and_a_rerun_converges(
    upstream: RegistryServer,
    registry_factory: RegistryFactory,
    tmp_path: Path,
    kind: str,
    where: float,
) -> None:
    target = registry_factory("anonymous")
    with FaultProxy(target, seed=SEED) as proxy:
        # Slow writes a little, so there is a "mid-copy" to land in.
        proxy.add_rule(Delay(WRITE_DELAY), method="PUT|POST")
        config = _write_config(tmp_path / "config.json", upstream.host, proxy.host)
        process = _start_sync(config, tmp_path, "killed")
        killed_at: list[str] = []

        def kill(why: str) -> None:
            """SIGKILL the run; called in the proxy's thread, it also drops the request at
            hand and every later one, so nothing the dead client did not finish sending
            reaches the registry."""
            if process.poll() is None and not killed_at:
                killed_at.append(why)
                os.kill(process.pid, signal.SIGKILL)
                proxy.add_rule(Invoke(_drop))
            raise ConnectionAbortedError(why)

        timer: threading.Timer | None = None
        if kind == "upload":
            threshold = int(TOTAL_BLOB_BYTES * where)
            proxy.on_request_bytes(threshold, lambda seen: kill(f"after {seen} upload bytes"))
        elif kind in ("manifest", "tag"):
            count = [0]

            def on_manifest(method: str, path: str) -> None:
                count[0] += 1
                if count[0] == int(where):
                    kill(f"at {kind} PUT #{count[0]} {path.rsplit('/', 1)[-1][:19]}")

            pattern = r"/manifests/" if kind == "manifest" else r"/manifests/[^:]+$"
            proxy.add_rule(Invoke(on_manifest), method="PUT", path=pattern)
        else:

            def kill_now() -> None:
                if process.poll() is None:
                    killed_at.append(f"after {where}s")
                    os.kill(process.pid, signal.SIGKILL)
                    proxy.add_rule(Invoke(_drop))

            timer = threading.Timer(where, kill_now)
            timer.start()
        try:
            process.wait(timeout=60)
        finally:
            if timer is not None:
                timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == -signal.SIGKILL, (
            f"the run ended by itself (exit {process.returncode}) before the kill point "
            f"{kind}={where}: the test did not test a crash"
        )
        assert killed_at
        # Requests the dead client had sent whole may still be in the proxy's write delay:
        # let them land (as they would at a real registry) before looking at the target.
        time.sleep(3 * WRITE_DELAY)

        served = _assert_target_consistent(target)
        if kind != "delay":
            assert served < TAGS, f"killed {killed_at[0]} yet every tag was already there"
        print(f"killed {killed_at[0]}: {served}/{TAGS} tags served, all whole")

        proxy.clear_rules()
        rerun = _start_sync(config, tmp_path, "rerun")
        assert rerun.wait(timeout=60) == 0, (tmp_path / "rerun.stderr").read_text()[-2000:]
        report = _report(tmp_path, "rerun")
        assert report["status"] == "ok"
        assert report["summary"]["up_to_date"] == served
        assert report["summary"]["copied"] == TAGS - served
        assert _assert_target_consistent(target) == TAGS

        again = _start_sync(config, tmp_path, "again")
        assert again.wait(timeout=60) == 0
        report = _report(tmp_path, "again")
        assert report["summary"]["up_to_date"] == TAGS
        assert report["summary"]["bytes_copied"] == 0


def test_a_run_without_a_kill_copies_everything_through_the_proxy(
    upstream: RegistryServer, registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """The control: the same setup, no kill, ends exact; and how long it takes bounds the
    delays chosen above."""
    target = registry_factory("anonymous")
    with FaultProxy(target, seed=SEED) as proxy:
        proxy.add_rule(Delay(WRITE_DELAY), method="PUT|POST")
        config = _write_config(tmp_path / "config.json", upstream.host, proxy.host)
        started = time.monotonic()
        process = _start_sync(config, tmp_path, "control")
        assert process.wait(timeout=60) == 0, (tmp_path / "control.stderr").read_text()[-2000:]
        took = time.monotonic() - started
        assert _assert_target_consistent(target) == TAGS
        assert max(w for k, w in _kill_points() if k == "delay") < took, (
            f"a full run takes {took:.2f}s: the delay kill points must fall inside it"
        )
        assert proxy.request_bytes >= TOTAL_BLOB_BYTES


@pytest.mark.slow
def test_a_rerun_converges_after_a_kill_that_left_a_big_blob_on_the_target(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    upstream, target = registry_factory("anonymous"), registry_factory("anonymous")
    big = images.oci_index(SEED, platforms=("linux/amd64",), layers=1, layer_size=9 * 1024 * 1024)
    with RawClient(upstream) as raw:
        raw.push_image("istio/app", "1.0", big)
    catalogue = {"istio/app": {"1.0": big}}
    with FaultProxy(target, seed=SEED) as proxy:
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {
                    "images": [
                        {
                            "name": "app",
                            "upstream": f"{upstream.host}/istio/app",
                            "target": f"{proxy.host}/sail-dev/app",
                            "tags": ["1.0"],
                        }
                    ],
                    "check_new_tags": False,
                    "registries": {
                        upstream.host: {"tls": "disabled"},
                        proxy.host: {"tls": "disabled"},
                    },
                }
            )
        )
        process = _start_sync(config, tmp_path, "killed")

        def kill(method: str, target: str) -> None:
            os.kill(process.pid, signal.SIGKILL)
            raise ConnectionAbortedError("killed")

        # Every blob is up; the kill lands on the first manifest PUT, which never arrives.
        proxy.add_rule(Invoke(kill), method="PUT", path=r"/manifests/", times=1)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
        with RawClient(target) as raw:
            assert raw.tags("sail-dev/app") == []
            assert all(raw.blob_exists("sail-dev/app", d) for d in big.blobs)
        proxy.clear_rules()

        rerun = _start_sync(config, tmp_path, "rerun")
        rerun.wait(timeout=60)
        report = _report(tmp_path, "rerun")
        assert rerun.returncode == 0, json.dumps(report["images"], indent=2)
        with RawClient(target) as raw:
            assert raw.head_manifest("sail-dev/app", "1.0") == big.digest
            assert (
                raw.verify_image("sail-dev/app", "1.0")
                >= catalogue["istio/app"]["1.0"].all_digests()
            )
