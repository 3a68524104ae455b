"""Credentials never leak: not in logs (even at debug), the report, error messages or reprs.

Every credential here is distinctive (`u-5ecret-<random>`, `p-5ecret-<random>`) and comes from
the environment (`env:`) or from a fake Secret Manager (`secret:`). One run, at `-v`, mixes a
success with forced failures: a wrong password on a target, a 503 storm on an upstream, an
unreachable host. Then every captured byte is searched for each value, for each value's base64,
and for the base64 of each `user:pass` (what a Basic header carries).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sync.auth import push_scope
from sync.config import Config, parse_config
from sync.credentials import CredentialResolver
from sync.engine import Engine, RunOptions, registries_for
from sync.errors import ImageSyncError
from sync.registry import HostSettings, Registries, RegistryClient
from sync.report import Report
from sync.retry import RetryPolicy
from tests.bed import images
from tests.bed.faults import unavailable
from tests.bed.proxy import FaultProxy
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer
from tests.fake_secret_manager import FakeSecretManager

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "leak-test-project"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def _secret(kind: str) -> str:
    return f"{kind}-5ecret-{secrets.token_hex(8)}"


@dataclass
class Leaky:
    """The registries, the fake Secret Manager, the config and the secret values."""

    upstream: RegistryServer  # Quay-like: credentials needed to pull
    good_target: RegistryServer  # credentials from the fake Secret Manager
    bad_target: RegistryServer  # configured with a wrong password
    storm: FaultProxy  # in front of the upstream, answering 503 to everything
    secret_manager: FakeSecretManager
    dead_host: str  # nothing listens there
    env: dict[str, str]
    pairs: list[tuple[str, str]]  # every (username, password) in play, right or wrong

    def config(self, *names: str) -> dict[str, Any]:
        """The config file's content, with every image (or only `names`), tag 1.0 each."""
        up, storm = self.upstream.host, self.storm.host
        good, bad = self.good_target.host, self.bad_target.host
        env_creds = {"username": "env:UP_USER", "password": "env:UP_PASS"}
        images = [
            ("ok", f"{up}/istio/app", f"{good}/sail-dev/app"),
            ("badpw", f"{up}/istio/app", f"{bad}/sail-dev/app"),
            ("storm", f"{storm}/istio/app", f"{good}/sail-dev/storm"),
            ("gone", f"{self.dead_host}/istio/app", f"{good}/sail-dev/gone"),
        ]
        return {
            "images": [
                {"name": name, "upstream": source, "target": target, "tags": ["1.0"]}
                for name, source, target in images
                if not names or name in names
            ],
            "check_new_tags": False,
            "registries": {
                up: {"tls": "disabled", **env_creds},
                storm: {"tls": "disabled", **env_creds},
                good: {
                    "tls": "disabled",
                    "username": "secret:t1-user",
                    "password": "secret:t1-pass",
                },
                bad: {"tls": "disabled", "username": "env:T2_USER", "password": "env:T2_PASS"},
                self.dead_host: {
                    "tls": "disabled",
                    "username": "env:GONE_USER",
                    "password": "env:GONE_PASS",
                },
            },
        }

    def parsed_config(self, *names: str) -> Config:
        return parse_config(self.config(*names))

    def needles(self) -> dict[str, str]:
        """What must never show up, named for the failure message."""
        out: dict[str, str] = {}
        for user, password in self.pairs:
            for label, value in (("username", user), ("password", password)):
                out[f"{label} {value}"] = value
                out[f"base64({label})"] = base64.b64encode(value.encode()).decode()
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            out[f"base64({user}:password)"] = basic
            out[f"urlsafe-base64({user}:password)"] = base64.urlsafe_b64encode(
                f"{user}:{password}".encode()
            ).decode()
        return out

    def passwords_only(self) -> dict[str, str]:
        return {k: v for k, v in self.needles().items() if not k.startswith("username")}


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def leaky(registry_factory: RegistryFactory) -> Iterator[Leaky]:
    upstream = registry_factory("bearer-quay")
    good_target = registry_factory("bearer-quay")
    bad_target = registry_factory("bearer-quay")
    pairs = {
        "up": (_secret("u"), _secret("p")),
        "good": (_secret("u"), _secret("p")),
        "bad": (_secret("u"), _secret("p")),
        "gone": (_secret("u"), _secret("p")),
    }
    wrong_password = _secret("p")
    for server, (user, password) in (
        (upstream, pairs["up"]),
        (good_target, pairs["good"]),
        (bad_target, pairs["bad"]),
    ):
        assert server.token_server is not None
        server.token_server.add_user(user, password)
    with RawClient(upstream) as raw:
        raw.push_image("istio/app", "1.0", images.oci_index(99, layer_size=2048))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        UP_USER=pairs["up"][0],
        UP_PASS=pairs["up"][1],
        T2_USER=pairs["bad"][0],
        T2_PASS=wrong_password,
        GONE_USER=pairs["gone"][0],
        GONE_PASS=pairs["gone"][1],
        GOOGLE_CLOUD_PROJECT=PROJECT,
    )
    manager = FakeSecretManager(
        {"t1-user": pairs["good"][0], "t1-pass": pairs["good"][1]}, project=PROJECT
    )
    with manager, FaultProxy(upstream, seed=5) as storm:
        # Every answer a 503 (Retry-After: 0 keeps the storm short: 5 tries, no long waits).
        storm.add_rule(unavailable(retry_after=0), path=r"^/v2/istio/")
        env["SECRET_MANAGER_ENDPOINT"] = manager.endpoint
        yield Leaky(
            upstream=upstream,
            good_target=good_target,
            bad_target=bad_target,
            storm=storm,
            secret_manager=manager,
            dead_host=f"127.0.0.1:{_dead_port()}",
            env=env,
            pairs=[*pairs.values(), (pairs["bad"][0], wrong_password)],
        )


