"""Cold copy: image-sync vs skopeo, copying the same images into an empty local registry.

Upstream (anonymous, filled once): 4 repositories x 3 tags, each tag a 2-platform OCI index whose
platforms have 3 layers of 20 MiB of random bytes (a valid, incompressible tar+gzip); every layer
is distinct. Each round copies all 12 tags into a fresh, empty target registry with

- image-sync: `python -m sync --config CFG --json sync --no-discover` (one process, 12 tags);
- skopeo: `skopeo copy --all --preserve-digests ...` once per tag, one after the other;

alternating which tool goes first. Wall time is measured around the process(es), peak RSS with
GNU `time -v` (skopeo: the largest of its 12 processes), bytes on the registry side (blob bytes
the upstream served, bytes the target stores). Then image-sync's peak RSS copying one image
with one small and one 300 MiB layer (`python -m sync copy`), and its import baseline.

Run: `.venv/bin/python bench/copy_bench.py` (`--quick` for a tiny smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    MIB,
    REPO_ROOT,
    SKOPEO,
    AccessWindow,
    ImageSpec,
    Measured,
    PushedImage,
    Pusher,
    check_tools,
    fill_registry,
    human_size,
    image_sync_argv,
    image_sync_env,
    load_average,
    machine_summary,
    median,
    print_table,
    ratio,
    rmtree,
    run_measured,
    skopeo_env,
    storage_bytes,
    verify_copies,
    write_image_sync_config,
)
from tests.bed.registry import RegistryServer, start_registry

RSS_TARGET_MIB = 80.0
WALL_TARGET = 1.0  # image-sync wall / skopeo wall


@dataclass(frozen=True)
class Sizes:
    repos: int
    tags: int
    layers: int
    layer_size: int
    rounds: int
    big_layers: tuple[int, ...]  # single-layer images for the RSS-vs-layer-size check


FULL = Sizes(
    repos=4, tags=3, layers=3, layer_size=20 * MIB, rounds=3, big_layers=(4 * MIB, 300 * MIB)
)
QUICK = Sizes(repos=2, tags=1, layers=1, layer_size=256 * 1024, rounds=1, big_layers=(MIB, 4 * MIB))


@dataclass(frozen=True)
class Run:
    tool: str
    round: int
    wall_s: float
    cpu_s: float
    rss_mib: float
    upstream_served: int
    target_stored: int
    reported: int | None  # image-sync's summary.bytes_copied


def _skopeo_round(
    upstream: RegistryServer, target: RegistryServer, images: list[PushedImage], home: Path
) -> tuple[float, float, float]:
    """One `skopeo copy` per tag, in turn: (total wall s, total CPU s, largest peak RSS MiB)."""
    wall, cpu, rss = 0.0, 0.0, 0.0
    env = skopeo_env(home)
    for image in images:
        m = run_measured(
            [
                SKOPEO,
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                f"docker://{upstream.host}/{image.repo}:{image.tag}",
                f"docker://{target.host}/{_target_repo(image.repo)}:{image.tag}",
            ],
            env=env,
        ).check()
        wall += m.wall_s
        cpu += m.cpu_s
        rss = max(rss, m.max_rss_mib)
    return wall, cpu, rss


def _target_repo(repo: str) -> str:
    return "mirror/" + repo.rsplit("/", 1)[-1]


def _image_sync_round(
    upstream: RegistryServer, target: RegistryServer, images: list[PushedImage], home: Path
) -> tuple[Measured, int]:
    by_repo: dict[str, list[str]] = {}
    for image in images:
        by_repo.setdefault(image.repo, []).append(image.tag)
    config = write_image_sync_config(
        home / "image-sync.json",
        [
            ImageSpec(
                name=repo.rsplit("/", 1)[-1],
                upstream=f"{upstream.host}/{repo}",
                target=f"{target.host}/{_target_repo(repo)}",
                tags=tuple(tags),
            )
            for repo, tags in by_repo.items()
        ],
        {upstream.host: {"tls": "disabled"}, target.host: {"tls": "disabled"}},
    )
    m = run_measured(
        image_sync_argv("--config", str(config), "--json", "sync", "--no-discover"),
        env=image_sync_env(home),
        cwd=REPO_ROOT,
    ).check()
    report = json.loads(m.stdout)
    if report["status"] != "ok":
        raise RuntimeError(f"image-sync run not ok: {m.stdout[-2000:]}")
    return m, int(report["summary"]["bytes_copied"])


def _one_round(
    tool: str,
    n: int,
    upstream: RegistryServer,
    images: list[PushedImage],
    base: Path,
) -> Run:
    home = base / f"home-{n}-{tool}"
    home.mkdir(parents=True)
    target = start_registry("anonymous", base_dir=base / f"target-{n}-{tool}")
    try:
        window = AccessWindow(upstream).open()
        reported: int | None = None
        if tool == "image-sync":
            m, reported = _image_sync_round(upstream, target, images, home)
            wall, cpu, rss = m.wall_s, m.cpu_s, m.max_rss_mib
        else:
            wall, cpu, rss = _skopeo_round(upstream, target, images, home)
        window.close()
        problems = verify_copies(target, [(_target_repo(i.repo), i.tag, i.digest) for i in images])
        if problems:
            raise RuntimeError(f"{tool} left the target wrong: {problems[:3]}")
        return Run(
            tool, n, wall, cpu, rss, window.blob_bytes_served(), storage_bytes(target), reported
        )
    finally:
        target.stop()
        rmtree(base / f"target-{n}-{tool}")
        rmtree(home)
        os.sync()  # write back this run's 1.4 GiB now, not during the next tool's run


def _big_layer_rss(upstream: RegistryServer, sizes: Sizes, base: Path) -> list[list[object]]:
    """Peak RSS of `python -m sync copy` and of `skopeo copy` for one image with one layer of
    each size: flat for a streaming copier."""
    rows: list[list[object]] = []
    for size in sizes.big_layers:
        repo = f"bench/big{size // MIB}"
        with Pusher(upstream) as pusher:
            image = pusher.index_image(
                repo, "1.0", platforms=("linux/amd64",), layers=1, layer_size=size
            )
        row: list[object] = [f"{size / MIB:g}"]
        for tool in ("image-sync", "skopeo"):
            home = base / f"home-big-{tool}"
            home.mkdir(parents=True)
            target = start_registry("anonymous", base_dir=base / "target-big")
            try:
                src = f"{upstream.host}/{repo}:1.0"
                dst = f"{target.host}/mirror/big:1.0"
                if tool == "image-sync":
                    config = write_image_sync_config(
                        home / "c.json",
                        [],
                        {upstream.host: {"tls": "disabled"}, target.host: {"tls": "disabled"}},
                    )
                    m = run_measured(
                        image_sync_argv("--config", str(config), "copy", src, dst),
                        env=image_sync_env(home),
                        cwd=REPO_ROOT,
                    ).check()
                else:
                    m = run_measured(
                        [
                            SKOPEO,
                            "copy",
                            "--all",
                            "--preserve-digests",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            f"docker://{src}",
                            f"docker://{dst}",
                        ],
                        env=skopeo_env(home),
                    ).check()
                if verify_copies(target, [("mirror/big", "1.0", image.digest)]):
                    raise RuntimeError(f"{tool} copied the {size}-byte layer image wrongly")
                row += [f"{m.max_rss_mib:.1f}", f"{m.wall_s:.2f}"]
            finally:
                target.stop()
                rmtree(base / "target-big")
                rmtree(home)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 3; quick 1)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or sizes.rounds
    missing = check_tools()
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        return 2

    print(machine_summary())
    print(
        f"scenario: {sizes.repos} repos x {sizes.tags} tags, 2 platforms x {sizes.layers} layers "
        f"of {human_size(sizes.layer_size)} (random, all distinct); {rounds} round(s), "
        "fresh empty target each time"
    )
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
        base = Path(tmp)
        upstream = start_registry("anonymous", base_dir=base / "upstream")
        try:
            images = fill_registry(
                upstream,
                [f"bench/app{i}" for i in range(sizes.repos)],
                [f"1.0.{j}" for j in range(sizes.tags)],
                layers=sizes.layers,
                layer_size=sizes.layer_size,
            )
            os.sync()  # the first round must not pay for writing back the fill
            total = sum(i.blob_bytes for i in images)
            print(f"upstream filled: {len(images)} tags, {total / MIB:.1f} MiB of blobs")
            runs: list[Run] = []
            for n in range(rounds):
                order = ("image-sync", "skopeo") if n % 2 == 0 else ("skopeo", "image-sync")
                for tool in order:
                    run = _one_round(tool, n, upstream, images, base)
                    runs.append(run)
                    print(
                        f"  round {n + 1} {tool:10s} {run.wall_s:7.2f} s  "
                        f"{run.cpu_s:6.2f} s CPU  {run.rss_mib:6.1f} MiB RSS  "
                        f"(load {load_average()})",
                        flush=True,
                    )
            big_rows = _big_layer_rss(upstream, sizes, base)
        finally:
            upstream.stop()

    baseline = run_measured(image_sync_argv("--version"), cwd=REPO_ROOT).check()
    rows: list[list[object]] = []
    walls: dict[str, float] = {}
    rss: dict[str, float] = {}
    for tool in ("image-sync", "skopeo"):
        mine = [r for r in runs if r.tool == tool]
        walls[tool] = median(r.wall_s for r in mine)
        rss[tool] = max(r.rss_mib for r in mine)
        reported = mine[-1].reported
        rows.append(
            [
                tool,
                f"{walls[tool]:.2f}",
                " ".join(f"{r.wall_s:.2f}" for r in mine),
                f"{median(r.cpu_s for r in mine):.2f}",
                f"{rss[tool]:.1f}",
                f"{mine[-1].upstream_served / MIB:.1f}",
                f"{mine[-1].target_stored / MIB:.1f}",
                f"{reported / MIB:.1f}" if reported is not None else "-",
            ]
        )
    rows.append(
        [
            "image-sync/skopeo",
            ratio(walls["image-sync"], walls["skopeo"]),
            "",
            "",
            ratio(rss["image-sync"], rss["skopeo"]),
            "",
            "",
            "",
        ]
    )
    print_table(
        f"Cold copy of {len(images)} tags ({total / MIB:.1f} MiB of blobs) into an empty registry",
        [
            "tool",
            "wall s (median)",
            "wall s (rounds)",
            "CPU s (median)",
            "peak RSS MiB",
            "upstream served MiB",
            "target stores MiB",
            "reported MiB",
        ],
        rows,
    )
    print_table(
        "Peak RSS copying one image with one layer (`python -m sync copy` vs `skopeo copy`)",
        ["layer MiB", "image-sync RSS MiB", "image-sync wall s", "skopeo RSS MiB", "skopeo wall s"],
        big_rows,
    )
    print(f"\nbaseline: `python -m sync --version` peak RSS {baseline.max_rss_mib:.1f} MiB")
    print(f"load average at the end: {load_average()}")
    big_rss = [float(str(r[1])) for r in big_rows]
    wall_ratio = walls["image-sync"] / walls["skopeo"]
    peak = max([rss["image-sync"], *big_rss])
    print("\ntargets:")
    print(
        f"  wall <= {WALL_TARGET:.1f}x skopeo: {wall_ratio:.2f}x -> "
        f"{'MET' if wall_ratio <= WALL_TARGET else 'NOT MET'}"
    )
    print(
        f"  peak RSS <= {RSS_TARGET_MIB:.0f} MiB whatever the layer size: {peak:.1f} MiB "
        f"(layers {', '.join(f'{s / MIB:g}' for s in sizes.big_layers)} MiB: "
        f"{', '.join(f'{r:.1f}' for r in big_rss)}) -> "
        f"{'MET' if peak <= RSS_TARGET_MIB else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
