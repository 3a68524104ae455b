"""Every failure image-sync knows by name; no I/O here.

Each error has a short machine `code` (used in the report's `error.code`) and a message that
says what, where and why. Every code image-sync gives is declared here once, in `CODES`; the
README's troubleshooting table explains each of them (a test holds the two together). Messages
never contain credentials: URLs are redacted before they get here, and credential values are
never passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AUTH_UNSUPPORTED",
    "BAD_REQUEST",
    "BLOB_READ_FAILED",
    "CODES",
    "CONFIG_INVALID",
    "CONFIG_MISSING",
    "CREDENTIALS",
    "DEADLINE",
    "DENIED",
    "DIGEST_INVALID",
    "DISPATCH_FAILED",
    "ERROR",
    "HTTP_STATUS",
    "INTERNAL",
    "INTERRUPTED",
    "INVALID_REFERENCE",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "METHOD_NOT_ALLOWED",
    "NAME_UNKNOWN",
    "NOT_FOUND",
    "PULL_BUDGET",
    "REFERRERS_INVALID",
    "REFERRERS_LIMIT",
    "RESPONSE_TOO_LARGE",
    "TAG_LIST_INVALID",
    "TIMEOUT",
    "TLS_ERROR",
    "TOKEN_INVALID",
    "TOKEN_REALM_INVALID",
    "TOKEN_REALM_REFUSED",
    "TOOMANYREQUESTS",
    "UNAUTHORIZED",
    "UNREACHABLE",
    "UNSUPPORTED",
    "UPLOAD_INVALID",
    "USAGE",
    "AuthenticationError",
    "BlobMismatchError",
    "Code",
    "ConfigError",
    "ConfigMissingError",
    "CredentialError",
    "DeadlineExceeded",
    "DispatchError",
    "ImageSyncError",
    "InvalidReferenceError",
    "ManifestError",
    "PullBudgetExhausted",
    "RateLimit",
    "ReferrersLimitError",
    "RegistryError",
    "UnsupportedError",
    "UpstreamMissingError",
    "UsageError",
    "clip",
    "http_status_code",
    "redact_url",
]


@dataclass(frozen=True, slots=True)
class Code:
    """What an error code means, and whether doing the same again later may succeed (None: it
    depends on the case, and the error itself says)."""

    meaning: str
    temporary: bool | None


# The codes, each declared once. A registry's own codes from its error body (the distribution
# spec's `BLOB_UNKNOWN`, `SIZE_INVALID`, ...) pass through `RegistryError.code` unchanged; those
# named here are the ones image-sync gives itself or acts on.
ERROR = "ERROR"
INTERNAL = "INTERNAL"
INTERRUPTED = "INTERRUPTED"
USAGE = "USAGE"
CONFIG_MISSING = "CONFIG_MISSING"
CONFIG_INVALID = "CONFIG_INVALID"
INVALID_REFERENCE = "INVALID_REFERENCE"
BAD_REQUEST = "BAD_REQUEST"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
CREDENTIALS = "CREDENTIALS"
UNAUTHORIZED = "UNAUTHORIZED"
DENIED = "DENIED"
NOT_FOUND = "NOT_FOUND"
MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
NAME_UNKNOWN = "NAME_UNKNOWN"
TOOMANYREQUESTS = "TOOMANYREQUESTS"
PULL_BUDGET = "PULL_BUDGET"
DEADLINE = "DEADLINE"
#: `RegistryError.kind` of a host that could not be connected to (refused, DNS, connect
#: timeout), and of a host whose metadata requests got no answer in time.
UNREACHABLE = "UNREACHABLE"
TIMEOUT = "TIMEOUT"
TLS_ERROR = "TLS_ERROR"
DIGEST_INVALID = "DIGEST_INVALID"
MANIFEST_INVALID = "MANIFEST_INVALID"
UNSUPPORTED = "UNSUPPORTED"
AUTH_UNSUPPORTED = "AUTH_UNSUPPORTED"
TOKEN_INVALID = "TOKEN_INVALID"
TOKEN_REALM_INVALID = "TOKEN_REALM_INVALID"
TOKEN_REALM_REFUSED = "TOKEN_REALM_REFUSED"
BLOB_READ_FAILED = "BLOB_READ_FAILED"
UPLOAD_INVALID = "UPLOAD_INVALID"
RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
TAG_LIST_INVALID = "TAG_LIST_INVALID"
#: The family `HTTP_404`, `HTTP_502`, ...: see `http_status_code`.
HTTP_STATUS = "HTTP_<status>"
DISPATCH_FAILED = "DISPATCH_FAILED"
REFERRERS_LIMIT = "REFERRERS_LIMIT"
REFERRERS_INVALID = "REFERRERS_INVALID"

CODES: Mapping[str, Code] = MappingProxyType(
    {
        ERROR: Code("a failure with no more specific code", False),
        INTERNAL: Code("a bug; the log has the stack trace", False),
        INTERRUPTED: Code("the CLI was interrupted (Ctrl-C)", False),
        USAGE: Code("bad command-line arguments", False),
        CONFIG_MISSING: Code("no config file where the CLI looks for one", False),
        CONFIG_INVALID: Code("the configuration (or the function's environment) is invalid", False),
        INVALID_REFERENCE: Code("an image reference that does not parse", False),
        BAD_REQUEST: Code("an HTTP request body or query the function does not take", False),
        METHOD_NOT_ALLOWED: Code("an HTTP method the function does not take", False),
        CREDENTIALS: Code("credentials named by the config could not be resolved", False),
        UNAUTHORIZED: Code("the registry or its token service refused the credentials", False),
        DENIED: Code("the registry refused the operation (403)", False),
        NOT_FOUND: Code("the registry answered 404 without an error code", False),
        MANIFEST_UNKNOWN: Code("the tag or manifest is not there", False),
        NAME_UNKNOWN: Code("the repository is not there (the registry's own code)", False),
        TOOMANYREQUESTS: Code("the registry throttled us (429)", True),
        PULL_BUDGET: Code("the upstream's pull allowance is spent or below the floor", True),
        DEADLINE: Code("the run's time budget ran out", True),
        UNREACHABLE: Code("the host could not be connected to", True),
        TIMEOUT: Code("the host accepted the connection but did not answer in time", True),
        TLS_ERROR: Code("the TLS handshake failed", False),
        DIGEST_INVALID: Code("content did not hash to its digest", None),
        MANIFEST_INVALID: Code("a manifest that is malformed, too large or not as asked", False),
        UNSUPPORTED: Code("content that cannot be copied digest-exactly", False),
        AUTH_UNSUPPORTED: Code("an authentication scheme image-sync does not speak", False),
        TOKEN_INVALID: Code("the token service answered without a usable token", False),
        TOKEN_REALM_INVALID: Code("the token realm is not a usable URL", False),
        TOKEN_REALM_REFUSED: Code("the token realm was refused for safety", False),
        BLOB_READ_FAILED: Code("a blob download broke off", True),
        UPLOAD_INVALID: Code("an upload started without a Location", False),
        RESPONSE_TOO_LARGE: Code("an answer larger than allowed", False),
        TAG_LIST_INVALID: Code("a malformed tag list", False),
        HTTP_STATUS: Code("an unexpected HTTP status (5xx: after every retry)", None),
        DISPATCH_FAILED: Code("a Cloud Task could not be created (fan-out)", None),
        REFERRERS_LIMIT: Code("an image's referrers exceed the bounds", False),
        REFERRERS_INVALID: Code("a referrers answer that is not the whole list", False),
    }
)


def http_status_code(status: int) -> str:
    """The code of an unexpected HTTP status that has no code of its own (`HTTP_STATUS`)."""
    return f"HTTP_{status}"


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

    code = ERROR
    #: Whether doing the same thing again later may succeed.
    temporary = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidReferenceError(ImageSyncError, ValueError):
    """An image reference that does not parse."""

    code = INVALID_REFERENCE


class ConfigError(ImageSyncError):
    """The configuration is invalid; `problems` holds one line per problem, each with a path."""

    code = CONFIG_INVALID

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = tuple(problems)
        self.source = source
        first = self.problems[0] if self.problems else "invalid"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{source}: {first}{more}")


class ConfigMissingError(ConfigError):
    """No config file where the CLI looks for one (`--config`, `$IMAGE_SYNC_CONFIG`, `./`)."""

    code = CONFIG_MISSING

    def __init__(self, message: str) -> None:
        ImageSyncError.__init__(self, message)
        self.problems = (message,)
        self.source = ""


class UsageError(ImageSyncError):
    """Bad command-line arguments: an unknown option or command, a malformed value."""

    code = USAGE


class CredentialError(ImageSyncError):
    """Credentials named by the config could not be resolved (never carries their value)."""

    code = CREDENTIALS


def clip(text: str, limit: int = 80) -> str:
    """`text`, shortened to `limit` characters for a message or a log line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A registry's pull allowance as it announced it (Docker Hub's `ratelimit-*` headers): on
    the registry layer's responses and errors, and as the report's `rate_limit`."""

    #: The registry API host (`host[:port]`) that announced it.
    registry: str
    remaining: int
    limit: int

    def __post_init__(self) -> None:
        if self.remaining < 0 or self.limit < 0:
            raise ValueError(f"a pull allowance is never negative: {self.remaining}/{self.limit}")


class RegistryError(ImageSyncError):
    """A registry answered with an error, or could not be reached.

    Carries the HTTP status (None when no answer came), the method, the redacted URL, the
    registry's own error codes (`MANIFEST_UNKNOWN`, `DENIED`, ...), whether a retry may help,
    and the pull allowance the registry had announced by then, if it has one.
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
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.status = status
        #: The registry host whose client made the request (for a token service or a CDN, the
        #: registry they serve): says whose 429 it was without looking at URLs.
        self.registry = registry
        #: The registry's pull allowance as last announced (this response's, or an earlier
        #: one's): None when it announced none, i.e. it has no pull allowance.
        self.rate_limit = rate_limit
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
            return UNREACHABLE
        return {
            401: UNAUTHORIZED,
            403: DENIED,
            404: NOT_FOUND,
            429: TOOMANYREQUESTS,
        }.get(self.status) or http_status_code(self.status)

    @property
    def rate_limited(self) -> bool:
        """The registry (or its token service) refused because of a rate limit (429)."""
        return self.status == 429 or TOOMANYREQUESTS in self.codes

    @property
    def not_found(self) -> bool:
        return self.status == 404 or bool(
            {MANIFEST_UNKNOWN, NAME_UNKNOWN, "BLOB_UNKNOWN"} & set(self.codes)
        )


