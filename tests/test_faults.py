"""Syncs through a fault-injecting proxy: what the network and registries break, and what survives.

Every test mirrors several multi-platform images from a real upstream registry, reached only
through `FaultProxy`, to a real target registry, then checks the target with the raw client:
recoverable faults (429 with a short Retry-After, some 503s, resets and short bodies mid-blob,
CDN redirects, latency) must end digest-exact within bounded retries and time; a corrupt blob
must fail its own tag, naming digest and source, and nothing else. All randomness is seeded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import re
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import httpx
import pytest

from sync.config import Config, parse_config
from sync.engine import Engine, RunOptions, registries_for
from sync.report import Report, TagReport
from sync.retry import RetryPolicy
from tests.bed import images
from tests.bed.faults import (
    CdnRedirect,
    Delay,
    ResetBody,
    ResetRequest,
    ShortBody,
    by_digest,
    too_many_requests,
    unavailable,
)
from tests.bed.images import Image
from tests.bed.proxy import FaultProxy
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer
from tests.scenario import seeded_registry

SEED = 20261127
LAYER = 96 * 1024  # random bytes per layer: gzip cannot shrink them, so blobs are this big
ATTEMPTS = RetryPolicy().attempts
BLOB_PATH = r"^/v2/.+/blobs/sha256:"
MANIFEST_PATH = r"^/v2/.+/manifests/"


def _catalogue() -> dict[str, dict[str, Image]]:
    """Two upstream repositories, four tags, every one a multi-platform index."""
    return {
        "istio/app": {
            "1.0": images.oci_index(SEED + 1, layer_size=LAYER),
            "1.1": images.docker_manifest_list(SEED + 2, layer_size=LAYER),
            "1.2": images.oci_index_with_attestations(SEED + 3, layer_size=LAYER),
        },
        "istio/tool": {
            "2.0": images.oci_index(
                SEED + 4, platforms=("linux/amd64", "linux/arm64"), layer_size=LAYER
            ),
        },
    }


@dataclass
class World:
    upstream: RegistryServer
    target: RegistryServer
    proxy: FaultProxy  # in front of the upstream
    catalogue: dict[str, dict[str, Image]]

    def config(self, *, upstream_host: str | None = None, target_host: str | None = None) -> Config:
        up = upstream_host or self.proxy.host
        down = target_host or self.target.host
        return parse_config(
            {
                "images": [
                    {
                        "name": repo.split("/")[1],
                        "upstream": f"{up}/{repo}",
                        "target": f"{down}/sail-dev/{repo.split('/')[1]}",
                        "tags": sorted(tags),
                    }
                    for repo, tags in self.catalogue.items()
                ],
                "check_new_tags": False,
                "registries": {up: {"tls": "disabled"}, down: {"tls": "disabled"}},
            }
        )

    def expected(self) -> dict[tuple[str, str], Image]:
        """(image name, tag) -> the image upstream has under it."""
        return {
            (repo.split("/")[1], tag): image
            for repo, tags in self.catalogue.items()
            for tag, image in tags.items()
        }

    def tag_report(self, report: Report, name: str, tag: str) -> TagReport:
        for image in report.images:
            if image.name == name:
                for entry in image.tags:
                    if entry.tag == tag:
                        return entry
        raise AssertionError(f"{name}:{tag} missing from the report")

    def assert_exact(
        self, report: Report, *, except_: AbstractSet[tuple[str, str]] = frozenset()
    ) -> None:
        """Every tag (but `except_`) copied, and the target serves it digest-exact, whole."""
        with RawClient(self.target) as raw:
            for (name, tag), image in self.expected().items():
                if (name, tag) in except_:
                    continue
                entry = self.tag_report(report, name, tag)
                assert entry.action == "copied", f"{name}:{tag}: {entry}"
                assert entry.target_digest == image.digest
                repo = f"sail-dev/{name}"
                assert raw.head_manifest(repo, tag) == image.digest, f"{name}:{tag} not exact"
                seen = raw.verify_image(repo, tag)
                assert seen >= image.all_digests(), (
                    f"{name}:{tag} lacks {image.all_digests() - seen}"
                )

    def blob_bytes(self, *, except_: AbstractSet[tuple[str, str]] = frozenset()) -> int:
        return sum(
            len(data)
            for key, image in self.expected().items()
            if key not in except_
            for data in image.blobs.values()
        )


@pytest.fixture(scope="module")
def anon_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    base = tmp_path_factory.mktemp("faults-upstream-anon")
    with seeded_registry(base, _catalogue()) as server:
        yield server


@pytest.fixture(scope="module")
def hub_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Docker-Hub-like (Bearer tokens): every registry request carries `Authorization`."""
    base = tmp_path_factory.mktemp("faults-upstream-hub")
    with seeded_registry(base, _catalogue(), "bearer-hub") as server:
        yield server


