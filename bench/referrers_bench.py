"""What mirroring referrers costs on a warm run: requests per tag, with and without signatures.

A Docker-Hub-like upstream (Bearer, anonymous pull) and Quay-like targets (Bearer, robot
credentials), CNCF Distribution 2.8 on loopback. 4 repositories x 3 tags, each tag a 2-platform
OCI index. Signed repositories also carry, per tag, what cosign and OCI 1.1 clients push: a
`.sig` and an `.att` tag on the index, a `.sig` tag on one child, and two OCI 1.1 referrers
listed in the referrers tag schema fallback `sha256-<hex>` (4 digest tags per tag), plus one
`.sig` tag of an image that is not mirrored.

Per configuration (unsigned or signed images; `referrers` off, as image-sync ran before it
mirrored referrers, or on): a cold sync, then warm runs through the CLI (a subprocess); for
the first warm run the requests each registry answered (its access log), per tag.

Run: `.venv/bin/python bench/referrers_bench.py` (`--quick`: 1 repository x 2 tags, 1 warm run).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine_summary, median, print_table, rmtree
from tests.bed import images
from tests.bed.registry import RegistryRequest, RegistryServer, start_registry
from tests.bed.signatures import (
    cosign_attestation,
    cosign_signature,
    digest_tag,
    fallback_index,
    fallback_tag,
    oci_referrer,
)
from tests.scenario import Scenario, seed

SBOM = "application/spdx+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclass(frozen=True)
class Row:
    name: str
    tags: int
    warm_s: list[float]
    upstream: collections.Counter[str]
    target: collections.Counter[str]


def _kind(request: RegistryRequest) -> str:
    path = request.path.split("?")[0]
    if path == "/v2/":
        return "ping"
    if "/manifests/" in path:
        return f"manifest {request.method}"
    if "/tags/list" in path:
        return "tag list"
    if "/referrers/" in path:
        return "referrers"
    if "/blobs/" in path:
        return "blob"
    return f"other {request.method}"


def _seed_repo(upstream: RegistryServer, repo: str, tags: int, signed: bool, base: int) -> None:
    tagged = {f"1.{j}.0": images.oci_index(base + j) for j in range(tags)}
    seed(upstream, repo, tagged)
    if not signed:
        return
    extra = {}
    for j, index in enumerate(tagged.values()):
        child = index.child("linux/arm64")
        sbom = oci_referrer(index, SBOM, seed=base + j)
        bundle = oci_referrer(index, BUNDLE, seed=base + j)
        extra[digest_tag(index.digest, "sig")] = cosign_signature(index.digest, seed=base + j)
        extra[digest_tag(index.digest, "att")] = cosign_attestation(index.digest, seed=base + j)
        extra[digest_tag(child.digest, "sig")] = cosign_signature(child.digest, seed=base + j)
        extra[fallback_tag(index.digest)] = fallback_index([sbom, bundle])
    old = images.oci_manifest(base + 999)
    extra[digest_tag(old.digest, "sig")] = cosign_signature(old.digest, seed=base + 999)
    seed(upstream, repo, extra)


def _configuration(
    name: str,
    servers: tuple[RegistryServer, RegistryServer],
    workdir: Path,
    repos: list[str],
    *,
    tags: int,
    referrers: bool,
    warm_runs: int,
) -> Row:
    upstream, target = servers
    scenario = Scenario(upstream, target, workdir)
    scenario.top["referrers"] = referrers
    for repo in repos:
        scenario.add_image(
            repo.replace("/", "-"),
            [f"1.{j}.0" for j in range(tags)],
            upstream_repo=repo,
            target_repo=f"mirror/{repo}",
        )
    cold = scenario.cli("--json", "sync")
    if cold.returncode != 0:
        raise SystemExit(f"{name}: cold sync failed\n{cold.describe()}")
    scenario.clear_requests()
    walls = []
    counts: tuple[collections.Counter[str], collections.Counter[str]] | None = None
    for _ in range(warm_runs):
        start = time.monotonic()
        warm = scenario.cli("--json", "sync")
        walls.append(time.monotonic() - start)
        if warm.returncode != 0 or warm.json()["summary"]["copied"] != 0:
            raise SystemExit(f"{name}: the warm run was not a no-op\n{warm.describe()}")
        if counts is None:
            counts = (
                collections.Counter(_kind(r) for r in upstream.requests()),
                collections.Counter(_kind(r) for r in target.requests()),
            )
        scenario.clear_requests()
    assert counts is not None
    return Row(name, len(repos) * tags, walls, *counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args()
    n_repos, n_tags, warm_runs = (1, 2, 1) if args.quick else (4, 3, 3)
    base = Path(tempfile.mkdtemp(prefix="referrers-bench-"))
    servers: list[RegistryServer] = []
    try:
        upstream = start_registry("bearer-hub", base_dir=base / "upstream")
        servers.append(upstream)
        plain = [f"bench/plain{i}" for i in range(n_repos)]
        signed = [f"bench/signed{i}" for i in range(n_repos)]
        for i, repo in enumerate(plain):
            _seed_repo(upstream, repo, n_tags, False, 100 * i)
        for i, repo in enumerate(signed):
            _seed_repo(upstream, repo, n_tags, True, 100 * (i + 50))
        print(machine_summary(), flush=True)
        print(
            f"{n_repos} repositories x {n_tags} tags per configuration, 2-platform OCI indexes; "
            f"signed: 4 digest tags per tag and 1 of an image not mirrored per repository; "
            f"{warm_runs} warm run(s) each",
            flush=True,
        )
        rows: list[Row] = []
        for name, repos, referrers in (
            ("unsigned, referrers off (before)", plain, False),
            ("unsigned, referrers on", plain, True),
            ("signed, referrers off (before)", signed, False),
            ("signed, referrers on", signed, True),
        ):
            target = start_registry("bearer-quay", base_dir=base / f"target-{len(rows)}")
            servers.append(target)
            work = base / f"work-{len(rows)}"
            work.mkdir()
            rows.append(
                _configuration(
                    name,
                    (upstream, target),
                    work,
                    repos,
                    tags=n_tags,
                    referrers=referrers,
                    warm_runs=warm_runs,
                )
            )
        kinds = ["manifest HEAD", "manifest GET", "tag list", "referrers", "ping"]
        headers = ["configuration", "side", *kinds, "other", "per tag", "warm s (median)"]
        table: list[list[str]] = []
        for row in rows:
            for side, counter in (("upstream", row.upstream), ("target", row.target)):
                other = sum(n for k, n in counter.items() if k not in kinds)
                total = sum(counter.values())
                table.append(
                    [
                        row.name if side == "upstream" else "",
                        side,
                        *[str(counter.get(k, 0)) for k in kinds],
                        str(other),
                        f"{total / row.tags:.2f}",
                        f"{median(row.warm_s):.2f}" if side == "upstream" else "",
                    ]
                )
        print_table("\nRequests each registry answered in one warm run (all tags):", headers, table)
    finally:
        for server in servers:
            server.stop()
        rmtree(base)


if __name__ == "__main__":
    main()
