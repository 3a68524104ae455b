"""The registry client's connection pool over real loopback sockets: connections are reused one
request at a time, never more than MAX_CONNECTIONS per host, a connection the server closed is
not reused, and a full pool still reaches another origin (a CDN a blob redirects to)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpcore
import pytest

from sync.registry import MAX_CONNECTIONS, HostSettings, RegistryClient
from sync.retry import RetryPolicy

DIGEST = "sha256:" + "ab" * 32
#: One try per request: a connection wrongly reused shows up as a failure, not a retry.
NO_RETRY = RetryPolicy(attempts=1, unanswered_attempts=1)


@dataclass
class Server:
    """A tiny HTTP/1.1 server: every manifest or blob request gets 200 (blob GETs, when
    `redirect_to` is set, a 307 there), after `delay` seconds."""

    delay: float = 0.0
    #: Close each connection right after its first response (keep-alive not honoured).
    close_after_one: bool = False
    redirect_to: str | None = None
    port: int = 0
    connections: int = 0
    requests: int = 0
    in_flight_per_connection: list[int] = field(default_factory=list)
    max_in_flight: int = 0
    _in_flight: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                self.requests += 1
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                await asyncio.sleep(self.delay)
                self._in_flight -= 1
                if method == "GET" and "/blobs/" in path and self.redirect_to:
                    writer.write(
                        b"HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\n"
                        + f"Location: {self.redirect_to}{path}\r\n\r\n".encode()
                    )
                else:
                    body = b"" if method == "HEAD" else b"blob"
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
                        + f"Docker-Content-Digest: {DIGEST}\r\n\r\n".encode()
                        + body
                    )
                await writer.drain()
                if self.close_after_one:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def client_of(server: Server) -> RegistryClient:
    return RegistryClient(
        f"127.0.0.1:{server.port}", settings=HostSettings(secure=False), policy=NO_RETRY
    )


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


def test_more_requests_than_connections_share_them_one_request_at_a_time() -> None:
    async def test() -> None:
        async with serving(Server(delay=0.02)) as server:
            client = client_of(server)
            try:
                heads = await asyncio.gather(
                    *(client.manifest_head("r", f"t{i}") for i in range(3 * MAX_CONNECTIONS))
                )
            finally:
                await client.aclose()
        assert all(head is not None and head.digest == DIGEST for head in heads)
        # One ping, then the HEADs; never more connections than the bound, all reused.
        assert server.requests == 3 * MAX_CONNECTIONS + 1
        assert server.connections <= MAX_CONNECTIONS, server.connections
        assert server.max_in_flight <= MAX_CONNECTIONS

    run(test)


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def test() -> None:
        async with serving(Server(close_after_one=True)) as server:
            client = client_of(server)
            try:
                for tag in ("a", "b", "c"):
                    await asyncio.sleep(0.05)  # the server's close reaches us
                    head = await client.manifest_head("r", tag)
                    assert head is not None
            finally:
                await client.aclose()
        # The ping and three HEADs, each on a connection of its own: none was sent on a
        # connection the server had closed (with no retries, that would have failed).
        assert (server.requests, server.connections) == (4, 4)

    run(test)


def test_a_pool_full_of_idle_connections_still_reaches_another_origin() -> None:
    async def test() -> None:
        async with (
            serving(Server()) as cdn,
            # Slow enough that every request is still in flight when the last one starts.
            serving(Server(delay=0.5, redirect_to="")) as registry,
        ):
            registry.redirect_to = f"http://127.0.0.1:{cdn.port}"
            client = client_of(registry)
            try:
                await client.ping()
                await asyncio.gather(
                    *(client.manifest_head("r", f"t{i}") for i in range(MAX_CONNECTIONS))
                )
                assert registry.connections == MAX_CONNECTIONS  # all idle now
                blob = await client.blob_get("r", DIGEST)
            finally:
                await client.aclose()
        assert blob == b"blob"
        assert cdn.requests == 1

    run(test)


@pytest.mark.parametrize("secure", [False, True])
def test_a_plain_http_registry_makes_its_tls_context_only_for_an_https_connection(
    secure: bool,
) -> None:
    client = RegistryClient("127.0.0.1:1", settings=HostSettings(secure=secure))
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    try:
        # Loading the CA bundle costs CPU and memory that plain HTTP never needs...
        assert (pool._ssl_context is not None) is secure
        # ...until a redirect leads to an HTTPS host (a CDN).
        pool.create_connection(httpcore.Origin(b"https", b"cdn.test", 443))
        assert isinstance(pool._ssl_context, ssl.SSLContext)
        assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
    finally:
        asyncio.run(client.aclose())
