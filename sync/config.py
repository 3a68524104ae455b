"""The config file as frozen, strictly typed models, and every problem in it as a readable line.

Owns the format of `image-sync-config.json` (DESIGN.md, "Config file"), where to find it, and
the syntax of credential REFs (`env:NAME`, `secret:NAME`). It never reads a credential, never
talks to a registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sync.errors import ConfigError, ConfigMissingError, InvalidReferenceError, clip
from sync.reference import Reference, api_host, is_registry_host, is_tag, parse_reference

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "Config",
    "CredentialRef",
    "ImageConfig",
    "ImageName",
    "RegistrySettings",
    "Tag",
    "find_cli_config",
    "load_config",
    "parse_config",
    "parse_credential_ref",
    "resolve_config_path",
]

CONFIG_ENV = "IMAGE_SYNC_CONFIG"
DEFAULT_CONFIG_NAME = "image-sync-config.json"

# ---------------------------------------------------------------------------------------------
# Problems: one custom pydantic error type carries our own lines, so that they come out of the
# same ValidationError as pydantic's type errors, each at its path.

_PROBLEM = "image_sync_problem"
#: The same, raised by the checks between images (`Config._check_images`), which pydantic runs
#: only when every field is valid: `parse_config` tells from it whether they have run.
_CROSS_PROBLEM = "image_sync_cross_problem"
#: A problem below the location pydantic reports: a relative path and a message.
_SubProblem: TypeAlias = tuple[tuple[str | int, ...], str]


def _problem(message: str, *, at: Sequence[str | int] = ()) -> PydanticCustomError:
    """One problem, at the validated value's path plus `at`."""
    return _problems([(tuple(at), message)])


def _problems(items: Sequence[_SubProblem], kind: str = _PROBLEM) -> PydanticCustomError:
    """Several problems found by one validator (a model-wide check)."""
    text = "; ".join(message for _, message in items)
    return PydanticCustomError(kind, "{text}", {"text": text, "problems": tuple(items)})


# ---------------------------------------------------------------------------------------------
# Credential REFs

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
# A project id (`my-project`, `example.com:my-project`) or number; a version number or alias.
_SECRET_RESOURCE = re.compile(
    r"projects/[A-Za-z0-9][A-Za-z0-9.:_-]*/secrets/[A-Za-z0-9_-]{1,255}"
    r"/versions/(?:latest|[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]*)"
)


@dataclass(frozen=True, slots=True)
class CredentialRef:
    """Where a credential comes from: `env:NAME` or `secret:NAME` / `secret:projects/...`."""

    kind: Literal["env", "secret"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def parse_credential_ref(text: str) -> CredentialRef:
    """Parses a REF; raises ValueError saying what is wrong (REFs are names, never values)."""
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("env", "secret"):
        raise ValueError(
            'expected a reference like "env:NAME", "secret:NAME" or '
            '"secret:projects/P/secrets/S/versions/V" (credentials never go in the file)'
        )
    if kind == "env":
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f'invalid environment variable name {name!r} in "env:NAME"')
        return CredentialRef("env", name)
    if name.startswith("projects/"):
        if not _SECRET_RESOURCE.fullmatch(name):
            raise ValueError(
                f"invalid secret resource {name!r} (want projects/P/secrets/S/versions/V)"
            )
    elif not _SECRET_ID.fullmatch(name):
        raise ValueError(
            f"invalid secret name {name!r} (letters, digits, '_' and '-', at most 255)"
        )
    return CredentialRef("secret", name)


