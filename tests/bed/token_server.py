"""A Bearer token server for the test bed: issues RS256 JWTs that Distribution 2.8 accepts.

It owns the signing key and certificate (one per test session), the accounts and what they may
do, and a log of every token request. It knows nothing about the registry it serves beyond the
`service` name that becomes the token audience.

Flavours mimic the two registries image-sync talks to:
- "hub" (Docker Hub): anonymous may pull anything; the reply carries `token`, `access_token`,
  `expires_in` and `issued_at`.
- "quay" (Quay): anonymous gets an empty access list (the registry then answers 401); the reply
  carries only `token` and no `expires_in`, although the token lives for `lifetime` seconds.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "ISSUER",
    "Flavour",
    "SigningMaterial",
    "TokenRequest",
    "TokenServer",
    "parse_scope",
    "signing_material",
]

Flavour = Literal["hub", "quay"]

ISSUER = "bed-token-server"
_USER_ACTIONS: frozenset[str] = frozenset({"pull", "push"})


@dataclass(frozen=True)
class SigningMaterial:
    """The RSA key that signs tokens and the self-signed certificate that vouches for it."""

    private_key_pem: bytes
    certificate_pem: bytes
    certificate_der_b64: str  # the single `x5c` entry: standard base64 of the DER certificate


@functools.cache
def signing_material() -> SigningMaterial:
    """Generate the key and certificate once per process (RSA generation is the slow part)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image-sync test bed token issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SigningMaterial(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        certificate_der_b64=base64.b64encode(
            cert.public_bytes(serialization.Encoding.DER)
        ).decode(),
    )


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server saw."""

    time: float  # time.monotonic() when it arrived
    method: str  # "GET", or "POST" (refused with 405)
    username: str | None  # from Basic credentials; None for anonymous
    service: str | None
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...]  # "type:name:a,b" for every scope with at least one action
    status: int  # what the server answered


@dataclass(frozen=True)
class _Account:
    password: str
    actions: frozenset[str]


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Split `type:name:actions` (the name may itself hold ':'); None if malformed."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return kind, name, tuple(a for a in actions.split(",") if a)


class TokenServer:
    """A threaded HTTP token endpoint on a free loopback port (`GET /token`)."""

    def __init__(
        self,
        *,
        service: str,
        flavour: Flavour = "hub",
        lifetime: float = 300.0,
        issuer: str = ISSUER,
    ) -> None:
        self.service = service
        self.flavour: Flavour = flavour
        self.lifetime = lifetime  # seconds; may be changed by tests at any time
        self.issuer = issuer
        # Docker Hub lets anybody pull public images; Quay's private repos need credentials.
        self.anonymous_actions: frozenset[str] = (
            frozenset({"pull"}) if flavour == "hub" else frozenset()
        )
        self._accounts: dict[str, _Account] = {}
        self._log: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._material = signing_material()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TokenServer:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        if self._httpd is not None:
            return self
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"token-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("token server is not running")
        return int(self._httpd.server_address[1])

    @property
    def realm(self) -> str:
        """The URL registries put in their Bearer challenge."""
        return f"http://127.0.0.1:{self.port}/token"

    # -- accounts ----------------------------------------------------------------------------

    def add_user(
        self, username: str, password: str, actions: Iterable[str] = _USER_ACTIONS
    ) -> None:
        """Let `username` have `actions` on every repository (pull+push by default)."""
        with self._lock:
            self._accounts[username] = _Account(password, frozenset(actions))

    def remove_user(self, username: str) -> None:
        with self._lock:
            self._accounts.pop(username, None)

    # -- request log -------------------------------------------------------------------------

    def requests(self) -> list[TokenRequest]:
        """Every request seen since the last clear, oldest first."""
        with self._lock:
            return list(self._log)

    def fetches(self) -> list[TokenRequest]:
        """Only the successful token fetches (GET answered 200)."""
        return [r for r in self.requests() if r.method == "GET" and r.status == 200]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self._log.append(entry)

    # -- tokens ------------------------------------------------------------------------------

    def mint(
        self,
        access: Sequence[Mapping[str, object]],
        *,
        subject: str = "bed-admin",
        lifetime: float | None = None,
    ) -> str:
        """Sign a token with exactly `access` (list of {type, name, actions}); not logged."""
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,  # Distribution 2.8 wants a plain string, not a list
            "exp": now + int(self.lifetime if lifetime is None else lifetime),
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [dict(a) for a in access],
        }
        return jwt.encode(
            claims,
            self._material.private_key_pem,
            algorithm="RS256",
            headers={"x5c": [self._material.certificate_der_b64]},
        )

    def _grant(
        self, username: str | None, scopes: Sequence[str]
    ) -> tuple[list[dict[str, object]], tuple[str, ...]]:
        with self._lock:
            if username is None:
                allowed = self.anonymous_actions
            else:
                account = self._accounts.get(username)
                allowed = account.actions if account is not None else frozenset()
        access: list[dict[str, object]] = []
        granted: list[str] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            if kind != "repository":
                continue
            # Scopes are silently reduced, as on Docker Hub and Quay: a 200 proves nothing.
            ok = [a for a in actions if a in allowed]
            if ok:
                access.append({"type": kind, "name": name, "actions": ok})
                granted.append(f"{kind}:{name}:{','.join(ok)}")
        return access, tuple(granted)

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(credentials acceptable, username); no header means anonymous."""
        if header is None:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False, None
        username, sep, password = decoded.partition(":")
        if not sep:
            return False, None
        with self._lock:
            account = self._accounts.get(username)
        if account is None or account.password != password:
            return False, username
        return True, username

    def _handle_get(self, path: str, authorization: str | None) -> tuple[int, dict[str, object]]:
        url = urlsplit(path)
        query = parse_qs(url.query, keep_blank_values=True)
        service = query.get("service", [None])[0]
        scopes = tuple(query.get("scope", []))
        ok, username = self._authenticate(authorization)
        body: dict[str, object]
        granted: tuple[str, ...]
        if url.path != "/token":
            status, body, granted = 404, {"error": "not found"}, ()
        elif not ok:
            status, body, granted = 401, {"details": "incorrect username or password"}, ()
        else:
            access, granted = self._grant(username, scopes)
            token = self.mint(access, subject=username or "")
            body = {"token": token}
            if self.flavour == "hub":
                body["access_token"] = token
                body["expires_in"] = int(self.lifetime)
                body["issued_at"] = datetime.datetime.now(datetime.UTC).isoformat()
            status = 200
        self._record(
            TokenRequest(
                time=time.monotonic(),
                method="GET",
                username=username,
                service=service,
                scopes_requested=scopes,
                scopes_granted=granted,
                status=status,
            )
        )
        return status, body


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at stop()

        def do_GET(self) -> None:
            status, body = server._handle_get(self.path, self.headers.get("Authorization"))
            extra = {"WWW-Authenticate": 'Basic realm="bed"'} if status == 401 else {}
            self._reply(status, body, extra)

        def do_POST(self) -> None:
            # Quay does not take the OAuth2 POST form; neither do we.
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            server._record(
                TokenRequest(
                    time=time.monotonic(),
                    method="POST",
                    username=None,
                    service=None,
                    scopes_requested=(),
                    scopes_granted=(),
                    status=405,
                )
            )
            self._reply(405, {"error": "method not allowed"}, {"Allow": "GET"})

        def _reply(self, status: int, body: Mapping[str, object], extra: Mapping[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request log above is the record; keep test output quiet

    return Handler
