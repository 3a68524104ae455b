"""Faults a test injects into registry traffic, named once for every injector.

Owns the vocabulary (an error answer, a body reset or cut short, a flipped byte, a CDN redirect,
latency, header changes, a callback) and the rules that say when one fires (method, path,
probability, how many times, per key). The fault proxy (`tests.bed.proxy`) applies them on a real
socket in front of a real registry; the in-memory registry (`tests.fake_registry`) applies the
same rules to `httpx.MockTransport` traffic. It knows nothing about either.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "AddHeaders",
    "CdnRedirect",
    "Delay",
    "Fault",
    "FaultInjector",
    "FlipByte",
    "Invoke",
    "KeyFunction",
    "ResetBody",
    "ResetRequest",
    "Respond",
    "Rule",
    "Rules",
    "ShortBody",
    "StallBody",
    "StripHeaders",
    "by_digest",
    "by_path",
    "too_many_requests",
    "unavailable",
]

# -- faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """Answer this instead of the registry (the request body is read and dropped)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"status-{self.status}"


@dataclass(frozen=True)
class ResetBody:
    """Relay the response head and `after_bytes` of its body, then reset the connection (RST)."""

    after_bytes: int
    name: str = "reset"


@dataclass(frozen=True)
class ShortBody:
    """Relay the head (its full Content-Length) and `after_bytes` of the body, then close (FIN):
    a body shorter than it said."""

    after_bytes: int
    name: str = "short-body"


@dataclass(frozen=True)
class StallBody:
    """Relay the head and `after_bytes` of the body, then send nothing more (a hung transfer),
    holding the connection open until the client goes away or the proxy stops."""

    after_bytes: int
    name: str = "stall-body"


@dataclass(frozen=True)
class FlipByte:
    """Flip one bit of the body byte at `offset` (default: the middle)."""

    offset: int | None = None
    name: str = "flip-byte"


@dataclass(frozen=True)
class ResetRequest:
    """Read `after_bytes` of the request body (an upload), then reset the client connection."""

    after_bytes: int
    name: str = "reset-request"


@dataclass(frozen=True)
class CdnRedirect:
    """Answer a blob GET with 307 to the CDN listener, which serves the blob without
    `Authorization` and refuses (400) any request that carries one."""

    name: str = "cdn-redirect"


@dataclass(frozen=True)
class Delay:
    """Wait before forwarding; the first request on a new connection waits `on_connect` more
    (the fault proxy only: a distant registry's TCP handshake)."""

    seconds: float
    on_connect: float = 0.0
    name: str = "latency"


@dataclass(frozen=True)
class AddHeaders:
    """Add (or replace) headers on the registry's answer."""

    headers: tuple[tuple[str, str], ...]
    name: str = "add-headers"


@dataclass(frozen=True)
class StripHeaders:
    """Remove headers (case-insensitive names) from the registry's answer."""

    names: tuple[str, ...]
    name: str = "strip-headers"


@dataclass(frozen=True)
class Invoke:
    """Call `callback(method, target)` in the proxy's thread before forwarding (to kill a
    client at a chosen request, say); then forward as usual. If the callback raises
    ConnectionError, the connection is dropped instead and nothing is forwarded."""

    callback: Callable[[str, str], None]
    name: str = "invoke"


Fault: TypeAlias = (
    Respond
    | ResetBody
    | ShortBody
    | StallBody
    | FlipByte
    | ResetRequest
    | CdnRedirect
    | Delay
    | AddHeaders
    | StripHeaders
    | Invoke
)


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def too_many_requests(retry_after: str | float | None = 1) -> Respond:
    """Docker Hub's 429 (TOOMANYREQUESTS), with `Retry-After` in seconds or an HTTP date."""
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    if retry_after is not None:
        value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        headers.append(("Retry-After", value))
    body = _error_body("TOOMANYREQUESTS", "You have reached your pull rate limit (injected).")
    return Respond(429, tuple(headers), body, label="429")


def unavailable(retry_after: str | float | None = None) -> Respond:
    """A 503 with the registry's error body (code UNAVAILABLE), with `Retry-After` if given."""
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    if retry_after is not None:
        value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        headers.append(("Retry-After", value))
    body = _error_body("UNAVAILABLE", "service unavailable (injected)")
    return Respond(503, tuple(headers), body, label="503")


