"""Reading secrets from Google Secret Manager; the client library is imported only when used.

Owns secret resource names (`secret:NAME` → `projects/P/secrets/NAME/versions/latest`), the
client's construction (`SECRET_MANAGER_ENDPOINT` → REST at that address, anonymous), and turning
its failures into CredentialErrors that name the secret, never its value.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from sync.errors import CredentialError

if TYPE_CHECKING:
    from google.cloud.secretmanager import SecretManagerServiceClient

__all__ = [
    "ENDPOINT_ENV",
    "PROJECT_ENV",
    "SecretManagerReader",
    "SecretReader",
    "secret_version_name",
]

ENDPOINT_ENV = "SECRET_MANAGER_ENDPOINT"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"

_log = logging.getLogger(__name__)

_VERSION_NAME = re.compile(r"projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+")


class SecretReader(Protocol):
    """Reads one secret version's value; `name` is `projects/P/secrets/S/versions/V`.

    Raises CredentialError naming the secret (never the value) when it cannot.
    """

    def read(self, name: str) -> str: ...


def secret_version_name(name: str, project: str | None) -> str:
    """The full resource name for the NAME of a `secret:NAME` REF (latest version in
    `project`), or NAME itself when it already is one."""
    if name.startswith("projects/"):
        return name
    if not project:
        raise CredentialError(
            f"secret:{name} names a secret in the function's project, but {PROJECT_ENV} is not "
            f"set (set it, or write secret:projects/P/secrets/{name}/versions/latest)"
        )
    return f"projects/{project}/secrets/{name}/versions/latest"


def _endpoint_url(endpoint: str) -> str:
    # The REST transport keeps an explicit `http://` or `https://` and otherwise assumes https;
    # a local server is plain HTTP, so a bare `host:port` means http here.
    endpoint = endpoint.strip().rstrip("/")
    if not re.match(r"https?://", endpoint):
        endpoint = f"http://{endpoint}"
    return endpoint


class SecretManagerReader:
    """A SecretReader backed by the Secret Manager client library.

    With `SECRET_MANAGER_ENDPOINT` in `env` the client talks REST to that address with
    anonymous credentials (tests, local runs); otherwise it is the library's default client with
    Application Default Credentials. `client` injects a ready client (not closed by `close`).
    Each secret is read once per reader; one trailing newline (`echo` adds one) is dropped.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        client: Any = None,
        timeout: float = 20.0,
    ) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._client: Any = client
        self._owns_client = client is None
        self._timeout = timeout
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"SecretManagerReader(endpoint={self._env.get(ENDPOINT_ENV)!r})"

    def read(self, name: str) -> str:
        if not _VERSION_NAME.fullmatch(name):
            raise CredentialError(
                f"invalid secret resource {name!r} (want projects/P/secrets/S/versions/V)"
            )
        with self._lock:
            if name in self._cache:
                return self._cache[name]
            value = self._access(name)
            self._cache[name] = value
            return value

    def close(self) -> None:
        with self._lock:
            if self._owns_client and self._client is not None:
                self._client.transport.close()
            self._client = None

    def __enter__(self) -> SecretManagerReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _make_client(self, name: str) -> SecretManagerServiceClient:
        from google.auth.exceptions import DefaultCredentialsError  # noqa: PLC0415
        from google.cloud import secretmanager  # noqa: PLC0415

        # The library logs response payloads (the secret itself) at DEBUG: never let it.
        library_log = logging.getLogger("google.cloud.secretmanager_v1")
        if library_log.getEffectiveLevel() < logging.INFO:
            library_log.setLevel(logging.INFO)

        endpoint = self._env.get(ENDPOINT_ENV)
        if endpoint:
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

            return secretmanager.SecretManagerServiceClient(
                transport="rest",
                client_options={"api_endpoint": _endpoint_url(endpoint)},
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
        try:
            return secretmanager.SecretManagerServiceClient()
        except DefaultCredentialsError:
            raise CredentialError(
                f"cannot read secret {name}: no Google credentials found (run on Google Cloud, "
                f"use `gcloud auth application-default login`, or set {ENDPOINT_ENV} for a "
                "local server)"
            ) from None

    def _access(self, name: str) -> str:
        from google.api_core import exceptions as gexc  # noqa: PLC0415
        from google.api_core import retry as gretry  # noqa: PLC0415
        from google.auth import exceptions as auth_exc  # noqa: PLC0415
        from requests import exceptions as rexc  # noqa: PLC0415

        if self._client is None:
            self._client = self._make_client(name)
        where = f" at {self._env[ENDPOINT_ENV]}" if self._env.get(ENDPOINT_ENV) else ""
        retry = gretry.Retry(
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable, gexc.InternalServerError, gexc.TooManyRequests
            ),
            initial=0.5,
            maximum=4.0,
            timeout=self._timeout,
        )
        try:
            response = self._client.access_secret_version(
                name=name, retry=retry, timeout=self._timeout
            )
        except gexc.NotFound:
            raise CredentialError(
                f"secret {name} not found (or has no enabled version){where}"
            ) from None
        except (gexc.PermissionDenied, gexc.Forbidden):
            raise CredentialError(
                f"permission denied reading secret {name}{where}: the service account needs "
                "roles/secretmanager.secretAccessor on it"
            ) from None
        except (gexc.Unauthenticated, gexc.Unauthorized, auth_exc.GoogleAuthError) as err:
            raise CredentialError(
                f"cannot authenticate to Secret Manager reading {name}{where}: {type(err).__name__}"
            ) from None
        except (
            rexc.RequestException,
            gexc.RetryError,
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
        ) as err:
            error = CredentialError(
                f"Secret Manager unreachable reading {name}{where}: {type(err).__name__}"
            )
            error.temporary = True
            raise error from None
        except gexc.GoogleAPICallError as err:
            raise CredentialError(
                f"Secret Manager refused to read {name}{where}: HTTP {err.code} "
                f"{type(err).__name__}"
            ) from None
        data: bytes = response.payload.data
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CredentialError(f"secret {name} is not UTF-8 text") from None
        if value.endswith("\n"):
            value = value[:-2] if value.endswith("\r\n") else value[:-1]
        if not value:
            raise CredentialError(f"secret {name} is empty")
        _log.debug("read secret %s (version %s)", name, response.name.rsplit("/", 1)[-1])
        return value
