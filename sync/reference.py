"""Image references (`host[:port]/repo[:tag][@digest]`) as immutable values; no I/O.

Docker Hub quirks live here: `docker.io` (and `index.docker.io`) is a reference domain whose API
is served at `registry-1.docker.io`, and one-part Docker Hub names get `library/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from sync.errors import InvalidReferenceError

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_API_HOST",
    "Reference",
    "api_host",
    "is_registry_host",
    "is_tag",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"(?P<alg>sha256|sha512):(?P<hex>[0-9a-f]+)")
_DIGEST_HEX_LEN = {"sha256": 64, "sha512": 128}
_MAX_NAME = 255


def is_tag(text: str) -> bool:
    """Tag syntax: letters, digits, `_`, `.`, `-`; not starting with `.` or `-`; ≤ 128."""
    return bool(_TAG.fullmatch(text))


def is_registry_host(text: str) -> bool:
    """`host` or `host:port` (a DNS name, an IPv4 address or a bracketed IPv6 one)."""
    m = _DOMAIN.fullmatch(text)
    return m is not None and (m["port"] is None or 0 < int(m["port"]) < 65536)


def api_host(registry: str) -> str:
    """The host (and port) that serves the registry API for a reference's registry part."""
    return DOCKER_HUB_API_HOST if registry in _DOCKER_HUB_ALIASES else registry


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference. `registry` is as users write it (`docker.io`, `quay.io`,
    `127.0.0.1:5000`); `host` is where its API lives."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def host(self) -> str:
        return api_host(self.registry)

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/` in a URL: the digest if there is one, else the tag."""
        if self.digest:
            return self.digest
        return self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        if not is_tag(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        _check_digest(digest, str(self))
        return replace(self, digest=digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _check_digest(digest: str, context: str) -> None:
    m = _DIGEST.fullmatch(digest)
    if not m or len(m["hex"]) != _DIGEST_HEX_LEN[m["alg"]]:
        raise InvalidReferenceError(
            f"{context!r}: invalid digest {digest!r} (want sha256:<64 lowercase hex>)"
        )


def parse_reference(text: str, *, default_tag: str | None = None) -> Reference:
    """Parse `host[:port]/repo[:tag][@digest]`.

    A first component without `.` or `:` that is not `localhost` means Docker Hub, as in
    Docker's own rules; a one-part Docker Hub name gets `library/`. Raises
    InvalidReferenceError with the reason.
    """
    if not isinstance(text, str) or not text:
        raise InvalidReferenceError("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReferenceError(f"{text!r}: image reference contains whitespace")
    if "://" in text:
        raise InvalidReferenceError(f"{text!r}: image reference must not have a URL scheme")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _check_digest(digest, text)
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not is_tag(tag):
            raise InvalidReferenceError(
                f"{text!r}: invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128)"
            )
    if not rest:
        raise InvalidReferenceError(f"{text!r}: missing repository")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
        if not is_registry_host(registry):
            raise InvalidReferenceError(f"{text!r}: invalid registry host {registry!r}")
        registry = registry.lower()
    else:
        registry, path = DOCKER_HUB, rest
    if registry in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReferenceError(
                f"{text!r}: invalid repository component {component!r} "
                "(lowercase letters, digits and single separators '.', '_', '__', '-')"
            )
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise InvalidReferenceError(f"{text!r}: name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
