"""Registry authentication: challenge parsing, Bearer tokens (fetch, cache, expiry, refresh),
Basic on every request, lazy credentials, and secrets kept out of messages."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import TypeVar

import httpx
import pytest

import sync.auth
from sync.auth import parse_challenge, parse_challenges, pull_scope, push_scope
from sync.errors import RegistryError
from sync.login import Credentials
from sync.registry import HostSettings, RegistryClient
from sync.retry import RetryPolicy
from tests.bed.images import image_of, sha256_digest
from tests.fake_registry import AuthMode, FakeRegistry

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
USER, PASSWORD = "sail-dev+robot", "s3cr3t-Pa55"
T = TypeVar("T")


class Provider:
    """A credential provider that counts its calls."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials = credentials
        self.calls: list[str] = []

    def __call__(self, host: str) -> Credentials | None:
        self.calls.append(host)
        return self.credentials


def robot() -> Provider:
    return Provider(Credentials(USER, PASSWORD))


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def client_for(
    fake: FakeRegistry | None = None,
    *,
    credentials: Provider | None = None,
    secure: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    host: str | None = None,
) -> RegistryClient:
    transport = transport or (fake.transport() if fake else None)
    return RegistryClient(
        host or (fake.host if fake else "registry.test"),
        settings=HostSettings(secure=secure, credentials=credentials),
        policy=FAST,
        transport=transport,
    )


def run(client: RegistryClient, scenario: Callable[[RegistryClient], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def seeded(fake: FakeRegistry, *repos: str) -> FakeRegistry:
    for repo in repos:
        fake.add_image(repo, image_of([repo.encode()]), tag="v1")
    return fake


# --- parse_challenge ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        pytest.param(
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/nginx:pull"',
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull",
            },
            id="docker hub bearer",
        ),
        pytest.param(
            'Bearer realm="https://quay.io/v2/auth", service="quay.io", '
            'scope="repository:sail-dev/x:pull,push"',
            "bearer",
            {
                "realm": "https://quay.io/v2/auth",
                "service": "quay.io",
                "scope": "repository:sail-dev/x:pull,push",
            },
            id="comma inside a quoted value and spaces between params",
        ),
        pytest.param(
            'Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}, id="basic"
        ),
        pytest.param("Basic", "basic", {}, id="basic without params"),
        pytest.param(
            "BEARER Realm=https://a.test/token,Service=svc",
            "bearer",
            {"realm": "https://a.test/token", "service": "svc"},
            id="unquoted values, case-insensitive names",
        ),
        pytest.param(
            r'Bearer realm="https://a.test/t",error="say \"hi\", please"',
            "bearer",
            {"realm": "https://a.test/t", "error": 'say "hi", please'},
            id="escaped quotes",
        ),
        pytest.param(
            'Basic realm="Registry", Bearer realm="https://auth.test/token",service="reg",'
            'scope="repository:a:pull,push"',
            "bearer",
            {
                "realm": "https://auth.test/token",
                "service": "reg",
                "scope": "repository:a:pull,push",
            },
            id="two headers joined by httpx: the Bearer one is answered, with its own realm",
        ),
        pytest.param(
            'Bearer realm="https://auth.test/token",service="reg", Basic realm="Registry"',
            "bearer",
            {"realm": "https://auth.test/token", "service": "reg"},
            id="Basic after Bearer does not take the Bearer parameters",
        ),
        pytest.param(
            'Negotiate, Basic realm="a, b"',
            "basic",
            {"realm": "a, b"},
            id="an unknown scheme without params, then Basic",
        ),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = parse_challenge(header)
    assert challenge is not None
    assert (challenge.scheme, challenge.params) == (scheme, params), header


@pytest.mark.parametrize("header", [None, ""])
def test_parse_challenge_of_nothing_is_none(header: str | None) -> None:
    assert parse_challenge(header) is None


def test_parse_challenges_keeps_each_challenge_with_its_own_parameters() -> None:
    header = 'Basic realm="basic-realm", Bearer realm="https://t.test/",service="s"'
    got = [(c.scheme, c.params) for c in parse_challenges(header)]
    assert got == [
        ("basic", {"realm": "basic-realm"}),
        ("bearer", {"realm": "https://t.test/", "service": "s"}),
    ]


def test_two_www_authenticate_headers_on_a_response_parse_as_bearer() -> None:
    response = httpx.Response(
        401,
        headers=[
            ("WWW-Authenticate", 'Basic realm="Registry"'),
            ("WWW-Authenticate", 'Bearer realm="https://auth.test/token",service="reg"'),
        ],
    )
    challenge = parse_challenge(response.headers.get("www-authenticate"))
    assert challenge is not None and challenge.scheme == "bearer", challenge
    assert challenge.realm == "https://auth.test/token" and challenge.service == "reg"


def test_challenge_scopes_split_on_spaces_not_commas() -> None:
    challenge = parse_challenge('Bearer realm="r",scope="repository:a:pull,push repository:b:pull"')
    assert challenge is not None
    assert challenge.scopes == ("repository:a:pull,push", "repository:b:pull")
    assert challenge.realm == "r" and challenge.service is None


def test_scope_strings() -> None:
    assert pull_scope("sail-dev/x") == "repository:sail-dev/x:pull"
    assert push_scope("sail-dev/x") == "repository:sail-dev/x:pull,push"


# --- Bearer token requests ------------------------------------------------------------------


def test_token_is_fetched_with_get_service_and_one_scope_param_per_scope() -> None:
    fake = seeded(FakeRegistry(auth="bearer", users={USER: PASSWORD}), "src/a")
    fake.add_blob("src/a", b"blob")
    provider = robot()

    async def scenario(client: RegistryClient) -> None:
        await client.blob_mount("dst/b", "sha256:" + "0" * 64, "src/a")

    run(client_for(fake, credentials=provider), scenario)
    tokens = fake.matching(host=fake.auth_host)
    assert len(tokens) == 1, fake.log()
    token = tokens[0]
    assert token.method == "GET", "Quay's token endpoint refuses POST"
    assert token.param("service") == fake.host
    assert sorted(token.params("scope")) == [
        "repository:dst/b:pull,push",
        "repository:src/a:pull",
    ], f"scopes sent as {token.query!r}"
    assert token.headers.get("authorization") == basic(), "credentials not sent to the realm"


def test_anonymous_token_request_carries_no_authorization() -> None:
    fake = seeded(FakeRegistry(auth="bearer"), "library/nginx")

    async def scenario(client: RegistryClient) -> None:
        await client.manifest_head("library/nginx", "v1")

    run(client_for(fake), scenario)
    tokens = fake.matching(host=fake.auth_host)
    assert len(tokens) == 1, fake.log()
    assert "authorization" not in tokens[0].headers, "anonymous token request sent credentials"
    assert tokens[0].params("scope") == ["repository:library/nginx:pull"]
    head = fake.matching("HEAD", "/manifests/")[-1]
    assert head.headers.get("authorization") == "Bearer token-1", fake.log()


@pytest.mark.parametrize("field", ["token", "access_token"])
def test_token_reply_field_token_or_access_token_is_accepted(field: str) -> None:
    fake = seeded(FakeRegistry(auth="bearer", token_field=field), "a/b")

    async def scenario(client: RegistryClient) -> str | None:
        info = await client.manifest_head("a/b", "v1")
        return info.digest if info else None

    assert run(client_for(fake), scenario) == fake.tag_digest("a/b", "v1")
    heads = fake.matching("HEAD")
    assert [h.status for h in heads] == [200], f"token from {field!r} not used:\n{fake.log()}"


def test_token_is_cached_per_scope_set() -> None:
    fake = seeded(FakeRegistry(auth="bearer"), "a/one", "a/two")

    async def scenario(client: RegistryClient) -> int:
        await client.manifest_head("a/one", "v1")
        await client.manifest_head("a/one", "v1")
        await client.manifest_get("a/one", "v1")
        await client.manifest_head("a/two", "v1")
        await client.manifest_head("a/two", "v1")
        return len(fake.matching(host=fake.auth_host))

    counted = run(client_for(fake), scenario)
    scopes = [r.params("scope") for r in fake.matching(host=fake.auth_host)]
    assert scopes == [["repository:a/one:pull"], ["repository:a/two:pull"]], fake.log()
    assert counted == 2


def test_concurrent_requests_with_one_scope_share_one_token_request() -> None:
    fake = seeded(FakeRegistry(auth="bearer"), "a/one")

    async def scenario(client: RegistryClient) -> None:
        await asyncio.gather(*(client.manifest_head("a/one", "v1") for _ in range(5)))

    run(client_for(fake), scenario)
    assert len(fake.matching(host=fake.auth_host)) == 1, fake.log()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("expires_in", "still_valid_at", "expired_at"),
    [
        pytest.param(None, 30.0, 60.0, id="missing expires_in means 60 s"),
        pytest.param(300, 200.0, 300.0, id="expires_in 300"),
    ],
)
def test_token_is_fetched_anew_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
    expires_in: int | None,
    still_valid_at: float,
    expired_at: float,
) -> None:
    clock = Clock()
    monkeypatch.setattr(sync.auth, "time", SimpleNamespace(monotonic=clock.monotonic))
    fake = seeded(FakeRegistry(auth="bearer", expires_in=expires_in), "a/b")
    start = clock.now

    async def scenario(client: RegistryClient) -> list[int]:
        counts = []
        await client.manifest_head("a/b", "v1")
        counts.append(len(fake.matching(host=fake.auth_host)))
        clock.now = start + still_valid_at
        await client.manifest_head("a/b", "v1")
        counts.append(len(fake.matching(host=fake.auth_host)))
        clock.now = start + expired_at
        await client.manifest_head("a/b", "v1")
        counts.append(len(fake.matching(host=fake.auth_host)))
        return counts

    counts = run(client_for(fake), scenario)
    assert counts == [1, 1, 2], (
        f"token requests after t=0, t={still_valid_at}, t={expired_at}: {counts}"
    )
    heads = fake.matching("HEAD")
    assert [h.status for h in heads] == [200, 200, 200], fake.log()


def test_401_with_challenge_drops_the_token_fetches_anew_and_retries_once() -> None:
    fake = seeded(FakeRegistry(auth="bearer"), "a/b")

    async def scenario(client: RegistryClient) -> None:
        await client.manifest_head("a/b", "v1")
        fake.revoke_tokens()  # e.g. the registry restarted, or the token expired early
        await client.manifest_head("a/b", "v1")

    run(client_for(fake), scenario)
    heads = fake.matching("HEAD")
    assert [h.status for h in heads] == [200, 401, 200], fake.log()
    assert [h.headers.get("authorization") for h in heads] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ], fake.log()
    assert len(fake.matching(host=fake.auth_host)) == 2


def test_401_after_a_fresh_token_is_reported_after_one_retry() -> None:
    # Anonymous pull refused (Quay, private repository): every token lacks the scope.
    fake = seeded(FakeRegistry(auth="bearer", anonymous_pull=False), "a/b")

    async def scenario(client: RegistryClient) -> RegistryError:
        with pytest.raises(RegistryError) as caught:
            await client.manifest_get("a/b", "v1")
        return caught.value

    error = run(client_for(fake), scenario)
    gets = fake.matching("GET", "/manifests/")
    assert len(gets) == 2, f"expected one retry with a fresh token:\n{fake.log()}"
    assert error.status == 401 and error.code == "UNAUTHORIZED", error
    assert "absent, or the credentials lack access" in str(error), str(error)
    assert not error.temporary


def test_streamed_upload_gets_its_push_token_before_the_body_is_sent() -> None:
    # The upload start (body-less) settles the push token, so the PUT never meets a 401.
    fake = FakeRegistry(auth="bearer", users={USER: PASSWORD})

    async def scenario(client: RegistryClient) -> None:
        session = await client.blob_upload_start("a/b")

        async def body() -> AsyncIterator[bytes]:
            yield b"abc"

        await client.blob_upload_finish(session, sha256_digest(b"abc"), 3, body())

    run(client_for(fake, credentials=robot()), scenario)
    puts = fake.matching("PUT", "/blobs/uploads/")
    assert [p.status for p in puts] == [201], fake.log()
    assert fake.has_blob("a/b", sha256_digest(b"abc"))


