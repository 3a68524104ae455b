"""Deterministic synthetic images for tests: manifests as exact bytes, blobs, digests.

Owns what an image looks like (the shapes Docker Hub and Quay serve) and nothing about
registries: pushing is `rawclient`'s job. Every builder takes a `seed`; the same seed gives the
same bytes in every run, another seed gives different content of the same shape (`variant`).
Manifests are serialized once, with `json.dumps(..., indent=2)`, and the digest is sha256 of
exactly those bytes.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import random
import tarfile
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1_SIGNED",
    "INDEX_TYPES",
    "IN_TOTO",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "PUSHABLE_SHAPES",
    "Image",
    "docker_manifest",
    "docker_manifest_list",
    "foreign_layer_image",
    "image_of",
    "index_of",
    "no_layers_image",
    "oci_index",
    "oci_index_with_attestations",
    "oci_manifest",
    "schema1_manifest",
    "sha256_digest",
    "shared_layer_pair",
    "zstd_image",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
IN_TOTO = "application/vnd.in-toto+json"

# What to send in Accept on every manifest GET and HEAD (see REGISTRY-NOTES.md).
MANIFEST_ACCEPT: tuple[str, ...] = (
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
)

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
DEFAULT_LAYER_SIZE = 1024
_CREATED = "2024-01-01T00:00:00Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=2).encode()


def _descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


@dataclass(frozen=True)
class Image:
    """One manifest (exact bytes) and everything it references, children included."""

    shape: str  # builder name, e.g. "oci-index"
    manifest: bytes
    media_type: str
    children: tuple[Image, ...] = ()
    # digest -> bytes for the config and layers of this manifest and of all its children
    blobs: Mapping[str, bytes] = field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, hash=False
    )
    platform: str | None = None  # "os/arch[/variant]"; "unknown/unknown" for attestations
    config: str | None = None  # config digest (single manifests only)
    layers: tuple[str, ...] = ()  # layer digests in manifest order, foreign ones included
    foreign_layers: tuple[str, ...] = ()  # digests not in `blobs`: they live at their `urls`
    _rebuild: Callable[[int], Image] | None = field(
        default=None, compare=False, hash=False, repr=False
    )

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def descriptor(self, platform: str | None = None, **extra: object) -> dict[str, object]:
        """This manifest's descriptor; with `platform` ("os/arch[/variant]") as an index lists
        it, and `extra` fields (annotations, say) as given."""
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if platform is not None:
            out["platform"] = _split_platform(platform)
        out.update(extra)
        return out

    def manifests(self) -> Iterator[Image]:
        """Children first, then this one: the order to push in."""
        for child in self.children:
            yield from child.manifests()
        yield self

    def manifest_digests(self) -> set[str]:
        return {m.digest for m in self.manifests()}

    def blob_digests(self) -> set[str]:
        return set(self.blobs)

    def all_digests(self) -> set[str]:
        """Every manifest and blob digest a faithful copy must hold (foreign layers excluded)."""
        return self.manifest_digests() | self.blob_digests()

    def child(self, platform: str) -> Image:
        for c in self.children:
            if c.platform == platform:
                return c
        raise KeyError(f"{self.shape} has no child for platform {platform!r}")

    def variant(self, seed: int) -> Image:
        """The same shape built from another seed: what a tag looks like after it moved."""
        if self._rebuild is None:
            raise ValueError(f"{self.shape} image cannot be rebuilt")
        return self._rebuild(seed)


# -- blobs ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _layer(key: str, size: int) -> tuple[bytes, str]:
    """A gzip'd tar with one file of `size` random bytes: (compressed bytes, diff_id)."""
    rng = random.Random(key)
    content = rng.randbytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(f"bed/{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin")
        info.size = size
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), sha256_digest(tar_bytes)


def _random_blob(key: str, size: int) -> bytes:
    return random.Random(key).randbytes(size)


def _split_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], not {platform!r}")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


@dataclass(frozen=True)
class _LayerSpec:
    key: str
    size: int
    media_type: str
    foreign: bool = False


