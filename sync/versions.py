"""Version-like tags and their order, for tag discovery; pure (no I/O, no registry knowledge).

A tag is version-like when it fully matches `v?MAJOR[.MINOR[.PATCH[.BUILD]]][-PRERELEASE]`:
one to four dot-separated runs of ASCII digits, optionally after a lowercase `v`, optionally
followed by `-` and a semver pre-release (dot-separated identifiers of `[0-9A-Za-z-]`, none
empty). So `v2.15.0`, `1.3`, `1.0-rc.1` and `1.25-alpine` are versions; `latest`, `V1.0`,
`sha256-<hex>.sig`, `1.0.0.0.0`, `1.a`, `1.0-` and `1.0-rc_1` are not. Tags longer than 128
characters (the distribution spec's limit) are never versions.

Order ("precedence"), as in DESIGN.md: numeric parts compare as numbers, missing parts count
as 0 (`1.0 == 1.0.0`), a pre-release sorts before its release, and pre-release identifiers
follow semver: numeric identifiers compare as numbers and below alphanumeric ones, which compare
in ASCII order, and with an equal prefix more identifiers win (`rc.1 < rc.1.1`). Leading zeros
are accepted and do not count (`1.01` has the precedence of `1.1`). Tags of equal precedence are
listed by ascending tag string in newest-first order, so every ordering here is total and
deterministic: `1.0`, `1.0.0`, `v1.0` is the newest-first order of three equal versions.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

__all__ = [
    "Version",
    "discovery_candidates",
    "parse_version",
    "select_new_tags",
]

_MAX_TAG_LENGTH = 128
_VERSION = re.compile(
    r"(?P<v>v?)"
    r"(?P<numbers>[0-9]+(?:\.[0-9]+){0,3})"
    r"(?:-(?P<prerelease>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")

#: One pre-release identifier's sort key: (0, number) for numeric ones, (1, text) otherwise,
#: so numeric identifiers sort below alphanumeric ones (semver 11.4.3).
_IdentifierKey = tuple[int, int] | tuple[int, str]
#: The full precedence key: four release numbers, then (1,) for a release or (0, identifiers...)
#: for a pre-release, so a pre-release sorts before its release and longer runs of identifiers
#: after their prefixes (tuple comparison does exactly semver 11.4.4).
Precedence = tuple[tuple[int, int, int, int], tuple[int | _IdentifierKey, ...]]


@dataclass(frozen=True, slots=True)
class Version:
    """A version-like tag: the tag itself plus its parsed parts. Build with `parse_version`.

    Ordering: `a < b` when `a` sorts after `b` in newest-first order, that is when `a` has lower
    precedence, or equal precedence and a greater tag string. Hence `sorted(versions,
    reverse=True)` is the discovery order (newest first, ties by ascending tag). Two Versions
    are equal only when their tags are equal; compare `.precedence` for "same version".
    """

    tag: str
    #: The numeric parts as written (one to four of them).
    numbers: tuple[int, ...]
    #: The pre-release identifiers as written; empty for a release.
    prerelease: tuple[str, ...] = ()
    precedence: Precedence = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.numbers) <= 4 or any(n < 0 for n in self.numbers):
            raise ValueError(f"a version has one to four non-negative numbers: {self.numbers}")
        if not all(_IDENTIFIER.fullmatch(ident) for ident in self.prerelease):
            raise ValueError(f"not semver pre-release identifiers: {self.prerelease}")
        padded = (*self.numbers, 0, 0, 0)
        release = (padded[0], padded[1], padded[2], padded[3])
        pre: tuple[int | _IdentifierKey, ...]
        if self.prerelease:
            pre = (0, *(_identifier_key(ident) for ident in self.prerelease))
        else:
            pre = (1,)
        object.__setattr__(self, "precedence", (release, pre))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        if self.precedence != other.precedence:
            return self.precedence < other.precedence
        return self.tag > other.tag

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self == other or self < other

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return other < self

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self == other or other < self


def _identifier_key(identifier: str) -> _IdentifierKey:
    if identifier.isascii() and identifier.isdigit():
        return (0, int(identifier))
    return (1, identifier)


def parse_version(tag: str) -> Version | None:
    """The tag as a Version when it is version-like (see the module docstring), else None."""
    if len(tag) > _MAX_TAG_LENGTH:
        return None
    match = _VERSION.fullmatch(tag)
    if match is None:
        return None
    numbers = tuple(int(part) for part in match["numbers"].split("."))
    prerelease = tuple(match["prerelease"].split(".")) if match["prerelease"] else ()
    return Version(tag=tag, numbers=numbers, prerelease=prerelease)


def discovery_candidates(
    tags: Iterable[str], *, pattern: str | re.Pattern[str] | None = None
) -> list[Version]:
    """The version-like tags that fully match `pattern` (when given), newest first, no repeats.

    The pattern is matched against the whole tag as listed (a `v` prefix included).
    A string pattern that is not a valid regex raises `re.error`.
    """
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    found: dict[str, Version] = {}
    for tag in tags:
        if tag in found or (regex is not None and regex.fullmatch(tag) is None):
            continue
        version = parse_version(tag)
        if version is not None:
            found[tag] = version
    return sorted(found.values(), reverse=True)


def select_new_tags(
    tags: Iterable[str],
    *,
    limit: int,
    pattern: str | re.Pattern[str] | None,
    exclude: Collection[str],
) -> list[str]:
    """The discovered tags a sync run mirrors, newest first (DESIGN.md "What a run does").

    Takes the newest `limit` candidates FIRST and then drops the configured tags (`exclude`):
    the window is the newest `max_tags_to_check` upstream versions, and configured tags inside
    it use up places. So the result can be shorter than `limit`, and a run never reaches back
    past the window to older versions. `limit` 0 selects nothing.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    window = discovery_candidates(tags, pattern=pattern)[:limit]
    return [version.tag for version in window if version.tag not in exclude]
