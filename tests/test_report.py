"""The report: its JSON matches DESIGN.md's contract key for key, and its status/summary rules."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sync.errors import DeadlineExceeded, RegistryError
from sync.report import (
    Command,
    ErrorInfo,
    ImageReport,
    RateLimit,
    ReferrerReport,
    Report,
    Status,
    Summary,
    TagAction,
    TagReport,
    TagState,
    build_report,
    exit_code,
    overall_status,
    summarize,
)

# A literal copy of DESIGN.md "Report": every key at every level, in the documented order, with
# the JSON types each value may have. Changing this means changing a contract: open an issue.
CONTRACT: dict[str, Any] = {
    "status": {"ok", "partial", "failed"},
    "dry_run": bool,
    "started_at": str,
    "duration_s": float,
    "summary": {
        "tags": int,
        "up_to_date": int,
        "copied": int,
        "failed": int,
        "deferred": int,
        "discovered": int,
        "bytes_copied": int,
        # Issue 13 adds these two to the summary (DESIGN.md's block does not show them yet).
        "referrers_copied": int,
        "referrers_failed": int,
    },
    "images": [
        {
            "name": str,
            "upstream": str,
            "target": str,
            "tags": [
                {
                    "tag": str,
                    "state": {"up_to_date", "outdated", "missing", "upstream_missing", None},
                    "action": {
                        "up_to_date",
                        "copied",
                        "would_copy",
                        "failed",
                        "upstream_missing",
                        "deferred",
                    },
                    "discovered": bool,
                    "upstream_digest": (str, None),
                    "target_digest": (str, None),
                    "bytes_copied": int,
                    "blobs_copied": int,
                    "blobs_skipped": int,
                    "referrers": {"copied": int, "would_copy": int, "present": int, "failed": int},
                    "error": ({"code": str, "message": str}, None),
                }
            ],
        }
    ],
    "retryable": bool,
    "rate_limit": ({"registry": str, "remaining": int, "limit": int}, None),
}

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
STARTED = datetime(2026, 11, 27, 2, 0, 0, tzinfo=UTC)


def _tag(action: TagAction, state: TagState | None = None, **fields: Any) -> TagReport:
    if state is None and action in ("up_to_date", "upstream_missing"):
        state = action
    return TagReport(tag=fields.pop("tag", "1.0"), state=state, action=action, **fields)


def _image(*tags: TagReport, name: str = "helloworld") -> ImageReport:
    return ImageReport(
        name=name,
        upstream=f"docker.io/istio/{name}",
        target=f"quay.io/sail-dev/{name}",
        tags=tags,
    )


def _full_report() -> Report:
    """A report in which every optional value is present somewhere, and absent somewhere."""
    error = ErrorInfo(code="MANIFEST_UNKNOWN", message="GET https://quay.io/v2/...: HTTP 404")
    return build_report(
        [
            _image(
                _tag("up_to_date", tag="1.0", upstream_digest=DIGEST_A, target_digest=DIGEST_A),
                _tag(
                    "copied",
                    "outdated",
                    tag="1.1",
                    discovered=True,
                    upstream_digest=DIGEST_A,
                    target_digest=DIGEST_A,
                    bytes_copied=1234,
                    blobs_copied=2,
                    blobs_skipped=3,
                ),
                _tag("failed", "missing", tag="1.2", upstream_digest=DIGEST_B, error=error),
            ),
            _image(_tag("deferred", tag="latest"), name="httpbin"),
        ],
        dry_run=False,
        started_at=STARTED,
        duration_s=12.5,
        rate_limit=RateLimit(registry="registry-1.docker.io", remaining=95, limit=100),
    )


#: Fields this project added to DESIGN.md's report.
ADDED_FIELDS = frozenset({"discovery_error"})


def _check_against_contract(value: Any, contract: Any, path: str) -> None:
    """Asserts that the JSON `value` has exactly the keys and value types of `contract`."""
    if isinstance(contract, tuple):  # alternatives, e.g. (str, None)
        for alternative in contract:
            if alternative is None and value is None:
                return
            if alternative is not None and _matches(value, alternative):
                _check_against_contract(value, alternative, path)
                return
        pytest.fail(f"{path}: {value!r} is none of {contract!r}")
    elif isinstance(contract, dict):
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
        # DESIGN.md: "More fields may be added; these may not be renamed." The additions are
        # listed here, so that a rename still fails.
        extra = set(value) - set(contract)
        assert extra <= ADDED_FIELDS, f"{path}: fields not in DESIGN.md: {sorted(extra)}"
        value = {key: item for key, item in value.items() if key not in ADDED_FIELDS}
        assert list(value) == list(contract), (
            f"{path}: keys differ from DESIGN.md\n"
            f"  missing: {sorted(set(contract) - set(value))}\n"
            f"  unexpected: {sorted(set(value) - set(contract))}\n"
            f"  order: {list(value)}"
        )
        for key, sub in contract.items():
            _check_against_contract(value[key], sub, f"{path}.{key}")
    elif isinstance(contract, list):
        assert isinstance(value, list), f"{path}: expected an array, got {value!r}"
        assert value, f"{path}: the fixture should fill every array"
        for index, item in enumerate(value):
            _check_against_contract(item, contract[0], f"{path}[{index}]")
    elif isinstance(contract, set):
        assert value in contract, f"{path}: {value!r} is not one of {sorted(map(str, contract))}"
    else:
        assert _matches(value, contract), f"{path}: {value!r} is not a JSON {contract.__name__}"


def _matches(value: Any, contract: Any) -> bool:
    if isinstance(contract, dict):
        return isinstance(value, dict)
    if contract is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if contract is float:
        return isinstance(value, float | int) and not isinstance(value, bool)
    return isinstance(value, contract)


def _contract_keys(contract: Any, path: str = "$") -> dict[str, list[str]]:
    """Every object's key list in the contract, by path, reaching into arrays and alternatives."""
    found: dict[str, list[str]] = {}
    if isinstance(contract, tuple):
        for alternative in contract:
            found |= _contract_keys(alternative, path)
    elif isinstance(contract, dict):
        found[path] = list(contract)
        for key, sub in contract.items():
            found |= _contract_keys(sub, f"{path}.{key}")
    elif isinstance(contract, list):
        found |= _contract_keys(contract[0], f"{path}[]")
    return found


