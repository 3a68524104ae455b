"""Registry authentication: the challenge flow (Basic, Bearer); credentials are `sync.login`'s.

The flow follows the distribution token spec: `GET /v2/` answers 200 (no auth) or 401 with a
`WWW-Authenticate` challenge; a Basic challenge means credentials on every request to that host;
a Bearer challenge names a token realm, asked with GET (Quay refuses the OAuth2 POST form), one
`scope` parameter per scope, Basic credentials when we have them. Tokens are cached per
(realm, service, scopes) until shortly before they expire.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.request import parse_http_list, parse_keqv_list

import httpx

from sync.errors import (
    AUTH_UNSUPPORTED,
    TOKEN_INVALID,
    TOKEN_REALM_INVALID,
    TOKEN_REALM_REFUSED,
    UNAUTHORIZED,
    AuthenticationError,
    RegistryError,
    redact_url,
)
from sync.login import CredentialProvider, Credentials
from sync.retry import HostHealth, RetryPolicy, send_with_retry

__all__ = [
    "Authenticator",
    "Challenge",
    "parse_challenge",
    "parse_challenges",
    "pull_scope",
    "push_scope",
]

#: Token lifetime when the token endpoint does not say (the token spec's default). Quay omits
#: `expires_in` though its tokens live an hour; 60 s only costs a few extra token requests.
DEFAULT_TOKEN_SECONDS = 60
#: Refresh a token this long before it expires.
TOKEN_MARGIN_SECONDS = 10


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        scope = self.params.get("scope")
        return tuple(scope.split(" ")) if scope else ()


def parse_challenges(header: str | None) -> list[Challenge]:
    """Every challenge in a `WWW-Authenticate` value, in order.

    A response may carry several headers (httpx joins them with ", ") or several challenges in
    one: `Basic realm="r", Bearer realm="https://auth",service="s",scope="a:b:pull,push"`.
    `parse_http_list` splits on the commas outside quotes (and undoes backslash escapes); an
    item whose first word is followed by a space (or stands alone) starts a new challenge,
    and the `key=value` items after it are its parameters (`parse_keqv_list` unquotes them).
    """
    if not header:
        return []
    challenges: list[tuple[str, list[str]]] = []
    for raw in parse_http_list(header):
        item = raw.strip()
        if not item:
            continue
        name, eq, _ = item.partition("=")
        if eq and " " not in name.strip():
            if challenges:  # a parameter of the challenge before it
                challenges[-1][1].append(item)
            continue
        scheme, _, first = item.partition(" ")
        challenges.append((scheme, [first.strip()] if first.strip() else []))
    out = []
    for scheme, items in challenges:
        pairs = [p.strip() for p in items if "=" in p]
        params = {
            key.strip().lower(): value
            for key, value in parse_keqv_list([_unspace(p) for p in pairs]).items()
        }
        out.append(Challenge(scheme.lower(), params))
    return out


def _unspace(item: str) -> str:
    """`key = "value"` as `key="value"` (parse_keqv_list splits at the first '=')."""
    key, _, value = item.partition("=")
    return f"{key.strip()}={value.strip()}"


def parse_challenge(header: str | None) -> Challenge | None:
    """The challenge to answer: Bearer when offered (a token), else Basic, else the first."""
    challenges = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return challenges[0] if challenges else None


def _is_private_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host == "localhost"
    return address.is_private or address.is_loopback or address.is_link_local


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class Authenticator:
    """Authorization headers for one registry host, learnt from its challenges.

    `authorization(scopes)` gives the header for a request needing those scopes (None for an
    anonymous registry); `learn(response_header)` takes the challenge of a 401 and says whether
    a retry with a fresh header may succeed.
    """

    def __init__(
        self,
        host: str,
        http: httpx.AsyncClient,
        *,
        secure: bool,
        credentials: CredentialProvider | None,
        policy: RetryPolicy,
        health: HostHealth | None = None,
    ) -> None:
        self.host = host
        self._http = http
        self._secure = secure
        self._provider = credentials
        self._policy = policy
        self._health = health
        self._challenge: Challenge | None = None
        self._pinged = False
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._lock = asyncio.Lock()
        self._credentials_lock = asyncio.Lock()
        self._token_locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._tokens: dict[tuple[str, ...], _Token] = {}
        #: Whether the token service issued a token for the configured credentials.
        self.credentials_accepted = False

    @property
    def scheme(self) -> str | None:
        """`None` before the first ping, `""` for an anonymous registry, else the scheme."""
        if not self._pinged:
            return None
        return self._challenge.scheme if self._challenge else ""

    async def ping(self) -> None:
        """`GET /v2/` once per host to learn how it wants to be authenticated."""
        if self._pinged:
            return
        async with self._lock:
            if self._pinged:
                return
            url = f"{'https' if self._secure else 'http'}://{self.host}/v2/"
            reply = await send_with_retry(
                self._http, "GET", url, policy=self._policy, health=self._health
            )
            if reply.status == 401:
                self._challenge = parse_challenge(reply.headers.get("www-authenticate"))
                if self._challenge is None:
                    raise RegistryError(
                        "401 without a WWW-Authenticate challenge",
                        status=401,
                        method="GET",
                        url=url,
                    )
            elif reply.status != 200:
                raise RegistryError(
                    "registry API not available at /v2/",
                    status=reply.status,
                    method="GET",
                    url=url,
                )
            self._pinged = True

    def service_hosts(self) -> list[str]:
        """The host of the token service this registry sent us to, if any (`host:port`)."""
        if self._challenge is None or self._challenge.scheme != "bearer":
            return []
        try:
            return [httpx.URL(self._challenge.realm).netloc.decode("ascii")]
        except httpx.InvalidURL:
            return []

    @property
    def has_credentials(self) -> bool:
        """Whether credentials were found for this host (False until first looked up)."""
        return self._credentials is not None

    async def credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            async with self._credentials_lock:
                if not self._credentials_loaded and self._provider is not None:
                    self._credentials = await asyncio.to_thread(self._provider, self.host)
                self._credentials_loaded = True
        return self._credentials

    async def authorization(self, scopes: Iterable[str]) -> str | None:
        await self.ping()
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = await self.credentials()
            return creds.basic_header() if creds else None
        if challenge.scheme == "bearer":
            token = await self._token(challenge, tuple(sorted(set(scopes))))
            return f"Bearer {token}" if token else None
        raise RegistryError(
            f"unsupported authentication scheme {challenge.scheme!r}", kind=AUTH_UNSUPPORTED
        )

    def learn(self, header: str | None, scopes: Iterable[str], used: str | None) -> bool:
        """Take the challenge of a 401 to a request sent with authorization `used`. True when
        a retry with a new header may help: the scheme or realm changed, or (Bearer) the token
        that was refused is dropped, or was already replaced by a concurrent request."""
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in {"basic", "bearer"}:
            return False
        old = self._challenge
        self._pinged = True
        if old is None or old.scheme != challenge.scheme or old.realm != challenge.realm:
            self._challenge = challenge
            return True
        if challenge.scheme != "bearer":
            return False  # the same Basic credentials would be refused again
        key = self._key(challenge, tuple(sorted(set(scopes))))
        cached = self._tokens.get(key)
        if cached is not None and used == f"Bearer {cached.value}":
            del self._tokens[key]
        return True

    @staticmethod
    def _key(challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, ...]:
        return (challenge.realm, challenge.service or "", *scopes)

    async def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str | None:
        key = self._key(challenge, scopes)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached and cached.expires_at > time.monotonic():
                return cached.value
            token = await self._fetch_token(challenge, scopes)
            self._tokens[key] = token
            return token.value

    def _check_realm(self, realm: str) -> httpx.URL:
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            raise RegistryError(
                f"{self.host}: invalid token realm {redact_url(realm)!r}",
                kind=TOKEN_REALM_INVALID,
            ) from None
        if url.scheme not in {"http", "https"} or not url.host:
            raise RegistryError(
                f"{self.host}: invalid token realm {redact_url(realm)!r}",
                kind=TOKEN_REALM_INVALID,
            )
        registry_host = httpx.URL(f"https://{self.host}/").host
        if self._secure and url.scheme != "https":
            raise RegistryError(
                f"{self.host}: refusing token realm {redact_url(realm)} over plain HTTP "
                "for a registry reached over TLS",
                kind=TOKEN_REALM_REFUSED,
            )
        if self._secure and _is_private_host(url.host) and not _is_private_host(registry_host):
            raise RegistryError(
                f"{self.host}: refusing token realm {redact_url(realm)} on a private address",
                kind=TOKEN_REALM_REFUSED,
            )
        return url

    async def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        url = self._check_realm(challenge.realm)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params += [("scope", scope) for scope in scopes]
        url = url.copy_merge_params(httpx.QueryParams(params))
        headers = {}
        creds = await self.credentials()
        if creds:
            headers["Authorization"] = creds.basic_header()
        reply = await send_with_retry(
            self._http, "GET", url, headers=headers, policy=self._policy, health=self._health
        )
        where = redact_url(str(url))
        if reply.status in {401, 403}:
            who = "with the configured credentials" if creds else "anonymously"
            raise AuthenticationError(
                f"token request {who} refused: wrong credentials?",
                status=reply.status,
                method="GET",
                url=str(url),
                codes=(UNAUTHORIZED,),
            )
        if reply.status != 200:
            raise RegistryError(
                "token endpoint failed",
                status=reply.status,
                method="GET",
                url=str(url),
                temporary=self._policy.retryable_status(reply.status),
            )
        try:
            doc = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            raise RegistryError(
                f"token endpoint {where} answered something that is not JSON", kind=TOKEN_INVALID
            )
        value = doc.get("token") or doc.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryError(
                f"token endpoint {where} answered without a token", kind=TOKEN_INVALID
            )
        expires_in = doc.get("expires_in")
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            expires_in = DEFAULT_TOKEN_SECONDS
        lifetime = max(float(expires_in) - TOKEN_MARGIN_SECONDS, float(expires_in) / 2, 1.0)
        if creds:
            self.credentials_accepted = True
        return _Token(value, time.monotonic() + lifetime)
