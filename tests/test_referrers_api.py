"""The OCI 1.1 referrers API path, against in-memory registries (Distribution 2.8, the test bed's
registry, has no referrers API): an upstream that answers `/referrers/`, one that answers 404,
one that filters unasked (`OCI-Filters-Applied`), and targets with and without `OCI-Subject`."""

from __future__ import annotations

import json

import httpx

from sync.config import parse_config
from sync.engine import RunOptions
from sync.report import Report, TagReport
from sync.retry import RetryPolicy
from tests.bed.images import OCI_INDEX, OCI_MANIFEST, image_of
from tests.fake_registry import FakeRegistry, route
from tests.scenario import engine_run

FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, max_retry_after=1.0)
UP, DOWN = "istio/app", "sail-dev/app"
SBOM = "application/spdx+json"
SIG = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _sync(
    source: FakeRegistry,
    target: FakeRegistry,
    options: RunOptions | None = None,
    *,
    discover: bool = False,
) -> Report:
    config = parse_config(
        {
            "images": [
                {
                    "name": "app",
                    "upstream": f"{source.host}/{UP}",
                    "target": f"{target.host}/{DOWN}",
                    "tags": ["1.0"],
                    "check_new_tags": discover,
                }
            ]
        }
    )

    return engine_run(config, route(source, target), policy=FAST, options=options)


def _referrer(
    registry: FakeRegistry, subject: str, artifact_type: str, payload: bytes, *, tag: str = ""
) -> str:
    """Store an OCI 1.1 artifact whose `subject` is `subject`; returns its digest."""
    empty = registry.add_blob(UP, b"{}")
    layer = registry.add_blob(UP, payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(payload)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    }
    return registry.add_manifest(UP, json.dumps(doc).encode(), OCI_MANIFEST, tag or None)


def _signed(source: FakeRegistry) -> tuple[str, list[str]]:
    """Tag 1.0 with an SBOM and a signature referring to it, and a signature on the SBOM."""
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    sbom = _referrer(source, image, SBOM, b'{"spdxVersion": "SPDX-2.3"}')
    sig = _referrer(source, image, SIG, b"signature one")
    on_sbom = _referrer(source, sbom, SIG, b"signature on the sbom")
    return image, [sbom, sig, on_sbom]


def _entry(report: Report) -> TagReport:
    [entry] = report.images[0].tags
    return entry


def _listed(target: FakeRegistry, subject: str) -> list[str]:
    digest = target.tag_digest(DOWN, "sha256-" + subject.removeprefix("sha256:"))
    assert digest is not None, f"no fallback tag for {subject} on the target:\n{target.log()}"
    raw, media_type = target.repo(DOWN).manifests[digest]
    assert media_type == OCI_INDEX
    return [entry["digest"] for entry in json.loads(raw)["manifests"]]


def test_an_upstream_referrers_api_is_followed_recursively_and_the_target_fallback_lists_all() -> (
    None
):
    source = FakeRegistry("hub.test", referrers_api=True)
    target = FakeRegistry("quay.test")  # no referrers API, no OCI-Subject
    image, (sbom, sig, on_sbom) = _signed(source)

    report = _sync(source, target)

    entry = _entry(report)
    assert report.status == "ok", report.to_json(indent=2)
    assert (entry.action, entry.referrers.copied, entry.referrers.failed) == ("copied", 3, 0)
    for digest in (sbom, sig, on_sbom):
        assert target.has_manifest(DOWN, digest), f"referrer {digest} not copied"
    assert sorted(_listed(target, image)) == sorted([sbom, sig])
    assert _listed(target, sbom) == [on_sbom]

    # Warm: one referrers request per mirrored digest upstream, nothing written.
    source.requests.clear()
    target.requests.clear()
    again = _sync(source, target)
    entry = _entry(again)
    assert (entry.action, entry.referrers.present, entry.referrers.copied) == ("up_to_date", 3, 0)
    asked = sorted(r.path.rsplit("/", 1)[1] for r in source.matching("GET", "/referrers/"))
    assert asked == sorted([image, sbom, sig, on_sbom]), source.log()
    assert not source.matching("GET", "/manifests/"), f"a warm run pulled:\n{source.log()}"
    assert not [r for r in target.requests if r.method in {"PUT", "POST"}], target.log()


def test_a_target_answering_oci_subject_keeps_its_own_list_and_gets_no_fallback_tag() -> None:
    source = FakeRegistry("hub.test", referrers_api=True)
    target = FakeRegistry("quay.test", referrers_api=True)
    _, referrers = _signed(source)

    report = _sync(source, target)

    assert _entry(report).referrers.copied == 3, report.to_json(indent=2)
    assert all(target.has_manifest(DOWN, d) for d in referrers)
    assert not [t for t in target.repo(DOWN).tags if t.startswith("sha256-")], target.log()


def test_an_upstream_answering_404_is_read_through_its_fallback_tags_and_asked_once() -> None:
    source = FakeRegistry("hub.test")  # unknown route: 404, as Distribution 2.8 answers
    target = FakeRegistry("quay.test")
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    sig = _referrer(source, image, SIG, b"signature", tag="sha256-" + image[7:] + ".sig")

    report = _sync(source, target)

    entry = _entry(report)
    assert (report.status, entry.referrers.copied) == ("ok", 1), report.to_json(indent=2)
    assert target.tag_digest(DOWN, "sha256-" + image[7:] + ".sig") == sig
    probes = source.matching("GET", "/referrers/")
    assert len(probes) == 1 and probes[0].status == 404, source.log()


