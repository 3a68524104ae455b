"""One run: for each image and tag, compare, discover, copy; then one report.

Per tag: HEAD upstream and HEAD target (a HEAD costs no Docker Hub pull); equal digests mean up
to date and nothing else is asked. Otherwise the tag is copied, unless this is a dry run, the
run's time budget is spent, or the upstream pull allowance fell below its floor (then the tag is
`deferred` and the next run picks it up). A failure in one tag never stops the others.

Time: after the soft deadline nothing new starts (discovery, comparison or copy: the rest is
`deferred`); at the hard stop everything still in flight is cancelled, uploads included (their
sessions are cancelled, best effort), and the report is built from what each tag had reached:
a copy or comparison cut off is `failed` with `DEADLINE`, a tag still waiting is `deferred`.
A tag whose registry (or its token service) is down for the run fails at once with that
host's cause (`UNREACHABLE`, `TIMEOUT`), deadline or not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from sync.auth import pull_scope
from sync.config import Config, ImageConfig
from sync.copy import Copier, CopyProgress, CopyResult, settle
from sync.errors import (
    DEADLINE,
    INTERNAL,
    PULL_BUDGET,
    TIMEOUT,
    AuthenticationError,
    DeadlineExceeded,
    ImageSyncError,
    ManifestError,
    PullBudgetExhausted,
    RateLimit,
    RegistryError,
    UpstreamMissingError,
)
from sync.login import CredentialProvider
from sync.oci import Descriptor
from sync.reference import Reference
from sync.referrers import ReferrerJob, Referrers
from sync.registry import (
    MAX_CONNECTIONS,
    HostSettings,
    ManifestInfo,
    Registries,
    RegistryClient,
    probe_tls,
    quay_absent,
)
from sync.report import (
    ErrorInfo,
    ImageReport,
    ReferrerReport,
    Report,
    TagAction,
    TagReport,
    TagState,
    build_report,
)
from sync.retry import Timeouts
from sync.versions import discovery_candidates, select_new_tags

__all__ = [
    "DiscoveredTag",
    "Engine",
    "RunOptions",
    "hard_stop_after",
    "insecure_hosts",
    "registries_for",
]

#: Makes the progress display of one copy, given what it copies ("image:tag" or a reference).
ProgressFactory = Callable[[str], CopyProgress]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What one run does. `images`/`tags` narrow it (None: all); `compare_only` is the `status`
    command (no writes, no discovery); `deadline` is seconds from the start after which nothing
    new starts (discovery, comparison, copy); `pull_floor` is the upstream pull allowance
    below which copies are deferred."""

    images: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    dry_run: bool = False
    discover: bool = True
    compare_only: bool = False
    deadline: float | None = None
    #: Seconds from the start after which all work still in flight is cancelled (copies and
    #: comparisons reported failed with DEADLINE, so the report is still complete); None:
    #: never. `hard_stop_after(deadline)` is the usual value.
    hard_deadline: float | None = None
    pull_floor: int = 10
    #: Copies under way at once per upstream host. A copy of a small image is a chain of about
    #: nine round trips (compare, index, children, blob checks, uploads, manifests): over a
    #: slow network, copies at once are what sets the pace.
    concurrency: int = 16


#: After the soft deadline, copies already running get this share of the budget to finish
#: before the hard stop, within [HARD_STOP_MIN_GRACE, HARD_STOP_MAX_GRACE] seconds.
HARD_STOP_SHARE = 0.25
HARD_STOP_MIN_GRACE = 5.0
HARD_STOP_MAX_GRACE = 180.0


#: A registry that has left a request unanswered this long at the hard stop is what held the
#: tags that needed it up (healthy registries answer metadata requests well within it).
SILENT_SECONDS = 2.0


def hard_stop_after(deadline: float) -> float:
    """Seconds from the start to the hard stop of a run whose soft deadline is `deadline`:
    1500 s gives 1680 s, 20 s gives 25 s."""
    grace = min(HARD_STOP_MAX_GRACE, max(HARD_STOP_MIN_GRACE, deadline * HARD_STOP_SHARE))
    return deadline + grace


#: Tags compared at once per upstream host (a manifest HEAD on each side; no pulls): as many as
#: a registry client keeps connections, so a warm run costs a few rounds of HEADs, not one
#: round per `RunOptions.concurrency` tags. A slot is held for the comparison only: copies
#: are bounded by `concurrency`, and a tag's referrers wait for nothing but their requests.
COMPARE_CONCURRENCY = MAX_CONNECTIONS

