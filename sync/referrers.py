"""Referrers: the signatures, attestations and SBOMs that refer to a mirrored digest, copied
digest-exactly after the image they refer to.

Two ways an upstream keeps them, both followed:

- Digest tags, found in the upstream's tag list (one list per repository and run, shared with
  discovery): cosign's `sha256-<hex>.sig`, `.att`, `.sbom` (any `sha256-<hex>.<suffix>`), and the
  OCI 1.1 referrers tag schema fallback `sha256-<hex>`, an index listing the manifests whose
  `subject` is that digest. Each is compared with a HEAD on both sides; equal digests mean
  present and nothing is read. A digest tag that differs is copied like an image (its manifest,
  blobs, and for a fallback index every referrer it lists, pushed by digest before the tag), so
  the target's fallback index is upstream's, byte for byte, and the next run sees equal digests.
  Only when the target's fallback index lists entries upstream's lacks are the two merged
  (upstream's entries, then the target's extra ones): nothing is ever dropped, and such a tag
  differs from upstream's on every run, which costs a manifest GET upstream each time.
- The referrers API (`GET /v2/<name>/referrers/<digest>`), where the upstream implements it.
  It is asked only when the repository's tag list holds no fallback tag (a registry that has
  the API gets none from conforming clients); whether it is implemented is asked once per
  registry host and run (one request, a 404 where it is not). Each referrer the target lacks
  is copied by digest; when the target does not answer such a push with `OCI-Subject` (it has
  no referrers API), its fallback index is made to list every referrer.

What is walked, per mirrored tag: the tag's digest, the children of an index, and recursively
the referrers found (a signature on an attestation), to `MAX_DEPTH` levels and `MAX_REFERRERS`
referrers; beyond either the tag fails with REFERRERS_LIMIT rather than stopping silently.
An index that was not read this run (it was already up to date) is read from the target, never
from the upstream, and only when a changed digest tag may belong to one of its children.

Counting: each digest tag is one referrer (a fallback index counts once, whatever it lists),
and so is each referrer found through the referrers API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sync.copy import Copier, settle
from sync.errors import (
    DEADLINE,
    PULL_BUDGET,
    ImageSyncError,
    ReferrersLimitError,
    RegistryError,
)
from sync.oci import OCI_INDEX, Manifest
from sync.reference import Reference
from sync.registry import ManifestInfo, RegistryClient, quay_absent

__all__ = [
    "MAX_DEPTH",
    "MAX_REFERRERS",
    "ReferrerCounts",
    "ReferrerJob",
    "Referrers",
    "digest_tag_subject",
    "fallback_tag",
    "is_digest_tag",
]

log = logging.getLogger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")

#: How many levels of referrers of referrers are followed (1: referrers of the image only).
MAX_DEPTH = 4
#: How many referrers one tag may bring along.
MAX_REFERRERS = 256

_DIGEST_TAG = re.compile(r"sha256-(?P<hex>[0-9a-f]{64})(?:\.(?P<suffix>[A-Za-z0-9_.-]+))?")

#: Decides, just before an upstream request, whether it may start: the run's time budget, and
#: the pull allowance when the request `pulls` (reads a manifest). Returns why not, or None.
Gate = Callable[[bool], ImageSyncError | None]


def digest_tag_subject(tag: str) -> str | None:
    """The digest a digest tag names (`sha256-<hex>` or `sha256-<hex>.<suffix>`), else None."""
    match = _DIGEST_TAG.fullmatch(tag)
    return f"sha256:{match['hex']}" if match else None


def is_digest_tag(tag: str) -> bool:
    return digest_tag_subject(tag) is not None


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for `digest`: `<alg>-<hex>`."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"


@dataclass(slots=True)
class ReferrerCounts:
    """What happened to one tag's referrers."""

    copied: int = 0
    would_copy: int = 0
    present: int = 0
    failed: int = 0
    #: The first failure (its own cause code), or None.
    error: ImageSyncError | None = None


