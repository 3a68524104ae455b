"""Synthetic signatures, attestations and SBOMs, shaped as cosign and OCI 1.1 clients write them.

No key is involved: the signature values are fixed random bytes. What matters for copying is the
shape: the manifest and blob media types, the annotations, the `subject` and `artifactType`
fields, and the tags that name them (`sha256-<hex>.sig`, `.att`, `.sbom`, and the referrers tag
schema fallback `sha256-<hex>` holding an index of referrers). Every builder is deterministic in
its arguments; the results are `images.Image` values that `RawClient.push_image` pushes.
"""

from __future__ import annotations

import base64
import json
import random
import types
from collections.abc import Mapping, Sequence

from tests.bed.images import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Image, sha256_digest

__all__ = [
    "COSIGN_SIMPLESIGNING",
    "DSSE_ENVELOPE",
    "EMPTY_JSON",
    "SPDX_JSON",
    "cosign_attestation",
    "cosign_sbom",
    "cosign_signature",
    "digest_tag",
    "fallback_index",
    "fallback_tag",
    "oci_referrer",
]

COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SPDX_JSON = "text/spdx+json"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
_EMPTY = b"{}"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=2).encode()


def _descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def _signature_value(key: str) -> str:
    return base64.b64encode(random.Random(key).randbytes(71)).decode()


def digest_tag(digest: str, suffix: str) -> str:
    """cosign's tag for an artifact of `digest`: `sha256-<hex>.<suffix>`."""
    return f"{fallback_tag(digest)}.{suffix}"


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for `digest`: `sha256-<hex>`."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"


_Layer = tuple[str, bytes, dict[str, str]]


def _artifact(
    shape: str,
    *,
    config: bytes,
    config_type: str,
    layers: Sequence[_Layer],
    extra: Mapping[str, object] | None = None,
) -> Image:
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        **(extra or {}),
        "config": _descriptor(config_type, config),
        "layers": [
            _descriptor(media_type, data, **({"annotations": ann} if ann else {}))
            for media_type, data, ann in layers
        ],
    }
    blobs = {sha256_digest(config): config}
    blobs.update({sha256_digest(data): data for _, data, _ in layers})
    return Image(
        shape=shape,
        manifest=_dumps(manifest),
        media_type=OCI_MANIFEST,
        blobs=types.MappingProxyType(blobs),
        config=sha256_digest(config),
        layers=tuple(sha256_digest(data) for _, data, _ in layers),
    )


def cosign_signature(subject_digest: str, *, identity: str = "bed/app", seed: int = 0) -> Image:
    """What `cosign sign` pushes as `sha256-<hex>.sig`: an OCI manifest whose layer is the
    simple-signing payload, annotated with the signature (and a bundle)."""
    payload = _dumps(
        {
            "critical": {
                "identity": {"docker-reference": identity},
                "image": {"docker-manifest-digest": subject_digest},
                "type": "cosign container image signature",
            },
            "optional": {"seed": seed},
        }
    )
    config = _dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(payload)]},
            "config": {},
        }
    )
    annotations = {
        "dev.cosignproject.cosign/signature": _signature_value(f"sig:{subject_digest}:{seed}"),
        "dev.sigstore.cosign/bundle": json.dumps({"SignedEntryTimestamp": "", "seed": seed}),
    }
    return _artifact(
        "cosign-signature",
        config=config,
        config_type=OCI_CONFIG,
        layers=[(COSIGN_SIMPLESIGNING, payload, annotations)],
    )


def cosign_attestation(
    subject_digest: str, *, predicate_type: str = "https://slsa.dev/provenance/v1", seed: int = 0
) -> Image:
    """What `cosign attest` pushes as `sha256-<hex>.att`: a DSSE envelope of an in-toto
    statement as the layer, annotated with its predicate type."""
    statement = _dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "bed/app", "digest": {"sha256": subject_digest[7:]}}],
            "predicateType": predicate_type,
            "predicate": {"seed": seed},
        }
    )
    envelope = _dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": _signature_value(f"att:{subject_digest}")}],
        }
    )
    config = _dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers"}})
    annotations = {"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}
    return _artifact(
        "cosign-attestation",
        config=config,
        config_type=OCI_CONFIG,
        layers=[(DSSE_ENVELOPE, envelope, annotations)],
    )


def cosign_sbom(subject_digest: str, *, seed: int = 0) -> Image:
    """What `cosign attach sbom` pushes as `sha256-<hex>.sbom`: the SPDX document as a layer."""
    sbom = _dumps({"spdxVersion": "SPDX-2.3", "name": f"sbom-{seed}", "of": subject_digest})
    config = _dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers"}})
    return _artifact(
        "cosign-sbom", config=config, config_type=OCI_CONFIG, layers=[(SPDX_JSON, sbom, {})]
    )


def oci_referrer(
    subject: Image | Mapping[str, object], artifact_type: str, *, seed: int = 0
) -> Image:
    """An OCI 1.1 artifact referring to `subject` (an image, or a descriptor): `artifactType`,
    the empty config, one layer, and the `subject` descriptor."""
    descriptor = subject.descriptor() if isinstance(subject, Image) else dict(subject)
    data = _dumps({"artifact": artifact_type, "seed": seed, "about": descriptor["digest"]})
    return _artifact(
        "oci-referrer",
        config=_EMPTY,
        config_type=EMPTY_JSON,
        layers=[(artifact_type, data, {"org.opencontainers.image.title": f"seed-{seed}"})],
        extra={
            "artifactType": artifact_type,
            "subject": descriptor,
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        },
    )


def fallback_index(referrers: Sequence[Image]) -> Image:
    """The referrers tag schema index a client without the referrers API pushes as
    `sha256-<hex>`: one descriptor per referrer, with its artifactType and annotations."""
    entries = []
    for referrer in referrers:
        doc = json.loads(referrer.manifest)
        entry = referrer.descriptor()
        if "artifactType" in doc:
            entry["artifactType"] = doc["artifactType"]
        if "annotations" in doc:
            entry["annotations"] = doc["annotations"]
        entries.append(entry)
    manifest = _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    blobs: dict[str, bytes] = {}
    for referrer in referrers:
        blobs.update(referrer.blobs)
    return Image(
        shape="referrers-fallback",
        manifest=manifest,
        media_type=OCI_INDEX,
        children=tuple(referrers),
        blobs=types.MappingProxyType(blobs),
    )
