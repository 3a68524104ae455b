"""What the benchmarks share: measured subprocesses, synthetic images pushed with the test bed's
admin client, registry-side counts, tables.

Benchmarks use image-sync as a black box (its CLI in a subprocess) and compare it with skopeo on
the same local CNCF Distribution registries the tests use (`tests.bed.registry`). Nothing here
reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed.images import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, sha256_digest
from tests.bed.rawclient import RawClient
from tests.bed.registry import REGISTRY_BINARY, RegistryServer

__all__ = [
    "MIB",
    "PASSWORD_ENV",
    "REPO_ROOT",
    "SKOPEO",
    "TIME",
    "USER_ENV",
    "AccessWindow",
    "ImageSpec",
    "LogLine",
    "Measured",
    "PushedImage",
    "Tool",
    "check_tools",
    "fill_registry",
    "human_size",
    "image_sync_argv",
    "image_sync_env",
    "load_average",
    "machine_summary",
    "median",
    "print_table",
    "process_cpu_s",
    "push_index_image",
    "ratio",
    "rmtree",
    "run_measured",
    "short_name",
    "skopeo_env",
    "storage_bytes",
    "verify_copies",
    "write_image_sync_config",
    "write_skopeo_sync_yaml",
]

MIB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parent.parent
SKOPEO = os.environ.get("BENCH_SKOPEO", "/usr/bin/skopeo")
TIME = "/usr/bin/time"  # GNU time (Debian package `time`): `-v` reports the peak RSS

_CHUNK = MIB
#: Admin calls stream layers of up to hundreds of MiB.
ADMIN_TIMEOUT = 120.0


def check_tools() -> list[str]:
    """What is missing to run a benchmark (empty when all is there)."""
    missing = []
    for path, package in ((REGISTRY_BINARY, "docker-registry"), (SKOPEO, "skopeo"), (TIME, "time")):
        if not os.access(path, os.X_OK):
            missing.append(f"{path} (Debian package {package})")
    return missing


# -- measured subprocesses ---------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One finished process: wall time (monotonic, around the whole process), peak RSS."""

    argv: tuple[str, ...]
    wall_s: float
    max_rss_kib: int
    cpu_s: float  # user + system CPU seconds of the process (and children it waited for)
    returncode: int
    stdout: str
    stderr: str
    user_s: float = 0.0  # the user part of cpu_s

    @property
    def max_rss_mib(self) -> float:
        return self.max_rss_kib / 1024

    def check(self) -> Measured:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.argv)} exited with {self.returncode}:\n"
                f"{self.stderr[-3000:]}\n{self.stdout[-2000:]}"
            )
        return self


_MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
_CPU = re.compile(r"(?:User|System) time \(seconds\): ([0-9.]+)")
_USER_CPU = re.compile(r"User time \(seconds\): ([0-9.]+)")


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900.0,
) -> Measured:
    """Run `argv` under GNU `time -v`; its report goes to a file so the tool's stderr stays
    clean. The peak RSS is that of the process (and any children it waited for)."""
    with tempfile.NamedTemporaryFile(prefix="bench-time-", suffix=".txt") as report:
        started = time.monotonic()
        done = subprocess.run(
            [TIME, "-v", "-o", report.name, *argv],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.monotonic() - started
        text = Path(report.name).read_text()
    match = _MAX_RSS.search(text)
    return Measured(
        argv=tuple(argv),
        wall_s=wall,
        max_rss_kib=int(match.group(1)) if match else -1,
        cpu_s=sum(float(x) for x in _CPU.findall(text)),
        user_s=sum(float(x) for x in _USER_CPU.findall(text)),
        returncode=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
    )


def skopeo_env(home: Path) -> dict[str, str]:
    """skopeo with its own, empty state. As root, containers/image keeps its blob-info cache in
    /var/lib/containers/cache; `_CONTAINERS_ROOTLESS_UID` (containers/image's own switch, set by
    podman) makes it use `$XDG_DATA_HOME` instead, so runs neither share nor leave state."""
    for sub in ("data", "config", "run"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DOCKER_"))}
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_RUNTIME_DIR=str(home / "run"),
        _CONTAINERS_ROOTLESS_UID=str(os.getuid() or 65534),
        REGISTRY_AUTH_FILE=str(home / "auth.json"),
    )
    return env


def image_sync_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """image-sync with no Docker config of the caller's (credentials only from the config)."""
    (home / "docker").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SYNC_")}
    env.update(DOCKER_CONFIG=str(home / "docker"), **(extra or {}))
    return env


def image_sync_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sync", *args]


@dataclass(frozen=True)
class ImageSpec:
    """One image to mirror: `upstream` and `target` are `host:port/repo`."""

    name: str
    upstream: str
    target: str
    tags: tuple[str, ...]


def write_image_sync_config(
    path: Path,
    images: Iterable[ImageSpec],
    registries: Mapping[str, Mapping[str, str]],
) -> Path:
    config = {
        "images": [
            {"name": i.name, "upstream": i.upstream, "target": i.target, "tags": list(i.tags)}
            for i in images
        ],
        "check_new_tags": False,
        "registries": {host: dict(settings) for host, settings in registries.items()},
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def write_skopeo_sync_yaml(
    path: Path, source_host: str, images: Mapping[str, Sequence[str]]
) -> Path:
    """A `skopeo sync --src yaml` source: these repositories and tags of one plain-HTTP
    registry (JSON is YAML)."""
    doc = {
        source_host: {
            "tls-verify": False,
            "images": {repo: list(tags) for repo, tags in images.items()},
        }
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


#: Environment variables that carry a Basic-auth target's credentials to image-sync.
USER_ENV, PASSWORD_ENV = "BENCH_TARGET_USER", "BENCH_TARGET_PASSWORD"


def short_name(repo: str) -> str:
    return repo.rsplit("/", 1)[-1]


class Tool:
    """One tool mirroring `images` from `upstream_host` into `target` (as `mirror/NAME`)."""

    def __init__(
        self,
        name: str,
        *,
        images: Sequence[PushedImage],
        upstream_host: str,
        target: RegistryServer,
        target_host: str,
        home: Path,
    ) -> None:
        self.name = name
        self.images = list(images)
        self.target = target
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        by_repo: dict[str, list[str]] = {}
        for image in images:
            by_repo.setdefault(image.repo, []).append(image.tag)
        creds = {}
        if target.username is not None and target.password is not None:
            creds = {USER_ENV: target.username, PASSWORD_ENV: target.password}
        if name == "image-sync":
            settings: dict[str, dict[str, str]] = {
                upstream_host: {"tls": "disabled"},
                target_host: {"tls": "disabled"},
            }
            if creds:
                settings[target_host].update(
                    username=f"env:{USER_ENV}", password=f"env:{PASSWORD_ENV}"
                )
            config = write_image_sync_config(
                home / "image-sync.json",
                [
                    ImageSpec(
                        name=short_name(repo),
                        upstream=f"{upstream_host}/{repo}",
                        target=f"{target_host}/mirror/{short_name(repo)}",
                        tags=tuple(tags),
                    )
                    for repo, tags in by_repo.items()
                ],
                settings,
            )
            self.argv = image_sync_argv("--config", str(config), "--json", "sync", "--no-discover")
            self.env = image_sync_env(home, creds)
        else:
            source = write_skopeo_sync_yaml(home / "skopeo-sync.yaml", upstream_host, by_repo)
            self.argv = [
                SKOPEO,
                "sync",
                "--all",
                "--preserve-digests",
                "--src",
                "yaml",
                "--dest",
                "docker",
                "--dest-tls-verify=false",
            ]
            if creds:
                self.argv.append(f"--dest-creds={creds[USER_ENV]}:{creds[PASSWORD_ENV]}")
            self.argv += [str(source), f"{target_host}/mirror"]
            self.env = skopeo_env(home)

    def run(self) -> Measured:
        m = run_measured(self.argv, env=self.env, cwd=REPO_ROOT).check()
        if self.name == "image-sync":
            status = json.loads(m.stdout)["status"]
            if status != "ok":
                raise RuntimeError(f"image-sync run ended {status}: {m.stdout[-2000:]}")
        return m

    def verify(self) -> None:
        problems = verify_copies(
            self.target, [(f"mirror/{short_name(i.repo)}", i.tag, i.digest) for i in self.images]
        )
        if problems:
            raise RuntimeError(f"{self.name} left its target wrong: {problems[:3]}")


# -- synthetic images --------------------------------------------------------------------------


class LayerStream:
    """A gzip'd tar holding one file of `size` seeded random bytes, produced in chunks.

    Deflate level 0 ("stored" blocks) keeps it a valid `tar+gzip` that is as incompressible as
    its content, at memcpy speed. After iteration, `digest`, `size` and `diff_id` are set.
    """

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.content_size = size
        self.digest = ""
        self.diff_id = ""
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        rng = random.Random(self.key)
        deflate = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip wrapper, mtime 0
        tar_hash, gz_hash = hashlib.sha256(), hashlib.sha256()
        gz_size = 0
        info = tarfile.TarInfo(f"bench/{hashlib.sha256(self.key.encode()).hexdigest()[:16]}")
        info.size, info.mtime, info.mode = self.content_size, 0, 0o644
        pieces: Iterator[bytes] = _tar_pieces(
            info.tobuf(format=tarfile.USTAR_FORMAT), rng, self.content_size
        )
        for piece in pieces:
            tar_hash.update(piece)
            out = deflate.compress(piece)
            if out:
                gz_hash.update(out)
                gz_size += len(out)
                yield out
        out = deflate.flush()
        gz_hash.update(out)
        gz_size += len(out)
        yield out
        self.digest = "sha256:" + gz_hash.hexdigest()
        self.diff_id = "sha256:" + tar_hash.hexdigest()
        self.size = gz_size


def _tar_pieces(header: bytes, rng: random.Random, size: int) -> Iterator[bytes]:
    yield header
    left = size
    while left:
        n = min(_CHUNK, left)
        yield rng.randbytes(n)
        left -= n
    yield b"\0" * ((-size) % 512) + b"\0" * 1024  # pad the file, then the end-of-archive


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=2).encode()


@dataclass(frozen=True)
class PushedImage:
    repo: str
    tag: str
    digest: str
    blob_bytes: int  # configs and layers, all platforms
    blobs: int


def push_index_image(
    raw: RawClient,
    repo: str,
    tag: str,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    layers: int,
    layer_size: int,
) -> PushedImage:
    """Push an OCI index over one OCI manifest per platform; every layer distinct (seeded by
    registry-independent names, so a rerun builds the same bytes) and streamed, never held."""
    entries: list[dict[str, object]] = []
    blob_bytes = blobs = 0
    for platform in platforms:
        os_name, arch = platform.split("/")[:2]
        descriptors, diff_ids = [], []
        for i in range(layers):
            layer = LayerStream(f"{repo}:{tag}:{platform}:{i}", layer_size)
            raw.push_blob_stream(repo, layer)
            descriptors.append(
                {"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
            )
            diff_ids.append(layer.diff_id)
            blob_bytes += layer.size
            blobs += 1
        config = _dumps(
            {
                "architecture": arch,
                "os": os_name,
                "created": "2024-01-01T00:00:00Z",
                "config": {"Env": [f"BENCH_IMAGE={repo}:{tag}"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        )
        raw.push_blob(repo, config)
        blob_bytes += len(config)
        blobs += 1
        manifest = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": sha256_digest(config),
                    "size": len(config),
                },
                "layers": descriptors,
            }
        )
        digest = raw.push_manifest(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "platform": {"architecture": arch, "os": os_name},
            }
        )
    index = _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    digest = raw.push_manifest(repo, tag, index, OCI_INDEX)
    return PushedImage(repo, tag, digest, blob_bytes, blobs)


def fill_registry(
    server: RegistryServer,
    repos: Sequence[str],
    tags: Sequence[str],
    *,
    layers: int,
    layer_size: int,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    workers: int = 2,
) -> list[PushedImage]:
    """Push len(repos) x len(tags) index images, `workers` at a time."""

    def one(item: tuple[str, str]) -> PushedImage:
        with RawClient(server, timeout=ADMIN_TIMEOUT) as raw:
            return push_index_image(
                raw, item[0], item[1], platforms=platforms, layers=layers, layer_size=layer_size
            )

    work = [(repo, tag) for repo in repos for tag in tags]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, work))


