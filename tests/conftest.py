"""Shared fixtures: real Distribution registries in every auth mode, stopped after each test;
the retry policy's sleeps recorded instead of waited; and the `integration` marker: a test that
starts a process (a registry, the function's server, the CLI, the demo, any subprocess) is
marked, and a test that is not marked cannot start one."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import sync.retry
from sync.logs import LOGGERS
from tests.bed.registry import (
    AUTH_MODES,
    AuthMode,
    RegistryFactory,
    RegistryServer,
    started_registries,
)
from tests.bed.token_server import signing_material
from tests.scenario import Scenario

# Fixtures that start processes: a test that uses one, directly or through another fixture, is
# marked `integration` at collection. Tests and module fixtures that start processes themselves
# carry the marker in their module.
PROCESS_FIXTURES = frozenset({"registry_factory", "module_registry_factory"})

# Audit events (sys.audit) raised when this interpreter starts another process.
_SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec"}
    | {"os.system", "os.startfile"}
)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


class ProcessGuard:
    """Fails a test not marked `integration` that starts a process: the start raises (as
    `pytest.fail`, which no `except Exception` swallows) and the test fails at teardown."""

    def __init__(self) -> None:
        self.test: str | None = None  # node id of the running unmarked test, else None
        self.seen: list[str] = []

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if event not in _SPAWN_EVENTS or self.test is None:
            return
        what = f"{event} {args[0]!r}" if args else event
        self.seen.append(what)
        pytest.fail(
            f"{self.test} starts a process ({what}) but is not marked integration",
            pytrace=False,
        )

    def take(self) -> list[str]:
        """The process starts seen in the current test, forgotten."""
        seen, self.seen = self.seen, []
        return seen


GUARD = ProcessGuard()
sys.addaudithook(GUARD)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    unmarked = item.get_closest_marker("integration") is None
    GUARD.test = item.nodeid if unmarked else None
    GUARD.seen = []
    try:
        return (yield)
    finally:
        GUARD.test = None


@pytest.fixture(autouse=True)
def _no_process_in_unmarked_tests() -> Iterator[None]:
    """Also catches a start whose failure the code under test caught and dropped."""
    yield
    seen = GUARD.take()
    if seen:
        pytest.fail(f"started a process but is not marked integration: {seen}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _token_signing_material() -> None:
    """Generate the token key and certificate once, up front, for the whole session."""
    signing_material()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists once the tests are collected (modules, their constants, the plugins) lives
    until the end: out of the collector's sight, so that a collection after a test only walks
    what the tests made."""
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Finalise leftover coroutines of failed async runs between tests, not while pytest is
    rendering a report (CPython 3.11.7 can crash with "AST constructor recursion depth
    mismatch" when the collector runs during assertion rewriting)."""
    yield
    gc.collect()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    """Registries for one test, stopped when it ends."""
    with started_registries(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def module_registry_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RegistryFactory]:
    """Registries shared by a module's tests (each test uses repositories of its own), stopped
    after its last test."""
    with started_registries(tmp_path_factory.mktemp("module-registries")) as start:
        yield start


@pytest.fixture
def anon_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """A running registry without auth."""
    return registry_factory("anonymous")


@pytest.fixture
def basic_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """A running registry with htpasswd Basic auth."""
    return registry_factory("basic")


@pytest.fixture
def hub_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """A running Docker-Hub-like Bearer registry (anonymous pull allowed)."""
    return registry_factory("bearer-hub")


@pytest.fixture
def quay_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """A running Quay-like Bearer registry (robot credentials required)."""
    return registry_factory("bearer-quay")


@pytest.fixture(params=AUTH_MODES)
def any_registry(
    request: pytest.FixtureRequest, registry_factory: RegistryFactory
) -> RegistryServer:
    """A running registry, once per auth mode."""
    mode: AuthMode = request.param
    return registry_factory(mode)


@pytest.fixture
def scenario(
    hub_registry: RegistryServer, quay_registry: RegistryServer, tmp_path: Path
) -> Scenario:
    """The production pair: a Docker-Hub-like upstream, a Quay-like target with a robot."""
    return Scenario(hub_registry, quay_registry, tmp_path)


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """The project's loggers as they were, after a test that let the function install its JSON
    handler (which also stops propagation, hiding records from caplog in later tests)."""
    loggers = [logging.getLogger(name) for name in (*LOGGERS, "httpx")]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


class Waits:
    """The sleeps the retry policy asks for, recorded instead of waited (each yields to the
    event loop once, as a real sleep would)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Waits:
    recorder = Waits()
    monkeypatch.setattr(sync.retry, "asyncio", SimpleNamespace(sleep=recorder.sleep))
    return recorder
