"""The hashicorp/google provider's argument schema, read offline from its CDKTF bindings.

No Terraform provider can be downloaded here, but the PyPI package `cdktf-cdktf-provider-google`
carries bindings generated from one provider release (16.12.1 from hashicorp/google 6.50.0).
Its wheel holds a jsii assembly: for every resource and data source a `...Config` interface
whose properties are the arguments and blocks (optional or not), and one interface per nested
block. Each property's documentation links the provider's docs with the Terraform name as the
anchor (`.../docs/resources/cloudfunctions2_function#build_config`), which is the name used here.

`extract()` turns that into a small JSON per block type:
`{"arguments": {NAME: required}, "blocks": {NAME: {"required": bool, "schema": {...}}}}`.
`tests/google_provider_schema.json` holds it for the `google_*` types that infra/ uses, with the
package and wheel it came from; `python -m tests.google_schema` rewrites it (downloading the
wheel with pip into `.cache/google-schema/`), and tests/test_infra_schema.py checks that the
file still matches the package and that every `google_*` block in infra/ fits it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PACKAGE = "cdktf-cdktf-provider-google"
PACKAGE_VERSION = "16.12.1"
PROVIDER = "hashicorp/google"
PROVIDER_VERSION = "6.50.0"

REPO = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO / "tests" / "google_provider_schema.json"
CACHE = REPO / ".cache" / "google-schema"

_ASSEMBLY = "@cdktf/provider-google"
_JSII_MEMBER = f"cdktf_cdktf_provider_google/_jsii/provider-google@{PACKAGE_VERSION}.jsii.tgz"
_DOCS = re.escape(f"https://registry.terraform.io/providers/{PROVIDER}/{PROVIDER_VERSION}/docs/")
# "Represents a {@link https://.../docs/resources/storage_bucket google_storage_bucket}."
_REPRESENTS = re.compile(r"\{@link " + _DOCS + r"(resources|data-sources)/\w+ (google_\w+)\}")
# "{@link https://.../docs/resources/storage_bucket#location StorageBucket#location}"
_ANCHOR = re.compile(r"\{@link " + _DOCS + r"[\w-]+/\w+#(\w+) ")
_KINDS = {"resources": "resource", "data-sources": "data"}

Schema = dict[str, Any]


class SchemaUnavailable(Exception):
    """The package could not be downloaded (no index reachable, or no such version)."""


def cached_wheel(cache: Path = CACHE) -> Path | None:
    """The package's wheel in `cache`, if `make setup` (or `fetch_wheel`) has put it there."""
    found = sorted(cache.glob(f"{PACKAGE.replace('-', '_')}-{PACKAGE_VERSION}-*.whl"))
    return found[0] if found else None


