"""The test bed itself: real registries in every auth mode, the token server, images, raw client."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import jwt
import pytest

from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient, RawClientError
from tests.bed.registry import RegistryFactory, RegistryRequest, RegistryServer, start_registry

ACCEPT = ", ".join(images.MANIFEST_ACCEPT)


def _token(
    server: RegistryServer, *scopes: str, auth: tuple[str, str] | None = None
) -> httpx.Response:
    """Ask the registry's token server for `scopes`, as a client would (GET, one scope each)."""
    assert server.token_server is not None
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("service", server.service),
        *(("scope", s) for s in scopes),
    ]
    return httpx.get(server.token_server.realm, params=params, auth=auth)


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": ACCEPT}


# -- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(images.PUSHABLE_SHAPES))
def test_images_are_deterministic_and_variants_differ(shape: str) -> None:
    build = images.PUSHABLE_SHAPES[shape]
    first, again, other = build(1), build(1), build(2)
    assert first.manifest == again.manifest, "same seed must give the same bytes"
    assert first.digest == "sha256:" + hashlib.sha256(first.manifest).hexdigest()
    assert first.variant(2).digest == other.digest != first.digest
    assert set(first.blobs) == first.blob_digests()
    for digest, data in first.blobs.items():
        assert images.sha256_digest(data) == digest
    body = json.loads(first.manifest)
    assert body["mediaType"] == first.media_type
    assert first.all_digests() >= {first.digest}


def test_oci_index_lists_its_platforms_and_carries_all_child_blobs() -> None:
    index = images.oci_index()
    body = json.loads(index.manifest)
    platforms = [
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in body["manifests"]
    ]
    assert platforms == ["linux/amd64", "linux/arm64", "linux/s390x"]
    assert [m["digest"] for m in body["manifests"]] == [c.digest for c in index.children]
    for child in index.children:
        assert child.blob_digests() <= index.blob_digests()
        assert child.config in index.blobs
    assert list(index.manifests())[-1] is index, "children come before the index"


def test_docker_manifest_list_has_two_docker_manifests() -> None:
    lst = images.docker_manifest_list()
    assert lst.media_type == images.DOCKER_MANIFEST_LIST
    assert [c.media_type for c in lst.children] == [images.DOCKER_MANIFEST] * 2
    layer_types = {d["mediaType"] for c in lst.children for d in json.loads(c.manifest)["layers"]}
    assert layer_types == {images.DOCKER_LAYER}


