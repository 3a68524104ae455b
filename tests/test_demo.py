"""`make demo` keeps working: `python -m demo` runs end to end as a subprocess (real registries,
the real function under functions-framework, curl), leaves no process or temp dir behind, also
when interrupted, says what to install when Distribution is missing, and mirrors the real
config."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo import plan
from sync.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, "-m", "demo"]
_RUN_TIMEOUT = 150.0
# A terminal's foreground job has SIGINT at its default. Tests run as a background job of a
# non-interactive shell (as CI may) inherit it ignored, and a Python started with SIGINT ignored
# never raises KeyboardInterrupt: reset it before the demo starts, as a terminal would have it.
_WITH_DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


def _demo_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IMAGE_SYNC_TEST_REGISTRY"}
    env.update(overrides)
    return env


def _cmdline(pid: int) -> str | None:
    """The command line of a live (not zombie) process, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return None


def _leftovers(output: str) -> list[str]:
    """Processes the demo started that still run, and its temp dir if it is still there."""
    tmp = re.search(r"temp directory:\s+(\S+)", output)
    assert tmp, output
    port = re.search(r"--port (\d+)", output)
    marks = [tmp[1]] + ([f"--port {port[1]}"] if port else [])
    left = [tmp[1]] if Path(tmp[1]).exists() else []
    if not Path("/proc").is_dir():  # not Linux: the printed PIDs only
        pids = [int(p) for p in re.findall(r"\bpid (\d+)", output)]
        return left + [str(pid) for pid in pids if _alive_elsewhere(pid)]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            cmdline = _cmdline(int(entry.name))
            if cmdline and any(mark in cmdline for mark in marks):
                left.append(f"pid {entry.name}: {cmdline}")
    return left


