"""Registries that answer wrongly: each wrong answer fails its own tag with a clear error.

Wrong manifests come from a real registry behind `FaultProxy`, which rewrites the answers for
one tag each (invalid JSON, more than 4 MiB, a wrong Content-Type, no Docker-Content-Digest on
HEAD, bytes that are not the digest asked for, an HTML login page). Broken token endpoints come
from an `httpx.MockTransport` registry on an https host, routed beside the real loopback
registries. Every run must end with a report (no crash), the bad tag `failed` with an error code
and a message that says what went wrong, nothing of it tagged on the target, the others copied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from sync.config import Config, parse_config
from sync.engine import Engine, RunOptions, registries_for
from sync.registry import HostSettings, Registries
from sync.report import Report, TagReport
from tests.bed import images
from tests.bed.faults import AddHeaders, Respond, StripHeaders
from tests.bed.images import OCI_INDEX, Image
from tests.bed.proxy import FaultProxy
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer, start_registry

SEED = 31337
MiB = 1024 * 1024
TAGS = ("good", "badjson", "huge", "huger", "ctype", "nodigest", "wrongbytes", "portal")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _big_index(size: int) -> bytes:
    """A valid, empty OCI index padded with an annotation to `size` bytes or a little more."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [],
            "annotations": {"pad": "a" * size},
        }
    ).encode()


@dataclass
class Bed:
    upstream: RegistryServer
    target: RegistryServer
    proxy: FaultProxy
    images: dict[str, Image]

    def config(self) -> Config:
        return parse_config(
            {
                "images": [
                    {
                        "name": "app",
                        "upstream": f"{self.proxy.host}/istio/app",
                        "target": f"{self.target.host}/sail-dev/app",
                        "tags": list(TAGS),
                    }
                ],
                "check_new_tags": False,
                "registries": {
                    self.proxy.host: {"tls": "disabled"},
                    self.target.host: {"tls": "disabled"},
                },
            }
        )


def _serve_instead(proxy: FaultProxy, tag: str, body: bytes, content_type: str) -> str:
    """Make `tag` resolve (HEAD, GET by tag or by digest) to `body`; returns its digest."""
    digest = _digest(body)
    headers = (("Content-Type", content_type), ("Docker-Content-Digest", digest))
    proxy.add_rule(
        Respond(200, headers, body, label=f"serve-{tag}"), path=f"/manifests/({tag}|{digest})$"
    )
    return digest


@pytest.fixture(scope="module")
def report_and_bed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Report, Bed]]:
    """One run over every bad answer at once (each on its own tag), shared by the tests below."""

    upstream = start_registry("anonymous", base_dir=tmp_path_factory.mktemp("bad-upstream"))
    target = start_registry("anonymous", base_dir=tmp_path_factory.mktemp("bad-target"))
    try:
        catalogue = {tag: images.oci_index(SEED + i, layer_size=2048) for i, tag in enumerate(TAGS)}
        with RawClient(upstream) as raw:
            for tag, image in catalogue.items():
                raw.push_image("istio/app", tag, image)
        with FaultProxy(upstream, seed=SEED) as proxy:
            bed = Bed(upstream, target, proxy, catalogue)
            # Invalid JSON whose digest is right: only parsing can catch it.
            truncated = (
                b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": ['
            )
            _serve_instead(proxy, "badjson", truncated, OCI_INDEX)
            # Over the 4 MiB that registries accept (and under the 8 MiB read cap) ...
            _serve_instead(proxy, "huge", _big_index(5 * MiB), OCI_INDEX)
            # ... and over the cap on anything read into memory.
            _serve_instead(proxy, "huger", _big_index(9 * MiB), OCI_INDEX)
            # A wrong Content-Type on every manifest of the image: the manifests' own mediaType
            # must win, and be what is pushed.
            for manifest in catalogue["ctype"].manifests():
                path = f"/manifests/({manifest.digest}|ctype)$"
                proxy.add_rule(StripHeaders(("content-type",)), path=path)
                proxy.add_rule(
                    AddHeaders((("Content-Type", "text/html; charset=utf-8"),)), path=path
                )
            # No Docker-Content-Digest on HEAD: nothing to compare with.
            proxy.add_rule(
                StripHeaders(("docker-content-digest",)), method="HEAD", path="/manifests/nodigest$"
            )
            # A child asked for by digest answers with its sibling's bytes.
            wrong = catalogue["wrongbytes"]
            first, second = wrong.children[0], wrong.children[1]
            proxy.add_rule(
                Respond(
                    200, (("Content-Type", second.media_type),), second.manifest, label="sibling"
                ),
                method="GET",
                path=f"/manifests/{first.digest}$",
            )
            # A captive portal: 200, text/html, a login page.
            proxy.add_rule(
                Respond(
                    200,
                    (("Content-Type", "text/html"),),
                    b"<html><body><h1>Please sign in to the Wi-Fi</h1></body></html>",
                    label="portal",
                ),
                method="GET",
                path=f"/manifests/({catalogue['portal'].digest}|portal)$",
            )

            async def go() -> Report:
                async with registries_for(bed.config(), None) as registries:
                    return await Engine(bed.config(), registries).run(RunOptions())

            yield asyncio.run(go()), bed
    finally:
        target.stop()
        upstream.stop()


