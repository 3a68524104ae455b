"""The `image-sync` command line: argument parsing, tables or JSON, exit codes.

Exit codes: 0 success; 1 a failure (a failed sync, a registry problem); 2 bad arguments or an
invalid or missing config; 3 a partial sync (some tags deferred); 4 `status`: every tag compared
and some would be copied. With `--json`, a command that failed before running anything prints
`{"error": {"code": ..., "message": ...}}` on stdout, with the same exit code.

Checks that need no network (arguments, config, image and tag names) all come before the first
request. Logs go to stderr and never repeat the table: per-tag lines are shown with `-v` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TextIO

from sync import __version__
from sync.errors import (
    INTERRUPTED,
    ConfigError,
    ConfigMissingError,
    ImageSyncError,
    UsageError,
)
from sync.logs import install_handler
from sync.progress import Display
from sync.reference import Reference, is_tag, parse_reference
from sync.versions import discovery_candidates

if TYPE_CHECKING:
    from sync.config import Config
    from sync.engine import Engine, RunOptions
    from sync.login import CredentialProvider
    from sync.report import Report

# The config (pydantic), the engine, asyncio and the HTTP stack are imported by the commands
# that use them, not here: `--version` and `--help` start in a fraction of the time.

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_DRIFT = 0, 1, 2, 3, 4

log = logging.getLogger(__name__)

_PLATFORM = re.compile(r"[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?")


# -- arguments ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Bad arguments raise UsageError (so `--json` can answer them too) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name. On a command's parser they
    default to SUPPRESS, so that an option given before the command is not reset."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--config",
        metavar="PATH",
        default=default(None),
        help="the config file (else $IMAGE_SYNC_CONFIG, else ./image-sync-config.json)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON on stdout instead of a table",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=default(False),
        help="allow plain HTTP and unverified TLS for the registries named on the command line",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="debug logging"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="warnings and errors only",
    )


_EXITS = {
    "check-deps": "0 all good; 1 a dependency failed; 2 invalid config or arguments",
    "validate": "0 valid; 2 invalid (every problem listed, one per line)",
    "list": "0; 2 invalid config",
    "status": (
        "0 every tag up to date; 4 every tag compared and some would be copied; 1 some tag "
        "could not be compared; 2 invalid config or arguments"
    ),
    "sync": "0 ok; 3 partial (some tags deferred); 1 failed; 2 invalid config or arguments",
    "discover": "0; 1 a registry problem; 2 invalid config or arguments",
    "copy": "0 copied; 1 failed; 2 bad arguments",
    "tags": "0; 1 a registry problem; 2 bad arguments",
    "digest": "0; 1 a registry problem or no such platform; 2 bad arguments",
    "manifest": "0; 1 a registry problem; 2 bad arguments",
}


def _parser() -> _Parser:
    parser = _Parser(
        prog="image-sync",
        description="Keep a mirror of container images digest-exact with upstream.",
        epilog=(
            "exit codes: 0 success; 1 failure; 2 bad arguments or config; 3 partial sync; "
            "4 status: not up to date. `image-sync COMMAND --help` tells more."
        ),
    )
    parser.add_argument("--version", action="version", version=f"image-sync {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        made = sub.add_parser(
            name,
            help=summary,
            description=summary + (f"\n\n{details}" if details else ""),
            epilog=f"exit codes: {_EXITS[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(made, top=False)
        return made

    command(
        "check-deps",
        "Check the config, the credentials and that every registry answers and authenticates.",
    )
    command("validate", "Validate the config; list every problem, each with its JSON path.")
    command("list", "List the configured images: tags, discovery, upstream -> target.")

    status = command(
        "status",
        "Compare every configured tag upstream and on the target; write nothing.",
        "No discovery, no writes. Per tag: the state (up_to_date, outdated, missing,\n"
        "upstream_missing) and both digests.",
    )
    status.add_argument("image", nargs="?", metavar="IMAGE", help="only this configured image")

    sync = command(
        "sync",
        "Mirror every configured tag that differs, and the new versions discovery finds.",
        "One run as the daily function does it. TAG may be a configured tag of IMAGE or one\n"
        "in its discovery window (see `discover`).",
    )
    sync.add_argument("image", nargs="?", metavar="IMAGE", help="only this configured image")
    sync.add_argument("tag", nargs="?", metavar="TAG", help="only this tag of IMAGE")
    sync.add_argument("--dry-run", action="store_true", help="compare only; write nothing")
    sync.add_argument("--no-discover", action="store_true", help="configured tags only")
    sync.add_argument(
        "--plan",
        action="store_true",
        help="print the tasks a fan-out would create, one per image; no network",
    )
    sync.add_argument(
        "--deadline",
        type=_positive_float,
        metavar="SECONDS",
        help="start nothing new after this many seconds; cancel what still runs a grace later",
    )
    sync.add_argument(
        "--pull-floor",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="defer copies when the upstream pull allowance drops below N (default 10)",
    )

    discover = command(
        "discover",
        "Show the discovery window sync uses: the newest upstream version tags.",
        "The newest N version tags upstream (after tag_pattern), newest first, each with\n"
        "whether it is configured and whether the target has it. No writes.",
    )
    discover.add_argument("image", metavar="IMAGE", help="a configured image")
    discover.add_argument(
        "count",
        nargs="?",
        type=_non_negative_int,
        metavar="N",
        help="window size (default: the image's max_tags_to_check)",
    )

    copy = command(
        "copy",
        "Copy one image reference, every platform, digest-exactly (like `crane copy`).",
        "Uses the config's registries settings (TLS, credentials) when a config is found;\n"
        "otherwise the Docker config's credentials, then anonymous.",
    )
    copy.add_argument("source", metavar="SRC", help="e.g. docker.io/library/alpine:3.20")
    copy.add_argument(
        "destination", metavar="DST", help="e.g. quay.io/me/alpine (the tag defaults to SRC's)"
    )

    tags = command("tags", "List a repository's tags, one per line (registry order).")
    tags.add_argument("repository", metavar="REPO", help="e.g. docker.io/istio/examples-httpbin")
    tags.add_argument(
        "--versions",
        action="store_true",
        help="only version-like tags, newest first (the discovery rules)",
    )

    digest = command("digest", "Print the manifest digest of a reference, alone on one line.")
    digest.add_argument("reference", metavar="REF", help="e.g. quay.io/me/alpine:3.20")
    digest.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="the digest of this platform's image in the index",
    )

    manifest = command("manifest", "Print the raw manifest bytes exactly as the registry serves.")
    manifest.add_argument("reference", metavar="REF", help="e.g. quay.io/me/alpine:3.20")
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number ≥ 0: {text!r}")
    return int(text)


# -- output ------------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip())
        out.write("\n")


def _short(digest: str | None) -> str:
    return digest[7:19] if digest else "-"


def _summary_line(report: Report, command: str) -> str:
    """The one-line verdict under the table (and in the summary log line: the same words)."""
    s = report.summary
    if command == "status":
        return (
            f"{_status_verdict(s.model_dump())} "
            f"(checked in {report.duration_s:.1f}s, nothing written)"
        )
    return (
        f"{report.status}: {s.tags} tags, {s.up_to_date} up to date, {s.copied} copied, "
        f"{s.failed} failed, {s.deferred} deferred, {s.discovered} discovered, "
        f"{s.bytes_copied} bytes in {report.duration_s:.1f}s"
        + (" (dry run)" if report.dry_run else "")
    )


def _print_report(report: Report, out: TextIO, *, command: str = "sync") -> None:
    rows = [["IMAGE", "TAG", "STATE", "ACTION", "UPSTREAM", "TARGET", "NOTE"]]
    for image in report.images:
        for tag in image.tags:
            note = f"{tag.error.code}: {tag.error.message}" if tag.error else ""
            if tag.discovered:
                note = ("discovered; " + note).rstrip("; ")
            if tag.bytes_copied:
                note = (note + f" {tag.bytes_copied} bytes").strip()
            moved = [
                f"{n} {what}"
                for what, n in (
                    ("copied", tag.referrers.copied),
                    ("would copy", tag.referrers.would_copy),
                    ("failed", tag.referrers.failed),
                )
                if n
            ]
            if moved:
                note = (note + "; referrers: " + ", ".join(moved)).lstrip("; ")
            rows.append(
                [
                    image.name,
                    tag.tag,
                    tag.state or "-",
                    tag.action,
                    _short(tag.upstream_digest),
                    _short(tag.target_digest),
                    note,
                ]
            )
    _table(rows, out)
    for image in report.images:
        if image.discovery_error:
            error = image.discovery_error
            out.write(f"{image.name}: discovery failed: {error.code}: {error.message}\n")
    out.write(_summary_line(report, command) + "\n")
    if report.rate_limit:
        r = report.rate_limit
        out.write(f"pull allowance at {r.registry}: {r.remaining} of {r.limit}\n")


# -- logs --------------------------------------------------------------------------------------


class _CliLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines on stderr: without the per-tag lines the table already shows (unless
    verbose), and with a progress display erased before each line."""

    def __init__(self, verbose: bool) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.verbose = verbose
        self.display: Display | None = None
        #: The command is `status`: its summary line speaks of drift, not failure.
        self.status_command = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        # What one tag did, or why an image's discovery failed: the table and the report say
        # it, and a log line repeating it can only drift from them.
        per_tag = hasattr(record, "tag") or getattr(record, "event", None) == "discovery_failed"
        return not per_tag

    def format(self, record: logging.LogRecord) -> str:
        summary = getattr(record, "summary", None)
        if self.status_command and isinstance(summary, dict):  # the run's outcome line
            # For `status`, "failed" means "not every tag is up to date": the line says it in
            # the table's words, so the two never disagree.
            return f"{record.levelname} status {_status_verdict(summary)}"
        return super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.display is not None:
            self.display.clear()
        super().emit(record)