#: What `per_key` counts by: (method, request target with query) -> key.
KeyFunction: TypeAlias = Callable[[str, str], str]
_DIGEST_IN_TARGET = re.compile(r"(?:/blobs/|[?&]digest=)(sha256(?::|%3A)[0-9a-f]{64})")


def by_path(method: str, target: str) -> str:
    """The default key: method and path without query."""
    return f"{method} {target.split('?', 1)[0]}"


def by_digest(method: str, target: str) -> str:
    """Method and the blob digest the request is about (the `digest=` of an upload's PUT, whose
    path changes with every upload session), else the path."""
    found = _DIGEST_IN_TARGET.search(target)
    if found is None:
        return by_path(method, target)
    return f"{method} {found.group(1).replace('%3A', ':')}"


@dataclass(eq=False)
class Rule:
    """When a fault fires: method (regex, full match), path (regex, searched in the path without
    its query), then `probability`, at most `times` in all, at most `per_key` times per key
    (`key(method, target)`, by default method and path). Counters are kept by the proxy under
    its lock."""

    fault: Fault
    method: str = ".*"
    path: str = ".*"
    probability: float = 1.0
    times: int | None = None
    per_key: int | None = None
    key: KeyFunction = by_path
    matched: int = 0
    fired: int = 0
    _per_key: dict[str, int] = field(default_factory=dict, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return bool(re.fullmatch(self.method, method)) and bool(re.search(self.path, path))


#: Faults that answer in place of the registry: the first that fires wins.
TERMINAL = (Respond, CdnRedirect, ResetRequest)
#: Faults of which at most one fires per request, per group.
EXCLUSIVE = (TERMINAL, (ResetBody, ShortBody, StallBody))
#: Faults applied to a response body (on the CDN too, for a redirected blob).
BODY_FAULTS = (ResetBody, ShortBody, StallBody, FlipByte)


class Rules:
    """An ordered list of rules and the seeded generator their probabilities draw from. Not
    thread-safe: a caller on several threads holds its own lock around every use."""

    def __init__(self, rules: Sequence[Rule] = (), seed: int | str = 0) -> None:
        self.rules: list[Rule] = list(rules)
        self._random = random.Random(seed)

    def choose(self, method: str, target: str) -> list[Fault]:
        """The faults that fire for this request (`target` is the path with its query), their
        counters advanced: at most one answer, and at most one way to cut the body short."""
        path = target.split("?", 1)[0]
        chosen: list[Fault] = []
        taken: set[tuple[type, ...]] = set()
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            rule.matched += 1
            if rule.times is not None and rule.fired >= rule.times:
                continue
            key = rule.key(method, target)
            if rule.per_key is not None and rule._per_key.get(key, 0) >= rule.per_key:
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            group = next((g for g in EXCLUSIVE if isinstance(rule.fault, g)), None)
            if group is not None:
                if group in taken:
                    continue
                taken.add(group)
            rule.fired += 1
            rule._per_key[key] = rule._per_key.get(key, 0) + 1
            chosen.append(rule.fault)
        return chosen


class FaultInjector:
    """What takes rules: the fault proxy and the in-memory registry alike. A subclass sets
    `_rules`, and overrides `_rules_lock` when rules are read on another thread."""

    _rules: Rules

    def _rules_lock(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def add_rule(
        self,
        fault: Fault,
        *,
        method: str = ".*",
        path: str = ".*",
        probability: float = 1.0,
        times: int | None = None,
        per_path: int | None = None,
        per_key: int | None = None,
        key: KeyFunction = by_path,
    ) -> Rule:
        """Add a rule (checked after the ones already there); returns it, counters included.
        `per_path=N` is `per_key=N` with the default key."""
        if per_path is not None:
            per_key, key = per_path, by_path
        rule = Rule(fault, method, path, probability, times, per_key, key)
        with self._rules_lock():
            self._rules.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._rules_lock():
            self._rules.rules.clear()

    def _choose(self, method: str, target: str) -> list[Fault]:
        with self._rules_lock():
            return self._rules.choose(method, target)
