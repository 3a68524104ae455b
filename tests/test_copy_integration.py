"""Copying images between real Distribution registries through the Python API.

Every image shape of the test bed goes through `Copier` + `Registries` across each auth mode
(source and target of the same mode, and the realistic pair: an anonymous pull from a
Docker-Hub-like upstream into a Quay-like target with robot credentials). The bed's own raw
client then checks both sides independently: same tag digest, every child manifest by digest,
every blob present and hashing right, same media types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sync.copy import Copier, CopyResult
from sync.errors import ImageSyncError
from sync.login import Credentials
from sync.reference import Reference
from sync.registry import HostSettings, Registries
from sync.retry import RetryPolicy
from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import (
    AuthMode,
    RegistryFactory,
    RegistryRequest,
    RegistryServer,
    start_registry,
)
from tests.scenario import PAIRS, Pair

# -- registries shared by the module ----------------------------------------------------------


class Pool:
    """Upstream and mirror registries, one per auth mode and role, started on first use and
    shared by every test of this module; each upstream gets `SHAPES` pushed once. Tests copy
    into target repositories of their own, so they never see each other's content."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._servers: dict[tuple[str, AuthMode], RegistryServer] = {}

    def _server(self, role: str, mode: AuthMode) -> RegistryServer:
        key = (role, mode)
        if key not in self._servers:
            server = start_registry(mode, base_dir=self._base / f"{role}-{mode}")
            self._servers[key] = server
            if role == "upstream":
                with RawClient(server) as client:
                    for name, image in SHAPES.items():
                        client.push_image(f"up/{name}", "v1", image)
        return self._servers[key]

    def upstream(self, mode: AuthMode) -> RegistryServer:
        return self._server("upstream", mode)

    def mirror(self, mode: AuthMode) -> RegistryServer:
        return self._server("mirror", mode)

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()


def _shapes() -> dict[str, Image]:
    """Every pushable shape, plus the second member of the shared-layer pair."""
    shapes = {name: build(0) for name, build in images.PUSHABLE_SHAPES.items()}
    shapes["shared-b"] = images.shared_layer_pair(0)[1]
    return shapes


#: What every upstream registry holds, as `up/NAME:v1`.
SHAPES: dict[str, Image] = _shapes()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    servers = Pool(tmp_path_factory.mktemp("copy-integration"))
    try:
        yield servers
    finally:
        servers.stop()


@dataclass(frozen=True)
class Bed:
    source: RegistryServer
    target: RegistryServer
    pair: Pair

    def registries(self) -> Registries:
        creds = {
            self.source.host: None if self.pair.anonymous_source else _credentials(self.source),
            self.target.host: _credentials(self.target),
        }
        return _registries(creds)

    def repo(self, test: str, name: str) -> str:
        """A target repository of this test and pair."""
        return f"{test}/{self.pair.slug}/{name}"


@pytest.fixture(params=PAIRS, ids=[p.id for p in PAIRS])
def bed(request: pytest.FixtureRequest, pool: Pool) -> Bed:
    pair: Pair = request.param
    return Bed(pool.upstream(pair.source), pool.mirror(pair.target), pair)


# -- helpers ---------------------------------------------------------------------------------

#: Keeps failure tests fast; the happy paths never retry.
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


def _credentials(server: RegistryServer) -> Credentials | None:
    if server.username is None or server.password is None:
        return None
    return Credentials(server.username, server.password)