def _status_verdict(summary: Mapping[str, Any]) -> str:
    """`status`'s verdict and counts from a report summary (a dict of its fields)."""
    tags, up, failed = (
        summary.get("tags", 0),
        summary.get("up_to_date", 0),
        summary.get("failed", 0),
    )
    to_copy = tags - up - failed - summary.get("deferred", 0)
    verdict = "ok" if up == tags else "failed" if failed else "not up to date"
    return f"{verdict}: {tags} tags, {up} up to date, {to_copy} to copy, {failed} failed"


def _setup_logging(verbose: bool, quiet: bool) -> _CliLogHandler:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _CliLogHandler(verbose)
    install_handler(handler, level)
    return handler


# -- commands ----------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, int]) -> int:
    import asyncio  # noqa: PLC0415

    return asyncio.run(coro)


async def _resolvable(credentials: CredentialProvider, host: str) -> dict[str, object]:
    """check-deps: whether the config's credentials for `host` can be read (never their
    values). Resolved in a thread: Secret Manager's client blocks."""
    import asyncio  # noqa: PLC0415

    name = f"credentials for {host}"
    try:
        await asyncio.to_thread(credentials, host)
    except ImageSyncError as exc:
        return {"check": name, "ok": False, "detail": f"{exc.code}: {exc}"}
    return {"check": name, "ok": True, "detail": "resolved"}