#: Docker Hub pulls one copy is assumed to spend while it runs (index + children), reserved
#: against the announced allowance so that concurrent copies don't overspend it together.
PULLS_PER_COPY = 4


@dataclass(frozen=True, slots=True)
class DiscoveredTag:
    """One tag of the discovery window: whether it is configured, whether the target has it."""

    tag: str
    configured: bool
    on_target: bool


@dataclass(slots=True)
class _Work:
    """One tag of one image, and how far the run got with it (read at the hard stop)."""

    image: ImageConfig
    tag: str
    discovered: bool
    #: waiting (not started), comparing (manifest HEADs), queued (for a copy slot), copying,
    #: referrers, done.
    phase: str = "waiting"
    #: The tag's entry once its image is settled, before its referrers.
    image_report: TagReport | None = None
    state: TagState | None = None
    upstream_digest: str | None = None
    target_digest: str | None = None
    report: TagReport | None = None
    #: At the hard stop: the tag's registries that had left a request unanswered, how long.
    silent: dict[str, float] = field(default_factory=dict)

    def cut_off(self) -> TagReport:
        """The entry of a tag the hard stop interrupted: what it got to, and why it ended.
        A tag not yet copying whose registry had left a request unanswered for a while failed
        because of that registry (TIMEOUT), not because of the deadline."""
        if self.report is not None:
            return self.report
        silent = self._silent_host()
        if self.phase == "referrers" and self.image_report is not None:
            cut = silent or DeadlineExceeded("referrers cut off at the run's hard stop")
            return self.image_report.model_copy(update={"action": "failed", "error": _info(cut)})
        error: ImageSyncError
        action: TagAction = "failed"
        if self.phase in {"waiting", "comparing"} and silent is not None:
            # Waiting for a slot held by requests to that host counts too: it is what held
            # the tag up, not the budget.
            error = silent
        elif self.phase == "waiting":
            error = DeadlineExceeded("time budget spent before this tag started")
            action = "deferred"
        elif self.phase == "queued":
            error = DeadlineExceeded("time budget spent before the copy could start")
            action = "deferred"
        else:
            what = "copy" if self.phase == "copying" else "comparison"
            error = DeadlineExceeded(f"{what} cut off at the run's hard stop")
        return TagReport(
            tag=self.tag,
            discovered=self.discovered,
            state=self.state,
            action=action,
            upstream_digest=self.upstream_digest,
            target_digest=self.target_digest,
            error=_info(error),
        )

    def _silent_host(self) -> RegistryError | None:
        """The TIMEOUT of the tag's registry that had left a request unanswered longest, if any:
        the real cause of a tag the hard stop found waiting on it."""
        if not self.silent:
            return None
        return _unanswered(*max(self.silent.items(), key=lambda item: item[1]))


def _unanswered(host: str, waited: float) -> RegistryError:
    """A registry that had left a request unanswered for `waited` seconds at the hard stop."""
    return RegistryError(
        f"{host} had not answered for {waited:.1f}s when the run's hard stop came",
        kind=TIMEOUT,
        temporary=True,
        registry=host,
    )


@dataclass(slots=True)
class _ImageRun:
    image: ImageConfig
    work: list[_Work]
    discovery_error: ImageSyncError | None = None
    #: discovery: not yet, running, done.
    discovery: str = "not yet"
    #: At the hard stop: how long the upstream had left a request unanswered, if it had.
    silent: float | None = None

    def report(self) -> ImageReport:
        error = self.discovery_error
        if error is None and self.discovery == "running":
            if self.silent is not None:
                error = _unanswered(self.image.upstream_ref.host, self.silent)
            else:
                error = DeadlineExceeded("tag discovery cut off at the run's hard stop")
        return ImageReport(
            name=self.image.name,
            upstream=self.image.upstream,
            target=self.image.target,
            tags=tuple(work.cut_off() for work in self.work),
            discovery_error=_info(error) if error else None,
        )