def _entry(report: Report, tag: str) -> TagReport:
    return next(t for t in report.all_tags() if t.tag == tag)


def _assert_failed_cleanly(report: Report, bed: Bed, tag: str) -> TagReport:
    entry = _entry(report, tag)
    assert entry.action == "failed", entry
    assert entry.error is not None and entry.error.code and entry.error.message
    assert entry.target_digest is None
    with RawClient(bed.target) as raw:
        assert raw.head_manifest("sail-dev/app", tag) is None, f"{tag} was tagged on the target"
    return entry


@pytest.mark.integration
def test_the_run_ends_with_a_report_and_the_good_tags_are_copied(
    report_and_bed: tuple[Report, Bed],
) -> None:
    report, bed = report_and_bed
    assert report.status == "failed"
    assert report.summary.copied == 2 and report.summary.failed == len(TAGS) - 2
    with RawClient(bed.target) as raw:
        assert sorted(raw.tags("sail-dev/app")) == ["ctype", "good"]
        for tag in ("good", "ctype"):
            assert _entry(report, tag).action == "copied"
            assert raw.head_manifest("sail-dev/app", tag) == bed.images[tag].digest
            assert raw.verify_image("sail-dev/app", tag) >= bed.images[tag].all_digests()


@pytest.mark.integration
def test_a_wrong_content_type_is_overruled_by_the_manifests_own_media_type(
    report_and_bed: tuple[Report, Bed],
) -> None:
    report, bed = report_and_bed
    assert _entry(report, "ctype").action == "copied"
    assert bed.proxy.injected("add-headers"), "the bad Content-Type was never served"
    with RawClient(bed.target) as raw:
        for manifest in bed.images["ctype"].manifests():
            _, media_type, digest = raw.get_manifest("sail-dev/app", manifest.digest)
            assert (media_type, digest) == (manifest.media_type, manifest.digest)


@pytest.mark.integration
def test_invalid_json_manifest_fails_its_tag(report_and_bed: tuple[Report, Bed]) -> None:
    report, bed = report_and_bed
    entry = _assert_failed_cleanly(report, bed, "badjson")
    assert entry.error is not None
    assert entry.error.code == "MANIFEST_INVALID"
    assert "not valid JSON" in entry.error.message


@pytest.mark.integration
def test_a_manifest_over_4_mib_fails_its_tag(report_and_bed: tuple[Report, Bed]) -> None:
    report, bed = report_and_bed
    entry = _assert_failed_cleanly(report, bed, "huge")
    assert entry.error is not None
    assert "too large" in entry.error.message or "exceeds" in entry.error.message


@pytest.mark.integration
def test_a_manifest_over_4_mib_is_not_reported_as_unreachable(
    report_and_bed: tuple[Report, Bed],
) -> None:
    report, _ = report_and_bed
    error = _entry(report, "huge").error
    assert error is not None
    assert error.code != "UNREACHABLE" and "no answer" not in error.message, error


@pytest.mark.integration
def test_a_manifest_over_the_read_cap_fails_its_tag(report_and_bed: tuple[Report, Bed]) -> None:
    report, bed = report_and_bed
    entry = _assert_failed_cleanly(report, bed, "huger")
    assert entry.error is not None
    assert "larger than" in entry.error.message or "too large" in entry.error.message