class AuthenticationError(RegistryError):
    """The registry (or its token service) refused the credentials, or demands some."""


class ManifestError(ImageSyncError):
    """A manifest that is malformed, too large, or not what was asked for."""

    code = MANIFEST_INVALID


class BlobMismatchError(ImageSyncError):
    """Blob content whose size or digest differs from its descriptor (a corrupt source)."""

    code = DIGEST_INVALID
    temporary = True


class UpstreamMissingError(ImageSyncError):
    """A configured tag that the upstream registry does not have."""

    code = MANIFEST_UNKNOWN


class UnsupportedError(ImageSyncError):
    """Content image-sync refuses to copy because it cannot be copied digest-exactly."""

    code = UNSUPPORTED


class PullBudgetExhausted(ImageSyncError):
    """The upstream registry's pull allowance fell below the configured floor."""

    code = PULL_BUDGET
    temporary = True


class DeadlineExceeded(ImageSyncError):
    """The run's time budget ran out: before this work started (deferred), or while it ran
    (cut off at the hard stop: failed)."""

    code = DEADLINE
    temporary = True


class ReferrersLimitError(ImageSyncError):
    """An image's referrers exceed the bounds on their number or nesting depth."""

    code = REFERRERS_LIMIT


class DispatchError(ImageSyncError):
    """A Cloud Task for an image could not be created (fan-out); `temporary` when a retry of the
    dispatch may succeed."""

    code = DISPATCH_FAILED

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary
