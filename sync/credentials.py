"""Finding the credentials for a registry: the config's REFs, then the Docker config, then none.

The Docker config is read as Docker, crane and skopeo read it: `credHelpers` (a helper per
registry) first, then `credsStore` (one helper for all), then `auths`. A helper is the program
`docker-credential-NAME`, run as `docker-credential-NAME get` with the registry on stdin; it
answers `{"ServerURL", "Username", "Secret"}` in JSON. Keys may spell a registry as `host`,
`https://host` or `https://host/v1/`; Docker Hub's (`docker.io`, `index.docker.io`,
`registry-1.docker.io`, `https://index.docker.io/v1/`) all mean Docker Hub.

A CredentialResolver is the CredentialProvider the registry client calls when a registry asks
for credentials. It resolves lazily, once per registry, and never puts a credential value in an
exception, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sync.config import Config, CredentialRef, RegistrySettings
from sync.errors import CredentialError
from sync.login import Credentials
from sync.reference import DOCKER_HUB_API_HOST, api_host
from sync.secrets import PROJECT_ENV, SecretManagerReader, SecretReader, secret_version_name

__all__ = ["CredentialResolver", "docker_config_path"]

_log = logging.getLogger(__name__)

#: The `auths` key `docker login` writes for Docker Hub (and what its helpers are asked for).
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HELPER_PREFIX = "docker-credential-"
_HELPER_TIMEOUT = 30.0
#: What helpers print when they hold nothing for a registry (docker-credential-helpers).
_NOT_FOUND = "credentials not found"


def docker_config_path(env: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (Docker's own lookup)."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".docker" / "config.json"


def _registry_of_auths_key(key: str) -> str:
    """The API host an `auths` key means: keys may be `host`, `https://host`, `http://host`,
    or `https://host/v1/`; Docker Hub's is `https://index.docker.io/v1/`."""
    text = key.strip()
    if "://" in text:
        parts = urlsplit(text)
        text = parts.netloc
    else:
        text = text.split("/", 1)[0]
    return api_host(text.lower())