def _reference(text: str, what: str, *, default_tag: str | None = None) -> Reference:
    try:
        return parse_reference(text, default_tag=default_tag)
    except ImageSyncError as exc:
        raise UsageError(f"{what}: {exc}") from None


class _App:
    def __init__(
        self,
        args: argparse.Namespace,
        env: Mapping[str, str],
        out: TextIO,
        logs: _CliLogHandler | None = None,
    ) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.logs = logs

    def config_path(self) -> Path:
        from sync.config import find_cli_config  # noqa: PLC0415

        path = find_cli_config(self.args.config, self.env, Path.cwd())
        assert path is not None  # required: raises when there is none
        return path

    def config(self) -> Config:
        from sync.config import load_config  # noqa: PLC0415

        return load_config(self.config_path())

    def optional_config(self) -> Config:
        """The config when one is found; else an empty one (copy, tags, digest, manifest)."""
        from sync.config import Config, find_cli_config, load_config  # noqa: PLC0415

        path = find_cli_config(self.args.config, self.env, Path.cwd(), required=False)
        return load_config(path) if path is not None else Config(images=())

    def emit_json(self, value: object) -> None:
        self.out.write(json.dumps(value, indent=2) + "\n")

    def _display(self) -> Display | None:
        """Progress on a terminal only: both streams must be one (piped output stays clean)."""
        if self.args.quiet or not (sys.stdout.isatty() and sys.stderr.isatty()):
            return None
        return Display(sys.stderr)

    async def with_engine(
        self,
        config: Config,
        body: Callable[[Engine], Coroutine[Any, Any, int]],
        *,
        named: Sequence[Reference] = (),
    ) -> int:
        """Runs `body` with an engine on `config`; `named` are the references given on the
        command line (the hosts `--insecure` applies to)."""
        from sync.engine import insecure_hosts  # noqa: PLC0415
        from sync.service import open_engine  # noqa: PLC0415

        insecure = await insecure_hosts(ref.host for ref in named) if self.args.insecure else None
        display = self._display()
        if self.logs is not None:
            self.logs.display = display
        progress = display.copy if display else None
        try:
            async with open_engine(config, self.env, insecure=insecure, progress=progress) as e:
                return await body(e)
        finally:
            if display:
                display.close()
            if self.logs is not None:
                self.logs.display = None

    # validate ----------------------------------------------------------------------------
    def validate(self) -> int:
        from sync.config import load_config  # noqa: PLC0415

        path = self.config_path()
        try:
            config = load_config(path)
        except ConfigError as exc:
            if self.args.json:
                self.emit_json(
                    {
                        "valid": False,
                        "config": str(path),
                        "problems": list(exc.problems),
                        "error": {"code": exc.code, "message": str(exc)},
                    }
                )
            else:
                for problem in exc.problems:
                    self.out.write(f"{path}: {problem}\n")
            return EXIT_USAGE
        tags = sum(len(image.tags) for image in config.images)
        if self.args.json:
            self.emit_json({"valid": True, "config": str(path), "problems": []})
        else:
            self.out.write(f"{path}: valid ({len(config.images)} images, {tags} tags)\n")
        return EXIT_OK

    # list --------------------------------------------------------------------------------
    def list_images(self) -> int:
        config = self.config()
        if self.args.json:
            self.emit_json(
                {
                    "images": [
                        {
                            "name": image.name,
                            "upstream": image.upstream,
                            "target": image.target,
                            "tags": list(image.tags),
                            "check_new_tags": image.effective_check_new_tags,
                            "max_tags_to_check": image.effective_max_tags_to_check,
                            "tag_pattern": image.tag_pattern,
                        }
                        for image in config.images
                    ]
                }
            )
            return EXIT_OK
        rows = [["IMAGE", "TAGS", "DISCOVERY", "UPSTREAM -> TARGET"]]
        for image in config.images:
            discovery = (
                f"newest {image.effective_max_tags_to_check}" if image.discovers_tags else "off"
            )
            rows.append(
                [
                    image.name,
                    ",".join(image.tags) or "-",
                    discovery,
                    f"{image.upstream} -> {image.target}",
                ]
            )
        _table(rows, self.out)
        return EXIT_OK

    # status / sync -------------------------------------------------------------------------
    def _names(self, config: Config, name: str | None) -> tuple[str, ...] | None:
        if name is None:
            return None
        if name not in config.image_names:
            raise UsageError(
                f"unknown image {name!r}; configured: {', '.join(config.image_names) or 'none'}"
            )
        return (name,)

    def status(self) -> int:
        config = self.config()
        from sync.engine import RunOptions  # noqa: PLC0415

        options = RunOptions(images=self._names(config, self.args.image), compare_only=True)
        return _run(self.with_engine(config, lambda engine: self._report(engine, options)))

    def sync(self) -> int:
        config = self.config()
        names = self._names(config, self.args.image)
        if self.args.plan:
            return self._plan(config, names)
        tag: str | None = self.args.tag
        if tag is not None:
            self._check_tag(config, tag)
        from sync.engine import RunOptions, hard_stop_after  # noqa: PLC0415

        options = RunOptions(
            images=names,
            tags=(tag,) if tag else None,
            dry_run=self.args.dry_run,
            discover=not self.args.no_discover,
            deadline=self.args.deadline,
            hard_deadline=(
                hard_stop_after(self.args.deadline) if self.args.deadline is not None else None
            ),
            pull_floor=self.args.pull_floor,
        )

        async def body(engine: Engine) -> int:
            if tag is not None and tag not in config.image(self.args.image).tags:
                window = await engine.discovery_window(self.args.image)
                if tag not in window:
                    raise UsageError(
                        f"tag {tag!r} is neither configured for {self.args.image} nor among "
                        f"the newest upstream versions sync considers ({', '.join(window)})"
                    )
            return await self._report(engine, options)

        return _run(self.with_engine(config, body))

    def _check_tag(self, config: Config, tag: str) -> None:
        """Everything about `sync IMAGE TAG` that can be known without the network."""
        image = config.image(self.args.image)
        if not is_tag(tag):
            raise UsageError(f"invalid tag {tag!r}")
        if tag in image.tags:
            return
        why = None
        if self.args.no_discover:
            why = "and --no-discover leaves discovered tags out"
        elif not image.discovers_tags:
            why = "and tag discovery is off for it"
        elif not discovery_candidates([tag], pattern=image.tag_regex):
            why = "and it is not a version tag discovery could find" + (
                f" (tag_pattern {image.tag_pattern!r})" if image.tag_pattern else ""
            )
        if why:
            configured = ", ".join(image.tags) or "none"
            raise UsageError(
                f"tag {tag!r} is not configured for {image.name} (configured: {configured}), {why}"
            )

    def _plan(self, config: Config, names: tuple[str, ...] | None) -> int:
        from sync import fanout  # noqa: PLC0415

        units = fanout.plan(
            config,
            tags=(self.args.tag,) if self.args.tag else None,
            dry_run=self.args.dry_run,
            discover=not self.args.no_discover,
        )
        units = tuple(u for u in units if names is None or u.image in names)
        if self.args.json:
            self.emit_json([unit.to_dict() for unit in units])
        else:
            for unit in units:
                self.out.write(f"{unit.image} {json.dumps(dict(unit.body))}\n")
        return EXIT_OK

    async def _report(self, engine: Engine, options: RunOptions) -> int:
        report = await engine.run(options)
        command: Literal["status", "sync"] = "status" if options.compare_only else "sync"
        if self.args.json:
            self.out.write(report.to_json(indent=2) + "\n")
        else:
            _print_report(report, self.out, command=command)
        return report.exit_code(command)

    # discover ------------------------------------------------------------------------------
    def discover(self) -> int:
        config = self.config()
        self._names(config, self.args.image)

        async def body(engine: Engine) -> int:
            found = await engine.discover(self.args.image, self.args.count)
            if self.args.json:
                self.emit_json(
                    {
                        "image": self.args.image,
                        "tags": [
                            {"tag": t.tag, "configured": t.configured, "on_target": t.on_target}
                            for t in found
                        ],
                    }
                )
            else:
                rows = [["TAG", "CONFIGURED", "ON TARGET"]]
                rows += [
                    [t.tag, "yes" if t.configured else "no", "yes" if t.on_target else "no"]
                    for t in found
                ]
                _table(rows, self.out)
            return EXIT_OK

        return _run(self.with_engine(config, body))

    # check-deps ----------------------------------------------------------------------------
    def check_deps(self) -> int:
        import asyncio  # noqa: PLC0415

        from sync.config import load_config  # noqa: PLC0415

        path = self.config_path()
        config = load_config(path)  # invalid: exit 2 with the reason, before any request
        results: list[dict[str, object]] = [{"check": "config", "ok": True, "detail": str(path)}]

        async def body(engine: Engine) -> int:
            # Credentials first: a registry that lets anyone read never asks for them, so the
            # access checks below would pass with references that cannot be resolved.
            assert engine.credentials is not None  # open_engine gives it its resolver
            for host, settings in config.registries.items():
                if settings.has_credentials:
                    results.append(await _resolvable(engine.credentials, host))
            checks: dict[tuple[str, str], bool] = {}
            for image in config.images:
                checks.setdefault((image.upstream_ref.host, image.upstream_ref.repository), True)
                checks.setdefault((image.target_ref.host, image.target_ref.repository), False)

            async def one(host: str, repository: str, required: bool) -> dict[str, object]:
                name = f"{host}/{repository}"
                try:
                    detail = await engine.check_access(host, repository, required=required)
                    return {"check": name, "ok": True, "detail": detail}
                except ImageSyncError as exc:
                    return {"check": name, "ok": False, "detail": f"{exc.code}: {exc}"}

            results.extend(
                await asyncio.gather(*(one(h, r, req) for (h, r), req in checks.items()))
            )
            return EXIT_OK

        _run(self.with_engine(config, body))
        return self._deps_out(results)

    def _deps_out(self, results: list[dict[str, object]]) -> int:
        ok = all(r["ok"] for r in results)
        if self.args.json:
            self.emit_json({"ok": ok, "checks": results})
        else:
            for r in results:
                self.out.write(f"{'ok  ' if r['ok'] else 'FAIL'}  {r['check']}: {r['detail']}\n")
        return EXIT_OK if ok else EXIT_FAILED

    # copy ----------------------------------------------------------------------------------
    def copy(self) -> int:
        source = _reference(self.args.source, "SRC", default_tag="latest")
        destination = _reference(self.args.destination, "DST")
        if destination.tag is None and destination.digest is None:
            destination = destination.with_tag(source.tag) if source.tag else destination
        config = self.optional_config()

        async def body(engine: Engine) -> int:
            result = await engine.copy(source, destination)
            stats = result.stats
            if self.args.json:
                self.emit_json(
                    {
                        "source": str(source),
                        "destination": str(destination),
                        "digest": result.digest,
                        "media_type": result.media_type,
                        "bytes_copied": stats.bytes_copied,
                        "blobs_copied": stats.blobs_copied,
                        "blobs_skipped": stats.blobs_skipped,
                    }
                )
            else:
                self.out.write(
                    f"copied {source} -> {destination} {result.digest} "
                    f"({stats.bytes_copied} bytes, {stats.blobs_copied} blobs sent, "
                    f"{stats.blobs_skipped} already there)\n"
                )
            return EXIT_OK

        return _run(self.with_engine(config, body, named=(source, destination)))

    # tags / digest / manifest -------------------------------------------------------------
    def tags(self) -> int:
        repository = _reference(self.args.repository, "REPO")
        if repository.tag or repository.digest:
            raise UsageError(
                f"REPO: {self.args.repository!r} has a tag or digest; give the repository"
            )
        config = self.optional_config()

        async def body(engine: Engine) -> int:
            tags = await engine.tags(repository, versions=self.args.versions)
            if self.args.json:
                self.emit_json({"repository": str(repository), "tags": tags})
            else:
                self.out.write("".join(f"{tag}\n" for tag in tags))
            return EXIT_OK

        return _run(self.with_engine(config, body, named=(repository,)))

    def digest(self) -> int:
        ref = _reference(self.args.reference, "REF", default_tag="latest")
        platform: str | None = self.args.platform
        if platform is not None and not _PLATFORM.fullmatch(platform):
            raise UsageError(f"--platform: {platform!r} is not os/arch[/variant]")
        config = self.optional_config()

        async def body(engine: Engine) -> int:
            digest = await engine.digest(ref, platform)
            if self.args.json:
                self.emit_json({"reference": str(ref), "platform": platform, "digest": digest})
            else:
                self.out.write(f"{digest}\n")
            return EXIT_OK

        return _run(self.with_engine(config, body, named=(ref,)))

    def manifest(self) -> int:
        ref = _reference(self.args.reference, "REF", default_tag="latest")
        config = self.optional_config()

        async def body(engine: Engine) -> int:
            raw = await engine.manifest(ref)
            self.out.flush()
            sys.stdout.buffer.write(raw)  # the bytes as served: no newline added, none decoded
            sys.stdout.buffer.flush()
            return EXIT_OK

        return _run(self.with_engine(config, body, named=(ref,)))


