"""RegistryClient against an in-memory registry (MockTransport): headers, bodies, statuses,
retries, redirects, uploads, mounts, tags, rate limits, and what becomes an error."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from sync.errors import AuthenticationError, ManifestError, RegistryError, redact_url
from sync.login import Credentials
from sync.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
)
from sync.registry import (
    HostSettings,
    ManifestInfo,
    RateLimit,
    Registries,
    RegistryClient,
    UploadSession,
    quay_absent,
    resolve_location,
)
from sync.retry import RetryPolicy, parse_rate_limit
from tests.bed.faults import AddHeaders
from tests.bed.images import image_of, index_of, sha256_digest
from tests.conftest import Waits
from tests.fake_registry import FakeRegistry, route

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
FOUR_TYPES = {OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST}
T = TypeVar("T")


def client_for(
    fake: FakeRegistry, *, credentials: Credentials | None = None, host: str | None = None
) -> RegistryClient:
    return RegistryClient(
        host or fake.host,
        settings=HostSettings(credentials=(lambda _host: credentials) if credentials else None),
        policy=FAST,
        transport=fake.transport(),
    )


def run(
    fake: FakeRegistry,
    scenario: Callable[[RegistryClient], Awaitable[T]],
    *,
    credentials: Credentials | None = None,
    host: str | None = None,
) -> T:
    async def main() -> T:
        client = client_for(fake, credentials=credentials, host=host)
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def fails(
    fake: FakeRegistry, scenario: Callable[[RegistryClient], Awaitable[object]]
) -> BaseException:
    """Run `scenario` expecting it to raise; return what it raised."""

    async def expect(client: RegistryClient) -> BaseException:
        try:
            await scenario(client)
        except Exception as exc:
            return exc
        raise AssertionError(f"no error; requests:\n{fake.log()}")

    return run(fake, expect)


def accept_types(header: str | None) -> set[str]:
    return {part.strip() for part in (header or "").split(",") if part.strip()}


async def body_of(data: bytes, chunk: int = 3) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


IMAGE = image_of([b"layer one", b"layer two"])
INDEX = index_of([(IMAGE, "linux/amd64")])


def with_image(**options: Any) -> FakeRegistry:
    fake = FakeRegistry(**options)
    fake.add_image("team/app", INDEX, tag="v1")
    return fake


# --- manifests ------------------------------------------------------------------------------


def test_manifest_head_and_get_send_all_four_manifest_types() -> None:
    fake = with_image()

    async def scenario(client: RegistryClient) -> None:
        await client.manifest_head("team/app", "v1")
        await client.manifest_get("team/app", "v1")
        await client.manifest_get("team/app", IMAGE.digest)

    run(fake, scenario)
    manifest_requests = fake.matching(path="/manifests/")
    assert [r.method for r in manifest_requests] == ["HEAD", "GET", "GET"], fake.log()
    for request in manifest_requests:
        assert accept_types(request.headers.get("accept")) == FOUR_TYPES, (
            f"{request.method} sent Accept {request.headers.get('accept')!r}"
        )


def test_manifest_head_reports_digest_media_type_and_size() -> None:
    fake = with_image()

    async def scenario(client: RegistryClient) -> ManifestInfo | None:
        return await client.manifest_head("team/app", "v1")

    info = run(fake, scenario)
    assert info is not None
    assert (info.digest, info.media_type, info.size) == (
        INDEX.digest,
        OCI_INDEX,
        len(INDEX.manifest),
    )
    assert not fake.matching("GET", "/manifests/"), "a HEAD must not become a GET (a pull)"


def test_manifest_head_of_a_missing_tag_is_none() -> None:
    fake = with_image()

    async def scenario(client: RegistryClient) -> object:
        return await client.manifest_head("team/app", "nope")

    assert run(fake, scenario) is None


def test_manifest_head_without_docker_content_digest_is_an_error_for_a_tag() -> None:
    fake = with_image()
    fake.fail("HEAD", "/manifests/v1$", httpx.Response(200, headers={"Content-Type": OCI_INDEX}))

    error = fails(fake, lambda c: c.manifest_head("team/app", "v1"))
    assert isinstance(error, RegistryError), repr(error)
    assert "Docker-Content-Digest" in str(error), str(error)


def test_manifest_head_without_docker_content_digest_uses_the_digest_asked_for() -> None:
    fake = with_image()
    fake.fail("HEAD", "/manifests/sha256:", httpx.Response(200, headers={"Content-Type": "x"}))

    async def scenario(client: RegistryClient) -> ManifestInfo | None:
        return await client.manifest_head("team/app", IMAGE.digest)

    info = run(fake, scenario)
    assert info is not None and info.digest == IMAGE.digest


def test_manifest_get_returns_the_exact_bytes_and_media_type() -> None:
    fake = with_image()

    async def scenario(client: RegistryClient) -> Manifest:
        return await client.manifest_get("team/app", "v1")

    manifest = run(fake, scenario)
    assert manifest.raw == INDEX.manifest, "manifest bytes altered on the way in"
    assert (manifest.digest, manifest.media_type) == (INDEX.digest, OCI_INDEX)


def test_manifest_get_whose_bytes_do_not_match_the_digest_asked_for_is_an_error() -> None:
    fake = with_image()
    other = image_of([b"something else"])
    fake.fail(
        "GET",
        f"/manifests/{IMAGE.digest}$",
        httpx.Response(200, headers={"Content-Type": OCI_MANIFEST}, content=other.manifest),
    )

    error = fails(fake, lambda c: c.manifest_get("team/app", IMAGE.digest))
    assert isinstance(error, ManifestError), repr(error)
    assert IMAGE.digest in str(error) and other.digest in str(error), str(error)


def test_manifest_get_whose_bytes_do_not_match_the_announced_digest_is_an_error() -> None:
    fake = with_image()
    fake.fail(
        "GET",
        "/manifests/v1$",
        httpx.Response(
            200,
            headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": INDEX.digest},
            content=IMAGE.manifest,
        ),
    )

    error = fails(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert isinstance(error, ManifestError), repr(error)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_put_sends_the_media_type_and_the_exact_bytes(media_type: str) -> None:
    fake = FakeRegistry(check_references=False)
    image = image_of([b"x"], media_type=media_type)
    manifest = Manifest.parse(image.manifest)

    async def scenario(client: RegistryClient) -> str:
        return await client.manifest_put("team/app", "v2", manifest)

    assert run(fake, scenario) == image.digest
    (put,) = fake.matching("PUT", "/manifests/")
    assert put.headers.get("content-type") == media_type, put.headers
    assert put.body == image.manifest, "pushed bytes differ from the source's"
    assert put.path == "/v2/team/app/manifests/v2"
    assert fake.tag_digest("team/app", "v2") == image.digest


def test_manifest_put_content_type_comes_from_the_source_when_the_json_has_none() -> None:
    fake = FakeRegistry(check_references=False)
    image = image_of([b"x"], with_media_type_field=False)
    manifest = Manifest.parse(image.manifest, f"{DOCKER_MANIFEST}; charset=utf-8")

    run(fake, lambda c: c.manifest_put("team/app", image.digest, manifest))
    (put,) = fake.matching("PUT")
    assert put.headers.get("content-type") == DOCKER_MANIFEST, put.headers


def test_manifest_put_that_the_registry_stores_under_another_digest_is_an_error() -> None:
    fake = FakeRegistry(check_references=False)
    fake.fail(
        "PUT",
        "/manifests/",
        httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "9" * 64}),
    )
    manifest = Manifest.parse(IMAGE.manifest)

    error = fails(fake, lambda c: c.manifest_put("team/app", "v1", manifest))
    assert isinstance(error, RegistryError) and "altered" in str(error), repr(error)


# --- retries and error bodies ---------------------------------------------------------------


def test_429_with_retry_after_is_waited_then_succeeds(waits: Waits) -> None:
    fake = with_image()
    fake.fail("GET", "/manifests/", httpx.Response(429, headers={"Retry-After": "1"}))

    run(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert [r.status for r in fake.matching("GET", "/manifests/")] == [429, 200], fake.log()
    assert len(waits.seconds) == 1 and 1.0 <= waits.seconds[0] <= 1.01, waits.seconds


def test_503s_then_success(waits: Waits) -> None:
    fake = with_image()
    fake.fail("GET", "/manifests/", httpx.Response(503), httpx.Response(503))

    manifest = run(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert manifest.digest == INDEX.digest
    assert [r.status for r in fake.matching("GET", "/manifests/")] == [503, 503, 200]
    assert len(waits.seconds) == 2


def test_503_forever_is_a_temporary_error_after_bounded_attempts(waits: Waits) -> None:
    fake = with_image()
    fake.fail("GET", "/manifests/", *[httpx.Response(503, text="down")] * 10)

    error = fails(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert isinstance(error, RegistryError), repr(error)
    assert (error.status, error.temporary, error.code) == (503, True, "HTTP_503"), error
    assert len(fake.matching("GET", "/manifests/")) == FAST.attempts, fake.log()


HTML_429 = (
    "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    "<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def test_html_429_body_becomes_a_clean_toomanyrequests_error(waits: Waits) -> None:
    fake = with_image()
    html = httpx.Response(429, headers={"Content-Type": "text/html"}, text=HTML_429)
    fake.fail("GET", "/manifests/", *[html] * 10)

    error = fails(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert isinstance(error, RegistryError), repr(error)
    assert error.code == "TOOMANYREQUESTS" and error.temporary, error
    assert not re.search(r"<[^>]*>", str(error)), f"HTML in message: {error}"
    assert "429 Too Many Requests" in str(error), str(error)


def test_429_error_mentions_the_pull_allowance_when_known(waits: Waits) -> None:
    fake = with_image(ratelimit=(100, 0))
    too_many = httpx.Response(429, headers={"Retry-After": "21600"}, text="limit reached")

    async def scenario(client: RegistryClient) -> RegistryError:
        await client.manifest_head("team/app", "v1")
        fake.fail("GET", "/manifests/", too_many)
        with pytest.raises(RegistryError) as caught:
            await client.manifest_get("team/app", "v1")
        return caught.value

    error = run(fake, scenario)
    assert "pull allowance 0/100" in str(error), str(error)
    assert error.rate_limit == RateLimit(fake.host, 0, 100), "the error carries the allowance"
    assert error.retry_after == 21600.0 and waits.seconds == [], "an hours-long wait was slept"


@pytest.mark.parametrize(
    ("status", "code", "not_found"),
    [
        (404, "MANIFEST_UNKNOWN", True),
        (404, "NAME_UNKNOWN", True),
        (403, "DENIED", False),
        (400, "MANIFEST_INVALID", False),
        (429, "TOOMANYREQUESTS", False),
    ],
)
def test_error_body_codes_are_kept(status: int, code: str, not_found: bool) -> None:
    fake = with_image()
    body = {"errors": [{"code": code, "message": f"{code.lower()} here", "detail": {}}]}
    fake.fail("GET", "/manifests/", *[httpx.Response(status, json=body)] * 10)

    error = fails(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert isinstance(error, RegistryError), repr(error)
    assert error.codes == (code,) and error.code == code, error
    assert error.not_found is not_found
    assert f"{code.lower()} here" in str(error) and f"HTTP {status}" in str(error), str(error)
    assert "/v2/team/app/manifests/v1" in str(error), "the message must say where"


def test_missing_manifest_from_the_real_fake_route_is_manifest_unknown() -> None:
    fake = with_image()
    error = fails(fake, lambda c: c.manifest_get("team/app", "absent"))
    assert isinstance(error, RegistryError)
    assert (error.status, error.code, error.not_found) == (404, "MANIFEST_UNKNOWN", True)
    assert not error.temporary


# --- blobs ----------------------------------------------------------------------------------


def test_blob_head_gives_the_size_or_none() -> None:
    fake = with_image()

    async def scenario(client: RegistryClient) -> tuple[int | None, int | None]:
        present = await client.blob_head("team/app", IMAGE.layers[0])
        absent = await client.blob_head("team/app", sha256_digest(b"absent"))
        return present, absent

    assert run(fake, scenario) == (len(b"layer one"), None)


def test_blob_get_follows_a_cdn_redirect_without_authorization() -> None:
    fake = with_image(auth="bearer", cdn=True)
    digest = IMAGE.layers[1]

    data = run(fake, lambda c: c.blob_get("team/app", digest))
    assert data == b"layer two", fake.log()
    (registry_get,) = fake.matching("GET", "/blobs/", host=fake.host)
    (cdn_get,) = fake.matching("GET", host=fake.cdn_host)
    assert registry_get.status == 307 and registry_get.headers["authorization"].startswith(
        "Bearer "
    ), fake.log()
    assert "authorization" not in cdn_get.headers, "Authorization forwarded to the CDN host"
    assert cdn_get.param("X-Amz-Signature") == "signed", "signed query lost on redirect"
    assert registry_get.headers.get("accept-encoding") == "identity"


def test_upload_put_goes_to_the_relative_location_keeping_its_query() -> None:
    fake = FakeRegistry()
    data = b"some blob content"

    async def scenario(client: RegistryClient) -> UploadSession:
        session = await client.blob_upload_start("team/app")
        await client.blob_upload_finish(session, sha256_digest(data), len(data), body_of(data))
        return session

    session = run(fake, scenario)
    (put,) = fake.matching("PUT")
    assert put.status == 201, fake.log()
    assert put.host == fake.host and put.path.startswith("/v2/team/app/blobs/uploads/upload-")
    assert session.location.path == put.path, f"PUT to {put.path}, Location {session.location}"
    state = session.location.params["_state"]
    assert put.query == f"_state={state}&digest={sha256_digest(data)}", (
        f"query {put.query!r}: the Location's query must be kept and digest appended"
    )
    assert fake.has_blob("team/app", sha256_digest(data))


def test_upload_put_has_an_explicit_content_length_and_is_not_chunked() -> None:
    fake = FakeRegistry()
    data = b"0123456789" * 100

    async def scenario(client: RegistryClient) -> None:
        session = await client.blob_upload_start("team/app")
        await client.blob_upload_finish(session, sha256_digest(data), len(data), body_of(data, 64))

    run(fake, scenario)
    (put,) = fake.matching("PUT")
    assert put.headers.get("content-length") == str(len(data)), put.headers
    assert "transfer-encoding" not in put.headers, "the upload was sent chunked"
    assert put.body == data
    assert put.headers.get("content-type") == "application/octet-stream"


def test_upload_location_on_another_host_gets_no_authorization() -> None:
    fake = FakeRegistry(auth="basic", users={"u": "p"})
    other = FakeRegistry("uploads.test")
    other.repo("team/app")
    fake.fail(
        "POST",
        "/blobs/uploads/$",
        httpx.Response(
            202, headers={"Location": "https://uploads.test/v2/team/app/blobs/uploads/x?_state=s"}
        ),
    )

    async def main() -> None:
        client = RegistryClient(
            fake.host,
            settings=HostSettings(credentials=lambda _h: Credentials("u", "p")),
            policy=FAST,
            transport=route(fake, other),
        )
        try:
            session = await client.blob_upload_start("team/app")
            await client.blob_upload_finish(session, sha256_digest(b"d"), 1, body_of(b"d"))
        except RegistryError:
            pass  # the other host knows no such session (404); only the headers matter
        finally:
            await client.aclose()

    asyncio.run(main())
    (put,) = other.matching("PUT")
    assert "authorization" not in put.headers, "credentials sent to another host"
    (post,) = fake.matching("POST")
    assert post.headers.get("authorization", "").startswith("Basic ")


def test_upload_cancel_deletes_the_session_and_tolerates_404() -> None:
    fake = FakeRegistry()

    async def scenario(client: RegistryClient) -> None:
        session = await client.blob_upload_start("team/app")
        await client.blob_upload_cancel(session)
        await client.blob_upload_cancel(session)  # already gone: 404, no error

    run(fake, scenario)
    deletes = fake.matching("DELETE", "/blobs/uploads/upload-")
    assert [d.status for d in deletes] == [204, 404], fake.log()
    assert deletes[0].param("_state"), "DELETE must go to the Location as given"
    assert fake.uploads == {}


# --- mounts ---------------------------------------------------------------------------------


def test_mount_201_means_mounted_and_no_session() -> None:
    fake = with_image()
    digest = IMAGE.layers[0]

    async def scenario(client: RegistryClient) -> UploadSession | None:
        return await client.blob_mount("team/copy", digest, "team/app")

    assert run(fake, scenario) is None
    (post,) = fake.matching("POST")
    assert (post.param("mount"), post.param("from"), post.status) == (digest, "team/app", 201)
    assert fake.has_blob("team/copy", digest)


def test_mount_202_opens_a_session_that_the_upload_uses() -> None:
    fake = with_image(mount="session")
    data = b"layer one"

    async def scenario(client: RegistryClient) -> UploadSession | None:
        session = await client.blob_mount("team/copy", sha256_digest(data), "team/app")
        assert session is not None, "a 202 must give an upload session"
        await client.blob_upload_finish(session, sha256_digest(data), len(data), body_of(data))
        return session

    session = run(fake, scenario)
    assert session is not None
    (post,) = fake.matching("POST")
    (put,) = fake.matching("PUT")
    assert post.status == 202 and put.path == session.location.path, fake.log()
    assert "mount" not in put.url.params, f"PUT went to the mount URL: {put.url}"
    assert fake.has_blob("team/copy", sha256_digest(data))


def test_mount_error_raises_so_the_caller_can_upload(waits: Waits) -> None:
    fake = with_image(mount="error")
    error = fails(fake, lambda c: c.blob_mount("team/copy", IMAGE.layers[0], "team/app"))
    assert isinstance(error, RegistryError) and error.status == 500, repr(error)
    assert not fake.has_blob("team/copy", IMAGE.layers[0])


# --- tags -----------------------------------------------------------------------------------


def test_tag_list_follows_link_pagination() -> None:
    fake = FakeRegistry()
    tags = ["1.0", "1.1", "10.0", "2.0", "9.9"]
    for tag in tags:
        fake.add_manifest("team/app", IMAGE.manifest, OCI_MANIFEST, tag=tag)

    async def scenario(client: RegistryClient) -> list[str]:
        return await client.tag_list("team/app", page_size=2)

    assert run(fake, scenario) == sorted(tags)
    pages = fake.matching("GET", "/tags/list")
    assert len(pages) == 3, fake.log()
    assert [p.param("n") for p in pages] == ["2", "2", "2"]
    assert [p.param("last") for p in pages] == [None, "1.1", "2.0"], fake.log()


def test_tag_list_of_a_repository_without_tags_is_empty() -> None:
    fake = FakeRegistry()
    fake.fail("GET", "/tags/list", httpx.Response(200, json={"name": "x", "tags": None}))
    assert run(fake, lambda c: c.tag_list("team/app")) == []


def test_tag_list_that_is_not_strings_is_an_error() -> None:
    fake = FakeRegistry()
    fake.fail("GET", "/tags/list", httpx.Response(200, json={"tags": [1, 2]}))
    error = fails(fake, lambda c: c.tag_list("team/app"))
    assert isinstance(error, RegistryError) and "not a list of strings" in str(error)


# --- rate limits ----------------------------------------------------------------------------


def test_ratelimit_headers_are_exposed_on_the_client() -> None:
    fake = with_image(ratelimit=(100, 76))

    async def scenario(client: RegistryClient) -> list[RateLimit | None]:
        seen = [client.rate_limit]
        await client.manifest_head("team/app", "v1")
        seen.append(client.rate_limit)
        await client.manifest_get("team/app", "v1")
        await client.manifest_get("team/app", "v1")
        seen.append(client.rate_limit)
        return seen

    announced = [None, RateLimit(fake.host, 76, 100), RateLimit(fake.host, 75, 100)]
    assert run(fake, scenario) == announced


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "7;w=21600"}, (100, 7)),
        ({"RateLimit-Limit": "200", "RateLimit-Remaining": "0"}, (200, 0)),
        ({}, None),
        ({"ratelimit-limit": "100;w=21600"}, None),
        ({"ratelimit-limit": "x", "ratelimit-remaining": "1"}, None),
    ],
)
def test_parse_rate_limit(headers: dict[str, str], expected: tuple[int, int] | None) -> None:
    got = parse_rate_limit(httpx.Headers(headers), "registry.test")
    assert (None if got is None else (got.limit, got.remaining)) == expected, headers
    assert got is None or got.registry == "registry.test"


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@quay.io/v2/a/b?token=x#f", "https://quay.io/v2/a/b"),
        (
            "https://cdn.example/blobs/sha256:ab?X-Amz-Signature=s&X-Amz-Credential=c",
            "https://cdn.example/blobs/sha256:ab",
        ),
        ("http://localhost:5000/v2/", "http://localhost:5000/v2/"),
        ("https://robot%2Bx:pw@host:8443/p", "https://host:8443/p"),
    ],
)
def test_redact_url_strips_credentials_and_query(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_keeps_an_ipv6_host_bracketed() -> None:
    assert redact_url("http://u:p@[::1]:5000/v2/?q=1") == "http://[::1]:5000/v2/"


def test_registry_error_carries_a_redacted_url() -> None:
    error = RegistryError("x", status=500, method="GET", url="https://u:secret@h/v2/?sig=tok")
    assert "secret" not in str(error) and "tok" not in str(error) and error.url == "https://h/v2/"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            "/v2/a/blobs/uploads/1?_state=xyz",
            "https://r.test/v2/a/blobs/uploads/1?_state=xyz&digest=D",
        ),
        ("/v2/a/blobs/uploads/1", "https://r.test/v2/a/blobs/uploads/1?digest=D"),
        ("https://s3.test/up/1?X-Sig=1", "https://s3.test/up/1?X-Sig=1&digest=D"),
        ("1?_state=s", "https://r.test/v2/a/blobs/uploads/1?_state=s&digest=D"),
    ],
)
def test_resolve_location_joins_and_appends_digest(location: str, expected: str) -> None:
    base = httpx.URL("https://r.test/v2/a/blobs/uploads/")
    assert str(resolve_location(base, location, digest="D")) == expected


# --- hosts ----------------------------------------------------------------------------------


def test_host_written_with_its_default_port_still_gets_authorization() -> None:
    fake = with_image(auth="basic", users={"u": "p"})

    async def scenario(client: RegistryClient) -> object:
        return await client.manifest_head("team/app", "v1")

    info = run(fake, scenario, credentials=Credentials("u", "p"), host=f"{fake.host}:443")
    assert info is not None


def test_registries_make_one_client_per_host_with_its_settings() -> None:
    asked: list[str] = []

    def settings_for(host: str) -> HostSettings:
        asked.append(host)
        return HostSettings(secure=host != "localhost:5000")

    async def main() -> None:
        async with Registries(settings_for, policy=FAST, transport=FakeRegistry().transport()) as r:
            a = r.client("quay.io")
            assert r.client("quay.io") is a
            b = r.client("localhost:5000")
            assert (a.scheme, b.scheme) == ("https", "http")
            assert set(r.clients) == {"quay.io", "localhost:5000"}
            assert a.policy is FAST
        assert r.clients == {}, "clients not closed on exit"

    asyncio.run(main())
    assert asked == ["quay.io", "localhost:5000"], asked


def test_error_json_body_is_parsed_even_when_content_type_is_wrong() -> None:
    fake = with_image()
    body = json.dumps({"errors": [{"code": "DENIED", "message": "no"}]})
    fake.fail("GET", "/manifests/", httpx.Response(403, text=body))
    error = fails(fake, lambda c: c.manifest_get("team/app", "v1"))
    assert isinstance(error, RegistryError) and error.codes == ("DENIED",), repr(error)


def test_blob_bytes_arrive_as_stored_even_with_a_content_encoding_header() -> None:
    stored = gzip.compress(b"a gzip-compressed layer, as layers are " * 20)
    fake = FakeRegistry()
    digest = fake.add_blob("team/app", stored)
    gzip_header = AddHeaders((("Content-Encoding", "gzip"),))
    fake.add_rule(gzip_header, method="GET", path=f"/blobs/{digest}$")

    data = run(fake, lambda c: c.blob_get("team/app", digest))
    assert sha256_digest(data) == digest, f"got {len(data)} bytes, stored {len(stored)}"


@pytest.mark.parametrize(
    ("error", "absent"),
    [
        (RegistryError("unauthorized", status=401), True),
        (AuthenticationError("credentials refused", status=401), False),
        (RegistryError("denied", status=403), False),
        (RegistryError("unknown", status=404, codes=("NAME_UNKNOWN",)), False),
    ],
    ids=["plain 401", "authentication error", "403", "404"],
)
def test_quay_absent_is_a_401_that_is_no_authentication_error(
    error: RegistryError, absent: bool
) -> None:
    assert quay_absent(error) is absent