@pytest.mark.integration
def test_a_head_without_docker_content_digest_fails_its_tag(
    report_and_bed: tuple[Report, Bed],
) -> None:
    report, bed = report_and_bed
    entry = _assert_failed_cleanly(report, bed, "nodigest")
    assert entry.error is not None
    assert "Docker-Content-Digest" in entry.error.message
    assert bed.proxy.injected("strip-headers")


@pytest.mark.integration
@pytest.mark.parametrize("tag", ["nodigest", "huger"])
def test_a_bad_200_answer_is_not_reported_as_http_200(
    report_and_bed: tuple[Report, Bed], tag: str
) -> None:
    report, _ = report_and_bed
    error = _entry(report, tag).error
    assert error is not None
    assert error.code != "HTTP_200", error


@pytest.mark.integration
@pytest.mark.parametrize("tag", ["wrongbytes", "portal"])
def test_bytes_that_are_not_the_digest_asked_for_fail_their_tag(
    report_and_bed: tuple[Report, Bed], tag: str
) -> None:
    report, bed = report_and_bed
    entry = _assert_failed_cleanly(report, bed, tag)
    assert entry.error is not None
    assert entry.error.code == "MANIFEST_INVALID"
    asked = bed.images[tag].children[0].digest if tag == "wrongbytes" else bed.images[tag].digest
    # Bytes that are JSON fail the digest check; a login page may fail as "not JSON" first.
    assert asked in entry.error.message or (
        tag == "portal" and "not valid JSON" in entry.error.message
    ), entry.error.message


# -- token endpoints that misbehave (MockTransport) ---------------------------------------------

BAD_HOST = "registry.bad.test"
AUTH_HOST = "auth.bad.test"


class _Router(httpx.AsyncBaseTransport):
    """The mock for *.bad.test, a real transport for loopback, and nothing else."""

    def __init__(self, handler: httpx.MockTransport) -> None:
        self._mock = handler
        self._real = httpx.AsyncHTTPTransport()
        self.mocked: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith(".bad.test"):
            self.mocked.append(request)
            return await self._mock.handle_async_request(request)
        if request.url.host != "127.0.0.1":
            raise AssertionError(f"a request left loopback: {request.url}")
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


def _bad_registry(realm: str, token_answer: httpx.Response) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == AUTH_HOST:
            return token_answer
        if request.headers.get("authorization", "").startswith("Bearer "):
            return httpx.Response(500, text="the mock never issues tokens")
        return httpx.Response(
            401,
            headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="bad"'},
            json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
        )

    return httpx.MockTransport(handle)


@pytest.fixture
def good_pair(registry_factory: RegistryFactory) -> tuple[RegistryServer, RegistryServer, Image]:
    upstream, target = registry_factory("anonymous"), registry_factory("anonymous")
    image = images.oci_index(SEED, layer_size=2048)
    with RawClient(upstream) as raw:
        raw.push_image("istio/good", "1.0", image)
    return upstream, target, image


def _run_with_bad_host(
    good: tuple[RegistryServer, RegistryServer, Image], router: _Router
) -> Report:
    upstream, target, _ = good
    config = parse_config(
        {
            "images": [
                {
                    "name": "good",
                    "upstream": f"{upstream.host}/istio/good",
                    "target": f"{target.host}/sail-dev/good",
                    "tags": ["1.0"],
                },
                {
                    "name": "bad",
                    "upstream": f"{BAD_HOST}/istio/bad",
                    "target": f"{target.host}/sail-dev/bad",
                    "tags": ["1.0", "2.0"],
                },
            ],
            "check_new_tags": False,
            "registries": {upstream.host: {"tls": "disabled"}, target.host: {"tls": "disabled"}},
        }
    )

    async def go() -> Report:
        registries = Registries(
            lambda host: HostSettings(secure=config.tls_enabled(host)), transport=router
        )
        async with registries:
            return await Engine(config, registries).run(RunOptions())

    return asyncio.run(go())


