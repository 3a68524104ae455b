"""Registry authentication: credentials as values and the challenge flow (Basic, Bearer)."""

from __future__ import annotations

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


#: Looks up credentials for a registry API host (`host` or `host:port`); None means anonymous.
#: May block (Secret Manager) and may raise CredentialError; called only when a registry asks.
CredentialProvider = Callable[[str], Credentials | None]
