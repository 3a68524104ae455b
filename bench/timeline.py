"""A timeline of one image-sync run: every HTTP request and the engine's phases, for the benches.

`python -m bench.timeline OUT.jsonl ARGS...` runs `python -m sync ARGS...` with the recording
installed from outside (nothing in `sync/` knows of it) and writes one JSON line per event to
OUT.jsonl (with `BENCH_PROFILE=FILE` in the environment, a cProfile of the run goes to FILE):
`{"kind": "request" | "phase" | "mark", "name", "start", "end", ...}`, times in
seconds since the process started (from /proc: the interpreter's own start-up included).
`summarize(path)` turns such a file into text: where the time went before the first request,
how many requests were in flight over time, and which requests and phases ran when.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main", "summarize"]


def _process_start() -> float:
    """This process's start as a `time.time()` value (Linux: /proc/self/stat, field 22)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/self/stat") as stat:
        started_after_boot = int(stat.read().rsplit(")", 1)[1].split()[19]) / ticks
    with open("/proc/uptime") as uptime:
        up = float(uptime.read().split()[0])
    return time.time() - up + started_after_boot


class _Recorder:
    def __init__(self, out: Path) -> None:
        self.out = out
        # The wall clock only to place the process start; monotonic after that.
        self.zero = time.monotonic() - (time.time() - _process_start())
        self.events: list[dict[str, Any]] = []

    def now(self) -> float:
        return time.monotonic() - self.zero

    def mark(self, name: str) -> None:
        t = self.now()
        self.events.append({"kind": "mark", "name": name, "start": t, "end": t})

    def write(self) -> None:
        self.mark("exit")
        with self.out.open("w") as f:
            for event in self.events:
                f.write(json.dumps(event) + "\n")


def _install(rec: _Recorder) -> None:
    """Wrap httpx's send and the engine's phases (imported here, after the start-up mark)."""
    import httpx  # noqa: PLC0415

    from sync.auth import Authenticator  # noqa: PLC0415
    from sync.copy import Copier  # noqa: PLC0415
    from sync.engine import Engine  # noqa: PLC0415
    from sync.referrers import Referrers  # noqa: PLC0415

    send = httpx.AsyncClient.send

    async def timed_send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        event: dict[str, Any] = {
            "kind": "request",
            "name": f"{request.method} {request.url.path}",
            "host": request.url.netloc.decode("ascii"),
            "start": rec.now(),
        }
        rec.events.append(event)
        try:
            response = await send(self, request, **kwargs)
        except BaseException as exc:
            event.update(end=rec.now(), status=type(exc).__name__)
            raise
        event.update(end=rec.now(), status=response.status_code)
        return response

    httpx.AsyncClient.send = timed_send  # type: ignore[method-assign]

    def phase(owner: type, attr: str, label: Callable[..., str]) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            event: dict[str, Any] = {
                "kind": "phase",
                "name": f"{owner.__name__}.{attr} {label(*args, **kwargs)}".rstrip(),
                "start": rec.now(),
            }
            rec.events.append(event)
            try:
                return await original(*args, **kwargs)
            finally:
                event["end"] = rec.now()

        setattr(owner, attr, wrapped)

    def tag(_self: Any, work: Any, *_: Any, **__: Any) -> str:
        return f"{work.image.name}:{work.tag}"

    def copy(_self: Any, _src: Any, ref: Any, *_: Any, **__: Any) -> str:
        return str(ref.tag or ref.digest)

    def job(_self: Any, job: Any, *_: Any, **__: Any) -> str:
        return f"{job.source_repo}@{job.digest[:19]}"

    def host(self: Any, *_: Any, **__: Any) -> str:
        return str(self.host)

    def sync_run(self: Any, *_: Any, **__: Any) -> str:
        rec.mark("run starts")
        return ""

    phase(Engine, "run", sync_run)
    phase(Engine, "_tag", tag)
    phase(Engine, "_tag_referrers", lambda _s, work, *a, **k: f"{work.image.name}:{work.tag}")
    phase(Copier, "copy", copy)
    phase(Referrers, "sync", job)
    phase(Authenticator, "ping", host)
    phase(Authenticator, "_fetch_token", host)
    phase(Authenticator, "credentials", host)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rec = _Recorder(Path(args[0]))
    rec.mark("python started")
    atexit.register(rec.write)
    from sync import cli  # noqa: PLC0415

    rec.mark("sync.cli imported")
    _install(rec)
    rec.mark("recording installed")
    profile = os.environ.get("BENCH_PROFILE")
    if not profile:
        return cli.main(args[1:])
    import cProfile  # noqa: PLC0415

    with cProfile.Profile() as prof:
        code = cli.main(args[1:])
    prof.dump_stats(profile)
    return code


# -- reading a timeline -------------------------------------------------------------------------


def summarize(path: Path, *, rows: int = 60) -> str:
    """Text: marks, request counts per host and kind, in-flight requests per 50 ms, the first
    `rows` requests and the phases' spans."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    requests = sorted((e for e in events if e["kind"] == "request"), key=lambda e: e["start"])
    phases = [e for e in events if e["kind"] == "phase" and "end" in e]
    out = [f"timeline {path.name}"]
    for mark in (e for e in events if e["kind"] == "mark"):
        out.append(f"  {mark['start']:7.3f}  {mark['name']}")
    if requests:
        out.append(
            f"  {requests[0]['start']:7.3f}  first request; last answered "
            f"{max(r.get('end', r['start']) for r in requests):.3f}"
        )
    kinds: dict[str, int] = {}
    for r in requests:
        method, _, p = r["name"].partition(" ")
        part = next(
            (k for k in ("manifests", "blobs/uploads", "blobs", "tags", "referrers") if k in p),
            "v2" if p.rstrip("/") == "/v2" else "other",
        )
        key = f"{r['host']} {method} {part}"
        kinds[key] = kinds.get(key, 0) + 1
    out.append(f"  requests: {len(requests)}")
    out += [f"    {n:5d}  {k}" for k, n in sorted(kinds.items())]
    by_phase: dict[str, list[float]] = {}
    for p in phases:
        by_phase.setdefault(p["name"].split(" ", 1)[0], []).append(p["end"] - p["start"])
    out.append("  phases (count, total s, max s):")
    for name, spans in sorted(by_phase.items()):
        out.append(f"    {name:32s} {len(spans):5d} {sum(spans):8.2f} {max(spans):7.3f}")
    if requests:
        end = max(r.get("end", r["start"]) for r in requests)
        step = 0.05
        line = []
        t = requests[0]["start"]
        while t < end:
            n = sum(1 for r in requests if r["start"] < t + step and r.get("end", end) > t)
            line.append(str(min(n, 9)) if n < 10 else "#")
            t += step
        out.append(f"  in flight per {step * 1000:g} ms (# = 10+): " + "".join(line))
        out.append(f"  first {rows} requests (start end ms host request status):")
        for r in requests[:rows]:
            ms = (r.get("end", r["start"]) - r["start"]) * 1000
            out.append(
                f"    {r['start']:7.3f} {r.get('end', 0):7.3f} {ms:5.0f} {r['host']} "
                f"{r['name'][:90]} {r.get('status')}"
            )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