def _single(
    shape: str,
    *,
    manifest_type: str,
    config_type: str,
    platform: str,
    layer_specs: Sequence[_LayerSpec],
    seed_label: str,
    rebuild: Callable[[int], Image] | None,
) -> Image:
    blobs: dict[str, bytes] = {}
    descriptors: list[dict[str, object]] = []
    diff_ids: list[str] = []
    foreign: list[str] = []
    for spec in layer_specs:
        if spec.media_type == OCI_LAYER_ZSTD:
            # No zstd in the stdlib: random bytes stand in; only the digest matters here.
            data = _random_blob(spec.key, spec.size)
            diff_id = sha256_digest(data)
        else:
            data, diff_id = _layer(spec.key, spec.size)
        extra: dict[str, object] = {}
        if spec.foreign:
            extra["urls"] = [f"https://foreign.example.invalid/layers/{sha256_digest(data)}"]
            foreign.append(sha256_digest(data))
        else:
            blobs[sha256_digest(data)] = data
        descriptors.append(_descriptor(spec.media_type, data, **extra))
        diff_ids.append(diff_id)
    config_obj: dict[str, object] = {
        **_split_platform(platform),
        "created": _CREATED,
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"BED_IMAGE={seed_label}"],
            "Labels": {"org.opencontainers.image.title": shape},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": _CREATED, "created_by": f"bed layer {i}"} for i in range(len(diff_ids))
        ],
    }
    config = _dumps(config_obj)
    blobs[sha256_digest(config)] = config
    manifest = _dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": _descriptor(config_type, config),
            "layers": descriptors,
        }
    )
    return Image(
        shape=shape,
        manifest=manifest,
        media_type=manifest_type,
        blobs=types.MappingProxyType(blobs),
        platform=platform,
        config=sha256_digest(config),
        layers=tuple(str(d["digest"]) for d in descriptors),
        foreign_layers=tuple(foreign),
        _rebuild=rebuild,
    )


def _index(
    shape: str,
    *,
    media_type: str,
    children: Sequence[Image],
    entries: Sequence[dict[str, object]],
    rebuild: Callable[[int], Image],
) -> Image:
    blobs: dict[str, bytes] = {}
    for child in children:
        blobs.update(child.blobs)
    manifest = _dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)})
    return Image(
        shape=shape,
        manifest=manifest,
        media_type=media_type,
        children=tuple(children),
        blobs=types.MappingProxyType(blobs),
        _rebuild=rebuild,
    )


def _platform_entry(child: Image) -> dict[str, object]:
    assert child.platform is not None
    return child.descriptor(child.platform)


def _specs(prefix: str, layers: int, size: int, media_type: str) -> list[_LayerSpec]:
    return [_LayerSpec(f"{prefix}:layer{i}", size, media_type) for i in range(layers)]


# -- single manifests ----------------------------------------------------------------------------


def oci_manifest(
    seed: int = 0,
    *,
    platform: str = "linux/amd64",
    layers: int = 2,
    layer_size: int = DEFAULT_LAYER_SIZE,
) -> Image:
    """A single-platform OCI image manifest with gzip'd tar layers."""
    key = f"oci-manifest:{seed}:{platform}"
    return _single(
        "oci-manifest",
        manifest_type=OCI_MANIFEST,
        config_type=OCI_CONFIG,
        platform=platform,
        layer_specs=_specs(key, layers, layer_size, OCI_LAYER_GZIP),
        seed_label=key,
        rebuild=functools.partial(
            oci_manifest, platform=platform, layers=layers, layer_size=layer_size
        ),
    )


def docker_manifest(
    seed: int = 0,
    *,
    platform: str = "linux/amd64",
    layers: int = 2,
    layer_size: int = DEFAULT_LAYER_SIZE,
) -> Image:
    """A single-platform Docker image manifest v2 (schema 2)."""
    key = f"docker-manifest:{seed}:{platform}"
    return _single(
        "docker-manifest",
        manifest_type=DOCKER_MANIFEST,
        config_type=DOCKER_CONFIG,
        platform=platform,
        layer_specs=_specs(key, layers, layer_size, DOCKER_LAYER),
        seed_label=key,
        rebuild=functools.partial(
            docker_manifest, platform=platform, layers=layers, layer_size=layer_size
        ),
    )


def no_layers_image(seed: int = 0) -> Image:
    """An OCI manifest with a config and an empty `layers` list (like `FROM scratch` + labels)."""
    key = f"no-layers:{seed}"
    return _single(
        "no-layers",
        manifest_type=OCI_MANIFEST,
        config_type=OCI_CONFIG,
        platform="linux/amd64",
        layer_specs=[],
        seed_label=key,
        rebuild=no_layers_image,
    )


def zstd_image(seed: int = 0, *, layers: int = 2, layer_size: int = DEFAULT_LAYER_SIZE) -> Image:
    """An OCI manifest whose layers are `tar+zstd` (random bytes standing in for zstd)."""
    key = f"zstd:{seed}"
    return _single(
        "zstd",
        manifest_type=OCI_MANIFEST,
        config_type=OCI_CONFIG,
        platform="linux/amd64",
        layer_specs=_specs(key, layers, layer_size, OCI_LAYER_ZSTD),
        seed_label=key,
        rebuild=functools.partial(zstd_image, layers=layers, layer_size=layer_size),
    )


