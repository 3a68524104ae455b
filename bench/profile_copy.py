"""Where a cold copy's CPU goes: image-sync under cProfile, CPU time grouped by library.

Upstream (anonymous): 2 repositories x 2 tags, 2-platform OCI indexes with 3 distinct layers of
20 MiB each (480 MiB). One `python -m sync --config CFG --json sync --no-discover` into an empty
target runs under `cProfile` with the process's CPU clock (`time.process_time`, so time spent
waiting for the CPU on a loaded machine is not counted), then the summary groups every
function's own time by where it lives, and lists the functions with the most own time.

Run: `.venv/bin/python bench/profile_copy.py` (`--quick` for a smoke run, `--out FILE` keeps the
raw profile for `python -m pstats`).
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    MIB,
    REPO_ROOT,
    ImageSpec,
    fill_registry,
    image_sync_env,
    load_average,
    machine_summary,
    print_table,
    run_measured,
    short_name,
    write_image_sync_config,
)
from tests.bed.registry import start_registry

#: Runs `python -m sync ARGS` under cProfile with the CPU clock; writes the profile to argv[1].
_RUNNER = """
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = ["sync", *sys.argv[2:]]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_module, "sync", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
profile.dump_stats(out)
sys.exit(code)
"""

_GROUPS = (
    ("sha256 (hashlib)", ("_hashlib.HASH",)),
    ("socket send/recv (syscalls)", ("'send' of '_socket", "'recv' of '_socket")),
    ("waiting in epoll", ("select.epoll",)),
    ("start-up: imports", ("importlib", "<frozen", "marshal.loads", "builtins.compile")),
    ("h11", ("/h11/",)),
    ("httpcore", ("/httpcore/",)),
    ("anyio", ("/anyio/",)),
    ("httpx", ("/httpx/",)),
    ("asyncio", ("/asyncio/", "_asyncio.")),
    ("pydantic", ("/pydantic",)),
    ("image-sync (sync/)", ("/sync/",)),
)


def _group(key: tuple[str, int, str]) -> str:
    where = f"{key[0]} {key[2]}"
    for name, needles in _GROUPS:
        if any(n in where for n in needles):
            return name
    return "other (stdlib, builtins)"


def summarise(profile: Path, top: int = 12) -> None:
    stats = pstats.Stats(str(profile))
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values()) or 1.0
    groups: dict[str, float] = {}
    for key, value in table.items():
        groups[_group(key)] = groups.get(_group(key), 0.0) + value[2]
    print_table(
        f"CPU by where it is spent (own time; {total:.2f} s in all)",
        ["where", "CPU s", "share"],
        [
            [name, f"{t:.2f}", f"{100 * t / total:.0f} %"]
            for name, t in sorted(groups.items(), key=lambda x: -x[1])
        ],
    )
    rows = []
    for key, value in sorted(table.items(), key=lambda x: -x[1][2])[:top]:
        path = key[0].replace(str(REPO_ROOT) + "/", "")
        path = path.split("site-packages/")[-1].split("lib/python3")[-1]
        rows.append([f"{path}:{key[1]}({key[2]})"[:90], value[1], f"{value[2]:.3f}"])
    print_table("Functions with the most own CPU", ["function", "calls", "own CPU s"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, help="keep the raw profile in this file")
    args = parser.parse_args(argv)
    layer_size = 256 * 1024 if args.quick else 20 * MIB
    print(machine_summary())
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        base = Path(tmp)
        upstream = start_registry("anonymous", base_dir=base / "upstream")
        target = start_registry("anonymous", base_dir=base / "target")
        try:
            repos = [f"bench/app{i}" for i in range(2)]
            tags = ["1.0.0", "1.0.1"]
            images = fill_registry(upstream, repos, tags, layers=3, layer_size=layer_size)
            total = sum(i.blob_bytes for i in images)
            config = write_image_sync_config(
                base / "image-sync.json",
                [
                    ImageSpec(
                        short_name(r),
                        f"{upstream.host}/{r}",
                        f"{target.host}/mirror/{short_name(r)}",
                        tuple(tags),
                    )
                    for r in repos
                ],
                {upstream.host: {"tls": "disabled"}, target.host: {"tls": "disabled"}},
            )
            out = args.out or base / "copy.prof"
            argv_ = [sys.executable, "-c", _RUNNER, str(out)]
            argv_ += ["--config", str(config), "--json", "sync", "--no-discover"]
            m = run_measured(argv_, env=image_sync_env(base / "home"), cwd=REPO_ROOT).check()
            report = json.loads(m.stdout)
            if report["status"] != "ok":
                raise RuntimeError(f"image-sync run not ok: {m.stdout[-2000:]}")
        finally:
            upstream.stop()
            target.stop()
        print(
            f"cold copy of {len(images)} tags, {total / MIB:.1f} MiB of blobs, under cProfile: "
            f"{m.wall_s:.2f} s wall, {m.cpu_s:.2f} s CPU (profiler included), "
            f"load {load_average()}"
        )
        summarise(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
