"""Properties of `parse_reference`: printing and re-parsing is stable, and no text makes it raise
anything but InvalidReferenceError.

The table of named cases lives in tests/test_reference.py; here hypothesis builds references from
their grammar (hosts, ports, IPv6, path components, tags, digests) and throws arbitrary and
reference-shaped text at the parser.
"""

from __future__ import annotations

import os
import string

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sync.errors import InvalidReferenceError
from sync.reference import DOCKER_HUB, Reference, parse_reference

#: `REFERENCE_EXAMPLES=20000 pytest tests/test_reference_properties.py` searches harder.
SETTINGS = settings(
    max_examples=int(os.environ.get("REFERENCE_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- the grammar, as strategies ----------------------------------------------------------------

_LOWER_DIGITS = string.ascii_lowercase + string.digits
_alnum = st.text(_LOWER_DIGITS, min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


@st.composite
def host_labels(draw: st.DrawFn) -> str:
    alphabet = string.ascii_letters + string.digits
    first = draw(st.text(alphabet, min_size=1, max_size=1))
    middle = draw(st.text(alphabet + "-", max_size=5))
    last = draw(st.text(alphabet, min_size=1, max_size=1)) if middle else ""
    return first + middle + last


@st.composite
def registries(draw: st.DrawFn) -> str:
    """A registry part that is recognised as one: a dotted domain, localhost, an IPv4 or IPv6
    address, each with or without a port."""
    kind = draw(st.sampled_from(["domain", "localhost", "ipv4", "ipv6"]))
    if kind == "domain":
        host = ".".join(draw(st.lists(host_labels(), min_size=2, max_size=3)))
    elif kind == "localhost":
        host = "localhost"
    elif kind == "ipv4":
        host = ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
    else:
        groups = draw(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=3))
        host = "[" + "::".join(f"{g:x}" for g in groups) + "]"
    if kind == "localhost" or draw(st.booleans()):
        host += f":{draw(st.integers(1, 65535))}"
    return host


tags = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def reference_texts(draw: st.DrawFn) -> tuple[str, str | None, str, str | None, str | None]:
    """(text, registry or None for Docker Hub, path, tag, digest) of a valid reference."""
    registry = draw(st.none() | registries())
    path = "/".join(draw(st.lists(path_components(), min_size=1, max_size=3)))
    first = path.split("/", 1)[0]
    # Docker's rule: without a registry, a first component with "." (or "localhost") before
    # another component would be a host.
    assume(registry is not None or "/" not in path or ("." not in first and first != "localhost"))
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    text = path if registry is None else f"{registry}/{path}"
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    return text, registry, path, tag, digest


# Text that looks like references: the characters that matter, and pieces that steer into the
# parser's branches (ports, aliases, digests, IPv6 brackets).
_PIECES = st.sampled_from(
    [
        "docker.io/",
        "index.docker.io/",
        "registry-1.docker.io/",
        "localhost",
        "quay.io",
        ":5000",
        ":0",
        ":65536",
        ":99999",
        "@sha256:",
        "@sha512:",
        "sha256:",
        "[::1]",
        "[",
        "]",
        "/",
        ":",
        "@",
        ".",
        "__",
        "--",
        "library/",
        "0" * 64,
        "a" * 64,
        "A",
        "://",
        " ",
        "\t",
        "é",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not [0-9]
    ]
)
reference_shaped = st.lists(
    st.one_of(_PIECES, st.text("abcXYZ019._-:/@[]", max_size=6)), max_size=12
).map("".join)


def _parse_or_none(text: str) -> Reference | None:
    try:
        return parse_reference(text)
    except InvalidReferenceError:
        return None


# -- properties --------------------------------------------------------------------------------


@SETTINGS
@given(reference_texts())
def test_every_reference_built_from_the_grammar_parses_to_its_parts(
    case: tuple[str, str | None, str, str | None, str | None],
) -> None:
    text, registry, path, tag, digest = case
    if len(f"{registry or DOCKER_HUB}/{path}") > 200:
        return  # the 255-character limit is covered by the named cases
    ref = parse_reference(text)
    if registry is None:
        assert ref.registry == DOCKER_HUB
        assert ref.repository == (path if "/" in path else f"library/{path}")
    else:
        assert ref.registry == registry.lower()
        assert ref.repository == path
    assert (ref.tag, ref.digest) == (tag, digest)


@SETTINGS
@given(reference_texts())
def test_printing_and_reparsing_a_valid_reference_is_stable(
    case: tuple[str, str | None, str, str | None, str | None],
) -> None:
    ref = _parse_or_none(case[0])
    if ref is None:
        return  # only over-long names are refused here
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)
    assert again.host == ref.host and again.identifier == ref.identifier


@SETTINGS
@given(st.one_of(st.text(), reference_shaped))
@example("docker.io/nginx")
@example("localhost:5000")
@example("[::1]:5000/x:y@sha256:" + "0" * 64)
@example("a.b:\u0661/x")
@example("Quay.IO/Sail-dev/x")
def test_any_text_either_parses_stably_or_raises_invalid_reference_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReferenceError as exc:
        assert str(exc), "an error without a message"
        return
    assert isinstance(ref, Reference)
    again = parse_reference(str(ref))
    assert again == ref, f"{text!r} -> {str(ref)!r} -> {str(again)!r}"


@SETTINGS
@given(st.one_of(st.text(), reference_shaped), st.one_of(st.text(max_size=10), tags))
def test_default_tag_and_with_tag_never_raise_anything_else(text: str, tag: str) -> None:
    try:
        ref = parse_reference(text, default_tag="latest")
    except InvalidReferenceError:
        return
    assert ref.tag is not None or ref.digest is not None
    try:
        tagged = ref.with_tag(tag)
    except InvalidReferenceError:
        return
    assert tagged.tag == tag and tagged.digest is None
    assert parse_reference(str(tagged)) == tagged


@SETTINGS
@given(reference_texts(), digests)
def test_with_digest_round_trips(
    case: tuple[str, str | None, str, str | None, str | None], digest: str
) -> None:
    ref = _parse_or_none(case[0])
    if ref is None:
        return
    pinned = ref.with_digest(digest)
    assert pinned.digest == digest and pinned.identifier == digest
    assert parse_reference(str(pinned)) == pinned