class Engine:
    """Runs syncs for one config with one set of registry clients."""

    def __init__(
        self,
        config: Config,
        registries: Registries,
        *,
        progress: ProgressFactory | None = None,
        blob_concurrency: int = 4,
        credentials: CredentialProvider | None = None,
    ) -> None:
        self.config = config
        self.registries = registries
        #: Who looks up the registries' credentials (the provider the clients were made with),
        #: for checks that ask before any registry does (`check-deps`).
        self.credentials = credentials
        self._progress = progress
        self._copier = Copier(blob_concurrency=blob_concurrency)
        self._referrers = Referrers(self._copier)
        #: Upstream pulls reserved by copies under way, per registry host.
        self._pulls_reserved: dict[str, int] = {}
        #: Upstream hosts with a pull allowance that answered with 429 in this run.
        self._exhausted: set[str] = set()
        #: Whether some failure of the current run is temporary (the report's `retryable`).
        self._temporary_failure = False

    # -- the run ------------------------------------------------------------------------------

    async def run(self, options: RunOptions | None = None) -> Report:
        options = options or RunOptions()
        started = datetime.now(UTC)
        clock0 = time.monotonic()
        deadline = clock0 + options.deadline if options.deadline is not None else None
        hard = clock0 + options.hard_deadline if options.hard_deadline is not None else None
        slots: dict[str, asyncio.Semaphore] = {}
        copy_slots: dict[str, asyncio.Semaphore] = {}
        self._temporary_failure = False
        runs = []
        for image in self._select_images(options.images):
            work = [_Work(image, tag, False) for tag in image.tags]
            if options.tags is not None:
                work = [w for w in work if w.tag in options.tags]
            runs.append(_ImageRun(image, work))

        async def guarded(item: _Work) -> None:
            host = item.image.upstream_ref.host
            slot = slots.setdefault(host, asyncio.Semaphore(COMPARE_CONCURRENCY))
            copy_slot = copy_slots.setdefault(host, asyncio.Semaphore(options.concurrency))
            try:
                report = await self._tag(item, options, deadline, slot, copy_slot)
                item.image_report, item.phase = report, "referrers"
                item.report = await self._tag_referrers(item, report, options, deadline)
            except Exception as exc:  # a bug must cost one tag, not the run
                log.exception("%s:%s failed unexpectedly", item.image.name, item.tag)
                item.report = TagReport(
                    tag=item.tag,
                    discovered=item.discovered,
                    state=item.state,
                    action="failed",
                    error=ErrorInfo(code=INTERNAL, message=f"internal error: {type(exc).__name__}"),
                )
            item.phase = "done"

        async def discover(run: _ImageRun) -> None:
            image = run.image
            if deadline is not None and time.monotonic() >= deadline:
                run.discovery_error = DeadlineExceeded(
                    "tag discovery not started: time budget spent"
                )
                return
            run.discovery = "running"
            try:
                found, run.discovery_error = await self._discover_work(image, options)
            except Exception as exc:  # a bug must cost one discovery, not the run
                log.exception("%s: discovery failed unexpectedly", image.name)
                found = []
                run.discovery_error = ImageSyncError(f"internal error: {type(exc).__name__}")
            run.discovery = "done"
            if run.discovery_error is not None and run.discovery_error.temporary:
                self._temporary_failure = True
            run.work += found
            await asyncio.gather(*(guarded(w) for w in found))

        async def one_image(run: _ImageRun) -> None:
            # The configured tags are compared while discovery lists the upstream's tags.
            jobs = [guarded(w) for w in run.work]
            image = run.image
            if options.discover and not options.compare_only and image.discovers_tags:
                jobs.insert(0, discover(run))
            elif (
                image.effective_referrers
                and run.work
                and (deadline is None or time.monotonic() < deadline)
            ):
                # The referrers of every tag need the upstream's tag list: read while the
                # tags are compared, not after the first comparison (one round trip less).
                self._referrers.prefetch_tag_list(
                    self._client(image.upstream_ref.host), image.upstream_ref.repository
                )
            await asyncio.gather(*jobs)

        tasks = [asyncio.create_task(one_image(run)) for run in runs]
        if tasks:
            timeout = None if hard is None else max(hard - time.monotonic(), 0.0)
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                silent = self._silent_hosts()
                await self._stop(pending)
                for run in runs:
                    run.silent = silent.get(run.image.upstream_ref.host)
                    for item in run.work:
                        item.silent = {
                            h: silent[h]
                            for h in (item.image.upstream_ref.host, item.image.target_ref.host)
                            if h in silent
                        }
                        # Cut off while it ran, or held up by a silent host: temporary.
                        if item.report is None and (
                            item.phase not in {"waiting", "queued"} or item.silent
                        ):
                            self._temporary_failure = True
        image_reports = [run.report() for run in runs]
        report = build_report(
            image_reports,
            dry_run=options.dry_run or options.compare_only,
            started_at=started,
            duration_s=time.monotonic() - clock0,
            rate_limit=self._rate_limit(),
            command="status" if options.compare_only else "sync",
            temporary_failure=self._temporary_failure,
        )
        s = report.summary
        # Severity follows the outcome, so that alerts can key on it.
        level = {"ok": logging.INFO, "partial": logging.WARNING}.get(report.status, logging.ERROR)
        if options.compare_only:
            level = logging.INFO
        log.log(
            level,
            ("status %s" if options.compare_only else "run %s")
            + ": %d tags, %d up to date, %d copied, %d failed, %d deferred, "
            "%d discovered, %d bytes in %.1fs",
            report.status,
            s.tags,
            s.up_to_date,
            s.copied,
            s.failed,
            s.deferred,
            s.discovered,
            s.bytes_copied,
            report.duration_s,
            extra={"event": "run_finished", "status": report.status, "summary": s.model_dump()},
        )
        return report

    def _silent_hosts(self) -> dict[str, float]:
        """Registry hosts (by config name) that had a request waiting for an answer for
        `SILENT_SECONDS` (or half the metadata timeout, if less) or more: at the hard stop,
        the cause of what is held up there."""
        silent = {}
        for host, client in self.registries.clients.items():
            waited = max(
                (client.health.silent_for(h) for h in client.hosts()),
                default=0.0,
            )
            if waited >= min(SILENT_SECONDS, client.timeouts.metadata / 2):
                silent[host] = waited
        return silent

    async def _stop(self, pending: set[asyncio.Task[None]]) -> None:
        """The hard stop: cancel every image's work and every transfer the copier runs (their
        upload sessions are cancelled on the way out), and wait until all of it has ended, so
        that nothing writes after the report."""
        log.warning(
            "hard stop: cancelling the work still in flight",
            extra={"event": "hard_stop", "code": DeadlineExceeded.code},
        )
        for task in pending:
            task.cancel()
        await self._copier.abort()
        await asyncio.gather(*pending, return_exceptions=True)

    def _select_images(self, names: Sequence[str] | None) -> list[ImageConfig]:
        if names is None:
            return list(self.config.images)
        return [self.config.image(name) for name in names]

    def _rate_limit(self) -> RateLimit | None:
        """The tightest pull allowance any upstream registry announced."""
        limits = [c.rate_limit for c in self.registries.clients.values() if c.rate_limit]
        return min(limits, key=lambda r: r.remaining) if limits else None

    async def _discover_work(
        self, image: ImageConfig, options: RunOptions
    ) -> tuple[list[_Work], ImageSyncError | None]:
        """The newest version tags upstream within the image's window, minus configured ones;
        or the error that kept them from being listed (reported on the image)."""
        try:
            # Read once per run, shared with the referrers (their digest tags).
            tags = await self._referrers.tag_list(
                self._client(image.upstream_ref.host), image.upstream_ref.repository
            )
        except ImageSyncError as exc:
            log.error(
                "%s: listing upstream tags failed: %s",
                image.name,
                exc,
                extra={"event": "discovery_failed", "image": image.name, "code": exc.code},
            )
            return [], exc
        chosen = select_new_tags(
            tags,
            limit=image.effective_max_tags_to_check,
            pattern=image.tag_regex,
            exclude=set(image.tags),
        )
        if options.tags is not None:
            chosen = [tag for tag in chosen if tag in options.tags]
        for tag in chosen:
            log.debug("%s: discovered upstream tag %s", image.name, tag)
        return [_Work(image, tag, True) for tag in chosen], None

    def _client(self, host: str) -> RegistryClient:
        return self.registries.client(host)

    async def _tag(
        self,
        work: _Work,
        options: RunOptions,
        deadline: float | None,
        compare_slot: asyncio.Semaphore,
        copy_slot: asyncio.Semaphore,
    ) -> TagReport:
        """Compare the tag, holding one of the upstream host's compare slots until the
        comparison is over (a tag waiting for a copy slot leaves its compare slot to the next
        tag), and copy it when it differs, holding a copy slot."""
        await compare_slot.acquire()
        held = True

        def compared() -> None:
            nonlocal held
            if held:
                held = False
                compare_slot.release()

        try:
            return await self._compare_and_copy(work, options, deadline, copy_slot, compared)
        finally:
            compared()

    async def _compare_and_copy(
        self,
        work: _Work,
        options: RunOptions,
        deadline: float | None,
        copy_slot: asyncio.Semaphore,
        compared: Callable[[], None],
    ) -> TagReport:
        image, tag = work.image, work.tag
        fields: dict[str, object] = {"image": image.name, "tag": tag, "discovered": work.discovered}
        up: ManifestInfo | None = None
        down: ManifestInfo | None = None

        def entry(
            state: TagState | None, action: TagAction, error: ImageSyncError | None = None
        ) -> TagReport:
            return TagReport(
                tag=tag,
                discovered=work.discovered,
                state=state,
                action=action,
                upstream_digest=up.digest if up else None,
                target_digest=down.digest if down else None,
                error=_info(error) if error else None,
            )

        def failed(error: ImageSyncError, state: TagState | None) -> TagReport:
            if error.temporary:
                self._temporary_failure = True
            log.error(
                "%s:%s failed: %s",
                image.name,
                tag,
                error,
                extra={**fields, "action": "failed", "code": error.code},
            )
            return entry(state, "failed", error)

        upstream = self._client(image.upstream_ref.host)
        target = self._client(image.target_ref.host)
        try:
            # A host known to be down fails its tags with its cause, deadline or not.
            upstream.check_up()
            target.check_up()
        except ImageSyncError as exc:
            return failed(exc, None)
        if deadline is not None and time.monotonic() >= deadline:
            error = DeadlineExceeded("time budget spent before this tag started")
            log.warning("%s:%s deferred: %s", image.name, tag, error, extra=fields)
            return entry(None, "deferred", error)
        work.phase = "comparing"
        try:
            # Settled, not gathered: when one side fails, the other request must not be left
            # running after the run has closed its clients.
            up, down = await settle(
                upstream.manifest_head(image.upstream_ref.repository, tag),
                _target_head(target, image.target_ref.repository, tag),
            )
        except ImageSyncError as exc:
            if self._upstream_refused(exc, upstream):
                return self._deferred_by_429(work, exc, None, fields)
            return failed(exc, None)
        work.upstream_digest = up.digest if up else None
        work.target_digest = down.digest if down else None
        fields.update(
            upstream_digest=up.digest if up else None, target_digest=down.digest if down else None
        )
        if up is None:
            missing = UpstreamMissingError(f"tag {tag} not found at {image.upstream_ref.name}")
            log.error("%s:%s upstream_missing: %s", image.name, tag, missing, extra=fields)
            return entry("upstream_missing", "upstream_missing", missing)
        if down is not None and down.digest == up.digest:
            return entry("up_to_date", "up_to_date")
        state: TagState = "missing" if down is None else "outdated"
        work.state = state
        if options.dry_run or options.compare_only:
            log.info(
                "%s:%s %s, would copy %s",
                image.name,
                tag,
                state,
                up.digest,
                extra={**fields, "action": "would_copy"},
            )
            return entry(state, "would_copy")
        # A copy slot is taken before the refusal checks (deadline, pull budget) and released
        # after the copy; nothing between here and the `try` below awaits.
        work.phase = "queued"
        compared()
        await copy_slot.acquire()
        refusal = self._refusal(upstream, options, deadline)
        if refusal is not None:
            copy_slot.release()
            log.warning("%s:%s deferred: %s", image.name, tag, refusal, extra=fields)
            return entry(state, "deferred", refusal)
        host = upstream.host
        self._pulls_reserved[host] = self._pulls_reserved.get(host, 0) + PULLS_PER_COPY
        work.phase = "copying"
        try:
            # By the digest just compared: what gets copied is what was found different, and
            # two tags that point at one image share one manifest read. Not bounded here: the
            # run's hard stop cancels it (see `_stop`).
            result = await self._copier.copy(
                upstream,
                image.upstream_ref.with_tag(tag).with_digest(up.digest),
                target,
                image.target_ref.with_tag(tag),
                progress=self._progress(f"{image.name}:{tag}") if self._progress else None,
            )
        except ImageSyncError as exc:
            if self._upstream_refused(exc, upstream):
                return self._deferred_by_429(work, exc, state, fields)
            return failed(exc, state)
        finally:
            self._pulls_reserved[host] -= PULLS_PER_COPY
            copy_slot.release()
        stats = result.stats
        log.info(
            "%s:%s copied %s (%d bytes, %d blobs, %d already there)",
            image.name,
            tag,
            result.digest,
            stats.bytes_copied,
            stats.blobs_copied,
            stats.blobs_skipped,
            extra={**fields, "action": "copied", "upstream_digest": result.digest},
        )
        return TagReport(
            tag=tag,
            discovered=work.discovered,
            state=state,
            action="copied",
            upstream_digest=result.digest,
            target_digest=result.digest,
            bytes_copied=stats.bytes_copied,
            blobs_copied=stats.blobs_copied,
            blobs_skipped=stats.blobs_skipped,
        )

    @staticmethod
    def _upstream_refused(exc: ImageSyncError, upstream: RegistryClient) -> bool:
        """A 429 from the upstream registry or its token service (the error says whose client
        sent the request; no URL is looked at)."""
        return isinstance(exc, RegistryError) and exc.rate_limited and exc.registry == upstream.host

    def _deferred_by_429(
        self,
        work: _Work,
        exc: ImageSyncError,
        state: TagState | None,
        fields: dict[str, object],
    ) -> TagReport:
        """The upstream's rate limit refused us: later runs will do better than retries now.
        Nothing half-written was tagged (the tag is pushed last)."""
        host = work.image.upstream_ref.host
        if isinstance(exc, RegistryError) and exc.rate_limit is not None:
            # A registry with a pull allowance (Docker Hub): the allowance is spent for every
            # repository, so no other copy from it starts in this run.
            self._exhausted.add(host)
        spent = PullBudgetExhausted(f"{host} refused the request (429): {exc.message}")
        log.warning("%s:%s deferred: %s", work.image.name, work.tag, spent, extra=fields)
        return TagReport(
            tag=work.tag,
            discovered=work.discovered,
            state=state,
            action="deferred",
            upstream_digest=work.upstream_digest,
            target_digest=work.target_digest,
            error=_info(spent),
        )

    async def _tag_referrers(
        self,
        work: _Work,
        report: TagReport,
        options: RunOptions,
        deadline: float | None,
    ) -> TagReport:
        """After the image: the referrers of its digest (and children), when the image is in
        place (or, in a dry run, would be). Their outcome joins the tag's entry: a referrer
        copied to an up-to-date image makes the action `copied`; a referrer that fails makes
        the tag `failed` with the referrer's own cause; a refusal (time budget, pull allowance,
        the upstream's 429) makes it `deferred`."""
        image = work.image
        if (
            not image.effective_referrers
            or report.upstream_digest is None
            or report.action not in ("up_to_date", "copied", "would_copy")
        ):
            return report
        upstream = self._client(image.upstream_ref.host)
        target = self._client(image.target_ref.host)
        dry = options.dry_run or options.compare_only
        fields = {"image": image.name, "tag": work.tag, "discovered": work.discovered}

        def outcome(action: TagAction, error: ImageSyncError, counts: ReferrerReport) -> TagReport:
            if action == "failed" and error.temporary:
                self._temporary_failure = True
            return report.model_copy(
                update={"action": action, "error": _info(error), "referrers": counts}
            )

        if not dry and deadline is not None and time.monotonic() >= deadline:
            late = DeadlineExceeded("time budget spent before the tag's referrers could start")
            log.warning("%s:%s deferred: %s", image.name, work.tag, late, extra=fields)
            return outcome("deferred", late, report.referrers)
        job = ReferrerJob(
            source=upstream,
            source_ref=image.upstream_ref,
            target=target,
            target_ref=image.target_ref,
            digest=report.upstream_digest,
            dry_run=dry,
            gate=lambda pulls: self._refusal(upstream, options, deadline, pulls=pulls),
        )
        host = upstream.host
        try:
            # Not bounded here: the run's hard stop cancels it (see `_stop`).
            counts = await self._referrers.sync(job)
        except ImageSyncError as exc:
            if exc.code in (DEADLINE, PULL_BUDGET) or self._upstream_refused(exc, upstream):
                if isinstance(exc, RegistryError):
                    if exc.rate_limit is not None:
                        self._exhausted.add(host)
                    exc = PullBudgetExhausted(f"{host} refused the pull (429): {exc.message}")
                log.warning("%s:%s referrers deferred: %s", image.name, work.tag, exc, extra=fields)
                return outcome("deferred", exc, report.referrers)
            log.error(
                "%s:%s referrers failed: %s",
                image.name,
                work.tag,
                exc,
                extra={**fields, "action": "failed", "code": exc.code},
            )
            return outcome("failed", exc, report.referrers)
        found = ReferrerReport(
            copied=counts.copied,
            would_copy=counts.would_copy,
            present=counts.present,
            failed=counts.failed,
        )
        if counts.error is not None:
            error = counts.error
            log.error(
                "%s:%s %d referrer(s) failed: %s",
                image.name,
                work.tag,
                counts.failed,
                error,
                extra={**fields, "action": "failed", "code": error.code},
            )
            return outcome("failed", error, found)
        action = report.action
        if action == "up_to_date" and counts.copied:
            action = "copied"
        elif action == "up_to_date" and counts.would_copy:
            action = "would_copy"
        if counts.copied or counts.would_copy:
            log.info(
                "%s:%s referrers: %d copied, %d would copy, %d present",
                image.name,
                work.tag,
                counts.copied,
                counts.would_copy,
                counts.present,
                extra={**fields, "action": action, "referrers": found.model_dump()},
            )
        return report.model_copy(update={"action": action, "referrers": found})

    def _refusal(
        self,
        upstream: RegistryClient,
        options: RunOptions,
        deadline: float | None,
        *,
        pulls: bool = True,
    ) -> ImageSyncError | None:
        """Why a copy (or, `pulls` false, a request that downloads no manifest) must not start
        now, if it must not."""
        if deadline is not None and time.monotonic() >= deadline:
            return DeadlineExceeded("time budget spent before the copy could start")
        if not pulls:
            return None
        if upstream.host in self._exhausted:
            return PullBudgetExhausted(
                f"{upstream.host} refused pulls (429) earlier in this run; not pulling until "
                "its allowance recovers"
            )
        limit = upstream.rate_limit
        if limit is not None and options.pull_floor > 0:
            available = limit.remaining - self._pulls_reserved.get(upstream.host, 0)
            if available < options.pull_floor:
                return PullBudgetExhausted(
                    f"{upstream.host} pull allowance is {limit.remaining} of {limit.limit} "
                    f"({available} not yet claimed by copies under way), below the floor of "
                    f"{options.pull_floor}; not pulling until it recovers"
                )
        return None

    async def copy(self, source: Reference, target: Reference) -> CopyResult:
        """Copy one image reference (the CLI's `copy`), with this run's clients and progress."""
        return await self._copier.copy(
            self._client(source.host),
            source,
            self._client(target.host),
            target,
            progress=self._progress(str(target)) if self._progress else None,
        )

    # -- read-only helpers for the CLI ----------------------------------------------------------

    async def discovery_window(self, name: str, count: int | None = None) -> list[str]:
        """The window sync's discovery uses for image `name`: the newest `count` upstream
        version tags (default: the image's `max_tags_to_check`) after `tag_pattern`, newest
        first, configured tags included (they take their places in it)."""
        image = self.config.image(name)
        limit = image.effective_max_tags_to_check if count is None else count
        tags = await self._client(image.upstream_ref.host).tag_list(image.upstream_ref.repository)
        # select_new_tags with nothing excluded: exactly the window a run takes.
        return select_new_tags(tags, limit=limit, pattern=image.tag_regex, exclude=())

    async def discover(self, name: str, count: int | None = None) -> list[DiscoveredTag]:
        """`discovery_window`, each tag with whether it is configured and whether the target
        has it. No writes."""
        image = self.config.image(name)
        window = await self.discovery_window(name, count)
        target = self._client(image.target_ref.host)
        heads = await settle(
            *(_target_head(target, image.target_ref.repository, tag) for tag in window)
        )
        return [
            DiscoveredTag(tag, tag in image.tags, head is not None)
            for tag, head in zip(window, heads, strict=True)
        ]

    async def tags(self, repository: Reference, *, versions: bool = False) -> list[str]:
        """A repository's tags in the registry's order; `versions`: the version-like ones,
        newest first, by the discovery rules."""
        tags = await self._client(repository.host).tag_list(repository.repository)
        if versions:
            return [version.tag for version in discovery_candidates(tags)]
        return tags

    async def manifest(self, ref: Reference) -> bytes:
        """The manifest's bytes exactly as the registry serves them (checked against the
        digest asked for or announced)."""
        client = self._client(ref.host)
        return (await client.manifest_get(ref.repository, ref.identifier)).raw

    async def digest(self, ref: Reference, platform: str | None = None) -> str:
        """The manifest digest `ref` resolves to (a HEAD: no Docker Hub pull); with `platform`
        (`os/arch[/variant]`), the digest of that platform's image in the index."""
        client = self._client(ref.host)
        if platform is None:
            info = await client.manifest_head(ref.repository, ref.identifier)
            if info is None:
                raise UpstreamMissingError(f"{ref}: no such manifest")
            return info.digest
        manifest = await client.manifest_get(ref.repository, ref.identifier)
        if manifest.is_index:
            children = [c for c in manifest.children() if c.platform]
            chosen = _platform_match(children, platform)
            if chosen is None:
                listed = ", ".join(sorted({c.platform or "" for c in children})) or "none"
                raise ManifestError(f"{ref}: no {platform} image in the index (it has {listed})")
            return chosen.digest
        # One image: its config says which platform it is for.
        config_blob = manifest.blobs()[0]
        doc = await client.blob_get(ref.repository, config_blob.digest)
        own = _config_platform(doc)
        if own is None or _platform_match([Descriptor("", manifest.digest, 0, own)], platform):
            return manifest.digest
        raise ManifestError(f"{ref}: a single {own} image, not {platform}")

    async def check_access(self, host: str, repository: str, *, required: bool) -> str:
        """Reach a registry, authenticate for pulling `repository`, and HEAD it. Returns a
        note; raises ImageSyncError when access fails (or, `required`, is refused)."""
        client = self._client(host)
        await client.ping()
        await client.auth.authorization([pull_scope(repository)])
        try:
            await client.tag_list(repository, page_size=1, max_pages=1)
        except AuthenticationError:
            raise
        except RegistryError as exc:
            if exc.not_found or (quay_absent(exc) and not required):
                return f"reachable, authenticated; {repository} absent or not readable yet"
            raise
        scheme = client.auth.scheme or "anonymous"
        return f"reachable ({scheme}), {repository} readable"