# -- main --------------------------------------------------------------------------------------


def _wants_json(argv: Sequence[str]) -> bool:
    words = list(argv)
    if "--" in words:
        words = words[: words.index("--")]
    return "--json" in words


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(argv)

    def fail(code: str, message: str, exit_code: int) -> int:
        print(f"image-sync: {message}", file=sys.stderr)
        if as_json:
            sys.stdout.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
        return exit_code

    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        return fail(exc.code, exc.message, EXIT_USAGE)
    logs = _setup_logging(args.verbose, args.quiet)
    logs.status_command = args.command == "status"
    app = _App(args, os.environ if env is None else env, sys.stdout, logs)
    command: Callable[[], int] = {
        "check-deps": app.check_deps,
        "validate": app.validate,
        "list": app.list_images,
        "status": app.status,
        "sync": app.sync,
        "discover": app.discover,
        "copy": app.copy,
        "tags": app.tags,
        "digest": app.digest,
        "manifest": app.manifest,
    }[args.command]
    try:
        return command()
    except UsageError as exc:
        return fail(exc.code, exc.message, EXIT_USAGE)
    except ConfigError as exc:
        listed = args.command == "validate" or isinstance(exc, ConfigMissingError)
        hint = "" if listed else " (`image-sync validate` lists every problem)"
        return fail(exc.code, f"{exc}{hint}", EXIT_USAGE)
    except ImageSyncError as exc:
        return fail(exc.code, f"{exc.code}: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:
        return fail(INTERRUPTED, "interrupted", 130)