def _json_keys(value: Any, path: str = "$") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if isinstance(value, dict):
        found[path] = [key for key in value if key not in ADDED_FIELDS]
        for key, sub in value.items():
            if key not in ADDED_FIELDS:
                found |= _json_keys(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            found |= _json_keys(item, f"{path}[]")
    return found


# --- the contract --------------------------------------------------------------------------


def test_report_json_matches_the_design_contract_at_every_level() -> None:
    _check_against_contract(json.loads(_full_report().to_json()), CONTRACT, "$")


def test_report_json_has_every_object_of_the_contract_with_the_same_keys() -> None:
    # The fixture fills every optional object, so every level of the contract is compared.
    assert _json_keys(json.loads(_full_report().to_json())) == _contract_keys(CONTRACT)


def test_report_json_with_nulls_and_no_images_matches_the_contract() -> None:
    report = build_report(
        [], dry_run=True, started_at=STARTED, duration_s=0, rate_limit=None, command="status"
    )
    value = json.loads(report.to_json())
    assert value["images"] == []
    assert value["rate_limit"] is None
    _check_against_contract(value, {**CONTRACT, "images": list}, "$")


def test_model_fields_are_the_contract_fields_in_order() -> None:
    assert list(Report.model_fields) == list(CONTRACT)
    assert list(Summary.model_fields) == list(CONTRACT["summary"])
    image = CONTRACT["images"][0]
    assert [f for f in ImageReport.model_fields if f not in ADDED_FIELDS] == list(image)
    tag = image["tags"][0]
    assert list(TagReport.model_fields) == list(tag)
    assert list(ErrorInfo.model_fields) == list(tag["error"][0])
    assert [f.name for f in dataclasses.fields(RateLimit)] == list(CONTRACT["rate_limit"][0])


def test_enumerations_are_exactly_the_contract_values() -> None:
    tag = CONTRACT["images"][0]["tags"][0]
    assert set(typing.get_args(TagState)) == tag["state"] - {None}
    assert set(typing.get_args(TagAction)) == tag["action"]
    assert set(typing.get_args(Status)) == CONTRACT["status"]


def test_json_round_trips_to_an_equal_report() -> None:
    report = _full_report()
    text = report.to_json()
    assert Report.model_validate_json(text) == report
    assert Report.model_validate(json.loads(text)) == report
    assert json.loads(text) == report.model_dump(mode="json")


def test_json_is_one_line_unless_indented() -> None:
    report = _full_report()
    assert "\n" not in report.to_json()
    assert json.loads(report.to_json(indent=2)) == json.loads(report.to_json())


def test_started_at_is_written_in_utc_to_the_second() -> None:
    berlin = timezone(timedelta(hours=1))
    report = build_report(
        [],
        dry_run=False,
        started_at=datetime(2026, 11, 27, 3, 0, 0, 987654, tzinfo=berlin),
        duration_s=1.23456,
        rate_limit=None,
    )
    assert report.started_at == "2026-11-27T02:00:00Z"
    assert report.duration_s == 1.235


def test_naive_started_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_report(
            [], dry_run=False, started_at=datetime(2026, 11, 27), duration_s=0, rate_limit=None
        )


@pytest.mark.parametrize("started_at", ["2026-11-27T02:00:00Z", "2026-11-27T02:00:00.5+00:00"])
def test_report_accepts_utc_timestamps(started_at: str) -> None:
    report = _full_report().model_copy(update={"started_at": started_at})
    assert Report.model_validate_json(report.to_json()).started_at == started_at


@pytest.mark.parametrize(
    "started_at", ["2026-11-27T02:00:00+01:00", "2026-11-27T02:00:00", "yesterday", "2026-11-27"]
)
def test_report_refuses_timestamps_not_in_utc(started_at: str) -> None:
    value = json.loads(_full_report().to_json())
    value["started_at"] = started_at
    with pytest.raises(ValidationError, match="started_at"):
        Report.model_validate(value)


@pytest.mark.parametrize("duration", [-1.0, float("inf"), float("nan")])
def test_report_refuses_impossible_durations(duration: float) -> None:
    with pytest.raises(ValidationError, match="duration_s"):
        build_report([], dry_run=False, started_at=STARTED, duration_s=duration, rate_limit=None)


def test_models_are_strict_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="bytes_copied"):
        TagReport(tag="1.0", state=None, action="deferred", bytes_copied="10")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="discovered"):
        TagReport(tag="1.0", state=None, action="deferred", discovered="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="blob_copied"):
        TagReport(tag="1.0", state=None, action="deferred", blob_copied=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="action"):
        TagReport(tag="1.0", state=None, action="skipped")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="blobs_skipped"):
        TagReport(tag="1.0", state=None, action="deferred", blobs_skipped=-1)
    report = _full_report()
    with pytest.raises(ValidationError, match="frozen"):
        report.status = "failed"
    assert isinstance(report.images, tuple)
    assert isinstance(report.images[0].tags, tuple)
    # Lists (from JSON, or from a caller) are accepted and stored as tuples.
    image = ImageReport(name="a", upstream="u", target="t", tags=[_tag("deferred")])  # type: ignore[arg-type]
    assert image.tags == (_tag("deferred"),)


def test_error_info_takes_code_and_message_from_an_image_sync_error() -> None:
    error = RegistryError(
        "manifest unknown",
        status=404,
        method="HEAD",
        url="https://user:pw@quay.io/v2/x/manifests/1.0?token=secret",
        codes=["MANIFEST_UNKNOWN"],
    )
    info = ErrorInfo.from_error(error)
    assert info.code == "MANIFEST_UNKNOWN"
    assert info.message == str(error)
    assert "pw" not in info.message and "secret" not in info.message
    assert ErrorInfo.from_error(DeadlineExceeded("time budget used up")) == ErrorInfo(
        code="DEADLINE", message="time budget used up"
    )


# --- status, summary, exit codes -----------------------------------------------------------

STATUS_RULES: list[tuple[list[TagAction], Status]] = [
    ([], "ok"),
    (["up_to_date"], "ok"),
    (["up_to_date", "copied"], "ok"),
    (["would_copy"], "ok"),
    (["deferred"], "partial"),
    (["copied", "deferred", "would_copy"], "partial"),
    (["failed"], "failed"),
    (["upstream_missing"], "failed"),
    (["deferred", "failed"], "failed"),
    (["deferred", "upstream_missing", "copied"], "failed"),
]


@pytest.mark.parametrize(
    ("actions", "expected"), STATUS_RULES, ids=["+".join(a) or "no-tags" for a, _ in STATUS_RULES]
)
def test_sync_status_follows_the_design_rules(actions: list[TagAction], expected: Status) -> None:
    # Spread the tags over two images: the rules look at every tag of every image.
    tags = [_tag(action, tag=f"1.{i}") for i, action in enumerate(actions)]
    images = [_image(*tags[::2], name="a"), _image(*tags[1::2], name="b")]
    report = build_report(
        images, dry_run=False, started_at=STARTED, duration_s=1.0, rate_limit=None
    )
    assert report.status == expected


#: (states, status, exit code): 0 all up to date, 4 all compared and something to copy, 1 some
#: tag not compared (DESIGN.md "CLI").
STATUS_COMMAND_RULES: list[tuple[list[TagState | None], Status, int]] = [
    ([], "ok", 0),
    (["up_to_date"], "ok", 0),
    (["up_to_date", "up_to_date"], "ok", 0),
    (["up_to_date", "outdated"], "failed", 4),
    (["missing"], "failed", 4),
    (["upstream_missing"], "failed", 1),
    (["up_to_date", None], "failed", 1),
    (["missing", None], "failed", 1),
]


@pytest.mark.parametrize(
    ("states", "expected", "code"),
    STATUS_COMMAND_RULES,
    ids=["+".join(map(str, s)) or "no-tags" for s, _, _ in STATUS_COMMAND_RULES],
)
def test_status_command_is_ok_only_when_every_tag_is_up_to_date(
    states: list[TagState | None], expected: Status, code: int
) -> None:
    actions: dict[TagState | None, TagAction] = {
        "up_to_date": "up_to_date",
        "outdated": "would_copy",
        "missing": "would_copy",
        "upstream_missing": "upstream_missing",
        None: "failed",
    }
    tags = [_tag(actions[s], s, tag=f"1.{i}") for i, s in enumerate(states)]
    images = [_image(*tags)]
    assert overall_status(images, "status") == expected
    report = build_report(
        images, dry_run=True, started_at=STARTED, duration_s=0, rate_limit=None, command="status"
    )
    assert report.status == expected
    assert report.exit_code("status") == code


EXIT_CODES: list[tuple[Status, Command, int]] = [
    ("ok", "sync", 0),
    ("partial", "sync", 3),
    ("failed", "sync", 1),
    ("ok", "status", 0),
    ("partial", "status", 1),
    ("failed", "status", 1),
]


@pytest.mark.parametrize(("status", "command", "code"), EXIT_CODES)
def test_exit_code_by_status_and_command(status: Status, command: Command, code: int) -> None:
    assert exit_code(status, command) == code


def test_summary_counts_each_kind_of_tag() -> None:
    summary = _full_report().summary
    assert summary == Summary(
        tags=4, up_to_date=1, copied=1, failed=1, deferred=1, discovered=1, bytes_copied=1234
    )


def test_summary_counts_upstream_missing_as_failed_and_would_copy_as_nothing() -> None:
    images = [
        _image(
            _tag("upstream_missing", tag="a"),
            _tag("failed", tag="b"),
            _tag("would_copy", "missing", tag="c", discovered=True),
            _tag("would_copy", "outdated", tag="d"),
        )
    ]
    summary = summarize(images)
    assert summary.failed == 2, "upstream_missing must show in `failed`: it fails the run"
    assert summary.copied == 0, "a dry run copies nothing"
    assert summary.tags == 4
    assert summary.discovered == 1