def _check_credential_ref(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_credential_ref(value)
        except ValueError as err:
            raise _problem(str(err)) from None
    return value


_Ref = Annotated[StrictStr | None, AfterValidator(_check_credential_ref)]


# ---------------------------------------------------------------------------------------------
# Field syntax

_IMAGE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _image_name_problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if not _IMAGE_NAME.fullmatch(name):
        return f"invalid image name {clip(name)!r}: letters, digits, '.', '_', '-' only"
    return None


def _tag_problem(tag: str) -> str | None:
    if not tag:
        return "must not be empty"
    if not is_tag(tag):
        return (
            f"invalid tag {clip(tag)!r} (letters, digits, '_', '.', '-'; at most 128; "
            "not starting with '.' or '-')"
        )
    return None


def _check_image_name(name: str) -> str:
    problem = _image_name_problem(name)
    if problem:
        raise _problem(problem)
    return name


def _check_tag(tag: str) -> str:
    problem = _tag_problem(tag)
    if problem:
        raise _problem(problem)
    return tag


#: An image's name in the config, as requests name it too.
ImageName = Annotated[StrictStr, AfterValidator(_check_image_name)]
#: A tag, as the config lists it and requests name it: Docker's tag grammar.
Tag = Annotated[StrictStr, AfterValidator(_check_tag)]


def _check_registry_key(key: str) -> str:
    if not is_registry_host(key):
        raise _problem(
            f"invalid registry key {key!r}: want host or host:port, without scheme or path"
        )
    return key


_RegistryKey = Annotated[StrictStr, AfterValidator(_check_registry_key)]


def _image_ref(text: str) -> Reference:
    """An image reference without tag or digest; raises ValueError with the reason."""
    try:
        ref = parse_reference(text)
    except InvalidReferenceError as err:
        raise ValueError(f"not an image reference: {err}") from None
    if ref.tag is not None or ref.digest is not None:
        raise ValueError(
            f"not an image reference: {text!r} has a tag or digest; "
            'give the repository only (tags go in "tags")'
        )
    return ref


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# The five fields of a cron schedule (minute hour day-of-month month day-of-week), as Cloud
# Scheduler reads them (unix-cron: numbers, names for months and weekdays, `*`, `a-b`, `/n`, `,`).
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 2:
        return int(text)
    upper = text.upper()
    if upper in names:
        return names.index(upper) + low  # JAN is 1, SUN is 0
    return None


def _check_cron(schedule: str) -> str:
    fields = schedule.split()
    if len(fields) != 5:
        raise _problem(
            f"expected a cron schedule with 5 fields (minute hour day month weekday), "
            f"got {len(fields)} in {schedule!r}"
        )
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            base, slash, step = item.partition("/")
            if slash and not (step.isascii() and step.isdigit() and 0 < int(step) <= high + 1):
                raise _problem(f"invalid step {item!r} in the {what} field of {schedule!r}")
            if base == "*":
                continue
            start, dash, end = base.partition("-")
            bounds = [_cron_value(start, low, names)]
            if dash:
                bounds.append(_cron_value(end, low, names))
            if any(b is None or not low <= b <= high for b in bounds):
                raise _problem(
                    f"invalid value {item!r} in the {what} field of {schedule!r} "
                    f"(want {low}-{high}{', names' if names else ''}, '*', 'a-b', '/n', ',')"
                )
            if dash and bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
                raise _problem(f"backwards range {item!r} in the {what} field of {schedule!r}")
    return schedule


# ---------------------------------------------------------------------------------------------
# Models

_MODEL_CONFIG = ConfigDict(strict=True, frozen=True, extra="forbid")


class RegistrySettings(BaseModel):
    """How to reach one registry: TLS on or off, and where its credentials come from."""

    model_config = _MODEL_CONFIG

    tls: Literal["enabled", "disabled"] = "enabled"
    username: _Ref = None
    password: _Ref = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> RegistrySettings:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise _problem("username and password go together: give both or neither", at=(missing,))
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls == "enabled"

    @property
    def has_credentials(self) -> bool:
        return self.username is not None and self.password is not None

    @property
    def username_ref(self) -> CredentialRef | None:
        return parse_credential_ref(self.username) if self.username is not None else None

    @property
    def password_ref(self) -> CredentialRef | None:
        return parse_credential_ref(self.password) if self.password is not None else None


class ImageConfig(BaseModel):
    """One mirrored image: where it comes from, where it goes, which tags."""

    model_config = _MODEL_CONFIG

    name: ImageName
    upstream: StrictStr
    target: StrictStr
    tags: Annotated[tuple[StrictStr, ...], Field(strict=False)] = ()
    check_new_tags: bool | None = None
    max_tags_to_check: int | None = None
    tag_pattern: StrictStr | None = None
    #: Mirror the signatures, attestations and SBOMs referring to each mirrored digest (None:
    #: the top-level setting).
    referrers: bool | None = None
    # Parsed once, at load (`model_post_init`): the engine asks for them several times per tag.
    _upstream_ref: Reference = PrivateAttr()
    _target_ref: Reference = PrivateAttr()
    # The settings in effect, the config's where the image has none: settled by `Config` at load.
    _effective: _Effective = PrivateAttr()

    @field_validator("upstream", "target")
    @classmethod
    def _check_ref(cls, text: str, info: ValidationInfo) -> str:
        try:
            ref = _image_ref(text)
        except ValueError as err:
            raise _problem(str(err)) from None
        if info.field_name == "target":
            upstream = info.data.get("upstream")
            if isinstance(upstream, str) and _image_ref(upstream).name == ref.name:
                raise _problem(f"same as upstream ({ref.name}): an image cannot mirror itself")
        return text

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        # Each tag as `Tag` checks it, here rather than in the item type so that one pass
        # lists an invalid tag and a duplicate one together.
        found: list[_SubProblem] = []
        seen: set[str] = set()
        for i, tag in enumerate(tags):
            problem = _tag_problem(tag)
            if problem:
                found.append(((i,), problem))
            elif tag in seen:
                found.append(((i,), f"duplicate tag {tag!r}"))
            seen.add(tag)
        if found:
            raise _problems(found)
        return tags

    @field_validator("max_tags_to_check")
    @classmethod
    def _check_max(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise _problem(f"must be 0 or more, got {value}")
        return value

    @field_validator("tag_pattern")
    @classmethod
    def _check_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                _compile(pattern)
            except (re.error, OverflowError, RecursionError, ValueError) as err:
                raise _problem(f"invalid regular expression {pattern!r}: {err}") from None
        return pattern

    def model_post_init(self, context: Any, /) -> None:
        self._upstream_ref = parse_reference(self.upstream)
        self._target_ref = parse_reference(self.target)

    @property
    def upstream_ref(self) -> Reference:
        """The upstream repository (no tag): `with_tag(tag)` gives what to read."""
        return self._upstream_ref

    @property
    def target_ref(self) -> Reference:
        """The target repository (no tag): `with_tag(tag)` gives what to write."""
        return self._target_ref

    @property
    def tag_regex(self) -> re.Pattern[str] | None:
        """`tag_pattern` compiled; a discovered tag must `fullmatch` it."""
        return _compile(self.tag_pattern) if self.tag_pattern is not None else None

    def _settle(self, config: Config) -> None:
        self._effective = _Effective(
            check_new_tags=(
                config.check_new_tags if self.check_new_tags is None else self.check_new_tags
            ),
            max_tags_to_check=(
                config.max_tags_to_check
                if self.max_tags_to_check is None
                else self.max_tags_to_check
            ),
            referrers=config.referrers if self.referrers is None else self.referrers,
        )

    @property
    def effective_check_new_tags(self) -> bool:
        """Whether this image discovers new upstream tags (its own setting, else the config's)."""
        return self._effective.check_new_tags

    @property
    def effective_max_tags_to_check(self) -> int:
        """How many of the newest upstream version tags discovery considers."""
        return self._effective.max_tags_to_check

    @property
    def effective_referrers(self) -> bool:
        """Whether this image's referrers are mirrored (its own setting, else the config's)."""
        return self._effective.referrers

    @property
    def discovers_tags(self) -> bool:
        """Discovery is on and may find something (`max_tags_to_check` > 0)."""
        return self.effective_check_new_tags and self.effective_max_tags_to_check > 0


@dataclass(frozen=True, slots=True)
class _Effective:
    """An image's settings in effect (see `ImageConfig._settle`)."""

    check_new_tags: bool
    max_tags_to_check: int
    referrers: bool


class Config(BaseModel):
    """The whole config file. Defaults: discovery off, 10 tags, daily at 02:00 UTC."""

    model_config = _MODEL_CONFIG

    images: Annotated[tuple[ImageConfig, ...], Field(strict=False)]
    # Off unless asked for: discovery copies tags nobody listed, so it must be a choice.
    check_new_tags: bool = False
    max_tags_to_check: int = 10
    sync_schedule: StrictStr = "0 2 * * *"
    #: Mirror referrers (cosign digest tags, OCI 1.1 referrers) along with the images.
    referrers: bool = True
    registries: dict[_RegistryKey, RegistrySettings] = Field(default_factory=dict)

    @field_validator("max_tags_to_check")
    @classmethod
    def _check_max(cls, value: int) -> int:
        if value < 0:
            raise _problem(f"must be 0 or more, got {value}")
        return value

    @field_validator("sync_schedule")
    @classmethod
    def _check_schedule(cls, schedule: str) -> str:
        return _check_cron(schedule)

    @field_validator("registries")
    @classmethod
    def _check_registries(
        cls, registries: dict[str, RegistrySettings]
    ) -> dict[str, RegistrySettings]:
        by_host: dict[str, str] = {}
        found: list[_SubProblem] = []
        for key in registries:
            host = _normal_host(key)
            if host in by_host:
                found.append(
                    ((key,), f"same registry as {by_host[host]!r} (both mean {host}): keep one")
                )
            by_host.setdefault(host, key)
        if found:
            raise _problems(found)
        return registries

    @model_validator(mode="after")
    def _check_images(self) -> Config:
        found = _cross_image_problems(
            enumerate(self.images), self.check_new_tags, self.max_tags_to_check
        )
        if found:
            raise _problems(found, _CROSS_PROBLEM)
        for image in self.images:
            image._settle(self)
        return self

    def image(self, name: str) -> ImageConfig:
        """The image called `name`; KeyError when there is none."""
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)

    @property
    def image_names(self) -> tuple[str, ...]:
        return tuple(image.name for image in self.images)

    def registry_settings(self, host: str) -> RegistrySettings | None:
        """The settings for a registry API host (`host[:port]`); keys match through Docker Hub's
        aliases, so a `docker.io` key applies to `registry-1.docker.io`."""
        wanted = _normal_host(host)
        for key, settings in self.registries.items():
            if _normal_host(key) == wanted:
                return settings
        return None

    def tls_enabled(self, host: str) -> bool:
        """Whether to speak HTTPS to this registry API host (yes unless configured off)."""
        settings = self.registry_settings(host)
        return settings is None or settings.tls_enabled


def _normal_host(host: str) -> str:
    return api_host(host.lower())


def _cross_image_problems(
    images: Iterable[tuple[int, ImageConfig]],
    check_new_tags: bool | None,
    max_tags_to_check: int | None,
) -> list[_SubProblem]:
    """Problems between images (unique names and targets) and with the top-level defaults.

    `check_new_tags`/`max_tags_to_check` are None when the top level is itself invalid (not
    known): then only what an image sets itself can make it an image with nothing to mirror.
    """
    found: list[_SubProblem] = []
    names: dict[str, int] = {}
    targets: dict[str, int] = {}
    for i, image in images:
        if image.name in names:
            found.append(
                (
                    ("images", i, "name"),
                    f"duplicate name {image.name!r}, as images[{names[image.name]}]",
                )
            )
        names.setdefault(image.name, i)
        target = image.target_ref.name
        if target in targets:
            found.append(
                (
                    ("images", i, "target"),
                    f"duplicate target {target}, as images[{targets[target]}]",
                )
            )
        targets.setdefault(target, i)
        if image.tags:
            continue
        discovery = image.check_new_tags if image.check_new_tags is not None else check_new_tags
        limit = (
            image.max_tags_to_check if image.max_tags_to_check is not None else max_tags_to_check
        )
        if discovery is False or limit == 0:
            found.append(
                (
                    ("images", i, "tags"),
                    "no tags and no tag discovery (check_new_tags off or max_tags_to_check 0): "
                    "nothing would be mirrored",
                )
            )
    return found


# ---------------------------------------------------------------------------------------------
# Reading, and turning pydantic's errors into lines

_MESSAGES = {
    "missing": "missing required key",
    "extra_forbidden": "unknown key",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a JSON object",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "none_required": "expected null",
}


def _path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(root)"


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _lines(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        ctx: Mapping[str, Any] = err.get("ctx") or {}
        if kind in (_PROBLEM, _CROSS_PROBLEM):
            for sub, message in ctx["problems"]:
                lines.append(f"{_path(loc + tuple(sub))}: {message}")
        elif kind in ("missing", "extra_forbidden"):
            lines.append(f"{_path(loc)}: {_MESSAGES[kind]}")
        elif kind == "literal_error":
            expected = str(ctx.get("expected", "")).replace("'", '"')
            lines.append(f"{_path(loc)}: expected {expected}, got {_show(err['input'])}")
        elif kind in _MESSAGES:
            lines.append(f"{_path(loc)}: {_MESSAGES[kind]}, got {_show(err['input'])}")
        else:
            lines.append(f"{_path(loc)}: {err['msg']}")
    return lines


def parse_config(data: object, source: str = "config") -> Config:
    """A Config from parsed JSON; raises ConfigError listing every problem, each with its path."""
    if not isinstance(data, dict):
        raise ConfigError([f"(root): expected a JSON object, got {_show(data)}"], source)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        problems = _lines(err)
        crossed = any(e["type"] == _CROSS_PROBLEM for e in err.errors(include_url=False))
    except RecursionError:
        raise ConfigError(["(root): nested too deeply"], source) from None
    # The checks between images run only on a Config whose fields are all valid; when they did
    # not run, run them on what does validate, so that one pass lists every problem.
    if not crossed:
        problems.extend(_partial_cross_problems(data))
    raise ConfigError(problems, source)


def _partial_cross_problems(data: Mapping[Any, Any]) -> list[str]:
    raw_images = data.get("images")
    if not isinstance(raw_images, list):
        return []
    images: list[tuple[int, ImageConfig]] = []
    for i, raw in enumerate(raw_images):
        try:
            images.append((i, ImageConfig.model_validate(raw)))
        except (ValidationError, RecursionError):
            # An image invalid elsewhere (a bad tag, an unknown key) still takes part in the
            # name and target checks when those fields are valid themselves: one pass lists
            # a duplicate name, a duplicate target and a duplicate tag together. The stand-in
            # tag keeps the "nothing would be mirrored" check out of it.
            if not isinstance(raw, dict):
                continue
            identity = {k: raw[k] for k in ("name", "upstream", "target") if k in raw}
            try:
                images.append((i, ImageConfig.model_validate({**identity, "tags": ["latest"]})))
            except (ValidationError, RecursionError):
                continue
    check = data.get("check_new_tags", False)
    limit = data.get("max_tags_to_check", 10)
    found = _cross_image_problems(
        images,
        check if isinstance(check, bool) else None,
        limit if type(limit) is int and limit >= 0 else None,
    )
    return [f"{_path(loc)}: {message}" for loc, message in found]


def load_config(path: str | Path) -> Config:
    """Reads and validates a config file; every failure is a ConfigError naming the file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(["(root): file not found"], source) from None
    except IsADirectoryError:
        raise ConfigError(["(root): is a directory, not a file"], source) from None
    except UnicodeDecodeError as err:
        raise ConfigError([f"(root): not UTF-8 text (byte {err.start})"], source) from None
    except OSError as err:
        raise ConfigError([f"(root): cannot read: {err.strerror or err}"], source) from None
    try:
        data = json.loads(text, object_pairs_hook=_JsonObject.from_pairs)
    except json.JSONDecodeError as err:
        raise ConfigError(
            [f"(root): invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"], source
        ) from None
    except RecursionError:
        raise ConfigError(["(root): nested too deeply"], source) from None
    # Python's JSON keeps the last of two equal keys without a word; a config where one
    # `"tags"` silently replaces another is a mistake worth naming.
    duplicates = [f"{_path(loc)}: duplicate key {key!r}" for loc, key in _duplicate_keys(data)]
    try:
        config = parse_config(data, source)
    except ConfigError as err:
        raise ConfigError([*duplicates, *err.problems], source) from None
    if duplicates:
        raise ConfigError(duplicates, source)
    return config


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers the keys it was given more than once."""

    duplicates: tuple[str, ...] = ()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        out = cls(pairs)
        if len(out) != len(pairs):
            counts: dict[str, int] = {}
            for key, _ in pairs:
                counts[key] = counts.get(key, 0) + 1
            out.duplicates = tuple(key for key, n in counts.items() if n > 1)
        return out


def _duplicate_keys(
    value: object, loc: tuple[str | int, ...] = ()
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """(path of the object, key) for every key given twice in one object, depth first."""
    if isinstance(value, _JsonObject):
        for key in value.duplicates:
            yield loc, key
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _duplicate_keys(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _duplicate_keys(item, (*loc, i))


def resolve_config_path(cli_path: str | None, env: Mapping[str, str]) -> Path:
    """The function's config: `cli_path` if given, else `$IMAGE_SYNC_CONFIG`, else the file
    beside `main.py` (the CLI looks elsewhere: `find_cli_config`)."""
    if cli_path:
        return Path(cli_path)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return Path(__file__).resolve().parent.parent / DEFAULT_CONFIG_NAME


def find_cli_config(
    cli_path: str | None, env: Mapping[str, str], cwd: Path, *, required: bool = True
) -> Path | None:
    """The CLI's config: `--config PATH`, else `$IMAGE_SYNC_CONFIG`, else
    `./image-sync-config.json` when it exists. Never the file beside `main.py`: a command run
    in some directory must not act on the production config by surprise.

    Nothing found: ConfigMissingError naming the three places, or None when not `required`.
    A path given by flag or variable is returned as is (loading it says when it is missing).
    """
    if cli_path:
        return Path(cli_path)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = cwd / DEFAULT_CONFIG_NAME
    if local.is_file():
        return Path(DEFAULT_CONFIG_NAME) if cwd == Path.cwd() else local
    if not required:
        return None
    raise ConfigMissingError(
        f"no config file: give --config PATH, set ${CONFIG_ENV}, or put "
        f"{DEFAULT_CONFIG_NAME} in the current directory ({cwd})"
    )