# -- what the registries saw -------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def storage_bytes(server: RegistryServer) -> int:
    """Bytes of blob content the registry stores (layers, configs and manifests, each once)."""
    root = server.storage_dir / "docker" / "registry" / "v2" / "blobs"
    if not root.exists():
        return 0
    return sum(p.stat().st_size for p in root.rglob("data") if p.is_file())


_LOG_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+|-)'
)


@dataclass(frozen=True)
class LogLine:
    method: str
    path: str
    status: int
    size: int  # response body bytes


@dataclass
class AccessWindow:
    """The registry's access-log lines between `open()` and `close()` (flush markers left out),
    with response sizes, which `RegistryServer.requests()` does not keep."""

    server: RegistryServer
    _offset: int = 0
    lines: list[LogLine] = field(default_factory=list)

    def open(self) -> AccessWindow:
        self.server.clear_requests()  # waits until every earlier request is logged
        self._offset = self.server.access_log.stat().st_size
        self.lines = []
        return self

    def close(self) -> list[LogLine]:
        self.server.requests()  # waits until every request so far is logged
        with self.server.access_log.open("rb") as f:
            f.seek(self._offset)
            text = f.read().decode("utf-8", "replace")
        self.lines = [
            LogLine(m["method"], m["path"], int(m["status"]), int(m["size"].replace("-", "0")))
            for m in map(_LOG_LINE.search, text.splitlines())
            if m is not None and "bed-flush=" not in m["path"]
        ]
        return self.lines

    def blob_bytes_served(self) -> int:
        return sum(
            line.size
            for line in self.lines
            if line.method == "GET" and "/blobs/" in line.path and line.status == 200
        )


# -- output ----------------------------------------------------------------------------------------


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    out: Callable[[str], None] = print,
) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out(f"\n{title}")
    for n, row in enumerate(cells):
        out(
            "  ".join(
                c.rjust(w) if n and i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            out("  ".join("-" * w for w in widths))


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine_summary() -> str:
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        skopeo = subprocess.run(
            [SKOPEO, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        skopeo = "skopeo missing"
    return (
        f"machine: {os.cpu_count()} CPUs, {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"Python {sys.version.split()[0]}, {skopeo}, registry {REGISTRY_BINARY}; "
        f"load average {load_average()}"
    )


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def verify_copies(target: RegistryServer, expected: Iterable[tuple[str, str, str]]) -> list[str]:
    """Problems with `(repo, tag, digest)` on the target (empty when all are there, exact)."""
    problems = []
    with RawClient(target, timeout=ADMIN_TIMEOUT) as admin:
        for repo, tag, digest in expected:
            got = admin.head_manifest(repo, tag)
            if got != digest:
                problems.append(f"{repo}:{tag}: target has {got}, upstream {digest}")
    return problems
