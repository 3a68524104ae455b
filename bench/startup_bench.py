"""Start-up cost: `image-sync --version`, the CLI's imports and the function's `import main`.

Each figure comes from `--runs` fresh interpreters (the same Python, `sys.executable`):

- `python -m sync --version`: wall time around the process, and its CPU time;
- `python -X importtime -c "import sync.cli"` and `... "import main"`: the cumulative import time
  Python reports for that module (and, for `main`, the part of it spent in Flask and the
  functions framework), and the process's CPU time;
- the peak RSS of an interpreter that has imported what a `sync` run imports.

Wall and import times are reported as the best of the runs (as `timeit` does: on a shared
machine the slower runs measure the other load), CPU times as medians.

`--before DIR` measures an older checkout too (for instance
`git archive 36fe5da | tar -x -C /tmp/before`), run by the same interpreter with DIR as its
working directory and first on `sys.path`, interleaved run by run with the current code, and
prints the ratios.

Run: `.venv/bin/python bench/startup_bench.py [--before DIR]` (`--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, load_average, machine_summary, median, print_table, run_measured

VERSION_TARGET = 0.5  # `--version` wall, after / before
MAIN_TARGET = 2 / 3  # `import main`, after / before
SYNC_IMPORTS = "import sync.cli, sync.config, sync.credentials, sync.engine, sync.report"
_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)")


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "IMAGE_SYNC_"))}
    env["PYTHONPATH"] = str(root)
    return env


def _import_times(stderr: str) -> dict[str, float]:
    """Cumulative import seconds of every module in a `-X importtime` report."""
    times: dict[str, float] = {}
    for match in map(_IMPORT_LINE.match, stderr.splitlines()):
        if match is not None:
            name = match.group(3)
            times[name] = max(times.get(name, 0.0), int(match.group(1)) / 1e6)
    return times


def _where_sync_is(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import sync; print(sync.__file__)"],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _measure(root: Path) -> dict[str, float]:
    """One fresh interpreter per figure: wall and CPU of `--version`, import times and CPU of
    `import sync.cli` and `import main`, peak RSS after a sync run's imports."""
    figures: dict[str, float] = {}
    version = run_measured([sys.executable, "-m", "sync", "--version"], env=_env(root), cwd=root)
    figures["version"] = version.check().wall_s
    figures["version_cpu"] = version.cpu_s
    for key, module in (("cli", "sync.cli"), ("main", "main")):
        m = run_measured(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            env=_env(root),
            cwd=root,
        ).check()
        times = _import_times(m.stderr)
        figures[key] = times.get(module, 0.0)
        figures[f"{key}_cpu"] = m.cpu_s
        if key == "main":
            figures["web"] = times.get("flask", 0.0) + times.get("functions_framework", 0.0)
    rss = run_measured([sys.executable, "-c", SYNC_IMPORTS], env=_env(root), cwd=root).check()
    figures["rss"] = rss.max_rss_mib
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 runs: a smoke run")
    parser.add_argument("--runs", type=int, help="interpreters per figure (default 15)")
    parser.add_argument("--before", type=Path, metavar="DIR", help="an older checkout to compare")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 15)
    roots = {"now": REPO_ROOT}
    if args.before is not None:
        roots = {"before": args.before.resolve(), "now": REPO_ROOT}
    for label, root in roots.items():
        where = _where_sync_is(root)
        if not where.startswith(str(root)):
            print(f"{label}: `sync` resolves to {where}, not under {root}", file=sys.stderr)
            return 2

    print(machine_summary())
    print(f"{runs} fresh interpreters per figure, {' and '.join(roots)} interleaved")
    figures: dict[str, dict[str, list[float]]] = {label: {} for label in roots}
    for _ in range(runs):
        for label, root in roots.items():
            for name, figure in _measure(root).items():
                figures[label].setdefault(name, []).append(figure)
    print(f"load average at the end: {load_average()}")

    # Wall and import times are the best of the runs (what the code costs when nothing else
    # competes for the CPU; the way `timeit` reports); CPU times are medians.
    rows: list[list[object]] = []
    best: Callable[[list[float]], float] = min
    labels: dict[str, tuple[str, Callable[[list[float]], float], float]] = {
        "version": ("`python -m sync --version` wall ms, best", best, 1000.0),
        "version_cpu": ("`python -m sync --version` CPU ms, median", median, 1000.0),
        "cli": ("import sync.cli ms, best", best, 1000.0),
        "main": ("import main ms, best", best, 1000.0),
        "web": ("  of which flask + functions_framework ms", best, 1000.0),
        "main_cpu": ("`python -c 'import main'` CPU ms, median", median, 1000.0),
        "rss": ("peak RSS after a sync run's imports MiB", median, 1.0),
    }
    value: dict[str, dict[str, float]] = {}
    for key, (label, pick, scale) in labels.items():
        value[key] = {name: pick(figures[name][key]) * scale for name in roots}
        row: list[object] = [label, *(f"{value[key][name]:.1f}" for name in roots)]
        if "before" in roots:
            before = value[key]["before"]
            row.append(f"{value[key]['now'] / before:.2f}x" if before else "-")
        rows.append(row)
    headers = ["figure", *roots, *(["now/before"] if "before" in roots else [])]
    print_table("Start-up", headers, rows)
    if "before" in roots:
        print("\ntargets:")
        for key, limit in (("version", VERSION_TARGET), ("main", MAIN_TARGET)):
            ratio_now = value[key]["now"] / value[key]["before"]
            print(
                f"  {labels[key][0].split(' ms')[0]} <= {limit:.2f}x before: {ratio_now:.2f}x -> "
                f"{'MET' if ratio_now <= limit else 'NOT MET'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
