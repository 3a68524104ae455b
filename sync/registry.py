"""The distribution HTTP API over httpx: ping, manifests, blobs, uploads, mounts, tags.

One `RegistryClient` per registry host; `Registries` hands them out by host with each host's
TLS setting and credentials. Every call states which statuses it accepts; anything else becomes
a RegistryError carrying status, method, redacted URL, the registry's error codes and whether a
retry may help. No config, no credential storage here: both come in as values and callables.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from sync.auth import Authenticator, pull_scope, push_scope
from sync.errors import (
    BLOB_READ_FAILED,
    MANIFEST_INVALID,
    REFERRERS_INVALID,
    TAG_LIST_INVALID,
    TIMEOUT,
    TOOMANYREQUESTS,
    UPLOAD_INVALID,
    AuthenticationError,
    ManifestError,
    RateLimit,
    RegistryError,
)
from sync.login import CredentialProvider
from sync.oci import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, OCI_INDEX, Descriptor, Manifest, is_digest
from sync.retry import (
    HostHealth,
    Reply,
    RetryPolicy,
    Timeouts,
    answered_plain_http,
    parse_retry_after,
    send_with_retry,
)

__all__ = [
    "MAX_CONNECTIONS",
    "BlobStream",
    "HostSettings",
    "ManifestInfo",
    "RateLimit",
    "Registries",
    "RegistryClient",
    "UploadSession",
    "probe_tls",
    "quay_absent",
    "resolve_location",
]

USER_AGENT = "image-sync/0.1 (+httpx)"
#: Blob bytes are hashed, counted and uploaded in pieces of at least this size (the last one of
#: a blob may be shorter). Every blob streaming at once holds about three such pieces (being
#: read, being sent, the last one held back): larger pieces save little CPU and cost memory.
BLOB_CHUNK = 128 * 1024

# httpcore asks the socket for at most 64 KiB per read, and anyio splits (copies) each larger
# piece asyncio received (up to 256 KiB per recv) to fit, so a blob costs a trip through anyio,
# httpcore and h11 per 64 KiB and extra copies. Reading up to BLOB_CHUNK at a time cuts the
# CPU a copy spends per byte by about a sixth. (A class attribute httpcore reads for every
# connection: the one setting it offers.)
httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = BLOB_CHUNK
TAG_PAGE_SIZE = 1000
MAX_TAG_PAGES = 1000
#: Connections per registry host, all kept alive between requests. A copy of a small
#: multi-platform image has a dozen requests in flight on the target at its busiest (blob
#: checks, upload sessions, uploads): 32 keep sixteen copies from queueing for connections over
#: a slow network. (`_Pool` hands them out at a cost that does not grow with their number.)
MAX_CONNECTIONS = 32
#: An idle connection older than this is closed instead of reused (httpx's default).
KEEPALIVE_SECONDS = 5.0


def resolve_location(request_url: httpx.URL, location: str, **params: str) -> httpx.URL:
    """An upload `Location` resolved against the request URL (it may be relative) with
    `params` appended to whatever query it already has: never rebuilt.

    The result is parsed once (an upload Location carries a long state token, and httpx
    checks every character of each URL it parses)."""
    if location.startswith(("http://", "https://")):
        url = location
    else:
        url = str(request_url.join(location) if location else request_url)
    if params:
        extra = "&".join(f"{key}={value}" for key, value in params.items())
        head, hash_mark, fragment = url.partition("#")
        separator = "" if head.endswith(("?", "&")) else "&" if "?" in head else "?"
        url = f"{head}{separator}{extra}{hash_mark}{fragment}"
    return httpx.URL(url)


def _error_codes_and_message(body: bytes) -> tuple[tuple[str, ...], str]:
    """Registry error bodies are `{"errors": [{"code", "message"}]}`, but proxies send plain
    text or HTML (Docker Hub's 429s among them): parse leniently."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        codes, messages = [], []
        for item in doc["errors"]:
            if isinstance(item, dict):
                if isinstance(item.get("code"), str):
                    codes.append(item["code"])
                if isinstance(item.get("message"), str):
                    messages.append(item["message"])
        return tuple(codes), "; ".join(messages)
    text = body.decode("utf-8", "replace")
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return (), text[:200]


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a manifest HEAD tells: digest, media type, size."""

    digest: str
    media_type: str
    size: int | None


@dataclass(frozen=True, slots=True)
class UploadSession:
    """An open blob upload: where to send the content."""

    repository: str
    location: httpx.URL


class BlobStream:
    """A blob's content as it arrives, in pieces of at least BLOB_CHUNK bytes (the last may be
    shorter); `size` from Content-Length when sent."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        length = response.headers.get("content-length")
        self.size = int(length) if length and length.isdigit() else None

    async def close(self) -> None:
        """Done with the response (read whole, or given up on): its connection serves the next
        request at once (`blob_open` closes it anyway on the way out)."""
        await self._response.aclose()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Raw: a blob is the stored bytes. A `Content-Encoding` some CDNs attach to a stored
        # .tar.gz must not be undone, or the bytes no longer hash to the digest.
        # The socket's reads (often a few tens of KiB each) are gathered into pieces of
        # BLOB_CHUNK with one join: hashing, progress and the upload then work per piece, not
        # per read. (httpx's `aiter_raw(chunk_size)` copies every byte three times.)
        received = 0
        pending: list[bytes] = []
        pending_size = 0
        try:
            async for raw in self._response.aiter_raw():
                received += len(raw)
                pending.append(raw)
                pending_size += len(raw)
                if pending_size >= BLOB_CHUNK:
                    yield pending[0] if len(pending) == 1 else b"".join(pending)
                    pending, pending_size = [], 0
        except httpx.TransportError as exc:
            stalled = isinstance(exc, httpx.ReadTimeout)
            raise RegistryError(
                f"the blob stalled after {received} bytes: no byte for the stall period"
                if stalled
                else f"reading the blob failed after {received} bytes: {type(exc).__name__}",
                method="GET",
                url=str(self._response.request.url),
                temporary=True,
                kind=TIMEOUT if stalled else BLOB_READ_FAILED,
            ) from None
        if pending:
            yield b"".join(pending)


@dataclass(frozen=True, slots=True)
class HostSettings:
    """How to reach one registry host: TLS or plain HTTP, and where credentials come from."""

    secure: bool = True
    credentials: CredentialProvider | None = None
    #: Check the TLS certificate (off only for hosts the user named with `--insecure`).
    verify: bool = True


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: loading the CA bundle costs about 15 ms of
    CPU and 1.5 MiB per context."""
    return httpx.create_ssl_context()


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool with a cheaper way of handing out connections.

    httpcore reassigns connections whenever a request starts or ends: for every connection it
    checks expiry (for an idle one a `poll()` of its socket and anyio building a dict of socket
    attributes, `getpeername()` included), counts all connections once per idle one, and lists
    the available ones once per queued request. With 16 connections that was most of the
    client's CPU on a run of many small requests. Here a connection's expiry is checked only
    when it is about to be reused (the one moment it matters: a connection the server closed
    or that outlived its keep-alive is closed then and another taken), closed ones are dropped,
    and each queued request takes the first available connection not taken in the same pass,
    else a new one while there is room, else replaces an idle connection to another origin.

    `verify` is a TLS context, or a callable making one on the first HTTPS connection (a
    plain-HTTP registry may still redirect to an HTTPS CDN), or False for unverified TLS.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | Callable[[], ssl.SSLContext] | bool,
        max_connections: int,
    ) -> None:
        self._make_context = verify if callable(verify) else None
        if isinstance(verify, ssl.SSLContext):
            context: ssl.SSLContext | None = verify
        elif verify is False:
            context = httpx.create_ssl_context(verify=False)
        else:
            context = None
        super().__init__(
            ssl_context=context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_SECONDS,
        )

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        if (
            self._ssl_context is None
            and self._make_context is not None
            and origin.scheme == b"https"
        ):
            self._ssl_context = self._make_context()
        return super().create_connection(origin)

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        connections = self._connections
        if any(connection.is_closed() for connection in connections):
            connections[:] = [c for c in connections if not c.is_closed()]
        queued = []
        assigned = set()
        for request in self._requests:
            if request.connection is None:
                queued.append(request)
            else:
                assigned.add(id(request.connection))
        if not queued:
            return closing
        # Connected with no request on it (for HTTP/1.1, available and idle are the same),
        # and not handed to a request that has yet to start on it: httpcore would hand it out
        # twice, and the second request would find it busy and go round again.
        idle = [c for c in connections if id(c) not in assigned and c.is_available()]
        for pool_request in queued:
            if not idle and len(connections) >= self._max_connections:
                break  # every connection is busy: wait for one to be released
            origin = pool_request.request.url.origin
            chosen = None
            for connection in [c for c in idle if c.can_handle_request(origin)]:
                idle.remove(connection)
                if connection.has_expired():
                    connections.remove(connection)
                    closing.append(connection)
                    continue
                chosen = connection
                break
            if chosen is None:
                if len(connections) >= self._max_connections:
                    if not idle:
                        continue
                    # An idle connection to another origin makes room for this one.
                    spare = idle.pop(0)
                    connections.remove(spare)
                    closing.append(spare)
                chosen = self.create_connection(origin)
                connections.append(chosen)
            pool_request.assign_to_connection(chosen)
        return closing


class _Transport(httpx.AsyncHTTPTransport):
    """httpx's transport over `_Pool`."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | Callable[[], ssl.SSLContext] | bool,
        max_connections: int,
    ) -> None:
        # httpx's own init would build a pool (and a TLS context) only to be replaced.
        self._pool = _Pool(verify=verify, max_connections=max_connections)


class RegistryClient:
    """The registry API of one host. Methods are named noun first: manifest_*, blob_*, tag_*."""

    def __init__(
        self,
        host: str,
        *,
        settings: HostSettings | None = None,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts | None = None,
        health: HostHealth | None = None,
    ) -> None:
        settings = settings or HostSettings()
        self.host = host
        self.scheme = "https" if settings.secure else "http"
        self.policy = policy or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        #: The run's record of hosts that are down (shared by all clients of a run).
        self.health = health if health is not None else HostHealth()
        if transport is None:
            transport = _Transport(
                # Unverified only for the hosts a user named with `--insecure`. A verifying
                # context is made when first needed: a plain-HTTP registry may never need one.
                verify=(
                    (_tls_context() if settings.secure else _tls_context)
                    if settings.verify
                    else False
                ),
                max_connections=MAX_CONNECTIONS,
            )
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self.timeouts.for_metadata(),
            headers={"User-Agent": USER_AGENT},
        )
        self.auth = Authenticator(
            host,
            self._http,
            secure=settings.secure,
            credentials=settings.credentials,
            policy=self.policy,
            health=self.health,
        )
        # httpx drops a default port from URLs: compare hosts in the form it uses.
        self._netloc = httpx.URL(self.api_url("")).netloc
        #: The latest pull allowance the registry announced (Docker Hub), or None: the run's
        #: pull floor and the report read it. Each reply (`Reply.rate_limit`, parsed once in
        #: `send_with_retry`) and error (`RegistryError.rate_limit`) carries the allowance as it
        #: stood for it; this is the newest of them.
        self.rate_limit: RateLimit | None = None
        #: Repositories that answered a manifest push with `OCI-Subject` (referrers API).
        self._subject_repositories: set[str] = set()

    async def aclose(self) -> None:
        await self._http.aclose()

    def api_url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{path}"

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scopes: Iterable[str],
        ok: Iterable[int],
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        missing: Iterable[int] = (),
        reauthenticate: bool = True,
        request_timeout: httpx.Timeout | None = None,
    ) -> Reply | None:
        """Send with authorization and retries; return the reply for an `ok` status, None for
        a `missing` one, raise RegistryError otherwise. A 401 carrying a challenge is answered
        once with a fresh header (only when the body can be sent again). Every error raised
        names this registry (`RegistryError.registry`), its token service's included."""
        try:
            return await self._exchange(
                method,
                url,
                scopes=scopes,
                ok=ok,
                headers=headers,
                content=content,
                stream=stream,
                follow_redirects=follow_redirects,
                missing=missing,
                reauthenticate=reauthenticate,
                request_timeout=request_timeout,
            )
        except RegistryError as exc:
            exc.registry = exc.registry or self.host
            # A refusal by the token service too says whether this registry has an allowance.
            exc.rate_limit = exc.rate_limit or self.rate_limit
            raise

    async def _exchange(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scopes: Iterable[str],
        ok: Iterable[int],
        headers: dict[str, str] | None,
        content: bytes | AsyncIterable[bytes] | None,
        stream: bool,
        follow_redirects: bool,
        missing: Iterable[int],
        reauthenticate: bool,
        request_timeout: httpx.Timeout | None,
    ) -> Reply | None:
        scopes = tuple(scopes)
        ok, missing = frozenset(ok), frozenset(missing)
        # Parsed once: httpx checks every character of a URL it parses (an upload Location
        # carries a long state token), so a URL object is passed on as it is.
        target = url if isinstance(url, httpx.URL) else httpx.URL(url)
        retried_auth = False
        while True:
            send_headers = dict(headers or {})
            # Authorization goes only to the registry host itself, never to another host
            # (an upload Location or a CDN), as the distribution spec requires.
            authorization = None
            if target.scheme == self.scheme and target.netloc == self._netloc:
                authorization = await self.auth.authorization(scopes)
                if authorization:
                    send_headers["Authorization"] = authorization
            reply = await send_with_retry(
                self._http,
                method,
                target,
                policy=self.policy,
                headers=send_headers,
                content=content,
                stream=stream,
                follow_redirects=follow_redirects,
                health=self.health,
                request_timeout=request_timeout,
                registry=self.host,
            )
            self.rate_limit = reply.rate_limit or self.rate_limit
            status = reply.status
            if (
                status == 401
                and reauthenticate
                and not retried_auth
                and (content is None or isinstance(content, bytes))
                and self.auth.learn(reply.headers.get("www-authenticate"), scopes, authorization)
            ):
                retried_auth = True
                continue
            if status in ok:
                return reply
            if status in missing:
                return None
            raise self._error(reply, method, target, after_fresh_auth=retried_auth)

    def _error(
        self, reply: Reply, method: str, url: httpx.URL, *, after_fresh_auth: bool
    ) -> RegistryError:
        codes, message = _error_codes_and_message(reply.body)
        status = reply.status
        if status == 401:
            message = message or "unauthorized"
            if self.auth.scheme == "basic":
                message += (
                    f" (credentials for {self.host} refused)"
                    if self.auth.has_credentials
                    else f" (no credentials configured for {self.host})"
                )
            elif after_fresh_auth or self.auth.scheme:
                # Quay's 401 for a missing repository (see `quay_absent`): after a fresh token
                # it means "absent or forbidden".
                message += " (repository absent, or the credentials lack access)"
        if status == 429 and self.rate_limit is not None:
            message = (message or "too many requests") + (
                f" (pull allowance {self.rate_limit.remaining}/{self.rate_limit.limit})"
            )
        retry_after = parse_retry_after(reply.headers.get("retry-after"))
        # With Basic, a 401 can only mean the credentials are missing or wrong.
        kind = (
            AuthenticationError if status == 401 and self.auth.scheme == "basic" else RegistryError
        )
        return kind(
            message or reply.response.reason_phrase or "request failed",
            status=status,
            method=method,
            url=str(url),
            codes=codes,
            temporary=self.policy.retryable_status(status) or TOOMANYREQUESTS in codes,
            retry_after=retry_after,
            rate_limit=self.rate_limit,
        )

    def hosts(self) -> list[str]:
        """This registry's host and its token service's, as `host:port` (as in URLs)."""
        return [self._netloc.decode("ascii"), *self.auth.service_hosts()]

    def check_up(self) -> None:
        """Raise the cause when this registry, or its token service, is down for the run."""
        for host in self.hosts():
            error = self.health.cause(host)
            if error is not None:
                error.registry = self.host
                raise error

    # -- ping ---------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Reach `/v2/` and learn the host's authentication scheme."""
        await self.auth.ping()

    # -- manifests ----------------------------------------------------------------------------

    async def manifest_head(
        self, repository: str, reference: str, *, for_write: bool = False
    ) -> ManifestInfo | None:
        """The digest a tag or digest resolves to, or None when the registry says it is not
        there. A HEAD costs no Docker Hub pull; a GET does. `for_write` asks with the push
        token a copy uses anyway (on Quay, issuing it creates a missing repository, which
        otherwise answers 401)."""
        reply = await self._request(
            "HEAD",
            self.api_url(f"{repository}/manifests/{reference}"),
            scopes=[push_scope(repository) if for_write else pull_scope(repository)],
            headers={"Accept": MANIFEST_ACCEPT},
            ok=[200],
            missing=[404],
        )
        if reply is None:
            return None
        digest = reply.headers.get("docker-content-digest", "")
        if not is_digest(digest):
            if is_digest(reference):
                digest = reference
            else:
                raise RegistryError(
                    "manifest HEAD answered without a valid Docker-Content-Digest",
                    status=reply.status,
                    method="HEAD",
                    url=self.api_url(f"{repository}/manifests/{reference}"),
                    kind=MANIFEST_INVALID,
                )
        length = reply.headers.get("content-length")
        return ManifestInfo(
            digest=digest,
            media_type=reply.headers.get("content-type", "").split(";", 1)[0].strip(),
            size=int(length) if length and length.isdigit() else None,
        )

    async def manifest_get(self, repository: str, reference: str) -> Manifest:
        """A manifest's exact bytes, checked against the digest asked for (or announced)."""
        url = self.api_url(f"{repository}/manifests/{reference}")
        reply = await self._request(
            "GET",
            url,
            scopes=[pull_scope(repository)],
            headers={"Accept": MANIFEST_ACCEPT},
            ok=[200],
        )
        assert reply is not None
        expected = reference if is_digest(reference) else None
        announced = reply.headers.get("docker-content-digest")
        if expected is None and announced and announced.startswith("sha256:"):
            expected = announced
        if len(reply.body) > MAX_MANIFEST_BYTES:
            raise RegistryError("manifest too large", method="GET", url=url, kind=MANIFEST_INVALID)
        return Manifest.parse(
            reply.body, reply.headers.get("content-type"), expected_digest=expected
        )

    async def manifest_put(self, repository: str, reference: str, manifest: Manifest) -> str:
        """Push the exact bytes under a tag or their digest; Content-Type is the media type
        (Quay treats a missing or generic type as schema 1). Returns the digest stored."""
        url = self.api_url(f"{repository}/manifests/{reference}")
        reply = await self._request(
            "PUT",
            url,
            scopes=[push_scope(repository)],
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
            ok=[200, 201, 202],
        )
        assert reply is not None
        if "oci-subject" in reply.headers:
            self._subject_repositories.add(repository)
        stored = reply.headers.get("docker-content-digest") or manifest.digest
        if stored != manifest.digest:
            raise RegistryError(
                f"registry stored digest {stored}, not {manifest.digest}: content was altered",
                status=reply.status,
                method="PUT",
                url=url,
            )
        return stored

    def answers_subject(self, repository: str) -> bool:
        """Whether a manifest push to `repository` was answered with `OCI-Subject` in this
        run: the registry keeps its own referrers list (OCI 1.1 referrers API)."""
        return repository in self._subject_repositories

    # -- referrers ----------------------------------------------------------------------------

    async def referrers_list(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose `subject` is `digest`, from the referrers API
        (`GET /v2/<name>/referrers/<digest>`, every page); None when the registry does not
        implement it (404, or an answer that is not an OCI index, as Distribution 2.8 gives).

        No filter is asked for, so an answer announcing `OCI-Filters-Applied` is not the whole
        list: that is an error (REFERRERS_INVALID), never a silently shortened list."""
        url = httpx.URL(self.api_url(f"{repository}/referrers/{digest}"))
        out: list[dict[str, Any]] = []
        for page in range(MAX_TAG_PAGES):
            reply = await self._request(
                "GET",
                url,
                scopes=[pull_scope(repository)],
                headers={"Accept": OCI_INDEX},
                ok=[200],
                missing=[404],
            )
            content_type = reply.headers.get("content-type", "") if reply else ""
            if reply is None or content_type.split(";", 1)[0].strip() != OCI_INDEX:
                if page == 0:
                    return None
                raise RegistryError(
                    "a later page of the referrers list is missing or not an index",
                    method="GET",
                    url=str(url),
                    kind=REFERRERS_INVALID,
                )
            if reply.headers.get("oci-filters-applied"):
                raise RegistryError(
                    "the registry filtered the referrers list unasked (OCI-Filters-Applied: "
                    f"{reply.headers['oci-filters-applied']}): it is not the whole list",
                    status=reply.status,
                    method="GET",
                    url=str(url),
                    kind=REFERRERS_INVALID,
                )
            out.extend(_referrer_descriptors(reply.body, str(url)))
            next_url = _next_link(reply)
            if not next_url:
                return out
            url = url.join(next_url)
        return out

    # -- blobs --------------------------------------------------------------------------------

    async def blob_head(
        self, repository: str, digest: str, *, for_write: bool = False
    ) -> int | None:
        """The blob's size when this repository has it, else None (per repository on Quay).
        `for_write`: as for manifest_head."""
        reply = await self._request(
            "HEAD",
            self.api_url(f"{repository}/blobs/{digest}"),
            scopes=[push_scope(repository) if for_write else pull_scope(repository)],
            ok=[200],
            missing=[404],
            follow_redirects=True,
        )
        if reply is None:
            return None
        length = reply.headers.get("content-length")
        return int(length) if length and length.isdigit() else -1

    @asynccontextmanager
    async def blob_open(self, repository: str, digest: str) -> AsyncIterator[BlobStream]:
        """Stream a blob. Docker Hub and Quay redirect to a signed CDN URL; httpx follows it
        and drops `Authorization` on the other origin (a signed URL refuses it with 400).
        `Accept-Encoding: identity` keeps the bytes as stored."""
        reply = await self._request(
            "GET",
            self.api_url(f"{repository}/blobs/{digest}"),
            scopes=[pull_scope(repository)],
            headers={"Accept-Encoding": "identity"},
            ok=[200],
            stream=True,
            follow_redirects=True,
            request_timeout=self.timeouts.for_blob(),
        )
        assert reply is not None
        try:
            yield BlobStream(reply.response)
        finally:
            await reply.response.aclose()

    async def blob_get(self, repository: str, digest: str) -> bytes:
        """A small blob (a config) read whole."""
        chunks = []
        async with self.blob_open(repository, digest) as stream:
            async for chunk in stream:
                chunks.append(chunk)
        return b"".join(chunks)

    async def blob_upload_start(self, repository: str) -> UploadSession:
        """`POST /blobs/uploads/`: a body-less request, so it also settles the push token
        before any streamed body (which cannot be sent twice) goes out."""
        url = self.api_url(f"{repository}/blobs/uploads/")
        reply = await self._request(
            "POST", url, scopes=[push_scope(repository)], ok=[202], content=b""
        )
        assert reply is not None
        return self._session(repository, reply, httpx.URL(url))

    def _session(self, repository: str, reply: Reply, request_url: httpx.URL) -> UploadSession:
        location = reply.headers.get("location")
        if not location:
            raise RegistryError(
                "upload started without a Location",
                kind=UPLOAD_INVALID,
                status=reply.status,
                method="POST",
                url=str(request_url),
            )
        return UploadSession(repository, resolve_location(request_url, location))

    async def blob_mount(
        self, repository: str, digest: str, source_repository: str
    ) -> UploadSession | None:
        """Cross-repository mount within this registry. None when mounted (201); an open
        upload session when the registry started one instead (202); raises on an error, after
        which the caller uploads normally."""
        url = self.api_url(f"{repository}/blobs/uploads/")
        url_with_query = f"{url}?mount={digest}&from={source_repository}"
        reply = await self._request(
            "POST",
            url_with_query,
            scopes=[push_scope(repository), pull_scope(source_repository)],
            ok=[201, 202],
            content=b"",
        )
        assert reply is not None
        if reply.status == 201:
            return None
        return self._session(repository, reply, httpx.URL(url_with_query))

    async def blob_upload_finish(
        self, session: UploadSession, digest: str, size: int, body: AsyncIterable[bytes]
    ) -> None:
        """Monolithic upload: `PUT <Location>&digest=D` with the whole body and an explicit
        Content-Length (without it httpx would send a generator chunked)."""
        url = resolve_location(session.location, "", digest=digest)
        await self._request(
            "PUT",
            url,
            scopes=[push_scope(session.repository)],
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=body,
            ok=[201, 204],
            request_timeout=self.timeouts.for_blob(),
        )

    async def blob_upload_cancel(self, session: UploadSession) -> None:
        """Abandon an upload (best effort: registries expire sessions anyway)."""
        with suppress(RegistryError):
            await self._request(
                "DELETE",
                session.location,
                scopes=[push_scope(session.repository)],
                ok=[200, 202, 204],
                missing=[404, 405],
                # Distribution wants a `delete` grant here that push tokens lack; a refusal
                # must not cost the cached push token.
                reauthenticate=False,
            )

    # -- tags ---------------------------------------------------------------------------------

    async def tag_list(
        self, repository: str, page_size: int = TAG_PAGE_SIZE, max_pages: int = MAX_TAG_PAGES
    ) -> list[str]:
        """Every tag (or the first `max_pages` pages), following `Link: <...>; rel="next"` as
        given. Sorted by name, not date: order them by version, never by position."""
        url: httpx.URL = httpx.URL(self.api_url(f"{repository}/tags/list")).copy_merge_params(
            {"n": page_size}
        )
        tags: list[str] = []
        for page_number in range(1, max_pages + 1):
            reply = await self._request("GET", url, scopes=[pull_scope(repository)], ok=[200])
            assert reply is not None
            try:
                doc = json.loads(reply.body)
            except (ValueError, UnicodeDecodeError):
                doc = None
            page = doc.get("tags") if isinstance(doc, dict) else None
            if page is not None and not (
                isinstance(page, list) and all(isinstance(t, str) for t in page)
            ):
                raise RegistryError(
                    "tag list is not a list of strings",
                    method="GET",
                    url=str(url),
                    kind=TAG_LIST_INVALID,
                )
            tags.extend(page or [])
            next_url = _next_link(reply)
            if not next_url or page_number == max_pages:
                return tags
            url = url.join(next_url)
        return tags


def _referrer_descriptors(body: bytes, url: str) -> list[dict[str, Any]]:
    """The `manifests` of a referrers answer, each checked as a descriptor."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    items = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise RegistryError(
            "referrers answer is not an index with a 'manifests' list",
            method="GET",
            url=url,
            kind=REFERRERS_INVALID,
        )
    for i, item in enumerate(items):
        try:
            Descriptor.from_json(item, f"referrers manifests[{i}]")
        except ManifestError as exc:
            raise RegistryError(str(exc), method="GET", url=url, kind=REFERRERS_INVALID) from None
    return [dict(item) for item in items]


