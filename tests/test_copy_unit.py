"""Copier against in-memory registries (MockTransport): order, skips, mounts, restarts,
corruption, concurrency, refusals. Every check is on requests the fakes recorded or on what
they hold afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from sync.copy import Copier, CopyResult
from sync.errors import BlobMismatchError, ImageSyncError, RegistryError, UnsupportedError
from sync.login import Credentials
from sync.reference import parse_reference
from sync.registry import HostSettings, Registries
from sync.retry import RetryPolicy
from tests.bed.faults import CdnRedirect, Delay, ResetBody, Respond, ShortBody
from tests.bed.images import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    Image,
    image_of,
    index_of,
    sha256_digest,
)
from tests.fake_registry import FakeRegistry, Recorded, route
from tests.scenario import run_now

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
SOURCE = "src.test/team/app:v1"
TARGET = "dst.test/mirror/app:v1"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
IN_TOTO = "application/vnd.in-toto+json"

AMD64 = image_of([b"base layer", b"amd64 layer"], config=b'{"architecture": "amd64"}')
ARM64 = image_of([b"base layer", b"arm64 layer " * 50], config=b'{"architecture": "arm64"}')
ATTESTATION = image_of([b'{"predicate": "sbom"}'], layer_type=IN_TOTO, config=b"{}")
INDEX = index_of(
    [(AMD64, "linux/amd64"), (ARM64, "linux/arm64/v8")], attestations=[(ATTESTATION, AMD64.digest)]
)


def fakes(**source_options: Any) -> tuple[FakeRegistry, FakeRegistry]:
    source = FakeRegistry("src.test", **source_options)
    target = FakeRegistry("dst.test")
    return source, target


async def copy_with(
    copier: Copier,
    registries: Registries,
    source: str = SOURCE,
    target: str = TARGET,
) -> CopyResult:
    src_ref, dst_ref = parse_reference(source), parse_reference(target)
    return await copier.copy(
        registries.client(src_ref.host), src_ref, registries.client(dst_ref.host), dst_ref
    )


def registries_for(
    *registry_fakes: FakeRegistry, credentials: dict[str, Credentials] | None = None
) -> Registries:
    """Clients for the fakes; `credentials` by host (other hosts are anonymous)."""
    unique = list({id(f): f for f in registry_fakes}.values())
    known = credentials or {}
    return Registries(
        lambda _host: HostSettings(credentials=known.get),
        policy=FAST,
        transport=route(*unique),
    )


def copy(
    source_fake: FakeRegistry,
    target_fake: FakeRegistry,
    source: str = SOURCE,
    target: str = TARGET,
    credentials: dict[str, Credentials] | None = None,
) -> CopyResult:
    async def main() -> CopyResult:
        async with registries_for(source_fake, target_fake, credentials=credentials) as registries:
            return await copy_with(Copier(), registries, source, target)

    return run_now(main())


def copy_fails(
    source_fake: FakeRegistry,
    target_fake: FakeRegistry,
    source: str = SOURCE,
    target: str = TARGET,
) -> BaseException:
    try:
        copy(source_fake, target_fake, source, target)
    except Exception as exc:
        return exc
    raise AssertionError(
        f"copy succeeded; source:\n{source_fake.log()}\ntarget:\n{target_fake.log()}"
    )


def writes(fake: FakeRegistry, host: str | None = None) -> list[Recorded]:
    host = host or fake.host
    return [r for r in fake.requests if r.method in WRITES and r.host == host]


def manifest_puts(fake: FakeRegistry) -> list[str]:
    """The reference (tag or digest) of each manifest PUT, in order."""
    return [r.path.rsplit("/", 1)[1] for r in fake.matching("PUT", "/manifests/")]


def uploaded(fake: FakeRegistry) -> list[str]:
    """Digests of committed monolithic uploads, in order."""
    return [
        r.param("digest") or "" for r in fake.matching("PUT", "/blobs/uploads/") if r.status == 201
    ]


def every_blob(*images: Image) -> set[str]:
    return {digest for image in images for digest in image.blobs}


def flip_one_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


# --- a complete copy ------------------------------------------------------------------------


def test_index_with_two_children_and_an_attestation_is_copied_completely() -> None:
    source, target = fakes()
    source.add_image("team/app", INDEX, tag="v1")

    result = copy(source, target)

    children = [AMD64.digest, ARM64.digest, ATTESTATION.digest]
    assert (result.digest, result.media_type) == (INDEX.digest, INDEX.media_type)
    assert target.tag_digest("mirror/app", "v1") == INDEX.digest, target.log()
    for child in children:
        assert target.has_manifest("mirror/app", child), f"child {child} missing on the target"
    for blob in every_blob(AMD64, ARM64, ATTESTATION):
        assert target.has_blob("mirror/app", blob), f"blob {blob} missing on the target"
    assert target.repos["mirror/app"].manifests[INDEX.digest][0] == INDEX.manifest, "index altered"
    puts = manifest_puts(target)
    assert sorted(puts[:-1]) == sorted(children) and puts[-1] == "v1", (
        f"children by digest first, then the index by tag; got {puts}"
    )
    assert result.stats.manifests_pushed == 4
    assert result.stats.blobs_copied == len(every_blob(AMD64, ARM64, ATTESTATION))
    assert sorted(uploaded(target)) == sorted(every_blob(AMD64, ARM64, ATTESTATION)), (
        "each blob (the shared base layer too) must be uploaded exactly once"
    )


def test_each_child_is_pushed_after_its_own_blobs() -> None:
    source, target = fakes()
    source.add_image("team/app", INDEX, tag="v1")
    copy(source, target)
    put_order = [
        r.param("digest") if "/blobs/" in r.path else r.path.rsplit("/", 1)[1]
        for r in target.requests
        if r.method == "PUT" and r.status == 201
    ]
    for child in (AMD64, ARM64, ATTESTATION):
        position = put_order.index(child.digest)
        for blob in child.blobs:
            assert put_order.index(blob) < position, f"{child.digest} pushed before {blob}"


def test_docker_manifest_list_keeps_its_media_types() -> None:
    amd64 = image_of([b"d1"], media_type=DOCKER_MANIFEST)
    arm64 = image_of([b"d2"], media_type=DOCKER_MANIFEST)
    index = index_of(
        [(amd64, "linux/amd64"), (arm64, "linux/arm64")], media_type=DOCKER_MANIFEST_LIST
    )
    source, target = fakes()
    source.add_image("team/app", index, tag="v1")

    result = copy(source, target)
    assert result.media_type == DOCKER_MANIFEST_LIST
    content_types = {
        r.path.rsplit("/", 1)[1]: r.headers.get("content-type")
        for r in target.matching("PUT", "/manifests/")
    }
    assert content_types == {
        amd64.digest: DOCKER_MANIFEST,
        arm64.digest: DOCKER_MANIFEST,
        "v1": DOCKER_MANIFEST_LIST,
    }, content_types


def test_single_image_copy_by_digest_pushes_by_digest() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64)
    result = copy(
        source, target, f"src.test/team/app@{AMD64.digest}", f"dst.test/mirror/app@{AMD64.digest}"
    )
    assert result.digest == AMD64.digest
    assert manifest_puts(target) == [AMD64.digest]
    assert target.repos["mirror/app"].tags == {}, "a digest copy must not create a tag"


def test_copy_with_bearer_auth_and_a_cdn_redirect() -> None:
    source = FakeRegistry("src.test", auth="bearer", cdn=True)
    target = FakeRegistry("dst.test", auth="bearer", users={"robot": "pw"})
    source.add_image("team/app", INDEX, tag="v1")

    copy(source, target, credentials={"dst.test": Credentials("robot", "pw")})
    assert target.tag_digest("mirror/app", "v1") == INDEX.digest, target.log()
    cdn = source.matching("GET", host=source.cdn_host)
    assert cdn, "blob GETs were not redirected"
    assert all("authorization" not in r.headers for r in cdn), "Authorization sent to the CDN"
    source_scopes = {s for r in source.matching(host=source.auth_host) for s in r.params("scope")}
    assert source_scopes == {"repository:team/app:pull"}, f"source asked for {source_scopes}"
    assert not writes(source), "nothing may be written to the source"


def test_progress_reports_every_blob_byte() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64, tag="v1")
    progress: list[int] = []

    async def main() -> CopyResult:
        async with registries_for(source, target) as registries:
            return await copy_with(Copier(progress=progress.append), registries)

    result = run_now(main())
    total = sum(len(data) for data in AMD64.blobs.values())
    assert sum(progress) == total == result.stats.bytes_copied, (progress, result.stats)


# --- skips ----------------------------------------------------------------------------------


def test_child_already_on_the_target_is_not_read_from_the_source() -> None:
    source, target = fakes()
    source.add_image("team/app", INDEX, tag="v1")
    target.add_image("mirror/app", AMD64)

    result = copy(source, target)
    source_gets = [r.path.rsplit("/", 1)[1] for r in source.matching("GET", "/manifests/")]
    assert AMD64.digest not in source_gets, f"a child the target holds was pulled: {source_gets}"
    assert sorted(source_gets) == sorted(["v1", ARM64.digest, ATTESTATION.digest]), source_gets
    assert AMD64.digest not in manifest_puts(target)
    assert b"amd64 layer" not in b"".join(r.body for r in target.matching("PUT"))
    assert target.tag_digest("mirror/app", "v1") == INDEX.digest
    assert result.stats.manifests_pushed == 3


def test_blob_already_on_the_target_is_not_uploaded() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64, tag="v1")
    present = target.add_blob("mirror/app", b"base layer")

    result = copy(source, target)
    assert present not in uploaded(target), "a blob the target had was uploaded again"
    assert not source.matching("GET", f"/blobs/{present}"), "a blob the target had was read"
    assert sorted(uploaded(target)) == sorted(set(AMD64.blobs) - {present})
    assert target.matching("HEAD", f"/blobs/{present}"), "the target was not asked first"
    assert (result.stats.blobs_skipped, result.stats.blobs_copied) == (1, 2)


# --- mounts within one registry -------------------------------------------------------------


def test_copy_within_one_registry_mounts_blobs_instead_of_uploading() -> None:
    registry = FakeRegistry("quay.test")
    registry.add_image("sail-dev/app", AMD64, tag="v1")

    result = copy(registry, registry, "quay.test/sail-dev/app:v1", "quay.test/sail-dev/copy:v1")
    mounts = registry.matching("POST", "/v2/sail-dev/copy/blobs/uploads/")
    assert {(m.param("mount"), m.param("from"), m.status) for m in mounts} == {
        (digest, "sail-dev/app", 201) for digest in AMD64.blobs
    }, registry.log()
    assert not registry.matching("GET", "/blobs/"), "mounted blobs must not be downloaded"
    assert uploaded(registry) == []
    assert registry.tag_digest("sail-dev/copy", "v1") == AMD64.digest
    assert result.stats.blobs_skipped == len(AMD64.blobs)


def test_mount_refused_falls_back_to_upload() -> None:
    registry = FakeRegistry("quay.test", mount="error")
    registry.add_image("sail-dev/app", AMD64, tag="v1")

    copy(registry, registry, "quay.test/sail-dev/app:v1", "quay.test/sail-dev/copy:v1")
    assert sorted(uploaded(registry)) == sorted(AMD64.blobs), registry.log()
    assert registry.tag_digest("sail-dev/copy", "v1") == AMD64.digest


def test_mount_answered_with_a_session_uploads_into_that_session() -> None:
    registry = FakeRegistry("quay.test", mount="session")
    registry.add_image("sail-dev/app", AMD64, tag="v1")

    copy(registry, registry, "quay.test/sail-dev/app:v1", "quay.test/sail-dev/copy:v1")
    posts = registry.matching("POST", "/blobs/uploads/")
    assert all(p.param("mount") for p in posts), "an extra upload session was opened"
    assert len(posts) == len(AMD64.blobs)
    assert sorted(uploaded(registry)) == sorted(AMD64.blobs)
    assert registry.uploads == {}, "sessions left open"


# --- failures mid-blob ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [ResetBody(0), ResetBody(1000), ResetBody(2999), ShortBody(1000)],
    ids=["reset-at-0", "reset-at-1000", "reset-at-2999", "short-body"],
)
def test_a_blob_cut_off_mid_body_restarts_whole_and_counts_its_bytes_once(
    fault: ResetBody | ShortBody,
) -> None:
    big = bytes(range(256)) * 12  # 3072 bytes
    image = image_of([big, b"small"])
    source, target = fakes()
    source.add_image("team/app", image, tag="v1")
    layer = sha256_digest(big)
    source.add_rule(fault, method="GET", path=f"/blobs/{layer}$", times=1)

    result = copy(source, target)
    assert result.digest == image.digest
    # Restarted blobs are counted once: bytes_copied is the content, not the traffic.
    assert result.stats.bytes_copied == sum(len(blob) for blob in image.blobs.values())
    gets = source.matching("GET", f"/blobs/{layer}$")
    assert len(gets) == 2, f"expected a fresh GET of the whole blob:\n{source.log()}"
    deletes = target.matching("DELETE", "/blobs/uploads/")
    assert len(deletes) == 1 and deletes[0].status == 204, f"old session:\n{target.log()}"
    (put,) = [p for p in target.matching("PUT", "/blobs/uploads/") if p.param("digest") == layer]
    assert put.path != deletes[0].path, "the restart reused the abandoned session"
    assert put.body == big and target.has_blob("mirror/app", layer)
    assert target.uploads == {}, "an upload session was left open"
    assert target.tag_digest("mirror/app", "v1") == image.digest


def test_a_reset_on_the_cdn_restarts_the_blob_at_the_registry() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64, tag="v1")
    layer = AMD64.layers[1]
    source.add_rule(CdnRedirect(), method="GET", path="/blobs/")
    source.add_rule(ResetBody(5), method="GET", path=f"/blobs/{layer}$", times=1)

    copy(source, target)
    assert target.tag_digest("mirror/app", "v1") == AMD64.digest
    assert len(source.matching("GET", f"/blobs/{layer}$", host=source.host)) == 2, source.log()
    cdn = source.matching("GET", host=source.cdn_host)
    assert len(cdn) == len(AMD64.blobs) + 1 and all("authorization" not in r.headers for r in cdn)


@pytest.mark.parametrize("fault", [ResetBody(100), ShortBody(50)], ids=["reset", "short-body"])
def test_a_manifest_cut_off_mid_body_is_fetched_again(fault: ResetBody | ShortBody) -> None:
    source, target = fakes()
    source.add_image("team/app", INDEX, tag="v1")
    rule = source.add_rule(fault, method="GET", path="/manifests/", per_path=1)

    copy(source, target)
    assert target.tag_digest("mirror/app", "v1") == INDEX.digest
    assert rule.fired == 4, "each manifest (index, three children) cut once"
    for manifest in INDEX.manifests():
        gets = source.matching("GET", f"/manifests/{manifest.digest}$")
        assert target.has_manifest("mirror/app", manifest.digest)
        assert len(gets) <= 2, f"{manifest.digest} fetched {len(gets)} times"


def test_blob_get_503_is_retried_without_restarting_the_upload() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64, tag="v1")
    layer = AMD64.layers[1]
    source.fail("GET", f"/blobs/{layer}$", httpx.Response(503))

    copy(source, target)
    assert [r.status for r in source.matching("GET", f"/blobs/{layer}$")] == [503, 200]
    assert not target.matching("DELETE"), target.log()


def corrupt_source(data: bytes, corrupted: bytes) -> tuple[FakeRegistry, FakeRegistry, Image]:
    image = image_of([b"fine layer", data])
    source, target = fakes()
    source.add_image("team/app", image, tag="v1")
    layer = sha256_digest(data)

    source.add_rule(Respond(200, body=corrupted), method="GET", path=f"/blobs/{layer}$")
    return source, target, image


def test_corrupt_blob_fails_naming_digest_and_source_and_nothing_is_tagged() -> None:
    data = b"the true layer content " * 40
    source, target, _ = corrupt_source(data, flip_one_byte(data))
    layer = sha256_digest(data)

    error = copy_fails(source, target)
    assert isinstance(error, BlobMismatchError), repr(error)
    assert layer in str(error) and "src.test/team/app" in str(error), str(error)
    assert error.code == "DIGEST_INVALID"
    assert target.tag_digest("mirror/app", "v1") is None, "the target got a tag"
    assert target.repos.get("mirror/app") is None or not target.repos["mirror/app"].tags
    assert not target.has_blob("mirror/app", layer), "corrupt content was committed"
    assert layer not in uploaded(target)
    assert manifest_puts(target) == [], f"a manifest was pushed:\n{target.log()}"


def test_blob_longer_than_its_descriptor_is_refused() -> None:
    data = b"exactly this"
    source, target, _ = corrupt_source(data, data + b" and more")
    error = copy_fails(source, target)
    assert isinstance(error, BlobMismatchError), repr(error)
    assert sha256_digest(data) in str(error) and "src.test/team/app" in str(error), str(error)
    assert not target.has_blob("mirror/app", sha256_digest(data))
    assert manifest_puts(target) == []


def test_blob_longer_than_its_descriptor_without_content_length_is_cut_off() -> None:
    data = b"exactly this"
    image = image_of([data])
    source, target = fakes()
    source.add_image("team/app", image, tag="v1")

    endless = Respond(200, (("Transfer-Encoding", "chunked"),), data * 100)
    source.add_rule(endless, method="GET", path=f"/blobs/{sha256_digest(data)}$")
    sent: list[int] = []

    async def main() -> None:
        async with registries_for(source, target) as registries:
            await copy_with(Copier(progress=sent.append), registries)

    with pytest.raises(BlobMismatchError, match="more than"):
        run_now(main())
    assert sum(sent) <= sum(len(blob) for blob in image.blobs.values()), (
        f"{sum(sent)} bytes passed on: not cut off"
    )
    assert not target.has_blob("mirror/app", sha256_digest(data))


def test_blob_with_a_wrong_content_length_is_refused() -> None:
    data = b"exactly this"
    source, target, _ = corrupt_source(data, data[:-1])
    error = copy_fails(source, target)
    assert isinstance(error, BlobMismatchError) and "descriptor says 12" in str(error), error
    assert manifest_puts(target) == []


def test_target_refusing_the_push_is_reported_and_nothing_is_tagged() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64, tag="v1")
    denied = {"errors": [{"code": "DENIED", "message": "no push"}]}
    target.fail("PUT", "/blobs/uploads/", *[httpx.Response(403, json=denied)] * 3)

    error = copy_fails(source, target)
    assert isinstance(error, RegistryError) and error.codes == ("DENIED",), repr(error)
    assert manifest_puts(target) == []


# --- concurrency ----------------------------------------------------------------------------


def test_blob_shared_by_two_concurrent_copies_is_uploaded_once() -> None:
    shared = b"shared base layer " * 100
    one = image_of([shared, b"one"], config=b'{"image": "one"}')
    two = image_of([shared, b"two"], config=b'{"image": "two"}')
    source, target = fakes()
    source.add_image("team/one", one, tag="v1")
    source.add_image("team/two", two, tag="v1")

    async def main() -> tuple[CopyResult, CopyResult]:
        copier = Copier()
        async with registries_for(source, target) as registries:
            return await asyncio.gather(
                copy_with(copier, registries, "src.test/team/one:v1", "dst.test/mirror/app:one"),
                copy_with(copier, registries, "src.test/team/two:v1", "dst.test/mirror/app:two"),
            )

    results = run_now(main())
    layer = sha256_digest(shared)
    assert uploaded(target).count(layer) == 1, f"shared blob uploaded twice:\n{target.log()}"
    assert len(source.matching("GET", f"/blobs/{layer}$")) == 1
    # The copies really overlapped: the second looked for its own config before the first
    # committed the shared layer (else "uploaded once" would prove nothing).
    requests, config = target.requests, two.config
    assert config is not None
    second_started = next(
        i for i, r in enumerate(requests) if r.method == "HEAD" and r.path.endswith(config)
    )
    shared_committed = next(
        i for i, r in enumerate(requests) if r.method == "PUT" and r.param("digest") == layer
    )
    assert second_started < shared_committed, f"the copies ran one after the other:\n{target.log()}"
    assert target.tag_digest("mirror/app", "one") == one.digest
    assert target.tag_digest("mirror/app", "two") == two.digest
    assert sum(r.stats.blobs_copied for r in results) == len(every_blob(one, two))


def test_failed_background_blob_transfer_does_not_poison_later_copies() -> None:
    bad, slow = b"missing at the source", b"slow layer"
    first = image_of([bad, slow])
    second = image_of([slow], config=b"{}")
    source, target = fakes()
    source.add_image("team/first", first, tag="v1")
    source.add_image("team/second", second, tag="v1")
    del source.repos["team/first"].blobs[sha256_digest(bad)]  # GET answers 404
    gate = asyncio.Event()
    denied_once = [httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "x"}]})]

    async def hold_slow(request: httpx.Request) -> httpx.Response | None:
        # `slow` is still on its way when `bad` fails at the source.
        if request.method == "GET" and request.url.path.endswith(sha256_digest(bad)):
            gate.set()
        if request.method == "GET" and request.url.path.endswith(sha256_digest(slow)):
            await gate.wait()
        return None

    def deny_slow_once(request: httpx.Request) -> httpx.Response | None:
        if request.url.params.get("digest") == sha256_digest(slow) and denied_once:
            return denied_once.pop()
        return None

    source.hooks.append(hold_slow)
    target.hooks.append(deny_slow_once)

    async def main() -> CopyResult:
        copier = Copier()
        async with registries_for(source, target) as registries:
            with pytest.raises(RegistryError):
                await copy_with(copier, registries, "src.test/team/first:v1")
            # The transfer of `slow` went on after `bad` failed, and failed itself (403).
            for _ in range(100):
                await asyncio.sleep(0)
            assert not denied_once, "setup: the orphaned transfer did not reach its PUT"
            # The target accepts pushes again: a new copy of `slow` must work.
            return await copy_with(copier, registries, "src.test/team/second:v1")

    result = run_now(main())
    assert result.digest == second.digest
    assert target.has_blob("mirror/app", sha256_digest(slow))


# --- refusals -------------------------------------------------------------------------------


def foreign_image() -> Image:
    foreign = {
        "mediaType": DOCKER_FOREIGN_LAYER,
        "digest": sha256_digest(b"windows base"),
        "size": 12,
        "urls": ["https://mcr.example/windows"],
    }
    return image_of([b"ordinary"], media_type=DOCKER_MANIFEST, extra_layers=[foreign])


def schema1_raw() -> bytes:
    return json.dumps(
        {"schemaVersion": 1, "name": "team/app", "tag": "v1", "fsLayers": []}
    ).encode()


def test_foreign_layer_source_is_unsupported_and_nothing_is_written() -> None:
    source, target = fakes()
    source.add_image("team/app", foreign_image(), tag="v1")

    error = copy_fails(source, target)
    assert isinstance(error, UnsupportedError), repr(error)
    assert "foreign layer" in str(error) and sha256_digest(b"windows base") in str(error)
    assert writes(target) == [], f"written before refusing:\n{target.log()}"


def test_schema1_source_is_unsupported_and_nothing_is_written() -> None:
    source, target = fakes()
    source.add_manifest(
        "team/app", schema1_raw(), "application/vnd.docker.distribution.manifest.v1+prettyjws", "v1"
    )

    error = copy_fails(source, target)
    assert isinstance(error, UnsupportedError) and "schema 1" in str(error), repr(error)
    assert target.requests == [], f"target contacted:\n{target.log()}"


def index_with_bad_child(bad: Image | None) -> tuple[FakeRegistry, FakeRegistry]:
    source, target = fakes()
    if bad is None:  # a schema-1 child
        raw = schema1_raw()
        source.add_manifest("team/app", raw, "application/json")
        child = {"mediaType": DOCKER_MANIFEST, "digest": sha256_digest(raw), "size": len(raw)}
        index_raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST_LIST,
                "manifests": [AMD64.descriptor("linux/amd64"), child],
            }
        ).encode()
        source.add_image("team/app", AMD64)
        source.add_manifest("team/app", index_raw, DOCKER_MANIFEST_LIST, "v1")
    else:
        source.add_image(
            "team/app", index_of([(AMD64, "linux/amd64"), (bad, "windows/amd64")]), tag="v1"
        )
    return source, target


@pytest.mark.parametrize("bad", [foreign_image(), None], ids=["foreign-layer", "schema-1"])
def test_index_with_an_uncopyable_child_is_unsupported_and_never_tagged(
    bad: Image | None,
) -> None:
    source, target = index_with_bad_child(bad)
    error = copy_fails(source, target)
    assert isinstance(error, UnsupportedError), repr(error)
    assert target.repos.get("mirror/app") is None or not target.repos["mirror/app"].tags
    assert "v1" not in manifest_puts(target)


@pytest.mark.parametrize("bad", [foreign_image(), None], ids=["foreign-layer", "schema-1"])
def test_index_with_an_uncopyable_child_writes_nothing(bad: Image | None) -> None:
    """Every child is read and checked before any blob of a copyable sibling is sent, even
    when the bad child answers last."""
    source, target = index_with_bad_child(bad)
    bad_digest = bad.digest if bad is not None else sha256_digest(schema1_raw())
    source.add_rule(Delay(0.05), method="GET", path=f"/manifests/{bad_digest}$")
    error = copy_fails(source, target)
    assert isinstance(error, UnsupportedError), repr(error)
    assert writes(target) == [], "written before refusing:\n" + "\n".join(
        str(r) for r in writes(target)
    )


def test_source_answering_another_digest_than_asked_is_refused() -> None:
    source, target = fakes()
    source.add_image("team/app", AMD64)
    source.fail(
        "GET",
        "/manifests/",
        httpx.Response(200, headers={"Content-Type": ARM64.media_type}, content=ARM64.manifest),
    )
    error = copy_fails(source, target, f"src.test/team/app@{AMD64.digest}")
    assert isinstance(error, ImageSyncError) and AMD64.digest in str(error), repr(error)
    assert writes(target) == []


# --- helpers' own sanity --------------------------------------------------------------------


def test_fixture_images_share_the_base_layer_and_differ_otherwise() -> None:
    shared: Sequence[str] = sorted(set(AMD64.blobs) & set(ARM64.blobs))
    assert shared == [sha256_digest(b"base layer")], shared
    assert INDEX.children == (AMD64, ARM64, ATTESTATION)
