"""Start-up cost: the CLI's entry module and the function's `main` import only what every
caller needs; the config, the engine and the HTTP stack load when a command or run uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

HEAVY = (
    "pydantic",
    "httpx",
    "sync.config",
    "sync.engine",
    "sync.report",
    "google.cloud.secretmanager",
)


def _loaded_after(statement: str) -> list[str]:
    """Which of HEAVY (and the web stack) a fresh interpreter holds after `statement`."""
    probe = (
        f"{statement}\n"
        "import json, sys\n"
        f"names = {[*HEAVY, 'flask', 'functions_framework', 'asyncio']!r}\n"
        "print(json.dumps([n for n in names if n in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_cli_module_loads_no_config_engine_http_or_web_stack() -> None:
    assert _loaded_after("import sync.cli") == []


def test_version_runs_without_loading_the_config_or_engine() -> None:
    loaded = _loaded_after(
        "import contextlib, io, sync.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    sync.cli.main(['--version'])"
    )
    assert loaded == []


def test_function_module_defers_config_engine_and_http_to_the_first_run() -> None:
    loaded = _loaded_after("import main")
    assert not set(loaded) & set(HEAVY), loaded
