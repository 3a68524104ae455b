"""The benchmark scripts still run: each, with `--quick` (tiny sizes), prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import check_tools

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(check_tools()), reason=f"benchmark tools missing: {', '.join(check_tools())}"
    ),
]


@pytest.mark.parametrize(
    ("script", "headings"),
    [
        (
            "copy_bench.py",
            [
                "Cold copy of 2 tags",
                "image-sync/skopeo",
                "Peak RSS copying one image with one layer",
                "baseline: `python -m sync --version` peak RSS",
                "cold wall <= 0.8x skopeo sync",
                "warm wall <= 0.8x skopeo sync",
                "client CPU per GiB <= 1.0x skopeo sync",
            ],
        ),
        (
            "sync_bench.py",
            [
                "(a) wall time",
                "(a) one warm run: requests each registry answered",
                "(a) target: warm image-sync run",
                "(b) WAN",
                "warm <= 0.05x skopeo sync",
            ],
        ),
        ("startup_bench.py", ["Start-up", "import main ms", "`python -m sync --version` wall"]),
        (
            "referrers_bench.py",
            ["Requests each registry answered in one warm run", "signed, referrers on"],
        ),
        (
            "fanout_bench.py",
            [
                "Fan-out: 4 images x 2 multi-platform tags, cold then warm",
                "fan-out, 2 at once",
                "every tag digest-exact on every target: yes",
            ],
        ),
    ],
)
def test_bench_script_prints_its_tables_in_quick_mode(script: str, headings: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{script} --quick failed:\n{done.stderr[-4000:]}"
    missing = [h for h in headings if h not in done.stdout]
    assert not missing, f"{script} --quick printed no {missing}:\n{done.stdout}"
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
