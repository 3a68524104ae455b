"""Manifests as raw bytes plus their digest, media types, descriptors; no HTTP.

A manifest is never re-serialised: its digest is the sha256 of the exact bytes a registry sent,
and the same bytes are what gets pushed. Parsing is only for walking an index to its children
and an image to its blobs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sync.errors import ManifestError, UnsupportedError

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "Manifest",
    "is_digest",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES
SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

#: Sent on every manifest GET and HEAD. A narrower list makes Docker Hub and Quay answer with a
#: single-platform or schema-1 manifest whose digest never matches upstream's.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))

#: Registries refuse larger manifests (Quay's proxy near 5 MB); so do we, before parsing.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

#: Layers that live outside the registry (Windows base layers): not copyable here.
FOREIGN_LAYER_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST.fullmatch(value))


def _media_type_only(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A pointer to content: media type, digest, size; `platform` as `os/arch[/variant]`."""

    media_type: str
    digest: str
    size: int
    platform: str | None = None
    urls: tuple[str, ...] = ()

    @property
    def is_foreign(self) -> bool:
        return self.media_type in FOREIGN_LAYER_TYPES or bool(self.urls)

    @classmethod
    def from_json(cls, value: object, where: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: descriptor is not a JSON object")
        digest, size = value.get("digest"), value.get("size")
        media_type = value.get("mediaType", "")
        if not isinstance(digest, str) or not is_digest(digest):
            raise ManifestError(f"{where}: invalid digest {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}: invalid size {size!r}")
        if not isinstance(media_type, str):
            raise ManifestError(f"{where}: invalid mediaType {media_type!r}")
        platform = None
        plat = value.get("platform")
        if isinstance(plat, dict):
            parts = [str(plat.get("os", "")), str(plat.get("architecture", ""))]
            if plat.get("variant"):
                parts.append(str(plat["variant"]))
            platform = "/".join(parts)
        urls = value.get("urls") or ()
        if not isinstance(urls, list | tuple):
            raise ManifestError(f"{where}: invalid urls")
        return cls(media_type, digest, size, platform, tuple(str(u) for u in urls))


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest's exact bytes, its media type and its digest (sha256 of the bytes)."""

    raw: bytes
    media_type: str
    digest: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @classmethod
    def parse(
        cls, raw: bytes, content_type: str | None = None, *, expected_digest: str | None = None
    ) -> Manifest:
        """Check bytes received for a manifest and settle its media type.

        The media type is the manifest's own `mediaType` field; when it has none, the source's
        Content-Type without parameters; when that is generic, the shape of the JSON decides.
        `expected_digest` (when the manifest was asked for by digest, or the registry announced
        one) must equal the digest of the bytes.
        """
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest of {len(raw)} bytes exceeds {MAX_MANIFEST_BYTES}")
        digest = sha256_digest(raw)
        doc = _load_json(raw)
        declared = doc.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise ManifestError("manifest mediaType is not a string")
        header_type = _media_type_only(content_type)
        media_type = declared or header_type
        # Before the digest check: a signed schema 1 manifest's digest covers its payload
        # without the signatures, so it never matches the bytes served.
        if doc.get("schemaVersion") == 1 or media_type in SCHEMA1_MEDIA_TYPES:
            raise UnsupportedError(
                "schema 1 manifest: it cannot be copied digest-exactly (rebuild the image)"
            )
        if expected_digest is not None and expected_digest != digest:
            raise ManifestError(
                f"manifest bytes hash to {digest}, not the {expected_digest} asked for"
            )
        if media_type not in MANIFEST_MEDIA_TYPES:
            if media_type and media_type not in {"application/json", "text/plain"}:
                raise ManifestError(f"unsupported manifest media type {media_type!r}")
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
        manifest = cls(raw, media_type, digest)
        # Walk once now so a malformed manifest fails before anything is pushed.
        if manifest.is_index:
            manifest.children()
        else:
            manifest.blobs()
        return manifest

    def _doc(self) -> dict[str, Any]:
        return _load_json(self.raw)

    def children(self) -> tuple[Descriptor, ...]:
        """The manifests an index points at, attestation manifests included, in order."""
        if not self.is_index:
            return ()
        items = self._doc().get("manifests")
        if not isinstance(items, list):
            raise ManifestError(f"index {self.digest}: 'manifests' is not a list")
        return tuple(
            Descriptor.from_json(item, f"index {self.digest} manifests[{i}]")
            for i, item in enumerate(items)
        )

    def blobs(self) -> tuple[Descriptor, ...]:
        """Config then layers of an image manifest (empty for an index)."""
        if self.is_index:
            return ()
        doc = self._doc()
        config = doc.get("config")
        layers = doc.get("layers", [])
        if config is None:
            raise ManifestError(f"manifest {self.digest}: no config")
        if not isinstance(layers, list):
            raise ManifestError(f"manifest {self.digest}: 'layers' is not a list")
        out = [Descriptor.from_json(config, f"manifest {self.digest} config")]
        out += [
            Descriptor.from_json(layer, f"manifest {self.digest} layers[{i}]")
            for i, layer in enumerate(layers)
        ]
        return tuple(out)

    def check_copyable(self) -> None:
        """Refuse what cannot be copied exactly: foreign (non-distributable) layers."""
        for blob in self.blobs():
            if blob.is_foreign:
                raise UnsupportedError(
                    f"manifest {self.digest} has a foreign layer {blob.digest} "
                    f"({blob.media_type}) that lives outside the registry"
                )


def _load_json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    return doc
