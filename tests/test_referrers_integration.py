"""Referrers travel with the image, against real Distribution 2.8 registries on loopback (a
Docker-Hub-like upstream and a Quay-like target): cosign digest tags, OCI 1.1 referrers stored
through the referrers tag schema fallback, a referrer of a referrer, referrers of one child of a
multi-platform index; then a warm run whose requests the registries' access logs witness.

Distribution 2.8 has no referrers API; `tests/test_referrers_api.py` covers that path.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass

from sync.engine import RunOptions
from sync.report import Report
from tests.bed import images
from tests.bed.images import Image
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryRequest, RegistryServer
from tests.bed.signatures import (
    cosign_attestation,
    cosign_sbom,
    cosign_signature,
    digest_tag,
    fallback_index,
    fallback_tag,
    oci_referrer,
)
from tests.scenario import Scenario, seed, tag_reports, writes

NAME = "examples-httpbin"
UPSTREAM_REPO = Scenario.upstream_repo(NAME)
TARGET_REPO = Scenario.target_repo(NAME)
SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclass
class Signed:
    """What the upstream holds: the images by tag, and every referrer by its tag."""

    tags: dict[str, Image]
    #: digest tag -> what it holds (cosign artifacts and fallback indexes)
    referrer_tags: dict[str, Image]
    #: referrers of each mirrored tag (how many digest tags belong to it)
    per_tag: dict[str, int]
    #: a digest tag of an image that is not mirrored: must stay behind
    unrelated: str


def _signed_upstream(server: RegistryServer) -> Signed:
    index = images.oci_index(1)  # two platforms
    single = images.oci_manifest(2)
    old = images.oci_manifest(9)  # signed once, not mirrored
    child = index.child("linux/arm64")

    sig = cosign_signature(index.digest)
    att = cosign_attestation(index.digest)
    att_sig = cosign_signature(att.digest, seed=1)  # a signature on the attestation
    child_sig = cosign_signature(child.digest, seed=2)
    sbom_tag = cosign_sbom(single.digest)
    sbom = oci_referrer(single, SBOM_TYPE, seed=3)
    bundle = oci_referrer(single, SIG_TYPE, seed=4)
    on_sbom = oci_referrer(sbom, SIG_TYPE, seed=5)  # a referrer of a referrer
    old_sig = cosign_signature(old.digest, seed=6)

    referrer_tags = {
        digest_tag(index.digest, "sig"): sig,
        digest_tag(index.digest, "att"): att,
        digest_tag(att.digest, "sig"): att_sig,
        digest_tag(child.digest, "sig"): child_sig,
        digest_tag(single.digest, "sbom"): sbom_tag,
        fallback_tag(single.digest): fallback_index([sbom, bundle]),
        fallback_tag(sbom.digest): fallback_index([on_sbom]),
    }
    unrelated = digest_tag(old.digest, "sig")
    seed(server, UPSTREAM_REPO, {"1.0": index, "latest": single, "old": old})
    seed(server, UPSTREAM_REPO, {**referrer_tags, unrelated: old_sig})
    with RawClient(server) as raw:
        raw.delete_manifest(UPSTREAM_REPO, old.digest)  # the old image itself is gone
    return Signed(
        tags={"1.0": index, "latest": single},
        referrer_tags=referrer_tags,
        per_tag={"1.0": 4, "latest": 3},
        unrelated=unrelated,
    )


def _show(requests: list[RegistryRequest]) -> str:
    return "\n".join(f"  {r.method} {r.path} -> {r.status}" for r in requests)


def _assert_on_target(scenario: Scenario, signed: Signed, report: Report) -> None:
    with RawClient(scenario.target) as raw:
        for tag, image in {**signed.tags, **signed.referrer_tags}.items():
            held = raw.head_manifest(TARGET_REPO, tag)
            assert held == image.digest, (
                f"target {TARGET_REPO}:{tag} holds {held}, upstream has {image.digest}\n"
                f"{report.to_json(indent=2)}"
            )
            missing = image.all_digests() - raw.verify_image(TARGET_REPO, tag)
            assert not missing, f"target {TARGET_REPO}:{tag} lacks {sorted(missing)}"
        assert raw.head_manifest(TARGET_REPO, signed.unrelated) is None, (
            "a digest tag of an image that is not mirrored was copied"
        )


def test_sync_mirrors_cosign_tags_fallback_referrers_nested_and_child_referrers(
    scenario: Scenario,
) -> None:
    signed = _signed_upstream(scenario.upstream)
    scenario.add_image(NAME, list(signed.tags))

    report = scenario.run()

    assert report.status == "ok", report.to_json(indent=2)
    tags = tag_reports(report)
    for tag, count in signed.per_tag.items():
        entry = tags[(NAME, tag)]
        assert (entry.state, entry.action) == ("missing", "copied"), entry
        assert entry.referrers.model_dump() == {
            "copied": count,
            "would_copy": 0,
            "present": 0,
            "failed": 0,
        }, f"{tag}: {entry.referrers}"
    assert report.summary.referrers_copied == sum(signed.per_tag.values())
    assert report.summary.referrers_failed == 0
    _assert_on_target(scenario, signed, report)


def test_warm_run_sends_only_heads_and_one_tag_list_per_repository(scenario: Scenario) -> None:
    signed = _signed_upstream(scenario.upstream)
    scenario.add_image(NAME, list(signed.tags))
    first = scenario.run()
    assert first.status == "ok", first.to_json(indent=2)
    scenario.clear_requests()

    second = scenario.run()

    assert second.status == "ok" and second.summary.copied == 0, second.to_json(indent=2)
    for entry in second.all_tags():
        assert (entry.state, entry.action) == ("up_to_date", "up_to_date"), entry
        assert entry.referrers.copied == entry.referrers.would_copy == 0, entry
    # Referrers of the tag's own digest are counted present; those of children and of
    # referrers listed in fallback indexes are checked but not attributed (the index is not read).
    assert tags_present(second) == {"1.0": 3, "latest": 2}, second.to_json(indent=2)
    for side, server in (("upstream", scenario.upstream), ("target", scenario.target)):
        seen = server.requests()
        listing = [r for r in seen if r.method == "GET" and "/tags/list" in r.path]
        others = [r for r in seen if r.method != "HEAD" and r.path != "/v2/" and r not in listing]
        assert not others, f"warm run on the {side} sent more than HEADs:\n{_show(others)}"
        assert len(listing) == (1 if side == "upstream" else 0), _show(listing)
        heads = collections.Counter(r.path for r in seen if r.method == "HEAD")
        repeated = {path: n for path, n in heads.items() if n > 1}
        assert not repeated, f"{side}: the same HEAD sent more than once: {repeated}"
    assert not writes(scenario.target.requests())


def tags_present(report: Report) -> dict[str, int]:
    return {t.tag: t.referrers.present for t in report.all_tags()}


def test_a_new_signature_on_an_up_to_date_child_is_copied_and_the_tag_counts_as_copied(
    scenario: Scenario,
) -> None:
    signed = _signed_upstream(scenario.upstream)
    scenario.add_image(NAME, list(signed.tags))
    assert scenario.run().status == "ok"
    child = signed.tags["1.0"].child("linux/amd64")
    late = cosign_signature(child.digest, seed=7)
    seed(scenario.upstream, UPSTREAM_REPO, {digest_tag(child.digest, "sig"): late})

    dry = scenario.run(RunOptions(dry_run=True))
    entry = tag_reports(dry)[(NAME, "1.0")]
    assert (entry.state, entry.action, entry.referrers.would_copy) == (
        "up_to_date",
        "would_copy",
        1,
    ), dry.to_json(indent=2)
    report = scenario.run()

    entry = tag_reports(report)[(NAME, "1.0")]
    assert (entry.state, entry.action, entry.referrers.copied) == ("up_to_date", "copied", 1), (
        report.to_json(indent=2)
    )
    assert report.summary.copied == 1 and report.summary.referrers_copied == 1
    with RawClient(scenario.target) as raw:
        assert raw.head_manifest(TARGET_REPO, digest_tag(child.digest, "sig")) == late.digest


def test_target_fallback_index_with_extra_entries_is_merged_never_dropping_one(
    scenario: Scenario,
) -> None:
    signed = _signed_upstream(scenario.upstream)
    scenario.add_image(NAME, list(signed.tags))
    single = signed.tags["latest"]
    tag = fallback_tag(single.digest)
    upstream_index = signed.referrer_tags[tag]
    local = oci_referrer(single, "application/vnd.example.local+json", seed=8)
    seed(scenario.target, TARGET_REPO, {"latest": single})
    seed(scenario.target, TARGET_REPO, {tag: fallback_index([local])})

    report = scenario.run()

    assert report.status == "ok", report.to_json(indent=2)
    with RawClient(scenario.target) as raw:
        data, _, digest = raw.get_manifest(TARGET_REPO, tag)
        listed = [entry["digest"] for entry in json.loads(data)["manifests"]]
        want = [child.digest for child in upstream_index.children] + [local.digest]
        assert listed == want, f"merged fallback index lists {listed}, want {want}"
        for referrer in [*upstream_index.children, local]:
            assert raw.head_manifest(TARGET_REPO, referrer.digest) == referrer.digest
    # The merge is stable: the next run pushes nothing.
    scenario.clear_requests()
    again = scenario.run()
    assert again.status == "ok" and again.summary.referrers_copied == 0, again.to_json(indent=2)
    assert not writes(scenario.target.requests()), _show(writes(scenario.target.requests()))
    with RawClient(scenario.target) as raw:
        assert raw.head_manifest(TARGET_REPO, tag) == digest


def test_referrers_off_copies_the_images_alone(scenario: Scenario) -> None:
    signed = _signed_upstream(scenario.upstream)
    scenario.add_image(NAME, list(signed.tags), referrers=False)
    scenario.clear_requests()

    report = scenario.run()

    assert report.status == "ok" and report.summary.referrers_copied == 0, report.to_json()
    with RawClient(scenario.target) as raw:
        assert sorted(raw.tags(TARGET_REPO)) == sorted(signed.tags)
    listing = [r for r in scenario.upstream.requests() if "/tags/list" in r.path]
    assert not listing, f"referrers off, yet tags were listed:\n{_show(listing)}"


def test_discovered_tags_bring_their_referrers_and_the_discovery_list_is_reused(
    scenario: Scenario,
) -> None:
    signed = _signed_upstream(scenario.upstream)
    scenario.add_image(NAME, ["latest"], check_new_tags=True, max_tags_to_check=5)
    scenario.clear_requests()

    report = scenario.run()

    tags = tag_reports(report)
    assert sorted(tag for _, tag in tags) == ["1.0", "latest"], (
        f"digest tags must never be discovered as versions: {sorted(tags)}"
    )
    assert tags[(NAME, "1.0")].discovered and tags[(NAME, "1.0")].referrers.copied == 4
    listing = [r for r in scenario.upstream.requests() if "/tags/list" in r.path]
    assert len(listing) == 1, f"discovery's tag list must be reused:\n{_show(listing)}"
    _assert_on_target(scenario, signed, report)


def test_status_exits_4_when_only_referrers_are_missing_on_the_target(scenario: Scenario) -> None:
    signed = _signed_upstream(scenario.upstream)
    seed(scenario.target, TARGET_REPO, signed.tags)  # the images, without their referrers
    scenario.add_image(NAME, list(signed.tags))
    scenario.clear_requests()

    result = scenario.cli("status")

    assert result.returncode == 4, result.describe()
    # Without reading upstream (no pulls in `status`), the referrer listed in latest's fallback
    # index, and what refers to it, stay unknown until a sync copies that index.
    for tag, count in {"1.0": 4, "latest": 2}.items():
        line = next(x for x in result.stdout.splitlines() if f" {tag} " in f" {x} ")
        assert "up_to_date" in line and f"referrers: {count} would copy" in line, line
    assert not writes(scenario.target.requests()), "status wrote to the target"
