"""Every `google_*` resource and data block in infra/ against the hashicorp/google 6.50.0 schema.

The schema (argument and block names, and which are required) comes from the provider's CDKTF
bindings, `cdktf-cdktf-provider-google==16.12.1` on PyPI, through `tests/google_schema.py`. The
extracted part is committed (`tests/google_provider_schema.json`), so the check of infra/ runs
offline; a second test reads the package's wheel (which `make setup` downloads, once, into
`.cache/google-schema/`: the tests themselves never reach the network) and checks that the
committed file is exactly what the package gives, for exactly the types infra/ uses. That test
is skipped, saying so, only when the wheel is not there.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests import google_schema
from tests.test_infra import terraform

# Terraform's own meta-arguments, valid in any resource or data block.
META_ARGUMENTS = frozenset(
    {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
)

Schema = dict[str, Any]


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(google_schema.SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def problems(schema: Schema, body: Mapping[str, Any], where: str, *, top: bool = True) -> list[str]:
    """What Terraform would reject in `body` (a python-hcl2 block): unknown names, blocks written
    as arguments, missing required arguments and blocks. Dynamic blocks count as their block."""
    found: list[str] = []
    present: set[str] = set()
    for key, value in body.items():
        if top and key in META_ARGUMENTS:
            continue
        if key == "dynamic":
            for item in value:
                for name, spec in item.items():
                    if name not in schema["blocks"]:
                        found.append(f"{where}: unknown block {name!r} (dynamic)")
                        continue
                    present.add(name)
                    nested = schema["blocks"][name]["schema"]
                    for content in spec.get("content", []):
                        found += problems(nested, content, f"{where}.{name}", top=False)
            continue
        if key in schema["arguments"]:
            present.add(key)
        elif key in schema["blocks"]:
            present.add(key)
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                found.append(f"{where}: {key} is a block, written as an argument")
                continue
            nested = schema["blocks"][key]["schema"]
            for index, item in enumerate(value):
                found += problems(nested, item, f"{where}.{key}[{index}]", top=False)
        else:
            found.append(f"{where}: unknown argument or block {key!r}")
    for name, required in schema["arguments"].items():
        if required and name not in present:
            found.append(f"{where}: required argument {name!r} is missing")
    for name, block in schema["blocks"].items():
        if block["required"] and name not in present:
            found.append(f"{where}: required block {name!r} is missing")
    return found


def google_blocks() -> list[tuple[str, str, str, dict[str, Any]]]:
    tf = terraform()
    blocks = [("resource", kind, name, body) for (kind, name), body in tf.resources.items()]
    blocks += [("data", kind, name, body) for (kind, name), body in tf.data.items()]
    return [block for block in blocks if block[1].startswith("google_")]


def test_infra_uses_google_blocks_and_the_schema_covers_every_one() -> None:
    schema = committed()
    blocks = google_blocks()
    assert len(blocks) >= 10, f"infra/ should declare the deployment's google_* blocks: {blocks}"
    missing = sorted({(kind, rtype) for kind, rtype, _, _ in blocks if rtype not in schema[kind]})
    assert not missing, (
        f"{missing} are not in {google_schema.SCHEMA_FILE.name}; regenerate it with "
        "`python -m tests.google_schema`"
    )


def test_every_google_block_in_infra_fits_the_provider_schema() -> None:
    schema = committed()
    found: list[str] = []
    for kind, rtype, name, body in google_blocks():
        if rtype in schema[kind]:
            found += problems(schema[kind][rtype], body, f"{kind} {rtype}.{name}")
    assert not found, "infra/ does not fit hashicorp/google 6.50.0:\n" + "\n".join(found)


def test_the_check_finds_unknown_missing_and_misplaced_names() -> None:
    schema = committed()["resource"]["google_cloudfunctions2_function"]
    _, body = terraform().resource("google_cloudfunctions2_function", "the function")
    assert problems(schema, body, "fn") == [], "the function itself should fit"
    broken = copy.deepcopy(body)
    del broken["location"]
    broken["timeout"] = 60
    broken["build_config"][0]["docker_repo"] = "x"
    broken["service_config"] = broken["service_config"][0]
    got = problems(schema, broken, "fn")
    assert sorted(got) == [
        "fn.build_config[0]: unknown argument or block 'docker_repo'",
        "fn: required argument 'location' is missing",
        "fn: service_config is a block, written as an argument",
        "fn: unknown argument or block 'timeout'",
    ], got
    without_block = {key: value for key, value in body.items() if key != "build_config"}
    secret_schema = committed()["resource"]["google_secret_manager_secret"]
    assert problems(secret_schema, {"secret_id": "x"}, "s") == [
        "s: required block 'replication' is missing"
    ]
    assert problems(schema, without_block, "fn") == [], "build_config is optional in 6.50.0"


def test_the_committed_schema_is_what_the_provider_package_gives() -> None:
    wheel = google_schema.cached_wheel()
    if wheel is None:
        pytest.skip(
            f"cannot verify {google_schema.SCHEMA_FILE.name}: no {google_schema.PACKAGE} wheel in "
            f"{google_schema.CACHE} (`make setup` downloads it: `python -m tests.google_schema "
            "--fetch`)"
        )
    fresh = google_schema.document(
        wheel, google_schema.load_types(wheel), google_schema.used_types()
    )
    saved = committed()
    assert saved["source"] == fresh["source"], (
        f"{google_schema.SCHEMA_FILE.name} came from {saved['source']}, not {fresh['source']}"
    )
    for kind in ("resource", "data"):
        assert sorted(saved[kind]) == sorted(fresh[kind]), (
            f"the {kind} types in the file differ from those infra/ uses; regenerate it with "
            "`python -m tests.google_schema`"
        )
        for rtype in fresh[kind]:
            assert saved[kind][rtype] == fresh[kind][rtype], (
                f"{kind} {rtype} in the file differs from the package; regenerate it"
            )
