"""A fault-injecting HTTP reverse proxy in front of a test-bed registry, and its "CDN".

Owns one loopback listener that forwards every request to a real registry (plain HTTP) and, by
rules, breaks some of them the way real registries, proxies and networks do: an error status
(429 with `Retry-After`, 503), a connection reset after N bytes of a body, a body shorter than
its `Content-Length`, a flipped byte, a redirect of blob GETs to a second listener (the "CDN")
that refuses any request carrying `Authorization` (as signed S3/CloudFront URLs do), added
latency, added or removed response headers, a made-up answer, or a callback (to kill a client
mid-transfer). It knows nothing about images or about the code under test.

Everything not broken on purpose passes through byte-exact and streaming: bodies are relayed in
chunks, never buffered whole. The registry's upload `Location` headers are rewritten to point at
the proxy so uploads keep going through it. Randomness comes from one seeded generator, and every
request is logged with what was injected.

    with FaultProxy(registry, seed=7) as proxy:
        proxy.add_rule(too_many_requests(retry_after=1), path="/manifests/", times=3)
        ... point the code under test at proxy.host ...
        assert proxy.injected()
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tests.bed.faults import (
    BODY_FAULTS,
    TERMINAL,
    AddHeaders,
    CdnRedirect,
    Delay,
    Fault,
    FaultInjector,
    FlipByte,
    Invoke,
    ResetBody,
    ResetRequest,
    Respond,
    Rule,
    Rules,
    ShortBody,
    StallBody,
    StripHeaders,
)
from tests.bed.registry import RegistryServer

__all__ = ["FaultProxy", "ProxyRecord", "header_pairs"]

_HEAD_LIMIT = 1024 * 1024
_RELAY_CHUNK = 64 * 1024
_TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS ClientHello record
_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_BLOB_GET = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


# -- the log -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyRecord:
    """One request the proxy (or its CDN) handled."""

    time: float  # time.monotonic() when the request head arrived
    listener: Literal["proxy", "cdn"]
    method: str
    path: str  # with its query
    status: int | None  # what the client was sent; None when nothing was
    faults: tuple[str, ...]  # names of the faults injected into this exchange
    request_bytes: int  # request body bytes received from the client
    response_bytes: int  # response body bytes sent to the client
    authorization: bool  # whether the request carried Authorization

    @property
    def bare_path(self) -> str:
        return self.path.split("?", 1)[0]


# -- HTTP plumbing -----------------------------------------------------------------------------


@dataclass
class _Head:
    first_line: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def remove(self, *names: str) -> None:
        lowered = {n.lower() for n in names}
        self.headers = [(k, v) for k, v in self.headers if k.lower() not in lowered]

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.headers.append((name, value))

    def encode(self) -> bytes:
        lines = [self.first_line, *(f"{k}: {v}" for k, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    """The next request or response head; None at the end of the connection, or when the
    client opens with a TLS handshake (a client that tries HTTPS first, as skopeo does, then
    falls back to plain HTTP at once instead of waiting out its handshake timeout)."""
    try:
        first = await reader.readexactly(1)
        if first == _TLS_HANDSHAKE:
            return None
        raw = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers.append((key.strip(), value.strip()))
    return _Head(lines[0], headers)


def _body_length(head: _Head) -> int | Literal["chunked"] | None:
    if (head.get("transfer-encoding") or "").lower().endswith("chunked"):
        return "chunked"
    length = head.get("content-length")
    return int(length) if length is not None and length.strip().isdigit() else None


async def _relay_exact(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    length: int,
    count: Callable[[int], None] | None = None,
) -> int:
    remaining = length
    while remaining > 0:
        chunk = await reader.read(min(_RELAY_CHUNK, remaining))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(chunk)
        if count is not None:
            count(len(chunk))
        if writer is not None:
            writer.write(chunk)
            await writer.drain()
    return length


async def _relay_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> int:
    """Relay a chunked body as is (framing included); returns the payload size."""
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if writer is not None:
            writer.write(line)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                if writer is not None:
                    writer.write(trailer)
                if trailer == b"\r\n":
                    break
            if writer is not None:
                await writer.drain()
            return total
        data = await reader.readexactly(size + 2)
        total += size
        if writer is not None:
            writer.write(data)
            await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: what a dropped connection looks like."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _flushed(writer: asyncio.StreamWriter) -> None:
    """Wait (up to 5 s) until everything written has left the transport's buffer: drain()
    only waits for it to fall under the high-water mark."""
    for _ in range(5000):
        if writer.transport.get_write_buffer_size() == 0:
            return
        await asyncio.sleep(0.001)


class _Closed(Exception):
    """The client connection must not be reused (a fault closed it, or the body had no end)."""


# -- the proxy ---------------------------------------------------------------------------------


class FaultProxy(FaultInjector):
    """The proxy and its CDN, on free loopback ports, served by one background event loop.

    `upstream` is a RegistryServer or a `host:port` of a plain-HTTP registry. Use as a context
    manager, or `start()` and `stop()`.
    """

    def __init__(
        self,
        upstream: RegistryServer | str,
        *,
        seed: int = 0,
        rules: Sequence[Rule] = (),
    ) -> None:
        self.upstream = upstream.host if isinstance(upstream, RegistryServer) else upstream
        up_host, _, up_port = self.upstream.rpartition(":")
        self._up_addr = (up_host, int(up_port))
        self.seed = seed
        self._rules = Rules(rules, seed)
        self._log: list[ProxyRecord] = []
        self._lock = threading.Lock()
        #: CDN ticket -> (registry path, Authorization for the registry, body faults to apply)
        self._cdn_tickets: dict[str, tuple[str, str | None, tuple[Fault, ...]]] = {}
        self._byte_watches: list[tuple[int, Callable[[int], None]]] = []
        #: Request body bytes received from clients, all requests together.
        self.request_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.cdn_port = 0
        #: Client connections the proxy listener accepted.
        self.connections = 0
        self._fresh: set[asyncio.StreamWriter] = set()  # connections before their first request

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the registry host to configure (with TLS disabled)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def cdn_host(self) -> str:
        return f"127.0.0.1:{self.cdn_port}"

    def start(self) -> FaultProxy:
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._call(self._start_servers())
        return self

    async def _start_servers(self) -> None:
        proxy = await asyncio.start_server(self._serve_proxy, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        cdn = await asyncio.start_server(self._serve_cdn, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        self._servers = [proxy, cdn]
        self.port = int(proxy.sockets[0].getsockname()[1])
        self.cdn_port = int(cdn.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Stop listening, drop open connections, end the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop, self._thread = None, None

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- configuration -----------------------------------------------------------------------

    def _rules_lock(self) -> contextlib.AbstractContextManager[object]:
        return self._lock

    def on_request_bytes(self, threshold: int, callback: Callable[[int], None]) -> None:
        """Call `callback(total)` once, in the proxy thread, as soon as the request bodies
        received (uploads) reach `threshold` bytes in all; the bytes that crossed it are not
        forwarded before the callback returns, nor at all if it raises ConnectionError (the
        connection is then dropped)."""
        with self._lock:
            self._byte_watches.append((threshold, callback))

    # -- the log -----------------------------------------------------------------------------

    def log(self) -> list[ProxyRecord]:
        with self._lock:
            return list(self._log)

    def injected(self, fault: str | None = None) -> list[ProxyRecord]:
        """Records where a fault (that one, when named) was injected."""
        return [r for r in self.log() if r.faults and (fault is None or fault in r.faults)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _record(self, record: ProxyRecord) -> None:
        with self._lock:
            self._log.append(record)

    # -- choosing faults ---------------------------------------------------------------------

    def _count_request_bytes(self, n: int) -> None:
        fire: list[tuple[Callable[[int], None], int]] = []
        with self._lock:
            self.request_bytes += n
            total = self.request_bytes
            keep = []
            for threshold, callback in self._byte_watches:
                if total >= threshold:
                    fire.append((callback, total))
                else:
                    keep.append((threshold, callback))
            self._byte_watches = keep
        for callback, seen in fire:
            callback(seen)

    # -- serving -----------------------------------------------------------------------------

    def _track(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    async def _serve_proxy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self._fresh.add(writer)
        try:
            await self._serve(reader, writer, self._exchange)
        finally:
            self._fresh.discard(writer)

    async def _serve_cdn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(reader, writer, self._cdn_exchange)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        exchange: Callable[
            [_Head, asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]
        ],
    ) -> None:
        task = self._track()
        self._writers.add(writer)
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    break
                await exchange(head, reader, writer)
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _drain_request(
        self, head: _Head, reader: asyncio.StreamReader, count: bool = True
    ) -> int:
        length = _body_length(head)
        if length == "chunked":
            return await _relay_chunked(reader, None)
        if length:
            return await _relay_exact(
                reader, None, length, self._count_request_bytes if count else None
            )
        return 0

    async def _exchange(
        self, head: _Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        started = time.monotonic()
        method, target, _ = head.first_line.split(" ", 2)
        path = target.split("?", 1)[0]
        faults = self._choose(method, target)
        first_on_connection = writer in self._fresh
        self._fresh.discard(writer)
        state: dict[str, Any] = {"status": None, "req": 0, "resp": 0, "faults": []}

        def record() -> None:
            self._record(
                ProxyRecord(
                    started,
                    "proxy",
                    method,
                    target,
                    state["status"],
                    tuple(state["faults"]),
                    state["req"],
                    state["resp"],
                    head.get("authorization") is not None,
                )
            )

        try:
            for fault in faults:
                if isinstance(fault, Delay):
                    state["faults"].append(fault.name)
                    await asyncio.sleep(
                        fault.seconds + (fault.on_connect if first_on_connection else 0.0)
                    )
                elif isinstance(fault, Invoke):
                    state["faults"].append(fault.name)
                    fault.callback(method, target)
            terminal = next((f for f in faults if isinstance(f, TERMINAL)), None)
            if isinstance(terminal, CdnRedirect) and not (
                method == "GET" and _BLOB_GET.match(path)
            ):
                terminal = None
            if terminal is not None:
                state["faults"].append(terminal.name)
            if isinstance(terminal, ResetRequest):
                length = _body_length(head)
                if isinstance(length, int):
                    state["req"] = await _relay_exact(
                        reader, None, min(terminal.after_bytes, length), self._count_request_bytes
                    )
                _reset(writer)
                raise _Closed
            if isinstance(terminal, Respond):
                state["req"] = await self._drain_request(head, reader)
                state["status"] = terminal.status
                state["resp"] = await self._answer(
                    writer, method, terminal.status, terminal.headers, terminal.body
                )
                return
            if isinstance(terminal, CdnRedirect):
                ticket = uuid.uuid4().hex
                body_faults = tuple(f for f in faults if isinstance(f, BODY_FAULTS))
                with self._lock:
                    self._cdn_tickets[ticket] = (target, head.get("authorization"), body_faults)
                location = f"http://{self.cdn_host}/cdn/{ticket}?X-Amz-Signature={ticket[:16]}"
                state["status"] = 307
                await self._answer(writer, method, 307, (("Location", location),), b"")
                return
            await self._forward(head, method, faults, reader=reader, writer=writer, state=state)
        finally:
            record()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> int:
        out = _Head(f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", list(headers))
        out.set("Content-Length", str(len(body)))
        writer.write(out.encode())
        if method != "HEAD":
            writer.write(body)
        await writer.drain()
        return 0 if method == "HEAD" else len(body)

    async def _forward(
        self,
        head: _Head,
        method: str,
        faults: Sequence[Fault],
        *,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        state: dict[str, Any],
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._up_addr, limit=_HEAD_LIMIT)
        try:
            request = _Head(head.first_line, list(head.headers))
            # A reverse proxy that does not keep the Host: the registry then writes its own
            # address into upload Locations, and the rewrite below has work to do.
            request.set("Host", self.upstream)
            request.set("Connection", "close")
            up_writer.write(request.encode())
            length = _body_length(head)
            if length == "chunked":
                state["req"] = await _relay_chunked(reader, up_writer)
            elif length:
                state["req"] = await _relay_exact(
                    reader, up_writer, length, self._count_request_bytes
                )
            await up_writer.drain()

            response = await _read_head(up_reader)
            if response is None:
                raise _Closed
            status = int(response.first_line.split(" ", 2)[1])
            state["status"] = status
            state["faults"].extend(self._rewrite(response, faults))
            body_length = _body_length(response)
            no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            if no_body:
                writer.write(response.encode())
                await writer.drain()
                return
            if body_length == "chunked":
                writer.write(response.encode())
                state["resp"] = await _relay_chunked(up_reader, writer)
                return
            if body_length is None:
                # Delimited by the end of the connection: so must ours be.
                response.set("Connection", "close")
                writer.write(response.encode())
                while chunk := await up_reader.read(_RELAY_CHUNK):
                    writer.write(chunk)
                    state["resp"] += len(chunk)
                await writer.drain()
                raise _Closed
            writer.write(response.encode())
            await self._relay_body(up_reader, writer, body_length, faults, state)
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    def _rewrite(self, response: _Head, faults: Sequence[Fault]) -> list[str]:
        """Upload Locations to the proxy; header faults applied (their names returned)."""
        applied: list[str] = []
        response.remove("Connection")
        location = response.get("location")
        if location is not None:
            origin = f"http://{self.upstream}"
            if location.startswith(origin):
                response.set("Location", f"http://{self.host}{location[len(origin) :]}")
        for fault in faults:
            if isinstance(fault, AddHeaders):
                for key, value in fault.headers:
                    response.set(key, value)
                applied.append(fault.name)
            elif isinstance(fault, StripHeaders):
                response.remove(*fault.names)
                applied.append(fault.name)
        return applied

    async def _relay_body(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        length: int,
        faults: Sequence[Fault],
        state: dict[str, Any],
    ) -> None:
        """Relay `length` body bytes, breaking them as the body faults say."""
        cut: ResetBody | ShortBody | StallBody | None = None
        flip: int | None = None
        for fault in faults:
            if isinstance(fault, ResetBody | ShortBody | StallBody) and cut is None:
                cut = fault
            elif isinstance(fault, FlipByte) and length > 0:
                flip = fault.offset if fault.offset is not None else length // 2
        limit = length if cut is None else min(cut.after_bytes, max(length - 1, 0))
        if flip is not None and flip < limit:
            state["faults"].append("flip-byte")
        if cut is not None:
            state["faults"].append(cut.name)
        sent = 0
        while sent < length:
            chunk = await up_reader.read(min(_RELAY_CHUNK, length - sent))
            if not chunk:
                raise _Closed
            if flip is not None and sent <= flip < sent + len(chunk):
                pos = flip - sent
                chunk = chunk[:pos] + bytes([chunk[pos] ^ 0x01]) + chunk[pos + 1 :]
            if cut is not None and sent + len(chunk) >= limit:
                chunk = chunk[: limit - sent]
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            state["resp"] = sent
            if cut is not None and sent >= limit:
                break
        if cut is None:
            return
        await _flushed(writer)
        if isinstance(cut, StallBody):
            # Hung: nothing more, ever (stopping the proxy cancels this).
            await asyncio.sleep(3600)
            raise _Closed
        if isinstance(cut, ResetBody):
            await asyncio.sleep(0.02)  # let the client read what was sent before the RST
            _reset(writer)
        else:
            writer.close()
        raise _Closed

    # -- the CDN -----------------------------------------------------------------------------

    async def _cdn_exchange(
        self, head: _Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        started = time.monotonic()
        method, target, _ = head.first_line.split(" ", 2)
        authorization = head.get("authorization")
        state: dict[str, Any] = {"status": None, "req": 0, "resp": 0, "faults": []}
        try:
            await self._drain_request(head, reader, count=False)
            ticket = target.split("?", 1)[0].removeprefix("/cdn/")
            with self._lock:
                found = self._cdn_tickets.get(ticket)
            if authorization is not None:
                # What S3 says to a signed URL that also carries a header.
                body = (
                    b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
                    b"allowed</Message></Error>"
                )
                state["status"] = 400
                await self._answer(writer, method, 400, (("Content-Type", "text/xml"),), body)
                return
            if found is None or method not in ("GET", "HEAD"):
                state["status"] = 404
                await self._answer(writer, method, 404, (), b"no such object")
                return
            blob_target, registry_auth, body_faults = found
            headers = [("Host", self.upstream), ("Accept-Encoding", "identity")]
            if registry_auth is not None:
                headers.append(("Authorization", registry_auth))
            fetch = _Head(f"{method} {blob_target} HTTP/1.1", headers)
            await self._forward(
                fetch, method, body_faults, reader=reader, writer=writer, state=state
            )
        finally:
            self._record(
                ProxyRecord(
                    started,
                    "cdn",
                    method,
                    target,
                    state["status"],
                    tuple(state["faults"]),
                    0,
                    state["resp"],
                    authorization is not None,
                )
            )

    # -- convenience for tests ---------------------------------------------------------------

    def statuses(self, *, method: str = ".*", path: str = ".*") -> list[int | None]:
        return [
            r.status
            for r in self.log()
            if re.fullmatch(method, r.method) and re.search(path, r.bare_path)
        ]

    def __repr__(self) -> str:
        return f"FaultProxy({self.host} -> {self.upstream}, seed={self.seed})"


def header_pairs(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """`{"a": "1"}` → `(("a", "1"),)`: for AddHeaders and Respond."""
    return tuple(headers.items())
