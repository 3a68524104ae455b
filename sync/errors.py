"""Every failure image-sync knows by name; no I/O here.

Each error has a short machine `code` (used in the report's `error.code`) and a message that
says what, where and why. Messages never contain credentials: URLs are redacted before they get
here, and credential values are never passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "TIMEOUT",
    "UNREACHABLE",
    "AuthenticationError",
    "BlobMismatchError",
    "ConfigError",
    "ConfigMissingError",
    "CredentialError",
    "DeadlineExceeded",
    "DispatchError",
    "ImageSyncError",
    "InvalidReferenceError",
    "ManifestError",
    "PullBudgetExhausted",
    "ReferrersLimitError",
    "RegistryError",
    "UnsupportedError",
    "UpstreamMissingError",
    "UsageError",
    "redact_url",
]


def redact_url(url: str) -> str:
    """A URL fit for logs: no user info, no query (signed CDN URLs carry tokens there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class ImageSyncError(Exception):
    """Base of every error image-sync raises on purpose."""

    code = "ERROR"
    #: Whether doing the same thing again later may succeed.
    temporary = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidReferenceError(ImageSyncError, ValueError):
    """An image reference that does not parse."""

    code = "INVALID_REFERENCE"


class ConfigError(ImageSyncError):
    """The configuration is invalid; `problems` holds one line per problem, each with a path."""

    code = "CONFIG_INVALID"

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = tuple(problems)
        self.source = source
        first = self.problems[0] if self.problems else "invalid"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{source}: {first}{more}")


class ConfigMissingError(ConfigError):
    """No config file where the CLI looks for one (`--config`, `$IMAGE_SYNC_CONFIG`, `./`)."""

    code = "CONFIG_MISSING"

    def __init__(self, message: str) -> None:
        ImageSyncError.__init__(self, message)
        self.problems = (message,)
        self.source = ""


class UsageError(ImageSyncError):
    """Bad command-line arguments: an unknown option or command, a malformed value."""

    code = "USAGE"


class CredentialError(ImageSyncError):
    """Credentials named by the config could not be resolved (never carries their value)."""

    code = "CREDENTIALS"


class RegistryError(ImageSyncError):
    """A registry answered with an error, or could not be reached.

    Carries the HTTP status (None when no answer came), the method, the redacted URL, the
    registry's own error codes (`MANIFEST_UNKNOWN`, `DENIED`, ...) and whether a retry may help.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        url: str = "",
        codes: Sequence[str] = (),
        temporary: bool = False,
        retry_after: float | None = None,
        kind: str | None = None,
        registry: str = "",
    ) -> None:
        self.status = status
        #: The registry host whose client made the request (for a token service or a CDN, the
        #: registry they serve): says whose 429 it was without looking at URLs.
        self.registry = registry
        #: Our own code for what went wrong when the registry gave none (`TOKEN_INVALID`, ...).
        self.kind = kind
        self.method = method
        self.url = redact_url(url) if url else ""
        self.codes = tuple(codes)
        self.temporary = temporary
        self.retry_after = retry_after
        where = f"{method} {self.url}".strip()
        what = f"HTTP {status}" if status is not None else "" if kind else "no answer"
        detail = f" [{', '.join(self.codes)}]" if self.codes else ""
        head = f"{where}: {what}{detail}".rstrip(": ")
        super().__init__(f"{head}: {message}" if where else message)

    @property
    def code(self) -> str:  # type: ignore[override]
        if self.codes:
            return self.codes[0]
        if self.kind:
            return self.kind
        if self.status is None:
            return "UNREACHABLE"
        return {
            401: "UNAUTHORIZED",
            403: "DENIED",
            404: "NOT_FOUND",
            429: "TOOMANYREQUESTS",
        }.get(self.status, f"HTTP_{self.status}")

    @property
    def rate_limited(self) -> bool:
        """The registry (or its token service) refused because of a rate limit (429)."""
        return self.status == 429 or "TOOMANYREQUESTS" in self.codes

    @property
    def not_found(self) -> bool:
        return self.status == 404 or bool(
            {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"} & set(self.codes)
        )


#: `RegistryError.kind` of a host that could not be connected to (refused, DNS, TLS handshake,
#: connect timeout), and of a host whose metadata requests got no answer in time.
UNREACHABLE = "UNREACHABLE"
TIMEOUT = "TIMEOUT"


class AuthenticationError(RegistryError):
    """The registry (or its token service) refused the credentials, or demands some."""


class ManifestError(ImageSyncError):
    """A manifest that is malformed, too large, or not what was asked for."""

    code = "MANIFEST_INVALID"


class BlobMismatchError(ImageSyncError):
    """Blob content whose size or digest differs from its descriptor (a corrupt source)."""

    code = "DIGEST_INVALID"
    temporary = True


class UpstreamMissingError(ImageSyncError):
    """A configured tag that the upstream registry does not have."""

    code = "MANIFEST_UNKNOWN"


class UnsupportedError(ImageSyncError):
    """Content image-sync refuses to copy because it cannot be copied digest-exactly."""

    code = "UNSUPPORTED"


class PullBudgetExhausted(ImageSyncError):
    """The upstream registry's pull allowance fell below the configured floor."""

    code = "PULL_BUDGET"
    temporary = True


class DeadlineExceeded(ImageSyncError):
    """The run's time budget ran out: before this work started (deferred), or while it ran
    (cut off at the hard stop: failed)."""

    code = "DEADLINE"
    temporary = True


class ReferrersLimitError(ImageSyncError):
    """An image's referrers exceed the bounds on their number or nesting depth."""

    code = "REFERRERS_LIMIT"


class DispatchError(ImageSyncError):
    """A Cloud Task for an image could not be created (fan-out); `temporary` when a retry of the
    dispatch may succeed."""

    code = "DISPATCH_FAILED"

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary
