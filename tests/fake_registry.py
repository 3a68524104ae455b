"""An in-memory distribution-API registry for `httpx.MockTransport`.

`FakeRegistry` stores blobs, manifests and tags per repository and answers `/v2/`, manifests
(HEAD/GET/PUT/DELETE), blobs (HEAD/GET, optionally redirected to a "CDN" host), uploads (POST
with a relative `Location` carrying `?_state=`, monolithic PUT with `digest=`, DELETE), mounts,
and `tags/list` with `n` and `Link` pagination. It can demand Basic or Bearer auth (with its own
token endpoint on `auth.<host>`), records every request, and injects faults by the same rules
as the fault proxy (`tests.bed.faults`: `add_rule(ResetBody(100), path=...)`); a hook (a
function of the request) is left for what no rule says, such as holding a request until another
arrives. Images come from `tests.bed.images`. No sockets: `route(*fakes)` gives a MockTransport
that dispatches on the request's host.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from tests.bed import faults
from tests.bed.images import OCI_INDEX, Image, sha256_digest

__all__ = [
    "FakeRegistry",
    "Hook",
    "Recorded",
    "route",
]

#: A fault hook: sees every request the fake receives (after it is recorded) and may answer
#: it instead of the fake by returning a response (or an awaitable of one); None passes it on.
Hook = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response | None] | None"]


# --- requests and faults ----------------------------------------------------------------------


@dataclass
class Recorded:
    """One request as the fake saw it, and the status it answered."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: bytes
    status: int = 0

    @property
    def host(self) -> str:
        return self.url.netloc.decode("ascii")

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def query(self) -> str:
        return self.url.query.decode("ascii")

    def param(self, name: str) -> str | None:
        value = self.url.params.get(name)
        return None if value is None else str(value)

    def params(self, name: str) -> list[str]:
        return self.url.params.get_list(name)

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


class _ChunkStream(httpx.AsyncByteStream):
    """A body still to be read, as from a socket, that may end the way a faulty connection ends
    it: `then` is "end" (complete), "reset" (ReadError), "short" (the peer closes early: the
    RemoteProtocolError h11 raises) or "stall" (nothing more, until the reader gives up)."""

    # A plain iterator, not an async generator: one abandoned half-way is never finalised
    # later by the garbage collector (at a random point, after its event loop is gone).
    def __init__(self, chunks: Iterable[bytes], then: str = "end") -> None:
        self._chunks = iter(chunks)
        self._then = then

    def __aiter__(self) -> _ChunkStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            pass
        if self._then == "reset":
            raise httpx.ReadError("connection reset by peer")
        if self._then == "short":
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )
        if self._then == "stall":
            await asyncio.Event().wait()
        raise StopAsyncIteration


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
    return httpx.Response(
        status,
        headers={"Content-Type": "application/json", **headers},
        content=body.encode(),
    )


@dataclass
class _Repo:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Upload:
    repo: str
    state: str
    data: bytes = b""


_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]*)$")
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

AuthMode = Literal["none", "basic", "bearer"]
MountMode = Literal["mount", "session", "error"]