def foreign_layer_image(seed: int = 0) -> Image:
    """A Docker v2 manifest (Windows-style) with one normal and one foreign layer with `urls`.

    The foreign layer is not in `blobs`; a registry takes the manifest only if configured to
    allow its URL (`start_registry(..., allow_foreign_layers=True)`).
    """
    key = f"foreign:{seed}"
    return _single(
        "foreign-layer",
        manifest_type=DOCKER_MANIFEST,
        config_type=DOCKER_CONFIG,
        platform="windows/amd64",
        layer_specs=[
            _LayerSpec(f"{key}:base", DEFAULT_LAYER_SIZE, DOCKER_FOREIGN_LAYER, foreign=True),
            _LayerSpec(f"{key}:top", DEFAULT_LAYER_SIZE, DOCKER_LAYER),
        ],
        seed_label=key,
        rebuild=foreign_layer_image,
    )


def schema1_manifest(seed: int = 0) -> Image:
    """Schema-1 signed manifest bytes, for negative tests (Distribution 2.8 refuses the PUT)."""
    key = f"schema1:{seed}"
    layer, _ = _layer(f"{key}:layer0", DEFAULT_LAYER_SIZE)
    v1 = json.dumps({"id": hashlib.sha256(key.encode()).hexdigest(), "created": _CREATED})
    body = {
        "schemaVersion": 1,
        "name": "library/bed",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256_digest(layer)}],
        "history": [{"v1Compatibility": v1}],
        "signatures": [
            {
                "header": {"alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "kid": "BED"}},
                "signature": "bm90LWEtcmVhbC1zaWduYXR1cmU",
                "protected": "eyJmb3JtYXRMZW5ndGgiOjEsImZvcm1hdFRhaWwiOiJJSDAifQ",
            }
        ],
    }
    return Image(
        shape="schema1",
        manifest=_dumps(body),
        media_type=DOCKER_SCHEMA1_SIGNED,
        blobs=types.MappingProxyType({sha256_digest(layer): layer}),
        layers=(sha256_digest(layer),),
        _rebuild=schema1_manifest,
    )


# -- indexes -------------------------------------------------------------------------------------


def oci_index(
    seed: int = 0,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64", "linux/s390x"),
    layers: int = 2,
    layer_size: int = DEFAULT_LAYER_SIZE,
) -> Image:
    """An OCI image index with one OCI manifest per platform."""
    children = [
        oci_manifest(seed, platform=p, layers=layers, layer_size=layer_size) for p in platforms
    ]
    return _index(
        "oci-index",
        media_type=OCI_INDEX,
        children=children,
        entries=[_platform_entry(c) for c in children],
        rebuild=functools.partial(
            oci_index, platforms=tuple(platforms), layers=layers, layer_size=layer_size
        ),
    )


def docker_manifest_list(
    seed: int = 0,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    layers: int = 2,
    layer_size: int = DEFAULT_LAYER_SIZE,
) -> Image:
    """A Docker manifest list v2 with one Docker v2 manifest per platform."""
    children = [
        docker_manifest(seed, platform=p, layers=layers, layer_size=layer_size) for p in platforms
    ]
    return _index(
        "docker-list",
        media_type=DOCKER_MANIFEST_LIST,
        children=children,
        entries=[_platform_entry(c) for c in children],
        rebuild=functools.partial(
            docker_manifest_list, platforms=tuple(platforms), layers=layers, layer_size=layer_size
        ),
    )


def _attestation(seed: int, subject: Image) -> Image:
    """A BuildKit attestation manifest (in-toto SPDX statement) for `subject`."""
    statement = _dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [
                {
                    "name": f"pkg:docker/bed@{seed}?platform={subject.platform}",
                    "digest": {"sha256": subject.digest.removeprefix("sha256:")},
                }
            ],
            "predicate": {"spdxVersion": "SPDX-2.3", "name": f"sbom-{seed}", "packages": []},
        }
    )
    config = _dumps(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(statement)]},
        }
    )
    layer = _descriptor(
        IN_TOTO, statement, annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"}
    )
    manifest = _dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config),
            "layers": [layer],
        }
    )
    return Image(
        shape="attestation",
        manifest=manifest,
        media_type=OCI_MANIFEST,
        blobs=types.MappingProxyType(
            {sha256_digest(config): config, sha256_digest(statement): statement}
        ),
        platform="unknown/unknown",
        config=sha256_digest(config),
        layers=(sha256_digest(statement),),
    )


