"""Image references: a table of named good and bad cases, and the value's behaviour."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest

from sync.errors import InvalidReferenceError
from sync.reference import DOCKER_HUB, DOCKER_HUB_API_HOST, Reference, api_host, parse_reference

D256 = "sha256:" + "0123456789abcdef" * 4
D512 = "sha512:" + "0123456789abcdef" * 8


class Good(NamedTuple):
    text: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None
    host: str
    string: str


GOOD = {
    "hub one-part name gets library/": Good(
        "nginx", "docker.io", "library/nginx", None, None, DOCKER_HUB_API_HOST,
        "docker.io/library/nginx",
    ),
    "hub one-part name with tag": Good(
        "nginx:1.25", "docker.io", "library/nginx", "1.25", None, DOCKER_HUB_API_HOST,
        "docker.io/library/nginx:1.25",
    ),
    "hub explicit library/": Good(
        "library/nginx:1.25", "docker.io", "library/nginx", "1.25", None, DOCKER_HUB_API_HOST,
        "docker.io/library/nginx:1.25",
    ),
    "docker.io one-part gets library/": Good(
        "docker.io/nginx:1.25", "docker.io", "library/nginx", "1.25", None,
        DOCKER_HUB_API_HOST, "docker.io/library/nginx:1.25",
    ),
    "index.docker.io is docker.io": Good(
        "index.docker.io/nginx", "docker.io", "library/nginx", None, None,
        DOCKER_HUB_API_HOST, "docker.io/library/nginx",
    ),
    "registry-1.docker.io is docker.io": Good(
        "registry-1.docker.io/istio/pilot:1.20", "docker.io", "istio/pilot", "1.20", None,
        DOCKER_HUB_API_HOST, "docker.io/istio/pilot:1.20",
    ),
    "hub two-part name keeps its namespace": Good(
        "istio/pilot:1.20.0", "docker.io", "istio/pilot", "1.20.0", None,
        DOCKER_HUB_API_HOST, "docker.io/istio/pilot:1.20.0",
    ),
    "quay two-part": Good(
        "quay.io/sail-dev/sail-operator:0.1", "quay.io", "sail-dev/sail-operator", "0.1", None,
        "quay.io", "quay.io/sail-dev/sail-operator:0.1",
    ),
    "registry host is lowercased": Good(
        "Quay.IO/sail-dev/x", "quay.io", "sail-dev/x", None, None, "quay.io",
        "quay.io/sail-dev/x",
    ),
    "localhost without port": Good(
        "localhost/foo", "localhost", "foo", None, None, "localhost", "localhost/foo"
    ),
    "localhost with port and tag": Good(
        "localhost:5000/foo/bar:v1", "localhost:5000", "foo/bar", "v1", None,
        "localhost:5000", "localhost:5000/foo/bar:v1",
    ),
    "IPv4 with port": Good(
        "127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None, "127.0.0.1:5000",
        "127.0.0.1:5000/a/b:t",
    ),
    "IPv6 with port": Good(
        "[::1]:5000/a:t", "[::1]:5000", "a", "t", None, "[::1]:5000", "[::1]:5000/a:t"
    ),
    "domain with port, one-part name stays one part": Good(
        "registry.example.com:8443/app", "registry.example.com:8443", "app", None, None,
        "registry.example.com:8443", "registry.example.com:8443/app",
    ),
    "hub digest only": Good(
        f"nginx@{D256}", "docker.io", "library/nginx", None, D256, DOCKER_HUB_API_HOST,
        f"docker.io/library/nginx@{D256}",
    ),
    "tag and digest": Good(
        f"nginx:1.25@{D256}", "docker.io", "library/nginx", "1.25", D256,
        DOCKER_HUB_API_HOST, f"docker.io/library/nginx:1.25@{D256}",
    ),
    "port and digest": Good(
        f"localhost:5000/a@{D256}", "localhost:5000", "a", None, D256, "localhost:5000",
        f"localhost:5000/a@{D256}",
    ),
    "sha512 digest": Good(
        f"quay.io/a/b@{D512}", "quay.io", "a/b", None, D512, "quay.io", f"quay.io/a/b@{D512}"
    ),
    "deep path": Good(
        "ghcr.io/a/b/c/d:v1", "ghcr.io", "a/b/c/d", "v1", None, "ghcr.io", "ghcr.io/a/b/c/d:v1"
    ),
    "every separator and tag characters": Good(
        "quay.io/a/b_c__d-e.f---g:T_ag-1.0", "quay.io", "a/b_c__d-e.f---g", "T_ag-1.0", None,
        "quay.io", "quay.io/a/b_c__d-e.f---g:T_ag-1.0",
    ),
    "tag of 128 characters": Good(
        "quay.io/a/b:" + "t" * 128, "quay.io", "a/b", "t" * 128, None, "quay.io",
        "quay.io/a/b:" + "t" * 128,
    ),
    "tag starting with underscore": Good(
        "quay.io/a/b:_x", "quay.io", "a/b", "_x", None, "quay.io", "quay.io/a/b:_x"
    ),
}  # fmt: skip

BAD = {
    "empty": ("", "empty image reference"),
    "uppercase repository": ("docker.io/Library/nginx", "invalid repository component 'Library'"),
    "uppercase one-part hub name": ("NGINX", "invalid repository component 'NGINX'"),
    "uppercase quay repository": ("quay.io/sail-dev/Operator", "'Operator'"),
    "empty tag": ("nginx:", "invalid tag ''"),
    "tag starting with dash": ("nginx:-bad", "invalid tag '-bad'"),
    "tag starting with dot": ("nginx:.bad", "invalid tag '.bad'"),
    "tag of 129 characters": ("nginx:" + "a" * 129, "invalid tag"),
    "tag with a plus": ("nginx:1+2", "invalid tag '1+2'"),
    "short digest": ("nginx@sha256:abc", "invalid digest 'sha256:abc'"),
    "unknown digest algorithm": ("nginx@md5:" + "0" * 32, "invalid digest"),
    "uppercase digest hex": ("nginx@sha256:" + "A" * 64, "invalid digest"),
    "sha512 digest of sha256 length": ("nginx@sha512:" + "a" * 64, "invalid digest"),
    "digest without algorithm": ("nginx@" + "a" * 64, "invalid digest"),
    "https scheme": ("https://quay.io/a/b", "must not have a URL scheme"),
    "docker scheme": ("docker://nginx", "must not have a URL scheme"),
    "leading space": (" nginx", "contains whitespace"),
    "trailing newline": ("nginx\n", "contains whitespace"),
    "inner space": ("ngi nx", "contains whitespace"),
    "tab before tag": ("nginx\t:1", "contains whitespace"),
    "name longer than 255": ("quay.io/" + "a" * 250, "longer than 255"),
    "double slash": ("quay.io/a//b", "invalid repository component ''"),
    "trailing slash": ("quay.io/a/", "invalid repository component ''"),
    "only a tag": (":tag", "missing repository"),
    "only a digest": (f"@{D256}", "missing repository"),
    "port out of range": ("quay.io:99999/a", "invalid registry host 'quay.io:99999'"),
    "port zero": ("localhost:0/a", "invalid registry host 'localhost:0'"),
    "underscore in host": ("bad_host.io/a", "invalid registry host 'bad_host.io'"),
    "host label ending in dash": ("bad-.io/a", "invalid registry host 'bad-.io'"),
    "triple underscore": ("quay.io/a/foo___bar", "invalid repository component 'foo___bar'"),
    "double dot": ("quay.io/a/b..c", "invalid repository component 'b..c'"),
    "leading separator": ("quay.io/a/-b", "invalid repository component '-b'"),
}


@pytest.mark.parametrize("case", list(GOOD.values()), ids=list(GOOD))
def test_good_reference_parses_into_its_parts(case: Good) -> None:
    ref = parse_reference(case.text)
    got = (ref.registry, ref.repository, ref.tag, ref.digest, ref.host, str(ref))
    want = (case.registry, case.repository, case.tag, case.digest, case.host, case.string)
    assert got == want, f"{case.text!r} parsed to {got}, want {want}"


@pytest.mark.parametrize("case", list(GOOD.values()), ids=list(GOOD))
def test_good_reference_round_trips_through_str(case: Good) -> None:
    ref = parse_reference(case.text)
    again = parse_reference(str(ref))
    assert again == ref, f"{case.text!r} -> {str(ref)!r} -> {again!r}, not {ref!r}"


@pytest.mark.parametrize(("text", "problem"), list(BAD.values()), ids=list(BAD))
def test_bad_reference_raises_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    assert problem in str(caught.value), f"{text!r}: message {caught.value!s} lacks {problem!r}"
    assert caught.value.code == "INVALID_REFERENCE"


def test_invalid_reference_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_reference("")


def test_default_tag_applies_only_without_tag_or_digest() -> None:
    assert parse_reference("nginx", default_tag="latest").tag == "latest"
    assert parse_reference("nginx:1", default_tag="latest").tag == "1"
    by_digest = parse_reference(f"nginx@{D256}", default_tag="latest")
    assert by_digest.tag is None, "a digest reference must not gain the default tag"


def test_identifier_prefers_digest_then_tag_then_latest() -> None:
    assert parse_reference(f"nginx:1@{D256}").identifier == D256
    assert parse_reference("nginx:1").identifier == "1"
    assert parse_reference("nginx").identifier == "latest"


def test_name_is_registry_and_repository_without_tag_or_digest() -> None:
    assert parse_reference(f"quay.io/a/b:1@{D256}").name == "quay.io/a/b"


def test_with_tag_returns_a_new_reference_without_digest() -> None:
    ref = parse_reference(f"quay.io/a/b:1@{D256}")
    tagged = ref.with_tag("2")
    assert (tagged.tag, tagged.digest) == ("2", None)
    assert (ref.tag, ref.digest) == ("1", D256), "with_tag changed the original"


def test_with_tag_refuses_an_invalid_tag() -> None:
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        parse_reference("quay.io/a/b").with_tag("-x")


def test_with_digest_keeps_the_tag_and_validates() -> None:
    ref = parse_reference("quay.io/a/b:1").with_digest(D256)
    assert (ref.tag, ref.digest) == ("1", D256)
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        ref.with_digest("sha256:xyz")


def test_reference_is_immutable() -> None:
    ref = parse_reference("quay.io/a/b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]


def test_api_host_maps_docker_hub_aliases_only() -> None:
    for alias in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert api_host(alias) == DOCKER_HUB_API_HOST, alias
    assert api_host("quay.io") == "quay.io"
    assert Reference(DOCKER_HUB, "library/x").host == DOCKER_HUB_API_HOST
