"""What the benchmarks share: measured subprocesses, synthetic images, registry-side counts, a
delaying proxy, tables.

Benchmarks use image-sync as a black box (its CLI in a subprocess) and compare it with skopeo on
the same local CNCF Distribution registries the tests use (`tests.bed.registry`). Nothing here
reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.bed.registry import REGISTRY_BINARY, RegistryServer

__all__ = [
    "MIB",
    "PASSWORD_ENV",
    "REPO_ROOT",
    "SKOPEO",
    "TIME",
    "USER_ENV",
    "AccessWindow",
    "DelayProxy",
    "ImageSpec",
    "LogLine",
    "Measured",
    "PushedImage",
    "Pusher",
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

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

_CHUNK = MIB
_MANIFEST_ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


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


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, indent=2).encode()


@dataclass(frozen=True)
class PushedImage:
    repo: str
    tag: str
    digest: str
    blob_bytes: int  # configs and layers, all platforms
    blobs: int


class Pusher:
    """Admin pushes to one test-bed registry: Basic credentials, or tokens minted directly."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        auth: httpx.Auth | None = None
        if server.auth == "basic":
            assert server.username is not None and server.password is not None
            auth = httpx.BasicAuth(server.username, server.password)
        self._http = httpx.Client(base_url=server.url, auth=auth, timeout=120.0)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, repo: str, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        ts = self.server.token_server
        if ts is not None:
            if repo not in self._tokens:
                access = [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
                self._tokens[repo] = ts.mint(access, lifetime=3600)
            headers["Authorization"] = f"Bearer {self._tokens[repo]}"
        return headers

    def _expect(self, response: httpx.Response, *statuses: int) -> httpx.Response:
        if response.status_code not in statuses:
            raise RuntimeError(
                f"{response.request.method} {response.request.url} -> {response.status_code} "
                f"{response.text[:300]}"
            )
        return response

    def _start(self, repo: str) -> httpx.URL:
        r = self._expect(
            self._http.post(f"/v2/{repo}/blobs/uploads/", headers=self._headers(repo)), 202
        )
        return r.url.join(r.headers["Location"])

    def _finish(self, repo: str, location: httpx.URL, digest: str, body: bytes = b"") -> None:
        url = location.copy_merge_params({"digest": digest})
        headers = self._headers(repo, **{"Content-Type": "application/octet-stream"})
        self._expect(self._http.put(url, headers=headers, content=body), 201)

    def blob(self, repo: str, data: bytes) -> str:
        digest = _sha256(data)
        self._finish(repo, self._start(repo), digest, data)
        return digest

    def layer(self, repo: str, layer: LayerStream) -> None:
        """Stream the layer in one PATCH (its digest is known only at the end), then commit."""
        location = self._start(repo)
        r = self._expect(
            self._http.patch(
                location,
                headers=self._headers(repo, **{"Content-Type": "application/octet-stream"}),
                content=iter(layer),
            ),
            202,
        )
        self._finish(repo, r.url.join(r.headers["Location"]), layer.digest)

    def manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        headers = self._headers(repo, **{"Content-Type": media_type})
        self._expect(
            self._http.put(f"/v2/{repo}/manifests/{reference}", headers=headers, content=data),
            201,
        )
        return _sha256(data)

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """What the registry resolves `reference` to (HEAD, full Accept list), None if absent."""
        response = self._http.head(
            f"/v2/{repo}/manifests/{reference}",
            headers=self._headers(repo, Accept=_MANIFEST_ACCEPT),
        )
        if response.status_code == 404:
            return None
        self._expect(response, 200)
        digest: str | None = response.headers.get("docker-content-digest")
        return digest

    def index_image(
        self,
        repo: str,
        tag: str,
        *,
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
        layers: int,
        layer_size: int,
    ) -> PushedImage:
        """An OCI index over one OCI manifest per platform; every layer distinct (seeded by
        registry-independent names, so a rerun builds the same bytes)."""
        entries: list[dict[str, object]] = []
        blob_bytes = blobs = 0
        for platform in platforms:
            os_name, arch = platform.split("/")[:2]
            descriptors, diff_ids = [], []
            for i in range(layers):
                layer = LayerStream(f"{repo}:{tag}:{platform}:{i}", layer_size)
                self.layer(repo, layer)
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
            self.blob(repo, config)
            blob_bytes += len(config)
            blobs += 1
            manifest = _dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": OCI_CONFIG,
                        "digest": _sha256(config),
                        "size": len(config),
                    },
                    "layers": descriptors,
                }
            )
            digest = self.manifest(repo, _sha256(manifest), manifest, OCI_MANIFEST)
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": os_name},
                }
            )
        index = _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        digest = self.manifest(repo, tag, index, OCI_INDEX)
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
        with Pusher(server) as pusher:
            return pusher.index_image(
                item[0], item[1], platforms=platforms, layers=layers, layer_size=layer_size
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


# -- WAN emulation -------------------------------------------------------------------------------


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delays every byte by `one_way` seconds in each direction
    (a round trip costs 2 * one_way), and a new connection's first request by one more round
    trip (the TCP handshake a real WAN would cost). Pure latency: no bandwidth limit.

    Runs its own asyncio loop in a daemon thread; `targets` are backend ports, `ports[i]` is
    where the proxy for `targets[i]` listens.
    """

    def __init__(self, targets: Sequence[int], one_way: float) -> None:
        self.targets = tuple(targets)
        self.one_way = one_way
        self.ports: list[int] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self.ports:
            raise RuntimeError(f"delay proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def port_for(self, backend: int) -> int:
        return self.ports[self.targets.index(backend)]

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        servers = []
        for backend in self.targets:
            server = await asyncio.start_server(
                functools.partial(self._connection, backend=backend), "127.0.0.1", 0
            )
            servers.append(server)
            self.ports.append(int(server.sockets[0].getsockname()[1]))
        self._ready.set()
        await self._stop.wait()
        for server in servers:
            server.close()
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, *, backend: int
    ) -> None:
        loop = asyncio.get_running_loop()
        self.connections += 1
        accepted = loop.time()
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                # SYN, SYN-ACK, then the request itself: nothing reaches the server before
                # 1.5 round trips after connect().
                self._pipe(client_r, server_w, not_before=accepted + 3 * self.one_way),
                self._pipe(server_r, client_w, not_before=0.0),
            )
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # stop(): end quietly (asyncio's stream callback would log a cancelled handler).
            pass
        finally:
            for w in (client_w, server_w):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, not_before: float
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(Exception):
                        if dst.can_write_eof():
                            dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await src.read(256 * 1024)
                queue.put_nowait((max(loop.time() + self.one_way, not_before), data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()


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
    with Pusher(target) as admin:
        for repo, tag, digest in expected:
            got = admin.manifest_digest(repo, tag)
            if got != digest:
                problems.append(f"{repo}:{tag}: target has {got}, upstream {digest}")
    return problems
