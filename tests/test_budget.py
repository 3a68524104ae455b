"""One time budget: the function's arithmetic (sync.service, sync.engine) fits the platform
timeout that infra/ gives it (the function's `timeout_seconds`, the scheduler's
`attempt_deadline`), so the function answers before the platform gives up on it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

from sync import service
from sync.engine import hard_stop_after

INFRA = Path(__file__).resolve().parent.parent / "infra"
HCL = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


def _parsed() -> list[dict[str, Any]]:
    out = []
    for path in sorted(INFRA.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            out.append(hcl2.load(handle, serialization_options=HCL))
    return out


def _locals(files: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: v for f in files for block in f.get("locals", []) for k, v in block.items()}


def _resource(files: list[dict[str, Any]], rtype: str) -> dict[str, Any]:
    found = [
        body
        for f in files
        for item in f.get("resource", [])
        for name, bodies in item.items()
        if name == rtype
        for body in bodies.values()
    ]
    assert len(found) == 1, f"expected one {rtype}, found {len(found)}"
    block: dict[str, Any] = found[0]
    return block


def _seconds(locals_: dict[str, Any], text: str) -> int:
    """`${local.X}`, `${tostring(local.X)}`, `${local.X}s` or `local.A - local.B` to a number."""
    text = str(text)
    if isinstance(locals_.get(text), int):
        return int(locals_[text])
    match = re.fullmatch(r"\$\{(?:tostring\()?local\.(\w+)\)?\}s?", text)
    if match:
        return _seconds(locals_, match.group(1))
    value = locals_.get(text)
    difference = re.fullmatch(r"\$\{local\.(\w+) - local\.(\w+)\}", str(value))
    assert difference, f"cannot evaluate {text!r} ({value!r})"
    return _seconds(locals_, difference.group(1)) - _seconds(locals_, difference.group(2))


def test_the_function_answers_before_the_platform_timeout_with_margin() -> None:
    files = _parsed()
    locals_ = _locals(files)
    function = _resource(files, "google_cloudfunctions2_function")
    (config,) = function["service_config"]
    platform = _seconds(locals_, config["timeout_seconds"])
    deadline = _seconds(locals_, config["environment_variables"]["SYNC_DEADLINE_SECONDS"])
    job = _resource(files, "google_cloud_scheduler_job")
    scheduler = _seconds(locals_, job["attempt_deadline"])

    needed = service.platform_timeout_needed(deadline)

    assert scheduler == platform, f"attempt_deadline {scheduler}s != timeout_seconds {platform}s"
    assert needed <= platform, (
        f"SYNC_DEADLINE_SECONDS={deadline}: hard stop at {hard_stop_after(deadline):.0f}s, "
        f"last resort {service.LAST_RESORT_SECONDS:.0f}s later, answer margin "
        f"{service.ANSWER_MARGIN_SECONDS:.0f}s: needs {needed:.0f}s, the platform gives {platform}s"
    )


def test_the_hard_stop_comes_after_the_soft_deadline_and_scales_with_it() -> None:
    assert hard_stop_after(1500) == 1680
    assert hard_stop_after(20) == 25
    assert hard_stop_after(2) == 7
    for deadline in (1, 10, 100, 1000, 10000):
        assert deadline < hard_stop_after(deadline) <= deadline + 180