_actions = st.sampled_from(typing.get_args(TagAction))
_tags = st.builds(
    lambda action, discovered, size: _tag(
        action,
        "missing" if action in ("copied", "would_copy", "failed") else None,
        discovered=discovered,
        bytes_copied=size if action == "copied" else 0,
    ),
    _actions,
    st.booleans(),
    st.integers(0, 10**12),
)


@given(st.lists(st.lists(_tags, max_size=6), max_size=4))
def test_summary_arithmetic_adds_up(tags_per_image: list[list[TagReport]]) -> None:
    images = [_image(*tags, name=f"image-{i}") for i, tags in enumerate(tags_per_image)]
    entries = [tag for tags in tags_per_image for tag in tags]
    summary = summarize(images)
    would_copy = sum(1 for tag in entries if tag.action == "would_copy")
    assert summary.tags == len(entries)
    assert (
        summary.up_to_date + summary.copied + summary.failed + summary.deferred + would_copy
        == summary.tags
    )
    assert summary.bytes_copied == sum(tag.bytes_copied for tag in entries)
    assert summary.discovered == sum(tag.discovered for tag in entries)
    # For a sync, the summary explains the status.
    status = overall_status(images)
    assert (status == "failed") == (summary.failed > 0)
    assert (status == "partial") == (summary.failed == 0 and summary.deferred > 0)
    report = build_report(
        images, dry_run=False, started_at=STARTED, duration_s=0.5, rate_limit=None
    )
    assert report.summary == summary
    assert list(report.all_tags()) == entries
    assert Report.model_validate_json(report.to_json()) == report


def test_a_discovery_error_makes_an_otherwise_ok_run_partial() -> None:
    image = _image(_tag("up_to_date")).model_copy(
        update={"discovery_error": ErrorInfo(code="TIMEOUT", message="no answer")}
    )
    report = build_report(
        [image], dry_run=False, started_at=STARTED, duration_s=1.0, rate_limit=None
    )
    assert report.status == "partial" and report.exit_code() == 3


@pytest.mark.parametrize(
    ("action", "temporary", "retryable"),
    [
        ("failed", True, True),
        ("failed", False, False),
        ("deferred", True, False),  # partial: nothing failed, nothing to retry now
        ("up_to_date", True, False),
    ],
)
def test_retryable_only_when_failed_and_some_failure_is_temporary(
    action: TagAction, temporary: bool, retryable: bool
) -> None:
    report = build_report(
        [_image(_tag(action))],
        dry_run=False,
        started_at=STARTED,
        duration_s=1.0,
        rate_limit=None,
        temporary_failure=temporary,
    )
    assert report.retryable is retryable, report.to_json()


# --- referrers ---------------------------------------------------------------------------------


def test_summary_adds_up_referrers_and_counts_a_referrers_only_copy_as_copied() -> None:
    images = [
        _image(
            _tag("copied", "up_to_date", tag="a", referrers=ReferrerReport(copied=2, present=1)),
            _tag("up_to_date", tag="b", referrers=ReferrerReport(present=3)),
            _tag("failed", "missing", tag="c", referrers=ReferrerReport(copied=1, failed=2)),
        )
    ]
    summary = summarize(images)
    assert (summary.copied, summary.up_to_date, summary.failed) == (1, 1, 1), summary
    assert (summary.referrers_copied, summary.referrers_failed) == (3, 2), summary


def test_status_exits_4_when_only_referrers_would_be_copied_and_1_when_one_failed() -> None:
    drift = _tag("would_copy", "up_to_date", referrers=ReferrerReport(would_copy=1, present=2))
    report = build_report(
        [_image(drift, _tag("up_to_date", tag="2.0"))],
        dry_run=True,
        started_at=STARTED,
        duration_s=0,
        rate_limit=None,
        command="status",
    )
    assert (report.status, report.exit_code("status")) == ("failed", 4), report.to_json()
    broken = _tag("failed", "up_to_date", referrers=ReferrerReport(failed=1))
    report = build_report(
        [_image(broken)],
        dry_run=True,
        started_at=STARTED,
        duration_s=0,
        rate_limit=None,
        command="status",
    )
    assert (report.status, report.exit_code("status")) == ("failed", 1), report.to_json()
