"""The Cloud Function on this machine: `functions-framework` serving main.py, and the call Cloud
Scheduler makes."""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["SCHEDULER_HEADERS", "Call", "FunctionServer", "call_as_scheduler", "free_port"]

#: What Cloud Scheduler sends with the job's HTTP target (besides its OIDC token, which Cloud
#: Run checks before the function runs; there is none locally).
SCHEDULER_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", "Google-Cloud-Scheduler"),
    ("X-CloudScheduler", "true"),
    ("X-CloudScheduler-JobName", "image-sync-daily"),
    ("Content-Type", "application/json"),
)
_STARTUP_TIMEOUT = 60.0
_CALL_TIMEOUT = 120.0
_PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


class FunctionStartError(RuntimeError):
    """functions-framework exited or did not answer; the message has the tail of its log."""


@dataclass
class FunctionServer:
    """`functions-framework --target sync_images --source main.py` on a loopback port, in its
    own process group (so a terminal's Ctrl-C reaches the demo, which stops it in order)."""

    argv: tuple[str, ...]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        framework: Sequence[str],
        *,
        source: Path,
        env: Mapping[str, str],
        log_path: Path,
    ) -> FunctionServer:
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            argv = (
                *framework,
                "--target",
                "sync_images",
                "--source",
                str(source),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            )
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    argv,
                    cwd=source.parent,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            server = cls(argv=argv, port=port, log_path=log_path, process=process)
            try:
                if server._wait_ready():
                    return server
            except BaseException:
                server.stop()
                raise
            server.stop()  # the port was taken between choosing and binding it: try another
        raise FunctionStartError(f"functions-framework found no free port:\n{_tail(log_path)}")

    def _wait_ready(self) -> bool:
        """True once the server answers (GET /robots.txt: a 404 from the framework that never
        reaches the function); False when it died because the port was taken."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = _tail(self.log_path)
                if "Address already in use" in tail:
                    return False
                raise FunctionStartError(
                    f"functions-framework exited with {self.process.returncode}:\n{tail}"
                )
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
                try:
                    conn.request("GET", "/robots.txt")
                    conn.getresponse().read()
                    return True
                finally:
                    conn.close()
            time.sleep(0.1)
        raise FunctionStartError(
            f"functions-framework did not answer on :{self.port} within {_STARTUP_TIMEOUT:.0f}s:"
            f"\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGINT (gunicorn's quick shutdown), then SIGKILL to the whole process group (the
        workers) if it lingers. Safe to call twice."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Still running, so its group (pgid == its pid) cannot have been reused.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        else:
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)


@dataclass(frozen=True)
class Call:
    """One answered request: what was run (for the reader), the status and the body."""

    shown: str
    status: int
    body: str


def call_as_scheduler(
    url: str, *, curl: str | None, body_path: Path, announce: Callable[[str], None]
) -> Call:
    """POST `{}` with Cloud Scheduler's headers: with curl when there is one, else httpx.
    `announce` gets the command line (or the httpx call) before it runs."""
    if curl is not None:
        lines = [["-sS", "--noproxy", "*", "--max-time", f"{_CALL_TIMEOUT:.0f}", "-X", "POST", url]]
        lines += [["-H", f"{name}: {value}"] for name, value in SCHEDULER_HEADERS]
        lines += [["--data", "{}"], ["--output", str(body_path), "--write-out", "%{http_code}"]]
        argv = [curl, *(arg for line in lines for arg in line)]
        shown = " \\\n    ".join(shlex.join(line) for line in [["curl", *lines[0]], *lines[1:]])
        announce(shown)
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_CALL_TIMEOUT + 10,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"curl failed (exit {done.returncode}): {done.stderr.strip()}")
        return Call(shown, int(done.stdout.strip()), body_path.read_text("utf-8"))
    headers = dict(SCHEDULER_HEADERS)
    shown = f"(no curl here) httpx.post({url!r}, headers={headers!r}, content=b'{{}}')"
    announce(shown)
    with httpx.Client(trust_env=False, timeout=_CALL_TIMEOUT) as client:
        response = client.post(url, headers=headers, content=b"{}")
    return Call(shown, response.status_code, response.text)