def _assert_bad_host_failed(
    report: Report, good: tuple[RegistryServer, RegistryServer, Image]
) -> list[TagReport]:
    _, target, image = good
    by_image = {i.name: i for i in report.images}
    assert [t.action for t in by_image["good"].tags] == ["copied"]
    with RawClient(target) as raw:
        assert raw.head_manifest("sail-dev/good", "1.0") == image.digest
        assert raw.tags("sail-dev/bad") == []
    bad = list(by_image["bad"].tags)
    for entry in bad:
        assert entry.action == "failed", entry
        assert entry.error is not None and entry.error.code and entry.error.message
    assert report.status == "failed"
    return bad


GARBAGE = {
    "html": httpx.Response(200, headers={"Content-Type": "text/html"}, text="<html>oops</html>"),
    "json-list": httpx.Response(200, json=["token"]),
    "no-token": httpx.Response(200, json={"expires_in": 300}),
    "token-not-a-string": httpx.Response(200, json={"token": 12345}),
}


@pytest.mark.parametrize("answer", sorted(GARBAGE))
def test_a_token_endpoint_answering_garbage_fails_that_registrys_tags(
    good_pair: tuple[RegistryServer, RegistryServer, Image], answer: str
) -> None:
    router = _Router(_bad_registry(f"https://{AUTH_HOST}/token", GARBAGE[answer]))

    report = _run_with_bad_host(good_pair, router)

    for entry in _assert_bad_host_failed(report, good_pair):
        assert entry.error is not None
        assert "token" in entry.error.message, entry.error
        assert AUTH_HOST in entry.error.message, entry.error
    assert any(r.url.host == AUTH_HOST for r in router.mocked), "the token endpoint was never asked"


@pytest.mark.parametrize("case", ["garbage-token", "plain-http-realm"])
def test_an_auth_failure_with_an_answer_is_not_reported_as_unreachable(
    good_pair: tuple[RegistryServer, RegistryServer, Image], case: str
) -> None:
    if case == "garbage-token":
        router = _Router(_bad_registry(f"https://{AUTH_HOST}/token", GARBAGE["html"]))
    else:
        token = httpx.Response(200, json={"token": "x"})
        router = _Router(_bad_registry(f"http://{AUTH_HOST}/token", token))
    report = _run_with_bad_host(good_pair, router)
    for entry in _assert_bad_host_failed(report, good_pair):
        assert entry.error is not None
        assert entry.error.code != "UNREACHABLE", entry.error


def test_a_plain_http_token_realm_for_a_tls_registry_is_refused(
    good_pair: tuple[RegistryServer, RegistryServer, Image],
) -> None:
    token = httpx.Response(200, json={"token": "would-be-sent-in-clear"})
    router = _Router(_bad_registry(f"http://{AUTH_HOST}/token", token))

    report = _run_with_bad_host(good_pair, router)

    for entry in _assert_bad_host_failed(report, good_pair):
        assert entry.error is not None
        assert "plain HTTP" in entry.error.message, entry.error
    assert not any(r.url.host == AUTH_HOST for r in router.mocked), "the realm was asked anyway"


# -- unusual but valid answers -----------------------------------------------------------------


def test_a_blob_over_8_mib_already_on_the_target_is_skipped(
    registry_factory: RegistryFactory,
) -> None:
    upstream, target = registry_factory("anonymous"), registry_factory("anonymous")
    # Two images sharing a 9 MiB base layer, as real images share base layers.
    first, second = images.shared_layer_pair(SEED, shared=1, layer_size=9 * MiB)
    with RawClient(upstream) as raw:
        raw.push_image("istio/app", "a", first)
        raw.push_image("istio/app", "b", second)

    def config(tag: str) -> Config:
        return parse_config(
            {
                "images": [
                    {
                        "name": "app",
                        "upstream": f"{upstream.host}/istio/app",
                        "target": f"{target.host}/sail-dev/app",
                        "tags": [tag],
                    }
                ],
                "check_new_tags": False,
                "registries": {
                    upstream.host: {"tls": "disabled"},
                    target.host: {"tls": "disabled"},
                },
            }
        )

    async def go(tag: str) -> Report:
        async with registries_for(config(tag), None) as registries:
            return await Engine(config(tag), registries).run(RunOptions())

    assert asyncio.run(go("a")).status == "ok"
    report = asyncio.run(go("b"))  # the 9 MiB layer is on the target already
    entry = _entry(report, "b")
    assert entry.action == "copied", entry.error
    assert entry.blobs_skipped >= 1
