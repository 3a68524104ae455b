"""The sync engine against real registries on loopback: a Docker-Hub-like upstream (Bearer,
anonymous pull) and a Quay-like target (Bearer, robot credentials required).

Runs go through the Python API as the CLI wires it (`load_config`, `CredentialResolver`,
`registries_for`, `Engine.run`); `tests/test_cli.py` covers the command line and exit codes.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from sync.engine import RunOptions
from sync.registry import HostSettings, RegistryClient
from sync.report import Report
from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import AuthMode, RegistryFactory, RegistryRequest, RegistryServer
from tests.scenario import (
    Scenario,
    manifest_requests,
    seed,
    storage_snapshot,
    tag_reports,
    writes,
)

NAME = "examples-helloworld-v1"
UPSTREAM_REPO = Scenario.upstream_repo(NAME)
TARGET_REPO = Scenario.target_repo(NAME)


def _target_digests(
    server: RegistryServer, repo: str, tags: Iterable[str]
) -> dict[str, str | None]:
    with RawClient(server) as raw:
        return {tag: raw.head_manifest(repo, tag) for tag in tags}


def _assert_digest_exact(
    target: RegistryServer, repo: str, expected: dict[str, Image], report: Report
) -> None:
    """Every tag on the target points at the upstream digest and holds every manifest and blob
    of the image (walked and hashed by the test bed's own client)."""
    with RawClient(target) as raw:
        for tag, image in expected.items():
            held = raw.head_manifest(repo, tag)
            assert held == image.digest, (
                f"target {repo}:{tag} holds {held}, upstream has {image.digest}\n"
                f"{report.to_json(indent=2)}"
            )
            seen = raw.verify_image(repo, tag)
            missing = image.all_digests() - seen
            assert not missing, f"target {repo}:{tag} lacks {sorted(missing)}"


def _show(requests: Iterable[RegistryRequest]) -> str:
    return "\n".join(f"  {r.method} {r.path} -> {r.status}" for r in requests)


# -- no change: HEADs, one tag list per repository -------------------------------------------


def test_second_sync_without_upstream_changes_sends_only_one_manifest_head_per_tag_per_side(
    scenario: Scenario,
) -> None:
    """The warm-run rule: per side a ping and one manifest HEAD per tag; upstream also one tag
    list per repository (for referrers' digest tags) and, as its list shows no referrers tag
    schema, one referrers API request per registry (answered 404 by Distribution 2.8)."""
    upstream_images = {
        "1.0": images.oci_index(1),
        "1.1": images.docker_manifest_list(2),
        "latest": images.oci_manifest(3),
    }
    scenario.add_image(NAME, list(upstream_images))
    seed(scenario.upstream, UPSTREAM_REPO, upstream_images)
    first = scenario.run()
    assert first.status == "ok", f"first sync did not succeed:\n{first.to_json(indent=2)}"

    scenario.clear_requests()
    second = scenario.run()

    actions = {t.tag: (t.state, t.action) for t in second.all_tags()}
    assert actions == {tag: ("up_to_date", "up_to_date") for tag in upstream_images}, (
        f"nothing changed upstream, yet the second run reports {actions}"
    )
    assert second.status == "ok" and second.exit_code() == 0, second.to_json(indent=2)
    assert second.summary.copied == 0 and second.summary.bytes_copied == 0
    for side, server, repo in (
        ("upstream", scenario.upstream, UPSTREAM_REPO),
        ("target", scenario.target, TARGET_REPO),
    ):
        seen = server.requests()
        listing = [r for r in seen if r.method == "GET" and r.path.startswith(f"/v2/{repo}/tags/")]
        probes = [r for r in seen if r.method == "GET" and "/referrers/" in r.path]
        others = [
            r
            for r in seen
            if not (r.method == "HEAD" and "/manifests/" in r.path)
            and not (r.method == "GET" and r.path == "/v2/")
            and r not in listing
            and r not in probes
        ]
        assert not others, (
            f"a no-change run must only ping, HEAD manifests and list tags on the {side}, "
            f"but it also sent:\n{_show(others)}"
        )
        want_lists, want_probes = (1, 1) if side == "upstream" else (0, 0)
        assert (len(listing), len(probes)) == (want_lists, want_probes), (
            f"{side}: want {want_lists} tag list(s) and {want_probes} referrers request(s):\n"
            f"{_show(listing + probes)}"
        )
        heads = collections.Counter(r.path for r in manifest_requests(seen, "HEAD"))
        expected = {f"/v2/{repo}/manifests/{tag}": 1 for tag in upstream_images}
        assert heads == expected, (
            f"{side} manifest HEADs: want exactly one per tag {expected}, got {dict(heads)}"
        )


# -- changes, missing repositories, missing upstream tags ---------------------------------------


def test_tag_moved_upstream_is_recopied_as_outdated_while_other_tags_stay_up_to_date(
    scenario: Scenario,
) -> None:
    before = {
        "1.0": images.oci_index(1),
        "1.1": images.oci_index(2),
        "latest": images.oci_index(2),
    }
    scenario.add_image(NAME, list(before))
    seed(scenario.upstream, UPSTREAM_REPO, before)
    first = scenario.run()
    assert first.status == "ok", first.to_json(indent=2)

    moved = before["latest"].variant(7)
    seed(scenario.upstream, UPSTREAM_REPO, {"latest": moved})
    scenario.clear_requests()
    report = scenario.run()

    tags = tag_reports(report)
    latest = tags[(NAME, "latest")]
    assert (latest.state, latest.action) == ("outdated", "copied"), (
        f"latest moved upstream to {moved.digest}; expected outdated/copied, got "
        f"{latest.state}/{latest.action}: {latest.error}"
    )
    assert latest.upstream_digest == latest.target_digest == moved.digest
    assert latest.bytes_copied > 0 and latest.blobs_copied > 0, (
        f"the moved tag's new layers were not counted as copied: {latest}"
    )
    for tag in ("1.0", "1.1"):
        entry = tags[(NAME, tag)]
        assert (entry.state, entry.action) == ("up_to_date", "up_to_date"), (
            f"{tag} did not change upstream but got {entry.state}/{entry.action}"
        )
    assert report.status == "ok" and report.summary.copied == 1, report.to_json(indent=2)
    _assert_digest_exact(scenario.target, TARGET_REPO, {**before, "latest": moved}, report)
    pushed = [r.path for r in manifest_requests(scenario.target.requests(), "PUT")]
    assert f"/v2/{TARGET_REPO}/manifests/latest" in pushed
    assert not any(p.endswith(("/manifests/1.0", "/manifests/1.1")) for p in pushed), (
        f"unchanged tags were pushed again: {pushed}"
    )


def test_target_repository_that_does_not_exist_yet_is_created_by_the_copy(
    scenario: Scenario,
) -> None:
    upstream_images = {"1.0": images.oci_index_with_attestations(4)}
    scenario.add_image(NAME, list(upstream_images))
    seed(scenario.upstream, UPSTREAM_REPO, upstream_images)
    with RawClient(scenario.target) as raw:
        assert TARGET_REPO not in raw.catalog()

    report = scenario.run()

    entry = tag_reports(report)[(NAME, "1.0")]
    assert (entry.state, entry.action) == ("missing", "copied"), (
        f"a tag absent from a repository that does not exist is missing/copied, got "
        f"{entry.state}/{entry.action}: {entry.error}"
    )
    assert entry.target_digest == upstream_images["1.0"].digest
    assert entry.blobs_copied == len(upstream_images["1.0"].blobs)
    assert entry.bytes_copied == sum(len(b) for b in upstream_images["1.0"].blobs.values())
    with RawClient(scenario.target) as raw:
        assert TARGET_REPO in raw.catalog(), "the push did not create the target repository"
    _assert_digest_exact(scenario.target, TARGET_REPO, upstream_images, report)


def test_configured_tag_missing_upstream_is_upstream_missing_and_the_other_tags_still_copy(
    scenario: Scenario,
) -> None:
    present = {"1.0": images.oci_index(1), "latest": images.docker_manifest(2)}
    scenario.add_image(NAME, ["1.0", "9.9-gone", "latest"])
    seed(scenario.upstream, UPSTREAM_REPO, present)

    report = scenario.run()

    tags = tag_reports(report)
    gone = tags[(NAME, "9.9-gone")]
    assert (gone.state, gone.action) == ("upstream_missing", "upstream_missing"), (
        f"a configured tag upstream does not have: got {gone.state}/{gone.action}"
    )
    assert gone.error is not None and "9.9-gone" in gone.error.message, (
        f"the error does not name the missing tag: {gone.error}"
    )
    assert gone.upstream_digest is None and gone.target_digest is None
    for tag in present:
        entry = tags[(NAME, tag)]
        assert entry.action == "copied", f"{tag} should still be copied, got {entry}"
    assert report.status == "failed" and report.exit_code() == 1, report.to_json(indent=2)
    assert report.summary.failed == 1 and report.summary.copied == 2, report.summary
    _assert_digest_exact(scenario.target, TARGET_REPO, present, report)
    assert _target_digests(scenario.target, TARGET_REPO, ["9.9-gone"]) == {"9.9-gone": None}


# -- dry run and status write nothing -------------------------------------------------------------


def _mixed_target(scenario: Scenario) -> dict[str, Image]:
    """Upstream 1.0, 1.1, 2.0 (and 3.0 to discover); the target has 1.0 up to date, 1.1 at an
    older digest, 2.0 missing."""
    upstream_images = {
        "1.0": images.oci_index(1),
        "1.1": images.oci_index(2),
        "2.0": images.docker_manifest_list(3),
        "3.0": images.oci_manifest(4),
    }
    scenario.add_image(NAME, ["1.0", "1.1", "2.0"], check_new_tags=True, max_tags_to_check=5)
    seed(scenario.upstream, UPSTREAM_REPO, upstream_images)
    seed(
        scenario.target,
        TARGET_REPO,
        {"1.0": upstream_images["1.0"], "1.1": upstream_images["1.1"].variant(99)},
    )
    return upstream_images


def test_dry_run_reports_would_copy_and_leaves_the_target_byte_for_byte_unchanged(
    scenario: Scenario,
) -> None:
    upstream_images = _mixed_target(scenario)
    snapshot = storage_snapshot(scenario.target)
    scenario.clear_requests()

    report = scenario.run(RunOptions(dry_run=True))

    got = {t.tag: (t.state, t.action, t.discovered) for t in report.all_tags()}
    assert got == {
        "1.0": ("up_to_date", "up_to_date", False),
        "1.1": ("outdated", "would_copy", False),
        "2.0": ("missing", "would_copy", False),
        "3.0": ("missing", "would_copy", True),
    }, f"dry run outcome: {got}"
    assert report.dry_run is True and report.summary.copied == 0, report.to_json(indent=2)
    assert report.summary.bytes_copied == 0
    written = writes(scenario.target.requests())
    assert not written, f"a dry run wrote to the target:\n{_show(written)}"
    assert storage_snapshot(scenario.target) == snapshot, "a dry run changed the target storage"
    pulled = [r for r in scenario.upstream.requests() if r.method == "GET" and "/blobs/" in r.path]
    pulled += manifest_requests(scenario.upstream.requests(), "GET")
    assert not pulled, f"a dry run pulled from upstream:\n{_show(pulled)}"
    digests = _target_digests(scenario.target, TARGET_REPO, upstream_images)
    assert digests["2.0"] is None and digests["3.0"] is None
    assert digests["1.1"] == upstream_images["1.1"].variant(99).digest


def test_status_compares_configured_tags_only_writes_nothing_and_fails_when_not_up_to_date(
    scenario: Scenario,
) -> None:
    _mixed_target(scenario)
    snapshot = storage_snapshot(scenario.target)
    scenario.clear_requests()

    report = scenario.run(RunOptions(compare_only=True))

    got = {t.tag: (t.state, t.action) for t in report.all_tags()}
    assert got == {
        "1.0": ("up_to_date", "up_to_date"),
        "1.1": ("outdated", "would_copy"),
        "2.0": ("missing", "would_copy"),
    }, f"status must compare the configured tags only (no discovery): {got}"
    # 4: every tag was compared and some would be copied (DESIGN.md, CLI).
    assert report.status == "failed" and report.exit_code("status") == 4, report.to_json()
    assert not writes(scenario.target.requests()), "status wrote to the target"
    assert storage_snapshot(scenario.target) == snapshot, "status changed the target storage"
    assert not any(t.discovered for t in report.all_tags()), "status must not discover"
    listed = [r for r in scenario.upstream.requests() if "/tags/list" in r.path]
    assert len(listed) <= 1, f"one tag list (for referrers) at most:\n{_show(listed)}"


@pytest.mark.parametrize("target_auth", ["bearer-quay", "basic"])
def test_status_with_a_wrong_target_password_reports_the_refusal_not_a_missing_tag(
    hub_registry: RegistryServer,
    registry_factory: RegistryFactory,
    tmp_path: Path,
    target_auth: AuthMode,
) -> None:
    scenario = Scenario(hub_registry, registry_factory(target_auth), tmp_path)
    upstream_images = {"1.0": images.oci_manifest(1)}
    scenario.add_image(NAME, list(upstream_images))
    seed(scenario.upstream, UPSTREAM_REPO, upstream_images)
    seed(scenario.target, TARGET_REPO, upstream_images)  # up to date on the target
    scenario.env_overrides[scenario.password_var(scenario.target)] = "wrong-password"

    for options in (RunOptions(compare_only=True), RunOptions(dry_run=True)):
        report = scenario.run(options)
        entry = tag_reports(report)[(NAME, "1.0")]
        assert entry.state != "missing" and entry.action == "failed", (
            f"the target refused the credentials, yet {options} reports "
            f"{entry.state}/{entry.action} for a tag it holds (error: {entry.error})"
        )
        assert entry.error is not None and report.status == "failed", report.to_json()


def test_status_without_target_credentials_is_an_authentication_error_not_missing(
    hub_registry: RegistryServer, quay_registry: RegistryServer, tmp_path: Path
) -> None:
    scenario = Scenario(hub_registry, quay_registry, tmp_path)
    upstream_images = {"1.0": images.oci_manifest(1)}
    scenario.add_image(NAME, list(upstream_images))
    seed(scenario.upstream, UPSTREAM_REPO, upstream_images)
    # No credentials for the token registry: its 401 must not read as "not there yet".
    scenario.env_overrides[scenario.password_var(quay_registry)] = None
    scenario.env_overrides[scenario.password_var(quay_registry).replace("PASSWORD", "USER")] = None
    config = scenario.config_dict()
    registries = config["registries"]
    assert isinstance(registries, dict)
    registries[quay_registry.host] = {"tls": "disabled"}
    path = tmp_path / "no-target-credentials.json"
    path.write_text(json.dumps(config))

    result = scenario.cli("--json", "status", config=path)

    assert result.returncode == 1, result.describe()
    (entry,) = result.json()["images"][0]["tags"]
    assert entry["state"] is None and entry["action"] == "failed", entry
    assert entry["error"]["code"] == "UNAUTHORIZED", entry
    assert "no credentials" in entry["error"]["message"], entry


def test_status_with_accepted_credentials_and_no_target_repository_says_missing(
    hub_registry: RegistryServer, quay_registry: RegistryServer, tmp_path: Path
) -> None:
    # Quay answers 401 for a repository that does not exist yet, even with good credentials.
    scenario = Scenario(hub_registry, quay_registry, tmp_path)
    upstream_images = {"1.0": images.oci_manifest(1)}
    scenario.add_image(NAME, list(upstream_images))
    seed(scenario.upstream, UPSTREAM_REPO, upstream_images)

    report = scenario.run(RunOptions(compare_only=True))

    (entry,) = report.all_tags()
    assert (entry.state, entry.action) == ("missing", "would_copy"), report.to_json(indent=2)
    assert report.exit_code("status") == 4


# -- discovery ------------------------------------------------------------------------------------

# Upstream tags where the registry's order (alphabetical, or none at all) and version order
# disagree. Newest first by version: 10.0, 10.0-rc.2, v9.10, 9.9, v2.15.0, 2.9.1, 1.10,
# 1.10.0-rc.1, 1.9, 0.1.99, ... 0.1.0. Not versions: latest, nightly, V3.0, sha256-<hex>.sig.
_VERSIONED = ["10.0", "10.0-rc.2", "v9.10", "9.9", "v2.15.0", "2.9.1", "1.10", "1.10.0-rc.1", "1.9"]
_FILLER = [f"0.1.{i}" for i in range(100)]
_NOT_VERSIONS = ["latest", "nightly", "V3.0", f"sha256-{'ab' * 32}.sig", "99.0-"]


def _seed_many_tags(server: RegistryServer) -> dict[str, Image]:
    """Each versioned tag gets its own image; filler and non-version tags share one."""
    own = {tag: images.oci_manifest(100 + i, layers=1) for i, tag in enumerate(_VERSIONED)}
    own["latest"] = images.oci_manifest(98, layers=1)
    shared = images.no_layers_image(97)
    with RawClient(server) as raw:
        for tag, image in own.items():
            raw.push_image(UPSTREAM_REPO, tag, image)
        raw.push_image(UPSTREAM_REPO, _FILLER[0], shared)
        for tag in [*_FILLER[1:], *_NOT_VERSIONS]:
            if tag not in own:
                raw.push_manifest(UPSTREAM_REPO, tag, shared.manifest, shared.media_type)
        listed = raw.tags(UPSTREAM_REPO)
    assert len(listed) >= 100, f"seeding gave only {len(listed)} tags"
    return own


def test_discovery_copies_the_newest_versions_by_version_order_not_alphabetical(
    scenario: Scenario,
) -> None:
    upstream_images = _seed_many_tags(scenario.upstream)
    # Window of 6: 10.0, 10.0-rc.2, v9.10, 9.9 (configured: uses a place), v2.15.0, 2.9.1.
    scenario.add_image(NAME, ["latest", "9.9"], check_new_tags=True, max_tags_to_check=6)
    # Same upstream, a pattern: two-part releases only -> window of 3: 10.0, 9.9, 1.10.
    scenario.add_image(
        "helloworld-pattern",
        ["latest"],
        upstream_repo=UPSTREAM_REPO,
        check_new_tags=True,
        max_tags_to_check=3,
        tag_pattern=r"[0-9]+\.[0-9]+",
    )
    pattern_repo = Scenario.target_repo("helloworld-pattern")
    # Already mirrored: discovered, but nothing to copy.
    seed(scenario.target, TARGET_REPO, {"v9.10": upstream_images["v9.10"]})
    scenario.clear_requests()

    report = scenario.run()

    expected_configured = {NAME: ["latest", "9.9"], "helloworld-pattern": ["latest"]}
    expected_discovered = {
        NAME: ["10.0", "10.0-rc.2", "v9.10", "v2.15.0", "2.9.1"],
        "helloworld-pattern": ["10.0", "9.9", "1.10"],
    }
    for image in report.images:
        discovered = [t.tag for t in image.tags if t.discovered]
        assert sorted(discovered) == sorted(expected_discovered[image.name]), (
            f"{image.name}: discovered {discovered}, want {expected_discovered[image.name]} "
            "(newest by version, configured tags using places in the window)"
        )
        configured = [t.tag for t in image.tags if not t.discovered]
        assert sorted(configured) == sorted(expected_configured[image.name]), (
            f"{image.name}: configured tags reported {configured}"
        )
    tags = tag_reports(report)
    assert tags[(NAME, "v9.10")].action == "up_to_date", "v9.10 was already on the target"
    assert tags[(NAME, "v9.10")].state == "up_to_date"
    for name, discovered in expected_discovered.items():
        for tag in discovered:
            entry = tags[(name, tag)]
            if (name, tag) != (NAME, "v9.10"):
                assert (entry.state, entry.action) == ("missing", "copied"), (
                    f"{name}:{tag} should be copied, got {entry.state}/{entry.action}: "
                    f"{entry.error}"
                )
    assert report.status == "ok", report.to_json(indent=2)
    assert report.summary.discovered == 8, report.summary

    pushed = {
        r.path.rsplit("/", 1)[1]
        for r in manifest_requests(scenario.target.requests(), "PUT")
        if f"/{TARGET_REPO}/" in r.path and "sha256:" not in r.path
    }
    assert pushed == {"latest", "9.9", "10.0", "10.0-rc.2", "v2.15.0", "2.9.1"}, (
        f"tags pushed to {TARGET_REPO}: {sorted(pushed)} (v9.10 was there already; nothing "
        "outside the window may be copied)"
    )
    with RawClient(scenario.target) as raw:
        assert sorted(raw.tags(pattern_repo)) == sorted(["latest", "10.0", "9.9", "1.10"])
        assert sorted(raw.tags(TARGET_REPO)) == sorted(
            ["latest", "9.9", "10.0", "10.0-rc.2", "v9.10", "v2.15.0", "2.9.1"]
        )
    _assert_digest_exact(
        scenario.target,
        TARGET_REPO,
        {t: upstream_images[t] for t in ["latest", "9.9", "10.0", "10.0-rc.2", "v2.15.0"]},
        report,
    )


class _PagingTransport(httpx.AsyncBaseTransport):
    """In front of a real Distribution 2.8 registry, which ignores `n` on tag lists: serves the
    registry's own list in pages of `n` with `Link: <...?last=T&n=N>; rel="next"`, as
    Distribution 3, Docker Hub and Quay do."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        page_size = request.url.params.get("n")
        if request.method != "GET" or not request.url.path.endswith("/tags/list") or not page_size:
            return await self._inner.handle_async_request(request)
        last = request.url.params.get("last")
        upstream = request.url.copy_remove_param("n").copy_remove_param("last")
        reply = await self._inner.handle_async_request(
            httpx.Request("GET", upstream, headers=request.headers)
        )
        await reply.aread()
        body = reply.json()
        tags: list[str] = body["tags"]
        start = tags.index(last) + 1 if last else 0
        page = tags[start : start + int(page_size)]
        headers = {"Content-Type": "application/json"}
        if start + int(page_size) < len(tags):
            headers["Link"] = f'<{request.url.path}?n={page_size}&last={page[-1]}>; rel="next"'
        return httpx.Response(200, headers=headers, json={"name": body["name"], "tags": page})

    async def aclose(self) -> None:
        await self._inner.aclose()


def _tag_list(
    server: RegistryServer, repo: str, transport: httpx.AsyncBaseTransport | None
) -> list[str]:
    async def main() -> list[str]:
        client = RegistryClient(
            server.host, settings=HostSettings(secure=False), transport=transport
        )
        try:
            return await client.tag_list(repo, page_size=7)
        finally:
            await client.aclose()

    return asyncio.run(main())


@pytest.fixture
def many_tags(anon_registry: RegistryServer) -> Iterator[list[str]]:
    image = images.no_layers_image(5)
    names = [f"t{i}" for i in range(40)] + ["1.9", "1.10", "latest"]
    with RawClient(anon_registry) as raw:
        raw.push_image("istio/paged", names[0], image)
        for tag in names[1:]:
            raw.push_manifest("istio/paged", tag, image.manifest, image.media_type)
        listed = raw.tags("istio/paged")
    assert sorted(listed) == sorted(names)
    anon_registry.clear_requests()
    yield listed


def test_tag_list_with_page_size_returns_every_tag_in_the_registrys_order(
    anon_registry: RegistryServer, many_tags: list[str]
) -> None:
    got = _tag_list(anon_registry, "istio/paged", None)
    assert got == many_tags, f"tag_list(page_size=7) gave {got}, the registry lists {many_tags}"
    lists = [r for r in anon_registry.requests() if "/tags/list" in r.path]
    assert lists and all("n=7" in r.path for r in lists), (
        f"page size not sent as n=7:\n{_show(lists)}"
    )


def test_tag_list_follows_link_pages_over_the_real_registrys_tags_in_order(
    anon_registry: RegistryServer, many_tags: list[str]
) -> None:
    got = _tag_list(anon_registry, "istio/paged", _PagingTransport())
    assert got == many_tags, (
        f"paged tag_list gave {len(got)} tags {got}, the registry lists {many_tags}"
    )
    lists = [r for r in anon_registry.requests() if "/tags/list" in r.path]
    pages = -(-len(many_tags) // 7)
    assert len(lists) == pages, f"want {pages} page requests, the registry saw:\n{_show(lists)}"


# -- concurrency ----------------------------------------------------------------------------------


def test_four_images_of_three_tags_in_one_run_all_end_digest_exact(scenario: Scenario) -> None:
    shared_a, shared_b = images.shared_layer_pair(40)
    # Per image: 1.0 and latest are one image (one copy must serve both), 1.1 another; the
    # "shared" image's two manifests have base layers in common.
    expected: dict[str, dict[str, Image]] = {
        "istio-index": {"1.0": images.oci_index(11), "1.1": images.oci_index(12)},
        "docker-list": {"1.0": images.docker_manifest_list(21), "1.1": images.zstd_image(22)},
        "attested": {
            "1.0": images.oci_index_with_attestations(31),
            "1.1": images.docker_manifest(32),
        },
        "shared": {"1.0": shared_a, "1.1": shared_b},
    }
    for name, tags in expected.items():
        tags["latest"] = tags["1.0"]
        scenario.add_image(name, list(tags))
        seed(scenario.upstream, Scenario.upstream_repo(name), tags)

    report = scenario.run(RunOptions(concurrency=8))

    assert report.status == "ok", report.to_json(indent=2)
    assert report.summary.tags == 12 and report.summary.copied == 12, report.summary
    for name, tags in expected.items():
        _assert_digest_exact(scenario.target, Scenario.target_repo(name), tags, report)
    again = scenario.run()
    assert again.summary.up_to_date == 12, f"a second run found changes:\n{again.to_json()}"
