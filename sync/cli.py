"""The `image-sync` command line: argument parsing, tables or JSON, exit codes.

Exit codes: 0 success; 1 a failure (a failed sync, a tag not up to date, a registry problem);
2 bad arguments or an invalid config; 3 a partial sync (some tags deferred).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TextIO

from sync import __version__
from sync.config import Config, load_config, resolve_config_path
from sync.credentials import CredentialResolver
from sync.engine import Engine, RunOptions, hard_stop_after, registries_for
from sync.errors import ConfigError, ImageSyncError
from sync.reference import parse_reference
from sync.report import Report

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

log = logging.getLogger("image_sync")


class UsageError(Exception):
    """Bad arguments: exit 2 with a one-line reason."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-sync",
        description="Keep a mirror of container images digest-exact with upstream.",
    )
    parser.add_argument("--version", action="version", version=f"image-sync {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (default: see README)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("check-deps", help="config, credentials and every registry reachable")
    sub.add_parser("validate", help="validate the config, listing every problem")
    sub.add_parser("list", help="configured images and tags")

    status = sub.add_parser("status", help="compare every configured tag (no writes)")
    status.add_argument("image", nargs="?", help="only this image")

    sync = sub.add_parser("sync", help="mirror what differs, discover new tags")
    sync.add_argument("image", nargs="?", help="only this image")
    sync.add_argument("tag", nargs="?", help="only this tag (of IMAGE)")
    sync.add_argument("--dry-run", action="store_true", help="compare only; write nothing")
    sync.add_argument("--no-discover", action="store_true", help="configured tags only")
    sync.add_argument(
        "--deadline",
        type=_positive_float,
        metavar="SECONDS",
        help="start nothing new after this; cancel what is in flight a grace later",
    )
    sync.add_argument(
        "--pull-floor",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="defer copies when the upstream pull allowance drops below N (default 10)",
    )

    discover = sub.add_parser("discover", help="newest upstream versions not configured")
    discover.add_argument("image")
    discover.add_argument("count", nargs="?", type=_non_negative_int, default=10, metavar="N")

    copy = sub.add_parser("copy", help="copy one image reference, every platform")
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("destination", metavar="DST")
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
    s = report.summary
    if command == "status":
        differ = sum(1 for t in report.all_tags() if t.action == "would_copy")
        out.write(
            f"{'ok' if report.status == 'ok' else 'not up to date'}: {s.tags} tags, "
            f"{s.up_to_date} up to date, {differ} to copy, {s.failed} failed "
            f"(checked in {report.duration_s:.1f}s, nothing written)\n"
        )
    else:
        out.write(
            f"{report.status}: {s.tags} tags, {s.up_to_date} up to date, {s.copied} copied, "
            f"{s.failed} failed, {s.deferred} deferred, {s.discovered} discovered, "
            f"{s.bytes_copied} bytes in {report.duration_s:.1f}s"
            + (" (dry run)" if report.dry_run else "")
            + "\n"
        )
    if report.rate_limit:
        r = report.rate_limit
        out.write(f"pull allowance at {r.registry}: {r.remaining} of {r.limit}\n")


class _Progress:
    """A one-line byte counter on a terminal, redrawn at most five times a second."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bytes = 0
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self._bytes += n
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            self._stream.write(f"\r  {self._bytes / 1048576:8.1f} MiB copied")
            self._stream.flush()

    def done(self) -> None:
        if self._bytes:
            self._stream.write(f"\r  {self._bytes / 1048576:8.1f} MiB copied\n")
            self._stream.flush()


# -- commands ----------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


class _App:
    def __init__(self, args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> None:
        self.args = args
        self.env = env
        self.out = out

    def config(self, *, required: bool = True) -> Config | None:
        path = resolve_config_path(self.args.config, self.env)
        if not required and self.args.config is None and not path.exists():
            return None
        return load_config(path)

    def emit_json(self, value: object) -> None:
        self.out.write(json.dumps(value, indent=2) + "\n")

    async def with_engine(self, config: Config, body: Callable[[Engine], Any]) -> int:
        credentials = CredentialResolver(config, env=self.env)
        progress = _Progress(sys.stderr) if sys.stderr.isatty() and not self.args.quiet else None
        try:
            async with registries_for(config, credentials) as registries:
                engine = Engine(config, registries, progress=progress)
                result: int = await body(engine)
                return result
        finally:
            if progress:
                progress.done()
            credentials.close()

    # validate ----------------------------------------------------------------------------
    def validate(self) -> int:
        path = resolve_config_path(self.args.config, self.env)
        try:
            config = load_config(path)
        except ConfigError as exc:
            if self.args.json:
                self.emit_json({"valid": False, "config": str(path), "problems": exc.problems})
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
        assert config is not None
        if self.args.json:
            self.emit_json(
                {
                    "images": [
                        {
                            "name": image.name,
                            "upstream": image.upstream,
                            "target": image.target,
                            "tags": list(image.tags),
                            "check_new_tags": image.effective_check_new_tags(config),
                            "max_tags_to_check": image.effective_max_tags_to_check(config),
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
                f"newest {image.effective_max_tags_to_check(config)}"
                if image.discovers_tags(config)
                else "off"
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
        assert config is not None
        options = RunOptions(images=self._names(config, self.args.image), compare_only=True)
        return _run(self.with_engine(config, lambda engine: self._report(engine, options)))

    def sync(self) -> int:
        config = self.config()
        assert config is not None
        names = self._names(config, self.args.image)
        options = RunOptions(
            images=names,
            tags=(self.args.tag,) if self.args.tag else None,
            dry_run=self.args.dry_run,
            discover=not self.args.no_discover,
            deadline=self.args.deadline,
            hard_deadline=(
                hard_stop_after(self.args.deadline) if self.args.deadline is not None else None
            ),
            pull_floor=self.args.pull_floor,
        )
        return _run(self.with_engine(config, lambda engine: self._report(engine, options)))

    async def _report(self, engine: Engine, options: RunOptions) -> int:
        report = await engine.run(options)
        if options.tags is not None and not any(True for _ in report.all_tags()):
            failed = [i.discovery_error for i in report.images if i.discovery_error]
            if failed:
                raise ImageSyncError(
                    f"tag {options.tags[0]!r}: discovery failed: {failed[0].message}"
                )
            raise UsageError(
                f"tag {options.tags[0]!r} is neither configured for {self.args.image} "
                "nor among its discovered upstream versions"
            )
        if self.args.json:
            self.out.write(report.to_json(indent=2) + "\n")
        else:
            command = "status" if options.compare_only else "sync"
            _print_report(report, self.out, command=command)
        return report.exit_code("status" if options.compare_only else "sync")

    # discover ------------------------------------------------------------------------------
    def discover(self) -> int:
        config = self.config()
        assert config is not None
        self._names(config, self.args.image)

        async def body(engine: Engine) -> int:
            found = await engine.discover(self.args.image, self.args.count)
            if self.args.json:
                self.emit_json(
                    {
                        "image": self.args.image,
                        "tags": [{"tag": t.tag, "on_target": t.on_target} for t in found],
                    }
                )
            else:
                rows = [["TAG", "ON TARGET"]]
                rows += [[t.tag, "yes" if t.on_target else "no"] for t in found]
                _table(rows, self.out)
            return EXIT_OK

        return _run(self.with_engine(config, body))

    # check-deps ----------------------------------------------------------------------------
    def check_deps(self) -> int:
        path = resolve_config_path(self.args.config, self.env)
        results: list[dict[str, object]] = []
        try:
            config = load_config(path)
            results.append({"check": "config", "ok": True, "detail": str(path)})
        except ConfigError as exc:
            results.append({"check": "config", "ok": False, "detail": str(exc)})
            return self._deps_out(results)

        async def body(engine: Engine) -> int:
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
        try:
            source = parse_reference(self.args.source, default_tag="latest")
            destination = parse_reference(self.args.destination)
        except ImageSyncError as exc:
            raise UsageError(str(exc)) from None
        if destination.tag is None and destination.digest is None:
            destination = destination.with_tag(source.tag) if source.tag else destination
        config = self.config(required=False) or Config(images=())

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

        return _run(self.with_engine(config, body))


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    # `image_sync` is the run's story; `sync.*` modules (credentials, secrets) log under their
    # own names.
    for name in ("image_sync", "sync"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # httpx logs every request at INFO (URLs with query strings): keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    app = _App(args, os.environ if env is None else env, sys.stdout)
    command = {
        "check-deps": app.check_deps,
        "validate": app.validate,
        "list": app.list_images,
        "status": app.status,
        "sync": app.sync,
        "discover": app.discover,
        "copy": app.copy,
    }[args.command]
    try:
        return command()
    except UsageError as exc:
        print(f"image-sync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"image-sync: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImageSyncError as exc:
        print(f"image-sync: {exc.code}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("image-sync: interrupted", file=sys.stderr)
        return 130