def _registries(
    creds: Mapping[str, Credentials | None],
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Registries:
    """Plain-HTTP clients for the given hosts, each with its own credentials."""

    def settings_for(host: str) -> HostSettings:
        if host not in creds:
            raise AssertionError(f"the copy reached for an unexpected host {host}")
        value = creds[host]
        return HostSettings(secure=False, credentials=lambda _host: value)

    return Registries(settings_for, policy=policy, transport=transport)


def _ref(server: RegistryServer, repository: str, tag: str = "v1") -> Reference:
    return Reference(registry=server.host, repository=repository, tag=tag)


async def _copy(
    registries: Registries,
    source: RegistryServer,
    source_repo: str,
    target: RegistryServer,
    target_repo: str,
    *,
    copier: Copier | None = None,
) -> CopyResult:
    """Copy SOURCE/source_repo:v1 to TARGET/target_repo:v1 (with a new Copier by default)."""
    copier = copier or Copier()
    return await copier.copy(
        registries.client(source.host),
        _ref(source, source_repo),
        registries.client(target.host),
        _ref(target, target_repo),
    )


def _push(server: RegistryServer, repo: str, image: Image, tag: str | None = "v1") -> None:
    with RawClient(server) as client:
        client.push_image(repo, tag, image)


def _assert_same_image(
    source: RegistryServer, source_repo: str, target: RegistryServer, target_repo: str
) -> None:
    """The target's `v1` is digest-exact with the source's, each side walked independently
    (every child manifest fetched by digest, every blob fetched and hashed); same media type.
    An upstream `up/NAME` must also be exactly the bed's image NAME."""
    where = f"{source.auth} {source_repo} -> {target.auth} {target_repo}"
    with RawClient(source) as up, RawClient(target) as down:
        up_bytes, up_type, up_digest = up.get_manifest(source_repo, "v1")
        down_bytes, down_type, down_digest = down.get_manifest(target_repo, "v1")
        assert (down_digest, down_type, down_bytes) == (up_digest, up_type, up_bytes), where
        upstream = up.verify_image(source_repo, "v1")
        assert down.verify_image(target_repo, "v1") == upstream, where
    name = source_repo.removeprefix("up/")
    if source_repo.startswith("up/") and name in SHAPES:
        image = SHAPES[name]
        assert (up_digest, up_type) == (image.digest, image.media_type), where
        assert upstream == image.all_digests(), where


def _gets(requests: Iterable[RegistryRequest], kind: str) -> list[str]:
    """Paths of GETs of `/blobs/` or `/manifests/`."""
    return [r.path for r in requests if r.method == "GET" and f"/{kind}/" in r.path]


def _query(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query)


def _writes(requests: Iterable[RegistryRequest]) -> list[RegistryRequest]:
    return [r for r in requests if r.method in {"POST", "PUT", "PATCH", "DELETE"}]


def _assert_nothing_written(target: RegistryServer) -> None:
    requests = target.requests()
    assert _writes(requests) == [], requests
    with RawClient(target) as client:
        assert client.catalog() == []


def _token_fetches_per_repo(server: RegistryServer) -> dict[str, int]:
    """Successful token fetches, counted for every repository named in their scopes."""
    assert server.token_server is not None
    counts: dict[str, int] = {}
    for fetch in server.token_server.fetches():
        for repo in {scope.split(":")[1] for scope in fetch.scopes_requested}:
            counts[repo] = counts.get(repo, 0) + 1
    return counts


# -- every shape, every auth mode ------------------------------------------------------------


@pytest.mark.integration
def test_every_shape_is_copied_digest_exactly(bed: Bed) -> None:
    """All shapes at once through one Copier (as a run does), then shared-b, whose base
    layers shared-a (and oci-manifest / docker-manifest, which equal the amd64 children of
    oci-index / docker-list) have just brought to the target."""

    async def run() -> dict[str, CopyResult]:
        copier = Copier()
        async with bed.registries() as registries:

            async def one(name: str) -> CopyResult:
                target_repo = bed.repo("shapes", name)
                return await _copy(
                    registries, bed.source, f"up/{name}", bed.target, target_repo, copier=copier
                )

            first = [name for name in SHAPES if name != "shared-b"]
            done = await asyncio.gather(*(one(name) for name in first))
            results = dict(zip(first, done, strict=True))
            results["shared-b"] = await one("shared-b")
            return results

    results = asyncio.run(run())
    for name, image in SHAPES.items():
        result = results[name]
        assert (result.digest, result.media_type) == (image.digest, image.media_type), name
        assert result.stats.manifests_pushed == len(list(image.manifests())), name
        _assert_same_image(bed.source, f"up/{name}", bed.target, bed.repo("shapes", name))
    # Blob bytes count each blob that travelled; mounted and present ones are not counted.
    total = sum(r.stats.bytes_copied for r in results.values())
    unique_blobs: dict[str, bytes] = {}
    for image in SHAPES.values():
        unique_blobs.update(image.blobs)
    assert total == sum(len(b) for b in unique_blobs.values())


@pytest.mark.integration
def test_a_second_copy_transfers_nothing_and_reads_no_source_blob(bed: Bed) -> None:
    names = ("oci-index-attestation", "zstd")

    async def copy_all() -> list[CopyResult]:
        copier = Copier()  # a new run: nothing remembered from the first
        async with bed.registries() as registries:
            return [
                await _copy(
                    registries,
                    bed.source,
                    f"up/{n}",
                    bed.target,
                    bed.repo("again", n),
                    copier=copier,
                )
                for n in names
            ]

    first = asyncio.run(copy_all())
    assert all(r.stats.bytes_copied > 0 for r in first)
    bed.source.clear_requests()
    bed.target.clear_requests()

    second = asyncio.run(copy_all())
    for name, result in zip(names, second, strict=True):
        assert result.digest == SHAPES[name].digest, name
        assert (result.stats.bytes_copied, result.stats.blobs_copied) == (0, 0), name
    source_log = bed.source.requests()
    assert _gets(source_log, "blobs") == [], "a second copy must not read source blobs"
    # Only the top manifests are read (by tag); children already on the target are not.
    assert sorted(_gets(source_log, "manifests")) == sorted(
        f"/v2/up/{name}/manifests/v1" for name in names
    )
    assert [r for r in bed.target.requests() if "/blobs/uploads/" in r.path] == []
    for name in names:
        _assert_same_image(bed.source, f"up/{name}", bed.target, bed.repo("again", name))


@pytest.mark.integration
def test_shared_layers_are_mounted_between_target_repositories(bed: Bed) -> None:
    first, second = SHAPES["shared-a"], SHAPES["shared-b"]
    shared = set(first.layers) & set(second.layers)
    assert len(shared) == 2
    repo_a, repo_b, repo_c = (bed.repo("mount", n) for n in "abc")
    bed.target.clear_requests()

    async def run() -> tuple[CopyResult, CopyResult, CopyResult]:
        copier = Copier()
        async with bed.registries() as registries:
            a = await _copy(
                registries, bed.source, "up/shared-a", bed.target, repo_a, copier=copier
            )
            b = await _copy(
                registries, bed.source, "up/shared-b", bed.target, repo_b, copier=copier
            )
            # Within one registry, the source repository itself is the mount source.
            target = registries.client(bed.target.host)
            c = await copier.copy(
                target, _ref(bed.target, repo_b), target, _ref(bed.target, repo_c)
            )
            return a, b, c

    a, b, c = asyncio.run(run())
    assert a.stats.blobs_copied == len(first.blobs)
    own = [d for d in second.blobs if d not in shared]
    assert (b.stats.blobs_copied, b.stats.blobs_skipped) == (len(own), len(shared))
    assert b.stats.bytes_copied == sum(len(second.blobs[d]) for d in own)
    assert (c.stats.bytes_copied, c.stats.blobs_copied) == (0, 0)
    assert c.stats.blobs_skipped == len(second.blobs)

    log = bed.target.requests()
    b_uploads = f"/v2/{repo_b}/blobs/uploads/"
    mounts = {
        _query(r.path)["mount"][0]: (_query(r.path)["from"][0], r.status)
        for r in log
        if r.method == "POST" and r.path.startswith(b_uploads) and "mount=" in r.path
    }
    assert mounts == {digest: (repo_a, 201) for digest in shared}, log
    put_digests = {
        _query(r.path).get("digest", [""])[0]
        for r in log
        if r.method == "PUT" and r.path.startswith(b_uploads)
    }
    assert put_digests == set(own), "shared layers must be mounted, not uploaded"
    c_log = [r for r in log if r.path.startswith(f"/v2/{repo_c}/blobs/uploads/")]
    assert {(r.method, r.status) for r in c_log} == {("POST", 201)}, c_log
    assert {_query(r.path)["from"][0] for r in c_log} == {repo_b}
    _assert_same_image(bed.source, "up/shared-b", bed.target, repo_b)
    _assert_same_image(bed.source, "up/shared-b", bed.target, repo_c)


@pytest.mark.integration
def test_a_child_already_on_the_target_is_not_read_from_the_source(bed: Bed) -> None:
    index = SHAPES["oci-index"]
    present = index.child("linux/amd64")
    target_repo = bed.repo("child", "app")
    _push(bed.target, target_repo, present, tag=None)  # by digest, untagged
    bed.source.clear_requests()

    async def run() -> CopyResult:
        async with bed.registries() as registries:
            return await _copy(registries, bed.source, "up/oci-index", bed.target, target_repo)

    result = asyncio.run(run())
    assert result.digest == index.digest
    log = bed.source.requests()
    manifest_gets = _gets(log, "manifests")
    assert f"/v2/up/oci-index/manifests/{present.digest}" not in manifest_gets
    for other in index.children:
        if other is not present:
            assert f"/v2/up/oci-index/manifests/{other.digest}" in manifest_gets
    assert not [p for p in _gets(log, "blobs") if p.rsplit("/", 1)[1] in present.blobs]
    assert result.stats.blobs_copied == len(index.blobs) - len(present.blobs)
    _assert_same_image(bed.source, "up/oci-index", bed.target, target_repo)


# -- media types and tokens, on the production pair ------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("name", ["docker-list", "oci-index"])
def test_index_media_types_are_preserved(name: str, pool: Pool) -> None:
    source, target = pool.upstream("bearer-hub"), pool.mirror("bearer-quay")
    image = SHAPES[name]
    target_repo = f"media/{name}"

    async def run() -> CopyResult:
        creds = {source.host: None, target.host: _credentials(target)}
        async with _registries(creds) as registries:
            return await _copy(registries, source, f"up/{name}", target, target_repo)

    assert asyncio.run(run()).media_type == image.media_type
    with RawClient(source) as up, RawClient(target) as down:
        for ref, expected in [("v1", image.media_type)] + [
            (child.digest, child.media_type) for child in image.children
        ]:
            up_type = up.get_manifest(f"up/{name}", ref)[1]
            assert down.get_manifest(target_repo, ref)[1] == up_type == expected, ref


@pytest.mark.integration
def test_token_requests_are_bounded_per_repository(pool: Pool) -> None:
    source, target = pool.upstream("bearer-hub"), pool.mirror("bearer-quay")
    assert source.token_server is not None and target.token_server is not None
    source.token_server.clear_requests()
    target.token_server.clear_requests()

    async def run() -> None:
        creds = {source.host: None, target.host: _credentials(target)}
        async with _registries(creds) as registries:
            # 4 children (2 images, 2 attestations), 8 distinct blobs
            await _copy(registries, source, "up/oci-index-attestation", target, "tokens/app")

    asyncio.run(run())
    # Measured: source {"up/oci-index-attestation": 1} (one anonymous pull token), target
    # {"tokens/app": 1} (one pull,push token: a copy asks its target HEADs with the push token
    # it needs anyway), whatever the number of blobs and children.
    assert _token_fetches_per_repo(source) == {"up/oci-index-attestation": 1}
    assert _token_fetches_per_repo(target) == {"tokens/app": 1}
    assert {r.username for r in source.token_server.fetches()} == {None}
    assert {r.username for r in target.token_server.fetches()} == {target.username}
    assert [r for r in target.token_server.requests() if r.status != 200] == []


# -- failures ------------------------------------------------------------------------------------


class _Counted(httpx.AsyncByteStream):
    """A request body that records how many bytes went to the connection."""

    def __init__(self, inner: httpx.AsyncByteStream, sent: dict[str, int], key: str) -> None:
        self._inner, self._sent, self._key = inner, sent, key

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._sent[self._key] = self._sent.get(self._key, 0) + len(chunk)
            yield chunk


class _Transport(httpx.AsyncBaseTransport):
    """Plain loopback HTTP that holds back chosen requests ((method, URL fragment) -> seconds),
    making "this happens while that is still under way" deterministic, and counts the body
    bytes of every PUT (`sent`, by URL)."""

    def __init__(self, delays: Mapping[tuple[str, str], float] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._delays = dict(delays or {})
        self.sent: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for (method, fragment), seconds in self._delays.items():
            if request.method == method and fragment in str(request.url):
                await asyncio.sleep(seconds)
        if request.method == "PUT" and isinstance(request.stream, httpx.AsyncByteStream):
            request.stream = _Counted(request.stream, self.sent, str(request.url))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _corrupt_blob(server: RegistryServer, digest: str) -> Path:
    """Flip one byte of a blob in Distribution's filesystem storage (served as is after)."""
    hexa = digest.removeprefix("sha256:")
    path = server.storage_dir / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_a_failed_copy_leaves_no_work_running(registry_factory: RegistryFactory) -> None:
    """When one blob fails, copy() raises only once its siblings have settled: no upload to
    the target goes on detached (to fail later on a closed client), and nothing is tagged."""
    source, target = registry_factory("anonymous"), registry_factory("anonymous")
    image = images.oci_manifest(8, layers=2)
    bad, slow_layer = image.layers
    _push(source, "up/app", image)
    _corrupt_blob(source, bad)
    # The good layer's upload is still on its way when the corrupt one has failed.
    slow = _Transport({("PUT", slow_layer.removeprefix("sha256:")): 1.0})

    async def run() -> list[str]:
        creds = {source.host: None, target.host: None}
        async with _registries(creds, policy=FAST, transport=slow) as registries:
            with pytest.raises(ImageSyncError) as caught:
                await _copy(registries, source, "up/app", target, "mirror/app")
            assert caught.value.code == "DIGEST_INVALID"
            assert bad in str(caught.value)
            me = asyncio.current_task()
            leftover = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            names = [repr(t.get_coro()) for t in leftover]
            for task in leftover:  # clean up before the clients close
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
            return names

    assert asyncio.run(run()) == [], "copy() returned while its transfers were still running"
    with RawClient(target) as client:
        assert client.tags("mirror/app") == []
        assert client.blob_exists("mirror/app", slow_layer), "the good layer was finished"
        assert not client.blob_exists("mirror/app", bad)


def test_a_corrupt_blob_is_never_sent_whole(registry_factory: RegistryFactory) -> None:
    source, target = registry_factory("anonymous"), registry_factory("anonymous")
    image = images.oci_manifest(9, layers=1, layer_size=256 * 1024)
    (bad,) = image.layers
    _push(source, "up/app", image)
    _corrupt_blob(source, bad)
    counting = _Transport()

    async def run() -> ImageSyncError:
        creds = {source.host: None, target.host: None}
        async with _registries(creds, policy=FAST, transport=counting) as registries:
            with pytest.raises(ImageSyncError) as caught:
                await _copy(registries, source, "up/app", target, "mirror/app")
            return caught.value

    error = asyncio.run(run())
    assert error.code == "DIGEST_INVALID" and bad in str(error)
    with RawClient(target) as client:
        assert not client.blob_exists("mirror/app", bad)
        assert client.tags("mirror/app") == []
    attempts = [n for url, n in counting.sent.items() if bad in url]  # one per upload session
    assert attempts, "the corrupt blob was never even tried"
    size = len(image.blobs[bad])
    assert all(n < size for n in attempts), f"bytes sent per attempt {attempts}, blob {size}"
