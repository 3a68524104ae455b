"""Real CNCF Distribution registries for tests: start, watch, stop.

Owns the registry subprocesses (Debian's `docker-registry`, Distribution 2.8), their config,
credentials and access logs. It knows nothing about images or about the code under test.

Auth modes:
- "anonymous": no auth at all.
- "basic": htpasswd with one user that may pull and push.
- "bearer-hub": `auth: token`, Docker-Hub-like: anonymous may pull everything, the user may push.
- "bearer-quay": `auth: token`, Quay-like: a robot (`sail-dev+robot`) must authenticate to pull or
  push; anonymous gets an empty access list, so the registry answers 401.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, get_args

import bcrypt

from tests.bed.token_server import Flavour, TokenServer, signing_material

__all__ = [
    "AUTH_MODES",
    "REGISTRY_BINARY",
    "AuthMode",
    "RegistryFactory",
    "RegistryRequest",
    "RegistryServer",
    "RegistryStartError",
    "free_port",
    "start_registry",
    "started_registries",
]

AuthMode = Literal["anonymous", "basic", "bearer-hub", "bearer-quay"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)


def _find_registry_binary() -> str:
    """IMAGE_SYNC_TEST_REGISTRY, else `docker-registry` (Debian) or `registry` (upstream
    Distribution, Homebrew's `distribution`) on the PATH."""
    explicit = os.environ.get("IMAGE_SYNC_TEST_REGISTRY")
    if explicit:
        return explicit
    for name in ("docker-registry", "registry"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/docker-registry"


REGISTRY_BINARY = _find_registry_binary()

_CREDENTIALS: dict[AuthMode, tuple[str, str]] = {
    "basic": ("bed-user", "bed-password"),
    "bearer-hub": ("hub-user", "hub-password"),
    # Quay robot accounts are named org+robot.
    "bearer-quay": ("sail-dev+robot", "ROBOT-TOKEN-0123456789"),
}
# Go's x/crypto/bcrypt accepts Python bcrypt's $2b$ prefix; cost 5 keeps every request cheap.
_BCRYPT_COST = 5
_STARTUP_TIMEOUT = 15.0
_PORT_ATTEMPTS = 5
_FLUSH_MARK = "bed-flush="

# One line of the combined log format Distribution writes to stdout (gorilla/handlers):
# 127.0.0.1 - - [27/Nov/2026:19:39:10 +0000] "HEAD /v2/foo/manifests/x?a=b HTTP/1.1" 404 91 "" "ua"
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


class RegistryFactory(Protocol):
    """Starts a registry; everything it started is stopped when the test ends."""

    def __call__(
        self,
        auth: AuthMode = "anonymous",
        *,
        allow_foreign_layers: bool = False,
        token_lifetime: float = 300.0,
    ) -> RegistryServer: ...


class RegistryStartError(RuntimeError):
    """The registry process did not come up; the message carries the tail of its log."""


class RegistryRequest(NamedTuple):
    """One line of the registry's access log."""

    method: str
    path: str  # path with query, as the client sent it
    status: int


@dataclass(eq=False)
class RegistryServer:
    """A running Distribution registry on 127.0.0.1, and what it takes to talk to it."""

    host: str  # "127.0.0.1:PORT"
    url: str  # "http://127.0.0.1:PORT"
    auth: AuthMode
    username: str | None  # None for anonymous
    password: str | None
    token_server: TokenServer | None  # bearer modes only
    service: str | None  # the Bearer `service` (token audience); bearer modes only
    base_dir: Path  # config, logs and storage live under it
    storage_dir: Path
    access_log: Path  # stdout: one combined-log-format line per request
    server_log: Path  # stderr: Distribution's own (logrus) log
    process: subprocess.Popen[bytes] = field(repr=False)
    _owns_base_dir: bool = field(default=False, repr=False)
    _offset: int = field(default=0, repr=False)
    _flushes: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    @property
    def port(self) -> int:
        return int(self.host.rpartition(":")[2])

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def ref(self, repo: str, tag_or_digest: str) -> str:
        """An image reference on this registry: HOST/REPO:TAG or HOST/REPO@sha256:..."""
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate (then kill) the registry and its token server; safe to call twice."""
        _stop_process(self.process)
        _LIVE.pop(self.process.pid, None)
        if self.token_server is not None:
            self.token_server.stop()
        if self._owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- access log --------------------------------------------------------------------------

    def requests(self) -> list[RegistryRequest]:
        """Requests the registry answered since the last `clear_requests()`, oldest first.

        Distribution writes an access-log line after the handler returns, which can be just
        after the client has its response; so while the registry runs we send a marker request
        and wait until its line shows up (then a little longer) before reading.
        """
        self._flush()
        return [r for r in _parse_access_log(self._read_log()) if _FLUSH_MARK not in r.path]

    def clear_requests(self) -> None:
        """Forget every request seen so far (later `requests()` start after this point)."""
        self._flush()
        self._offset = self.access_log.stat().st_size

    def _read_log(self) -> str:
        with self.access_log.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        # Only complete lines: a line being written right now is not a request we can count.
        return data[: data.rfind(b"\n") + 1].decode("utf-8", "replace")

    def _flush(self) -> None:
        if not self.running:
            return
        mark = f"{_FLUSH_MARK}{next(self._flushes)}-{uuid.uuid4().hex[:8]}"
        _http_status(self.port, f"/v2/?{mark}")
        deadline = time.monotonic() + 5.0
        while mark not in self._read_log():
            if time.monotonic() > deadline or not self.running:
                raise RuntimeError(f"registry {self.host} did not log request {mark!r}")
            time.sleep(0.005)
        time.sleep(0.02)  # stragglers from goroutines that finished just before the marker


def _parse_access_log(text: str) -> list[RegistryRequest]:
    out: list[RegistryRequest] = []
    for line in text.splitlines():
        m = _ACCESS_LINE.search(line)
        if m is not None:
            out.append(RegistryRequest(m["method"], m["path"], int(m["status"])))
    return out


# -- process bookkeeping ---------------------------------------------------------------------

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    else:
        process.wait()


@atexit.register
def _stop_leftovers() -> None:
    """Last line of defence if a fixture never ran its teardown (e.g. KeyboardInterrupt)."""
    for pid, process in list(_LIVE.items()):
        with contextlib.suppress(Exception):
            _stop_process(process)
        _LIVE.pop(pid, None)


# -- starting ----------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_status(port: int, path: str, timeout: float = 2.0) -> int:
    """Status of a bare GET (no auth), via http.client: far cheaper than an httpx client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _clean_env() -> dict[str, str]:
    # REGISTRY_* variables override the config file in Distribution: keep the caller's out.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def _config(
    *,
    port: int,
    storage_dir: Path,
    auth: dict[str, object] | None,
    allow_foreign_layers: bool,
) -> dict[str, object]:
    config: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "image-sync-test-bed"},
    }
    if auth is not None:
        config["auth"] = auth
    if allow_foreign_layers:
        # Distribution refuses manifests with foreign-layer `urls` unless they are allowed.
        config["validation"] = {"manifests": {"urls": {"allow": ["^https?://"]}}}
    return config


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(process: subprocess.Popen[bytes], server_log: Path, port: int) -> bool:
    """True once this process listens and answers /v2/; False if it died of a taken port."""
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    # "listening on" is logged only after the bind succeeded: until then, whatever answers on
    # the port may be somebody else's registry.
    listening = f"listening on 127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "address already in use" in _tail(server_log):
                return False
            raise RegistryStartError(
                f"docker-registry exited with {process.returncode}:\n{_tail(server_log)}"
            )
        if listening in _tail(server_log, 50):
            with contextlib.suppress(OSError):
                # Marked like a flush, so requests() never reports it.
                if _http_status(port, f"/v2/?{_FLUSH_MARK}ready", timeout=1.0) in (200, 401):
                    return True
        time.sleep(0.01)
    _stop_process(process)
    raise RegistryStartError(f"docker-registry did not answer on :{port}:\n{_tail(server_log)}")