class CredentialResolver:
    """A CredentialProvider: API host → Credentials, or None for anonymous.

    Order: the config's `registries` entry for the host (`env:NAME` from `env`, `secret:...`
    through `secret_reader`, a SecretManagerReader by default, built only when first needed),
    then the Docker config file's `auths`, then None. Each host is resolved on its first call
    and cached (failures that may pass, like an unreachable Secret Manager, are not cached).
    Safe to call from several threads.
    """

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str] = os.environ,
        secret_reader: SecretReader | None = None,
        docker_config: Path | None = None,
    ) -> None:
        self._config = config
        self._env = env
        self._secret_reader = secret_reader
        self._owns_reader = secret_reader is None
        self._docker_config = docker_config
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._cache: dict[str, Credentials | None] = {}
        self._failures: dict[str, CredentialError] = {}
        self._docker: _DockerConfig | None = None

    def __repr__(self) -> str:
        with self._lock:
            hosts = sorted(self._cache)
        return f"CredentialResolver(resolved={hosts})"

    def __call__(self, host: str) -> Credentials | None:
        key = api_host(host.lower())
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            host_lock = self._host_locks.setdefault(key, threading.Lock())
        with host_lock:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
                if key in self._failures:
                    raise self._failures[key]
            try:
                credentials = self._resolve(key)
            except CredentialError as err:
                if not err.temporary:
                    with self._lock:
                        self._failures[key] = err
                raise
            with self._lock:
                self._cache[key] = credentials
            return credentials

    def close(self) -> None:
        """Closes the Secret Manager reader this resolver built (not an injected one)."""
        with self._lock:
            reader, self._secret_reader = self._secret_reader, None
            owned = self._owns_reader
        if owned and isinstance(reader, SecretManagerReader):
            reader.close()

    def _resolve(self, host: str) -> Credentials | None:
        settings = self._config.registry_settings(host)
        if settings is not None and settings.has_credentials:
            return self._from_config(host, settings)
        found = self._from_docker_config(host)
        if found is not None:
            return found
        _log.debug("no credentials for %s: anonymous", host)
        return None

    def _from_config(self, host: str, settings: RegistrySettings) -> Credentials:
        user_ref, password_ref = settings.username_ref, settings.password_ref
        assert user_ref is not None and password_ref is not None  # has_credentials
        username = self._read(host, "username", user_ref)
        password = self._read(host, "password", password_ref)
        _log.debug("credentials for %s from the config (%s, %s)", host, user_ref, password_ref)
        return Credentials(username=username, password=password)

    def _read(self, host: str, what: str, ref: CredentialRef) -> str:
        context = f"{what} for {host} ({ref})"
        if ref.kind == "env":
            value = self._env.get(ref.name)
            if value is None:
                raise CredentialError(f"{context}: environment variable {ref.name} is not set")
            if not value:
                raise CredentialError(f"{context}: environment variable {ref.name} is empty")
            return value
        try:
            name = secret_version_name(ref.name, self._env.get(PROJECT_ENV))
            return self._reader().read(name)
        except CredentialError as err:
            error = CredentialError(f"{context}: {err}")
            error.temporary = err.temporary
            raise error from None

    def _reader(self) -> SecretReader:
        with self._lock:
            if self._secret_reader is None:
                self._secret_reader = SecretManagerReader(env=self._env)
            return self._secret_reader

    def _from_docker_config(self, host: str) -> Credentials | None:
        with self._lock:
            docker = self._docker
        if docker is None:
            docker = self._load_docker_config()
            with self._lock:
                self._docker = docker
        helper = docker.helpers.get(host, docker.store)
        if helper is not None:
            found = _run_helper(docker.path, helper, host, self._env)
            if found is not None:
                _log.debug("credentials for %s from docker-credential-%s", host, helper)
                return found
        found = docker.auths.get(host)
        if found is not None:
            _log.debug("credentials for %s from the Docker config", host)
        return found

    def _load_docker_config(self) -> _DockerConfig:
        path = self._docker_config or docker_config_path(self._env)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _DockerConfig(path)
        except (OSError, UnicodeDecodeError) as err:
            raise CredentialError(
                f"Docker config {path}: cannot read: {getattr(err, 'strerror', None) or err}"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            # The decoder's message says where, never what (no content in it).
            raise CredentialError(
                f"Docker config {path}: invalid JSON at line {err.lineno} column {err.colno}"
            ) from None
        if not isinstance(data, dict):
            return _DockerConfig(path)
        store = data.get("credsStore")
        if store is not None and not isinstance(store, str):
            raise CredentialError(f'Docker config {path}: "credsStore" is not a string')
        helpers = data.get("credHelpers") or {}
        if not isinstance(helpers, dict):
            raise CredentialError(f'Docker config {path}: "credHelpers" is not an object')
        return _DockerConfig(
            path,
            auths=_auths(path, data.get("auths")),
            store=store or None,
            helpers={
                _registry_of_auths_key(key): name
                for key, name in helpers.items()
                if isinstance(key, str) and isinstance(name, str) and name
            },
        )


class _DockerConfig:
    """What the Docker config file says about credentials, by API host."""

    def __init__(
        self,
        path: Path,
        *,
        auths: dict[str, Credentials] | None = None,
        store: str | None = None,
        helpers: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.auths = auths or {}
        self.store = store
        self.helpers = helpers or {}


def _auths(path: Path, auths: object) -> dict[str, Credentials]:
    """The `auths` entries with usable credentials, by API host."""
    if auths is None:
        return {}
    if not isinstance(auths, dict):
        raise CredentialError(f'Docker config {path}: "auths" is not an object')
    out: dict[str, Credentials] = {}
    ranks: dict[str, int] = {}
    for key, entry in auths.items():
        if not isinstance(key, str) or not isinstance(entry, dict):
            continue
        credentials = _docker_entry(path, key, entry)
        if credentials is None:
            # e.g. `{}` left by a credsStore, or only an `identitytoken`: not usable here.
            continue
        host = _registry_of_auths_key(key)
        # Several keys may mean one registry (`quay.io`, `https://quay.io`): the key Docker
        # itself writes wins (the bare host; for Docker Hub `https://index.docker.io/v1/`),
        # else the first in the file.
        rank = 0 if key.strip().lower() in (host, _DOCKER_HUB_KEY) else 1
        if rank < ranks.get(host, 2):
            out[host], ranks[host] = credentials, rank
    return out


def _run_helper(config: Path, helper: str, host: str, env: Mapping[str, str]) -> Credentials | None:
    """`docker-credential-HELPER get` for `host`: its credentials, None when it has none."""
    program = _HELPER_PREFIX + helper
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise CredentialError(
            f"Docker config {config} names the credential helper {helper!r}, but "
            f"{program} is not on the PATH: install it, or remove it from the Docker config"
        )
    server = _DOCKER_HUB_KEY if host == DOCKER_HUB_API_HOST else host
    try:
        done = subprocess.run(
            [found, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            env=dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired:
        error = CredentialError(f"{program} get {server}: no answer in {_HELPER_TIMEOUT:.0f}s")
        error.temporary = True
        raise error from None
    except OSError as err:
        raise CredentialError(f"{program}: cannot run: {err.strerror or err}") from None
    if done.returncode != 0:
        # Helpers print their reason on stdout (docker-credential-helpers) or stderr; it names
        # no secret. "credentials not found" means: nothing stored for this registry.
        reason = " ".join((done.stdout.strip() or done.stderr.strip()).split())[:200]
        if _NOT_FOUND in reason.lower():
            return None
        raise CredentialError(
            f"{program} get {server} failed (exit {done.returncode}): {reason or 'no reason'}"
        )
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise CredentialError(f"{program} get {server}: answer is not JSON") from None
    username = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        raise CredentialError(f"{program} get {server}: answer has no Username and Secret")
    if username == "<token>":
        # An identity token (OAuth refresh token) is not a password: not usable here.
        _log.debug("%s holds an identity token for %s: not used", program, server)
        return None
    return Credentials(username=username, password=secret)


def _docker_entry(path: Path, key: str, entry: Mapping[str, object]) -> Credentials | None:
    """Credentials of one `auths` entry: `auth` (base64 of `user:password`) or
    `username`/`password`; None when it has neither."""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise CredentialError(
                f"Docker config {path}: auths[{key!r}].auth is not base64 of user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise CredentialError(
                f"Docker config {path}: auths[{key!r}].auth is not base64 of user:password"
            )
        return Credentials(username=username, password=password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(secret, str):
        return Credentials(username=user, password=secret)
    return None