def test_a_fallback_tag_upstream_means_no_referrers_api_request_at_all() -> None:
    source = FakeRegistry("hub.test", referrers_api=True)
    target = FakeRegistry("quay.test")
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    sig = _referrer(source, image, SIG, b"signature")
    raw, media_type = source.repo(UP).manifests[sig]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": media_type, "digest": sig, "size": len(raw), "artifactType": SIG}
        ],
    }
    fallback = "sha256-" + image[7:]
    source.add_manifest(UP, json.dumps(index).encode(), OCI_INDEX, fallback)

    report = _sync(source, target)

    assert _entry(report).referrers.copied == 1, report.to_json(indent=2)
    assert target.tag_digest(DOWN, fallback) == source.tag_digest(UP, fallback)
    assert not source.matching("GET", "/referrers/"), source.log()


def test_a_referrers_answer_filtered_unasked_fails_the_tag_after_the_image_is_in_place() -> None:
    source = FakeRegistry("hub.test", referrers_api=True)
    target = FakeRegistry("quay.test")
    image, _ = _signed(source)
    filtered = httpx.Response(
        200,
        headers={"Content-Type": OCI_INDEX, "OCI-Filters-Applied": "artifactType"},
        json={"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []},
    )
    source.fail("GET", r"/referrers/", filtered, filtered)

    report = _sync(source, target)

    entry = _entry(report)
    assert report.status == "failed", report.to_json(indent=2)
    assert entry.action == "failed" and entry.error is not None, entry
    assert entry.error.code == "REFERRERS_INVALID", entry.error
    assert "OCI-Filters-Applied" in entry.error.message, entry.error
    assert target.tag_digest(DOWN, "1.0") == image, "the image itself must be tagged first"


def test_dry_run_counts_referrers_it_would_copy_and_writes_nothing() -> None:
    source = FakeRegistry("hub.test", referrers_api=True)
    target = FakeRegistry("quay.test")
    _signed(source)

    report = _sync(source, target, RunOptions(dry_run=True))

    entry = _entry(report)
    # The API names the referrers of referrers too, so a dry run counts all three.
    assert (entry.action, entry.referrers.would_copy) == ("would_copy", 3), report.to_json()
    assert not [r for r in target.requests if r.method in {"PUT", "POST"}], target.log()


def test_a_referrer_that_fails_fails_the_tag_with_its_own_cause_and_the_others_still_copy() -> None:
    source = FakeRegistry("hub.test")
    target = FakeRegistry("quay.test")
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    hexa = image.removeprefix("sha256:")
    att = _referrer(source, image, SBOM, b"attestation", tag=f"sha256-{hexa}.att")
    sig = _referrer(source, image, SIG, b"signature", tag=f"sha256-{hexa}.sig")
    denied = httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "no"}]})
    source.fail("GET", rf"/manifests/{sig}$", denied)

    report = _sync(source, target)

    entry = _entry(report)
    assert (report.status, entry.action) == ("failed", "failed"), report.to_json(indent=2)
    assert entry.error is not None and entry.error.code == "DENIED", entry.error
    assert (entry.referrers.copied, entry.referrers.failed) == (1, 1), entry.referrers
    assert target.tag_digest(DOWN, "1.0") == image, "the image is tagged before its referrers"
    assert target.tag_digest(DOWN, f"sha256-{hexa}.att") == att
    assert report.summary.referrers_failed == 1
    assert report.retryable is False, "a refused referrer is not fixed by a retry"


def test_a_referrer_the_target_refuses_with_503_makes_the_failed_run_retryable() -> None:
    source = FakeRegistry("hub.test")
    target = FakeRegistry("quay.test")
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    target.add_image(DOWN, image_of([b"app layer"]), tag="1.0")
    hexa = image.removeprefix("sha256:")
    _referrer(source, image, SIG, b"signature", tag=f"sha256-{hexa}.sig")
    target.fail("POST", r"/blobs/uploads", *[httpx.Response(503)] * 50)

    report = _sync(source, target)

    entry = _entry(report)
    assert (report.status, entry.state, entry.action) == ("failed", "up_to_date", "failed"), (
        report.to_json(indent=2)
    )
    assert entry.error is not None and entry.error.code == "HTTP_503", entry.error
    assert report.retryable is True, "a 503 is temporary: the function must answer 500"


def test_an_upstream_429_on_a_referrer_defers_the_tag() -> None:
    source = FakeRegistry("hub.test", ratelimit=(100, 50))
    target = FakeRegistry("quay.test")
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    hexa = image.removeprefix("sha256:")
    sig = _referrer(source, image, SIG, b"signature", tag=f"sha256-{hexa}.sig")
    spent = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
    source.fail("GET", rf"/manifests/{sig}$", httpx.Response(429, headers=spent))

    report = _sync(source, target)

    entry = _entry(report)
    assert (report.status, entry.action) == ("partial", "deferred"), report.to_json(indent=2)
    assert entry.error is not None and entry.error.code == "PULL_BUDGET", entry.error
    assert target.tag_digest(DOWN, "1.0") == image
    assert target.tag_digest(DOWN, f"sha256-{hexa}.sig") is None


def test_a_tag_list_that_fails_is_asked_once_for_discovery_and_referrers_together() -> None:
    source = FakeRegistry("hub.test")
    target = FakeRegistry("quay.test")
    image = source.add_image(UP, image_of([b"app layer"]), tag="1.0")
    target.add_image(DOWN, image_of([b"app layer"]), tag="1.0")
    denied = httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "no"}]})
    source.fail("GET", r"/tags/list", *[denied] * 5)

    report = _sync(source, target, discover=True)

    error = report.images[0].discovery_error
    assert error is not None and error.code == "DENIED", report.to_json(indent=2)
    assert len(source.matching("GET", r"/tags/list")) == 1, source.log()
    assert target.tag_digest(DOWN, "1.0") == image