def oci_index_with_attestations(
    seed: int = 0,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    layers: int = 2,
    layer_size: int = DEFAULT_LAYER_SIZE,
) -> Image:
    """An OCI index as BuildKit writes it: images, then one attestation manifest per image.

    Attestation entries have platform unknown/unknown and the annotations
    `vnd.docker.reference.type: attestation-manifest` and `vnd.docker.reference.digest`
    naming their sibling image manifest.
    """
    images = [
        oci_manifest(seed, platform=p, layers=layers, layer_size=layer_size) for p in platforms
    ]
    attestations = [_attestation(seed, image) for image in images]
    entries = [_platform_entry(c) for c in images]
    for image, att in zip(images, attestations, strict=True):
        entries.append(
            {
                **att.descriptor(),
                "annotations": {
                    "vnd.docker.reference.digest": image.digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            }
        )
    return _index(
        "oci-index-attestation",
        media_type=OCI_INDEX,
        children=[*images, *attestations],
        entries=entries,
        rebuild=functools.partial(
            oci_index_with_attestations,
            platforms=tuple(platforms),
            layers=layers,
            layer_size=layer_size,
        ),
    )


# -- exact bytes ---------------------------------------------------------------------------------


def image_of(
    layers: Sequence[bytes],
    *,
    config: bytes | None = None,
    media_type: str = OCI_MANIFEST,
    layer_type: str = OCI_LAYER_GZIP,
    with_media_type_field: bool = True,
    extra_layers: Sequence[Mapping[str, object]] = (),
) -> Image:
    """An image manifest over exactly these layer bytes, for protocol corners: tiny layers, a
    chosen config, a manifest without its `mediaType` field. `extra_layers` are descriptors
    appended as given, their blobs not included (foreign layers live outside the registry)."""
    config = config if config is not None else json.dumps({"layers": len(layers)}).encode()
    blobs = {sha256_digest(config): config}
    descriptors: list[Mapping[str, object]] = []
    for layer in layers:
        blobs[sha256_digest(layer)] = layer
        descriptors.append(_descriptor(layer_type, layer))
    descriptors.extend(extra_layers)
    doc: dict[str, object] = {"schemaVersion": 2}
    if with_media_type_field:
        doc["mediaType"] = media_type
    doc["config"] = _descriptor(OCI_CONFIG, config)
    doc["layers"] = descriptors
    return Image(
        shape="given",
        manifest=_dumps(doc),
        media_type=media_type,
        blobs=types.MappingProxyType(blobs),
        config=sha256_digest(config),
        layers=tuple(str(d["digest"]) for d in descriptors),
        foreign_layers=tuple(str(d["digest"]) for d in extra_layers),
    )


def index_of(
    children: Sequence[tuple[Image, str]],
    *,
    media_type: str = OCI_INDEX,
    attestations: Sequence[tuple[Image, str]] = (),
) -> Image:
    """An index over `(image, platform)` pairs; `attestations` are `(image, subject digest)`
    pairs listed as `unknown/unknown` with BuildKit's reference annotations."""
    entries = [image.descriptor(platform) for image, platform in children]
    for image, subject in attestations:
        entries.append(
            image.descriptor(
                "unknown/unknown",
                annotations={
                    "vnd.docker.reference.digest": subject,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
            )
        )
    blobs: dict[str, bytes] = {}
    for image, _ in (*children, *attestations):
        blobs.update(image.blobs)
    return Image(
        shape="given-index",
        manifest=_dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}),
        media_type=media_type,
        children=tuple(image for image, _ in (*children, *attestations)),
        blobs=types.MappingProxyType(blobs),
    )


# -- families ------------------------------------------------------------------------------------


def _shared_member(seed: int, which: int, shared: int, layer_size: int) -> Image:
    base = _specs(f"shared-base:{seed}", shared, layer_size, OCI_LAYER_GZIP)
    own = _LayerSpec(f"shared-top:{seed}:{which}", layer_size, OCI_LAYER_GZIP)
    return _single(
        f"shared-{'ab'[which]}",
        manifest_type=OCI_MANIFEST,
        config_type=OCI_CONFIG,
        platform="linux/amd64",
        layer_specs=[*base, own],
        seed_label=f"shared:{seed}:{which}",
        rebuild=functools.partial(
            _shared_member, which=which, shared=shared, layer_size=layer_size
        ),
    )


def shared_layer_pair(
    seed: int = 0, *, shared: int = 2, layer_size: int = DEFAULT_LAYER_SIZE
) -> tuple[Image, Image]:
    """Two OCI manifests with the same `shared` base layers and one own layer each."""
    return (
        _shared_member(seed, 0, shared, layer_size),
        _shared_member(seed, 1, shared, layer_size),
    )


# Every shape a registry takes as is (schema 1 and foreign layers need special handling).
PUSHABLE_SHAPES: Mapping[str, Callable[[int], Image]] = types.MappingProxyType(
    {
        "oci-index": oci_index,
        "docker-list": docker_manifest_list,
        "oci-index-attestation": oci_index_with_attestations,
        "oci-manifest": oci_manifest,
        "docker-manifest": docker_manifest,
        "no-layers": no_layers_image,
        "zstd": zstd_image,
        "shared-a": lambda seed: shared_layer_pair(seed)[0],
    }
)
