"""The HTTP function's request: a GET's query string or a POST's JSON body into a `SyncRequest`.

`SyncRequest` is a strict pydantic model whose image names and tags are the config's own types
(`ImageName`, `Tag`); it checks the fields. What pydantic does not do is done here before it:
which of query and body may carry the fields, the body's size, Content-Type, UTF-8 and JSON
(a key given twice is an error, not the last one winning), and the query's text into lists and
booleans. Every failure is a `BadRequest` whose message names the field and what is wrong.

`sync.service` imports this module when the first request comes (pydantic with it), not at
`import main`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from sync.config import ImageName, Tag
from sync.errors import clip
from sync.service import MAX_BODY_BYTES

if TYPE_CHECKING:
    from sync.config import Config
    from sync.engine import RunOptions
    from sync.service import Incoming

__all__ = [
    "FIELDS",
    "BadRequest",
    "SyncRequest",
    "parse_body",
    "parse_query",
    "parse_request",
]

FIELDS = ("images", "tags", "dry_run", "discover")

_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})
#: What a list field holds, for messages.
_ITEMS = {"images": "image names", "tags": "tags"}
_REQUEST_PROBLEM = "request_problem"


class BadRequest(Exception):
    """A request that cannot be served as sent; `message` names the field or the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _names(items: Sequence[str]) -> str:
    return ", ".join(repr(clip(item)) for item in items)


def _show(value: object) -> str:
    """A JSON value for a message: the type for containers, short text for the rest."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"a string {json.dumps(clip(value))}"
    if value is None:
        return "null"
    return clip(json.dumps(value))


# ---------------------------------------------------------------------------------------------
# The fields


def _a_list(value: object, info: ValidationInfo) -> object:
    """A list field given as null or as an empty list: both would silently mean "all"."""
    what = _ITEMS[str(info.field_name)]
    if value is None:
        raise PydanticCustomError(
            _REQUEST_PROBLEM, "expected a list of {what}, got null", {"what": what}
        )
    if isinstance(value, list | tuple) and not value:
        raise PydanticCustomError(
            _REQUEST_PROBLEM, "empty list; leave the field out to mean all {what}", {"what": what}
        )
    return value


def _once(items: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The same name twice means it once."""
    return None if items is None else tuple(dict.fromkeys(items))


# A JSON list for the tuple (not strict); never null or empty when given; each item once.
_LIST_OF = (Field(strict=False), BeforeValidator(_a_list), AfterValidator(_once))
_Images = Annotated[tuple[ImageName, ...] | None, *_LIST_OF]
_Tags = Annotated[tuple[Tag, ...] | None, *_LIST_OF]


