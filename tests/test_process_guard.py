"""Only tests marked `integration` start processes: tests/conftest.py marks the tests that use a
process-starting fixture and fails any other test that starts a process, so `pytest -m "not
integration"` (`make unit`) runs no registry, server or subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.bed.registry import RegistryFactory
from tests.conftest import GUARD


def test_an_unmarked_test_cannot_start_a_subprocess(request: pytest.FixtureRequest) -> None:
    assert GUARD.test == request.node.nodeid
    with pytest.raises(pytest.fail.Exception, match="is not marked integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    assert GUARD.take() == [f"subprocess.Popen {sys.executable!r}"]


def test_an_unmarked_test_cannot_fork() -> None:
    with pytest.raises(pytest.fail.Exception, match="is not marked integration"):
        pid = os.fork()
        if pid == 0:  # only if the guard let the fork through: the child leaves at once
            os._exit(0)
        os.waitpid(pid, 0)
    assert GUARD.take() == ["os.fork"]


@pytest.mark.integration
def test_a_marked_test_may_start_one() -> None:
    assert GUARD.test is None
    done = subprocess.run(
        [sys.executable, "-c", "print('ran')"], capture_output=True, text=True, check=True
    )
    assert done.stdout == "ran\n"
    assert GUARD.take() == []


def test_a_test_using_the_registry_factory_is_marked_integration(
    request: pytest.FixtureRequest, registry_factory: RegistryFactory
) -> None:
    assert request.node.get_closest_marker("integration") is not None
    assert GUARD.test is None
