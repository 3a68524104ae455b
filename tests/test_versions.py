"""Version-like tags: what parses, how they order, and which tags discovery picks."""

from __future__ import annotations

import functools
import itertools
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.versions import (
    Version,
    discovery_candidates,
    parse_version,
    select_new_tags,
)

# --- parsing -------------------------------------------------------------------------------

PARSES = [
    # (tag, numbers, prerelease)
    ("1", (1,), ()),
    ("1.3", (1, 3), ()),
    ("1.0", (1, 0), ()),
    ("v2.15.0", (2, 15, 0), ()),
    ("1.2.3.4", (1, 2, 3, 4), ()),
    ("v0.0.0.0", (0, 0, 0, 0), ()),
    ("1.0-rc.1", (1, 0), ("rc", "1")),
    ("1.0.0-alpha", (1, 0, 0), ("alpha",)),
    ("1.0.0-0.3.7", (1, 0, 0), ("0", "3", "7")),
    ("1.0.0-x.7.z.92", (1, 0, 0), ("x", "7", "z", "92")),
    ("1.0.0-x-y-z.--", (1, 0, 0), ("x-y-z", "--")),
    ("1.25-alpine", (1, 25), ("alpine",)),
    ("2024.01.15", (2024, 1, 15), ()),
    ("007", (7,), ()),
    ("1.2.3.4-RC1", (1, 2, 3, 4), ("RC1",)),
]

NOT_VERSIONS = [
    "latest",
    "main",
    "v",
    "",
    "sha256-" + "ab" * 32 + ".sig",
    "sha256-" + "ab" * 32 + ".att",
    "sha256-" + "ab" * 32 + ".sbom",
    "sha256-" + "ab" * 32,  # the referrers tag schema's fallback tag
    "1.0.0.0.0",
    "1.a",
    "a.1",
    "V1.0",
    "vv1.0",
    "1.",
    ".1",
    "1..0",
    "1.0-",
    "1.0-rc.",
    "1.0-rc..1",
    "1.0-rc_1",
    "1.0_rc1",
    "1.0+build.5",
    "1.0 ",
    " 1.0",
    "1.0\n",
    "1.\u0661",  # a non-ASCII digit
    "1.0-\u00e9",
    "1" * 129,  # longer than any tag may be
]


@pytest.mark.parametrize(("tag", "numbers", "prerelease"), PARSES, ids=[c[0] for c in PARSES])
def test_version_like_tag_parses_into_its_parts(
    tag: str, numbers: tuple[int, ...], prerelease: tuple[str, ...]
) -> None:
    version = parse_version(tag)
    assert version is not None, f"{tag!r} should be version-like"
    assert (version.tag, version.numbers, version.prerelease) == (tag, numbers, prerelease)


@pytest.mark.parametrize("tag", NOT_VERSIONS, ids=lambda t: repr(t)[:40])
def test_tag_that_is_not_version_like_parses_to_none(tag: str) -> None:
    assert parse_version(tag) is None, f"{tag!r} must not count as a version"


def test_longest_allowed_tag_still_parses() -> None:
    tag = "1." + "9" * 126
    assert len(tag) == 128
    assert parse_version(tag) is not None


