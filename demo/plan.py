"""What the demo mirrors: the real config's images and tags, plus upstream-only version tags for
discovery to find, and the config file for the local hosts.

Kept in step with `image-sync-config.json` by tests/test_demo.py (same names, repositories and
configured tags); only the hosts, `max_tags_to_check` and `registries` differ.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tests.bed.images import Image, docker_manifest_list, oci_index, oci_index_with_attestations

__all__ = [
    "CHANGED_IMAGE",
    "CHANGED_TAG",
    "IMAGES",
    "MAX_TAGS_TO_CHECK",
    "PROJECT",
    "SECRET_PASSWORD",
    "SECRET_USER",
    "DemoImage",
    "demo_config",
    "expected_tag_count",
]

PROJECT = "demo-project"
SECRET_USER = "quay-user"
SECRET_PASSWORD = "quay-password"
MAX_TAGS_TO_CHECK = 3

_PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass(frozen=True)
class DemoImage:
    """One mirrored image: its config entry, what upstream holds, and what discovery must find."""

    name: str
    upstream_repo: str  # on Docker Hub: docker.io/<upstream_repo>
    target_repo: str  # on Quay: quay.io/<target_repo>
    tags: tuple[str, ...]  # configured
    extra_tags: tuple[str, ...]  # upstream only
    #: The newest MAX_TAGS_TO_CHECK version tags (semver order, not alphabetical) that are not
    #: configured: what the run must mirror with `discovered: true`.
    discovered: tuple[str, ...]
    shape: str  # for the listing
    build: Callable[[int], Image] = field(repr=False)
    #: tag -> the tag whose image it carries (Docker Hub's `latest` is usually a release)
    same_as: Mapping[str, str] = field(default_factory=dict)

    @property
    def upstream_tags(self) -> tuple[str, ...]:
        return self.tags + self.extra_tags

    def image(self, tag: str, *, salt: str = "") -> Image:
        """The deterministic image upstream holds under `tag` (another one for another salt)."""
        source = self.same_as.get(tag, tag) if not salt else tag
        return self.build(zlib.crc32(f"{self.upstream_repo}:{source}{salt}".encode()))


IMAGES: tuple[DemoImage, ...] = (
    DemoImage(
        name="examples-helloworld-v1",
        upstream_repo="istio/examples-helloworld-v1",
        target_repo="sail-dev/examples-helloworld-v1",
        tags=("1.0", "latest"),
        extra_tags=("1.1", "1.2-rc.1", "0.9"),
        # 1.2-rc.1 > 1.1 > 1.0 > 0.9: a pre-release sorts before its release, after 1.1.
        discovered=("1.2-rc.1", "1.1"),
        shape="OCI index, 2 platforms",
        build=functools.partial(oci_index, platforms=_PLATFORMS),
        same_as={"latest": "1.0"},
    ),
    DemoImage(
        name="examples-helloworld-v2",
        upstream_repo="istio/examples-helloworld-v2",
        target_repo="sail-dev/examples-helloworld-v2",
        tags=("1.0", "latest"),
        extra_tags=(),
        discovered=(),
        shape="Docker manifest list, 2 platforms",
        build=functools.partial(docker_manifest_list, platforms=_PLATFORMS),
        same_as={"latest": "1.0"},
    ),
    DemoImage(
        name="examples-httpbin",
        upstream_repo="mccutchen/go-httpbin",
        target_repo="sail-dev/examples-httpbin",
        tags=("v2.15.0",),
        extra_tags=("v2.16.0", "v2.9.0", "v2.8.0"),
        # Alphabetically v2.9.0 > v2.8.0 > v2.16.0; as versions v2.16.0 is the newest.
        discovered=("v2.16.0", "v2.9.0"),
        shape="OCI index + attestations (BuildKit)",
        build=functools.partial(oci_index_with_attestations, platforms=_PLATFORMS),
    ),
    DemoImage(
        name="examples-tcp-echo-server",
        upstream_repo="istio/tcp-echo-server",
        target_repo="sail-dev/examples-tcp-echo-server",
        tags=("1.3",),
        extra_tags=("1.4",),
        discovered=("1.4",),
        shape="Docker manifest list, 3 platforms",
        build=functools.partial(
            docker_manifest_list, platforms=("linux/amd64", "linux/arm64", "linux/s390x")
        ),
    ),
)

#: The tag the demo moves upstream between the two function calls.
CHANGED_IMAGE, CHANGED_TAG = IMAGES[0], "latest"


def expected_tag_count() -> tuple[int, int]:
    """(configured tags, discovered tags) a full run reports."""
    return (
        sum(len(image.tags) for image in IMAGES),
        sum(len(image.discovered) for image in IMAGES),
    )


def demo_config(upstream_host: str, target_host: str) -> dict[str, object]:
    """The config for the local registries, shaped like image-sync-config.json."""
    return {
        "images": [
            {
                "name": image.name,
                "upstream": f"{upstream_host}/{image.upstream_repo}",
                "target": f"{target_host}/{image.target_repo}",
                "tags": list(image.tags),
            }
            for image in IMAGES
        ],
        "check_new_tags": True,
        "max_tags_to_check": MAX_TAGS_TO_CHECK,
        "sync_schedule": "0 2 * * *",
        "registries": {
            upstream_host: {"tls": "disabled"},
            target_host: {
                "tls": "disabled",
                "username": f"secret:{SECRET_USER}",
                "password": f"secret:{SECRET_PASSWORD}",
            },
        },
    }