def fetch_wheel(cache: Path = CACHE) -> Path:
    """The package's wheel, downloaded with pip into `cache` unless it is there already."""
    pattern = f"{PACKAGE.replace('-', '_')}-{PACKAGE_VERSION}-*.whl"
    cached = cached_wheel(cache)
    if cached is not None:
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += [
        "--disable-pip-version-check",
        "--dest",
        str(cache),
        f"{PACKAGE}=={PACKAGE_VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    found = sorted(cache.glob(pattern))
    if result.returncode != 0 or not found:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"pip exited {result.returncode}"
        raise SchemaUnavailable(f"pip download {PACKAGE}=={PACKAGE_VERSION} failed: {reason}")
    return found[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_types(wheel: Path) -> dict[str, Any]:
    """The `types` of the jsii assembly inside the wheel (about 100 MB of JSON)."""
    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read(_JSII_MEMBER)
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
        member = tar.extractfile("package/.jsii")
        if member is None:
            raise SchemaUnavailable(f"{wheel.name} holds no package/.jsii")
        assembly = json.load(member)
    if assembly.get("version") != PACKAGE_VERSION:
        raise SchemaUnavailable(f"{wheel.name} holds assembly version {assembly.get('version')}")
    types: dict[str, Any] = assembly["types"]
    return types


def block_types(types: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """`("resource" | "data", "google_x")` -> the fqn of its Config interface."""
    found: dict[tuple[str, str], str] = {}
    for fqn, entry in types.items():
        if entry.get("kind") != "class":
            continue
        match = _REPRESENTS.search(entry.get("docs", {}).get("summary", ""))
        if match and f"{fqn}Config" in types:
            found[(_KINDS[match.group(1)], match.group(2))] = f"{fqn}Config"
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _struct_of(kind: Any, types: Mapping[str, Any]) -> str | None:
    """The nested-block interface a property's type refers to, if any."""
    if not isinstance(kind, dict):
        return None
    fqn = kind.get("fqn")
    if isinstance(fqn, str):
        entry = types.get(fqn)
        is_struct = entry is not None and entry.get("datatype") and entry["kind"] == "interface"
        return fqn if is_struct else None
    if "collection" in kind:
        return _struct_of(kind["collection"].get("elementtype"), types)
    if "union" in kind:
        for member in kind["union"].get("types", []):
            found = _struct_of(member, types)
            if found:
                return found
    return None


def _properties(fqn: str, types: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An interface's own properties and those it inherits from the assembly (not from cdktf)."""
    entry = types[fqn]
    props: list[dict[str, Any]] = list(entry.get("properties", []))
    for parent in entry.get("interfaces", []):
        if parent.startswith(f"{_ASSEMBLY}."):
            props += _properties(parent, types)
    return props


def _schema(fqn: str, types: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Schema:
    arguments: dict[str, bool] = {}
    blocks: dict[str, Any] = {}
    for prop in _properties(fqn, types):
        anchor = _ANCHOR.search(prop.get("docs", {}).get("remarks", ""))
        name = anchor.group(1) if anchor else _snake(prop["name"])
        required = not prop.get("optional", False)
        struct = _struct_of(prop.get("type"), types)
        if struct is not None and struct not in seen:
            nested = _schema(struct, types, (*seen, struct))
            blocks[name] = {"required": required, "schema": nested}
        else:
            arguments[name] = required
    return {
        "arguments": dict(sorted(arguments.items())),
        "blocks": dict(sorted(blocks.items())),
    }


def extract(types: Mapping[str, Any], wanted: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The schema of each wanted `(kind, type)`; KeyError names a type the provider lacks."""
    configs = block_types(types)
    out: dict[str, dict[str, Schema]] = {"resource": {}, "data": {}}
    for kind, name in sorted(set(wanted)):
        if (kind, name) not in configs:
            raise KeyError(f"{kind} {name} is not in {PROVIDER} {PROVIDER_VERSION}")
        out[kind][name] = _schema(configs[(kind, name)], types)
    return out


def used_types(infra: Path = REPO / "infra") -> set[tuple[str, str]]:
    """Every top-level `resource "google_..."` and `data "google_..."` block type in infra/."""
    pattern = re.compile(r'^(resource|data)\s+"(google_\w+)"', re.MULTILINE)
    found: set[tuple[str, str]] = set()
    for path in sorted(infra.glob("*.tf")):
        found.update(
            (m.group(1), m.group(2)) for m in pattern.finditer(path.read_text(encoding="utf-8"))
        )
    return found


def document(wheel: Path, types: Mapping[str, Any], wanted: Iterable[tuple[str, str]]) -> Schema:
    """The content of SCHEMA_FILE: where it came from, then the schemas."""
    return {
        "source": {
            "package": f"{PACKAGE}=={PACKAGE_VERSION}",
            "wheel": wheel.name,
            "wheel_sha256": sha256_of(wheel),
            "provider": f"{PROVIDER} {PROVIDER_VERSION}",
            "regenerate": "python -m tests.google_schema",
        },
        **extract(types, wanted),
    }


def main(argv: list[str]) -> int:
    """Rewrites SCHEMA_FILE for the types infra/ uses now; `--fetch` only downloads the wheel
    (the setup step of `make test`: the test suite itself never reaches the network)."""
    if argv == ["--fetch"]:
        try:
            print(f"{PACKAGE} {PACKAGE_VERSION}: {fetch_wheel().name}")
        except SchemaUnavailable as exc:  # the schema test then skips, saying why
            print(f"{exc}; the check of {SCHEMA_FILE.name} against it will be skipped")
        return 0
    wheel = fetch_wheel()
    content = document(wheel, load_types(wheel), used_types())
    SCHEMA_FILE.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    kinds = sum(len(content[kind]) for kind in ("resource", "data"))
    print(f"wrote {SCHEMA_FILE.relative_to(REPO)}: {kinds} block types from {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
