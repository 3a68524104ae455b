"""A registry login as a value: the credentials for one registry, and who looks them up.

A leaf: no I/O, no HTTP. The config layer resolves credentials (`sync.credentials`) and the
registry layer presents them (`sync.auth`); both import them from here, so resolving them never
pulls in the HTTP stack.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CredentialProvider", "Credentials"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password (or token) for one registry. Never printed."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


#: Looks up credentials for a registry API host (`host` or `host:port`); None means anonymous.
#: May block (Secret Manager) and may raise CredentialError; called only when a registry asks.
CredentialProvider = Callable[[str], Credentials | None]