async def _target_head(client: RegistryClient, repository: str, tag: str) -> ManifestInfo | None:
    """The target's manifest, or None when it is not there.

    Quay's 401 for a repository that does not exist yet (`quay_absent`) means "not there" when
    the token service accepted our credentials (the copy, with push rights, creates the
    repository or fails with a clear error). Without credentials the same 401 means the
    registry wants some: an authentication error, never "missing".
    """
    try:
        return await client.manifest_head(repository, tag)
    except AuthenticationError:
        raise
    except RegistryError as exc:
        if exc.not_found:
            return None
        if quay_absent(exc):
            if client.auth.credentials_accepted:
                return None
            raise AuthenticationError(
                f"{client.host} refused anonymous access to {repository} (no credentials "
                "configured for it)",
                status=401,
                method=exc.method,
                url=exc.url,
                codes=exc.codes,
                registry=client.host,
            ) from None
        raise


def _info(error: ImageSyncError) -> ErrorInfo:
    return ErrorInfo.from_error(error)


def _platform_match(children: Sequence[Descriptor], wanted: str) -> Descriptor | None:
    """The child for `os/arch[/variant]`: an exact match, else (no variant asked for) the
    first child of that os/arch (`linux/arm64` finds `linux/arm64/v8`)."""
    for child in children:
        if child.platform == wanted:
            return child
    if wanted.count("/") == 1:
        for child in children:
            if child.platform and child.platform.startswith(wanted + "/"):
                return child
    return None


