"""Failure bench: how fast a run ends, complete, when the upstream registry is broken.

50 tags over 5 images, discovery on, the production timeouts and retry policy
(`sync.retry.Timeouts()`, `RetryPolicy()`), the target a real Distribution registry on loopback.
The upstream is, in turn:

- hung: a server that accepts TCP connections and never answers;
- refused: a loopback port where nothing listens;
- unresolvable: `registry.invalid`, failing in `socket.getaddrinfo` (simulated in process: no
  DNS query leaves the machine).

For each: the wall time until the report is complete, its status, the tags' codes, and the
requests sent to the upstream host after it was marked down (counted by a transport that
records every request the clients hand to the network; for the hung host, also the TCP
connections it accepted). skopeo (`skopeo sync`, same tags, Debian's build) is timed against
the hung and refused hosts for comparison, capped at `--skopeo-cap` seconds.

Run: `.venv/bin/python bench/failure_bench.py` (`--quick`: 2 images x 2 tags, deadline 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.config import Config, parse_config
from sync.engine import Engine, RunOptions, hard_stop_after, registries_for
from sync.report import Report
from sync.retry import RetryPolicy, Timeouts
from tests.bed.registry import RegistryServer, start_registry
from tests.bed.silent import (
    UNRESOLVABLE,
    SilentServer,
    mirror_config,
    refused_host,
    unresolvable,
)

SKOPEO = shutil.which("skopeo")


class CountingTransport(httpx.AsyncBaseTransport):
    """Records (host:port, time.monotonic()) of every request handed to the network."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.netloc.decode("ascii"), time.monotonic()))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Outcome:
    scenario: str
    deadline: float
    wall_s: float
    report: Report
    sent: int
    after_down: int
    accepted_after_down: int | None
    marked_after_s: float | None


def _config(upstream: str, target: str, images: int, tags: int) -> Config:
    return parse_config(mirror_config(upstream, target, images, tags))


def _run(
    scenario: str,
    upstream: str,
    target: RegistryServer,
    args: argparse.Namespace,
    *,
    deadline: float,
    silent: SilentServer | None = None,
) -> Outcome:
    config = _config(upstream, target.host, args.images, args.tags)
    transport = CountingTransport()
    options = RunOptions(deadline=deadline, hard_deadline=hard_stop_after(deadline))

    async def go() -> tuple[Report, dict[str, float]]:
        async with registries_for(config, None, transport=transport) as registries:
            report = await Engine(config, registries).run(options)
            return report, dict(registries.health.marked_at)

    started = time.monotonic()
    report, marked = asyncio.run(go())
    wall = time.monotonic() - started
    down_at = marked.get(upstream)
    sent = [t for host, t in transport.sent if host == upstream]
    after = [t for t in sent if down_at is not None and t > down_at]
    accepted_after = None
    if silent is not None:
        accepted_after = sum(1 for t in silent.accepted_at if down_at is not None and t > down_at)
    return Outcome(
        scenario,
        deadline,
        wall,
        report,
        len(sent),
        len(after),
        accepted_after,
        None if down_at is None else down_at - started,
    )


def _skopeo(upstream: str, args: argparse.Namespace, workdir: Path) -> float | None:
    """Wall time of `skopeo sync` of the same tags from `upstream` (capped), or None."""
    if SKOPEO is None:
        return None
    spec = {
        upstream: {
            "tls-verify": False,
            "images": {
                f"istio/app{i}": [f"1.{t}" for t in range(args.tags)] for i in range(args.images)
            },
        }
    }
    yaml_path = workdir / "skopeo-sync.yaml"
    yaml_path.write_text(json.dumps(spec))  # JSON is YAML
    started = time.monotonic()
    try:
        subprocess.run(
            [
                SKOPEO,
                "sync",
                "--all",
                "--src",
                "yaml",
                "--dest",
                "dir",
                str(yaml_path),
                str(workdir / "skopeo-out"),
            ],
            capture_output=True,
            timeout=args.skopeo_cap,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return float("inf")
    return time.monotonic() - started


def _codes(report: Report) -> str:
    tags = collections.Counter(
        f"{t.action}/{t.error.code if t.error else '-'}" for t in report.all_tags()
    )
    discovery = collections.Counter(
        i.discovery_error.code if i.discovery_error else "-" for i in report.images
    )
    tag_text = ", ".join(f"{n} {k}" for k, n in sorted(tags.items()))
    disc_text = ", ".join(f"{n} {k}" for k, n in sorted(discovery.items()))
    return f"{tag_text}; discovery: {disc_text}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 images x 2 tags")
    parser.add_argument("--skopeo-cap", type=float, default=120.0)
    args = parser.parse_args()
    args.images, args.tags = (2, 2) if args.quick else (5, 10)
    deadlines = [10.0] if args.quick else [30.0, 10.0]
    timeouts, policy = Timeouts(), RetryPolicy()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"Failure bench: {args.images * args.tags} tags over {args.images} images, discovery on; "
        f"commit {commit or '?'}; {platform.node()} ({platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()})"
    )
    print(
        f"timeouts: connect {timeouts.connect:g}s, metadata {timeouts.metadata:g}s, "
        f"blob stall {timeouts.stall:g}s; unanswered tries before a host is down: "
        f"{policy.unanswered_attempts}"
    )
    outcomes: list[tuple[Outcome, float, float | None]] = []
    with (
        tempfile.TemporaryDirectory(prefix="failure-bench-") as tmp,
        start_registry("anonymous", base_dir=Path(tmp) / "target") as target,
    ):
        for deadline in deadlines:
            with SilentServer() as silent:
                outcome = _run("hung", silent.host, target, args, deadline=deadline, silent=silent)
                sk = _skopeo(silent.host, args, Path(tmp)) if deadline == deadlines[0] else None
            outcomes.append((outcome, deadline + 15, sk))
        refused = refused_host()
        outcomes.append(
            (
                _run("refused", refused, target, args, deadline=deadlines[0]),
                5.0,
                _skopeo(refused, args, Path(tmp)),
            )
        )
        with unresolvable():
            outcome = _run(
                "unresolvable", f"{UNRESOLVABLE}:5000", target, args, deadline=deadlines[0]
            )
        outcomes.append((outcome, 5.0, None))

    print()
    print(
        "| upstream | deadline (hard stop) | report complete after | goal | status | tags | "
        "marked down after | requests to the host | after marked down | skopeo sync |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed_goals = 0
    for o, goal_s, sk in outcomes:
        goal = goal_s
        met = o.wall_s <= goal and o.after_down == 0
        failed_goals += not met
        after = f"{o.after_down}"
        if o.accepted_after_down is not None:
            after += f" ({o.accepted_after_down} connections accepted)"
        marked = f"{o.marked_after_s:.1f} s" if o.marked_after_s is not None else "not marked"
        if sk is None:
            skopeo = "—"
        elif sk == float("inf"):
            skopeo = f"> {args.skopeo_cap:.0f} s (stopped)"
        else:
            skopeo = f"{sk:.2f} s (image-sync/skopeo {o.wall_s / sk:.0f}x)"
        print(
            f"| {o.scenario} | {o.deadline:.0f} s ({hard_stop_after(o.deadline):.0f} s) | "
            f"{o.wall_s:.1f} s | <= {goal:.0f} s {'met' if met else 'MISSED'} | "
            f"{o.report.status} | {_codes(o.report)} | {marked} | {o.sent} | {after} | {skopeo} |"
        )
    return 1 if failed_goals else 0


if __name__ == "__main__":
    sys.exit(main())