@dataclass(frozen=True, slots=True)
class ReferrerJob:
    """One mirrored tag whose referrers to bring along."""

    source: RegistryClient
    #: The upstream repository (no tag).
    source_ref: Reference
    target: RegistryClient
    #: The target repository (no tag).
    target_ref: Reference
    #: The tag's digest (upstream's, which the target now holds unless this is a dry run).
    digest: str
    dry_run: bool
    gate: Gate

    @property
    def source_repo(self) -> str:
        return self.source_ref.repository

    @property
    def target_repo(self) -> str:
        return self.target_ref.repository


@dataclass(slots=True)
class _Walk:
    """The state of one tag's walk: digests seen, counts, what was left unread."""

    job: ReferrerJob
    read_target: bool
    counts: ReferrerCounts
    seen: set[str] = field(default_factory=set)
    #: Digest tags and API referrers handled (and counted) already, with the digests each
    #: led to: a second walk reuses them.
    done: dict[str, list[str]] = field(default_factory=dict)
    #: Fallback indexes found present and not read.
    unread_fallbacks: set[str] = field(default_factory=set)
    #: Something that may hide referrers was not read (an up-to-date index, a present
    #: fallback index): a second walk reading them from the target may find more.
    unread: bool = False
    items: int = 0


class Referrers:
    """Finds and copies referrers; one per run, shared by every tag so that requests and copies
    are made once (two tags with one digest share them)."""

    def __init__(self, copier: Copier) -> None:
        self._copier = copier
        self._tag_lists: dict[tuple[str, str], asyncio.Future[list[str]]] = {}
        self._heads: dict[tuple[str, str, str, bool], asyncio.Future[ManifestInfo | None]] = {}
        self._target_reads: dict[tuple[str, str, str], asyncio.Future[Manifest]] = {}
        #: Whether each upstream registry host implements the referrers API (asked once).
        self._api: dict[str, asyncio.Future[bool]] = {}
        #: Referrers API answers, by (host, repository, digest): None where not implemented.
        self._listings: dict[tuple[str, str, str], asyncio.Future[list[dict[str, Any]] | None]]
        self._listings = {}
        #: Digest tags or referrers being copied, by (target host, repository, tag or digest).
        self._copies: dict[tuple[str, str, str], asyncio.Future[bool]] = {}

    # -- shared, once per run ------------------------------------------------------------------

    async def tag_list(self, client: RegistryClient, repository: str) -> list[str]:
        """The repository's tag list, read at most once per run and shared by discovery and
        every tag's referrers. A failure is kept too: asking again in the same run would only
        spend requests on a registry that rate-limits tag listing (Quay) and fail the same way."""
        key = (client.host, repository)
        return await _once(
            self._tag_lists,
            key,
            lambda: client.tag_list(repository),
            self._copier.start,
            keep_failure=True,
        )

    def prefetch_tag_list(self, client: RegistryClient, repository: str) -> None:
        """Start reading the repository's tag list for `tag_list` (its failure, if any, is
        kept for the callers of `tag_list`: nothing is raised here)."""
        key = (client.host, repository)
        if key not in self._tag_lists:
            self._tag_lists[key] = self._copier.start(_run(lambda: client.tag_list(repository)))

    async def _head(
        self, client: RegistryClient, repository: str, reference: str, *, write: bool = False
    ) -> ManifestInfo | None:
        key = (client.host, repository, reference, write)
        return await _once(
            self._heads,
            key,
            lambda: _head_or_none(client, repository, reference, write),
            self._copier.start,
        )

    async def _target_manifest(self, job: ReferrerJob, reference: str) -> Manifest:
        key = (job.target.host, job.target_repo, reference)
        return await _once(
            self._target_reads,
            key,
            lambda: job.target.manifest_get(job.target_repo, reference),
            self._copier.start,
        )

    async def _listing(self, job: ReferrerJob, digest: str) -> list[dict[str, Any]] | None:
        key = (job.source.host, job.source_repo, digest)
        return await _once(
            self._listings,
            key,
            lambda: job.source.referrers_list(job.source_repo, digest),
            self._copier.start,
        )

    # -- one tag -------------------------------------------------------------------------------

    async def sync(self, job: ReferrerJob) -> ReferrerCounts:
        """Bring the tag's referrers along (or count what a dry run would copy). Failures of
        single referrers are counted and the first kept in `error`; a refusal by the gate (time
        budget, pull allowance) and an upstream 429 are raised, the engine defers the tag."""
        tags = await self.tag_list(job.source, job.source_repo)
        by_subject = _digest_tags(tags)
        use_api = await self._upstream_has_api(job, tags)
        counts = ReferrerCounts()
        walk = _Walk(job, read_target=use_api, counts=counts)
        await self._walk(walk, by_subject, use_api)
        if walk.unread and await self._changed_elsewhere(job, by_subject, walk.seen):
            # A digest tag changed whose subject is on the target but not among what this
            # walk saw: it may belong to a child of an index not read (already up to date), or
            # to a referrer listed in a fallback index not read. Read those from the target.
            walk.read_target, walk.seen, walk.unread = True, set(), False
            await self._walk(walk, by_subject, use_api)
        return counts

    async def _walk(self, walk: _Walk, by_subject: dict[str, list[str]], use_api: bool) -> None:
        job = walk.job
        frontier = [job.digest]
        walk.seen.add(job.digest)
        children = await self._children(walk, job.digest)
        for child in children:
            if child not in walk.seen:
                walk.seen.add(child)
                frontier.append(child)
        for depth in range(MAX_DEPTH + 1):
            if not frontier:
                return
            found: list[list[str]] = await settle(
                *(self._subject(walk, subject, by_subject, use_api) for subject in frontier)
            )
            frontier = []
            for digests in found:
                for digest in digests:
                    if digest not in walk.seen:
                        walk.seen.add(digest)
                        frontier.append(digest)
            if frontier and depth == MAX_DEPTH:
                limit = ReferrersLimitError(
                    f"referrers nest deeper than {MAX_DEPTH} levels below {job.digest}"
                )
                _fail(walk.counts, limit, len(frontier))

    async def _children(self, walk: _Walk, digest: str) -> list[str]:
        """The children of the tag's manifest when it is an index: from this run's copy, else
        read from the target when the walk may (never from the upstream: a pull)."""
        job = walk.job
        manifest = self._copier.source_manifest_read(job.source.host, job.source_repo, digest)
        if manifest is None:
            if not walk.read_target:
                walk.unread = True
                return []
            try:
                manifest = await self._target_manifest(job, digest)
            except RegistryError as exc:
                if not exc.not_found:
                    raise
                return []  # a dry run: the target does not hold the image yet
        return [child.digest for child in manifest.children()]

    async def _subject(
        self, walk: _Walk, subject: str, by_subject: dict[str, list[str]], use_api: bool
    ) -> list[str]:
        """Bring along what refers to `subject`; returns the referrers' own digests."""
        tags = by_subject.get(subject, [])
        results = await settle(*(self._digest_tag(walk, tag, subject) for tag in tags))
        found = [digest for digests in results for digest in digests]
        if use_api:
            found += await self._api_referrers(walk, subject)
        return found

    def _count(self, walk: _Walk) -> bool:
        """Count one more referrer; False (and a failure) beyond the bound."""
        walk.items += 1
        if walk.items > MAX_REFERRERS:
            if walk.items == MAX_REFERRERS + 1:
                limit = ReferrersLimitError(
                    f"more than {MAX_REFERRERS} referrers for {walk.job.digest}"
                )
                _fail(walk.counts, limit, 1)
            return False
        return True

    # -- digest tags ---------------------------------------------------------------------------

    async def _digest_tag(self, walk: _Walk, tag: str, subject: str) -> list[str]:
        job = walk.job
        if tag in walk.done:
            found = walk.done[tag]
            if tag in walk.unread_fallbacks and walk.read_target:
                walk.unread_fallbacks.discard(tag)
                try:
                    found = found + _entries(await self._target_manifest(job, tag))
                except ImageSyncError as exc:
                    if _stops_the_tag(exc, job):
                        raise
                    _fail(walk.counts, exc, 1)
            return found
        walk.done[tag] = []
        if not self._count(walk):
            return []
        found = await self._digest_tag_once(walk, tag, subject)
        walk.done[tag] = found
        return found

    async def _digest_tag_once(self, walk: _Walk, tag: str, subject: str) -> list[str]:
        job = walk.job
        try:
            up, down = await settle(
                self._head(job.source, job.source_repo, tag),
                self._head(job.target, job.target_repo, tag),
            )
            if up is None:
                return []  # deleted upstream since the list was read
            found = [up.digest]
            is_fallback = tag == fallback_tag(subject)
            if down is not None and down.digest == up.digest:
                walk.counts.present += 1
                if is_fallback:
                    if walk.read_target:
                        return found + _entries(await self._target_manifest(job, tag))
                    walk.unread = True
                    walk.unread_fallbacks.add(tag)
                return found
            if job.dry_run:
                walk.counts.would_copy += 1
                return found
            copied = await self._once_copy(job, tag, lambda: self._copy_tag(job, tag, up, down))
            walk.counts.copied += 1 if copied else 0
            walk.counts.present += 0 if copied else 1
            if is_fallback:
                # Its entries are on the target now, and were read upstream by the copy.
                found += _entries(await self._target_manifest_fresh(job, tag))
            return found
        except ImageSyncError as exc:
            if _stops_the_tag(exc, job):
                raise
            log.error(
                "referrer %s of %s failed: %s",
                tag,
                subject,
                exc,
                extra={"event": "referrer_failed", "code": exc.code, "referrer": tag},
            )
            _fail(walk.counts, exc, 1)
            return []

    async def _target_manifest_fresh(self, job: ReferrerJob, reference: str) -> Manifest:
        self._target_reads.pop((job.target.host, job.target_repo, reference), None)
        return await self._target_manifest(job, reference)

    async def _copy_tag(
        self, job: ReferrerJob, tag: str, up: ManifestInfo, down: ManifestInfo | None
    ) -> bool:
        """Copy one digest tag; a fallback index the target holds with extra entries is merged.
        False when nothing needed pushing (the target's merged index is already complete)."""
        refusal = job.gate(True)
        if refusal is not None:
            raise refusal
        source_ref = job.source_ref.with_tag(tag).with_digest(up.digest)
        target_ref = job.target_ref.with_tag(tag)
        subject = digest_tag_subject(tag)
        if down is not None and subject is not None and tag == fallback_tag(subject):
            theirs = await self._target_manifest(job, tag)
            ours = await self._copier.source_manifest(job.source, job.source_repo, up.digest)
            merged = _merge(ours, theirs)
            if merged is not ours:
                if merged.digest == theirs.digest:
                    return False
                log.warning(
                    "%s/%s:%s lists referrers upstream's index lacks; merged (this tag now "
                    "differs from upstream's and costs a manifest GET upstream on every run)",
                    job.target.host,
                    job.target_repo,
                    tag,
                    extra={"event": "referrers_merged", "referrer": tag},
                )
                await self._copier.copy(
                    job.source,
                    job.source_ref.with_tag(tag),
                    job.target,
                    target_ref,
                    manifest=merged,
                )
                return True
        await self._copier.copy(job.source, source_ref, job.target, target_ref)
        return True

    async def _once_copy(
        self, job: ReferrerJob, key: str, work: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Run `work` unless another tag's walk already did or is doing it (then wait for
        that one). True when this call did it and it pushed something."""
        full = (job.target.host, job.target_repo, key)
        running = self._copies.get(full)
        if running is not None and not (running.done() and running.exception() is not None):
            await asyncio.shield(running)
            return False
        task = self._copier.start(_run(work))
        self._copies[full] = task
        return await asyncio.shield(task)

    async def _changed_elsewhere(
        self, job: ReferrerJob, by_subject: dict[str, list[str]], seen: set[str]
    ) -> bool:
        """Whether some digest tag whose subject was not walked differs between the sides and
        names a subject the target holds (so it may be part of this tag's tree)."""
        others = [(s, t) for s, tags in by_subject.items() if s not in seen for t in tags]
        if not others:
            return False

        async def changed(subject: str, tag: str) -> bool:
            up, down = await settle(
                self._head(job.source, job.source_repo, tag),
                self._head(job.target, job.target_repo, tag),
            )
            if up is None or (down is not None and down.digest == up.digest):
                return False
            return await self._head(job.target, job.target_repo, subject) is not None

        try:
            return any(await settle(*(changed(s, t) for s, t in others)))
        except ImageSyncError as exc:
            if _stops_the_tag(exc, job):
                raise
            return True  # cannot tell: look closer rather than miss one

    # -- the referrers API ---------------------------------------------------------------------

    async def _upstream_has_api(self, job: ReferrerJob, tags: list[str]) -> bool:
        """Whether to ask the upstream's referrers API: not when the repository's tag list
        shows the tag schema in use (a fallback tag); else whether the registry implements
        it, asked once per registry host and run (a 404 means it does not)."""
        if any(_DIGEST_TAG.fullmatch(tag) and "." not in tag for tag in tags):
            return False
        refusal = job.gate(False)
        if refusal is not None:
            raise refusal

        async def probe() -> bool:
            return await self._listing(job, job.digest) is not None

        return await _once(self._api, job.source.host, probe, self._copier.start)

    async def _api_referrers(self, walk: _Walk, subject: str) -> list[str]:
        job = walk.job
        try:
            refusal = job.gate(False)
            if refusal is not None:
                raise refusal
            listed = await self._listing(job, subject) or []
        except ImageSyncError as exc:
            if _stops_the_tag(exc, job):
                raise
            _fail(walk.counts, exc, 1)
            return []
        if not listed:
            return []
        digests = [str(entry["digest"]) for entry in listed]
        results = await settle(*(self._api_referrer(walk, digest) for digest in digests))
        if not job.dry_run and None not in results:
            await self._keep_fallback(walk, subject, listed, pushed=any(results))
        return [d for d, result in zip(digests, results, strict=True) if result is not None]

    async def _api_referrer(self, walk: _Walk, digest: str) -> bool | None:
        """Copy one referrer by digest. True: copied, False: present (or a dry run's
        would-copy), None: failed or over the bound."""
        job = walk.job
        if digest in walk.done:
            return False
        walk.done[digest] = []
        if not self._count(walk):
            return None
        try:
            held = await self._head(job.target, job.target_repo, digest, write=True)
            if held is not None:
                walk.counts.present += 1
                return False
            if job.dry_run:
                walk.counts.would_copy += 1
                return False

            async def copy() -> bool:
                refusal = job.gate(True)
                if refusal is not None:
                    raise refusal
                await self._copier.copy(
                    job.source, job.source_ref.with_digest(digest), job.target, job.target_ref
                )
                return True

            copied = await self._once_copy(job, digest, copy)
            walk.counts.copied += 1 if copied else 0
            walk.counts.present += 0 if copied else 1
            return copied
        except ImageSyncError as exc:
            if _stops_the_tag(exc, job):
                raise
            _fail(walk.counts, exc, 1)
            return None

    async def _keep_fallback(
        self, walk: _Walk, subject: str, listed: list[dict[str, Any]], *, pushed: bool
    ) -> None:
        """On a target without the referrers API, make its fallback index list `listed`.

        A target that answered a push of a referrer with `OCI-Subject` keeps its own list.
        Otherwise its fallback index is read (a GET on the target, never upstream) and
        entries it lacks are appended; its own entries are never dropped."""
        job = walk.job
        if pushed and job.target.answers_subject(job.target_repo):
            return
        tag = fallback_tag(subject)
        try:
            held = await self._head(job.target, job.target_repo, tag, write=True)
            theirs = await self._target_manifest_fresh(job, tag) if held else None
            merged = _fallback_with(theirs, listed)
            if theirs is not None and merged.digest == theirs.digest:
                return
            if job.target.answers_subject(job.target_repo):
                return
            await job.target.manifest_put(job.target_repo, tag, merged)
        except ImageSyncError as exc:
            if _stops_the_tag(exc, job):
                raise
            _fail(walk.counts, exc, 1)


# -- helpers ----------------------------------------------------------------------------------


def _digest_tags(tags: Iterable[str]) -> dict[str, list[str]]:
    """Digest tags by the digest they name, in list order."""
    out: dict[str, list[str]] = {}
    for tag in tags:
        subject = digest_tag_subject(tag)
        if subject is not None:
            out.setdefault(subject, []).append(tag)
    return out


def _entries(manifest: Manifest) -> list[str]:
    return [child.digest for child in manifest.children()]


def _merge(ours: Manifest, theirs: Manifest) -> Manifest:
    """Upstream's fallback index, or, when the target's lists entries upstream's lacks, a new
    index of upstream's entries followed by the target's extra ones (never dropping one).
    Returns `ours` itself when no merge is needed."""
    have = {child.digest for child in ours.children()}
    extra = [c for c in _raw_entries(theirs) if c.get("digest") not in have]
    if not extra:
        return ours
    doc = json.loads(ours.raw)
    doc["manifests"] = list(doc.get("manifests") or []) + extra
    return _index(doc)


def _fallback_with(theirs: Manifest | None, listed: list[dict[str, Any]]) -> Manifest:
    """The target's fallback index with every referrer of `listed` it lacks appended (an index
    of only those when it has none)."""
    entries = _raw_entries(theirs) if theirs is not None else []
    have = {entry.get("digest") for entry in entries}
    for descriptor in listed:
        if descriptor.get("digest") not in have:
            entries.append(descriptor)
            have.add(descriptor.get("digest"))
    doc: dict[str, Any] = (
        json.loads(theirs.raw)
        if theirs is not None
        else {"schemaVersion": 2, "mediaType": OCI_INDEX}
    )
    doc["manifests"] = entries
    return _index(doc)


def _raw_entries(manifest: Manifest) -> list[dict[str, Any]]:
    doc = json.loads(manifest.raw)
    items = doc.get("manifests") if isinstance(doc, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _index(doc: dict[str, Any]) -> Manifest:
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return Manifest.parse(raw, OCI_INDEX)


def _fail(counts: ReferrerCounts, error: ImageSyncError, how_many: int) -> None:
    counts.failed += how_many
    if counts.error is None:
        counts.error = error


def _stops_the_tag(error: ImageSyncError, job: ReferrerJob) -> bool:
    """A refusal of the gate (time budget, pull allowance) or the upstream's own 429: the
    whole tag is deferred, not failed."""
    if error.temporary and error.code in {DEADLINE, PULL_BUDGET}:
        return True
    # The error says whose client sent the request (a token service's 429 included).
    return (
        isinstance(error, RegistryError)
        and error.rate_limited
        and error.registry == job.source.host
    )


async def _head_or_none(
    client: RegistryClient, repository: str, reference: str, write: bool
) -> ManifestInfo | None:
    """A manifest HEAD; None when absent (Quay's 401 for a repository too: `quay_absent`)."""
    try:
        return await client.manifest_head(repository, reference, for_write=write)
    except RegistryError as exc:
        if exc.not_found or quay_absent(exc):
            return None
        raise


async def _once(
    cache: dict[_K, asyncio.Future[_V]],
    key: _K,
    make: Callable[[], Awaitable[_V]],
    start: Callable[[Coroutine[Any, Any, _V]], asyncio.Future[_V]],
    *,
    keep_failure: bool = False,
) -> _V:
    """One request per key and run, shared by concurrent callers; a failure is not kept unless
    `keep_failure`. `start` runs it as a task the run's hard stop can cancel (the copier's)."""
    pending = cache.get(key)
    failed = pending is not None and pending.done() and pending.exception() is not None
    if pending is None or (failed and not keep_failure):
        pending = start(_run(make))
        cache[key] = pending
    return await asyncio.shield(pending)


async def _run(make: Callable[[], Awaitable[_V]]) -> _V:
    return await make()