def _config_platform(raw: bytes) -> str | None:
    """`os/arch[/variant]` from an image config blob, None when it does not say."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("os") or not doc.get("architecture"):
        return None
    parts = [str(doc["os"]), str(doc["architecture"])]
    if doc.get("variant"):
        parts.append(str(doc["variant"]))
    return "/".join(parts)


async def insecure_hosts(hosts: Iterable[str]) -> dict[str, bool]:
    """For `--insecure`: each host → whether to speak TLS to it (unverified), by asking it."""
    unique = sorted(set(hosts))
    secure = await asyncio.gather(*(probe_tls(host) for host in unique))
    return dict(zip(unique, secure, strict=True))


def registries_for(
    config: Config,
    credentials: CredentialProvider | None,
    *,
    insecure: Mapping[str, bool] | None = None,
    timeouts: Timeouts | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Registries:
    """Registry clients that follow the config: TLS per host, credentials from `credentials`.
    `insecure` (from `insecure_hosts`) overrides the config for the hosts it names: TLS
    without certificate checks, or plain HTTP. `timeouts` (default: the production values)
    and `transport` are for tests and benches."""
    overrides = dict(insecure or {})

    def settings_for(host: str) -> HostSettings:
        if host in overrides:
            return HostSettings(secure=overrides[host], credentials=credentials, verify=False)
        return HostSettings(secure=config.tls_enabled(host), credentials=credentials)

    return Registries(settings_for, timeouts=timeouts, transport=transport)
