"""Manifests as exact bytes: media type settlement, digest checks, walking, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sync.errors import ManifestError, UnsupportedError
from sync.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    is_digest,
    sha256_digest,
)
from tests.bed.images import DOCKER_FOREIGN_LAYER, image_of, index_of
from tests.bed.images import sha256_digest as digest_of

DIGEST = "sha256:" + "ab" * 32


def raw_of(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def image_doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": "c", "digest": DIGEST, "size": 3},
        "layers": [{"mediaType": "l", "digest": DIGEST, "size": 5}],
    }
    doc.update(extra)
    return doc


def test_manifest_accept_lists_all_four_types() -> None:
    accepted = [t.strip() for t in MANIFEST_ACCEPT.split(",")]
    assert sorted(accepted) == sorted(
        [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST]
    ), f"Accept is {MANIFEST_ACCEPT!r}"


def test_parse_takes_media_type_from_the_json_over_content_type() -> None:
    raw = raw_of(image_doc(mediaType=DOCKER_MANIFEST))
    manifest = Manifest.parse(raw, OCI_MANIFEST)
    assert manifest.media_type == DOCKER_MANIFEST, "the JSON's own mediaType must win"


def test_parse_falls_back_to_content_type_without_parameters() -> None:
    raw = raw_of(image_doc())
    manifest = Manifest.parse(raw, f"{DOCKER_MANIFEST}; charset=utf-8")
    assert manifest.media_type == DOCKER_MANIFEST, f"got {manifest.media_type!r}"


def test_parse_content_type_fallback_for_an_index_without_media_type() -> None:
    raw = raw_of({"schemaVersion": 2, "manifests": []})
    manifest = Manifest.parse(raw, DOCKER_MANIFEST_LIST)
    assert manifest.media_type == DOCKER_MANIFEST_LIST
    assert manifest.is_index


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None, ""])
def test_parse_infers_an_index_from_its_shape_for_a_generic_type(
    content_type: str | None,
) -> None:
    raw = raw_of({"schemaVersion": 2, "manifests": []})
    manifest = Manifest.parse(raw, content_type)
    assert manifest.media_type == OCI_INDEX, f"{content_type!r} → {manifest.media_type!r}"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", None])
def test_parse_infers_an_image_from_its_shape_for_a_generic_type(
    content_type: str | None,
) -> None:
    manifest = Manifest.parse(raw_of(image_doc()), content_type)
    assert manifest.media_type == OCI_MANIFEST, f"{content_type!r} → {manifest.media_type!r}"


def test_parse_refuses_an_unknown_media_type() -> None:
    with pytest.raises(ManifestError, match="unsupported manifest media type"):
        Manifest.parse(raw_of(image_doc()), "application/vnd.example+json")


def test_parse_refuses_a_non_string_media_type_field() -> None:
    with pytest.raises(ManifestError, match="mediaType is not a string"):
        Manifest.parse(raw_of(image_doc(mediaType=3)))


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        pytest.param(
            raw_of({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}),
            "application/json",
            id="schemaVersion 1 in the body",
        ),
        pytest.param(
            raw_of({"schemaVersion": 1, "fsLayers": [], "signatures": []}),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            id="signed schema 1 content type",
        ),
        pytest.param(
            raw_of({"fsLayers": []}),
            "application/vnd.docker.distribution.manifest.v1+json",
            id="schema 1 content type without schemaVersion",
        ),
    ],
)
def test_parse_refuses_schema_1_as_unsupported(raw: bytes, content_type: str) -> None:
    with pytest.raises(UnsupportedError, match="schema 1") as caught:
        Manifest.parse(raw, content_type)
    assert caught.value.code == "UNSUPPORTED"


def test_parse_checks_the_expected_digest() -> None:
    raw = raw_of(image_doc(mediaType=OCI_MANIFEST))
    other = "sha256:" + "cd" * 32
    with pytest.raises(ManifestError) as caught:
        Manifest.parse(raw, expected_digest=other)
    message = str(caught.value)
    assert other in message and digest_of(raw) in message, f"message: {message}"


def test_parse_accepts_the_right_expected_digest() -> None:
    raw = raw_of(image_doc(mediaType=OCI_MANIFEST))
    assert Manifest.parse(raw, expected_digest=digest_of(raw)).digest == digest_of(raw)


def test_parse_refuses_a_manifest_over_the_size_limit_before_parsing() -> None:
    raw = b" " * (MAX_MANIFEST_BYTES + 1)  # not even JSON: the size check comes first
    with pytest.raises(ManifestError, match="exceeds"):
        Manifest.parse(raw, OCI_MANIFEST)


def test_parse_accepts_a_manifest_at_the_size_limit() -> None:
    raw = raw_of(image_doc(mediaType=OCI_MANIFEST))
    raw = raw + b" " * (MAX_MANIFEST_BYTES - len(raw))
    assert len(Manifest.parse(raw).raw) == MAX_MANIFEST_BYTES


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param(b"{not json", "not valid JSON", id="invalid JSON"),
        pytest.param(b"\xff\xfe\x00", "not valid JSON", id="not UTF-8"),
        pytest.param(b"[1, 2]", "not a JSON object", id="a list"),
        pytest.param(b'"text"', "not a JSON object", id="a string"),
        pytest.param(
            raw_of(image_doc(mediaType=OCI_MANIFEST, config={"digest": "md5:x", "size": 1})),
            "invalid digest 'md5:x'",
            id="config with a bad digest",
        ),
        pytest.param(
            raw_of(image_doc(layers=[{"mediaType": "l", "digest": DIGEST, "size": -1}])),
            "invalid size -1",
            id="layer with a negative size",
        ),
        pytest.param(
            raw_of(image_doc(layers=[{"mediaType": "l", "digest": DIGEST, "size": True}])),
            "invalid size True",
            id="layer with a boolean size",
        ),
        pytest.param(
            raw_of(image_doc(layers=[{"mediaType": 7, "digest": DIGEST, "size": 1}])),
            "invalid mediaType 7",
            id="layer with a numeric mediaType",
        ),
        pytest.param(
            raw_of(image_doc(layers=["sha256:x"])),
            "descriptor is not a JSON object",
            id="layer that is a string",
        ),
        pytest.param(
            raw_of(image_doc(layers={"a": 1})), "'layers' is not a list", id="layers not a list"
        ),
        pytest.param(
            raw_of({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}),
            "no config",
            id="image without config",
        ),
        pytest.param(
            raw_of({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}),
            "'manifests' is not a list",
            id="index manifests not a list",
        ),
        pytest.param(
            raw_of({"mediaType": OCI_INDEX, "manifests": [{"digest": DIGEST}]}),
            "invalid size None",
            id="index child without size",
        ),
        pytest.param(
            raw_of(
                image_doc(layers=[{"mediaType": "l", "digest": DIGEST, "size": 1, "urls": "u"}])
            ),
            "invalid urls",
            id="layer urls not a list",
        ),
    ],
)
def test_parse_refuses_malformed_manifests(raw: bytes, problem: str) -> None:
    with pytest.raises(ManifestError) as caught:
        Manifest.parse(raw, OCI_MANIFEST if b"manifests" not in raw else OCI_INDEX)
    assert problem in str(caught.value), f"message {caught.value!s} lacks {problem!r}"
    assert caught.value.code == "MANIFEST_INVALID"


def test_parse_keeps_the_exact_bytes_and_their_digest() -> None:
    image = image_of([b"layer"])
    # Odd whitespace and key order that any re-serialisation would lose.
    raw = b'{\n\t"schemaVersion" :2 ,  "mediaType":"' + OCI_MANIFEST.encode() + b'",'
    raw += (
        b'"layers":[],"config":'
        + json.dumps({"size": 5, "digest": image.config, "mediaType": "x"}).encode()
        + b"}\r\n"
    )
    manifest = Manifest.parse(raw)
    assert manifest.raw == raw, "raw bytes were altered"
    assert manifest.digest == sha256_digest(raw) == digest_of(raw)


def test_image_blobs_are_config_then_layers_in_order() -> None:
    image = image_of([b"one", b"two", b"three"])
    manifest = Manifest.parse(image.manifest)
    assert [b.digest for b in manifest.blobs()] == [image.config, *image.layers]
    assert [b.size for b in manifest.blobs()][1:] == [3, 3, 5]
    assert manifest.children() == (), "an image has no children"


def test_index_children_include_attestations_with_platforms() -> None:
    amd64, arm64, attestation = image_of([b"a"]), image_of([b"b"]), image_of([b"c"])
    index = index_of(
        [(amd64, "linux/amd64"), (arm64, "linux/arm64/v8")],
        attestations=[(attestation, amd64.digest)],
    )
    manifest = Manifest.parse(index.manifest)
    assert manifest.is_index
    children = manifest.children()
    assert [c.digest for c in children] == [amd64.digest, arm64.digest, attestation.digest]
    assert [c.platform for c in children] == ["linux/amd64", "linux/arm64/v8", "unknown/unknown"]
    assert manifest.blobs() == (), "an index has no blobs of its own"


def test_check_copyable_refuses_a_foreign_layer() -> None:
    foreign = {"mediaType": DOCKER_FOREIGN_LAYER, "digest": DIGEST, "size": 10}
    image = image_of([b"l"], media_type=DOCKER_MANIFEST, extra_layers=[foreign])
    manifest = Manifest.parse(image.manifest)
    with pytest.raises(UnsupportedError) as caught:
        manifest.check_copyable()
    assert DIGEST in str(caught.value) and "foreign" in str(caught.value)


def test_check_copyable_refuses_a_layer_with_urls() -> None:
    outside = {"mediaType": "l", "digest": DIGEST, "size": 1, "urls": ["https://x/y"]}
    manifest = Manifest.parse(image_of([b"l"], extra_layers=[outside]).manifest)
    with pytest.raises(UnsupportedError, match=DIGEST):
        manifest.check_copyable()


def test_check_copyable_accepts_ordinary_layers_and_indexes() -> None:
    image = image_of([b"l"])
    Manifest.parse(image.manifest).check_copyable()
    Manifest.parse(index_of([(image, "linux/amd64")]).manifest).check_copyable()


def test_descriptor_platform_and_foreign_flag() -> None:
    d = Descriptor.from_json(
        {
            "mediaType": OCI_MANIFEST,
            "digest": DIGEST,
            "size": 1,
            "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
        },
        "here",
    )
    assert (d.platform, d.is_foreign, d.urls) == ("linux/arm/v7", False, ()), repr(d)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DIGEST, True),
        ("sha512:" + "a" * 128, True),
        ("sha256:" + "A" * 64, False),
        ("sha256:" + "a" * 63, False),
        ("md5:" + "a" * 32, False),
        ("latest", False),
    ],
)
def test_is_digest(value: str, expected: bool) -> None:
    assert is_digest(value) is expected, value