class SyncRequest(BaseModel):
    """The fields of a request, type-checked; `images`/`tags` None means all."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    images: _Images = None
    tags: _Tags = None
    dry_run: StrictBool = False
    discover: StrictBool = True

    @classmethod
    def from_fields(cls, fields: Mapping[str, object]) -> SyncRequest:
        """The request from its fields (decoded JSON, or the query's values); BadRequest with
        every problem, each naming its field."""
        try:
            return cls.model_validate(dict(fields))
        except ValidationError as err:
            raise BadRequest(_message(err.errors(include_url=False))) from None

    def options(self, config: Config, deadline: float) -> RunOptions:
        """RunOptions for `config`; BadRequest when an image is not configured, or a tag can
        be neither a configured tag nor a discovered one."""
        if self.images is not None:
            unknown = [name for name in self.images if name not in config.image_names]
            if unknown:
                configured = ", ".join(config.image_names) or "none"
                raise BadRequest(
                    f"images: unknown image {_names(unknown)} (configured: {configured})"
                )
        selected = (
            [config.image(name) for name in self.images]
            if self.images is not None
            else list(config.images)
        )
        if self.tags is not None:
            discovering = self.discover and any(i.discovers_tags for i in selected)
            configured_tags = {tag for image in selected for tag in image.tags}
            stray = [tag for tag in self.tags if tag not in configured_tags]
            if stray and not discovering:
                raise BadRequest(
                    f"tags: {_names(stray)} not a configured tag of the selected images, and "
                    "tag discovery is off for them"
                )
        from sync.engine import RunOptions, hard_stop_after  # noqa: PLC0415

        return RunOptions(
            images=self.images,
            tags=self.tags,
            dry_run=self.dry_run,
            discover=self.discover,
            deadline=deadline,
            hard_deadline=hard_stop_after(deadline),
        )


def _path(loc: Sequence[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc)


def _message(errors: Sequence[ErrorDetails]) -> str:
    """pydantic's errors as one message: `field: what is wrong`, unknown fields together."""
    unknown = [str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden"]
    lines = []
    if unknown:
        lines.append(f"unknown field {_names(unknown)}; the fields are {', '.join(FIELDS)}")
    for err in errors:
        kind, loc, value = err["type"], err["loc"], err.get("input")
        where = _path(loc)
        if kind == "extra_forbidden":
            continue
        if kind == "tuple_type":
            lines.append(f"{where}: expected a list of {_ITEMS[str(loc[0])]}, got {_show(value)}")
        elif kind == "string_type":
            lines.append(f"{where}: expected a string, got {_show(value)}")
        elif kind == "bool_type":
            lines.append(f"{where}: expected true or false, got {_show(value)}")
        else:  # the config's name and tag checks, and ours: their message says it
            lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


# ---------------------------------------------------------------------------------------------
# A POST's JSON body


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"{clip(key)}: given twice in the JSON body")
        out[key] = value
    return out


def parse_body(content_type: str | None, body: bytes) -> SyncRequest:
    """The fields of a POST body: a JSON object, or nothing (empty or only whitespace)."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes", status=413)
    if not body.strip():
        return SyncRequest()
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json":
        shown = repr(clip(content_type)) if content_type else "none"
        raise BadRequest(f"Content-Type: a request body must be application/json, got {shown}")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadRequest(f"body: not UTF-8 text (byte {err.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise BadRequest(
            f"body: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(
            f'body: expected a JSON object like {{"images": [...], "dry_run": true}}, '
            f"got {_show(data)}"
        )
    return SyncRequest.from_fields(data)


# ---------------------------------------------------------------------------------------------
# A GET's query string


def _query_bool(name: str, values: Sequence[str]) -> bool:
    if len(values) != 1:
        raise BadRequest(f"{name}: given {len(values)} times in the query; give it once")
    value = values[0].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name}: expected true, false, 1 or 0, got {clip(values[0])!r}")


def _query_list(name: str, values: Sequence[str]) -> list[str]:
    """Repeated parameters and comma-separated values, in order; an empty item is an error."""
    items: list[str] = []
    for value in values:
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                raise BadRequest(f"{name}: empty value in the query ({name}={clip(value)!r})")
            items.append(item)
    return items


def parse_query(pairs: Iterable[tuple[str, str]]) -> SyncRequest:
    """The fields of a GET query string: `images`/`tags` repeated or comma-separated,
    `dry_run`/`discover` as true/false/1/0."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    unknown = [key for key in grouped if key not in FIELDS]
    if unknown:
        raise BadRequest(
            f"unknown query parameter {_names(unknown)}; the parameters are {', '.join(FIELDS)}"
        )
    fields: dict[str, object] = {}
    for name in ("images", "tags"):
        if name in grouped:
            fields[name] = _query_list(name, grouped[name])
    for name in ("dry_run", "discover"):
        if name in grouped:
            fields[name] = _query_bool(name, grouped[name])
    return SyncRequest.from_fields(fields)


# ---------------------------------------------------------------------------------------------
# Which of the two


def parse_request(incoming: Incoming) -> SyncRequest:
    """The fields of a GET (query string) or POST (JSON body); BadRequest otherwise. Fields
    come from one place only: a POST's query or a GET's body would be silently ignored, and a
    `?dry_run=true` that is ignored copies for real."""
    if incoming.content_length is not None and incoming.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes", status=413)
    if incoming.method == "GET":
        if incoming.body.strip():
            raise BadRequest("GET takes its fields in the query string, not a body; use POST")
        return parse_query(incoming.query)
    if incoming.query:
        names = _names(list(dict.fromkeys(key for key, _ in incoming.query)))
        raise BadRequest(
            f"POST takes its fields in a JSON body, not the query string (got {names}); "
            "use GET for query parameters"
        )
    return parse_body(incoming.content_type, incoming.body)
