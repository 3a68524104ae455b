"""The tests' own synchronous view of a registry, independent of the `sync` package.

Owns admin access to a test-bed registry (Basic credentials, or tokens minted directly with every
action on the repositories a call touches) and the plain registry calls tests need to seed a
source and to check a target. It does no retries and hides no errors: anything unexpected raises
`RawClientError`, an AssertionError, so a test fails with the registry's own answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from tests.bed.images import (
    DOCKER_FOREIGN_LAYER,
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    Image,
    sha256_digest,
)
from tests.bed.registry import RegistryServer

__all__ = ["RawClient", "RawClientError"]

# Distribution 2.8 wants "delete" for DELETE (and "*" on registry:catalog for _catalog).
_ADMIN_ACTIONS = ["pull", "push", "delete"]
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class RawClientError(AssertionError):
    """A registry call answered something the test bed did not expect."""

    def __init__(self, what: str, response: httpx.Response) -> None:
        body = "" if response.request.method == "HEAD" else response.text[:500]
        super().__init__(
            f"{what}: {response.request.method} {response.request.url} -> "
            f"{response.status_code} {body}"
        )
        self.status_code = response.status_code


class RawClient:
    """Admin access to one `RegistryServer`; use as a context manager or call `close()`."""

    def __init__(self, server: RegistryServer, *, timeout: float = 30.0) -> None:
        self.server = server
        auth: httpx.Auth | None = None
        if server.auth == "basic":
            assert server.username is not None and server.password is not None
            auth = httpx.BasicAuth(server.username, server.password)
        self._http = httpx.Client(
            base_url=server.url, auth=auth, timeout=timeout, follow_redirects=True
        )
        self._tokens: dict[frozenset[str], str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _headers(self, *repos: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        ts = self.server.token_server
        if ts is not None:
            # Distribution matches access entries by exact repository name: one entry per repo.
            key = frozenset(repos)
            token = self._tokens.get(key)
            if token is None:
                access: list[Mapping[str, object]] = [
                    {"type": "repository", "name": r, "actions": _ADMIN_ACTIONS}
                    for r in sorted(key)
                ]
                if not repos:
                    access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
                token = ts.mint(access, lifetime=3600)
                self._tokens[key] = token
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _request(
        self,
        method: str,
        url: str,
        *repos: str,
        expect: Iterable[int],
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
    ) -> httpx.Response:
        response = self._http.request(
            method, url, headers=self._headers(*repos, extra=headers), content=content
        )
        if response.status_code not in set(expect):
            raise RawClientError(what, response)
        return response

    # -- blobs -------------------------------------------------------------------------------

    def push_blob(self, repo: str, data: bytes) -> str:
        """Monolithic upload (POST, then PUT with the digest); returns the digest."""
        digest = sha256_digest(data)
        started = self._request(
            "POST", f"/v2/{repo}/blobs/uploads/", repo, expect=[202], what="start upload"
        )
        self._finish_upload(repo, started, digest, data)
        return digest

    def push_blob_stream(self, repo: str, chunks: Iterable[bytes]) -> str:
        """Streamed upload of a blob too large to hold (POST, one PATCH fed by `chunks`, then
        PUT with the digest of what was sent); returns the digest."""
        started = self._request(
            "POST", f"/v2/{repo}/blobs/uploads/", repo, expect=[202], what="start upload"
        )
        sent = hashlib.sha256()

        def hashed() -> Iterator[bytes]:
            for chunk in chunks:
                sent.update(chunk)
                yield chunk

        patched = self._request(
            "PATCH",
            str(started.url.join(started.headers["Location"])),
            repo,
            expect=[202],
            what="stream upload",
            headers={"Content-Type": "application/octet-stream"},
            content=hashed(),
        )
        digest = f"sha256:{sent.hexdigest()}"
        self._finish_upload(repo, patched, digest, b"")
        return digest

    def _finish_upload(self, repo: str, started: httpx.Response, digest: str, data: bytes) -> None:
        location = str(started.url.join(started.headers["Location"]))
        sep = "&" if "?" in location else "?"
        self._request(
            "PUT",
            f"{location}{sep}digest={quote(digest)}",
            repo,
            expect=[201],
            what=f"upload {digest}",
            headers={"Content-Type": "application/octet-stream"},
            content=data,
        )

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repo mount; True if mounted (201), False if the registry began an upload."""
        response = self._request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={quote(digest)}&from={quote(from_repo)}",
            repo,
            from_repo,
            expect=[201, 202],
            what=f"mount {digest} from {from_repo}",
        )
        if response.status_code == 202:
            self._request(
                "DELETE",
                str(response.url.join(response.headers["Location"])),
                repo,
                expect=[204],
                what="cancel upload",
            )
            return False
        return True

    def blob_exists(self, repo: str, digest: str) -> bool:
        response = self._request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", repo, expect=[200, 404], what="blob HEAD"
        )
        return response.status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        """The blob's bytes, checked against `digest`."""
        response = self._request(
            "GET",
            f"/v2/{repo}/blobs/{digest}",
            repo,
            expect=[200],
            what="blob GET",
            headers={"Accept-Encoding": "identity"},
        )
        if sha256_digest(response.content) != digest:
            raise AssertionError(f"{repo}@{digest}: blob content hashes differently")
        return response.content

    def delete_blob(self, repo: str, digest: str) -> None:
        self._request(
            "DELETE", f"/v2/{repo}/blobs/{digest}", repo, expect=[202], what="blob DELETE"
        )

    # -- manifests ---------------------------------------------------------------------------

    def push_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """PUT the exact bytes under `ref` (tag or digest); returns the digest."""
        digest = sha256_digest(data)
        response = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            repo,
            expect=[201],
            what=f"manifest PUT {repo}:{ref}",
            headers={"Content-Type": media_type},
            content=data,
        )
        answered = response.headers.get("Docker-Content-Digest")
        if answered is not None and answered != digest:
            raise AssertionError(f"registry stored {answered} for manifest bytes {digest}")
        return digest

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(exact bytes, media type without parameters, digest of the bytes)."""
        response = self._request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            repo,
            expect=[200],
            what=f"manifest GET {repo}:{ref}",
            headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
        )
        data = response.content
        digest = sha256_digest(data)
        answered = response.headers.get("Docker-Content-Digest")
        if answered is not None and answered != digest:
            raise AssertionError(f"{repo}:{ref}: header says {answered}, bytes hash to {digest}")
        if ref.startswith("sha256:") and ref != digest:
            raise AssertionError(f"{repo}@{ref}: got bytes hashing to {digest}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media_type, digest

    def head_manifest(self, repo: str, ref: str) -> str | None:
        """The digest the registry reports for `ref`, or None if absent."""
        response = self._request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            repo,
            expect=[200, 404],
            what=f"manifest HEAD {repo}:{ref}",
            headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
        )
        if response.status_code == 404:
            return None
        return response.headers["Docker-Content-Digest"]

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete by digest (Distribution removes every tag pointing at it)."""
        self._request(
            "DELETE",
            f"/v2/{repo}/manifests/{digest}",
            repo,
            expect=[202],
            what=f"manifest DELETE {repo}@{digest}",
        )

    # -- listings ----------------------------------------------------------------------------

    def tags(self, repo: str) -> list[str]:
        """All tags (following `Link` pages); [] if the repository does not exist."""
        out: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list"
        while url is not None:
            response = self._request("GET", url, repo, expect=[200, 404], what="tags list")
            if response.status_code == 404:
                return out
            out.extend(response.json().get("tags") or [])
            m = _LINK_NEXT.search(response.headers.get("Link", ""))
            url = str(response.url.join(m.group(1))) if m else None
        return out

    def catalog(self) -> list[str]:
        """Repository names (Distribution's `_catalog`)."""
        response = self._request("GET", "/v2/_catalog?n=1000", expect=[200], what="catalog")
        repos: list[str] = response.json().get("repositories") or []
        return repos

    # -- images ------------------------------------------------------------------------------

    def push_image(self, repo: str, tag: str | None, image: Image) -> str:
        """Blobs, then children by digest, then the top manifest by tag (or by digest)."""
        for digest, data in image.blobs.items():
            if not self.blob_exists(repo, digest):
                self.push_blob(repo, data)
        for manifest in image.manifests():
            if manifest is not image:
                self.push_manifest(repo, manifest.digest, manifest.manifest, manifest.media_type)
        return self.push_manifest(repo, tag or image.digest, image.manifest, image.media_type)

    def verify_image(self, repo: str, ref: str) -> set[str]:
        """Walk index -> children -> config + layers; every manifest and blob must be present
        and hash right. Returns every digest seen (foreign layers, not being there, excluded)."""
        data, media_type, digest = self.get_manifest(repo, ref)
        return self._verify(repo, data, media_type, digest, f"{repo}:{ref}")

    def _verify(self, repo: str, data: bytes, media_type: str, digest: str, path: str) -> set[str]:
        seen = {digest}
        body: dict[str, Any] = json.loads(data)
        declared = body.get("mediaType")
        if declared is not None and declared != media_type:
            raise AssertionError(f"{path}: served as {media_type}, says {declared}")
        if media_type in INDEX_TYPES:
            for entry in body["manifests"]:
                child, child_type, child_digest = self.get_manifest(repo, entry["digest"])
                where = f"{path} -> {entry['digest']}"
                if child_type != entry["mediaType"] or len(child) != entry["size"]:
                    raise AssertionError(f"{where}: descriptor does not match what was served")
                seen |= self._verify(repo, child, child_type, child_digest, where)
            return seen
        for entry in [body["config"], *body.get("layers", [])]:
            if entry["mediaType"] == DOCKER_FOREIGN_LAYER or entry.get("urls"):
                continue  # not distributable: it lives at its URLs, not in the registry
            blob = self.get_blob(repo, entry["digest"])
            if len(blob) != entry["size"]:
                raise AssertionError(f"{path}: blob {entry['digest']} has the wrong size")
            seen.add(entry["digest"])
        return seen