def start_registry(
    auth: AuthMode = "anonymous",
    *,
    base_dir: Path | None = None,
    allow_foreign_layers: bool = False,
    token_lifetime: float = 300.0,
) -> RegistryServer:
    """Start a registry in `auth` mode with storage under `base_dir` (a temp dir if None).

    The caller must `stop()` it. A temp dir made here is removed at `stop()`; a given
    `base_dir` is left alone (logs stay for post-mortems).
    """
    if auth not in AUTH_MODES:
        raise ValueError(f"unknown auth mode {auth!r}; expected one of {AUTH_MODES}")
    if not os.access(REGISTRY_BINARY, os.X_OK):
        raise RegistryStartError(
            f"{REGISTRY_BINARY} missing: apt-get install docker-registry "
            "(or put Distribution's `registry` on the PATH)"
        )
    owns = base_dir is None
    base = Path(tempfile.mkdtemp(prefix="bed-registry-")) if base_dir is None else base_dir
    base.mkdir(parents=True, exist_ok=True)
    storage_dir = base / "storage"
    storage_dir.mkdir(exist_ok=True)
    username, password = _CREDENTIALS.get(auth, (None, None))

    token_server: TokenServer | None = None
    service: str | None = None
    auth_config: dict[str, object] | None = None
    try:
        if auth == "basic":
            assert username is not None and password is not None
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=_BCRYPT_COST))
            htpasswd = base / "htpasswd"
            htpasswd.write_text(f"{username}:{hashed.decode()}\n")
            auth_config = {"htpasswd": {"realm": "bed-basic-realm", "path": str(htpasswd)}}
        elif auth in ("bearer-hub", "bearer-quay"):
            assert username is not None and password is not None
            # A unique service per registry: a token for one registry is refused by another.
            service = f"bed-registry-{uuid.uuid4().hex[:8]}"
            flavour: Flavour = "hub" if auth == "bearer-hub" else "quay"
            token_server = TokenServer(service=service, flavour=flavour, lifetime=token_lifetime)
            token_server.add_user(username, password)
            token_server.start()
            bundle = base / "token-cert.pem"
            bundle.write_bytes(signing_material().certificate_pem)
            auth_config = {
                "token": {
                    "realm": token_server.realm,
                    "service": service,
                    "issuer": token_server.issuer,
                    "rootcertbundle": str(bundle),
                }
            }

        access_log, server_log = base / "access.log", base / "registry.log"
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            config_path = base / "config.yml"  # JSON is valid YAML: no PyYAML needed
            config = _config(
                port=port,
                storage_dir=storage_dir,
                auth=auth_config,
                allow_foreign_layers=allow_foreign_layers,
            )
            config_path.write_text(json.dumps(config, indent=2))
            with access_log.open("ab") as out, server_log.open("wb") as err:
                process = subprocess.Popen(
                    [REGISTRY_BINARY, "serve", str(config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=_clean_env(),
                )
            _LIVE[process.pid] = process
            try:
                ready = _wait_ready(process, server_log, port)
            except BaseException:
                _stop_process(process)
                _LIVE.pop(process.pid, None)
                raise
            if not ready:
                _LIVE.pop(process.pid, None)
                continue
            return RegistryServer(
                host=f"127.0.0.1:{port}",
                url=f"http://127.0.0.1:{port}",
                auth=auth,
                username=username,
                password=password,
                token_server=token_server,
                service=service,
                base_dir=base,
                storage_dir=storage_dir,
                access_log=access_log,
                server_log=server_log,
                process=process,
                _owns_base_dir=owns,
            )
        raise RegistryStartError(f"no free port after {_PORT_ATTEMPTS} attempts")
    except BaseException:
        if token_server is not None:
            token_server.stop()
        if owns:
            shutil.rmtree(base, ignore_errors=True)
        raise


@contextlib.contextmanager
def started_registries(base_dir: Path) -> Iterator[RegistryFactory]:
    """A factory of registries under `base_dir`; every registry it started is stopped on the
    way out (for a test, or for a module that shares them)."""
    started: list[RegistryServer] = []

    def start(
        auth: AuthMode = "anonymous",
        *,
        allow_foreign_layers: bool = False,
        token_lifetime: float = 300.0,
    ) -> RegistryServer:
        server = start_registry(
            auth,
            base_dir=base_dir / f"registry-{len(started)}-{auth}",
            allow_foreign_layers=allow_foreign_layers,
            token_lifetime=token_lifetime,
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]
