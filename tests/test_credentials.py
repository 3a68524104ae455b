"""Credential resolution: config REFs, then the Docker config, then anonymous; lazy and cached."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sync.config import Config, parse_config
from sync.credentials import CredentialResolver, docker_config_path
from sync.errors import CredentialError
from sync.login import Credentials

DISTINCTIVE = "pa55-Zq9x-DISTINCTIVE-value"


def make_config(registries: dict[str, Any] | None = None) -> Config:
    return parse_config(
        {
            "images": [
                {
                    "name": "httpbin",
                    "upstream": "docker.io/mccutchen/go-httpbin",
                    "target": "quay.io/sail-dev/examples-httpbin",
                    "tags": ["v2.15.0"],
                }
            ],
            "registries": registries or {},
        },
        "test",
    )


class FakeReader:
    """A SecretReader that records what it was asked for."""

    def __init__(self, secrets: dict[str, str], fail: CredentialError | None = None) -> None:
        self.secrets = secrets
        self.fail = fail
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def read(self, name: str) -> str:
        with self._lock:
            self.calls.append(name)
        if self.fail is not None:
            raise self.fail
        try:
            return self.secrets[name]
        except KeyError:
            raise CredentialError(f"secret {name} not found") from None


def write_docker_config(directory: Path, auths: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def chain(err: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = err
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


@pytest.fixture
def no_docker(tmp_path: Path) -> Path:
    """A Docker config path that does not exist."""
    return tmp_path / "no-docker" / "config.json"


# --- config REFs -------------------------------------------------------------------------------


def test_env_refs_resolve_from_the_given_environment(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "env:QUAY_USER", "password": "env:QUAY_PW"}})
    env = {"QUAY_USER": "robot", "QUAY_PW": DISTINCTIVE}
    resolve = CredentialResolver(config, env=env, docker_config=no_docker)
    assert resolve("quay.io") == Credentials("robot", DISTINCTIVE)


def test_missing_env_var_names_the_variable_not_a_value(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "env:QUAY_USER", "password": "env:QUAY_PW"}})
    resolve = CredentialResolver(config, env={"QUAY_USER": DISTINCTIVE}, docker_config=no_docker)
    with pytest.raises(CredentialError) as info:
        resolve("quay.io")
    message = str(info.value)
    assert "QUAY_PW is not set" in message
    assert "quay.io" in message
    assert DISTINCTIVE not in message
    assert DISTINCTIVE not in repr(info.value)


def test_empty_env_var_is_an_error(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "env:U", "password": "env:P"}})
    resolve = CredentialResolver(config, env={"U": "robot", "P": ""}, docker_config=no_docker)
    with pytest.raises(CredentialError, match="environment variable P is empty"):
        resolve("quay.io")


def test_secret_refs_expand_in_the_function_project(no_docker: Path) -> None:
    config = make_config(
        {
            "quay.io": {
                "username": "secret:quay-user",
                "password": "secret:projects/other/secrets/quay-pw/versions/2",
            }
        }
    )
    reader = FakeReader(
        {
            "projects/proj-1/secrets/quay-user/versions/latest": "robot",
            "projects/other/secrets/quay-pw/versions/2": DISTINCTIVE,
        }
    )
    resolve = CredentialResolver(
        config,
        env={"GOOGLE_CLOUD_PROJECT": "proj-1"},
        secret_reader=reader,
        docker_config=no_docker,
    )
    assert resolve("quay.io") == Credentials("robot", DISTINCTIVE)


def test_short_secret_ref_without_project_says_so(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "secret:u", "password": "secret:p"}})
    reader = FakeReader({})
    resolve = CredentialResolver(config, env={}, secret_reader=reader, docker_config=no_docker)
    with pytest.raises(CredentialError, match="GOOGLE_CLOUD_PROJECT is not set"):
        resolve("quay.io")
    assert reader.calls == []


def test_reader_errors_gain_the_registry_and_ref(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "secret:u", "password": "secret:p"}})
    reader = FakeReader({})
    resolve = CredentialResolver(
        config, env={"GOOGLE_CLOUD_PROJECT": "p1"}, secret_reader=reader, docker_config=no_docker
    )
    with pytest.raises(CredentialError) as info:
        resolve("quay.io")
    assert str(info.value) == (
        "username for quay.io (secret:u): secret projects/p1/secrets/u/versions/latest not found"
    )


def test_config_keys_match_docker_hub_aliases(no_docker: Path) -> None:
    config = make_config({"docker.io": {"username": "env:HUB_U", "password": "env:HUB_P"}})
    env = {"HUB_U": "me", "HUB_P": "token"}
    resolve = CredentialResolver(config, env=env, docker_config=no_docker)
    assert resolve("registry-1.docker.io") == Credentials("me", "token")


def test_tls_only_settings_fall_through_to_anonymous(no_docker: Path) -> None:
    config = make_config({"127.0.0.1:5000": {"tls": "disabled"}})
    resolve = CredentialResolver(config, env={}, docker_config=no_docker)
    assert resolve("127.0.0.1:5000") is None


# --- laziness, caching, threads ----------------------------------------------------------------


def test_nothing_is_read_until_a_registry_asks(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "secret:u", "password": "secret:p"}})
    reader = FakeReader(
        {
            "projects/p1/secrets/u/versions/latest": "robot",
            "projects/p1/secrets/p/versions/latest": DISTINCTIVE,
        }
    )
    resolve = CredentialResolver(
        config, env={"GOOGLE_CLOUD_PROJECT": "p1"}, secret_reader=reader, docker_config=no_docker
    )
    assert reader.calls == []
    assert resolve("registry-1.docker.io") is None  # another registry: no secret read
    assert reader.calls == []
    assert resolve("quay.io") == Credentials("robot", DISTINCTIVE)
    assert len(reader.calls) == 2


def test_each_host_is_resolved_once(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "secret:u", "password": "secret:p"}})
    reader = FakeReader(
        {
            "projects/p1/secrets/u/versions/latest": "robot",
            "projects/p1/secrets/p/versions/latest": DISTINCTIVE,
        }
    )
    resolve = CredentialResolver(
        config, env={"GOOGLE_CLOUD_PROJECT": "p1"}, secret_reader=reader, docker_config=no_docker
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(resolve, ["quay.io", "QUAY.IO"] * 20))
    assert all(r == Credentials("robot", DISTINCTIVE) for r in results)
    assert sorted(reader.calls) == [
        "projects/p1/secrets/p/versions/latest",
        "projects/p1/secrets/u/versions/latest",
    ]


def test_lasting_failures_are_cached_passing_ones_are_not(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "secret:u", "password": "secret:p"}})
    temporary = CredentialError("Secret Manager unreachable")
    temporary.temporary = True
    reader = FakeReader({}, fail=temporary)
    resolve = CredentialResolver(
        config, env={"GOOGLE_CLOUD_PROJECT": "p1"}, secret_reader=reader, docker_config=no_docker
    )
    for _ in range(2):
        with pytest.raises(CredentialError, match="unreachable") as info:
            resolve("quay.io")
        assert info.value.temporary
    assert len(reader.calls) == 2
    reader.fail = CredentialError("permission denied")
    for _ in range(2):
        with pytest.raises(CredentialError, match="permission denied"):
            resolve("quay.io")
    assert len(reader.calls) == 3


# --- the Docker config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["quay.io", "https://quay.io", "http://quay.io", "https://quay.io/v1/", "QUAY.IO"],
)
def test_docker_config_keys_in_every_form(tmp_path: Path, key: str) -> None:
    path = write_docker_config(tmp_path, {key: {"auth": b64(f"robot:{DISTINCTIVE}")}})
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    assert resolve("quay.io") == Credentials("robot", DISTINCTIVE)
    assert resolve("ghcr.io") is None


@pytest.mark.parametrize(
    "key",
    ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"],
)
def test_docker_config_docker_hub_keys(tmp_path: Path, key: str) -> None:
    path = write_docker_config(tmp_path, {key: {"auth": b64("hubuser:hubtoken")}})
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    assert resolve("registry-1.docker.io") == Credentials("hubuser", "hubtoken")


def test_docker_config_username_and_password_fields(tmp_path: Path) -> None:
    path = write_docker_config(tmp_path, {"localhost:5000": {"username": "u", "password": "p"}})
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    assert resolve("localhost:5000") == Credentials("u", "p")


def test_docker_config_password_may_contain_colons(tmp_path: Path) -> None:
    path = write_docker_config(tmp_path, {"quay.io": {"auth": b64("robot:a:b:c")}})
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    assert resolve("quay.io") == Credentials("robot", "a:b:c")


def test_docker_config_prefers_the_key_docker_writes(tmp_path: Path) -> None:
    path = write_docker_config(
        tmp_path,
        {
            "docker.io": {"auth": b64("old:one")},
            "https://index.docker.io/v1/": {"auth": b64("new:one")},
        },
    )
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    assert resolve("registry-1.docker.io") == Credentials("new", "one")


def test_docker_config_entries_without_credentials_are_skipped(tmp_path: Path) -> None:
    # `docker login` with a credsStore leaves empty entries; identity tokens are not supported.
    path = write_docker_config(
        tmp_path, {"quay.io": {}, "ghcr.io": {"identitytoken": "tok"}, "x.io": {"auth": ""}}
    )
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    assert resolve("quay.io") is None
    assert resolve("ghcr.io") is None
    assert resolve("x.io") is None


def test_docker_config_found_through_DOCKER_CONFIG(tmp_path: Path) -> None:
    write_docker_config(tmp_path / "dc", {"quay.io": {"auth": b64("a:b")}})
    env = {"DOCKER_CONFIG": str(tmp_path / "dc"), "HOME": str(tmp_path / "home")}
    assert docker_config_path(env) == tmp_path / "dc" / "config.json"
    assert CredentialResolver(make_config(), env=env)("quay.io") == Credentials("a", "b")


def test_docker_config_found_in_home(tmp_path: Path) -> None:
    write_docker_config(tmp_path / "home" / ".docker", {"quay.io": {"auth": b64("h:i")}})
    env = {"HOME": str(tmp_path / "home")}
    assert docker_config_path(env) == tmp_path / "home" / ".docker" / "config.json"
    assert CredentialResolver(make_config(), env=env)("quay.io") == Credentials("h", "i")


def test_bad_auth_field_is_an_error_without_its_value(tmp_path: Path) -> None:
    path = write_docker_config(tmp_path, {"quay.io": {"auth": DISTINCTIVE}})
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    with pytest.raises(CredentialError) as info:
        resolve("quay.io")
    assert "not base64 of user:password" in str(info.value)
    assert all(DISTINCTIVE not in f"{e} {e!r}" for e in chain(info.value))


def test_auth_without_colon_is_an_error_without_its_value(tmp_path: Path) -> None:
    path = write_docker_config(tmp_path, {"quay.io": {"auth": b64(DISTINCTIVE)}})
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    with pytest.raises(CredentialError) as info:
        resolve("quay.io")
    assert all(DISTINCTIVE not in f"{e} {e!r}" for e in chain(info.value))


def test_invalid_docker_config_json_says_where_not_what(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"quay.io": {"auth": "' + DISTINCTIVE + '"}')
    resolve = CredentialResolver(make_config(), env={}, docker_config=path)
    with pytest.raises(CredentialError, match="invalid JSON at line 1") as info:
        resolve("quay.io")
    assert str(path) in str(info.value)
    assert all(DISTINCTIVE not in f"{e} {e!r}" for e in chain(info.value))


# --- precedence and secrecy --------------------------------------------------------------------


def test_config_refs_win_over_the_docker_config(tmp_path: Path) -> None:
    path = write_docker_config(tmp_path, {"quay.io": {"auth": b64("docker:side")}})
    config = make_config({"quay.io": {"username": "env:U", "password": "env:P"}})
    resolve = CredentialResolver(config, env={"U": "cfg", "P": "side"}, docker_config=path)
    assert resolve("quay.io") == Credentials("cfg", "side")


def test_anonymous_when_nothing_is_configured(no_docker: Path) -> None:
    assert CredentialResolver(make_config(), env={}, docker_config=no_docker)("quay.io") is None


def test_no_credential_value_in_reprs(no_docker: Path) -> None:
    config = make_config({"quay.io": {"username": "env:U", "password": "env:P"}})
    resolve = CredentialResolver(
        config, env={"U": "robot", "P": DISTINCTIVE}, docker_config=no_docker
    )
    credentials = resolve("quay.io")
    assert credentials is not None
    assert DISTINCTIVE not in repr(credentials)
    assert DISTINCTIVE not in repr(resolve)
    assert DISTINCTIVE not in str(resolve)


def test_no_credential_value_in_logs(no_docker: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    config = make_config({"quay.io": {"username": "env:U", "password": "env:P"}})
    resolve = CredentialResolver(
        config, env={"U": "robot", "P": DISTINCTIVE}, docker_config=no_docker
    )
    resolve("quay.io")
    assert "quay.io" in caplog.text
    assert DISTINCTIVE not in caplog.text


# --- Docker credential helpers -------------------------------------------------------------------


def fake_helper(bin_dir: Path, name: str, known: dict[str, tuple[str, str]]) -> Path:
    """`docker-credential-NAME get`: the credentials for the server read from stdin, else the
    helpers' "credentials not found" answer. Records each server it was asked for."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    log = bin_dir / f"{name}.asked"
    cases = "".join(
        f"  '{server}') echo '{json.dumps({'ServerURL': server, 'Username': u, 'Secret': s})}';;\n"
        for server, (u, s) in known.items()
    )
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "read -r server\n"
        f'echo "$server" >> {log}\n'
        'case "$server" in\n'
        f"{cases}"
        "  *) echo 'credentials not found in native keychain'; exit 1;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return log