def _figures(label: str, proxy: FaultProxy) -> None:
    """One line of what the proxy saw and did (shown with `pytest -s`; docs/RELIABILITY.md)."""
    log = proxy.log()
    injected = collections.Counter(name for r in log for name in r.faults)
    tries = collections.Counter(by_digest(r.method, r.path) for r in log if r.method != "POST")
    print(
        f"\nFIGURES {label}: {len(log)} requests, injected {dict(sorted(injected.items()))}, "
        f"at most {max(tries.values(), default=0)} tries of one request"
    )


@contextlib.contextmanager
def _world(
    upstream: RegistryServer, factory: RegistryFactory, seed: int, label: str
) -> Iterator[World]:
    """A fresh target and a fresh proxy (no rules, empty log) in front of `upstream`."""
    with FaultProxy(upstream, seed=seed) as proxy:
        yield World(upstream, factory("anonymous"), proxy, _catalogue())
        _figures(label, proxy)


@pytest.fixture
def world(
    anon_upstream: RegistryServer, registry_factory: RegistryFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    with _world(anon_upstream, registry_factory, SEED, request.node.name) as w:
        yield w


@pytest.fixture
def hub_world(
    hub_upstream: RegistryServer, registry_factory: RegistryFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    with _world(hub_upstream, registry_factory, SEED, request.node.name) as w:
        yield w


def run(config: Config) -> tuple[Report, float]:
    """One Engine run with the default retry policy; the report and how long it took."""

    async def go() -> Report:
        async with registries_for(config, None) as registries:
            return await Engine(config, registries).run(RunOptions())

    started = time.monotonic()
    report = asyncio.run(go())
    took = time.monotonic() - started
    s = report.summary
    print(f"\nRUN {report.status} in {took:.2f}s: {s.copied} copied, {s.failed} failed")
    return report, took


def max_tries_per_request(proxy: FaultProxy, path: str = r".*") -> int:
    """The most times one (method, path) went through the proxy."""
    counts = collections.Counter(
        (r.method, r.path)
        for r in proxy.log()
        if r.listener == "proxy" and re.search(path, r.bare_path)
    )
    return max(counts.values(), default=0)


# -- recoverable faults ------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_and_the_copy_is_exact(world: World) -> None:
    world.proxy.add_rule(too_many_requests(retry_after=1), path=MANIFEST_PATH, times=3)
    world.proxy.add_rule(too_many_requests(retry_after=1), path=BLOB_PATH, times=3)

    report, took = run(world.config())

    assert report.status == "ok", report.to_json(indent=2)
    world.assert_exact(report)
    hits = world.proxy.injected("429")
    assert len(hits) == 6
    log = world.proxy.log()
    for hit in hits:
        again = [
            r for r in log if (r.method, r.path) == (hit.method, hit.path) and r.time > hit.time
        ]
        assert again, f"{hit.method} {hit.path} was never retried after its 429"
        waited = min(r.time for r in again) - hit.time
        assert waited >= 0.95, f"retried {hit.path} after {waited:.2f}s despite Retry-After: 1"
    assert took < 20


def test_429_with_a_retry_after_of_hours_defers_fast_instead_of_sleeping(world: World) -> None:
    # Docker Hub's pull limit resets in hours: report it, don't sleep-retry. The upstream's
    # 429 defers the tag (the next run picks it up); it is not a failure.
    world.proxy.add_rule(too_many_requests(retry_after=21600), path=r"^/v2/istio/tool/")

    report, took = run(world.config())

    entry = world.tag_report(report, "tool", "2.0")
    assert entry.action == "deferred"
    assert entry.error is not None and entry.error.code == "PULL_BUDGET", entry.error
    assert "429" in entry.error.message, entry.error
    assert report.status == "partial"
    world.assert_exact(report, except_={("tool", "2.0")})
    assert max_tries_per_request(world.proxy, r"^/v2/istio/tool/") == 1
    assert took < 10


def test_a_fraction_of_503s_is_retried_and_the_copy_is_exact(world: World) -> None:
    world.proxy.add_rule(unavailable(), path=r"^/v2/.+/", probability=0.3, per_path=2)

    report, took = run(world.config())

    assert report.status == "ok", report.to_json(indent=2)
    world.assert_exact(report)
    assert len(world.proxy.injected("503")) >= 5
    assert max_tries_per_request(world.proxy) <= 3
    assert report.summary.bytes_copied == world.blob_bytes()
    assert took < 30


@pytest.mark.slow
def test_a_503_storm_fails_only_its_image_after_bounded_attempts(world: World) -> None:
    world.proxy.add_rule(unavailable(), path=r"^/v2/istio/tool/")

    report, took = run(world.config())

    entry = world.tag_report(report, "tool", "2.0")
    assert entry.action == "failed"
    assert entry.error is not None and entry.error.code in {"HTTP_503", "UNAVAILABLE"}
    assert "503" in entry.error.message
    assert report.status == "failed"
    world.assert_exact(report, except_={("tool", "2.0")})
    assert max_tries_per_request(world.proxy, r"^/v2/istio/tool/") == ATTEMPTS
    assert took < 20, f"a 503 storm took {took:.1f}s to give up"


def test_cdn_redirects_are_followed_without_authorization(hub_world: World) -> None:
    w = hub_world
    w.proxy.add_rule(CdnRedirect(), method="GET", path=BLOB_PATH)

    report, _ = run(w.config())

    assert report.status == "ok", report.to_json(indent=2)
    w.assert_exact(report)
    log = w.proxy.log()
    redirected = [r for r in log if r.listener == "proxy" and r.status == 307]
    cdn = [r for r in log if r.listener == "cdn"]
    assert len(redirected) == len({d for i in w.expected().values() for d in i.blobs})
    assert all(r.authorization for r in redirected), "the registry-facing GET had no token"
    assert cdn and not any(r.authorization for r in cdn), "Authorization leaked to the CDN"
    assert {r.status for r in cdn} == {200}


def test_the_cdn_refuses_requests_that_carry_authorization(hub_world: World) -> None:
    """The test bed's CDN behaves like a signed URL: a header besides the signature is a 400."""
    w = hub_world
    w.proxy.add_rule(CdnRedirect(), method="GET", path=BLOB_PATH)
    digest = next(iter(w.catalogue["istio/tool"]["2.0"].blobs))
    url = f"{w.proxy.url}/v2/istio/tool/blobs/{digest}"
    first = httpx.get(url, follow_redirects=False)
    assert first.status_code == 307
    location = first.headers["location"]
    assert httpx.get(location, headers={"Authorization": "Bearer x"}).status_code == 400
    assert httpx.get(location).status_code in {200, 401}


def test_added_latency_still_ends_exact_in_bounded_time(world: World) -> None:
    world.proxy.add_rule(Delay(0.05), probability=0.5)

    report, took = run(world.config())

    assert report.status == "ok", report.to_json(indent=2)
    world.assert_exact(report)
    assert len(world.proxy.injected("latency")) >= 10
    assert max_tries_per_request(world.proxy) == 1
    assert took < 20


# -- faults on the target side -----------------------------------------------------------------


@pytest.fixture
def target_proxy(world: World) -> Iterator[FaultProxy]:
    proxy = FaultProxy(world.target, seed=SEED + 1).start()
    try:
        yield proxy
        _figures("target side", proxy)
    finally:
        proxy.stop()


def test_an_upload_reset_mid_body_restarts_the_blob(world: World, target_proxy: FaultProxy) -> None:
    # Each upload PUT has its own session path: count per blob digest instead.
    target_proxy.add_rule(
        ResetRequest(LAYER // 2),
        method="PUT",
        path=r"/blobs/uploads/",
        probability=0.5,
        per_key=1,
        key=by_digest,
    )

    report, _ = run(world.config(upstream_host=world.upstream.host, target_host=target_proxy.host))

    assert report.status == "ok", report.to_json(indent=2)
    world.assert_exact(report)
    resets = target_proxy.injected("reset-request")
    assert len(resets) >= 3
    # Each reset upload was abandoned (DELETE of its session) before starting over.
    deletes = [r for r in target_proxy.log() if r.method == "DELETE"]
    assert len(deletes) >= len(resets)
    assert report.summary.bytes_copied == world.blob_bytes()


def test_503s_on_target_writes_are_retried(world: World, target_proxy: FaultProxy) -> None:
    target_proxy.add_rule(
        unavailable(), method="POST|PUT", probability=0.3, per_key=1, key=by_digest
    )

    report, _ = run(world.config(upstream_host=world.upstream.host, target_host=target_proxy.host))

    assert report.status == "ok", report.to_json(indent=2)
    world.assert_exact(report)
    assert len(target_proxy.injected("503")) >= 3


# -- corrupt content ---------------------------------------------------------------------------


# -- everything at once ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_all_recoverable_faults_at_once_end_exact(
    hub_upstream: RegistryServer, registry_factory: RegistryFactory, seed: int
) -> None:
    with _world(hub_upstream, registry_factory, seed, f"all-at-once seed {seed}") as w:
        rng = random.Random(seed)
        body = r"^/v2/.+/(blobs|manifests)/"
        p = w.proxy
        p.add_rule(too_many_requests(retry_after=1), path=body, probability=0.05, per_path=1)
        p.add_rule(unavailable(), path=body, probability=0.1, per_path=1)
        p.add_rule(CdnRedirect(), method="GET", path=BLOB_PATH, probability=0.5)
        p.add_rule(
            ResetBody(rng.randrange(1, LAYER)),
            method="GET",
            path=body,
            probability=0.15,
            per_path=1,
        )
        p.add_rule(
            ShortBody(rng.randrange(1, LAYER)),
            method="GET",
            path=body,
            probability=0.15,
            per_path=1,
        )
        p.add_rule(Delay(rng.uniform(0.01, 0.05)), probability=0.3)

        report, took = run(w.config())

        assert report.status == "ok", report.to_json(indent=2)
        w.assert_exact(report)
        assert report.summary.bytes_copied == w.blob_bytes()
        kinds = {name for r in p.log() for name in r.faults}
        assert {"503", "cdn-redirect", "latency"} <= kinds, kinds
        assert took < 30