def _cli_sync(leaky: Leaky, tmp: Path, *names: str) -> subprocess.CompletedProcess[str]:
    """`python -m sync -v --json sync` on `leaky`'s config (every image, or only `names`)."""
    config = tmp / "config.json"
    config.write_text(json.dumps(leaky.config(*names)))
    return subprocess.run(
        [sys.executable, "-m", "sync", "-v", "--config", str(config), "--json", "sync"],
        cwd=REPO_ROOT,
        env={**leaky.env, "DOCKER_CONFIG": str(tmp)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_absent(text: str, needles: dict[str, str], where: str) -> None:
    found = [name for name, value in needles.items() if value in text]
    assert not found, f"{where} contains {found}"


def _assert_run_as_expected(report: dict[str, Any]) -> None:
    actions = {image["name"]: image["tags"][0]["action"] for image in report["images"]}
    assert actions == {"ok": "copied", "badpw": "failed", "storm": "failed", "gone": "failed"}
    codes = {
        image["name"]: (image["tags"][0]["error"] or {}).get("code") for image in report["images"]
    }
    assert codes["badpw"] == "UNAUTHORIZED", codes
    assert codes["gone"] == "UNREACHABLE", codes


@pytest.mark.slow
def test_a_debug_cli_run_with_failures_leaks_no_password(leaky: Leaky, tmp_path: Path) -> None:
    done = _cli_sync(leaky, tmp_path)

    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout)
    _assert_run_as_expected(report)
    assert len(leaky.storm.injected("503")) >= 5, "the 503 storm never happened"
    assert leaky.secret_manager.access_count("t1-pass") >= 1, "the Secret Manager was not used"
    _assert_absent(done.stdout, leaky.passwords_only(), "stdout (the JSON report)")
    _assert_absent(done.stderr, leaky.passwords_only(), "stderr (the debug log)")


@pytest.mark.slow
def test_an_in_process_run_leaks_nothing_into_logs_report_or_exceptions(
    leaky: Leaky, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = leaky.parsed_config()
    resolver = CredentialResolver(config, env=leaky.env)
    try:

        async def go() -> tuple[Report, list[BaseException]]:
            # Quick retries: the failures are the same, the waits shorter.
            registries = Registries(
                lambda host: HostSettings(secure=False, credentials=resolver), policy=FAST
            )
            async with registries:
                report = await Engine(config, registries).run(RunOptions())
            errors: list[BaseException] = []
            # The same failures, raised: what their reprs and tracebacks show.
            for host, secure_creds in (
                (leaky.bad_target.host, resolver),
                (leaky.storm.host, resolver),
                (leaky.dead_host, resolver),
            ):
                client = RegistryClient(
                    host,
                    settings=HostSettings(secure=False, credentials=secure_creds),
                    policy=FAST,
                )
                try:
                    await client.auth.authorization([push_scope("sail-dev/app")])
                    await client.manifest_head("istio/app", "1.0")
                except ImageSyncError as exc:
                    errors.append(exc)
                finally:
                    await client.aclose()
            return report, errors

        report, errors = asyncio.run(go())
        reprs = [repr(resolver), *(repr(resolver(h)) for h in (leaky.upstream.host,))]
    finally:
        resolver.close()

    assert report.status == "failed"
    _assert_run_as_expected(json.loads(report.to_json()))
    assert len(errors) == 3, errors
    needles = leaky.passwords_only()
    _assert_absent(report.to_json(), needles, "the report")
    assert "credentials for" in caplog.text, "credential resolution logged nothing at debug"
    assert leaky.secret_manager.access_count("t1-pass") >= 1
    _assert_absent(caplog.text, needles, "the debug log")
    for error in errors:
        shown = "".join(traceback.format_exception(error))
        _assert_absent(repr(error), needles, f"repr of {type(error).__name__}")
        _assert_absent(str(error), needles, f"message of {type(error).__name__}")
        _assert_absent(repr(vars(error)), needles, f"attributes of {type(error).__name__}")
        _assert_absent(shown, needles, f"traceback of {type(error).__name__}")
    _assert_absent(" ".join(reprs), needles, "credential reprs")


def test_no_username_appears_in_the_report_either(leaky: Leaky) -> None:
    config = leaky.parsed_config("ok", "badpw")
    resolver = CredentialResolver(config, env=leaky.env)
    try:

        async def go() -> Report:
            async with registries_for(config, resolver) as registries:
                return await Engine(config, registries).run(RunOptions())

        report = asyncio.run(go())
    finally:
        resolver.close()
    _assert_absent(report.to_json(), leaky.needles(), "the report")


def test_verbose_cli_shows_the_debug_lines_of_credential_resolution(
    leaky: Leaky, tmp_path: Path
) -> None:
    done = _cli_sync(leaky, tmp_path, "ok")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "credentials for" in done.stderr and "secret:t1-pass" in done.stderr, done.stderr
    _assert_absent(done.stderr, leaky.passwords_only(), "stderr (the debug log)")