# --- realm checks and bad token replies -----------------------------------------------------


def challenge_transport(
    realm: str, token_reply: httpx.Response | None = None
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/v2/") and request.url.host == "registry.test":
            if request.headers.get("authorization") == "Bearer good":
                return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:" + "a" * 64})
            return httpx.Response(
                401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'}
            )
        return token_reply or httpx.Response(200, json={"token": "good"})

    return httpx.MockTransport(handler), seen


def test_plain_http_token_realm_is_refused_for_a_tls_registry() -> None:
    transport, seen = challenge_transport("http://auth.test/token")

    async def scenario(client: RegistryClient) -> RegistryError:
        with pytest.raises(RegistryError) as caught:
            await client.manifest_head("a/b", "v1")
        return caught.value

    error = run(client_for(transport=transport), scenario)
    assert "over plain HTTP" in str(error), str(error)
    assert [r.url.host for r in seen] == ["registry.test"], "the http realm was contacted"


def test_private_address_token_realm_is_refused_for_a_public_registry() -> None:
    transport, seen = challenge_transport("https://10.0.0.1/token")

    async def scenario(client: RegistryClient) -> RegistryError:
        with pytest.raises(RegistryError) as caught:
            await client.manifest_head("a/b", "v1")
        return caught.value

    error = run(client_for(transport=transport), scenario)
    assert "private address" in str(error), str(error)
    assert all(r.url.host == "registry.test" for r in seen)


def test_plain_http_token_realm_is_accepted_for_a_plain_http_registry() -> None:
    transport, seen = challenge_transport("http://auth.test/token")

    async def scenario(client: RegistryClient) -> object:
        return await client.manifest_head("a/b", "v1")

    assert run(client_for(transport=transport, secure=False), scenario) is not None
    assert [r.url.host for r in seen] == ["registry.test", "auth.test", "registry.test"]


def test_token_realm_query_is_kept_alongside_service_and_scope() -> None:
    transport, seen = challenge_transport("https://auth.test/token?account=robot")

    async def scenario(client: RegistryClient) -> object:
        return await client.manifest_head("a/b", "v1")

    assert run(client_for(transport=transport), scenario) is not None
    (token,) = [r for r in seen if r.url.host == "auth.test"]
    assert token.url.params.get("account") == "robot", str(token.url)
    assert token.url.params.get("service") == "svc", str(token.url)
    assert token.url.params.get_list("scope") == ["repository:a/b:pull"], str(token.url)


def test_loopback_ipv6_tls_registry_may_use_a_loopback_token_realm() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "good"})
        if request.headers.get("authorization") == "Bearer good":
            return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:" + "a" * 64})
        challenge = 'Bearer realm="https://[::1]:5001/token",service="svc"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    client = client_for(transport=httpx.MockTransport(handler), host="[::1]:5000")

    async def scenario(client: RegistryClient) -> object:
        return await client.manifest_head("a/b", "v1")

    assert run(client, scenario) is not None


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        pytest.param(httpx.Response(200, text="<html>hi</html>"), "not JSON", id="html"),
        pytest.param(httpx.Response(200, json=["token"]), "not JSON", id="a JSON list"),
        pytest.param(httpx.Response(200, json={"token": ""}), "without a token", id="empty"),
        pytest.param(httpx.Response(200, json={"token": 5}), "without a token", id="number"),
        pytest.param(httpx.Response(200, json={"expires_in": 60}), "without a token", id="none"),
        pytest.param(httpx.Response(404), "token endpoint failed", id="404"),
    ],
)
def test_garbage_token_reply_is_a_registry_error(reply: httpx.Response, problem: str) -> None:
    transport, _ = challenge_transport("https://auth.test/token", reply)

    async def scenario(client: RegistryClient) -> RegistryError:
        with pytest.raises(RegistryError) as caught:
            await client.manifest_head("a/b", "v1")
        return caught.value

    error = run(client_for(transport=transport), scenario)
    assert problem in str(error), str(error)


