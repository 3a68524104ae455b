"""Cold and warm sync: image-sync vs `skopeo sync`, into an empty local registry and again.

Upstream (anonymous, filled once): 4 repositories x 3 tags, each tag a 2-platform OCI index whose
platforms have 3 layers of 20 MiB of random bytes (a valid, incompressible tar+gzip); every layer
is distinct (1.4 GiB). Each round gives each tool a fresh, empty target registry with Basic auth
and runs it twice: cold (everything to copy), then warm (nothing to copy):

- image-sync: `python -m sync --config CFG --json sync --no-discover` (one process, 12 tags);
- skopeo: `skopeo sync --all --preserve-digests --src yaml --dest docker` over the same tags.

Rounds alternate which tool goes first. Wall time is measured around the process, CPU (user +
system, and user alone) and peak RSS with GNU `time -v`, bytes on the registry side (blob bytes
the upstream served, bytes the target stores). Then image-sync's peak RSS copying one image with
one small and one 300 MiB layer (`python -m sync copy`, against `skopeo copy`), and its import
baseline.

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
    ADMIN_TIMEOUT,
    MIB,
    REPO_ROOT,
    SKOPEO,
    AccessWindow,
    Measured,
    PushedImage,
    Tool,
    check_tools,
    fill_registry,
    human_size,
    image_sync_argv,
    image_sync_env,
    load_average,
    machine_summary,
    median,
    print_table,
    push_index_image,
    ratio,
    rmtree,
    run_measured,
    skopeo_env,
    storage_bytes,
    verify_copies,
    write_image_sync_config,
)
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer, start_registry

RSS_TARGET_MIB = 45.0
COLD_TARGET = 0.8  # image-sync wall / skopeo sync wall, cold
WARM_TARGET = 0.8  # the same, warm
CPU_TARGET = 1.0  # image-sync client CPU per GiB / skopeo's
TOOLS = ("image-sync", "skopeo")


@dataclass(frozen=True)
class Sizes:
    repos: int
    tags: int
    layers: int
    layer_size: int
    rounds: int
    big_layers: tuple[int, ...]  # single-layer images for the RSS-vs-layer-size check


FULL = Sizes(
    repos=4, tags=3, layers=3, layer_size=20 * MIB, rounds=2, big_layers=(4 * MIB, 300 * MIB)
)
QUICK = Sizes(repos=2, tags=1, layers=1, layer_size=256 * 1024, rounds=1, big_layers=(MIB, 4 * MIB))


@dataclass(frozen=True)
class Run:
    tool: str
    round: int
    cold: Measured
    warm: Measured
    upstream_served: int
    target_stored: int
    reported: int | None  # image-sync's summary.bytes_copied
    load: str  # load average after the round


def _one_round(
    tool_name: str,
    n: int,
    upstream: RegistryServer,
    images: list[PushedImage],
    base: Path,
) -> Run:
    home = base / f"home-{n}-{tool_name}"
    target = start_registry("basic", base_dir=base / f"target-{n}-{tool_name}")
    try:
        tool = Tool(
            tool_name,
            images=images,
            upstream_host=upstream.host,
            target=target,
            target_host=target.host,
            home=home,
        )
        window = AccessWindow(upstream).open()
        cold = tool.run()
        window.close()
        tool.verify()
        warm = tool.run()
        reported = (
            int(json.loads(cold.stdout)["summary"]["bytes_copied"])
            if tool_name == "image-sync"
            else None
        )
        return Run(
            tool_name,
            n,
            cold,
            warm,
            window.blob_bytes_served(),
            storage_bytes(target),
            reported,
            load_average(),
        )
    finally:
        target.stop()
        rmtree(base / f"target-{n}-{tool_name}")
        rmtree(home)
        os.sync()  # write back this run's 1.4 GiB now, not during the next tool's run


def _big_layer_rss(upstream: RegistryServer, sizes: Sizes, base: Path) -> list[list[object]]:
    """Peak RSS of `python -m sync copy` and of `skopeo copy` for one image with one layer of
    each size: flat for a streaming copier."""
    rows: list[list[object]] = []
    for size in sizes.big_layers:
        repo = f"bench/big{size // MIB}"
        with RawClient(upstream, timeout=ADMIN_TIMEOUT) as raw:
            image = push_index_image(
                raw, repo, "1.0", platforms=("linux/amd64",), layers=1, layer_size=size
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
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 2; quick 1)")
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
        f"of {human_size(sizes.layer_size)} (random, all distinct); anonymous upstream, Basic-auth "
        f"target; {rounds} round(s) of a cold then a warm run per tool, fresh empty target each"
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
                for tool in TOOLS if n % 2 == 0 else TOOLS[::-1]:
                    run = _one_round(tool, n, upstream, images, base)
                    runs.append(run)
                    print(
                        f"  round {n + 1} {tool:10s} cold {run.cold.wall_s:6.2f} s "
                        f"{run.cold.cpu_s:6.2f} s CPU {run.cold.max_rss_mib:5.1f} MiB RSS | "
                        f"warm {run.warm.wall_s:5.2f} s {run.warm.cpu_s:5.2f} s CPU "
                        f"(load {run.load})",
                        flush=True,
                    )
            big_rows = _big_layer_rss(upstream, sizes, base)
        finally:
            upstream.stop()

    baseline = run_measured(image_sync_argv("--version"), cwd=REPO_ROOT).check()
    gib = total / (1024 * MIB)
    cold_wall: dict[str, float] = {}
    warm_wall: dict[str, float] = {}
    per_gib: dict[str, float] = {}
    rss: dict[str, float] = {}
    rows: list[list[object]] = []
    for tool in TOOLS:
        mine = [r for r in runs if r.tool == tool]
        cold_wall[tool] = median(r.cold.wall_s for r in mine)
        warm_wall[tool] = median(r.warm.wall_s for r in mine)
        per_gib[tool] = median(r.cold.cpu_s for r in mine) / gib
        rss[tool] = max(max(r.cold.max_rss_mib, r.warm.max_rss_mib) for r in mine)
        reported = mine[-1].reported
        rows.append(
            [
                tool,
                f"{cold_wall[tool]:.2f}",
                " ".join(f"{r.cold.wall_s:.2f}" for r in mine),
                f"{median(r.cold.cpu_s for r in mine):.2f}",
                f"{median(r.cold.user_s for r in mine):.2f}",
                f"{per_gib[tool]:.2f}",
                f"{rss[tool]:.1f}",
                f"{warm_wall[tool]:.2f}",
                " ".join(f"{r.warm.wall_s:.2f}" for r in mine),
                f"{median(r.warm.cpu_s for r in mine):.2f}",
                f"{mine[-1].upstream_served / MIB:.1f}",
                f"{mine[-1].target_stored / MIB:.1f}",
                f"{reported / MIB:.1f}" if reported is not None else "-",
            ]
        )
    rows.append(
        [
            "image-sync/skopeo",
            ratio(cold_wall["image-sync"], cold_wall["skopeo"]),
            "",
            "",
            "",
            ratio(per_gib["image-sync"], per_gib["skopeo"]),
            ratio(rss["image-sync"], rss["skopeo"]),
            ratio(warm_wall["image-sync"], warm_wall["skopeo"]),
            "",
            "",
            "",
            "",
            "",
        ]
    )
    print_table(
        f"Cold copy of {len(images)} tags ({total / MIB:.1f} MiB of blobs) into an empty registry, "
        "then a warm run (medians over the rounds)",
        [
            "tool",
            "cold s",
            "cold s (rounds)",
            "cold CPU s",
            "cold user s",
            "CPU s/GiB",
            "peak RSS MiB",
            "warm s",
            "warm s (rounds)",
            "warm CPU s",
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
    peak = max([rss["image-sync"], *big_rss])
    print("\ntargets:")
    for label, value, limit in (
        ("cold wall", cold_wall["image-sync"] / cold_wall["skopeo"], COLD_TARGET),
        ("warm wall", warm_wall["image-sync"] / warm_wall["skopeo"], WARM_TARGET),
        ("client CPU per GiB", per_gib["image-sync"] / per_gib["skopeo"], CPU_TARGET),
    ):
        print(
            f"  {label} <= {limit:.1f}x skopeo sync: {value:.2f}x -> "
            f"{'MET' if value <= limit else 'NOT MET'}"
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
