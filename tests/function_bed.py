"""The function in a real functions-framework server (gunicorn, as in production) on a free
loopback port, for the tests and benchmarks that call it over HTTP; optionally with fan-out
pointed at the local Cloud Tasks server, which delivers the tasks back to it.

The function's own URL (`FANOUT_URL`, also the tasks' OIDC audience) is the server's loopback
URL, so its port is chosen before the server starts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fake_cloud_tasks import FakeCloudTasks

__all__ = [
    "INVOKER",
    "QUEUE",
    "SCHEDULER_HEADERS",
    "FunctionServer",
    "free_port",
    "function_server",
    "log_lines",
    "scheduler_headers",
]

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_FRAMEWORK = Path(sys.executable).parent / "functions-framework"
PROJECT = "test-project"
QUEUE = f"projects/{PROJECT}/locations/europe-west1/queues/image-sync"
INVOKER = f"image-sync-invoker@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_HEADERS: Mapping[str, str] = {
    "User-Agent": "Google-Cloud-Scheduler",
    "X-CloudScheduler": "true",
    "X-CloudScheduler-JobName": "image-sync-schedule",
    "Content-Type": "application/json",
}


def scheduler_headers(schedule_time: str) -> dict[str, str]:
    """What Cloud Scheduler sends for the run scheduled at `schedule_time` (RFC 3339)."""
    return {**SCHEDULER_HEADERS, "X-CloudScheduler-ScheduleTime": schedule_time}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class FunctionServer:
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text("utf-8", "replace")


def log_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of the server's stdout (other lines are skipped)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def function_server(
    config_path: Path,
    logs: Path,
    *,
    tasks: FakeCloudTasks | None,
    workers: int = 1,
    threads: int = 6,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[FunctionServer]:
    """The function under functions-framework (gunicorn), fan-out pointed at `tasks` when given.
    `workers` processes of `threads` threads each: requests served at once."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / "stdout.log", logs / "stderr.log"
    base_env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith(("FANOUT_", "SYNC_"))
    }
    (logs / "docker").mkdir(exist_ok=True)
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        env = base_env | {
            "IMAGE_SYNC_CONFIG": str(config_path),
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "DOCKER_CONFIG": str(logs / "docker"),
            "PYTHONUNBUFFERED": "1",
            "WORKERS": str(workers),
            "THREADS": str(threads),
        }
        if tasks is not None:
            env |= {
                "FANOUT_QUEUE": QUEUE,
                "FANOUT_URL": url,
                "FANOUT_SERVICE_ACCOUNT": INVOKER,
                "CLOUD_TASKS_ENDPOINT": tasks.endpoint,
            }
        env |= dict(extra_env or {})
        with stdout.open("ab") as out, stderr.open("ab") as err:
            process = subprocess.Popen(
                [
                    str(FUNCTIONS_FRAMEWORK),
                    "--target",
                    "sync_images",
                    "--source",
                    str(ROOT / "main.py"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        if _wait_ready(process, url):
            try:
                yield FunctionServer(url, process, stdout, stderr)
            finally:
                _stop(process)
            return
        _stop(process)
    raise RuntimeError(f"functions-framework did not start:\n{stderr.read_text()[-2000:]}")


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            # The framework answers /favicon.ico itself (404) without calling the function.
            if httpx.get(f"{url}favicon.ico", timeout=1, trust_env=False).status_code == 404:
                return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False


def write_config(path: Path, images: Sequence[Mapping[str, object]], hosts: Sequence[str]) -> Path:
    """A config of `images` with plain HTTP to each of `hosts`, discovery off."""
    config = {
        "images": list(images),
        "check_new_tags": False,
        "registries": {host: {"tls": "disabled"} for host in hosts},
    }
    path.write_text(json.dumps(config, indent=2))
    return path
