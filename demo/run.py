"""The demo's steps. `main()` is `python -m demo` (what `make demo` runs).

Exit codes: 0 the demo ran and everything behaved as described; 1 something did not (the
message says what, with the tail of the function's log when it matters); 2 a program is missing
(the message says what to install); 130 Ctrl-C, 128+N another signal. Whatever happens, every
process the demo started is stopped by its PID and the temp directory is removed.

`--keep` (`make demo KEEP=1`): the demo runs in a background process of its own that, once the
steps are done, leaves the registries, the Secret Manager, the function and the config running,
prints the commands to try the CLI on them and the `kill PID` that stops it all (and cleans up
as above); the command itself then returns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from demo import plan
from demo.console import Console
from demo.function import Call, FunctionServer, call_as_scheduler
from demo.tools import ROOT, MissingTool, Tools, find_tools
from tests.bed import registry as bed_registry
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer
from tests.fake_secret_manager import FakeSecretManager

__all__ = ["DemoFailure", "main"]

STEPS = 11
EXIT_OK, EXIT_FAILED, EXIT_MISSING_TOOL = 0, 1, 2
#: The line a kept demo prints when everything is ready; the launching process stops there.
READY_MARK = "--- image-sync demo: ready ---"
_CLI_TIMEOUT = 120.0
_LOOPBACK = "127.0.0.1,localhost"


class DemoFailure(Exception):
    """Something did not behave as the demo describes it."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so the cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _short(digest: object) -> str:
    return str(digest)[7:19] if isinstance(digest, str) and digest.startswith("sha256:") else "-"