def _alive_elsewhere(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _cmdline(pid) is None:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.integration
def test_demo_runs_end_to_end_and_keep_leaves_it_to_try_the_cli_on() -> None:
    """`make demo KEEP=1`: every step, then the registries, Secret Manager, function and config
    stay up for the printed commands until the printed `kill PID`, which cleans up."""
    started = time.monotonic()
    done = subprocess.run(
        [*DEMO, "--keep"],
        cwd=ROOT,
        env=_demo_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT,
        check=False,
    )
    out = done.stdout
    kill = re.search(r"^\s+kill (\d+)$", out, re.MULTILINE)
    try:
        assert done.returncode == 0, out + done.stderr
        configured, discovered = plan.expected_tag_count()
        for line in [
            *(f"[{n}/11] " for n in range(1, 12)),
            "anonymous request to the target: HTTP 401",
            "$ image-sync status",
            "exit code 4 (4 = every tag compared, some would be copied)",
            "-H 'User-Agent: Google-Cloud-Scheduler'",
            "-H 'X-CloudScheduler-JobName: image-sync-daily'",
            "--data '{}'",
            '"status": "ok"',
            f"as expected: {configured} configured tags and {discovered} discovered ones",
            "the function read quay-user and quay-password from Secret Manager",
            '"scheduler_job": "image-sync-daily"',
            "exit code 0 (0 = every configured tag is up to date)",
            f"status ok: {configured + discovered} tags, 1 copied, "
            f"{configured + discovered - 1} up to date, 0 failed",
            "copied examples-helloworld-v1:latest (outdated)",
            "Demo finished in",
            "Try the CLI",
        ]:
            assert line in out, f"{line!r} missing from the demo's output:\n{out}"
        assert out.count("HTTP 200") == 2, out
        # The window by version: v2.16.0 is newer than v2.9.0; v2.15.0 is configured.
        assert re.search(
            r"v2\.16\.0\s+no\s+no\n\s+v2\.15\.0\s+yes\s+no\n\s+v2\.9\.0\s+no\s+no", out
        ), out
        assert len(re.findall(r"\bmissing\s+would_copy\b", out)) == configured, out
        assert len(re.findall(r"\bup_to_date\s+up_to_date\b", out)) == configured, out
        assert time.monotonic() - started < 120, "the demo should take well under two minutes"
        assert kill, f"no `kill PID` printed:\n{out}"
        env_file = re.search(r"^\s+\. (\S+/env\.sh)$", out, re.MULTILINE)
        assert env_file, out
        commands = [
            line.strip()
            for line in out.split("Try the CLI", 1)[1].split("Stop everything", 1)[0].splitlines()
            if line.strip().startswith("image-sync ")
        ]
        assert len(commands) >= 8, commands
        for command in commands:
            tried = subprocess.run(
                ["bash", "-c", f". {env_file[1]} && {command}"],
                cwd=ROOT,
                env=_demo_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert tried.returncode in (0, 4), f"{command}: exit {tried.returncode}\n{tried.stderr}"
            assert tried.stdout.strip(), f"{command} printed nothing"
    finally:
        if kill:
            os.kill(int(kill[1]), signal.SIGTERM)
    assert _wait_gone(int(kill[1]), 30), "the kept demo did not stop on SIGTERM"
    assert _leftovers(out) == []


@pytest.mark.integration
def test_demo_ctrl_c_stops_everything() -> None:
    """Ctrl-C on a terminal: SIGINT to the demo's whole process group, mid-run."""
    with subprocess.Popen(
        _WITH_DEFAULT_SIGINT + DEMO[1:],
        cwd=ROOT,
        env=_demo_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            deadline = time.monotonic() + _RUN_TIMEOUT
            for line in proc.stdout:  # until the function is up: every kind of process runs
                lines.append(line)
                if "answering at http://" in line or time.monotonic() > deadline:
                    break
            assert any("answering at http://" in line for line in lines), "".join(lines)
            os.killpg(proc.pid, signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
        except BaseException:
            proc.kill()
            raise
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "interrupted (Ctrl-C)" in out, out
    assert re.search(r"stopped function \(pid \d+\)", out), out
    assert _leftovers(out) == []


@pytest.mark.integration
def test_demo_without_distribution_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        DEMO,
        cwd=ROOT,
        env=_demo_env(PATH=str(tmp_path)),  # no docker-registry, registry or docker here
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sudo apt-get install docker-registry" in done.stdout
    assert "brew install distribution" in done.stdout
    assert "[2/11]" not in done.stdout


def test_demo_mirrors_the_real_config() -> None:
    """Same images, repositories and configured tags as image-sync-config.json; the demo's own
    config (with local hosts) is valid."""
    real = json.loads((ROOT / "image-sync-config.json").read_text())
    assert [
        (i.name, f"docker.io/{i.upstream_repo}", f"quay.io/{i.target_repo}", list(i.tags))
        for i in plan.IMAGES
    ] == [(i["name"], i["upstream"], i["target"], i["tags"]) for i in real["images"]]
    config = plan.demo_config("127.0.0.1:5001", "127.0.0.1:5002")
    registries = config["registries"]
    assert isinstance(registries, dict)
    target = dict(registries["127.0.0.1:5002"])
    assert target.pop("tls") == "disabled"
    assert target == real["registries"]["quay.io"]
    parsed = parse_config(config)
    assert parsed.image_names == tuple(i.name for i in plan.IMAGES)
    assert parsed.check_new_tags is True
    for image in plan.IMAGES:
        assert len(image.discovered) <= plan.MAX_TAGS_TO_CHECK
        assert not set(image.discovered) & set(image.tags)
        assert set(image.discovered) <= set(image.extra_tags)


@pytest.mark.parametrize("image", plan.IMAGES, ids=lambda i: i.name)
def test_demo_images_differ_per_tag(image: plan.DemoImage) -> None:
    """Each upstream tag has its own content (except aliases like latest = 1.0), and moving
    the changed tag gives a new digest."""
    digests = {tag: image.image(tag).digest for tag in image.upstream_tags}
    for alias, source in image.same_as.items():
        assert digests.pop(alias) == digests[source]
    assert len(set(digests.values())) == len(digests)
    moved = plan.CHANGED_IMAGE.image(plan.CHANGED_TAG, salt=":moved").digest
    assert moved != plan.CHANGED_IMAGE.image(plan.CHANGED_TAG).digest
