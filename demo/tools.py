"""Finding the programs the demo runs, and saying exactly what to install when one is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "MissingTool", "Tools", "find_tools", "registry_binary"]

#: The repository root: main.py, the `sync` package and `tests.bed` live here.
ROOT = Path(__file__).resolve().parent.parent

_REGISTRY_ENV = "IMAGE_SYNC_TEST_REGISTRY"


class MissingTool(Exception):
    """A program the demo needs is not installed; the message says what to install."""


@dataclass(frozen=True)
class Tools:
    registry: str  # CNCF Distribution binary
    registry_version: str
    functions_framework: tuple[str, ...]  # argv prefix
    image_sync: tuple[str, ...]  # argv prefix of the CLI
    curl: str | None  # None: the demo calls the function with httpx


def registry_binary() -> str | None:
    """What tests.bed.registry will start: $IMAGE_SYNC_TEST_REGISTRY, else `docker-registry`
    or `registry` on the PATH; None when there is no such executable."""
    explicit = os.environ.get(_REGISTRY_ENV)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("docker-registry", "registry"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _docker_running() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _missing_registry_message() -> str:
    explicit = os.environ.get(_REGISTRY_ENV)
    looked = (
        f"${_REGISTRY_ENV}={explicit} is not an executable file"
        if explicit
        else "no `docker-registry` or `registry` on the PATH"
    )
    lines = [
        f"the demo needs a CNCF Distribution registry binary: {looked}.",
        "Install one:",
        "  Debian/Ubuntu:  sudo apt-get install docker-registry",
        "  macOS:          brew install distribution",
        f"  elsewhere:      put Distribution's `registry` on the PATH, or set {_REGISTRY_ENV}",
        "                  to its path",
    ]
    if _docker_running():
        lines += [
            "(Docker is running, so the `registry:2` image could stand in, but the demo runs",
            " local processes only: installing the binary above is quicker and leaves nothing",
            " behind.)",
        ]
    return "\n".join(lines)


def _bin_dir_script(name: str) -> str | None:
    """`name` next to this interpreter (the virtual environment's bin), else on the PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def find_tools() -> Tools:
    """Every program the demo starts; MissingTool with installation advice otherwise."""
    registry = registry_binary()
    if registry is None:
        raise MissingTool(_missing_registry_message())
    try:
        version = subprocess.run(
            [registry, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingTool(f"{registry} does not run: {exc}") from None
    first, _, rest = version.partition(" ")
    if rest and Path(first).name in ("docker-registry", "registry"):
        version = rest  # "/usr/bin/docker-registry github.com/docker/distribution 2.8.2+ds1"
    framework = _bin_dir_script("functions-framework")
    if framework is None:
        raise MissingTool(
            "functions-framework is not installed in this Python environment: run `make setup` "
            "(or `pip install -r requirements.txt`)"
        )
    cli = _bin_dir_script("image-sync")
    return Tools(
        registry=registry,
        registry_version=version or "version unknown",
        functions_framework=(framework,),
        image_sync=(cli,) if cli else (sys.executable, "-m", "sync"),
        curl=shutil.which("curl"),
    )
