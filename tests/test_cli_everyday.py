"""The everyday registry commands (`tags`, `digest`, `manifest`, `copy`) as a subprocess against
real registries on loopback: `--insecure` for plain HTTP, the TLS hint without it, Docker
credential helpers, `--json` failures, and progress on a terminal (through a pty) and its
absence without one."""

from __future__ import annotations

import json
import os
import pty
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bed import images
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryFactory, RegistryServer
from tests.scenario import REPO_ROOT, CliResult, Scenario, cli_env, run_cli, seed

REPO = "istio/examples-httpbin"


def _expect(result: CliResult, code: int) -> None:
    assert result.returncode == code, f"want exit {code}; {result.describe()}"


def _cli(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> CliResult:
    """The CLI in an empty directory (no config found) with an empty Docker config."""
    docker = tmp_path / "docker"
    docker.mkdir(parents=True, exist_ok=True)
    return run_cli(*args, env={"DOCKER_CONFIG": str(docker), **(env or {})}, cwd=tmp_path)


@pytest.fixture
def seeded(anon_registry: RegistryServer) -> dict[str, images.Image]:
    tags = {
        "1.0": images.oci_manifest(1),
        "1.10": images.no_layers_image(2),
        "1.9": images.no_layers_image(3),
        "latest": images.no_layers_image(4),
        "v2.0-rc.1": images.oci_index(5, platforms=("linux/amd64", "linux/arm64/v8")),
    }
    seed(anon_registry, REPO, tags)
    return tags


def test_tags_digest_and_manifest_with_insecure_on_a_plain_http_registry(
    anon_registry: RegistryServer, seeded: dict[str, images.Image], tmp_path: Path
) -> None:
    host = anon_registry.host
    index = seeded["v2.0-rc.1"]
    with RawClient(anon_registry) as raw:
        registry_order = raw.tags(REPO)

    listed = _cli("--insecure", "tags", f"{host}/{REPO}", tmp_path=tmp_path)
    versions = _cli("tags", f"{host}/{REPO}", "--versions", "--insecure", tmp_path=tmp_path)
    digest = _cli("--insecure", "digest", f"{host}/{REPO}:v2.0-rc.1", tmp_path=tmp_path)
    child = _cli(
        "--insecure",
        "digest",
        f"{host}/{REPO}:v2.0-rc.1",
        "--platform",
        "linux/arm64",
        tmp_path=tmp_path,
    )
    single = _cli(
        "--insecure", "digest", "--platform", "linux/amd64", f"{host}/{REPO}:1.0", tmp_path=tmp_path
    )
    absent = _cli(
        "--insecure", "--json", "digest", f"{host}/{REPO}:v2.0-rc.1", "--platform", "linux/s390x",
        tmp_path=tmp_path,
    )  # fmt: skip
    manifest = subprocess.run(
        [sys.executable, "-m", "sync", "--insecure", "manifest", f"{host}/{REPO}:v2.0-rc.1"],
        cwd=tmp_path,
        env=cli_env({"DOCKER_CONFIG": str(tmp_path / "docker")}),
        capture_output=True,
        timeout=60,
        check=False,
    )

    for result in (listed, versions, digest, child, single):
        _expect(result, 0)
    assert listed.stdout.splitlines() == registry_order, listed.describe()
    assert versions.stdout.splitlines() == ["v2.0-rc.1", "1.10", "1.9", "1.0"], versions.stdout
    assert digest.stdout == f"{index.digest}\n", digest.describe()
    assert child.stdout == f"{index.child('linux/arm64/v8').digest}\n", child.describe()
    assert single.stdout == f"{seeded['1.0'].digest}\n", single.describe()
    _expect(absent, 1)
    assert "linux/s390x" in absent.json()["error"]["message"], absent.describe()
    assert manifest.returncode == 0, manifest.stderr
    assert manifest.stdout == index.manifest, "manifest must print the bytes exactly as served"


def test_without_insecure_a_plain_http_port_fails_at_once_naming_the_flag_and_the_key(
    anon_registry: RegistryServer, seeded: dict[str, images.Image], tmp_path: Path
) -> None:
    result = _cli("--json", "tags", f"{anon_registry.host}/{REPO}", tmp_path=tmp_path)

    _expect(result, 1)
    error = result.json()["error"]
    assert error["code"] == "TLS_ERROR", error
    for words in ("plain HTTP", "--insecure", '"tls": "disabled"'):
        assert words in error["message"], f"{words!r} not in {error['message']!r}"
    assert "Traceback" not in result.stderr


def test_a_missing_manifest_is_a_json_error_with_exit_1(
    anon_registry: RegistryServer, seeded: dict[str, images.Image], tmp_path: Path
) -> None:
    result = _cli("--insecure", "digest", f"{anon_registry.host}/{REPO}:nope", "--json",
                  tmp_path=tmp_path)  # fmt: skip
    _expect(result, 1)
    assert result.json()["error"]["code"] == "MANIFEST_UNKNOWN", result.describe()


def test_inspection_commands_use_the_configs_credentials_when_a_config_is_found(
    hub_registry: RegistryServer, quay_registry: RegistryServer, tmp_path: Path
) -> None:
    scenario = Scenario(hub_registry, quay_registry, tmp_path)
    seed(quay_registry, "sail-dev/private", {"1.0": images.no_layers_image(1)})
    ref = f"{quay_registry.host}/sail-dev/private"

    anonymous = _cli("--insecure", "tags", ref, tmp_path=tmp_path / "elsewhere")
    with_config = scenario.cli("tags", ref)

    _expect(anonymous, 1)
    _expect(with_config, 0)
    assert with_config.stdout == "1.0\n", with_config.describe()


# -- Docker credential helpers --------------------------------------------------------------------


def _helper(bin_dir: Path, name: str, host: str, user: str, secret: str) -> None:
    """A `docker-credential-NAME` that knows one registry, as the real helpers answer."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    answer = json.dumps({"ServerURL": host, "Username": user, "Secret": secret})
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "read -r server\n"
        f'if [ "$server" = "{host}" ]; then\n'
        f"  echo '{answer}'\n"
        "else\n"
        "  echo 'credentials not found in native keychain'; exit 1\n"
        "fi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("setting", ["credsStore", "credHelpers"])
def test_docker_credential_helpers_log_in_to_a_basic_registry(
    basic_registry: RegistryServer, tmp_path: Path, setting: str
) -> None:
    assert basic_registry.username and basic_registry.password
    seed(basic_registry, REPO, {"1.0": images.no_layers_image(1)})
    bin_dir = tmp_path / "bin"
    _helper(bin_dir, "test", basic_registry.host, basic_registry.username, basic_registry.password)
    docker = tmp_path / "docker"
    docker.mkdir()
    value: object = "test" if setting == "credsStore" else {basic_registry.host: "test"}
    (docker / "config.json").write_text(json.dumps({setting: value, "auths": {}}))
    env = {"DOCKER_CONFIG": str(docker), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    result = _cli("--insecure", "tags", f"{basic_registry.host}/{REPO}", tmp_path=tmp_path, env=env)

    _expect(result, 0)
    assert result.stdout == "1.0\n"
    assert basic_registry.password not in result.stdout + result.stderr


def test_a_missing_credential_helper_is_an_error_naming_it(
    basic_registry: RegistryServer, tmp_path: Path
) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"credsStore": "nosuchstore"}))

    result = _cli("--json", "--insecure", "tags", f"{basic_registry.host}/{REPO}",
                  tmp_path=tmp_path, env={"DOCKER_CONFIG": str(docker)})  # fmt: skip

    _expect(result, 1)
    error = result.json()["error"]
    assert error["code"] == "CREDENTIALS", error
    assert "docker-credential-nosuchstore" in error["message"], error


# -- progress -------------------------------------------------------------------------------------


def _in_pty(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Runs argv with stdout and stderr on a pseudo-terminal; (exit code, all it wrote)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_copy_shows_progress_on_a_terminal_and_nothing_without_one(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    source, target = registry_factory("anonymous"), registry_factory("anonymous")
    image = images.oci_manifest(7, layers=4, layer_size=4 * 1024 * 1024)
    seed(source, REPO, {"1.0": image})
    env = cli_env({"DOCKER_CONFIG": str(tmp_path)})
    src = f"{source.host}/{REPO}:1.0"

    code, screen = _in_pty(
        [sys.executable, "-m", "sync", "--insecure", "copy", src, f"{target.host}/on/tty"],
        cwd=tmp_path,
        env=env,
    )
    piped = _cli("--insecure", "copy", src, f"{target.host}/in/pipe", tmp_path=tmp_path)

    assert code == 0, screen
    text = screen.replace("\r\n", "\n")
    assert re.search(r"on/tty:1\.0  \d+(\.\d)? (B|KiB|MiB) of 16\.\d MiB\s+\d+%", text), (
        f"no 'done of total, percent' line: {text!r}"
    )
    final = re.search(r"on/tty:1\.0  copied 16\.\d MiB in [\d.]+s \([\d.]+ \w+/s\)\n", text)
    assert final, f"no clean final progress line: {text!r}"
    assert re.search(r"\ncopied \S+ -> \S+ sha256:", text), f"result not on its own line: {text!r}"
    _expect(piped, 0)
    assert "\x1b[" not in piped.stderr + piped.stdout and "%" not in piped.stderr, piped.describe()
    with RawClient(target) as raw:
        assert raw.get_manifest("on/tty", "1.0")[2] == image.digest
    assert REPO_ROOT.is_dir()