def test_attestation_index_points_each_attestation_at_a_sibling() -> None:
    index = images.oci_index_with_attestations()
    entries = json.loads(index.manifest)["manifests"]
    attestations = [e for e in entries if e["platform"]["os"] == "unknown"]
    image_digests = {e["digest"] for e in entries if e["platform"]["os"] != "unknown"}
    assert len(attestations) == 2
    for entry in attestations:
        assert entry["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert entry["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
        assert entry["annotations"]["vnd.docker.reference.digest"] in image_digests
    att = index.child("unknown/unknown")
    assert [d["mediaType"] for d in json.loads(att.manifest)["layers"]] == [images.IN_TOTO]


def test_special_shapes_have_the_promised_details() -> None:
    assert json.loads(images.no_layers_image().manifest)["layers"] == []
    zstd = json.loads(images.zstd_image().manifest)
    assert {d["mediaType"] for d in zstd["layers"]} == {images.OCI_LAYER_ZSTD}
    foreign = images.foreign_layer_image()
    (layer, *_) = json.loads(foreign.manifest)["layers"]
    assert layer["mediaType"] == images.DOCKER_FOREIGN_LAYER and layer["urls"]
    assert foreign.foreign_layers == (layer["digest"],)
    assert layer["digest"] not in foreign.blobs
    s1 = images.schema1_manifest()
    assert s1.media_type == images.DOCKER_SCHEMA1_SIGNED
    assert json.loads(s1.manifest)["schemaVersion"] == 1
    a, b = images.shared_layer_pair()
    assert a.layers[:2] == b.layers[:2] and a.layers[2] != b.layers[2]


def test_layer_size_is_configurable() -> None:
    big = images.oci_manifest(layers=1, layer_size=256 * 1024)
    (layer,) = big.layers
    assert len(big.blobs[layer]) > 256 * 1024


# -- registries ----------------------------------------------------------------------------------


def test_every_mode_starts_and_challenges_as_configured(any_registry: RegistryServer) -> None:
    server = any_registry
    assert server.url == f"http://{server.host}"
    assert server.storage_dir.is_dir()
    response = httpx.get(f"{server.url}/v2/")
    challenge = response.headers.get("WWW-Authenticate", "")
    if server.auth == "anonymous":
        assert response.status_code == 200
        assert server.username is None and server.token_server is None
    elif server.auth == "basic":
        assert response.status_code == 401
        assert challenge.startswith("Basic ")
        assert server.username is not None and server.password is not None
        ok = httpx.get(f"{server.url}/v2/", auth=(server.username, server.password))
        assert ok.status_code == 200
        wrong = httpx.get(f"{server.url}/v2/", auth=(server.username, "wrong"))
        assert wrong.status_code == 401
    else:
        assert server.token_server is not None
        assert response.status_code == 401
        assert challenge.startswith("Bearer ")
        assert f'realm="{server.token_server.realm}"' in challenge
        assert f'service="{server.service}"' in challenge


@pytest.mark.parametrize("shape", sorted(images.PUSHABLE_SHAPES))
def test_rawclient_round_trips_every_shape_digest_exactly(
    shape: str, anon_registry: RegistryServer
) -> None:
    image = images.PUSHABLE_SHAPES[shape](0)
    with RawClient(anon_registry) as client:
        assert client.push_image("bed/x", "v1", image) == image.digest
        assert client.verify_image("bed/x", "v1") == image.all_digests()
        assert client.verify_image("bed/x", image.digest) == image.all_digests()
        data, media_type, digest = client.get_manifest("bed/x", "v1")
        assert (data, media_type, digest) == (image.manifest, image.media_type, image.digest)
        assert client.head_manifest("bed/x", "v1") == image.digest
        assert client.tags("bed/x") == ["v1"]


def test_rawclient_round_trips_all_shapes_in_every_mode(any_registry: RegistryServer) -> None:
    with RawClient(any_registry) as client:
        for shape, build in images.PUSHABLE_SHAPES.items():
            image = build(3)
            repo = f"bed/{shape}"
            client.push_image(repo, "latest", image)
            seen = client.verify_image(repo, "latest")
            assert seen == image.all_digests(), f"{shape} in {any_registry.auth}: {seen}"
        assert sorted(client.catalog()) == sorted(f"bed/{s}" for s in images.PUSHABLE_SHAPES)


def test_rawclient_blob_and_manifest_primitives(any_registry: RegistryServer) -> None:
    image = images.oci_manifest(7)
    with RawClient(any_registry) as client:
        assert client.tags("nothing/here") == []
        assert client.head_manifest("bed/p", "v1") is None
        config = image.config
        assert config is not None
        assert not client.blob_exists("bed/p", config)
        assert client.push_blob("bed/p", image.blobs[config]) == config
        assert client.blob_exists("bed/p", config)
        assert client.get_blob("bed/p", config) == image.blobs[config]
        client.push_image("bed/p", "v1", image)
        client.delete_manifest("bed/p", image.digest)
        assert client.head_manifest("bed/p", "v1") is None
        assert client.tags("bed/p") == []
        client.delete_blob("bed/p", config)
        assert not client.blob_exists("bed/p", config)


def test_moving_a_tag_to_a_variant_changes_its_digest(anon_registry: RegistryServer) -> None:
    old = images.oci_index(0)
    new = old.variant(1)
    with RawClient(anon_registry) as client:
        client.push_image("bed/moving", "stable", old)
        client.push_image("bed/moving", "stable", new)
        assert client.head_manifest("bed/moving", "stable") == new.digest
        assert client.verify_image("bed/moving", old.digest) == old.all_digests()


def test_shared_layers_mount_across_repositories(any_registry: RegistryServer) -> None:
    a, b = images.shared_layer_pair()
    with RawClient(any_registry) as client:
        client.push_image("src/a", "v1", a)
        for layer in b.layers[:2]:
            assert client.mount_blob("dst/b", layer, "src/a"), "shared layer should mount"
        assert not client.mount_blob("dst/b", b.layers[2], "src/a"), "own layer is not in src"
        client.push_image("dst/b", "v1", b)
        assert client.verify_image("dst/b", "v1") == b.all_digests()


def test_schema1_manifest_is_refused(anon_registry: RegistryServer) -> None:
    s1 = images.schema1_manifest()
    with RawClient(anon_registry) as client, pytest.raises(RawClientError) as err:
        client.push_manifest("bed/s1", "v1", s1.manifest, s1.media_type)
    assert err.value.status_code == 400
    assert "MANIFEST_INVALID" in str(err.value)


def test_foreign_layers_need_a_registry_that_allows_their_urls(
    registry_factory: RegistryFactory,
) -> None:
    image = images.foreign_layer_image()
    strict = registry_factory("anonymous")
    lenient = registry_factory("anonymous", allow_foreign_layers=True)
    with RawClient(strict) as client, pytest.raises(RawClientError):
        client.push_image("win/app", "v1", image)
    with RawClient(lenient) as client:
        client.push_image("win/app", "v1", image)
        seen = client.verify_image("win/app", "v1")
    assert seen == image.all_digests()
    assert not set(image.foreign_layers) & seen


def test_distribution_rewrites_manifests_for_a_narrow_accept(anon_registry: RegistryServer) -> None:
    """Why every client must send the full Accept list: Distribution 2.8 behaves like Hub."""
    index, lst = images.oci_index(), images.docker_manifest_list()
    with RawClient(anon_registry) as client:
        client.push_image("bed/oci", "v1", index)
        client.push_image("bed/list", "v1", lst)
    url = anon_registry.url
    narrow = {"Accept": images.DOCKER_MANIFEST}
    assert httpx.get(f"{url}/v2/bed/oci/manifests/v1", headers=narrow).status_code == 404
    single = httpx.get(f"{url}/v2/bed/list/manifests/v1", headers=narrow)
    assert single.headers["Docker-Content-Digest"] == lst.child("linux/amd64").digest
    legacy = httpx.get(f"{url}/v2/bed/list/manifests/v1")
    assert legacy.headers["Content-Type"].startswith(images.DOCKER_SCHEMA1_SIGNED)


# -- bearer flavours -----------------------------------------------------------------------------


def test_quay_refuses_anonymous_reads(quay_registry: RegistryServer) -> None:
    image = images.oci_manifest()
    with RawClient(quay_registry) as client:
        client.push_image("sail-dev/app", "v1", image)
    manifest_url = f"{quay_registry.url}/v2/sail-dev/app/manifests/v1"

    bare = httpx.get(manifest_url, headers={"Accept": ACCEPT})
    assert bare.status_code == 401
    assert 'scope="repository:sail-dev/app:pull"' in bare.headers["WWW-Authenticate"]

    anonymous = _token(quay_registry, "repository:sail-dev/app:pull")
    assert anonymous.status_code == 200, "a 200 from the token server proves nothing"
    assert _claims(anonymous.json()["token"])["access"] == []
    assert httpx.get(manifest_url, headers=_bearer(anonymous.json()["token"])).status_code == 401

    assert quay_registry.username == "sail-dev+robot" and quay_registry.password is not None
    robot = _token(
        quay_registry,
        "repository:sail-dev/app:pull",
        auth=(quay_registry.username, quay_registry.password),
    )
    assert set(robot.json()) == {"token"}, "Quay replies with `token` only, no expires_in"
    pulled = httpx.get(manifest_url, headers=_bearer(robot.json()["token"]))
    assert pulled.status_code == 200
    assert pulled.content == image.manifest


def test_hub_allows_anonymous_pull_but_not_push(hub_registry: RegistryServer) -> None:
    image = images.oci_manifest()
    with RawClient(hub_registry) as client:
        client.push_image("library/app", "v1", image)

    reply = _token(hub_registry, "repository:library/app:pull,push")
    assert reply.status_code == 200
    body = reply.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert _claims(body["token"])["access"] == [
        {"type": "repository", "name": "library/app", "actions": ["pull"]}
    ]
    headers = _bearer(body["token"])
    pulled = httpx.get(f"{hub_registry.url}/v2/library/app/manifests/v1", headers=headers)
    assert pulled.status_code == 200 and pulled.content == image.manifest
    push = httpx.post(f"{hub_registry.url}/v2/library/app/blobs/uploads/", headers=headers)
    assert push.status_code == 401
    assert "insufficient_scope" in push.headers["WWW-Authenticate"]

    assert hub_registry.username is not None and hub_registry.password is not None
    user = _token(
        hub_registry,
        "repository:library/app:pull,push",
        auth=(hub_registry.username, hub_registry.password),
    )
    user_push = httpx.post(
        f"{hub_registry.url}/v2/library/app/blobs/uploads/", headers=_bearer(user.json()["token"])
    )
    assert user_push.status_code == 202


def test_token_server_counts_requests_and_refuses_post(hub_registry: RegistryServer) -> None:
    ts = hub_registry.token_server
    assert ts is not None and hub_registry.username is not None
    assert hub_registry.password is not None
    ts.clear_requests()
    _token(hub_registry, "repository:a:pull")
    _token(
        hub_registry,
        "repository:a:pull,push",
        "repository:b:pull",
        auth=(hub_registry.username, hub_registry.password),
    )
    bad = _token(hub_registry, "repository:a:pull", auth=(hub_registry.username, "nope"))
    post = httpx.post(ts.realm, data={"grant_type": "password", "service": "x", "scope": "y"})
    assert bad.status_code == 401
    assert post.status_code == 405

    log = ts.requests()
    assert [(r.method, r.status) for r in log] == [
        ("GET", 200),
        ("GET", 200),
        ("GET", 401),
        ("POST", 405),
    ]
    assert [r.username for r in log[:3]] == [None, "hub-user", "hub-user"]
    assert log[0].scopes_granted == ("repository:a:pull",)
    assert log[1].scopes_requested == ("repository:a:pull,push", "repository:b:pull")
    assert log[1].scopes_granted == ("repository:a:pull,push", "repository:b:pull")
    assert log[1].service == hub_registry.service
    assert len(ts.fetches()) == 2
    ts.clear_requests()
    assert ts.requests() == []


def test_token_lifetime_is_configurable(registry_factory: RegistryFactory) -> None:
    server = registry_factory("bearer-hub", token_lifetime=5)
    body = _token(server, "repository:a:pull").json()
    claims = _claims(body["token"])
    assert body["expires_in"] == 5
    assert claims["exp"] - claims["iat"] == 5
    assert claims["aud"] == server.service and isinstance(claims["aud"], str)
    assert {"iss", "nbf", "jti", "sub"} <= set(claims)
    assert jwt.get_unverified_header(body["token"])["x5c"]


def test_a_token_for_one_registry_is_refused_by_another(registry_factory: RegistryFactory) -> None:
    first, second = registry_factory("bearer-hub"), registry_factory("bearer-hub")
    assert first.token_server is not None
    token = first.token_server.mint([{"type": "repository", "name": "a", "actions": ["pull"]}])
    assert httpx.get(f"{first.url}/v2/", headers=_bearer(token)).status_code == 200
    assert httpx.get(f"{second.url}/v2/", headers=_bearer(token)).status_code == 401


# -- access log ----------------------------------------------------------------------------------


def test_requests_lists_what_the_registry_saw(any_registry: RegistryServer) -> None:
    image: Image = images.oci_manifest()
    with RawClient(any_registry) as client:
        client.push_image("bed/log", "v1", image)
        any_registry.clear_requests()
        assert client.head_manifest("bed/log", "v1") == image.digest
        client.get_manifest("bed/log", image.digest)
        assert image.config is not None
        client.get_blob("bed/log", image.config)
        assert client.head_manifest("bed/log", "missing") is None
    assert any_registry.requests() == [
        RegistryRequest("HEAD", "/v2/bed/log/manifests/v1", 200),
        ("GET", f"/v2/bed/log/manifests/{image.digest}", 200),
        ("GET", f"/v2/bed/log/blobs/{image.config}", 200),
        ("HEAD", "/v2/bed/log/manifests/missing", 404),
    ]
    any_registry.clear_requests()
    assert any_registry.requests() == []


def test_requests_include_unauthorized_attempts(quay_registry: RegistryServer) -> None:
    httpx.head(f"{quay_registry.url}/v2/x/manifests/v1", headers={"Accept": ACCEPT})
    assert quay_registry.requests() == [("HEAD", "/v2/x/manifests/v1", 401)]


@pytest.mark.integration
def test_stop_is_idempotent_and_keeps_the_log_readable(tmp_path: Any) -> None:
    server = start_registry("bearer-quay", base_dir=tmp_path / "r")
    try:
        httpx.get(f"{server.url}/v2/")
    finally:
        server.stop()
    server.stop()
    assert not server.running
    assert server.token_server is not None
    with pytest.raises(RuntimeError):
        _ = server.token_server.port
    assert server.requests() == [("GET", "/v2/", 401)]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/")
