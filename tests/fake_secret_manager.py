"""A local stand-in for Google Secret Manager's REST API, enough for the real client library.

It answers `GET /v1/projects/P/secrets/S/versions/V:access` the way the real service does
(`{"name": ..., "payload": {"data": BASE64, "dataCrc32c": "..."}}`), a Google-style JSON error
with 404 for unknown secrets or versions and 403 for secrets marked forbidden, and records every
request. Loopback only; stdlib only.

In tests:

    with FakeSecretManager({"quay-password": "s3cret"}, project="demo") as fake:
        env = {"SECRET_MANAGER_ENDPOINT": fake.endpoint, "GOOGLE_CLOUD_PROJECT": "demo"}

As a script (for a demo):

    python -m tests.fake_secret_manager --port 8085 --project demo --secret quay-password=s3cret
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["FakeSecretManager", "RecordedRequest", "crc32c", "json_handler", "main"]

_ACCESS_PATH = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)/versions/(?P<version>[^/:]+):access"
)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Secret Manager reports as `dataCrc32c`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: Mapping[str, str]


class FakeSecretManager:
    """A threaded HTTP server on a free loopback port that serves secrets.

    `secrets` maps a secret to its value: the key is a short name `S` (in `project`) or
    `projects/P/secrets/S`. Each secret has one version, `1`, also reachable as `latest`;
    `add_version` adds more. Secrets in `forbidden` (same key forms) answer 403.
    """

    def __init__(
        self,
        secrets: Mapping[str, str | bytes] | None = None,
        *,
        project: str = "test-project",
        forbidden: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.project = project
        self._lock = threading.Lock()
        self._versions: dict[str, list[bytes]] = {}
        self._forbidden = {self._key(name) for name in forbidden}
        self._requests: list[RecordedRequest] = []
        for name, value in (secrets or {}).items():
            self.add_version(name, value)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def _key(self, name: str) -> str:
        return name if name.startswith("projects/") else f"projects/{self.project}/secrets/{name}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """What goes in SECRET_MANAGER_ENDPOINT, e.g. `http://127.0.0.1:40123`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def access_count(self, name: str) -> int:
        """How many `:access` calls named this secret (short or `projects/P/secrets/S`)."""
        prefix = f"/v1/{self._key(name)}/versions/"
        return sum(1 for r in self.requests if r.path.startswith(prefix))

    def add_version(self, name: str, value: str | bytes) -> int:
        """Adds a version to a secret (creating it) and returns the new version number."""
        data = value.encode() if isinstance(value, str) else value
        with self._lock:
            versions = self._versions.setdefault(self._key(name), [])
            versions.append(data)
            return len(versions)

    def forbid(self, name: str) -> None:
        with self._lock:
            self._forbidden.add(self._key(name))

    def start(self) -> FakeSecretManager:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-secret-manager",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serves in this thread until interrupted (for the script)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> FakeSecretManager:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _answer(self, method: str, raw_path: str) -> tuple[int, dict[str, object]]:
        path = unquote(urlsplit(raw_path).path)
        m = _ACCESS_PATH.fullmatch(path)
        if method != "GET" or m is None:
            return _error(HTTPStatus.NOT_FOUND, f"no such method: {method} {path}")
        key = f"projects/{m['project']}/secrets/{m['secret']}"
        version = m["version"]
        with self._lock:
            forbidden = key in self._forbidden
            versions = list(self._versions.get(key, ()))
        if forbidden:
            return _error(
                HTTPStatus.FORBIDDEN,
                f"Permission 'secretmanager.versions.access' denied for resource "
                f"'{key}/versions/{version}' (or it may not exist).",
            )
        if version == "latest" and versions:
            number = len(versions)
        elif version.isdigit() and 0 < int(version) <= len(versions):
            number = int(version)
        else:
            if not versions:
                return _error(HTTPStatus.NOT_FOUND, f"Secret [{key}] not found or has no versions.")
            return _error(
                HTTPStatus.NOT_FOUND, f"Secret Version [{key}/versions/{version}] not found."
            )
        data = versions[number - 1]
        return HTTPStatus.OK, {
            "name": f"{key}/versions/{number}",
            "payload": {
                "data": base64.b64encode(data).decode("ascii"),
                # int64 fields are strings in proto3 JSON.
                "dataCrc32c": str(crc32c(data)),
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        def answer(
            method: str, path: str, headers: Mapping[str, str], body: bytes
        ) -> tuple[int, dict[str, object]]:
            with self._lock:
                self._requests.append(RecordedRequest(method, path, dict(headers)))
            return self._answer(method, path)

        return json_handler(answer)


JsonAnswer = Callable[[str, str, Mapping[str, str], bytes], tuple[int, dict[str, object]]]


def json_handler(answer: JsonAnswer) -> type[BaseHTTPRequestHandler]:
    """A request handler for a local Google-API-like server: GET and POST go to `answer`
    (method, path, headers, body), whose status and JSON object are sent back."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, reply = answer(self.command, self.path, dict(self.headers.items()), body)
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _error(status: HTTPStatus, message: str) -> tuple[int, dict[str, object]]:
    google_status = {
        HTTPStatus.NOT_FOUND: "NOT_FOUND",
        HTTPStatus.FORBIDDEN: "PERMISSION_DENIED",
    }.get(status, "UNKNOWN")
    return status, {"error": {"code": int(status), "message": message, "status": google_status}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--project", default="test-project")
    parser.add_argument(
        "--secret", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    parser.add_argument("--forbid", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    secrets: dict[str, str | bytes] = {}
    for item in args.secret:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--secret wants NAME=VALUE, got {name!r}")
        secrets[name] = value
    fake = FakeSecretManager(secrets, project=args.project, forbidden=args.forbid, port=args.port)
    print(
        f"fake Secret Manager at {fake.endpoint} (project {args.project}); Ctrl-C stops it",
        flush=True,
    )
    print(
        f"  export SECRET_MANAGER_ENDPOINT={fake.endpoint} GOOGLE_CLOUD_PROJECT={args.project}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        fake.serve_forever()


if __name__ == "__main__":
    main()
