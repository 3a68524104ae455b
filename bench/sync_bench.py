"""Warm runs and a slow network: image-sync `sync` vs `skopeo sync`.

(a) LAN, Bearer auth on both sides: a Docker-Hub-like upstream (anonymous pull, token server)
    and a Quay-like target (robot credentials, token server); 4 repositories x 3 tags, 2-platform
    OCI indexes with 3 layers of 1 MiB. After a full (cold) sync, warm runs: per tag, the requests
    each registry answered (from its access log) and the tokens each token server issued, and the
    wall time against `skopeo sync --all --preserve-digests --src yaml --dest docker` over the
    same tags (each tool has its own target registry; the upstream is shared).

(b) WAN: the test bed's proxy delays every request by 50 ms (a round trip; a new connection
    costs one more round trip) in front of the upstream and the targets; 4 repositories x 25
    tags (100), 2 platforms, one tiny layer. The upstream is anonymous and the targets use Basic
    auth, so no token server is involved: token realms point at the token server directly and
    would bypass the proxy.
    Cold (empty target) and warm runs of both tools.

Run: `.venv/bin/python bench/sync_bench.py` (`--quick` for a tiny smoke run). While working on
image-sync's latency: `--skip-lan --wan-tags 25 --no-skopeo` times image-sync alone over the WAN
(skopeo's runs take about ten minutes there), `--runs N` repeats each phase (cold on a fresh
target) and prints every run, and `--timeline DIR` records every request and the engine's phases
of image-sync's runs (`bench/timeline.py`) and prints where the time went (`--profile`: and a
cProfile of each run beside it).

image-sync runs in (b) use compiled bytecode, as an installed package does: when the environment
sets PYTHONDONTWRITEBYTECODE, it is dropped for image-sync and an untimed `status` run compiles
what a sync imports (`--no-bytecode` keeps it: every run then compiles every module it imports).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    MIB,
    REPO_ROOT,
    AccessWindow,
    LogLine,
    Measured,
    Tool,
    check_tools,
    fill_registry,
    human_size,
    load_average,
    machine_summary,
    median,
    print_table,
    ratio,
    run_measured,
)
from bench.timeline import summarize
from tests.bed.faults import Delay
from tests.bed.proxy import FaultProxy
from tests.bed.registry import AuthMode, RegistryServer, start_registry
from tests.bed.token_server import TokenRequest, parse_scope

WARM_TARGET = 0.05  # image-sync warm wall / skopeo sync warm wall, on the WAN
COLD_TARGET = 0.2
#: image-sync's own wall time over the WAN for the full 4 x 25 = 100 tags, in seconds.
WAN_TAGS_FOR_GOALS = 100
WARM_GOAL_S = 1.3
COLD_GOAL_S = 11.0


@dataclass(frozen=True)
class Scenario:
    repos: int
    tags: int
    layers: int
    layer_size: int


@dataclass(frozen=True)
class Sizes:
    lan: Scenario
    wan: Scenario
    warm_runs: int
    one_way_s: float


FULL = Sizes(
    lan=Scenario(repos=4, tags=3, layers=3, layer_size=MIB),
    # 4 x 25 = 100 tags makes skopeo's cold run take over 7 minutes here: 4 x 10 by default,
    # `--wan-tags 25` for the full 100.
    wan=Scenario(repos=4, tags=10, layers=1, layer_size=1024),
    warm_runs=3,
    one_way_s=0.025,
)
QUICK = Sizes(
    lan=Scenario(repos=2, tags=2, layers=1, layer_size=4096),
    wan=Scenario(repos=1, tags=2, layers=1, layer_size=1024),
    warm_runs=1,
    one_way_s=0.002,
)


# -- (a) warm run on the LAN, request and token counts -----------------------------------------


@dataclass(frozen=True)
class Counts:
    requests: int
    manifest_head: int
    manifest_get: int
    blob: int
    writes: int  # POST, PUT, PATCH, DELETE
    ping: int  # GET /v2/
    other: int
    tokens: int
    max_tokens_per_repo: int


def _counts(lines: Sequence[LogLine], tokens: Sequence[TokenRequest]) -> Counts:
    per_repo: collections.Counter[str] = collections.Counter()
    for token in tokens:
        repos = {p[1] for s in token.scopes_requested if (p := parse_scope(s)) is not None}
        for repo in repos or {"(none)"}:
            per_repo[repo] += 1
    mh = sum(1 for r in lines if r.method == "HEAD" and "/manifests/" in r.path)
    mg = sum(1 for r in lines if r.method == "GET" and "/manifests/" in r.path)
    blob = sum(1 for r in lines if r.method in ("HEAD", "GET") and "/blobs/" in r.path)
    writes = sum(1 for r in lines if r.method in ("POST", "PUT", "PATCH", "DELETE"))
    ping = sum(1 for r in lines if r.method == "GET" and r.path.split("?")[0] == "/v2/")
    return Counts(
        requests=len(lines),
        manifest_head=mh,
        manifest_get=mg,
        blob=blob,
        writes=writes,
        ping=ping,
        other=len(lines) - mh - mg - blob - writes - ping,
        tokens=len(tokens),
        max_tokens_per_repo=max(per_repo.values(), default=0),
    )


def _observed(upstream: RegistryServer, tool: Tool) -> tuple[Measured, Counts, Counts]:
    """One run with the upstream's and the tool's target's requests and tokens recorded."""
    windows = [AccessWindow(upstream).open(), AccessWindow(tool.target).open()]
    servers = [upstream.token_server, tool.target.token_server]
    for ts in servers:
        if ts is not None:
            ts.clear_requests()
    m = tool.run()
    up_lines, down_lines = (w.close() for w in windows)
    up_tokens, down_tokens = (ts.fetches() if ts is not None else [] for ts in servers)
    return m, _counts(up_lines, up_tokens), _counts(down_lines, down_tokens)


