"""Copying one image, every platform, digest-exactly, from one registry to another.

The algorithm, step by step (the code below follows it):

1. Read the source manifest (by tag or digest) as raw bytes and check its digest. Refuse what
   cannot be copied exactly (schema 1, foreign layers) before anything is written.
2. For an index, copy every child it lists, attestation manifests included: a child the target
   already holds by digest is skipped without reading it from the source (on Docker Hub every
   manifest GET is a pull); any other child is read by digest, its blobs copied, and it is
   pushed by digest.
3. For an image manifest, copy its config and layers, concurrently with a bound. Per blob: the
   target has it → skip; a sibling repository on the same target registry is known to have it
   → mount; else stream it from the source into a monolithic upload while hashing, and abort
   the upload unless size and sha256 match the descriptor. One digest is never uploaded to the
   same target twice at once: a second copy waits for the first. A blob that fails mid-stream
   is restarted whole (new GET, new upload session, the old one cancelled).
4. Push the top manifest last, by tag. Until then nothing points at the new content, so a tag on
   the target never refers to an image that is not fully there.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

from sync.errors import BlobMismatchError, ImageSyncError, RegistryError
from sync.oci import Descriptor, Manifest, is_digest
from sync.reference import Reference
from sync.registry import BLOB_CHUNK, BlobStream, RegistryClient, UploadSession

__all__ = ["Copier", "CopyProgress", "CopyResult", "CopyStats", "settle"]

T = TypeVar("T")

#: Blobs from this size on take one of the copier's transfer slots.
LARGE_BLOB = 1024 * 1024
#: Blobs larger than one piece (BLOB_CHUNK) and smaller than LARGE_BLOB streaming at once.
MID_BLOB_STREAMS = 16

#: Called with the number of blob bytes just sent to the target.
ProgressCallback = Callable[[int], None]


class CopyProgress(Protocol):
    """What one copy tells about its blob transfers, for a progress display."""

    def planned(self, size: int) -> None:
        """A blob of `size` bytes may have to be sent (said before the target is asked, so that
        the total is known as soon as the copy starts)."""

    def skipped(self, size: int) -> None:
        """A planned blob of `size` bytes was already there, or was mounted: not sent."""

    def sent(self, size: int) -> None:
        """`size` more bytes went to the target."""

    def done(self, ok: bool) -> None:
        """The copy ended: pushed (`ok`) or failed."""


#: The progress of the copy a task works for: tasks started inside `Copier.copy` inherit it,
#: so the bytes of a blob are counted for the copy that sends them.
_PROGRESS: contextvars.ContextVar[CopyProgress | None] = contextvars.ContextVar(
    "image_sync_copy_progress", default=None
)


@dataclass(slots=True)
class CopyStats:
    """What a copy transferred: blob bytes and counts (manifests are not counted as bytes)."""

    bytes_copied: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    manifests_pushed: int = 0


@dataclass(frozen=True, slots=True)
class CopyResult:
    digest: str
    media_type: str
    stats: CopyStats = field(default_factory=CopyStats)


@dataclass(frozen=True, slots=True)
class _Side:
    client: RegistryClient
    repository: str


class Copier:
    """Copies images; one instance per run so concurrent copies share what they learn.

    It remembers which target repositories hold which blobs (to mount rather than upload) and
    which uploads are under way (so one digest is never sent to one place twice at once).
    """

    def __init__(self, *, blob_concurrency: int = 4, progress: ProgressCallback | None = None):
        self._blob_slots = asyncio.Semaphore(blob_concurrency)
        self._stream_slots = asyncio.Semaphore(MID_BLOB_STREAMS)
        self._progress = progress
        #: Work under way, by what it makes true: ("blob", host, digest) and
        #: ("manifest", host, repository, digest). A second copy needing the same waits for it.
        self._flights: dict[tuple[str, ...], asyncio.Future[None]] = {}
        #: Source manifests read by digest in this run (small; saves Docker Hub pulls when two
        #: tags point at one image).
        self._manifests: dict[tuple[str, str, str], asyncio.Future[Manifest]] = {}
        self._holders: dict[tuple[str, str], set[str]] = {}
        #: Every task this copier started (shared flights run detached from any one copy):
        #: what `abort` cancels at the run's hard stop.
        self._tasks: set[asyncio.Future[Any]] = set()

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run `work` as a task of this copier's (shared work, detached from any one copy):
        `abort` cancels it at the run's hard stop."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(_retrieve)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def abort(self) -> None:
        """Cancel every transfer still running (each cancels its upload session on the way
        out) and wait until all have ended."""
        running = [task for task in self._tasks if not task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def copy(
        self,
        source: RegistryClient,
        source_ref: Reference,
        target: RegistryClient,
        target_ref: Reference,
        *,
        manifest: Manifest | None = None,
        progress: CopyProgress | None = None,
    ) -> CopyResult:
        """Copy `source_ref` to `target_ref` (a tag, or its digest when it has no tag).

        `manifest` may carry the source manifest already read; `progress` hears of the blobs
        this copy sends. Raises ImageSyncError; the target tag is untouched unless everything
        it would point at is in place.
        """
        # Tasks started from here on inherit it: their bytes count for this copy.
        token = _PROGRESS.set(progress)
        ok = False
        try:
            src = _Side(source, source_ref.repository)
            dst = _Side(target, target_ref.repository)
            stats = CopyStats()
            if manifest is None:
                manifest = await self._source_manifest(src, source_ref.identifier)
            if source_ref.digest and manifest.digest != source_ref.digest:
                raise ImageSyncError(f"{source_ref}: source answered {manifest.digest}")
            await self._copy_manifest_content(src, dst, manifest, stats)
            reference = target_ref.tag or manifest.digest
            await target.manifest_put(dst.repository, reference, manifest)
            stats.manifests_pushed += 1
            ok = True
            return CopyResult(manifest.digest, manifest.media_type, stats)
        finally:
            _PROGRESS.reset(token)
            if progress is not None:
                progress.done(ok)

    async def _copy_manifest_content(
        self, src: _Side, dst: _Side, manifest: Manifest, stats: CopyStats
    ) -> None:
        """Everything `manifest` refers to, so that pushing it afterwards is safe."""
        if manifest.is_index:
            # Read and check every missing child first, so an index with one uncopyable child
            # writes nothing at all.
            children = manifest.children()
            present = await settle(
                *(
                    dst.client.manifest_head(dst.repository, child.digest, for_write=True)
                    for child in children
                )
            )
            missing = [child for child, info in zip(children, present, strict=True) if not info]
            manifests = await settle(
                *(self._source_manifest(src, child.digest) for child in missing)
            )
            for child_manifest in manifests:
                _check_tree(child_manifest)
            await settle(
                *(
                    self._copy_child(src, dst, child, child_manifest, stats)
                    for child, child_manifest in zip(missing, manifests, strict=True)
                )
            )
        else:
            manifest.check_copyable()
            unique = {blob.digest: blob for blob in manifest.blobs()}
            await settle(*(self._copy_blob(src, dst, blob, stats) for blob in unique.values()))

    async def source_manifest(
        self, client: RegistryClient, repository: str, reference: str
    ) -> Manifest:
        """A source manifest through this run's cache (read once per digest)."""
        return await self._source_manifest(_Side(client, repository), reference)

    def source_manifest_read(self, host: str, repository: str, digest: str) -> Manifest | None:
        """The source manifest this run already read by `digest`, if it did (no request)."""
        pending = self._manifests.get((host, repository, digest))
        if pending is None or not pending.done() or pending.cancelled():
            return None
        return None if pending.exception() is not None else pending.result()

    async def _source_manifest(self, src: _Side, reference: str) -> Manifest:
        """A source manifest; read once per run when asked by digest, even by concurrent
        copies (on Docker Hub every manifest GET is a pull)."""
        if not is_digest(reference):
            return await src.client.manifest_get(src.repository, reference)
        key = (src.client.host, src.repository, reference)
        pending = self._manifests.get(key)
        if pending is None or (pending.done() and pending.exception() is not None):
            pending = self.start(src.client.manifest_get(src.repository, reference))
            self._manifests[key] = pending
        return await asyncio.shield(pending)

    async def _single_flight(
        self, key: tuple[str, ...], work: Callable[[], Coroutine[Any, Any, None]]
    ) -> bool:
        """Run `work` unless the same work is under way; then wait for that one instead (and
        share its failure). True when this call ran it."""
        running = self._flights.get(key)
        if running is not None and not running.done():
            await asyncio.shield(running)
            return False
        await self._fly(key, work)
        return True

    async def _fly(
        self, key: tuple[str, ...], work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run `work` as the flight for `key` (callers have checked that none is under way)."""
        task = self.start(work())
        # Shielded: a waiter's cancellation must not cancel work others share (the run's hard
        # stop cancels it through `abort`). Should the owner be cancelled, the task's failure
        # is still retrieved, not reported stray.
        self._flights[key] = task
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._flights.get(key) is task:
                del self._flights[key]

    async def _copy_child(
        self, src: _Side, dst: _Side, child: Descriptor, manifest: Manifest, stats: CopyStats
    ) -> None:
        async def work() -> None:
            await self._copy_manifest_content(src, dst, manifest, stats)
            await dst.client.manifest_put(dst.repository, child.digest, manifest)
            stats.manifests_pushed += 1

        await self._single_flight(("manifest", dst.client.host, dst.repository, child.digest), work)

    async def _copy_blob(self, src: _Side, dst: _Side, blob: Descriptor, stats: CopyStats) -> None:
        """One digest is sent to one registry once at a time: a copy that needs a blob already
        on its way waits, then finds it present (same repository) or mounts it (another)."""
        key = ("blob", dst.client.host, blob.digest)
        while (running := self._flights.get(key)) is not None and not running.done():
            with suppress(ImageSyncError):
                await asyncio.shield(running)

        async def work() -> None:
            await self._transfer_blob(src, dst, blob, stats)

        # No await since the loop saw no flight: this one is registered before anyone else
        # can look. (A flight for another repository must not stand in for ours.)
        await self._fly(key, work)

    async def _transfer_blob(
        self, src: _Side, dst: _Side, blob: Descriptor, stats: CopyStats
    ) -> None:
        """Make `dst` hold `blob`: skip, mount or stream."""
        holders_key = (dst.client.host, blob.digest)
        progress = _PROGRESS.get()
        if progress is not None:
            progress.planned(blob.size)
        if await dst.client.blob_head(dst.repository, blob.digest, for_write=True) is not None:
            self._holders.setdefault(holders_key, set()).add(dst.repository)
            stats.blobs_skipped += 1
            if progress is not None:
                progress.skipped(blob.size)
            return
        session = None
        for holder in self._mount_sources(src, dst, blob):
            try:
                session = await dst.client.blob_mount(dst.repository, blob.digest, holder)
            except RegistryError:
                continue  # some registries refuse mounts: upload instead
            if session is None:
                self._holders.setdefault(holders_key, set()).add(dst.repository)
                stats.blobs_skipped += 1
                if progress is not None:
                    progress.skipped(blob.size)
                return
            break
        if blob.size >= LARGE_BLOB:
            async with self._blob_slots:
                await self._stream_blob(src, dst, blob, stats, session)
        elif blob.size > BLOB_CHUNK:
            # Mid-sized blobs are latency-bound, not bandwidth-bound, but each holds a few
            # pieces in memory while it streams: bounded apart from the large ones.
            async with self._stream_slots:
                await self._stream_blob(src, dst, blob, stats, session)
        else:
            # Small blobs (configs, attestations, tiny layers), read whole: the connection
            # pool is their only limit.
            await self._stream_blob(src, dst, blob, stats, session)
        self._holders.setdefault(holders_key, set()).add(dst.repository)
        stats.blobs_copied += 1

    def _mount_sources(self, src: _Side, dst: _Side, blob: Descriptor) -> list[str]:
        """Repositories on the target registry known to hold the blob: the source itself when
        both sides are one registry, else those this run saw holding it. Never across
        registries (a mount from Docker Hub into Quay cannot work)."""
        holders = sorted(
            self._holders.get((dst.client.host, blob.digest), set()) - {dst.repository}
        )
        if src.client.host == dst.client.host and src.repository != dst.repository:
            holders.insert(0, src.repository)
        return holders[:1]

    async def _stream_blob(
        self,
        src: _Side,
        dst: _Side,
        blob: Descriptor,
        stats: CopyStats,
        upload: UploadSession | None,
    ) -> None:
        """Stream one blob into an upload; on a temporary failure start over, whole.

        The upload session is opened while the source is asked for the blob (one round trip
        for both, not two). A blob no larger than one piece is read whole before the upload
        starts: it would be held whole anyway, and the source's connection is free again for
        the next request instead of waiting for the upload."""
        attempt = 0
        while True:
            attempt += 1
            opening: asyncio.Future[UploadSession] | None = None
            if upload is None:
                opening = self.start(dst.client.blob_upload_start(dst.repository))
            try:
                async with src.client.blob_open(src.repository, blob.digest) as stream:
                    origin = f"{src.client.host}/{src.repository}"
                    if stream.size is not None and stream.size != blob.size:
                        raise BlobMismatchError(
                            f"blob {blob.digest} from {origin}: source sends {stream.size} "
                            f"bytes, descriptor says {blob.size}"
                        )
                    small = blob.size <= BLOB_CHUNK
                    content: AsyncIterable[bytes] = (
                        _one_piece(await _read_whole(stream, blob.size)) if small else stream
                    )
                    if small:
                        await stream.close()
                    if opening is not None:
                        upload = await opening
                        opening = None
                    assert upload is not None
                    body = self._verified(content, blob, src)
                    await dst.client.blob_upload_finish(upload, blob.digest, blob.size, body)
                stats.bytes_copied += blob.size
                return
            except asyncio.CancelledError:
                # The run's hard stop: leave no upload session open behind us (one still being
                # opened is given up on: the registry expires it).
                if opening is not None:
                    upload = _opened_now(opening)
                    opening.cancel()
                await _cancel_upload(dst.client, upload)
                raise
            except (RegistryError, BlobMismatchError) as exc:
                if opening is not None:
                    upload = await _opened(opening)
                if upload is not None:
                    await dst.client.blob_upload_cancel(upload)
                upload = None
                # A corrupt source is worth one more try (a flipped bit on the way), not more.
                retryable = exc.temporary and not (
                    isinstance(exc, BlobMismatchError) and attempt >= 2
                )
                wait = dst.client.policy.delay(attempt) if retryable else None
                if wait is None:
                    raise
                await asyncio.sleep(wait)

    async def _verified(
        self, stream: AsyncIterable[bytes], blob: Descriptor, src: _Side
    ) -> AsyncIterator[bytes]:
        """The source's chunks, hashed and counted on the way through. The last chunk is held
        back until size and sha256 match the descriptor: on a mismatch the upload is aborted
        before its last byte, so the registry never commits content that is not the
        descriptor's."""
        origin = f"{src.client.host}/{src.repository}"
        digest = hashlib.sha256()
        size = 0
        held: bytes | None = None
        progress = _PROGRESS.get()
        async for chunk in stream:
            if not chunk:
                continue
            size += len(chunk)
            if size > blob.size:
                break
            digest.update(chunk)
            if held is not None:
                if self._progress:
                    self._progress(len(held))
                if progress is not None:
                    progress.sent(len(held))
                yield held
            held = chunk
        actual = "sha256:" + digest.hexdigest()
        if size != blob.size or actual != blob.digest:
            raise BlobMismatchError(
                f"blob {blob.digest} from {origin} is corrupt: received "
                f"{'more than ' if size > blob.size else ''}{size} bytes hashing to "
                f"{actual[:19]}..., descriptor says {blob.size} bytes"
            )
        if held is not None:
            if self._progress:
                self._progress(len(held))
            if progress is not None:
                progress.sent(len(held))
            yield held


#: How long a cancelled copy may spend cancelling its upload session (best effort).
UPLOAD_CANCEL_SECONDS = 2.0


async def _opened(opening: asyncio.Future[UploadSession]) -> UploadSession | None:
    """The session an upload start opened alongside a read that failed (waited for, so that
    it can be cancelled), or None when the start failed too."""
    with suppress(ImageSyncError):
        return await opening
    return None


def _opened_now(opening: asyncio.Future[UploadSession]) -> UploadSession | None:
    """The session an upload start has opened by now, if it has."""
    if opening.done() and not opening.cancelled() and opening.exception() is None:
        return opening.result()
    return None


async def _read_whole(stream: BlobStream, size: int) -> bytes:
    """A small blob's bytes, read whole (a byte beyond `size` ends the read: the check of size
    and digest then fails on it)."""
    pieces = []
    received = 0
    async for piece in stream:
        pieces.append(piece)
        received += len(piece)
        if received > size:
            break
    return b"".join(pieces)


async def _one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _cancel_upload(client: RegistryClient, upload: UploadSession | None) -> None:
    if upload is None:
        return
    with suppress(TimeoutError, ImageSyncError):
        await asyncio.wait_for(client.blob_upload_cancel(upload), UPLOAD_CANCEL_SECONDS)


def _check_tree(manifest: Manifest) -> None:
    """Refuse an image manifest that cannot be copied (an index's children are checked when
    they are read)."""
    if not manifest.is_index:
        manifest.check_copyable()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def settle(*aws: Coroutine[Any, Any, T]) -> list[T]:
    """Run all to the end, then raise the first failure, if any.

    Nothing is cancelled half-way: a sibling that fails does not leave transfers running
    detached (work shared with other copies through single flights must finish anyway), and
    whatever completed is useful to the next run.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)