def test_version_constructor_rejects_impossible_parts() -> None:
    with pytest.raises(ValueError, match="one to four"):
        Version(tag="x", numbers=())
    with pytest.raises(ValueError, match="one to four"):
        Version(tag="x", numbers=(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="pre-release"):
        Version(tag="x", numbers=(1,), prerelease=("",))


# --- ordering ------------------------------------------------------------------------------


def _v(tag: str) -> Version:
    version = parse_version(tag)
    assert version is not None, tag
    return version


NEWER_OLDER = [
    ("10.0", "9.9"),
    ("1.10", "1.9"),
    ("1.0.10", "1.0.9"),
    ("2", "1.99.99.99"),
    ("1.0.0.1", "1.0.0"),
    ("1.0.0", "1.0.0-rc.1"),
    ("1.0", "1.0.0-rc.1"),
    ("1.0.0-rc.10", "1.0.0-rc.2"),
    ("1.0.0-beta", "1.0.0-alpha"),
    ("1.0.0-alpha.1", "1.0.0-alpha"),
    ("1.0.0-alpha.beta", "1.0.0-alpha.1"),
    ("1.0.0-rc.1", "1.0.0-beta.11"),
    ("1.0.0-beta.11", "1.0.0-beta.2"),
    ("1.0.0-a", "1.0.0-999"),
    ("1.0.0-a", "1.0.0-Z"),  # ASCII order: uppercase before lowercase
    ("1.0.0-rc.1.1", "1.0.0-rc.1"),
    ("1.0.1-alpha", "1.0.0"),
    ("v2.0", "1.9"),
    ("2.0", "v1.9"),
    ("1.10", "v1.9"),
]


@pytest.mark.parametrize(("newer", "older"), NEWER_OLDER, ids=[f"{a}>{b}" for a, b in NEWER_OLDER])
def test_newer_version_has_higher_precedence(newer: str, older: str) -> None:
    assert _v(newer).precedence > _v(older).precedence
    assert _v(older) < _v(newer)
    assert _v(newer) > _v(older)
    assert sorted([_v(older), _v(newer)], reverse=True) == [_v(newer), _v(older)]


EQUAL = [
    ("1.0", "1.0.0"),
    ("1", "1.0.0.0"),
    ("1.0", "v1.0"),
    ("1.01", "1.1"),
    ("1.0-rc.01", "1.0-rc.1"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL, ids=[f"{a}=={b}" for a, b in EQUAL])
def test_equal_versions_have_equal_precedence_and_tie_by_ascending_tag(a: str, b: str) -> None:
    assert _v(a).precedence == _v(b).precedence
    assert _v(a) != _v(b), "different tags are different Versions"
    first, second = sorted([a, b])
    assert [v.tag for v in sorted([_v(b), _v(a)], reverse=True)] == [first, second]
    assert [v.tag for v in discovery_candidates([second, first])] == [first, second]


def test_equal_versions_list_by_ascending_tag_string_in_newest_first_order() -> None:
    assert [v.tag for v in discovery_candidates(["v1.0", "1.0.0", "1.0", "1.1"])] == [
        "1.1",
        "1.0",
        "1.0.0",
        "v1.0",
    ]


def test_versions_compare_only_with_versions() -> None:
    with pytest.raises(TypeError):
        _ = _v("1.0") < "1.1"


def _many_tags_in_version_order() -> list[str]:
    """Tags newest first, built in that order by hand, so the test does not trust the code."""
    tags: list[str] = []
    for major in (10, 9, 2, 1):
        for minor in range(12, -1, -1):
            for patch in (10, 2, 1, 0):
                prefix = "v" if (major + minor) % 5 == 0 else ""
                tags.append(f"{prefix}{major}.{minor}.{patch}")
            # pre-releases of X.Y.0, newest first; all older than X.Y.0, newer than X.(Y-1).10
            for pre in ("rc.10", "rc.2", "rc.1", "beta.11", "beta.2", "alpha.1", "alpha", "1"):
                tags.append(f"{major}.{minor}.0-{pre}")
    return tags


def test_hundreds_of_tags_sort_by_version_not_alphabetically() -> None:
    expected = _many_tags_in_version_order()
    assert len(expected) >= 100
    alphabetical = sorted(expected)
    assert alphabetical != expected, "the fixture must disagree with alphabetical order"
    assert alphabetical[0] != expected[0]

    assert [v.tag for v in discovery_candidates(alphabetical)] == expected
    shuffled = expected[:]
    random.Random(7).shuffle(shuffled)
    assert [v.tag for v in discovery_candidates(shuffled)] == expected
    assert select_new_tags(alphabetical, limit=5, pattern=None, exclude=()) == expected[:5]


def test_candidates_skip_non_versions_and_repeats() -> None:
    tags = ["latest", "1.0", "sha256-" + "0" * 64 + ".sig", "1.0", "v2", "main"]
    assert [v.tag for v in discovery_candidates(tags)] == ["v2", "1.0"]


# --- selection -----------------------------------------------------------------------------

UPSTREAM = ["latest", "1.0", "1.1", "1.2", "1.3", "1.4", "1.5-rc.1", "sha256-ab.sig", "v0.9"]


def test_select_takes_the_window_before_dropping_configured_tags() -> None:
    # Newest first: 1.5-rc.1, 1.4, 1.3, 1.2, 1.1, 1.0, v0.9. The window of 3 is
    # 1.5-rc.1, 1.4, 1.3; 1.4 is configured, so only two tags are mirrored.
    assert select_new_tags(UPSTREAM, limit=3, pattern=None, exclude={"1.4", "latest"}) == [
        "1.5-rc.1",
        "1.3",
    ]


def test_limit_zero_selects_nothing_and_negative_limit_is_an_error() -> None:
    assert select_new_tags(UPSTREAM, limit=0, pattern=None, exclude=()) == []
    with pytest.raises(ValueError, match="negative"):
        select_new_tags(UPSTREAM, limit=-1, pattern=None, exclude=())


def test_pattern_must_match_the_whole_tag() -> None:
    assert select_new_tags(UPSTREAM, limit=10, pattern=r"1\.[0-2]", exclude=()) == [
        "1.2",
        "1.1",
        "1.0",
    ]
    # `1` alone would match a prefix of every 1.x tag; a full match requires the whole tag.
    assert select_new_tags(UPSTREAM, limit=10, pattern="1", exclude=()) == []
    assert select_new_tags(UPSTREAM, limit=10, pattern=re.compile(r"v.*"), exclude=()) == ["v0.9"]


def test_pattern_cannot_make_a_non_version_a_candidate() -> None:
    assert select_new_tags(UPSTREAM, limit=10, pattern=r".*", exclude=()) == [
        "1.5-rc.1",
        "1.4",
        "1.3",
        "1.2",
        "1.1",
        "1.0",
        "v0.9",
    ]
    assert select_new_tags(["latest"], limit=10, pattern="latest", exclude=()) == []


def test_pattern_applies_before_the_window() -> None:
    # Excluding pre-releases by pattern frees their place in the window.
    no_pre = r"v?[0-9.]+"
    assert select_new_tags(UPSTREAM, limit=2, pattern=no_pre, exclude=()) == ["1.4", "1.3"]


def test_invalid_pattern_string_raises_re_error() -> None:
    with pytest.raises(re.error):
        select_new_tags(UPSTREAM, limit=1, pattern="(", exclude=())


# --- properties ----------------------------------------------------------------------------

_numbers = st.lists(
    st.one_of(st.integers(0, 12).map(str), st.sampled_from(["00", "01", "010", "100"])),
    min_size=1,
    max_size=4,
)
_identifier = st.sampled_from(["alpha", "beta", "rc", "RC", "0", "1", "2", "10", "01", "x-y", "-"])
_version_tags = st.builds(
    lambda v, numbers, pre: v + ".".join(numbers) + ("-" + ".".join(pre) if pre else ""),
    st.sampled_from(["", "v"]),
    _numbers,
    st.lists(_identifier, max_size=3),
)
_any_tags = st.one_of(
    _version_tags,
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", fullmatch=True),
    st.sampled_from(["latest", "sha256-" + "a" * 64 + ".sig", "1.0.0.0.0", "1.a"]),
)
_versions = _version_tags.map(_v)


def _semver_compare(a: str, b: str) -> int:
    """An independent oracle: precedence of two version tags per DESIGN.md, as -1/0/1."""

    def split(tag: str) -> tuple[list[int], list[str] | None]:
        core, _, pre = tag.removeprefix("v").partition("-")
        numbers = [int(n) for n in core.split(".")]
        return numbers + [0] * (4 - len(numbers)), (pre.split(".") if pre else None)

    def cmp(x: list[int] | str | int | bool, y: list[int] | str | int | bool) -> int:
        return int(x > y) - int(x < y)  # type: ignore[operator]

    (na, pa), (nb, pb) = split(a), split(b)
    if na != nb:
        return cmp(na, nb)
    if pa is None or pb is None:
        return cmp(pa is None, pb is None)
    for x, y in zip(pa, pb, strict=False):
        if x.isdigit() and y.isdigit():
            result = cmp(int(x), int(y))
        elif x.isdigit() or y.isdigit():
            result = -1 if x.isdigit() else 1
        else:
            result = cmp(x, y)
        if result:
            return result
    return cmp(len(pa), len(pb))


@given(_version_tags, _version_tags)
def test_precedence_agrees_with_an_independent_semver_oracle(a: str, b: str) -> None:
    expected = _semver_compare(a, b)
    pa, pb = _v(a).precedence, _v(b).precedence
    assert ((pa > pb) - (pa < pb)) == expected, f"{a} vs {b}"


@given(_versions, _versions, _versions)
def test_version_order_is_a_total_order_consistent_with_precedence(
    a: Version, b: Version, c: Version
) -> None:
    # Exactly one of <, ==, > holds.
    assert [a < b, a == b, a > b].count(True) == 1
    assert (a <= b) == (a < b or a == b)
    assert (a >= b) == (a > b or a == b)
    # Transitivity.
    if a < b < c:
        assert a < c
    # Consistent with the key: higher precedence is always greater; equal precedence ties by
    # tag, the smaller tag being the greater Version (it comes first in newest-first order).
    if a.precedence != b.precedence:
        assert (a < b) == (a.precedence < b.precedence)
    elif a.tag != b.tag:
        assert (a < b) == (a.tag > b.tag)


@given(st.lists(_any_tags, max_size=40), st.randoms(use_true_random=False))
def test_candidates_are_newest_first_and_independent_of_input_order(
    tags: list[str], rnd: random.Random
) -> None:
    candidates = discovery_candidates(tags)
    for newer, older in itertools.pairwise(candidates):
        assert newer.precedence >= older.precedence
        if newer.precedence == older.precedence:
            assert newer.tag < older.tag
    assert {v.tag for v in candidates} == {t for t in tags if parse_version(t) is not None}
    shuffled = tags[:]
    rnd.shuffle(shuffled)
    assert discovery_candidates(shuffled) == candidates

    def newest_first(x: str, y: str) -> int:
        return _semver_compare(y, x) or int(x > y) - int(x < y)

    oracle = sorted({v.tag for v in candidates}, key=functools.cmp_to_key(newest_first))
    assert [v.tag for v in candidates] == oracle


@given(
    st.lists(_any_tags, max_size=40),
    st.integers(0, 15),
    st.sets(_any_tags, max_size=10),
    st.sampled_from([None, r"v.*", r"[0-9.]+", r".*-.*"]),
)
def test_select_returns_only_unconfigured_versions_within_the_window(
    tags: list[str], limit: int, exclude: set[str], pattern: str | None
) -> None:
    exclude |= set(tags[:3])  # make sure some excluded tags are really listed
    selected = select_new_tags(tags, limit=limit, pattern=pattern, exclude=exclude)
    assert len(selected) <= limit
    assert len(set(selected)) == len(selected)
    for tag in selected:
        assert parse_version(tag) is not None, f"{tag!r} is not a version"
        assert tag not in exclude, f"{tag!r} is configured"
        assert pattern is None or re.fullmatch(pattern, tag)
    window = [v.tag for v in discovery_candidates(tags, pattern=pattern)][:limit]
    assert selected == [t for t in window if t not in exclude]