def _tags(report: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for image in report["images"]:
        for tag in image["tags"]:
            yield image["name"], tag


@dataclass
class Demo:
    out: Console
    full_report: bool
    tools: Tools | None = None
    tmp: Path | None = None
    upstream: RegistryServer | None = None
    target: RegistryServer | None = None
    secrets: FakeSecretManager | None = None
    function: FunctionServer | None = None
    env: dict[str, str] = field(default_factory=dict)
    config_path: Path | None = None

    # -- steps ---------------------------------------------------------------------------------

    def run(self) -> None:
        self.find_programs()
        self.start_registries()
        self.start_secret_manager()
        self.seed_upstream()
        self.write_config()
        with self.out.step("`image-sync status` before the first run: missing everywhere"):
            self.status(expect=4, meaning="4 = every tag compared, some would be copied")
        with self.out.step("`image-sync discover`: upstream's newest versions, in version order"):
            listed = self.cli("discover", "examples-httpbin", expect=0)
            order = [line.split()[0] for line in listed.splitlines()[1:] if line.strip()]
            if order != ["v2.16.0", "v2.15.0", "v2.9.0"]:
                raise DemoFailure(f"discover listed {order}, not v2.16.0, v2.15.0, v2.9.0")
            self.out.say(
                "v2.16.0 comes before v2.9.0 (as versions; alphabetically it is the other way);"
            )
            self.out.say(
                f"the window is the newest {plan.MAX_TAGS_TO_CHECK} (max_tags_to_check): sync "
                "mirrors the two that are not configured, and leaves v2.8.0 alone"
            )
        self.start_function()
        self.first_call()
        with self.out.step("`image-sync status` after the run: up to date"):
            self.status(expect=0, meaning="0 = every configured tag is up to date")
        self.second_call()

    def find_programs(self) -> None:
        with self.out.step("Looking for the programs the demo runs"):
            tools = self.tools = find_tools()
            self.out.say(f"registry:            {tools.registry} ({tools.registry_version})")
            self.out.say(f"functions-framework: {tools.functions_framework[0]}")
            self.out.say(f"image-sync CLI:      {shlex.join(tools.image_sync)}")
            self.out.say(f"curl:                {tools.curl or 'not found (httpx will do)'}")
            self.tmp = Path(tempfile.mkdtemp(prefix="image-sync-demo-"))
            self.out.say(f"temp directory:      {self.tmp}")

    def start_registries(self) -> None:
        assert self.tools is not None and self.tmp is not None
        # The binary found above (the bed looks the same way; this keeps the two in step).
        bed_registry.REGISTRY_BINARY = self.tools.registry
        with self.out.step("Starting two local registries (CNCF Distribution) on loopback"):
            self.upstream = bed_registry.start_registry(
                "bearer-hub", base_dir=self.tmp / "upstream"
            )
            up = self.upstream
            self.out.say(f"upstream {up.url}  pid {up.process.pid}  stands in for docker.io")
            self.out.say(f"    Bearer tokens from {_realm(up)}; anonymous may pull (like Hub)")
            self.target = bed_registry.start_registry("bearer-quay", base_dir=self.tmp / "target")
            tg = self.target
            self.out.say(f"target   {tg.url}  pid {tg.process.pid}  stands in for quay.io")
            self.out.say(
                f"    Bearer tokens from {_realm(tg)}; only robot "
                f"{tg.username} may pull or push (like Quay)"
            )
            status = _anonymous_status(tg.url + "/v2/sail-dev/examples-helloworld-v1/tags/list")
            self.out.say(f"    anonymous request to the target: HTTP {status}")
            if status != 401:
                raise DemoFailure(f"the target answered an anonymous request with {status}")

    def start_secret_manager(self) -> None:
        assert self.target is not None
        user, password = self.target.username, self.target.password
        assert user is not None and password is not None
        with self.out.step("Starting a local Secret Manager with the target's credentials"):
            self.secrets = FakeSecretManager(
                {plan.SECRET_USER: user, plan.SECRET_PASSWORD: password}, project=plan.PROJECT
            ).start()
            self.out.say(
                f"{self.secrets.endpoint} speaks the Secret Manager REST API (project "
                f"{plan.PROJECT}); secrets {plan.SECRET_USER} and {plan.SECRET_PASSWORD} hold "
                "the robot's name and token"
            )

    def seed_upstream(self) -> None:
        upstream = self.upstream
        assert upstream is not None

        def push(image: plan.DemoImage) -> None:
            with RawClient(upstream) as raw:
                for tag in image.upstream_tags:
                    raw.push_image(image.upstream_repo, tag, image.image(tag))

        with self.out.step("Seeding upstream with small multi-platform images"):
            # One image per thread: the registry's PUTs take ~20 ms each, one after the other.
            with ThreadPoolExecutor(max_workers=len(plan.IMAGES)) as pool:
                for done in [pool.submit(push, image) for image in plan.IMAGES]:
                    done.result()
            for image in plan.IMAGES:
                same = ", ".join(f"{a} = {b}" for a, b in image.same_as.items())
                self.out.say(f"{image.upstream_repo}  ({image.shape})")
                self.out.say(
                    f"    configured: {' '.join(image.tags)}"
                    + (f" ({same})" if same else "")
                    + (f"; upstream only: {' '.join(image.extra_tags)}" if image.extra_tags else "")
                )

    def write_config(self) -> None:
        assert self.tmp is not None and self.upstream is not None and self.target is not None
        assert self.secrets is not None
        with self.out.step("Writing the demo config (image-sync-config.json, local hosts)"):
            config = plan.demo_config(self.upstream.host, self.target.host)
            self.config_path = self.tmp / "image-sync-config.json"
            self.config_path.write_text(json.dumps(config, indent=2) + "\n")
            docker_config = self.tmp / "docker-config"  # no ~/.docker/config.json credentials
            docker_config.mkdir()
            self.env = _child_env(
                IMAGE_SYNC_CONFIG=str(self.config_path),
                GOOGLE_CLOUD_PROJECT=plan.PROJECT,
                SECRET_MANAGER_ENDPOINT=self.secrets.endpoint,
                DOCKER_CONFIG=str(docker_config),
                PYTHONUNBUFFERED="1",
            )
            self.out.say(f"{self.config_path}:")
            self.out.block(
                f'"check_new_tags": true, "max_tags_to_check": {plan.MAX_TAGS_TO_CHECK},\n'
                + '"registries": '
                + json.dumps(config["registries"], indent=2)
            )
            self.out.say("the function and the CLI get this environment:")
            for name in ("IMAGE_SYNC_CONFIG", "GOOGLE_CLOUD_PROJECT", "SECRET_MANAGER_ENDPOINT"):
                self.out.block(f"{name}={self.env[name]}")
            self.cli("list", expect=0)

    def start_function(self) -> None:
        assert self.tools is not None and self.tmp is not None
        with self.out.step("Starting the Cloud Function locally (functions-framework, main.py)"):
            self.function = FunctionServer.start(
                self.tools.functions_framework,
                source=ROOT / "main.py",
                env=self.env,
                log_path=self.tmp / "function.log",
            )
            shown = shlex.join(["functions-framework", *self.function.argv[1:]])
            self.out.say(f"$ {shown}")
            self.out.say(
                f"pid {self.function.pid}; answering at {self.function.url} "
                f"(log lines go to {self.function.log_path.name})"
            )

    def first_call(self) -> None:
        with self.out.step("Calling the function as Cloud Scheduler does (job image-sync-daily)"):
            call = self.call()
            report = self.report_of(call)
            self.out.say("the report:")
            self.out.block(json.dumps(report if self.full_report else _abridged(report), indent=2))
            self.out.say("every tag:")
            self.out.block(_table(report))
            self.check_first(call, report)
            assert self.secrets is not None
            reads = [self.secrets.access_count(n) for n in (plan.SECRET_USER, plan.SECRET_PASSWORD)]
            self.out.say(
                f"the function read {plan.SECRET_USER} and {plan.SECRET_PASSWORD} from Secret "
                f"Manager ({sum(reads)} requests)"
            )
            self.out.say(self.function_log_summary())

    def second_call(self) -> None:
        assert self.upstream is not None
        image, tag = plan.CHANGED_IMAGE, plan.CHANGED_TAG
        with self.out.step(f"Moving upstream {image.upstream_repo}:{tag}, calling again"):
            new = image.image(tag, salt=":moved")
            with RawClient(self.upstream) as raw:
                raw.push_image(image.upstream_repo, tag, new)
            self.out.say(
                f"pushed another image under {image.upstream_repo}:{tag} "
                f"(now {_short(new.digest)}; it was {_short(image.image(tag).digest)})"
            )
            call = self.call()
            report = self.report_of(call)
            self.check_second(call, report, new.digest)
            s = report["summary"]
            self.out.say(
                f"status {report['status']}: {s['tags']} tags, "
                f"{s['copied']} copied, {s['up_to_date']} up to date, {s['failed']} failed, "
                f"{s['bytes_copied']} bytes in {report['duration_s']:.2f}s"
            )
            for name, entry in _tags(report):
                if entry["action"] == "copied":
                    self.out.block(
                        f"copied {name}:{entry['tag']} ({entry['state']}): "
                        f"{_short(entry['upstream_digest'])} now on the target; "
                        f"{entry['blobs_copied']} blobs sent, {entry['blobs_skipped']} already "
                        "there"
                    )
            self.out.say(self.function_log_summary())

    # -- helpers -------------------------------------------------------------------------------

    def cli(self, *args: str, expect: int, meaning: str = "") -> str:
        assert self.tools is not None
        self.out.say("$ " + shlex.join(["image-sync", *args]))
        done = subprocess.run(
            [*self.tools.image_sync, *args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_CLI_TIMEOUT,
            check=False,
        )
        self.out.block(done.stdout.rstrip())
        note = f" ({meaning})" if meaning else ""
        self.out.say(f"exit code {done.returncode}{note}")
        if done.returncode != expect:
            # Its log (stderr, INFO and up) is left out unless something went wrong.
            self.out.say("its log (stderr):")
            self.out.block(done.stderr.rstrip())
            raise DemoFailure(
                f"`image-sync {' '.join(args)}` exited {done.returncode}, not {expect}"
            )
        return done.stdout

    def status(self, *, expect: int, meaning: str) -> None:
        output = self.cli("status", expect=expect, meaning=meaning)
        # Exit code 1 also means "some tag failed": that is not what this step shows.
        if not re.search(r"\b0 failed\b", output):
            raise DemoFailure("`image-sync status` could not compare every tag (see NOTE)")

    def call(self) -> Call:
        assert self.function is not None and self.tools is not None and self.tmp is not None
        call = call_as_scheduler(
            self.function.url,
            curl=self.tools.curl,
            body_path=self.tmp / "response.json",
            announce=lambda shown: self.out.say(f"$ {shown}"),
        )
        self.out.say(f"HTTP {call.status}")
        return call

    def report_of(self, call: Call) -> dict[str, Any]:
        try:
            report = json.loads(call.body)
        except json.JSONDecodeError:
            raise DemoFailure(
                f"the function answered {call.status} with: {call.body[:500]}"
            ) from None
        if not isinstance(report, dict) or "summary" not in report:
            raise DemoFailure(f"the function answered {call.status} with: {call.body[:500]}")
        return report

    def check_first(self, call: Call, report: dict[str, Any]) -> None:
        configured, discovered = plan.expected_tag_count()
        s = report["summary"]
        problems = _status_problems(call, report)
        if s["copied"] != configured + discovered or s["tags"] != configured + discovered:
            problems.append(
                f"expected {configured} configured + {discovered} discovered tags, all copied; "
                f"got {s['tags']} tags, {s['copied']} copied"
            )
        want = {
            (image.name, tag, tag in image.discovered)
            for image in plan.IMAGES
            for tag in (*image.tags, *image.discovered)
        }
        got = {(name, entry["tag"], entry["discovered"]) for name, entry in _tags(report)}
        if got != want:
            problems.append(
                f"unexpected tags {sorted(got - want)}; missing tags {sorted(want - got)}"
            )
        self._fail_if(problems)
        self.out.say(
            f"as expected: {configured} configured tags and {discovered} discovered ones "
            f"(the newest {plan.MAX_TAGS_TO_CHECK} versions per image) copied; older versions "
            "left alone"
        )

    def check_second(self, call: Call, report: dict[str, Any], new_digest: str) -> None:
        changed = (plan.CHANGED_IMAGE.name, plan.CHANGED_TAG)
        problems = _status_problems(call, report)
        for name, entry in _tags(report):
            if (name, entry["tag"]) == changed:
                if entry["action"] != "copied" or entry["target_digest"] != new_digest:
                    problems.append(f"{name}:{entry['tag']} was {entry['action']}, not copied")
            elif entry["action"] != "up_to_date":
                problems.append(f"{name}:{entry['tag']} was {entry['action']}, not up_to_date")
        self._fail_if(problems)

    def _fail_if(self, problems: Sequence[str]) -> None:
        if problems:
            raise DemoFailure(
                "the function's report is not what the demo expects:\n  - "
                + "\n  - ".join(problems)
            )

    def function_log_summary(self) -> str:
        """How many JSON log lines the function wrote, and the last one (a few fields)."""
        if self.function is None:
            return ""
        entries: list[dict[str, Any]] = []
        for line in self.function.log_path.read_text("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        if not entries:
            return "the function has written no JSON log lines"
        keys = ("severity", "message", "event", "run_id", "scheduler_job")
        last = {key: entries[-1][key] for key in keys if key in entries[-1]}
        return (
            f"the function's log (JSON lines for Cloud Logging) has {len(entries)} entries; "
            f"the last:\n  {json.dumps(last)}"
        )

    # -- --keep --------------------------------------------------------------------------------

    def keep(self) -> None:
        """Prints how to use what runs and how to stop it, then waits for that signal."""
        assert self.tools is not None and self.tmp is not None and self.function is not None
        assert self.upstream is not None and self.target is not None
        env_file = self.tmp / "env.sh"
        exports = {
            name: self.env[name]
            for name in (
                "IMAGE_SYNC_CONFIG",
                "GOOGLE_CLOUD_PROJECT",
                "SECRET_MANAGER_ENDPOINT",
                "DOCKER_CONFIG",
                "NO_PROXY",
            )
        }
        lines = [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]
        cli = self.tools.image_sync
        if len(cli) == 1:
            lines.append(f'export PATH={shlex.quote(str(Path(cli[0]).parent))}:"$PATH"')
        else:
            lines.append(f"alias image-sync={shlex.quote(shlex.join(cli))}")
        env_file.write_text("\n".join(lines) + "\n")
        up, tg = self.upstream.host, self.target.host
        hello = f"{up}/istio/examples-helloworld-v1"
        self.out.line()
        self.out.line("Left running (--keep): both registries, the Secret Manager, the function.")
        self.out.say(f"upstream {up} (stands in for docker.io), target {tg} (for quay.io)")
        self.out.say(f"config  {self.env['IMAGE_SYNC_CONFIG']}")
        self.out.line("Try the CLI (in a shell of yours):")
        for command in (
            f". {shlex.quote(str(env_file))}",
            "image-sync --help",
            "image-sync validate",
            "image-sync list",
            "image-sync status",
            "image-sync discover examples-httpbin",
            "image-sync sync --dry-run",
            "image-sync sync examples-helloworld-v1",
            f"image-sync tags {hello} --versions",
            f"image-sync digest {hello}:1.0 --platform linux/arm64",
            f"image-sync manifest {hello}:1.0",
            f"image-sync copy {hello}:1.1 {tg}/sail-dev/try-copy",
            "image-sync check-deps",
            f"curl -sS -X POST -H 'Content-Type: application/json' --data '{{}}' "
            f"{self.function.url}",
        ):
            self.out.say(command)
        self.out.line(f"Stop everything (and remove {self.tmp}):")
        self.out.say(f"kill {os.getpid()}")
        self.out.line(READY_MARK)
        # Nobody reads this output any more: keep writing, to nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
                os.dup2(devnull, stream.fileno())
        while True:  # until SIGTERM/SIGHUP (Interrupted) or SIGINT (KeyboardInterrupt)
            signal.pause()

    # -- cleanup -------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stops everything started, newest first, each by its PID; removes the temp dir."""
        stopped: list[str] = []
        problems: list[str] = []

        def attempt(what: str, stop: Callable[[], object]) -> None:
            try:
                stop()
                stopped.append(what)
            except Exception as exc:
                problems.append(f"{what}: {exc}")

        if self.function is not None:
            attempt(f"function (pid {self.function.pid})", self.function.stop)
        if self.secrets is not None:
            attempt("Secret Manager", self.secrets.close)
        for role, server in (("target", self.target), ("upstream", self.upstream)):
            if server is not None:
                attempt(f"{role} registry (pid {server.process.pid})", server.stop)
        tmp = self.tmp
        if tmp is not None:
            attempt(f"removed {tmp}", lambda: shutil.rmtree(tmp))
        if stopped or problems:
            self.out.line()
            self.out.line("[cleanup]")
        if stopped:
            self.out.say("stopped " + ", ".join(stopped))
        for problem in problems:
            self.out.say(f"cleanup problem: {problem}")


def _status_problems(call: Call, report: dict[str, Any]) -> list[str]:
    problems = []
    if call.status != 200:
        problems.append(f"HTTP {call.status}, expected 200")
    if report["status"] != "ok":
        problems.append(f"status {report['status']!r}, expected 'ok'")
    for name, entry in _tags(report):
        if entry.get("error"):
            problems.append(f"{name}:{entry['tag']}: {entry['error']}")
    return problems


def _abridged(report: dict[str, Any]) -> dict[str, Any]:
    """The report with the first image's first two tags only (the table has the rest)."""
    images = report["images"]
    if not images:
        return report
    first = dict(images[0])
    tags = first["tags"]
    first["tags"] = tags[:2] + ([f"... {len(tags) - 2} more tags"] if len(tags) > 2 else [])
    rest = images[1:]
    more = sum(len(image["tags"]) for image in rest)
    note = [f"... {len(rest)} more images ({more} tags): see the table"] if rest else []
    return {**report, "images": [first, *note]}


def _table(report: dict[str, Any]) -> str:
    rows = [["IMAGE", "TAG", "STATE", "ACTION", "DISCOVERED", "DIGEST", "BYTES"]]
    for name, entry in _tags(report):
        rows.append(
            [
                name,
                entry["tag"],
                entry["state"] or "-",
                entry["action"],
                "yes" if entry["discovered"] else "",
                _short(entry["target_digest"]),
                str(entry["bytes_copied"]),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _realm(server: RegistryServer) -> str:
    return server.token_server.realm if server.token_server is not None else "-"


def _anonymous_status(url: str) -> int:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(url).status_code


def _child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    for name in ("NO_PROXY", "no_proxy"):  # loopback must never go through a proxy
        env[name] = ",".join(filter(None, [env.get(name, ""), _LOOPBACK]))
    return env


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """While cleaning up, another Ctrl-C must not cut the cleanup short."""
    names = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in names}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run image-sync's Cloud Function locally against two loopback registries.",
    )
    parser.add_argument(
        "--full-report", action="store_true", help="print the first report unabridged"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the registries, Secret Manager, function and config running; print how to "
        "try the CLI on them and how to stop them",
    )
    parser.add_argument("--kept", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keep and not args.kept:
        return _launch_kept(list(sys.argv[1:] if argv is None else argv))
    out = Console(sys.stdout, STEPS)
    out.line("image-sync demo: the daily Cloud Scheduler run, on this machine, loopback only")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    demo = Demo(out, full_report=args.full_report)
    code = EXIT_FAILED
    try:
        demo.run()
        code = EXIT_OK
        if args.kept:
            _finish(out)
            demo.keep()
    except MissingTool as exc:
        out.say(f"cannot run: {exc}")
        code = EXIT_MISSING_TOOL
    except KeyboardInterrupt:
        out.line()
        out.line("interrupted (Ctrl-C)")
        code = 130
    except Interrupted as exc:
        out.line()
        out.line(f"interrupted ({exc})")
        code = 128 + exc.signum
    except DemoFailure as exc:
        out.line()
        out.line(f"demo FAILED in step {out.number} ({out.title}): {exc}")
    except Exception as exc:
        out.line()
        out.line(f"demo FAILED in step {out.number} ({out.title}): {type(exc).__name__}: {exc}")
        out.block(traceback.format_exc().rstrip())
    finally:
        with _signals_ignored():
            if code not in (EXIT_OK, EXIT_MISSING_TOOL, 130) and demo.function is not None:
                out.say("last lines of the function's log:")
                out.block(demo.function.log_tail())
            demo.cleanup()
    if code == EXIT_OK:
        _finish(out)
    return code


def _finish(out: Console) -> None:
    out.line()
    out.line(f"Demo finished in {out.elapsed():.1f}s. Time per step:")
    out.timing_summary()


def _launch_kept(argv: Sequence[str]) -> int:
    """`--keep`: the demo in a process of its own session (a terminal's Ctrl-C later must not
    reach it); its output is relayed here until it says it is ready, then this one returns."""
    child = subprocess.Popen(
        [sys.executable, "-m", "demo", *argv, "--kept"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.rstrip("\n") == READY_MARK:
                child.stdout.close()
                return EXIT_OK
            sys.stdout.write(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)  # it cleans up and says so
        for line in child.stdout:
            sys.stdout.write(line)
    return child.wait()
