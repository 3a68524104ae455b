"""The real Secret Manager client library against a local fake server (REST, anonymous)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sync.config import parse_config
from sync.credentials import CredentialResolver
from sync.errors import CredentialError
from sync.login import Credentials
from sync.secrets import SecretManagerReader, secret_version_name
from tests.fake_secret_manager import FakeSecretManager, crc32c

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "test-proj"
DISTINCTIVE = "s3cr3t-Vq7W-DISTINCTIVE-9xJ"


def version(name: str, v: str = "latest") -> str:
    return f"projects/{PROJECT}/secrets/{name}/versions/{v}"


@pytest.fixture
def fake() -> Iterator[FakeSecretManager]:
    secrets = {"quay-user": "robot\n", "quay-password": DISTINCTIVE, "empty": "\n"}
    with FakeSecretManager(secrets, project=PROJECT, forbidden=["locked"]) as server:
        yield server


@pytest.fixture
def reader(fake: FakeSecretManager) -> Iterator[SecretManagerReader]:
    with SecretManagerReader(env={"SECRET_MANAGER_ENDPOINT": fake.endpoint}) as r:
        yield r


def all_text(err: BaseException) -> str:
    """Everything an exception could show: its text, repr, and those of its causes."""
    out: list[str] = []
    seen: BaseException | None = err
    while seen is not None:
        out += [str(seen), repr(seen), *(str(a) for a in seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(out)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reads_a_secret_through_the_real_client(
    fake: FakeSecretManager, reader: SecretManagerReader
) -> None:
    assert reader.read(version("quay-password")) == DISTINCTIVE
    (request,) = fake.requests
    assert request.method == "GET"
    assert request.path.startswith(f"/v1/{version('quay-password')}:access")


def test_one_trailing_newline_is_dropped(reader: SecretManagerReader) -> None:
    assert reader.read(version("quay-user")) == "robot"


def test_specific_version_is_read(fake: FakeSecretManager, reader: SecretManagerReader) -> None:
    fake.add_version("quay-user", "robot-2")
    assert reader.read(version("quay-user", "1")) == "robot"
    assert reader.read(version("quay-user", "latest")) == "robot-2"


def test_each_secret_is_read_once(fake: FakeSecretManager, reader: SecretManagerReader) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        values = list(pool.map(reader.read, [version("quay-password")] * 12))
    assert values == [DISTINCTIVE] * 12
    assert fake.access_count("quay-password") == 1


def test_not_found_names_the_secret(reader: SecretManagerReader) -> None:
    with pytest.raises(CredentialError) as info:
        reader.read(version("nope"))
    assert f"secret {version('nope')} not found" in str(info.value)
    assert not info.value.temporary


def test_permission_denied_names_the_secret(reader: SecretManagerReader) -> None:
    with pytest.raises(CredentialError) as info:
        reader.read(version("locked"))
    message = str(info.value)
    assert "permission denied" in message
    assert version("locked") in message
    assert "secretAccessor" in message


def test_empty_secret_is_an_error(reader: SecretManagerReader) -> None:
    with pytest.raises(CredentialError, match=f"secret {version('empty')} is empty"):
        reader.read(version("empty"))


def test_unreachable_endpoint_is_a_temporary_error() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    reader = SecretManagerReader(env={"SECRET_MANAGER_ENDPOINT": endpoint})
    with reader, pytest.raises(CredentialError) as info:
        reader.read(version("quay-user"))
    assert "unreachable" in str(info.value)
    assert endpoint in str(info.value)
    assert info.value.temporary


def test_endpoint_without_scheme_means_plain_http(fake: FakeSecretManager) -> None:
    endpoint = f"127.0.0.1:{fake.port}/"
    with SecretManagerReader(env={"SECRET_MANAGER_ENDPOINT": endpoint}) as reader:
        assert reader.read(version("quay-user")) == "robot"


def test_malformed_resource_name_is_refused_before_any_request(
    fake: FakeSecretManager, reader: SecretManagerReader
) -> None:
    with pytest.raises(CredentialError, match="invalid secret resource"):
        reader.read("quay-user")
    assert fake.requests == []


def test_no_google_credentials_is_a_credential_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth  # noqa: PLC0415
    from google.auth.exceptions import DefaultCredentialsError  # noqa: PLC0415

    def no_credentials(*args: object, **kwargs: object) -> object:
        raise DefaultCredentialsError("no credentials here")  # type: ignore[no-untyped-call]

    # Stands in for a machine with no Application Default Credentials (and no metadata server).
    monkeypatch.setattr(google.auth, "default", no_credentials)
    reader = SecretManagerReader(env={})
    with reader, pytest.raises(CredentialError) as info:
        reader.read(version("quay-user"))
    assert "no Google credentials" in str(info.value)
    assert version("quay-user") in str(info.value)


def test_secret_value_never_appears_in_errors_or_logs(
    fake: FakeSecretManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"SECRET_MANAGER_ENDPOINT": fake.endpoint}
    errors: list[CredentialError] = []
    with SecretManagerReader(env=env) as reader:
        assert reader.read(version("quay-password")) == DISTINCTIVE
        for name in ("nope", "locked", "empty"):
            with pytest.raises(CredentialError) as info:
                reader.read(version(name))
            errors.append(info.value)
        assert DISTINCTIVE not in repr(reader)
    assert logging.getLogger("google.cloud.secretmanager_v1").isEnabledFor(logging.DEBUG) is False
    for err in errors:
        assert DISTINCTIVE not in all_text(err)
    assert DISTINCTIVE not in caplog.text


def test_short_names_expand_in_the_project() -> None:
    assert secret_version_name("quay-user", PROJECT) == version("quay-user")
    assert secret_version_name(version("x", "3"), None) == version("x", "3")
    with pytest.raises(CredentialError, match="GOOGLE_CLOUD_PROJECT is not set"):
        secret_version_name("quay-user", None)


def test_resolver_reads_config_secrets_from_the_fake(fake: FakeSecretManager) -> None:
    config = parse_config(
        {
            "images": [],
            "registries": {
                "quay.io": {"username": "secret:quay-user", "password": "secret:quay-password"}
            },
        },
        "test",
    )
    env = {"SECRET_MANAGER_ENDPOINT": fake.endpoint, "GOOGLE_CLOUD_PROJECT": PROJECT}
    resolver = CredentialResolver(config, env=env, docker_config=Path("/nonexistent/config.json"))
    try:
        assert fake.requests == []
        assert resolver("quay.io") == Credentials("robot", DISTINCTIVE)
        assert resolver("quay.io") == Credentials("robot", DISTINCTIVE)
        assert len(fake.requests) == 2
    finally:
        resolver.close()


def test_fake_reports_a_correct_crc32c() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value


@pytest.mark.integration
def test_importing_the_package_does_not_import_the_client_library() -> None:
    heavy = ("google.cloud.secretmanager", "google.api_core", "grpc")
    code = (
        "import sys, sync.secrets, sync.credentials, sync.config; "
        f"bad = [m for m in sys.modules if m.startswith({heavy!r})]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
