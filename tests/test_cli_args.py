"""The command line without registries, in process: where the config comes from, global
options on either side of the command, `--json` failures, help, and the checks that must come
before any network call (every config here points at a loopback port that refuses)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync import cli

COMMANDS = (
    "check-deps",
    "validate",
    "list",
    "status",
    "sync",
    "discover",
    "copy",
    "tags",
    "digest",
    "manifest",
)


# `cli.main` sets up its loggers (handlers, level, no propagation): put them back afterwards.
pytestmark = pytest.mark.usefixtures("restore_loggers")


@pytest.fixture
def dead_host() -> Iterator[str]:
    """`127.0.0.1:PORT` of a bound socket that never listens: a connection is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _config(
    host: str, name: str = "small", image: dict[str, object] | None = None
) -> dict[str, object]:
    return {
        "images": [
            {
                "name": name,
                "upstream": f"{host}/istio/{name}",
                "target": f"{host}/sail-dev/{name}",
                "tags": ["1.0"],
                **(image or {}),
            }
        ],
        "registries": {host: {"tls": "disabled"}},
    }


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def _run(
    capsys: pytest.CaptureFixture[str], *argv: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    code = cli.main(list(argv), env=env or {})
    out, err = capsys.readouterr()
    return code, out, err


# -- where the config comes from ------------------------------------------------------------------


def test_without_a_config_anywhere_commands_exit_2_naming_the_three_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in ("validate", "list", "status", "sync", "check-deps"):
        code, out, err = _run(capsys, command)
        assert code == 2, f"{command}: exit {code}; {out}{err}"
        text = out + err
        for place in ("--config", "$IMAGE_SYNC_CONFIG", "image-sync-config.json"):
            assert place in text, f"{command}: {place} not named in {text!r}"


def test_the_cli_never_falls_back_to_the_config_beside_main_py(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    beside_main = Path(cli.__file__).resolve().parent.parent
    assert (beside_main / "image-sync-config.json").is_file()
    monkeypatch.chdir(beside_main / "sync")  # a directory without a config

    code, out, err = _run(capsys, "--json", "list")

    assert code == 2, out + err
    assert json.loads(out)["error"]["code"] == "CONFIG_MISSING", out


def test_config_lookup_order_is_flag_then_variable_then_current_directory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dead_host: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "image-sync-config.json", _config(dead_host, "from-cwd"))
    env_file = _write(tmp_path / "env.json", _config(dead_host, "from-env"))
    flag_file = _write(tmp_path / "flag.json", _config(dead_host, "from-flag"))
    env = {"IMAGE_SYNC_CONFIG": str(env_file)}

    def listed(*argv: str, env: dict[str, str] | None = None) -> str:
        code, out, err = _run(capsys, "--json", "list", *argv, env=env)
        assert code == 0, out + err
        [image] = json.loads(out)["images"]
        return str(image["name"])

    assert listed() == "from-cwd"
    assert listed(env=env) == "from-env"
    assert listed("--config", str(flag_file), env=env) == "from-flag"


def test_a_config_named_by_the_variable_that_is_missing_is_an_error_not_a_fallback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dead_host: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "image-sync-config.json", _config(dead_host))
    code, out, err = _run(capsys, "list", env={"IMAGE_SYNC_CONFIG": str(tmp_path / "nope.json")})
    assert code == 2 and "nope.json" in err and "file not found" in err, (out, err)


# -- global options anywhere, --json failures ---------------------------------------------------


def test_global_options_work_after_the_command_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dead_host: str
) -> None:
    config = _write(tmp_path / "local.json", _config(dead_host))
    before = _run(capsys, "--json", "--config", str(config), "validate")
    after = _run(capsys, "validate", "--json", "--config", str(config))
    assert before == after
    assert before[0] == 0 and json.loads(before[1])["valid"] is True, before


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["sync", "--deadline", "soon"], "USAGE"),
        (["frobnicate"], "USAGE"),
        (["status", "nosuchimage"], "USAGE"),
        (["copy", "not a reference", "x/y"], "USAGE"),
        (["digest", "--platform", "linux", "x/y:1"], "USAGE"),
        (["list"], "CONFIG_INVALID"),
        (["check-deps"], "CONFIG_INVALID"),
    ],
)
def test_json_failures_print_an_error_object_on_stdout_with_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dead_host: str,
    argv: list[str],
    code: str,
) -> None:
    config = _write(tmp_path / "c.json", _config(dead_host))
    if code == "CONFIG_INVALID":
        _write(config, {"images": [], "bogus": 1})

    exit_code, out, err = _run(capsys, *argv, "--json", "--config", str(config))

    assert exit_code == 2, (out, err)
    error = json.loads(out)["error"]
    assert set(error) == {"code", "message"} and error["code"] == code, error
    assert error["message"] and error["message"] in err, (error, err)


def test_validate_json_on_an_invalid_config_has_the_problems_and_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "c.json", {"images": [], "bogus": 1})
    code, out, _ = _run(capsys, "validate", "--json", "--config", str(config))
    answer = json.loads(out)
    assert code == 2
    assert answer["valid"] is False and answer["problems"] == ["bogus: unknown key"], answer
    assert answer["error"]["code"] == "CONFIG_INVALID"


# -- checks before the network --------------------------------------------------------------------


_IMPOSSIBLE_TAGS: dict[str, tuple[dict[str, object], str, str]] = {
    "discovery off": ({"check_new_tags": False}, "9.9", "discovery is off"),
    "not a version": ({"check_new_tags": True}, "nightly", "not a version tag"),
    "outside the pattern": (
        {"check_new_tags": True, "tag_pattern": r"1\..*"},
        "9.9",
        "tag_pattern",
    ),
    "bad syntax": ({"check_new_tags": True}, "bad tag!", "invalid tag"),
}


@pytest.mark.parametrize("case", sorted(_IMPOSSIBLE_TAGS))
def test_sync_image_tag_refuses_an_impossible_tag_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dead_host: str, case: str
) -> None:
    image, tag, reason = _IMPOSSIBLE_TAGS[case]
    config = _write(tmp_path / "c.json", _config(dead_host, image=image))

    code, out, err = _run(capsys, "--config", str(config), "sync", "small", tag)

    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], f"want one line saying {reason!r}: {err!r}"
    assert "run " not in err and out == "", "nothing may run before the tag is accepted"


# -- help -----------------------------------------------------------------------------------------


def test_help_lists_every_command_with_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"], env={})
    assert done.value.code == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        line = next((ln for ln in text.splitlines() if ln.strip().startswith(command + " ")), "")
        assert len(line.split()) > 3, f"{command} has no one-line description in:\n{text}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_its_arguments_and_exit_codes(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"], env={})
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes: 0" in text, text
    assert "--config" in text and "--json" in text, "global options belong in every help"
    if "positional arguments:" in text:
        section = text.split("positional arguments:", 1)[1].split("\n\n", 1)[0]
        for line in section.strip("\n").splitlines():
            # each argument (IMAGE, SRC, REF ...) is followed by its help on the same line
            assert len(line.split()) > 1, f"{command}: argument without help: {line!r}"