@pytest.mark.parametrize(
    ("mode", "says"),
    [("bearer", "configured credentials"), ("basic", "credentials for registry.test refused")],
)
def test_refused_credentials_name_neither_user_nor_password(mode: AuthMode, says: str) -> None:
    fake = seeded(FakeRegistry(auth=mode, users={USER: "other"}), "a/b")
    provider = robot()

    async def scenario(client: RegistryClient) -> RegistryError:
        with pytest.raises(RegistryError) as caught:
            await client.manifest_head("a/b", "v1")
        return caught.value

    error = run(client_for(fake, credentials=provider), scenario)
    assert error.status == 401 and error.code == "UNAUTHORIZED", error
    text = f"{error} {error!r} {error.args!r} {error.url}"
    assert USER not in text, f"username in the message: {text}"
    assert says in text, text
    assert PASSWORD not in text, f"password leaked: {text}"
    assert basic()[6:] not in text, f"encoded credentials leaked: {text}"
    assert "scope" not in error.url and "?" not in error.url, error.url


# --- Basic ----------------------------------------------------------------------------------


def test_basic_challenge_means_basic_header_on_every_request() -> None:
    fake = seeded(FakeRegistry(auth="basic", users={USER: PASSWORD}), "a/b")
    image = image_of([b"a/b"])
    provider = robot()

    async def scenario(client: RegistryClient) -> None:
        await client.manifest_head("a/b", "v1")
        await client.manifest_get("a/b", "v1")
        await client.blob_head("a/b", image.layers[0])
        await client.blob_get("a/b", image.layers[0])
        await client.tag_list("a/b")

    run(client_for(fake, credentials=provider), scenario)
    after_ping = fake.requests[1:]
    assert fake.requests[0].path == "/v2/" and len(after_ping) == 5, fake.log()
    for request in after_ping:
        assert request.headers.get("authorization") == basic(), f"no Basic on {request}"
        assert request.status == 200, fake.log()
    assert provider.calls == [fake.host], f"provider calls: {provider.calls}"


def test_basic_registry_without_credentials_reports_401() -> None:
    fake = seeded(FakeRegistry(auth="basic", users={USER: PASSWORD}), "a/b")

    async def scenario(client: RegistryClient) -> RegistryError:
        with pytest.raises(RegistryError) as caught:
            await client.manifest_head("a/b", "v1")
        return caught.value

    error = run(client_for(fake, credentials=Provider(None)), scenario)
    assert error.status == 401, error
    assert all("authorization" not in r.headers for r in fake.requests), fake.log()


# --- credentials provider -------------------------------------------------------------------


def test_credentials_provider_is_not_called_for_an_anonymous_registry() -> None:
    fake = seeded(FakeRegistry(auth="none"), "a/b")
    provider = robot()
    client = client_for(fake, credentials=provider)
    assert provider.calls == [], "provider called when the client was made"

    async def scenario(client: RegistryClient) -> None:
        await client.manifest_head("a/b", "v1")
        await client.manifest_get("a/b", "v1")

    run(client, scenario)
    assert provider.calls == [], "provider called though the registry never asked"
    assert all("authorization" not in r.headers for r in fake.requests), fake.log()


def test_credentials_provider_is_called_once_for_many_token_requests() -> None:
    fake = seeded(FakeRegistry(auth="bearer", users={USER: PASSWORD}), "a/one", "a/two")
    provider = robot()

    async def scenario(client: RegistryClient) -> None:
        await asyncio.gather(
            client.manifest_head("a/one", "v1"),
            client.manifest_head("a/two", "v1"),
            client.blob_upload_start("a/one"),
        )

    run(client_for(fake, credentials=provider), scenario)
    assert len(fake.matching(host=fake.auth_host)) == 3, fake.log()
    assert provider.calls == [fake.host], f"provider calls: {provider.calls}"


def test_credentials_repr_and_str_hide_the_password() -> None:
    creds = Credentials(USER, PASSWORD)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert PASSWORD not in text, text
        assert USER in text
    assert creds.basic_header() == basic()
