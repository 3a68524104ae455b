"""The config file: the seed loads unchanged, every problem is one line with its JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sync import config as config_module
from sync.config import (
    Config,
    CredentialRef,
    ImageConfig,
    RegistrySettings,
    load_config,
    parse_config,
    parse_credential_ref,
    resolve_config_path,
)
from sync.errors import ConfigError
from sync.reference import Reference

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "image-sync-config.json"


def image(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "httpbin",
        "upstream": "docker.io/mccutchen/go-httpbin",
        "target": "quay.io/sail-dev/examples-httpbin",
        "tags": ["v2.15.0"],
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not ...}


def config(*images: dict[str, Any], **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"images": list(images) if images else [image()]}
    data.update(top)
    return data


def problems_of(data: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.json")
    assert info.value.source == "test.json"
    return info.value.problems


# --- the seed ----------------------------------------------------------------------------------


def test_seed_config_loads_unchanged() -> None:
    cfg = load_config(SEED)
    assert [i.name for i in cfg.images] == [
        "examples-helloworld-v1",
        "examples-helloworld-v2",
        "examples-httpbin",
        "examples-tcp-echo-server",
    ]
    assert cfg.check_new_tags is True
    assert cfg.max_tags_to_check == 10
    assert cfg.sync_schedule == "0 2 * * *"
    httpbin = cfg.image("examples-httpbin")
    assert httpbin.tags == ("v2.15.0",)
    assert httpbin.upstream_ref == Reference("docker.io", "mccutchen/go-httpbin")
    assert httpbin.target_ref == Reference("quay.io", "sail-dev/examples-httpbin")
    assert httpbin.upstream_ref.host == "registry-1.docker.io"
    # Nothing is rewritten: dumping gives back the file's values.
    raw = json.loads(SEED.read_text())
    dumped = cfg.model_dump(mode="json", exclude_unset=True)
    assert dumped["images"] == raw["images"]


def test_seed_registries_hold_secret_refs_not_values() -> None:
    settings = load_config(SEED).registry_settings("quay.io")
    assert settings is not None
    assert settings.username_ref == CredentialRef("secret", "quay-user")
    assert settings.password_ref == CredentialRef("secret", "quay-password")


def test_defaults_when_optional_keys_are_absent() -> None:
    cfg = parse_config({"images": []}, "t")
    assert cfg.images == ()
    assert cfg.check_new_tags is False
    assert cfg.max_tags_to_check == 10
    assert cfg.sync_schedule == "0 2 * * *"
    assert cfg.registries == {}
    assert cfg.tls_enabled("quay.io") is True
    assert cfg.referrers is True


def test_models_are_frozen() -> None:
    cfg = parse_config(config(), "t")
    with pytest.raises(ValidationError):
        cfg.max_tags_to_check = 3
    with pytest.raises(ValidationError):
        cfg.images[0].name = "other"


def test_image_lookup_by_name() -> None:
    cfg = parse_config(config(image(), image(name="other", target="quay.io/x/other")), "t")
    assert cfg.image("other").target == "quay.io/x/other"
    assert cfg.image_names == ("httpbin", "other")
    with pytest.raises(KeyError):
        cfg.image("nope")


# --- effective settings ------------------------------------------------------------------------


def test_per_image_settings_override_the_top_level() -> None:
    cfg = parse_config(
        config(
            image(name="a", target="quay.io/x/a"),
            image(name="b", target="quay.io/x/b", check_new_tags=False, max_tags_to_check=3),
            check_new_tags=True,
            max_tags_to_check=7,
        ),
        "t",
    )
    a, b = cfg.images
    assert a.effective_check_new_tags is True
    assert a.effective_max_tags_to_check == 7
    assert a.discovers_tags is True
    assert b.effective_check_new_tags is False
    assert b.effective_max_tags_to_check == 3
    assert b.discovers_tags is False


def test_referrers_are_on_by_default_and_an_image_may_override_the_top_level() -> None:
    images = (
        image(name="a", target="quay.io/x/a"),
        image(name="b", target="quay.io/x/b", referrers=True),
        image(name="c", target="quay.io/x/c", referrers=False),
    )
    on = parse_config(config(*images), "t")
    assert [i.effective_referrers for i in on.images] == [True, True, False]
    off = parse_config(config(*images, referrers=False), "t")
    assert [i.effective_referrers for i in off.images] == [False, True, False]


def test_tag_pattern_compiles_for_full_matches() -> None:
    cfg = parse_config(config(image(tag_pattern=r"v2\.\d+\.\d+")), "t")
    regex = cfg.images[0].tag_regex
    assert regex is not None
    assert regex.fullmatch("v2.15.0")
    assert not regex.fullmatch("v3.0.0")


def test_image_without_tags_is_fine_when_discovery_is_on() -> None:
    cfg = parse_config(config(image(tags=...), check_new_tags=True), "t")
    assert cfg.images[0].tags == ()


# --- registries --------------------------------------------------------------------------------


def test_registry_keys_match_through_docker_hub_aliases() -> None:
    cfg = parse_config(
        config(
            registries={
                "docker.io": {"username": "env:HUB_USER", "password": "env:HUB_TOKEN"},
                "127.0.0.1:5000": {"tls": "disabled"},
            }
        ),
        "t",
    )
    hub = cfg.registry_settings("registry-1.docker.io")
    assert hub is not None
    assert hub.username == "env:HUB_USER"
    assert cfg.registry_settings("index.docker.io") is hub
    assert cfg.tls_enabled("127.0.0.1:5000") is False
    assert cfg.tls_enabled("127.0.0.1:5001") is True
    assert cfg.registry_settings("quay.io") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env:QUAY_TOKEN", CredentialRef("env", "QUAY_TOKEN")),
        ("secret:quay-password", CredentialRef("secret", "quay-password")),
        (
            "secret:projects/my-proj/secrets/quay-password/versions/3",
            CredentialRef("secret", "projects/my-proj/secrets/quay-password/versions/3"),
        ),
        (
            "secret:projects/p1/secrets/s/versions/latest",
            CredentialRef("secret", "projects/p1/secrets/s/versions/latest"),
        ),
    ],
)
def test_credential_refs_parse(text: str, expected: CredentialRef) -> None:
    assert parse_credential_ref(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    ["hunter2", "env:", "env:1ABC", "env:A-B", "secret:", "secret:a/b", "file:/etc/passwd",
     "secret:projects/p/secrets/s", "secret:projects//secrets/s/versions/1"],
)  # fmt: skip
def test_bad_credential_refs_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_credential_ref(text)


def test_registry_settings_can_be_built_directly() -> None:
    settings = RegistrySettings(tls="disabled")
    assert settings.has_credentials is False
    assert settings.tls_enabled is False


# --- invalid configs: (data, path, fragment) ---------------------------------------------------

INVALID: list[tuple[str, object, str, str]] = [
    ("root not an object", ["images"], "(root)", "expected a JSON object, got a list"),
    ("images missing", {}, "images", "missing required key"),
    ("images not a list", {"images": {}}, "images", "expected a list, got an object"),
    ("image not an object", {"images": ["x"]}, "images[0]", "expected a JSON object"),
    ("unknown top-level key", config(colour="red"), "colour", "unknown key"),
    ("unknown image key", config(image(colour="red")), "images[0].colour", "unknown key"),
    ("missing target", config(image(target=...)), "images[0].target", "missing required key"),
    ("string for int", config(max_tags_to_check="10"), "max_tags_to_check",
     'expected an integer, got "10"'),
    ("float for int", config(max_tags_to_check=10.0), "max_tags_to_check",
     "expected an integer, got 10.0"),
    ("bool for int", config(image(max_tags_to_check=True)), "images[0].max_tags_to_check",
     "expected an integer, got true"),
    ("string for bool", config(check_new_tags="yes"), "check_new_tags",
     'expected true or false, got "yes"'),
    ("int for bool", config(image(check_new_tags=1)), "images[0].check_new_tags",
     "expected true or false, got 1"),
    ("string for referrers", config(referrers="no"), "referrers",
     'expected true or false, got "no"'),
    ("int for image referrers", config(image(referrers=0)), "images[0].referrers",
     "expected true or false, got 0"),
    ("tags not a list", config(image(tags="1.0")), "images[0].tags", 'expected a list, got "1.0"'),
    ("tag not a string", config(image(tags=[1.0])), "images[0].tags[0]", "expected a string"),
    ("invalid tag", config(image(tags=["ok", "not ok"])), "images[0].tags[1]", "invalid tag"),
    ("duplicate tag", config(image(tags=["1", "2", "1"])), "images[0].tags[2]",
     "duplicate tag '1'"),
    ("empty name", config(image(name="")), "images[0].name", "must not be empty"),
    ("name with slash", config(image(name="a/b")), "images[0].name", "invalid image name"),
    ("duplicate name", config(image(), image(target="quay.io/x/y")), "images[1].name",
     "duplicate name 'httpbin'"),
    ("duplicate target", config(image(), image(name="b", upstream="docker.io/x/y")),
     "images[1].target", "duplicate target quay.io/sail-dev/examples-httpbin"),
    ("upstream not a reference", config(image(upstream="Docker.io/UPPER")), "images[0].upstream",
     "not an image reference: "),
    ("upstream with tag", config(image(upstream="docker.io/x/y:1.0")), "images[0].upstream",
     "has a tag or digest"),
    ("target with digest", config(image(target="quay.io/x/y@sha256:" + "a" * 64)),
     "images[0].target", "has a tag or digest"),
    ("target is upstream", config(image(target="mccutchen/go-httpbin")), "images[0].target",
     "same as upstream"),
    ("negative max", config(max_tags_to_check=-1), "max_tags_to_check", "must be 0 or more"),
    ("negative image max", config(image(max_tags_to_check=-2)), "images[0].max_tags_to_check",
     "must be 0 or more"),
    ("bad regex", config(image(tag_pattern="v(")), "images[0].tag_pattern",
     "invalid regular expression"),
    ("no tags, no discovery", config(image(tags=[])), "images[0].tags",
     "nothing would be mirrored"),
    ("no tags, discovery limited to 0", config(image(tags=[], max_tags_to_check=0),
     check_new_tags=True), "images[0].tags", "nothing would be mirrored"),
    ("cron with 4 fields", config(sync_schedule="0 2 * *"), "sync_schedule", "5 fields"),
    ("cron out of range", config(sync_schedule="0 24 * * *"), "sync_schedule",
     "invalid value '24' in the hour field"),
    ("cron not a string", config(sync_schedule=2), "sync_schedule", "expected a string, got 2"),
    ("registry key with scheme", config(registries={"https://quay.io": {}}),
     'registries["https://quay.io"]', "invalid registry key"),
    ("registry key with path", config(registries={"quay.io/x": {}}), 'registries["quay.io/x"]',
     "invalid registry key"),
    ("tls not a known value", config(registries={"quay.io": {"tls": "off"}}),
     'registries["quay.io"].tls', 'expected "enabled" or "disabled", got "off"'),
    ("username without password", config(registries={"quay.io": {"username": "env:U"}}),
     'registries["quay.io"].password', "give both or neither"),
    ("literal credential", config(registries={"quay.io": {"username": "bob", "password": "env:P"}}),
     'registries["quay.io"].username', 'expected a reference like "env:NAME"'),
    ("unknown registry key", config(registries={"quay.io": {"token": "env:T"}}),
     'registries["quay.io"].token', "unknown key"),
    ("one registry twice", config(registries={"docker.io": {}, "registry-1.docker.io": {}}),
     'registries["registry-1.docker.io"]', "same registry as 'docker.io'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [pytest.param(data, path, fragment, id=name) for name, data, path, fragment in INVALID],
)
def test_invalid_config_is_reported_with_its_path(data: object, path: str, fragment: str) -> None:
    problems = problems_of(data)
    matching = [p for p in problems if p.startswith(f"{path}: ")]
    assert matching, f"no problem at {path!r} in {problems}"
    assert any(fragment in p for p in matching), f"{fragment!r} not in {matching}"


def test_every_problem_is_listed_not_only_the_first() -> None:
    data = config(
        image(name="a b", tags=["1", "1"], colour="red"),
        image(name="ok", target="quay.io/x/ok"),
        image(name="twin", target="quay.io/x/ok"),
        image(name="bad-upstream", upstream="https://x", target="quay.io/x/z"),
        max_tags_to_check="10",
        check_new_tags="yes",
        registries={"quay.io": {"tls": "off"}},
    )
    problems = problems_of(data)
    paths = [p.split(": ", 1)[0] for p in problems]
    assert sorted(paths) == sorted(
        [
            "images[0].name",
            "images[0].tags[1]",
            "images[0].colour",
            "images[2].target",
            "images[3].upstream",
            "max_tags_to_check",
            "check_new_tags",
            'registries["quay.io"].tls',
        ]
    ), problems
    assert "images[2].target: duplicate target quay.io/x/ok, as images[1]" in problems


def test_checks_between_images_run_even_when_other_parts_are_invalid() -> None:
    data = config(image(), image(target="quay.io/x/y"), max_tags_to_check="10")
    problems = problems_of(data)
    assert any(p.startswith("images[1].name: duplicate name") for p in problems), problems
    assert any(p.startswith("max_tags_to_check: expected an integer") for p in problems)


@pytest.mark.parametrize(
    "data",
    [
        config(image(), image(target="quay.io/x/y")),
        config(image(), image(target="quay.io/x/y"), max_tags_to_check="10"),
    ],
    ids=["only between images", "and elsewhere too"],
)
def test_checks_between_images_run_once_and_list_each_problem_once(
    data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    checks = config_module._cross_image_problems

    def counted(*args: Any) -> Any:
        calls.append(1)
        return checks(*args)

    monkeypatch.setattr(config_module, "_cross_image_problems", counted)
    problems = problems_of(data)
    assert len(calls) == 1, f"the checks between images ran {len(calls)} times"
    assert [p for p in problems if "duplicate name" in p] == [
        "images[1].name: duplicate name 'httpbin', as images[0]"
    ], problems


def test_duplicate_name_target_and_tag_are_reported_together() -> None:
    data = config(
        image(name="a", target="quay.io/x/a", tags=["1.0", "1.0"]),
        image(name="a", target="quay.io/x/a"),
    )
    problems = problems_of(data)
    assert "images[0].tags[1]: duplicate tag '1.0'" in problems, problems
    assert "images[1].name: duplicate name 'a', as images[0]" in problems, problems
    assert "images[1].target: duplicate target quay.io/x/a, as images[0]" in problems, problems


def test_duplicate_json_keys_are_errors_naming_the_key_and_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        '{"images": [{"name": "a", "upstream": "docker.io/x/a", "target": "quay.io/x/a",'
        ' "tags": ["1.0"], "tags": ["2.0"]}],'
        ' "registries": {"quay.io": {"tls": "enabled", "tls": "disabled"}},'
        ' "check_new_tags": true, "check_new_tags": "yes"}'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert "images[0]: duplicate key 'tags'" in problems, problems
    assert "registries[\"quay.io\"]: duplicate key 'tls'" in problems, problems
    assert "(root): duplicate key 'check_new_tags'" in problems, problems
    assert any(p.startswith("check_new_tags: expected true or false") for p in problems), (
        "the other problems are still listed in the same pass"
    )


def test_config_error_message_names_the_file_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config(max_tags_to_check="10", check_new_tags="yes")))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert str(info.value).endswith("(and 1 more)")


# --- files -------------------------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.json")
    assert info.value.source == str(tmp_path / "nope.json")


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{\n  "images": [,]\n}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith("(root): invalid JSON at line 2 column 14")


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b'{"images": ["\xff"]}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(config()).encode())
    assert load_config(path).images[0].name == "httpbin"


# --- arbitrary input ---------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["images", "check_new_tags", "max_tags_to_check", "sync_schedule", "registries", "name",
     "upstream", "target", "tags", "tag_pattern", "tls", "username", "password", "quay.io"]
)  # fmt: skip
_plausible = st.recursive(
    _json | st.sampled_from(["env:X", "secret:s", "docker.io/a/b", "0 2 * * *", "(", "1.0"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _plausible, st.dictionaries(_keys, _plausible, max_size=6)))
def test_arbitrary_json_gives_a_config_or_a_config_error(data: object) -> None:
    try:
        cfg = parse_config(data, "fuzz")
    except ConfigError as err:
        assert err.problems
        assert all(": " in p for p in err.problems), err.problems
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=100)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"name": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)},
            optional={
                "tags": st.lists(st.from_regex(r"[0-9a-z][0-9a-z.]{0,5}", fullmatch=True)),
                "check_new_tags": st.booleans(),
                "max_tags_to_check": st.integers(-2, 20),
            },
        ),
        max_size=4,
    )
)
def test_generated_image_lists_are_valid_or_say_why(entries: list[dict[str, Any]]) -> None:
    images = [
        {**e, "upstream": f"docker.io/up/{e['name']}", "target": f"quay.io/mirror/{i}"}
        for i, e in enumerate(entries)
    ]
    try:
        cfg = parse_config({"images": images}, "gen")
    except ConfigError as err:
        assert all(p.startswith("images[") for p in err.problems), err.problems
    else:
        assert [i.name for i in cfg.images] == [e["name"] for e in entries]
        assert all(isinstance(i, ImageConfig) for i in cfg.images)


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError):
        load_config(path)


# --- where the config is -----------------------------------------------------------------------


def test_config_path_prefers_the_cli_flag() -> None:
    env = {"IMAGE_SYNC_CONFIG": "/from/env.json"}
    assert resolve_config_path("/from/cli.json", env) == Path("/from/cli.json")


def test_config_path_falls_back_to_the_environment() -> None:
    assert resolve_config_path(None, {"IMAGE_SYNC_CONFIG": "/e.json"}) == Path("/e.json")


def test_config_path_defaults_to_the_file_beside_main_py() -> None:
    assert resolve_config_path(None, {}) == SEED
    assert resolve_config_path(None, {"IMAGE_SYNC_CONFIG": ""}) == SEED
    assert (SEED.parent / "main.py").exists()
