"""Fan-out over Cloud Tasks against one single run: a simulated large mirror on loopback.

N images (default 200), each with two small multi-platform tags (a 2-platform OCI index and a
2-platform Docker list, one 512-byte layer per platform) on an anonymous upstream registry. Each
scenario copies all of them into its own empty target registry (cold), then runs again with
nothing to copy (warm):

- single: the function under functions-framework without fan-out, one POST, one run of every
  image (the engine copies up to 8 tags at once);
- fan-out C: the same function with fan-out on, the local Cloud Tasks server delivering at most
  C tasks at once (C = 1, 4, 8); gunicorn gets C + 1 single-threaded workers, as Cloud Run gets
  one instance per running task plus the dispatching call. "dispatch" is the time the scheduled
  POST took to answer (every CreateTask through the real google-cloud-tasks client); "all done"
  runs from that POST until the last task finished.

Every tag is checked digest-exact on the target after each cold pass. The machine's load average
is printed before and after each scenario: the cores may be shared.

Run: `.venv/bin/python bench/fanout_bench.py` (`--quick` for a tiny smoke run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import load_average, machine_summary, print_table, verify_copies
from tests.bed import images
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer, start_registry
from tests.fake_cloud_tasks import FakeCloudTasks
from tests.function_bed import QUEUE, function_server, scheduler_headers, write_config

TAGS = ("1.0", "latest")


@dataclass
class Result:
    mode: str
    dispatch_s: float | None
    cold_s: float
    warm_s: float
    tasks: int
    retried: int
    problems: list[str]
    load_before: str
    load_after: str


def _push_upstream(hub: RegistryServer, count: int) -> list[tuple[str, str, str]]:
    """Pushes the images; returns (repository, tag, digest) of every tag."""
    expected = []
    with RawClient(hub) as raw:
        for i in range(count):
            repo = f"istio/bench-{i:03d}"
            built = {
                "1.0": images.oci_index(
                    i, platforms=("linux/amd64", "linux/arm64"), layers=1, layer_size=512
                ),
                "latest": images.docker_manifest_list(10_000 + i, layers=1, layer_size=512),
            }
            for tag, image in built.items():
                raw.push_image(repo, tag, image)
                expected.append((repo, tag, image.digest))
    return expected


def _config(base: Path, hub: RegistryServer, target: RegistryServer, count: int) -> Path:
    entries: list[dict[str, object]] = [
        {
            "name": f"bench-{i:03d}",
            "upstream": f"{hub.host}/istio/bench-{i:03d}",
            "target": f"{target.host}/sail-dev/bench-{i:03d}",
            "tags": list(TAGS),
        }
        for i in range(count)
    ]
    return write_config(base / "image-sync-config.json", entries, [hub.host, target.host])


def _post(client: httpx.Client, url: str, schedule_time: str) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    response = client.post(url, content=b"{}", headers=scheduler_headers(schedule_time))
    return time.monotonic() - start, response


def _single(base: Path, hub: RegistryServer, expected: Sequence[tuple[str, str, str]]) -> Result:
    load_before = load_average()
    with (
        start_registry("anonymous", base_dir=base / "target") as target,
        function_server(
            _config(base, hub, target, len(expected) // 2),
            base / "function",
            tasks=None,
            threads=2,
        ) as server,
        httpx.Client(timeout=3600, trust_env=False) as client,
    ):
        cold_s, cold = _post(client, server.url, "2026-12-01T02:00:00Z")
        if cold.status_code != 200 or cold.json().get("status") != "ok":
            raise SystemExit(f"the single cold run failed: {cold.status_code} {cold.text[:2000]}")
        problems = verify_copies(
            target, [(f"sail-dev/{r.split('/')[1]}", t, d) for r, t, d in expected]
        )
        warm_s, warm = _post(client, server.url, "2026-12-02T02:00:00Z")
        if warm.status_code != 200 or warm.json()["summary"]["copied"] != 0:
            raise SystemExit(f"the single warm run was not a no-op: {warm.text[:2000]}")
    return Result("single run", None, cold_s, warm_s, 1, 0, problems, load_before, load_average())


def _fanout(
    base: Path, hub: RegistryServer, expected: Sequence[tuple[str, str, str]], concurrency: int
) -> Result:
    count = len(expected) // 2
    load_before = load_average()
    with ExitStack() as stack:
        target = stack.enter_context(start_registry("anonymous", base_dir=base / "target"))
        tasks = stack.enter_context(
            FakeCloudTasks(queues=[QUEUE], max_concurrent=concurrency, max_attempts=3)
        )
        server = stack.enter_context(
            function_server(
                _config(base, hub, target, count),
                base / "function",
                tasks=tasks,
                workers=concurrency + 1,
                threads=1,
            )
        )
        client = stack.enter_context(httpx.Client(timeout=3600, trust_env=False))
        start = time.monotonic()
        dispatch_s, answer = _post(client, server.url, "2026-12-01T02:00:00Z")
        if answer.status_code != 200 or len(answer.json()["dispatched"]) != count:
            raise SystemExit(f"the dispatch failed: {answer.status_code} {answer.text[:2000]}")
        if not tasks.wait_idle(3600):
            raise SystemExit("the tasks did not finish within an hour")
        cold_s = time.monotonic() - start
        problems = verify_copies(
            target, [(f"sail-dev/{r.split('/')[1]}", t, d) for r, t, d in expected]
        )
        created = len(tasks.tasks)
        failed = [t.name for t in tasks.tasks if t.state != "succeeded"]
        problems += [f"task did not succeed: {name}" for name in failed]
        start = time.monotonic()
        _, again = _post(client, server.url, "2026-12-02T02:00:00Z")
        if again.status_code != 200:
            raise SystemExit(f"the warm dispatch failed: {again.text[:2000]}")
        if not tasks.wait_idle(3600):
            raise SystemExit("the warm tasks did not finish within an hour")
        warm_s = time.monotonic() - start
        retried = sum(1 for t in tasks.tasks if len(t.attempts) > 1)
    return Result(
        f"fan-out, {concurrency} at once",
        dispatch_s,
        cold_s,
        warm_s,
        created,
        retried,
        problems,
        load_before,
        load_average(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", default="1,4,8", help="comma-separated, e.g. 1,4,8")
    parser.add_argument("--quick", action="store_true", help="4 images, concurrency 1 and 2")
    args = parser.parse_args(argv)
    count = 4 if args.quick else args.images
    levels = [1, 2] if args.quick else [int(c) for c in args.concurrency.split(",")]

    print(machine_summary())
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        base = Path(tmp)
        hub = start_registry("anonymous", base_dir=base / "hub")
        try:
            started = time.monotonic()
            expected = _push_upstream(hub, count)
            print(
                f"upstream: {count} images x {len(TAGS)} tags pushed in "
                f"{time.monotonic() - started:.1f}s",
                flush=True,
            )
            results = [_single(base / "single", hub, expected)]
            print(f"  single run done (load {results[-1].load_after})", flush=True)
            for level in levels:
                results.append(_fanout(base / f"fanout-{level}", hub, expected, level))
                print(f"  fan-out {level} done (load {results[-1].load_after})", flush=True)
        finally:
            hub.stop()

    single = results[0]
    headers = [
        "mode",
        "tasks per pass",
        "dispatch s",
        "cold: all done s",
        "vs single",
        "warm: all done s",
        "vs single",
        "retried",
        "load before -> after",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r.mode,
                str(r.tasks),
                "-" if r.dispatch_s is None else f"{r.dispatch_s:.2f}",
                f"{r.cold_s:.1f}",
                f"{r.cold_s / single.cold_s:.2f}x",
                f"{r.warm_s:.1f}",
                f"{r.warm_s / single.warm_s:.2f}x",
                str(r.retried),
                f"{r.load_before} -> {r.load_after}",
            ]
        )
    title = f"Fan-out: {count} images x {len(TAGS)} multi-platform tags, cold then warm"
    print_table(title, headers, rows)
    problems = [p for r in results for p in r.problems]
    print(
        f"\nevery tag digest-exact on every target: {'yes' if not problems else 'NO'}"
        + "".join(f"\n  {p}" for p in problems[:20])
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