def _next_link(reply: Reply) -> str | None:
    """The `Link: <...>; rel="next"` target of a paged answer (parsed by httpx), or None."""
    return reply.response.links.get("next", {}).get("url")


def quay_absent(error: RegistryError) -> bool:
    """Whether `error` is Quay's way of saying a repository is not there.

    Quay answers 401, not 404, for a repository that does not exist (or that these credentials
    may not read), even with good credentials and a fresh token. An AuthenticationError is not
    this: it says the credentials were refused (Basic auth, or the token service).
    """
    return error.status == 401 and not isinstance(error, AuthenticationError)


async def probe_tls(host: str) -> bool:
    """Whether `host` speaks TLS (certificate unchecked), for `--insecure`: False when its
    port answers a handshake as plain HTTP does. Any other failure says True and leaves the
    real requests to report it."""
    # Unverified on purpose: this only asks whether the port speaks TLS at all.
    async with httpx.AsyncClient(verify=False, timeout=10.0) as http:  # noqa: S501
        try:
            await http.get(f"https://{host}/v2/", headers={"User-Agent": USER_AGENT})
        except httpx.TransportError as exc:
            return not answered_plain_http(exc)
    return True


class Registries:
    """One client per registry host, made on first use with that host's settings."""

    def __init__(
        self,
        settings_for: Callable[[str], HostSettings],
        *,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._settings_for = settings_for
        self._policy = policy or RetryPolicy()
        self._transport = transport
        self._timeouts = timeouts or Timeouts()
        self._clients: dict[str, RegistryClient] = {}
        #: Hosts found down in this run, shared by every client (one run, one record).
        self.health = HostHealth()

    def client(self, host: str) -> RegistryClient:
        if host not in self._clients:
            self._clients[host] = RegistryClient(
                host,
                settings=self._settings_for(host),
                policy=self._policy,
                transport=self._transport,
                timeouts=self._timeouts,
                health=self.health,
            )
        return self._clients[host]

    @property
    def clients(self) -> dict[str, RegistryClient]:
        return dict(self._clients)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def __aenter__(self) -> Registries:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