def helper_env(bin_dir: Path) -> dict[str, str]:
    return {"PATH": str(bin_dir)}


def write_docker_json(directory: Path, data: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.integration
def test_creds_store_answers_for_every_registry_and_falls_back_to_auths(tmp_path: Path) -> None:
    fake_helper(tmp_path / "bin", "test", {"quay.io": ("robot", DISTINCTIVE)})
    path = write_docker_json(
        tmp_path,
        {"credsStore": "test", "auths": {"ghcr.io": {"auth": b64("gh:token")}, "quay.io": {}}},
    )
    resolve = CredentialResolver(
        make_config(), env=helper_env(tmp_path / "bin"), docker_config=path
    )
    assert resolve("quay.io") == Credentials("robot", DISTINCTIVE)
    assert resolve("ghcr.io") == Credentials("gh", "token"), "not in the store: auths"
    assert resolve("example.com") is None


@pytest.mark.integration
def test_cred_helpers_win_over_the_store_and_docker_hub_is_asked_as_docker_names_it(
    tmp_path: Path,
) -> None:
    hub_log = fake_helper(
        tmp_path / "bin", "hub", {"https://index.docker.io/v1/": ("hubuser", "hubtoken")}
    )
    fake_helper(tmp_path / "bin", "store", {"quay.io": ("from-store", "x")})
    path = write_docker_json(
        tmp_path, {"credsStore": "store", "credHelpers": {"docker.io": "hub", "quay.io": "hub"}}
    )
    resolve = CredentialResolver(
        make_config(), env=helper_env(tmp_path / "bin"), docker_config=path
    )
    assert resolve("registry-1.docker.io") == Credentials("hubuser", "hubtoken")
    assert resolve("quay.io") is None, "credHelpers names `hub` for quay.io, which has nothing"
    assert hub_log.read_text().splitlines() == ["https://index.docker.io/v1/", "quay.io"]


@pytest.mark.integration
@pytest.mark.parametrize(
    "key", ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"]
)
def test_cred_helpers_keys_for_docker_hub_in_every_spelling(tmp_path: Path, key: str) -> None:
    fake_helper(tmp_path / "bin", "hub", {"https://index.docker.io/v1/": ("u", "p")})
    path = write_docker_json(tmp_path, {"credHelpers": {key: "hub"}})
    resolve = CredentialResolver(
        make_config(), env=helper_env(tmp_path / "bin"), docker_config=path
    )
    assert resolve("registry-1.docker.io") == Credentials("u", "p")


def test_a_missing_helper_is_an_error_naming_the_program(tmp_path: Path) -> None:
    path = write_docker_json(tmp_path, {"credsStore": "desktop"})
    resolve = CredentialResolver(make_config(), env={"PATH": str(tmp_path)}, docker_config=path)
    with pytest.raises(CredentialError, match="docker-credential-desktop is not on the PATH"):
        resolve("quay.io")


@pytest.mark.integration
def test_a_failing_helper_says_why_without_any_secret(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-broken"
    script.write_text("#!/bin/sh\necho 'keychain locked' >&2\nexit 3\n")
    script.chmod(0o755)
    path = write_docker_json(tmp_path, {"credsStore": "broken"})
    resolve = CredentialResolver(make_config(), env=helper_env(bin_dir), docker_config=path)
    with pytest.raises(CredentialError, match=r"exit 3\): keychain locked"):
        resolve("quay.io")