class FakeRegistry(faults.FaultInjector):
    """One registry host (plus its token endpoint `auth.<host>` and CDN `cdn.<host>`).

    `auth`: "none", "basic" (users in `users`) or "bearer" (tokens from the fake's own realm;
    anonymous tokens carry pull only when `anonymous_pull`, users get what they ask for).
    `token_field` and `expires_in` shape the token reply. `cdn` redirects blob GETs to
    `cdn.<host>` with a signed query (which answers 400 if `Authorization` arrives there).
    `mount`: "mount" answers 201 when the source repo holds the blob, "session" always opens an
    upload session (202), "error" refuses (500). `ratelimit` (limit, remaining) adds Docker
    Hub's headers to manifest GET/HEAD. `yield_each_request` makes every request yield to the
    event loop once, so concurrent copies interleave as they would over a network.
    `referrers_api` answers `GET /v2/<name>/referrers/<digest>` (OCI 1.1) with an index of the
    stored manifests whose `subject` is that digest, and a push of such a manifest with
    `OCI-Subject`; without it both are unknown, as on Distribution 2.8.
    """

    def __init__(
        self,
        host: str = "registry.test",
        *,
        auth: AuthMode = "none",
        users: dict[str, str] | None = None,
        anonymous_pull: bool = True,
        token_field: str = "token",  # noqa: S107 (a JSON field name, not a secret)
        expires_in: int | None = 300,
        cdn: bool = False,
        mount: MountMode = "mount",
        ratelimit: tuple[int, int] | None = None,
        check_references: bool = True,
        yield_each_request: bool = True,
        referrers_api: bool = False,
    ) -> None:
        self.host = host
        self.auth_host = f"auth.{host}"
        self.cdn_host = f"cdn.{host}"
        self.auth = auth
        self.users = dict(users or {})
        self.anonymous_pull = anonymous_pull
        self.token_field = token_field
        self.expires_in = expires_in
        self.cdn = cdn
        self.mount = mount
        self.ratelimit = ratelimit
        self.check_references = check_references
        self.yield_each_request = yield_each_request
        self.referrers_api = referrers_api
        self.repos: dict[str, _Repo] = {}
        self.uploads: dict[str, _Upload] = {}
        self.tokens: dict[str, frozenset[tuple[str, str]]] = {}
        self.requests: list[Recorded] = []
        self._rules = faults.Rules(seed=host)
        self.hooks: list[Hook] = []
        self._cdn_faults: dict[str, tuple[faults.Fault, ...]] = {}
        self._ids = itertools.count(1)

    # -- setup and inspection --------------------------------------------------------------

    @property
    def realm(self) -> str:
        return f"https://{self.auth_host}/token"

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.host, self.auth_host, self.cdn_host)

    def transport(self) -> httpx.MockTransport:
        return route(self)

    def repo(self, name: str) -> _Repo:
        return self.repos.setdefault(name, _Repo())

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        self.repo(repo).blobs[digest] = data
        return digest

    def add_manifest(self, repo: str, raw: bytes, media_type: str, tag: str | None = None) -> str:
        digest = sha256_digest(raw)
        self.repo(repo).manifests[digest] = (raw, media_type)
        if tag:
            self.repo(repo).tags[tag] = digest
        return digest

    def add_image(self, repo: str, image: Image, tag: str | None = None) -> str:
        """Store an image or index with everything it refers to; returns its digest."""
        for data in image.blobs.values():
            self.add_blob(repo, data)
        for manifest in image.manifests():
            self.add_manifest(repo, manifest.manifest, manifest.media_type)
        return self.add_manifest(repo, image.manifest, image.media_type, tag)

    def has_blob(self, repo: str, digest: str) -> bool:
        return digest in self.repos.get(repo, _Repo()).blobs

    def has_manifest(self, repo: str, digest: str) -> bool:
        return digest in self.repos.get(repo, _Repo()).manifests

    def tag_digest(self, repo: str, tag: str) -> str | None:
        return self.repos.get(repo, _Repo()).tags.get(tag)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def matching(
        self, method: str | None = None, path: str = "", host: str | None = None
    ) -> list[Recorded]:
        """Recorded requests with this method, a path matching regex `path`, on `host`."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and re.search(path, r.path)
            and (host is None or r.host == host)
        ]

    def log(self) -> str:
        """Every request so far, one a line (for failure messages)."""
        return "\n".join(str(r) for r in self.requests)

    def fail(self, method: str, path: str, *responses: httpx.Response) -> None:
        """Answer the next matching requests (method, regex on the path) with `responses`, in
        order, then behave normally again: one `Respond` rule each, fired once."""
        for response in responses:
            headers = tuple(response.headers.multi_items())
            answer = faults.Respond(response.status_code, headers, response.read())
            self.add_rule(answer, method=method, path=path, times=1)

    # -- dispatch ----------------------------------------------------------------------------

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        record = Recorded(
            request.method, request.url, httpx.Headers(request.headers), request.content
        )
        self.requests.append(record)
        if self.yield_each_request:
            await asyncio.sleep(0)
        host = request.url.netloc.decode("ascii")
        target = request.url.raw_path.decode("ascii")
        chosen = self._choose(request.method, target) if host == self.host else []
        response = await self._faulted(request, chosen)
        if response is None:
            for hook in list(self.hooks):
                answer = hook(request)
                if inspect.isawaitable(answer):
                    answer = await answer
                if answer is not None:
                    response = answer
                    break
        if response is None:
            response = self._answer(request)
        response = self._body_faults(response, chosen)
        record.status = response.status_code
        return response

    async def _faulted(
        self, request: httpx.Request, chosen: Sequence[faults.Fault]
    ) -> httpx.Response | None:
        """Delays and callbacks, then the answer a fault gives instead of the registry's."""
        for fault in chosen:
            if isinstance(fault, faults.Delay):
                await asyncio.sleep(fault.seconds)
            elif isinstance(fault, faults.Invoke):
                try:
                    fault.callback(request.method, request.url.raw_path.decode("ascii"))
                except ConnectionError:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response.", request=request
                    ) from None
        terminal = next((f for f in chosen if isinstance(f, faults.TERMINAL)), None)
        if isinstance(terminal, faults.Respond):
            chunked = any(k.lower() == "transfer-encoding" for k, _ in terminal.headers)
            if chunked:  # no Content-Length: the body runs as long as it runs
                return httpx.Response(
                    terminal.status, headers=terminal.headers, stream=_ChunkStream([terminal.body])
                )
            return httpx.Response(terminal.status, headers=terminal.headers, content=terminal.body)
        if isinstance(terminal, faults.ResetRequest):
            raise httpx.WriteError("connection reset by peer", request=request)
        m = _BLOB.fullmatch(request.url.path)
        if isinstance(terminal, faults.CdnRedirect) and request.method == "GET" and m:
            ticket = f"ticket-{next(self._ids)}"
            self._cdn_faults[ticket] = tuple(f for f in chosen if isinstance(f, faults.BODY_FAULTS))
            location = (
                f"https://{self.cdn_host}/blobs/{m['digest']}"
                f"?X-Amz-Signature=signed&ticket={ticket}"
            )
            return httpx.Response(307, headers={"Location": location})
        return None

    def _body_faults(
        self, response: httpx.Response, chosen: Sequence[faults.Fault]
    ) -> httpx.Response:
        """Header changes, then a flipped byte or a body cut off, on the answer."""
        for fault in chosen:
            if isinstance(fault, faults.AddHeaders):
                for name, value in fault.headers:
                    response.headers[name] = value
            elif isinstance(fault, faults.StripHeaders):
                for name in fault.names:
                    if name in response.headers:
                        del response.headers[name]
        body = [f for f in chosen if isinstance(f, faults.BODY_FAULTS)]
        if (
            not body
            or response.status_code == 307
            or not isinstance(response.stream, httpx.ByteStream)
        ):
            return response
        data = bytearray(response.content)
        then, keep = "end", len(data)
        for fault in body:
            if isinstance(fault, faults.FlipByte) and data:
                data[len(data) // 2 if fault.offset is None else fault.offset] ^= 0x01
            elif isinstance(fault, faults.ResetBody | faults.ShortBody | faults.StallBody):
                then = {
                    faults.ResetBody: "reset",
                    faults.ShortBody: "short",
                    faults.StallBody: "stall",
                }[type(fault)]
                keep = min(fault.after_bytes, len(data))
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_ChunkStream([bytes(data[:keep])] if keep else [], then),
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode("ascii")
        if host == self.auth_host:
            return self._token(request)
        if host == self.cdn_host:
            response = self._cdn(request)
            ticket = request.url.params.get("ticket")
            return self._body_faults(response, self._cdn_faults.pop(ticket, ()) if ticket else ())
        path = request.url.path
        method = request.method
        if path == "/v2/":
            denied = self._check_auth(request, None, ())
            return denied or httpx.Response(200, json={})
        if m := _MANIFEST.fullmatch(path):
            name, ref = m["name"], m["ref"]
            write = method in {"PUT", "DELETE"}
            denied = self._check_auth(request, name, ("pull", "push") if write else ("pull",))
            if denied:
                return denied
            if method in {"GET", "HEAD"}:
                return self._manifest_get(request, name, ref)
            if method == "PUT":
                return self._manifest_put(request, name, ref)
            if method == "DELETE":
                return self._manifest_delete(name, ref)
        if m := _UPLOADS.fullmatch(path):
            name, upload_id = m["name"], m["id"]
            denied = self._check_auth(request, name, ("pull", "push"))
            mount_from = request.url.params.get("from")
            if not denied and mount_from and request.url.params.get("mount"):
                denied = self._check_auth(request, mount_from, ("pull",))
            if denied:
                return denied
            if method == "POST" and not upload_id:
                return self._upload_start(request, name)
            if method == "PUT" and upload_id:
                return self._upload_put(request, name, upload_id)
            if method == "DELETE" and upload_id:
                if self.uploads.pop(upload_id, None) is None:
                    return _error(404, "BLOB_UPLOAD_UNKNOWN", "no such upload")
                return httpx.Response(204)
        if m := _BLOB.fullmatch(path):
            name, digest = m["name"], m["digest"]
            denied = self._check_auth(request, name, ("pull",))
            if denied:
                return denied
            if method in {"GET", "HEAD"}:
                return self._blob_get(request, name, digest)
        if m := _TAGS.fullmatch(path):
            denied = self._check_auth(request, m["name"], ("pull",))
            return denied or self._tags(request, m["name"])
        if self.referrers_api and method == "GET" and (m := _REFERRERS.fullmatch(path)):
            denied = self._check_auth(request, m["name"], ("pull",))
            return denied or self._referrers(m["name"], m["digest"])
        return _error(404, "UNSUPPORTED", f"fake registry: no route for {method} {path}")

    # -- auth --------------------------------------------------------------------------------

    def _basic_user(self, request: httpx.Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == password and user else None

    def _check_auth(
        self, request: httpx.Request, repo: str | None, actions: Iterable[str]
    ) -> httpx.Response | None:
        if self.auth == "none":
            return None
        if self.auth == "basic":
            if self._basic_user(request):
                return None
            return _error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                **{"WWW-Authenticate": 'Basic realm="fake registry"'},
            )
        header = request.headers.get("authorization", "")
        granted = self.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        actions = tuple(actions)
        if granted is not None and all((repo, action) in granted for action in actions if repo):
            return None
        challenge = f'Bearer realm="{self.realm}",service="{self.host}"'
        if repo:
            challenge += f',scope="repository:{repo}:{",".join(actions)}"'
        return _error(
            401, "UNAUTHORIZED", "authentication required", **{"WWW-Authenticate": challenge}
        )

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" or request.url.path != "/token":
            return httpx.Response(405, text="token endpoint takes GET /token")
        user = None
        if "authorization" in request.headers:
            user = self._basic_user(request)
            if user is None:
                return httpx.Response(401, json={"details": "incorrect username or password"})
        granted: set[tuple[str, str]] = set()
        for scope in request.url.params.get_list("scope"):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            for action in actions.split(","):
                if user is not None or (action == "pull" and self.anonymous_pull):
                    granted.add((name, action))
        token = f"token-{next(self._ids)}"
        self.tokens[token] = frozenset(granted)
        doc: dict[str, Any] = {self.token_field: token}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        return httpx.Response(200, json=doc)

    # -- manifests ---------------------------------------------------------------------------

    def _rate_headers(self, method: str) -> dict[str, str]:
        if self.ratelimit is None:
            return {}
        limit, remaining = self.ratelimit
        if method == "GET":
            self.ratelimit = (limit, max(0, remaining - 1))
        return {
            "ratelimit-limit": f"{limit};w=21600",
            "ratelimit-remaining": f"{remaining};w=21600",
        }

    def _manifest_get(self, request: httpx.Request, name: str, ref: str) -> httpx.Response:
        repo = self.repos.get(name)
        if repo is None:
            return _error(404, "NAME_UNKNOWN", f"repository {name} not known")
        digest = ref if _DIGEST.fullmatch(ref) else repo.tags.get(ref)
        if digest is None or digest not in repo.manifests:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest {ref} unknown")
        raw, media_type = repo.manifests[digest]
        headers = {
            "Content-Type": media_type,
            "Docker-Content-Digest": digest,
            "Content-Length": str(len(raw)),
            **self._rate_headers(request.method),
        }
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=raw)

    def _manifest_put(self, request: httpx.Request, name: str, ref: str) -> httpx.Response:
        raw = request.content
        digest = sha256_digest(raw)
        media_type = request.headers.get("content-type", "")
        if _DIGEST.fullmatch(ref) and ref != digest:
            return _error(400, "DIGEST_INVALID", f"manifest hashes to {digest}, not {ref}")
        try:
            doc = json.loads(raw)
        except ValueError:
            return _error(400, "MANIFEST_INVALID", "not JSON")
        repo = self.repo(name)
        if self.check_references:
            # Like Quay: an index whose children are missing, or an image whose blobs are
            # missing, is refused.
            for child in doc.get("manifests") or []:
                if child["digest"] not in repo.manifests:
                    return _error(400, "MANIFEST_UNKNOWN", f"child {child['digest']} missing")
            config = doc.get("config")
            for blob in ([config] if config else []) + list(doc.get("layers") or []):
                if blob.get("urls"):
                    continue
                if blob["digest"] not in repo.blobs:
                    return _error(400, "BLOB_UNKNOWN", f"blob {blob['digest']} missing")
        repo.manifests[digest] = (raw, media_type)
        if not _DIGEST.fullmatch(ref):
            repo.tags[ref] = digest
        headers = {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/manifests/{digest}"}
        subject = doc.get("subject")
        if self.referrers_api and isinstance(subject, dict):
            headers["OCI-Subject"] = str(subject.get("digest"))
        return httpx.Response(201, headers=headers)

    def _referrers(self, name: str, digest: str) -> httpx.Response:
        entries = []
        for stored, (raw, media_type) in self.repos.get(name, _Repo()).manifests.items():
            doc = json.loads(raw)
            if (doc.get("subject") or {}).get("digest") != digest:
                continue
            entry = {"mediaType": media_type, "digest": stored, "size": len(raw)}
            for key in ("artifactType", "annotations"):
                if key in doc:
                    entry[key] = doc[key]
            entries.append(entry)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return httpx.Response(200, headers={"Content-Type": OCI_INDEX}, json=index)

    def _manifest_delete(self, name: str, ref: str) -> httpx.Response:
        repo = self.repos.get(name)
        if repo is None or repo.manifests.pop(ref, None) is None:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest {ref} unknown")
        for tag, digest in list(repo.tags.items()):
            if digest == ref:
                del repo.tags[tag]
        return httpx.Response(202)

    # -- blobs -------------------------------------------------------------------------------

    def _blob_get(self, request: httpx.Request, name: str, digest: str) -> httpx.Response:
        data = self.repos.get(name, _Repo()).blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", f"blob {digest} unknown")
        if request.method == "HEAD":
            return httpx.Response(
                200,
                headers={"Content-Length": str(len(data)), "Docker-Content-Digest": digest},
            )
        if self.cdn:
            # Docker Hub and Quay: a redirect to a signed URL on another host.
            location = f"https://{self.cdn_host}/blobs/{digest}?X-Amz-Signature=signed"
            return httpx.Response(307, headers={"Location": location})
        return httpx.Response(
            200,
            headers={"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"},
            content=data,
        )

    def _cdn(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            # A signed URL that also gets an Authorization header fails (S3's behaviour).
            return httpx.Response(400, text="<Error>Only one auth mechanism allowed</Error>")
        if request.url.params.get("X-Amz-Signature") != "signed":
            return httpx.Response(403, text="<Error>signature missing</Error>")
        digest = request.url.path.rsplit("/", 1)[-1]
        for repo in self.repos.values():
            if digest in repo.blobs:
                return httpx.Response(200, content=repo.blobs[digest])
        return httpx.Response(404, text="<Error>NoSuchKey</Error>")

    def _new_session(self, name: str) -> httpx.Response:
        upload_id = f"upload-{next(self._ids)}"
        state = f"state{upload_id}"
        self.uploads[upload_id] = _Upload(name, state)
        return httpx.Response(
            202,
            headers={
                "Location": f"/v2/{name}/blobs/uploads/{upload_id}?_state={state}",
                "Docker-Upload-UUID": upload_id,
                "Range": "0-0",
            },
        )

    def _upload_start(self, request: httpx.Request, name: str) -> httpx.Response:
        mount, source = request.url.params.get("mount"), request.url.params.get("from")
        if mount and source:
            if self.mount == "error":
                return _error(500, "UNKNOWN", "mount failed")
            source_data = self.repos.get(source, _Repo()).blobs.get(mount)
            if self.mount == "mount" and source_data is not None:
                self.repo(name).blobs[mount] = source_data
                return httpx.Response(
                    201,
                    headers={
                        "Location": f"/v2/{name}/blobs/{mount}",
                        "Docker-Content-Digest": mount,
                    },
                )
        return self._new_session(name)

    def _upload_put(self, request: httpx.Request, name: str, upload_id: str) -> httpx.Response:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.repo != name:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", f"no upload {upload_id}")
        if request.url.params.get("_state") != upload.state:
            return _error(400, "BLOB_UPLOAD_INVALID", "upload state lost from the query")
        digest = request.url.params.get("digest", "")
        length = request.headers.get("content-length")
        if length is None or int(length) != len(request.content):
            return _error(400, "SIZE_INVALID", "Content-Length missing or wrong")
        data = upload.data + request.content
        if sha256_digest(data) != digest:
            return _error(400, "DIGEST_INVALID", f"content hashes to {sha256_digest(data)}")
        del self.uploads[upload_id]
        self.repo(name).blobs[digest] = data
        return httpx.Response(
            201,
            headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
        )

    # -- tags --------------------------------------------------------------------------------

    def _tags(self, request: httpx.Request, name: str) -> httpx.Response:
        repo = self.repos.get(name)
        if repo is None:
            return _error(404, "NAME_UNKNOWN", f"repository {name} not known")
        tags = sorted(repo.tags)
        last = request.url.params.get("last")
        if last:
            tags = [t for t in tags if t > last]
        n = request.url.params.get("n")
        headers = {}
        if n and int(n) < len(tags):
            tags = tags[: int(n)]
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        return httpx.Response(200, headers=headers, json={"name": name, "tags": tags})


def route(*fakes: FakeRegistry) -> httpx.MockTransport:
    """One MockTransport for several fakes, dispatching on the request's host (and refusing
    any other host loudly)."""
    by_host = {host: fake for fake in fakes for host in fake.hosts}

    async def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode("ascii")
        fake = by_host.get(host)
        if fake is None:
            raise AssertionError(f"request to unexpected host {host}: {request.url}")
        return unread(await fake(request))

    return httpx.MockTransport(handler)


def unread(response: httpx.Response) -> httpx.Response:
    """`response` as a socket delivers it: a body built from bytes (which httpx reads at once)
    becomes a stream still to be read, so streamed requests see what they see in production."""
    if not isinstance(response.stream, httpx.ByteStream):
        return response
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=_ChunkStream([response.content]),
        extensions=response.extensions,
    )
