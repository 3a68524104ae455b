"""Start-up cost: `image-sync --version`, the CLI's imports and the function's `import main`.

Each figure is the median of `--runs` fresh interpreters (the same Python, `sys.executable`):

- `python -m sync --version`: wall time around the process;
- `python -X importtime -c "import sync.cli"` and `... "import main"`: the cumulative import time
  Python reports for that module (and, for `main`, the part of it spent in Flask and the
  functions framework);
- the peak RSS of an interpreter that has imported what a `sync` run imports.

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
import time
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


def _version_wall(root: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "sync", "--version"],
        cwd=root,
        env=_env(root),
        capture_output=True,
        check=True,
    )
    return time.monotonic() - started


def _import_times(root: Path, module: str) -> dict[str, float]:
    """Cumulative import seconds of `module` and of every top-level package it pulled in."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        check=True,
    )
    times: dict[str, float] = {}
    for match in map(_IMPORT_LINE.match, done.stderr.splitlines()):
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


def _measure(root: Path, runs: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(runs):
        add("version", _version_wall(root))
        cli = _import_times(root, "sync.cli")
        add("cli", cli.get("sync.cli", 0.0))
        main = _import_times(root, "main")
        add("main", main.get("main", 0.0))
        add("web", main.get("flask", 0.0) + main.get("functions_framework", 0.0))
    rss = run_measured([sys.executable, "-c", SYNC_IMPORTS], env=_env(root), cwd=root).check()
    add("rss", rss.max_rss_mib)
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
            for name, values in _measure(root, 1).items():
                figures[label].setdefault(name, []).extend(values)
    print(f"load average at the end: {load_average()}")

    rows: list[list[object]] = []
    labels = {
        "version": "`python -m sync --version` wall ms",
        "cli": "import sync.cli ms",
        "main": "import main ms",
        "web": "  of which flask + functions_framework ms",
        "rss": "peak RSS after a sync run's imports MiB",
    }
    for key, label in labels.items():
        scale = 1.0 if key == "rss" else 1000.0
        row: list[object] = [label]
        medians = {name: median(figures[name][key]) * scale for name in roots}
        row += [f"{medians[name]:.1f}" for name in roots]
        if "before" in roots:
            row.append(f"{medians['now'] / medians['before']:.2f}x" if medians["before"] else "-")
        rows.append(row)
    headers = ["figure (median)", *roots, *(["now/before"] if "before" in roots else [])]
    print_table("Start-up", headers, rows)
    if "before" in roots:
        print("\ntargets:")
        for key, limit in (("version", VERSION_TARGET), ("main", MAIN_TARGET)):
            value = median(figures["now"][key]) / median(figures["before"][key])
            print(
                f"  {labels[key].rsplit(' ', 1)[0]} <= {limit:.2f}x before: {value:.2f}x -> "
                f"{'MET' if value <= limit else 'NOT MET'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
