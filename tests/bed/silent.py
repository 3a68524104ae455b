"""Hosts that break before HTTP: one that accepts TCP connections and never answers, a port
where nothing listens, and a host name that does not resolve (simulated in this process: no DNS
query leaves the machine)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["UNRESOLVABLE", "SilentServer", "mirror_config", "refused_host", "unresolvable"]

#: A name in the `.invalid` TLD (RFC 6761: never resolves), answered here, never asked.
UNRESOLVABLE = "registry.invalid"


class SilentServer:
    """Accepts TCP connections on loopback and never answers (a black-holed load balancer).
    `accepted_at` holds the `time.monotonic()` of every connection accepted."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self._sock.settimeout(0.1)
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.accepted_at: list[float] = []
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        return len(self.accepted_at)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted_at.append(time.monotonic())
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused_host() -> str:
    """`127.0.0.1:PORT` where nothing listens (a port just bound and closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def unresolvable() -> Iterator[list[str]]:
    """While inside, `socket.getaddrinfo` fails for UNRESOLVABLE (EAI_NONAME) without asking
    any resolver; other names resolve as usual. Yields the list of lookups it refused."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name == UNRESOLVABLE:
            asked.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield asked
    finally:
        socket.getaddrinfo = real


def mirror_config(
    upstream: str, target: str, images: int, tags: int, *, discover: bool = True
) -> dict[str, Any]:
    """A config mirroring `images` images (`istio/appN` to `sail-dev/appN`) of `tags` tags each
    (`1.0`, `1.1`, ...) from `upstream` to `target`, both over plain HTTP."""
    return {
        "images": [
            {
                "name": f"app{i}",
                "upstream": f"{upstream}/istio/app{i}",
                "target": f"{target}/sail-dev/app{i}",
                "tags": [f"1.{t}" for t in range(tags)],
            }
            for i in range(images)
        ],
        "check_new_tags": discover,
        "registries": {upstream: {"tls": "disabled"}, target: {"tls": "disabled"}},
    }
