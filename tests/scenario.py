"""The world of the integration tests: test-bed registries paired by auth mode, upstreams
seeded with images, configs that point at them with credentials in env vars, runs through the
Python API or the `python -m sync` subprocess, and views of what a registry holds or was asked.

Owns nothing of the code under test beyond its public entry points (`Engine`, `RunOptions`,
`registries_for`, `CredentialResolver`, `load_config`, the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from sync.config import Config, load_config
from sync.credentials import CredentialResolver
from sync.engine import Engine, RunOptions, registries_for
from sync.registry import HostSettings, Registries
from sync.report import Report, TagReport
from sync.retry import RetryPolicy
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import AuthMode, RegistryRequest, RegistryServer, start_registry

__all__ = [
    "PAIRS",
    "REPO_ROOT",
    "WRITE_METHODS",
    "CliResult",
    "Pair",
    "Scenario",
    "cli_env",
    "engine_run",
    "manifest_requests",
    "run_now",
    "seed",
    "seeded_registry",
    "storage_snapshot",
    "tag_reports",
    "writes",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})
_CLI_TIMEOUT = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class Pair:
    """A source and a target auth mode; `anonymous_source` pulls without credentials."""

    source: AuthMode
    target: AuthMode
    anonymous_source: bool = False

    @property
    def id(self) -> str:
        src = f"{self.source}(anonymous)" if self.anonymous_source else self.source
        return f"{src}->{self.target}"

    @property
    def slug(self) -> str:
        """A repository path component naming the pair."""
        return f"{self.source}{'-anon' if self.anonymous_source else ''}-to-{self.target}"


PAIRS: tuple[Pair, ...] = (
    Pair("anonymous", "anonymous"),
    Pair("basic", "basic"),
    Pair("bearer-hub", "bearer-hub"),
    Pair("bearer-quay", "bearer-quay"),
    # What production does: anonymous Docker Hub pulls, pushes to Quay as a robot.
    Pair("bearer-hub", "bearer-quay", anonymous_source=True),
)


@contextlib.contextmanager
def seeded_registry(
    base_dir: Path,
    catalogue: Mapping[str, Mapping[str, Image]],
    auth: AuthMode = "anonymous",
) -> Iterator[RegistryServer]:
    """A registry holding `catalogue` (repository -> tag -> image), stopped on the way out;
    read-only for its tests, so one can serve a whole module."""
    server = start_registry(auth, base_dir=base_dir)
    try:
        for repo, tags in catalogue.items():
            seed(server, repo, tags)
        yield server
    finally:
        server.stop()


def _env_prefix(server: RegistryServer) -> str:
    return f"BED_{server.auth.replace('-', '_').upper()}_{server.port}"


@dataclass(frozen=True)
class CliResult:
    """One `python -m sync` run: exit code and both streams."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as one JSON document (fails the test when it is anything else)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as err:
            raise AssertionError(
                f"stdout of {' '.join(self.args)} is not one JSON document ({err}):\n"
                f"{self.stdout[:2000]}"
            ) from None

    def describe(self) -> str:
        return (
            f"`image-sync {' '.join(self.args)}` exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


@dataclass
class Scenario:
    """A config mirroring images from `upstream` to `target`, with credentials in env vars."""

    upstream: RegistryServer
    target: RegistryServer
    workdir: Path
    images: list[dict[str, object]] = field(default_factory=list)
    top: dict[str, object] = field(default_factory=dict)
    #: Overrides of the credential env values (e.g. a wrong password); None drops a variable.
    env_overrides: dict[str, str | None] = field(default_factory=dict)

    # -- config ------------------------------------------------------------------------------

    def add_image(
        self,
        name: str,
        tags: Sequence[str],
        *,
        upstream_repo: str | None = None,
        target_repo: str | None = None,
        **extra: object,
    ) -> dict[str, object]:
        """An image `name` from `istio/NAME` upstream to `sail-dev/NAME` on the target."""
        entry: dict[str, object] = {
            "name": name,
            "upstream": f"{self.upstream.host}/{upstream_repo or self.upstream_repo(name)}",
            "target": f"{self.target.host}/{target_repo or self.target_repo(name)}",
            "tags": list(tags),
            **extra,
        }
        self.images.append(entry)
        return entry

    @staticmethod
    def upstream_repo(name: str) -> str:
        return f"istio/{name}"

    @staticmethod
    def target_repo(name: str) -> str:
        return f"sail-dev/{name}"

    def registries(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for server in (self.upstream, self.target):
            entry = {"tls": "disabled"}
            if server.username is not None:
                prefix = _env_prefix(server)
                entry["username"] = f"env:{prefix}_USER"
                entry["password"] = f"env:{prefix}_PASSWORD"
            out[server.host] = entry
        return out

    def config_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "check_new_tags": False,
            **self.top,
            "registries": self.registries(),
        }

    def write_config(self, name: str = "image-sync-config.json") -> Path:
        path = self.workdir / name
        path.write_text(json.dumps(self.config_dict(), indent=2))
        return path

    def env(self) -> dict[str, str]:
        """Credentials (as the config's `env:` REFs name them) and an empty Docker config."""
        docker_config = self.workdir / "docker-config"
        docker_config.mkdir(exist_ok=True)
        env = {"DOCKER_CONFIG": str(docker_config)}
        for server in (self.upstream, self.target):
            if server.username is not None and server.password is not None:
                prefix = _env_prefix(server)
                env[f"{prefix}_USER"] = server.username
                env[f"{prefix}_PASSWORD"] = server.password
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def password_var(self, server: RegistryServer) -> str:
        return f"{_env_prefix(server)}_PASSWORD"

    # -- runs ----------------------------------------------------------------------------------

    def run(self, options: RunOptions | None = None) -> Report:
        """One engine run through the Python API, as the CLI would wire it."""
        config = load_config(self.write_config())
        credentials = CredentialResolver(config, env=self.env())

        async def main() -> Report:
            async with registries_for(config, credentials) as registries:
                return await Engine(config, registries).run(options)

        try:
            return asyncio.run(main())
        finally:
            credentials.close()

    def cli(self, *args: str, config: Path | None = None) -> CliResult:
        """`python -m sync --config CFG ARGS...` in a subprocess with this scenario's env."""
        path = config if config is not None else self.write_config()
        return run_cli("--config", str(path), *args, env=self.env())

    # -- registries ----------------------------------------------------------------------------

    def clear_requests(self) -> None:
        self.upstream.clear_requests()
        self.target.clear_requests()


def run_now(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, then collect garbage at once: a failed run leaves cancelled coroutines
    behind, and CPython 3.11.7 raises "SystemError: AST constructor recursion depth mismatch"
    when the collector finalises them in the middle of pytest's traceback rendering."""
    try:
        return asyncio.run(main)
    finally:
        gc.collect()


def engine_run(
    config: Config,
    transport: httpx.AsyncBaseTransport,
    *,
    policy: RetryPolicy,
    options: RunOptions | None = None,
) -> Report:
    """One engine run over `transport` (in-memory registries, say), anonymous everywhere."""

    async def main() -> Report:
        registries = Registries(lambda _host: HostSettings(), policy=policy, transport=transport)
        async with registries:
            return await Engine(config, registries).run(options)

    return run_now(main())


def run_cli(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """`python -m sync ARGS...` in `cwd` (the repository root by default): the environment is
    this process's minus anything that could send loopback traffic elsewhere or change the
    config, plus `env`."""
    full = cli_env(env)
    proc = subprocess.run(
        [sys.executable, "-m", "sync", *args],
        cwd=cwd or REPO_ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=_CLI_TIMEOUT,
        check=False,
    )
    return CliResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus proxies and config settings, plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy")
        and not k.startswith(("IMAGE_SYNC", "BED_", "DOCKER_CONFIG"))
    }
    return {**base, "NO_PROXY": "*", **(env or {})}


def seed(server: RegistryServer, repo: str, tags: Mapping[str, Image]) -> dict[str, str]:
    """Push each image under its tag; returns tag → digest."""
    with RawClient(server) as raw:
        return {tag: raw.push_image(repo, tag, image) for tag, image in tags.items()}


def tag_reports(report: Report) -> dict[tuple[str, str], TagReport]:
    """(image name, tag) → that tag's entry; fails on a repeated entry."""
    out: dict[tuple[str, str], TagReport] = {}
    for image in report.images:
        for tag in image.tags:
            key = (image.name, tag.tag)
            assert key not in out, f"{key} reported twice in {report.to_json()}"
            out[key] = tag
    return out


def writes(requests: Iterable[RegistryRequest]) -> list[RegistryRequest]:
    """The requests that could change a registry."""
    return [r for r in requests if r.method in WRITE_METHODS]


def manifest_requests(
    requests: Iterable[RegistryRequest], method: str | None = None
) -> list[RegistryRequest]:
    return [
        r for r in requests if "/manifests/" in r.path and (method is None or r.method == method)
    ]


def storage_snapshot(server: RegistryServer) -> dict[str, str]:
    """The registry's storage tree: relative path → sha256 of a file's content, or "dir"."""
    out: dict[str, str] = {}
    for path in sorted(server.storage_dir.rglob("*")):
        name = str(path.relative_to(server.storage_dir))
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out