def lan(sizes: Sizes, base: Path) -> tuple[dict[str, float], bool]:
    s = sizes.lan
    servers: list[RegistryServer] = []

    def start(auth: AuthMode, name: str) -> RegistryServer:
        server = start_registry(auth, base_dir=base / name)
        servers.append(server)
        return server

    try:
        upstream = start("bearer-hub", "lan-upstream")
        images = fill_registry(
            upstream,
            [f"bench/app{i}" for i in range(s.repos)],
            [f"1.{j}.0" for j in range(s.tags)],
            layers=s.layers,
            layer_size=s.layer_size,
        )
        tools = []
        for name in ("image-sync", "skopeo"):
            target = start("bearer-quay", f"lan-target-{name}")
            tools.append(
                Tool(
                    name,
                    images=images,
                    upstream_host=upstream.host,
                    target=target,
                    target_host=target.host,
                    home=base / f"lan-{name}",
                )
            )
        ntags = len(images)
        print(
            f"\n(a) LAN, Bearer (hub-like upstream, quay-like target): {s.repos} repos x "
            f"{s.tags} tags = {ntags}, 2 platforms x {s.layers} layers of "
            f"{human_size(s.layer_size)}",
            flush=True,
        )
        cold: dict[str, Measured] = {}
        for tool in tools:
            cold[tool.name] = tool.run()
            tool.verify()
        observed = {tool.name: _observed(upstream, tool) for tool in tools}
        warm: dict[str, list[Measured]] = {t.name: [observed[t.name][0]] for t in tools}
        for n in range(sizes.warm_runs - 1):
            for tool in tools if n % 2 else tools[::-1]:
                warm[tool.name].append(tool.run())
    finally:
        for server in servers:
            server.stop()

    rows: list[list[object]] = []
    for name in ("image-sync", "skopeo"):
        rows.append(
            [
                name,
                f"{cold[name].wall_s:.2f}",
                f"{cold[name].cpu_s:.2f}",
                f"{median(m.wall_s for m in warm[name]):.2f}",
                " ".join(f"{m.wall_s:.2f}" for m in warm[name]),
                f"{median(m.cpu_s for m in warm[name]):.2f}",
                f"{max(m.max_rss_mib for m in [cold[name], *warm[name]]):.1f}",
            ]
        )
    iw = median(m.wall_s for m in warm["image-sync"])
    sw = median(m.wall_s for m in warm["skopeo"])
    rows.append(
        [
            "image-sync/skopeo",
            ratio(cold["image-sync"].wall_s, cold["skopeo"].wall_s),
            "",
            ratio(iw, sw),
            "",
            "",
            "",
        ]
    )
    print_table(
        f"(a) wall time, {ntags} tags on the LAN",
        [
            "tool",
            "cold s",
            "cold CPU s",
            "warm s (median)",
            "warm s (runs)",
            "warm CPU s",
            "peak RSS MiB",
        ],
        rows,
    )

    count_rows: list[list[object]] = []
    for name in ("image-sync", "skopeo"):
        _, up, down = observed[name]
        for side, c in (("upstream", up), ("target", down)):
            count_rows.append(
                [
                    name,
                    side,
                    c.requests,
                    f"{c.requests / ntags:.2f}",
                    f"{c.manifest_head / ntags:.2f}",
                    c.manifest_get,
                    c.blob,
                    c.writes,
                    c.ping,
                    c.other,
                    c.tokens,
                    c.max_tokens_per_repo,
                ]
            )
    print_table(
        f"(a) one warm run: requests each registry answered, tokens each token server issued "
        f"({ntags} tags, {s.repos} repos)",
        [
            "tool",
            "side",
            "requests",
            "per tag",
            "manifest HEAD/tag",
            "manifest GET",
            "blob HEAD+GET",
            "writes",
            "GET /v2/",
            "other",
            "tokens",
            "max tokens/repo",
        ],
        count_rows,
    )
    _, up, down = observed["image-sync"]
    met = (
        up.manifest_head == ntags
        and down.manifest_head == ntags
        and up.manifest_get == 0
        and up.blob == 0
        # Referrers: one tag list per repository, one referrers API request per registry.
        and up.other <= s.repos + 1
        and down.manifest_get == 0
        and down.blob == 0
        and down.writes == 0
        and down.other == 0
        and up.max_tokens_per_repo <= 1
        and down.max_tokens_per_repo <= 1
    )
    print(
        "\n(a) target: warm image-sync run = 1 manifest HEAD per tag on each side, no upstream "
        "manifest or blob GETs, no writes, at most 1 token per repository per side (plus one "
        "GET /v2/ per side, and upstream one tag list per repository and one referrers request): "
        f"upstream {up.manifest_head} HEADs, {up.manifest_get + up.blob} GETs, "
        f"{up.other} tag lists and referrers requests, "
        f"{up.ping} pings, {up.tokens} tokens (max {up.max_tokens_per_repo}/repo); target "
        f"{down.manifest_head} HEADs, {down.writes} writes, {down.ping} pings, {down.tokens} "
        f"tokens (max {down.max_tokens_per_repo}/repo) -> {'MET' if met else 'NOT MET'}"
    )
    return {"warm": iw / sw}, met


# -- (b) WAN: cold and warm behind a delaying proxy ---------------------------------------------


@dataclass(frozen=True)
class WanOptions:
    """What part (b) runs: skopeo too or not, runs per phase, where timelines go."""

    skopeo: bool = True
    runs: int = 1
    timeline: Path | None = None
    #: With `timeline`: a cProfile of each run next to its timeline (slows the runs).
    profile: bool = False
    #: image-sync runs with compiled bytecode, as installed (see `_with_bytecode`).
    bytecode: bool = True


def _with_bytecode(tool: Tool) -> None:
    """Let image-sync's runs use compiled bytecode, as an installed package does (pip and Cloud
    Functions compile it): an environment with PYTHONDONTWRITEBYTECODE set (and a venv that uv
    installed without bytecode) would otherwise make every run compile every module it
    imports. An untimed `status` run (no writes) compiles what a sync imports."""
    tool.env = {k: v for k, v in tool.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    assert tool.argv[-2:] == ["sync", "--no-discover"], tool.argv
    run_measured([*tool.argv[:-2], "status"], env=tool.env, cwd=REPO_ROOT)


def _timed_argv(argv: list[str], out: Path) -> list[str]:
    """An image-sync argv (`python -m sync ...`) run under `bench.timeline` writing to `out`."""
    assert argv[1:3] == ["-m", "sync"], argv
    return [argv[0], "-m", "bench.timeline", str(out), *argv[3:]]


def wan(sizes: Sizes, base: Path, opts: WanOptions | None = None) -> tuple[float, float] | None:
    """Part (b); the ratios to skopeo sync (None without skopeo)."""
    opts = opts or WanOptions()
    names = ("image-sync", "skopeo") if opts.skopeo else ("image-sync",)
    s = sizes.wan
    servers: list[RegistryServer] = []
    proxies: dict[int, FaultProxy] = {}  # registry port -> the proxy in front of it
    try:
        upstream = start_registry("anonymous", base_dir=base / "wan-upstream")
        servers.append(upstream)
        images = fill_registry(
            upstream,
            [f"bench/app{i}" for i in range(s.repos)],
            [f"1.{j}.0" for j in range(s.tags)],
            layers=s.layers,
            layer_size=s.layer_size,
            workers=4,
        )
        # One target per tool and run: every cold run starts from an empty registry.
        targets = {}
        for run in range(opts.runs):
            for name in names:
                targets[(name, run)] = start_registry(
                    "basic", base_dir=base / f"wan-target-{name}-{run + 1}"
                )
                servers.append(targets[(name, run)])
        round_trip = 2 * sizes.one_way_s
        for srv in servers:
            # Every request costs a round trip, a new connection's first one a handshake more.
            proxies[srv.port] = FaultProxy(srv).start()
            proxies[srv.port].add_rule(Delay(round_trip, on_connect=round_trip))
        up_host = proxies[upstream.port].host
        print(
            f"\n(b) WAN: {sizes.one_way_s * 1000:g} ms each way through a proxy; anonymous "
            f"upstream, Basic-auth targets (no token servers); {s.repos} repos x {s.tags} tags "
            f"= {len(images)}, 2 platforms, 1 layer of {human_size(s.layer_size)}",
            flush=True,
        )
        walls: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for run in range(opts.runs):
            tools = [
                Tool(
                    name,
                    images=images,
                    upstream_host=up_host,
                    target=targets[(name, run)],
                    target_host=proxies[targets[(name, run)].port].host,
                    home=base / f"wan-{name}-{run + 1}",
                )
                for name in names
            ]
            for tool in tools:
                if tool.name == "image-sync" and opts.bytecode:
                    _with_bytecode(tool)
            plain = {tool.name: tool.argv for tool in tools}
            for phase in ("cold", "warm"):
                for tool in tools:
                    trace = None
                    if opts.timeline is not None and tool.name == "image-sync":
                        trace = opts.timeline / f"wan-{phase}-{run + 1}.jsonl"
                        tool.argv = _timed_argv(plain[tool.name], trace)
                        if opts.profile:
                            tool.env = {
                                **tool.env,
                                "BENCH_PROFILE": str(trace.with_suffix(".prof")),
                            }
                    before = sum(p.connections for p in proxies.values())
                    m = tool.run()
                    conns = sum(p.connections for p in proxies.values()) - before
                    walls.setdefault((tool.name, phase), []).append((m.wall_s, conns))
                    print(
                        f"  {phase} {tool.name:10s} {m.wall_s:7.2f} s (CPU {m.cpu_s:.2f} s, "
                        f"{conns} connections)",
                        flush=True,
                    )
                    if phase == "cold":
                        tool.verify()
                    if trace is not None:
                        print(summarize(trace), flush=True)
        # The median run of each (of one or two runs, the faster).
        results = {key: sorted(runs)[(len(runs) - 1) // 2] for key, runs in walls.items()}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        for server in servers:
            server.stop()

    rows: list[list[object]] = []
    for name in names:
        (cw, cc), (ww, wc) = results[(name, "cold")], results[(name, "warm")]
        rows.append([name, f"{cw:.2f}", cc, f"{ww:.2f}", wc])
    ratios = None
    if opts.skopeo:
        cold_ratio = results[("image-sync", "cold")][0] / results[("skopeo", "cold")][0]
        warm_ratio = results[("image-sync", "warm")][0] / results[("skopeo", "warm")][0]
        rows.append(["image-sync/skopeo", f"{cold_ratio:.3f}x", "", f"{warm_ratio:.3f}x", ""])
        ratios = cold_ratio, warm_ratio
    print_table(
        f"(b) WAN ({2 * sizes.one_way_s * 1000:g} ms round trip), {len(images)} tags"
        + (f", median of {opts.runs} runs" if opts.runs > 1 else ""),
        ["tool", "cold s", "cold connections", "warm s", "warm connections"],
        rows,
    )
    print("\n(b) targets:")
    if ratios is not None:
        print(
            f"  warm <= {WARM_TARGET}x skopeo sync: {ratios[1]:.3f}x -> "
            f"{'MET' if ratios[1] <= WARM_TARGET else 'NOT MET'}"
        )
        print(
            f"  cold <= {COLD_TARGET}x skopeo sync: {ratios[0]:.3f}x -> "
            f"{'MET' if ratios[0] <= COLD_TARGET else 'NOT MET'}"
        )
    for phase, goal in (("warm", WARM_GOAL_S), ("cold", COLD_GOAL_S)):
        wall = results[("image-sync", phase)][0]
        verdict = (
            ("MET" if wall <= goal else "NOT MET")
            if len(images) == WAN_TAGS_FOR_GOALS
            else f"not judged: {len(images)} tags, the goal is for {WAN_TAGS_FOR_GOALS}"
        )
        print(
            f"  image-sync {phase} <= {goal:g} s for {WAN_TAGS_FOR_GOALS} tags: "
            f"{wall:.2f} s -> {verdict}"
        )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--wan-tags", type=int, metavar="N", help="tags per repository in (b) (default 10)"
    )
    parser.add_argument("--skip-lan", action="store_true", help="only the WAN part (b)")
    parser.add_argument("--skip-wan", action="store_true", help="only the LAN part (a)")
    parser.add_argument(
        "--no-skopeo", action="store_true", help="(b) times image-sync alone (no ratios)"
    )
    parser.add_argument(
        "--runs", type=int, default=1, metavar="N", help="(b) cold and warm N times each"
    )
    parser.add_argument(
        "--timeline",
        type=Path,
        metavar="DIR",
        help="(b) record image-sync's requests and phases into DIR and summarize them",
    )
    parser.add_argument(
        "--profile", action="store_true", help="with --timeline: a cProfile of each run too"
    )
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="(b) keep PYTHONDONTWRITEBYTECODE if set: image-sync compiles its modules each run",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.wan_tags:
        sizes = dataclasses.replace(sizes, wan=dataclasses.replace(sizes.wan, tags=args.wan_tags))
    missing = check_tools()
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        return 2
    print(machine_summary())
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        if not args.skip_lan:
            lan(sizes, Path(tmp))
        if not args.skip_wan:
            if args.timeline is not None:
                args.timeline.mkdir(parents=True, exist_ok=True)
            wan(
                sizes,
                Path(tmp),
                WanOptions(
                    skopeo=not args.no_skopeo,
                    runs=args.runs,
                    timeline=args.timeline,
                    profile=args.profile,
                    bytecode=not args.no_bytecode,
                ),
            )
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
