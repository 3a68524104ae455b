"""Static checks of infra/: the Terraform parsed with python-hcl2, a few locals evaluated offline.

Nothing here talks to Google Cloud or the Terraform registry. The properties come from
GCP-NOTES.md: schedule and secret names read from the sync config, one deadline shared by the
function and the scheduler, OIDC-authenticated calls, least-privilege IAM, no public principals,
no secret values in Terraform. Where `terraform` is installed, `infra/config.tf` (self-contained
by design) and `infra/variables.tf` are also evaluated with `terraform console` against a copy of
the repository.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from sync import service
from tests.bed import images
from tests.bed.rawclient import RawClient
from tests.bed.registry import RegistryServer

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
CONFIG_PATH = REPO / "image-sync-config.json"
MAIN_PY = REPO / "main.py"

HCL_OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)

DEFAULT_SCHEDULE = "0 2 * * *"
SCHEDULER_MAX_DEADLINE_SECONDS = 1800  # Cloud Scheduler's limit for HTTP targets (30 min).
SCHEDULER_MIN_DEADLINE_SECONDS = 15
PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")
REQUIRED_APIS = {
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
}
SECRET_REF = re.compile(r"^secret:([A-Za-z0-9_-]{1,255})$")
RUN_INVOKER_RESOURCES = (
    "google_cloud_run_service_iam_member",
    "google_cloud_run_v2_service_iam_member",
)

Block = dict[str, Any]


@dataclass(frozen=True)
class Terraform:
    """Every top-level block of infra/*.tf, keyed for lookup."""

    resources: dict[tuple[str, str], Block]
    data: dict[tuple[str, str], Block]
    locals: dict[str, Any]
    variables: dict[str, Block]
    outputs: dict[str, Block]
    terraform: list[Block]
    files: dict[str, dict[str, Any]]

    def resources_of(self, rtype: str) -> dict[str, Block]:
        return {name: body for (kind, name), body in self.resources.items() if kind == rtype}

    def resource(self, rtype: str, what: str) -> tuple[str, Block]:
        found = self.resources_of(rtype)
        assert len(found) == 1, f"expected exactly one {rtype} ({what}), found {sorted(found)}"
        return next(iter(found.items()))


@functools.cache
def terraform() -> Terraform:
    resources: dict[tuple[str, str], Block] = {}
    data: dict[tuple[str, str], Block] = {}
    locals_: dict[str, Any] = {}
    variables: dict[str, Block] = {}
    outputs: dict[str, Block] = {}
    settings: list[Block] = []
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed: dict[str, Any] = hcl2.load(handle, serialization_options=HCL_OPTIONS)
        files[path.name] = parsed
        for item in parsed.get("resource", []):
            for rtype, named in item.items():
                for name, body in named.items():
                    assert (rtype, name) not in resources, f"{rtype}.{name} is declared twice"
                    resources[(rtype, name)] = body
        for item in parsed.get("data", []):
            for dtype, named in item.items():
                for name, body in named.items():
                    data[(dtype, name)] = body
        for item in parsed.get("locals", []):
            for key, value in item.items():
                assert key not in locals_, f"local.{key} is declared twice"
                locals_[key] = value
        for item in parsed.get("variable", []):
            variables.update(item)
        for item in parsed.get("output", []):
            outputs.update(item)
        settings.extend(parsed.get("terraform", []))
    assert files, f"no .tf files in {INFRA}"
    return Terraform(resources, data, locals_, variables, outputs, settings, files)


def one(blocks: Any, what: str) -> Block:
    """python-hcl2 returns nested blocks as lists; most of ours must occur exactly once."""
    assert isinstance(blocks, list), f"{what} should be a block, got {blocks!r}"
    assert len(blocks) == 1, f"{what} should occur exactly once, found {len(blocks)}"
    block = blocks[0]
    assert isinstance(block, dict), f"{what} should be a block, got {block!r}"
    return block


def expr(value: Any) -> str | None:
    """The expression inside a whole-value interpolation "${...}", else None."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return None


def local_int(tf: Terraform, reference: Any) -> int:
    """Resolves `${local.NAME}` to a number literal (or `local.A - local.B` of two literals)."""
    name = expr(reference)
    assert name is not None, f"expected a reference to a local, got {reference!r}"
    match = re.fullmatch(r"local\.(\w+)", name)
    assert match, f"expected a reference to a local, got {reference!r}"
    value = tf.locals.get(match.group(1))
    assert value is not None, f"local.{match.group(1)} is not defined"
    if isinstance(value, int):
        return value
    difference = re.fullmatch(r"\$\{local\.(\w+) - local\.(\w+)\}", str(value))
    assert difference, f"local.{match.group(1)} should be a number, got {value!r}"
    return local_int(tf, f"${{local.{difference.group(1)}}}") - local_int(
        tf, f"${{local.{difference.group(2)}}}"
    )


def strings(node: Any) -> Iterator[str]:
    """Every key and string value in a parsed tree (expressions stay as their source text)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CONFIG_PATH.read_text(encoding="utf-8"))
    return loaded


def expected_secret_ids() -> set[str]:
    """The `secret:NAME` credential references of the config: the secrets this project owns."""
    ids: set[str] = set()
    for settings in config().get("registries", {}).values():
        for value in settings.values():
            match = SECRET_REF.match(value) if isinstance(value, str) else None
            if match:
                ids.add(match.group(1))
    return ids


def function(tf: Terraform) -> tuple[str, Block]:
    return tf.resource("google_cloudfunctions2_function", "the function")


def scheduler_job(tf: Terraform) -> Block:
    return tf.resource("google_cloud_scheduler_job", "the scheduled trigger")[1]


def function_uri_expressions(tf: Terraform) -> set[str]:
    name, _ = function(tf)
    return {
        f"${{google_cloudfunctions2_function.{name}.service_config[0].uri}}",
        f"${{google_cloudfunctions2_function.{name}.url}}",
    }


def service_account_ref(name: str) -> str:
    return f"${{google_service_account.{name}.email}}"


def sa_name_of(reference: Any) -> str | None:
    """`runtime` for "${google_service_account.runtime.email}" or "serviceAccount:${...}"."""
    if not isinstance(reference, str):
        return None
    match = re.fullmatch(
        r"(?:serviceAccount:)?\$\{google_service_account\.(\w+)\.(?:email|member)\}", reference
    )
    return match.group(1) if match else None


# --- terraform console (offline) ------------------------------------------------------------

TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not on the PATH")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def console(workdir: Path, expression: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    return subprocess.run(
        [TERRAFORM, "console", *args],
        cwd=workdir,
        input=expression + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def console_json(workdir: Path, local_name: str) -> Any:
    result = console(workdir, f"jsonencode(local.{local_name})")
    assert result.returncode == 0, f"terraform console failed: {ANSI.sub('', result.stderr)}"
    # The console prints the JSON as an HCL string literal, whose escapes match JSON's here.
    return json.loads(json.loads(result.stdout.strip()))


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The repository's top-level files and sync/ (caches included), infra/config.tf alone, and
    decoys that must never ship."""
    root = tmp_path / "repo"
    root.mkdir()
    for path in REPO.iterdir():
        if path.is_file():
            shutil.copy2(path, root / path.name)
    shutil.copytree(REPO / "sync", root / "sync")
    (root / "infra").mkdir()
    shutil.copy2(INFRA / "config.tf", root / "infra" / "config.tf")
    decoys = [
        "sync/__pycache__/errors.cpython-312.pyc",
        "sync/stale.pyc",
        "tests/decoy_test.py",
        "bench/decoy.py",
        "docs/decoy.md",
        ".venv/lib/decoy.py",
        ".venv-checkov/lib/decoy.py",
        "infra/build/old.zip",
        "notes.txt",
        "sync/NOTES.md",
        "sync/data/blob.bin",
    ]
    for decoy in decoys:
        (root / decoy).parent.mkdir(parents=True, exist_ok=True)
        (root / decoy).write_text("decoy\n", encoding="utf-8")
    # A stray binary file under sync/ would fail the plan if it were zipped (file() wants UTF-8).
    (root / "sync" / "data" / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    return root


# --- providers and APIs ----------------------------------------------------------------------


def test_required_providers_are_hashicorp_google_and_archive() -> None:
    tf = terraform()
    providers: dict[str, Any] = {}
    for settings in tf.terraform:
        for block in settings.get("required_providers", []):
            providers.update(block)
    for name in ("google", "archive"):
        assert name in providers, f"required_providers lacks {name}: {sorted(providers)}"
        source = providers[name].get("source")
        assert source == f"hashicorp/{name}", f"provider {name} should come from hashicorp/{name}"
        assert providers[name].get("version"), f"provider {name} has no version constraint"


def test_every_needed_api_is_enabled_and_kept_on_destroy() -> None:
    tf = terraform()
    services = tf.resources_of("google_project_service")
    assert services, "no google_project_service resource enables the APIs"
    enabled: set[str] = set()
    for name, body in services.items():
        assert body.get("disable_on_destroy") is False, (
            f"google_project_service.{name} must set disable_on_destroy = false"
        )
        for_each = expr(body.get("for_each"))
        if for_each is None:
            enabled.add(body["service"])
            continue
        source = tf.locals.get(for_each.removeprefix("local."), for_each)
        enabled.update(re.findall(r"[a-z]+\.googleapis\.com", str(source)))
    missing = REQUIRED_APIS - enabled
    assert not missing, f"APIs not enabled by Terraform: {sorted(missing)}"


# --- scheduler -------------------------------------------------------------------------------


def test_scheduler_schedule_is_config_sync_schedule_with_default_in_utc() -> None:
    tf = terraform()
    job = scheduler_job(tf)
    assert job.get("time_zone") == "Etc/UTC", (
        f"time_zone should be Etc/UTC, is {job.get('time_zone')!r}"
    )
    schedule = expr(job.get("schedule"))
    assert schedule is not None and schedule.startswith("local."), (
        f"schedule should be a local read from the config, is {job.get('schedule')!r}"
    )
    schedule_expr = str(tf.locals.get(schedule.removeprefix("local.")))
    assert "local.config.sync_schedule" in schedule_expr, (
        f"local.{schedule} should read sync_schedule from the config, is {schedule_expr!r}"
    )
    assert ("try(" in schedule_expr or "lookup(" in schedule_expr) and DEFAULT_SCHEDULE in (
        schedule_expr
    ), f"local.{schedule} should fall back to {DEFAULT_SCHEDULE!r}, is {schedule_expr!r}"
    config_expr = str(tf.locals.get("config"))
    assert "jsondecode(file(" in config_expr, (
        f"local.config should jsondecode(file(...)), is {config_expr!r}"
    )
    assert CONFIG_PATH.name in config_expr or "local.config_file_name" in config_expr, (
        f"local.config should read {CONFIG_PATH.name}, is {config_expr!r}"
    )
    assert tf.locals.get("config_file_name", CONFIG_PATH.name) == CONFIG_PATH.name


@pytest.mark.integration
@needs_terraform
def test_schedule_local_evaluates_to_config_sync_schedule(repo_copy: Path) -> None:
    want = config().get("sync_schedule", DEFAULT_SCHEDULE)
    got = console_json(repo_copy / "infra", "sync_schedule")
    assert got == want, f"local.sync_schedule is {got!r}, the config says {want!r}"


def test_scheduler_posts_empty_json_to_function_uri() -> None:
    tf = terraform()
    target = one(scheduler_job(tf).get("http_target"), "http_target of the scheduler job")
    assert target.get("http_method") == "POST", f"http_method should be POST: {target!r}"
    assert target.get("uri") in function_uri_expressions(tf), (
        f"http_target.uri should be the function's URI, is {target.get('uri')!r}"
    )
    body = str(target.get("body"))
    assert body in ("${base64encode(jsonencode({}))}", '${base64encode("{}")}'), (
        f"body should be base64-encoded JSON {{}}, is {body!r}"
    )
    headers = target.get("headers") or {}
    assert headers.get("Content-Type") == "application/json", (
        f"http_target should send Content-Type: application/json, headers are {headers!r}"
    )


def test_scheduler_signs_oidc_token_as_invoker_for_function_uri() -> None:
    tf = terraform()
    target = one(scheduler_job(tf).get("http_target"), "http_target of the scheduler job")
    assert "oauth_token" not in target, "use oidc_token for Cloud Run, not oauth_token"
    token = one(target.get("oidc_token"), "oidc_token of the scheduler's http_target")
    assert token.get("service_account_email") == service_account_ref("invoker"), (
        f"the OIDC token should be the invoker account's, is {token.get('service_account_email')!r}"
    )
    assert token.get("audience") in function_uri_expressions(tf), (
        f"the OIDC audience should be the function URI, is {token.get('audience')!r}"
    )
    assert token.get("audience") == target.get("uri"), "audience and uri should be the same URL"


def test_scheduler_attempt_deadline_equals_function_timeout() -> None:
    tf = terraform()
    _, fn = function(tf)
    service = one(fn.get("service_config"), "service_config of the function")
    timeout = service.get("timeout_seconds")
    deadline = scheduler_job(tf).get("attempt_deadline")
    timeout_name = expr(timeout)
    assert timeout_name is not None, f"timeout_seconds should be a shared local, is {timeout!r}"
    assert deadline == f"${{{timeout_name}}}s", (
        f"attempt_deadline should be {timeout_name} seconds like timeout_seconds, is {deadline!r}"
    )
    seconds = local_int(tf, timeout)
    assert SCHEDULER_MIN_DEADLINE_SECONDS <= seconds <= SCHEDULER_MAX_DEADLINE_SECONDS, (
        f"the shared deadline is {seconds}s; Cloud Scheduler allows 15-1800s for HTTP targets"
    )


def test_scheduler_retries_within_cloud_scheduler_limits() -> None:
    tf = terraform()
    retry = one(scheduler_job(tf).get("retry_config"), "retry_config of the scheduler job")
    count = retry.get("retry_count")
    variable = expr(count)
    if variable is not None:
        assert variable.startswith("var."), f"retry_count should be a number or a var, is {count!r}"
        count = tf.variables[variable.removeprefix("var.")].get("default")
    assert isinstance(count, int) and 0 <= count <= 5, f"retry_count should be 0-5, is {count!r}"
    assert retry.get("min_backoff_duration"), "retry_config should set a backoff"


# --- function --------------------------------------------------------------------------------


def test_function_entry_point_is_sync_images() -> None:
    _, fn = function(terraform())
    build = one(fn.get("build_config"), "build_config of the function")
    assert build.get("entry_point") == "sync_images", (
        f"entry_point should be sync_images, is {build.get('entry_point')!r}"
    )


def test_main_py_defines_the_entry_point_sync_images() -> None:
    tree = ast.parse(MAIN_PY.read_text(encoding="utf-8"), filename=str(MAIN_PY))
    names = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert "sync_images" in names, "main.py defines no top-level function sync_images"


def test_function_runtime_is_python312_or_313() -> None:
    _, fn = function(terraform())
    runtime = one(fn.get("build_config"), "build_config of the function").get("runtime")
    assert runtime in ("python312", "python313"), f"runtime should be python312/313, is {runtime!r}"


def test_function_runs_one_request_on_one_instance_with_explicit_memory_and_cpu() -> None:
    _, fn = function(terraform())
    service = one(fn.get("service_config"), "service_config of the function")
    # One instance, or with fan-out one per running task (tests/test_infra_tasks.py).
    assert service.get("max_instance_count") in (1, "${local.function_max_instances}"), (
        "max_instance_count should be 1 (or local.function_max_instances)"
    )
    assert service.get("max_instance_request_concurrency") == 1, (
        "max_instance_request_concurrency should be 1"
    )
    assert service.get("available_memory") == "512Mi", (
        f"available_memory should be 512Mi, is {service.get('available_memory')!r}"
    )
    assert service.get("available_cpu"), "available_cpu should be set explicitly"


def test_function_ingress_allows_all_callers_guarded_by_iam() -> None:
    _, fn = function(terraform())
    service = one(fn.get("service_config"), "service_config of the function")
    assert service.get("ingress_settings") == "ALLOW_ALL", (
        "ingress should be ALLOW_ALL so invoker_members can curl it (IAM guards it)"
    )


def test_function_environment_names_project_config_and_deadline_and_no_secret() -> None:
    tf = terraform()
    _, fn = function(tf)
    service = one(fn.get("service_config"), "service_config of the function")
    env = service.get("environment_variables") or {}
    for key in ("GOOGLE_CLOUD_PROJECT", "IMAGE_SYNC_CONFIG", "SYNC_DEADLINE_SECONDS"):
        assert key in env, f"environment_variables lacks {key}: {sorted(env)}"
    assert env["GOOGLE_CLOUD_PROJECT"] == "${var.project_id}", "GOOGLE_CLOUD_PROJECT != project_id"
    config_name = env["IMAGE_SYNC_CONFIG"]
    if config_name == "${local.config_file_name}":
        config_name = tf.locals["config_file_name"]
    assert config_name == CONFIG_PATH.name, (
        f"IMAGE_SYNC_CONFIG should be {CONFIG_PATH.name} (at the zip root), is {config_name!r}"
    )
    sync_deadline = str(env["SYNC_DEADLINE_SECONDS"])
    match = re.fullmatch(r"\$\{tostring\((local\.\w+)\)\}", sync_deadline)
    assert match, f"SYNC_DEADLINE_SECONDS should be tostring(local...), is {sync_deadline!r}"
    run_budget = local_int(tf, service["timeout_seconds"])
    sync_budget = local_int(tf, f"${{{match.group(1)}}}")
    assert 0 < sync_budget < run_budget, (
        f"SYNC_DEADLINE_SECONDS ({sync_budget}) should be below the run deadline ({run_budget})"
    )
    for key, value in env.items():
        text = f"{key}={value}".lower()
        assert not any(word in text for word in ("secret", "password", "token")), (
            f"environment variable {key} looks like a credential: {value!r}"
        )


def test_function_runs_as_dedicated_account_without_project_roles() -> None:
    tf = terraform()
    _, fn = function(tf)
    service = one(fn.get("service_config"), "service_config of the function")
    runtime = sa_name_of(service.get("service_account_email"))
    assert runtime is not None, (
        f"service_account_email should be a dedicated google_service_account, "
        f"is {service.get('service_account_email')!r}"
    )
    assert ("google_service_account", runtime) in tf.resources, (
        f"no google_service_account.{runtime}"
    )
    for kind in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in tf.resources_of(kind).items():
            members = [body.get("member"), *body.get("members", [])]
            holders = {sa_name_of(member) for member in members}
            assert runtime not in holders and "invoker" not in holders, (
                f"{kind}.{name} gives a project role to the runtime or invoker account"
            )
    assert not tf.resources_of("google_project_iam_policy"), "no authoritative project IAM policy"


def test_function_builds_from_the_uploaded_source_object() -> None:
    tf = terraform()
    _, fn = function(tf)
    build = one(fn.get("build_config"), "build_config of the function")
    source = one(one(build.get("source"), "build_config.source").get("storage_source"), "storage")
    object_name, _ = tf.resource("google_storage_bucket_object", "the source zip")
    bucket_name, _ = tf.resource("google_storage_bucket", "the source bucket")
    assert source.get("object") == f"${{google_storage_bucket_object.{object_name}.name}}", (
        f"storage_source.object should be the uploaded zip, is {source.get('object')!r}"
    )
    assert source.get("bucket") == f"${{google_storage_bucket.{bucket_name}.name}}", (
        f"storage_source.bucket should be the source bucket, is {source.get('bucket')!r}"
    )


# --- source zip ------------------------------------------------------------------------------


def test_source_object_name_contains_archive_md5() -> None:
    tf = terraform()
    archives = [name for (kind, name) in tf.data if kind == "archive_file"]
    assert len(archives) == 1, f"expected one data.archive_file, found {archives}"
    _, obj = tf.resource("google_storage_bucket_object", "the source zip")
    md5 = f"data.archive_file.{archives[0]}.output_md5"
    assert md5 in str(obj.get("name")), (
        f"the object name should contain {md5} so code changes redeploy, is {obj.get('name')!r}"
    )
    assert obj.get("source") == f"${{data.archive_file.{archives[0]}.output_path}}", (
        "the object should upload the archive's output_path"
    )


def test_source_bucket_is_uniform_and_never_public() -> None:
    _, bucket = terraform().resource("google_storage_bucket", "the source bucket")
    assert bucket.get("uniform_bucket_level_access") is True, "enable uniform bucket-level access"
    assert bucket.get("public_access_prevention") == "enforced", (
        "public_access_prevention should be enforced"
    )


def test_archive_is_built_from_the_explicit_source_list() -> None:
    tf = terraform()
    (archive,) = [body for (kind, _), body in tf.data.items() if kind == "archive_file"]
    assert archive.get("type") == "zip", "the source archive should be a zip"
    assert "source_dir" not in archive, "source_dir would ship the whole folder; list the files"
    dynamic = one(archive.get("dynamic"), "dynamic source of the archive")
    source = dynamic.get("source")
    assert isinstance(source, dict), f"the archive should have a dynamic source block: {dynamic!r}"
    assert source.get("for_each") == "${local.source_files}", (
        f"the archive should iterate local.source_files, iterates {source.get('for_each')!r}"
    )
    listed = str(tf.locals.get("source_files"))
    for required in ("main.py", "requirements.txt", "sync/**/*.py", "sync/py.typed"):
        assert required in listed, f"local.source_files should include {required}: {listed!r}"


@pytest.mark.integration
@needs_terraform
def test_source_files_local_lists_only_function_sources(repo_copy: Path) -> None:
    got = console_json(repo_copy / "infra", "source_files")
    want = {"main.py", "requirements.txt", CONFIG_PATH.name, "sync/py.typed"} | {
        path.relative_to(REPO).as_posix() for path in (REPO / "sync").rglob("*.py")
    }
    assert set(got) == want, (
        f"the zip would ship unexpected files {sorted(set(got) - want)} "
        f"and miss {sorted(want - set(got))}"
    )


# --- secrets ---------------------------------------------------------------------------------


def test_config_references_quay_credentials_as_secrets() -> None:
    assert {"quay-user", "quay-password"} <= expected_secret_ids(), (
        f"image-sync-config.json should reference secret:quay-user and secret:quay-password, "
        f"references {sorted(expected_secret_ids())}"
    )


def test_secret_ids_are_derived_from_config_secret_references() -> None:
    tf = terraform()
    secrets = tf.resources_of("google_secret_manager_secret")
    assert len(secrets) == 1, f"expected one for_each secret resource, found {sorted(secrets)}"
    ((name, secret),) = secrets.items()
    assert secret.get("for_each") == "${toset(local.secret_ids)}", (
        f"google_secret_manager_secret.{name} should iterate local.secret_ids, "
        f"iterates {secret.get('for_each')!r}"
    )
    assert secret.get("secret_id") == "${each.value}", "secret_id should be each.value"
    derivation = str(tf.locals.get("secret_ids"))
    for part in ("local.config.registries", "secret:"):
        assert part in derivation, f"local.secret_ids should use {part}: {derivation!r}"
    replication = one(secret.get("replication"), "replication of the secret")
    assert "auto" in replication, f"replication should be auto, is {replication!r}"


@pytest.mark.integration
@needs_terraform
def test_secret_ids_local_evaluates_to_config_secret_references(repo_copy: Path) -> None:
    got = console_json(repo_copy / "infra", "secret_ids")
    assert set(got) == expected_secret_ids(), (
        f"local.secret_ids is {got}, the config references {sorted(expected_secret_ids())}"
    )


@pytest.mark.integration
@needs_terraform
def test_secret_ids_skip_env_and_full_path_references(repo_copy: Path) -> None:
    data = config()
    data["registries"] = {
        "quay.io": {"username": "secret:quay-user", "password": "secret:quay-password"},
        "docker.io": {
            "username": "env:HUB_USER",
            "password": "secret:projects/p/secrets/s/versions/1",
        },
        "localhost:5000": {"tls": "disabled"},
    }
    (repo_copy / CONFIG_PATH.name).write_text(json.dumps(data), encoding="utf-8")
    got = console_json(repo_copy / "infra", "secret_ids")
    assert got == ["quay-password", "quay-user"], (
        f"only secret:NAME references should become secrets, got {got}"
    )


def test_secret_accessor_is_granted_only_to_runtime_account_on_managed_secrets() -> None:
    tf = terraform()
    secret_name = next(iter(tf.resources_of("google_secret_manager_secret")))
    grants = tf.resources_of("google_secret_manager_secret_iam_member")
    assert grants, "the runtime account gets no secretAccessor on its secrets"
    for name, grant in grants.items():
        assert grant.get("role") == "roles/secretmanager.secretAccessor", (
            f"google_secret_manager_secret_iam_member.{name} grants {grant.get('role')!r}"
        )
        assert grant.get("member") == "serviceAccount:" + service_account_ref("runtime"), (
            f"google_secret_manager_secret_iam_member.{name} is for {grant.get('member')!r}, "
            "not the runtime account"
        )
        assert grant.get("for_each") == f"${{google_secret_manager_secret.{secret_name}}}", (
            f"google_secret_manager_secret_iam_member.{name} should cover exactly the secrets "
            "that Terraform manages"
        )
    for kind in (
        "google_secret_manager_secret_iam_binding",
        "google_secret_manager_secret_iam_policy",
    ):
        assert not tf.resources_of(kind), f"{kind} is not wanted: use one iam_member per secret"
    for (kind, name), body in tf.resources.items():
        if kind.startswith("google_project_iam"):
            assert "secretmanager" not in str(body.get("role")), (
                f"{kind}.{name} grants a Secret Manager role on the whole project"
            )


def test_no_secret_value_is_managed_by_terraform() -> None:
    tf = terraform()
    versions = tf.resources_of("google_secret_manager_secret_version")
    assert not versions, f"secret versions hold values in state: {sorted(versions)}"
    for file_name, parsed in tf.files.items():
        assert "secret_data" not in set(strings(parsed)), f"{file_name} mentions secret_data"


# --- invocation rights -----------------------------------------------------------------------


def test_no_public_principal_anywhere() -> None:
    for file_name, parsed in terraform().files.items():
        for text in strings(parsed):
            for principal in PUBLIC_PRINCIPALS:
                assert principal not in text, f"{file_name} mentions {principal}: {text!r}"


def test_run_invoker_is_granted_through_cloud_run_iam_on_the_function_service() -> None:
    tf = terraform()
    fn_name, _ = function(tf)
    cf2_iam = [
        kind for (kind, _) in tf.resources if kind.startswith("google_cloudfunctions2_function_iam")
    ]
    assert not cf2_iam, f"run.invoker via {cf2_iam} is rejected by the API; use Cloud Run IAM"
    grants = [
        (kind, name, body)
        for (kind, name), body in tf.resources.items()
        if kind in RUN_INVOKER_RESOURCES
    ]
    assert grants, "no Cloud Run IAM member grants roles/run.invoker on the function's service"
    members: list[str] = []
    for kind, name, body in grants:
        assert body.get("role") == "roles/run.invoker", f"{kind}.{name} grants {body.get('role')!r}"
        service = (
            body.get("name") if kind.endswith("v2_service_iam_member") else body.get("service")
        )
        assert service in (
            f"${{google_cloudfunctions2_function.{fn_name}.name}}",
            f"${{google_cloudfunctions2_function.{fn_name}.service_config[0].service}}",
        ), f"{kind}.{name} should target the function's service, targets {service!r}"
        members.append(str(body.get("member")))
    assert "serviceAccount:" + service_account_ref("invoker") in members, (
        f"the invoker account lacks run.invoker; members are {members}"
    )
    humans = [
        body for _, _, body in grants if body.get("for_each") == "${toset(var.invoker_members)}"
    ]
    assert humans and humans[0].get("member") == "${each.value}", (
        "var.invoker_members should each get run.invoker (for_each over toset(var.invoker_members))"
    )


def test_invoker_members_variable_is_a_list_of_principals() -> None:
    variable = terraform().variables.get("invoker_members")
    assert variable is not None, "variable invoker_members is missing"
    assert variable.get("type") == "${list(string)}", "invoker_members should be list(string)"
    assert variable.get("validation"), "invoker_members should validate its principals"


@pytest.mark.integration
@needs_terraform
@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", "alice@example.com"])
def test_invoker_members_validation_rejects_non_principals(tmp_path: Path, member: str) -> None:
    shutil.copy2(INFRA / "variables.tf", tmp_path / "variables.tf")
    value = json.dumps([member])
    result = console(
        tmp_path,
        "var.invoker_members",
        "-var",
        "project_id=demo-project-1",
        "-var",
        f"invoker_members={value}",
    )
    assert "Invalid value for variable" in ANSI.sub("", result.stderr), (
        f"invoker_members = {value} was accepted; it should fail validation"
    )


@pytest.mark.integration
@needs_terraform
def test_invoker_members_validation_accepts_users_and_groups(tmp_path: Path) -> None:
    shutil.copy2(INFRA / "variables.tf", tmp_path / "variables.tf")
    value = json.dumps(["user:alice@example.com", "group:oncall@example.com"])
    result = console(
        tmp_path,
        "var.invoker_members",
        "-var",
        "project_id=demo-project-1",
        "-var",
        f"invoker_members={value}",
    )
    stderr = ANSI.sub("", result.stderr)
    assert result.returncode == 0 and "Invalid value" not in stderr, (
        f"invoker_members = {value} was rejected: {stderr}"
    )


# --- outputs ---------------------------------------------------------------------------------


def test_outputs_give_uri_curl_scheduler_job_and_secret_commands() -> None:
    tf = terraform()
    outputs = tf.outputs
    for name in ("function_uri", "curl_command", "scheduler_job_name", "secret_version_commands"):
        assert name in outputs, f"output {name} is missing; outputs are {sorted(outputs)}"
    assert outputs["function_uri"].get("value") in function_uri_expressions(tf)
    curl = str(outputs["curl_command"].get("value"))
    for part in ("curl", "gcloud auth print-identity-token", "Authorization: Bearer"):
        assert part in curl, f"curl_command lacks {part!r}: {curl!r}"
    commands = str(outputs["secret_version_commands"].get("value"))
    for part in ("gcloud secrets versions add", "--data-file=-", "google_secret_manager_secret."):
        assert part in commands, f"secret_version_commands lacks {part!r}: {commands!r}"


# --- first apply -----------------------------------------------------------------------------


def depends_on(body: Block) -> list[str]:
    return [str(expr(item) or item) for item in body.get("depends_on", [])]


def test_apis_are_followed_by_a_propagation_wait_that_everything_else_waits_for() -> None:
    tf = terraform()
    sleeps = tf.resources_of("time_sleep")
    apis = [
        name
        for name, body in sleeps.items()
        if "google_project_service.services" in depends_on(body)
    ]
    assert len(apis) == 1, f"one time_sleep should wait for the APIs, found {sorted(sleeps)}"
    wait = f"time_sleep.{apis[0]}"
    assert sleeps[apis[0]].get("create_duration"), f"{wait} has no create_duration"
    for (kind, name), body in tf.resources.items():
        assert "google_project_service.services" not in depends_on(body) or kind == "time_sleep", (
            f"{kind}.{name} should wait for {wait}, not only for the APIs to be enabled"
        )
    for kind in ("google_service_account", "google_secret_manager_secret", "google_storage_bucket"):
        for name, body in tf.resources_of(kind).items():
            assert wait in depends_on(body), f"{kind}.{name} should depend on {wait}"


def test_the_function_waits_for_the_build_grants_to_propagate() -> None:
    tf = terraform()
    _, fn = function(tf)
    waits = [d for d in depends_on(fn) if d.startswith("time_sleep.")]
    assert waits, "the function should depend on a time_sleep after the build account's grants"
    body = tf.resources[("time_sleep", waits[0].split(".")[1])]
    watched = " ".join(strings(body.get("triggers", {}))) + " ".join(depends_on(body))
    grants = [
        f"{kind}.{name}"
        for (kind, name), b in tf.resources.items()
        if kind.endswith("_iam_member") and "google_service_account.build" in " ".join(strings(b))
    ]
    assert grants, "the build account has no grants"
    for grant in grants:
        assert grant in watched, f"{waits[0]} should wait for {grant}"


def test_the_build_account_has_no_unconditional_project_storage_role() -> None:
    tf = terraform()
    for kind in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in tf.resources_of(kind).items():
            members = " ".join(strings([body.get("member"), body.get("members")]))
            if "google_service_account.build" not in members:
                continue
            role = str(body.get("role"))
            assert role not in {"roles/storage.objectAdmin", "roles/storage.admin"}, (
                f"{kind}.{name} gives the build account {role} on the whole project"
            )
            if not role.startswith("roles/storage."):
                continue
            assert role == "roles/storage.objectViewer", f"{kind}.{name}: {role} is more than read"
            condition = one(body.get("condition"), f"condition of {kind}.{name}")
            expression = str(condition.get("expression"))
            assert re.fullmatch(
                r'resource\.name\.startsWith\(\\?"projects/_/buckets/\$\{local\.gcf_sources_bucket\}'
                r'/objects/\\?"\)',
                expression,
            ), f"{kind}.{name} should be limited to the gcf-v2-sources objects: {expression!r}"
    bucket = str(tf.locals.get("gcf_sources_bucket"))
    assert bucket == "gcf-v2-sources-${data.google_project.this.number}-${var.region}", bucket


def test_the_build_pushes_to_a_managed_repository_with_a_cleanup_policy() -> None:
    tf = terraform()
    _, fn = function(tf)
    build = one(fn.get("build_config"), "build_config of the function")
    name, repo = tf.resource("google_artifact_registry_repository", "the build repository")
    assert build.get("docker_repository") == f"${{google_artifact_registry_repository.{name}.id}}"
    assert repo.get("format") == "DOCKER" and repo.get("cleanup_policy_dry_run") is False
    policies = {policy["action"]: policy for policy in repo.get("cleanup_policies", [])}
    keep = one(policies["KEEP"].get("most_recent_versions"), "KEEP most_recent_versions")
    assert local_int(tf, keep.get("keep_count")) >= 2, "keep the serving image and one before it"
    assert "DELETE" in policies, "without a DELETE policy nothing is ever cleaned up"
    grants = tf.resources_of("google_artifact_registry_repository_iam_member")
    assert [g.get("role") for g in grants.values()] == ["roles/artifactregistry.writer"]
    for body in tf.resources_of("google_project_iam_member").values():
        assert "artifactregistry" not in str(body.get("role")), "AR roles on the repository only"


def test_a_new_source_object_is_created_before_the_old_one_is_destroyed() -> None:
    _, obj = terraform().resource("google_storage_bucket_object", "the source zip")
    lifecycle = one(obj.get("lifecycle"), "lifecycle of the source object")
    assert lifecycle.get("create_before_destroy") is True


def test_state_goes_to_a_partial_gcs_backend() -> None:
    backends = [b for settings in terraform().terraform for b in settings.get("backend", [])]
    assert backends == [{"gcs": {}}], f'expected one partial backend "gcs" {{}}: {backends}'


def test_the_google_provider_is_pinned_within_one_major_at_least_6_43() -> None:
    providers: dict[str, Any] = {}
    for settings in terraform().terraform:
        for block in settings.get("required_providers", []):
            providers.update(block)
    constraint = str(providers["google"]["version"])
    low = re.search(r">=\s*(\d+)\.(\d+)", constraint)
    high = re.search(r"<\s*(\d+)\.0(?:\.0)?\b", constraint)
    assert low and high, f"google should have >= and < bounds: {constraint!r}"
    assert (int(low.group(1)), int(low.group(2))) >= (6, 43), "deletion_protection needs 6.43"
    assert int(high.group(1)) == int(low.group(1)) + 1, f"more than one major: {constraint!r}"
    assert providers.get("time", {}).get("source") == "hashicorp/time", "time_sleep's provider"


def test_secrets_are_protected_from_deletion() -> None:
    for name, body in terraform().resources_of("google_secret_manager_secret").items():
        assert body.get("deletion_protection") is True, f"google_secret_manager_secret.{name}"


def test_the_tfvars_example_sets_only_declared_variables_and_every_required_one() -> None:
    tf = terraform()
    with (INFRA / "terraform.tfvars.example").open(encoding="utf-8") as handle:
        example: dict[str, Any] = hcl2.load(handle, serialization_options=HCL_OPTIONS)
    unknown = set(example) - set(tf.variables)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables {sorted(unknown)}"
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required <= set(example), f"the example lacks {sorted(required - set(example))}"
    assert example.get("alert_emails"), "the example should show where alerts go"


# --- alerting --------------------------------------------------------------------------------

ALERT_POLICY = "google_monitoring_alert_policy"


def alert_policies() -> dict[str, Block]:
    policies = terraform().resources_of(ALERT_POLICY)
    assert len(policies) == 3, f"expected three alert policies, found {sorted(policies)}"
    return policies


def run_metric() -> tuple[str, Block]:
    return terraform().resource("google_logging_metric", "the run summary metric")


def condition_of(policy: Block, kind: str) -> Block:
    conditions: list[Block] = [c[kind][0] for c in policy.get("conditions", []) if kind in c]
    assert len(conditions) == 1, f"expected one {kind}: {policy.get('conditions')}"
    return conditions[0]


def policy_with(kind: str, text: str) -> Block:
    """The one policy with a `kind` condition whose query or filter contains `text`."""
    found = []
    for policy in alert_policies().values():
        for condition in policy.get("conditions", []):
            body = condition.get(kind, [{}])[0]
            if text in str(body.get("query", "")) + str(body.get("filter", "")):
                found.append(policy)
    assert len(found) == 1, f"expected one policy with a {kind} on {text!r}, found {len(found)}"
    return found[0]


def promql_metric(tf: Terraform, query: str) -> str:
    """The query (a heredoc's body) with the selector local filled in and the metric as RUNS."""
    match = re.fullmatch(r"<<-?(\w+)\n(.*)\n\s*\1\s*", query, re.DOTALL)
    body = match.group(2) if match else query
    return body.replace("${local.runs_of}", str(tf.locals["runs_of"])).replace(
        "${local.runs_promql}", "RUNS"
    )


def test_alert_policies_notify_the_email_channels_and_the_extra_ones() -> None:
    tf = terraform()
    channels = tf.resources_of("google_monitoring_notification_channel")
    (name, channel) = next(iter(channels.items()))
    assert channel.get("for_each") == "${toset(var.alert_emails)}", channel.get("for_each")
    assert channel.get("type") == "email"
    assert channel.get("labels") == {"email_address": "${each.value}"}
    listed = str(tf.locals.get("alert_channels"))
    assert f"google_monitoring_notification_channel.{name}" in listed, listed
    assert "var.alert_notification_channels" in listed, listed
    for policy_name, policy in alert_policies().items():
        assert policy.get("notification_channels") == "${local.alert_channels}", policy_name
        assert policy.get("enabled") == "${var.alerting_enabled}", policy_name
    assert tf.variables["alerting_enabled"].get("default") is True, "alerting is on by default"


def test_alerting_without_a_recipient_is_refused() -> None:
    policy = alert_policies()["run_failed"]
    precondition = one(
        one(policy.get("lifecycle"), "lifecycle").get("precondition"), "precondition"
    )
    assert "length(local.alert_channels) > 0" in str(precondition.get("condition"))


def test_each_alert_documents_a_runbook() -> None:
    tf = terraform()
    common = str(tf.locals.get("runbook_common"))
    for part in (
        'jsonPayload.event="summary"',
        "gcloud scheduler jobs run",
        "curl",
        "gcloud auth print-identity-token",
        "Troubleshooting",
        "${local.runbook}",
    ):
        assert part in common, f"local.runbook_common lacks {part!r}"
    assert "Runbook" in str(tf.locals.get("runbook")), tf.locals.get("runbook")
    for name, policy in alert_policies().items():
        documentation = one(policy.get("documentation"), f"documentation of {name}")
        assert documentation.get("mime_type") == "text/markdown", name
        content = str(documentation.get("content"))
        assert "${local.runbook_common}" in content and len(content) > 300, name


def test_the_no_run_alert_looks_back_26_hours_with_promql() -> None:
    tf = terraform()
    policy = policy_with("condition_prometheus_query_language", "absent_over_time")
    condition = condition_of(policy, "condition_prometheus_query_language")
    query = promql_metric(tf, str(condition["query"]))
    assert query == (
        'absent_over_time(RUNS{monitored_resource="cloud_run_revision",kind="run",'
        'status!="rejected"}[26h])'
    ), query
    assert condition.get("disable_metric_validation") is True, "the metric is empty until a run"
    for name, body in alert_policies().items():
        for cond in body.get("conditions", []):
            assert "condition_absent" not in cond, f"{name}: condition_absent stops at 23.5 h"


def test_the_partial_alert_is_a_warning_over_3_days_per_image() -> None:
    tf = terraform()
    policy = policy_with("condition_prometheus_query_language", 'status="partial"')
    assert policy.get("severity") == "WARNING"
    query = " ".join(
        promql_metric(
            tf, str(condition_of(policy, "condition_prometheus_query_language")["query"])
        ).split()
    )
    assert query == (
        'sum by (image) (increase(RUNS{monitored_resource="cloud_run_revision",kind="run",'
        'status="partial"}[3d])) >= 3 unless on (image) sum by (image) (increase(RUNS{'
        'monitored_resource="cloud_run_revision",kind="run",status="ok"}[3d])) > 0'
    ), query


def test_the_promql_name_is_the_log_metric_name_mapped() -> None:
    tf = terraform()
    name, _ = run_metric()
    assert tf.locals["runs_promql"] == (
        f"logging_googleapis_com:user_${{replace(google_logging_metric.{name}.name, "
        '"/[^A-Za-z0-9_]/", "_")}'
    ), tf.locals["runs_promql"]


# --- the summary line against the metric -----------------------------------------------------

CLAUSE = re.compile(r'^([\w.]+)="([^"]*)"$')


def filter_clauses(text: str) -> dict[str, str]:
    """`a.b="x" AND c="y"` (the only form used here) as {"a.b": "x", "c": "y"}."""
    clauses: dict[str, str] = {}
    for part in text.split(" AND "):
        match = CLAUSE.match(part.strip())
        assert match, f"unexpected filter clause {part!r} in {text!r}"
        clauses[match.group(1)] = match.group(2)
    return clauses


def metric_filter(tf: Terraform, metric: Block) -> dict[str, str]:
    raw = str(metric["filter"])
    match = re.fullmatch(r'\$\{join\(" AND ", \[(.*)\]\)\}', raw, re.DOTALL)
    assert match, f"the metric filter should be a join of clauses: {raw!r}"
    parts = [json.loads(item) for item in re.findall(r'"(?:[^"\\]|\\.)*"', match.group(1))]
    return filter_clauses(" AND ".join(parts))


@pytest.fixture
def failed_run_line(
    anon_registry: RegistryServer, tmp_path: Path, restore_loggers: None
) -> dict[str, Any]:
    """The summary line of a real failed run of one image (a configured tag missing upstream),
    answered by service.handle as the function does for Cloud Scheduler."""
    host = anon_registry.host
    with RawClient(anon_registry) as raw:
        raw.push_image("istio/hello", "1.0", images.oci_manifest(5))
    config = {
        "images": [
            {
                "name": "hello",
                "upstream": f"{host}/istio/hello",
                "target": f"{host}/sail-dev/hello",
                "tags": ["1.0", "2.0"],
            }
        ],
        "registries": {host: {"tls": "disabled"}},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {"IMAGE_SYNC_CONFIG": str(path), "DOCKER_CONFIG": str(tmp_path / "none")}
    incoming = service.Incoming(
        method="POST",
        content_type="application/json",
        body=b"{}",
        scheduler_job="image-sync-schedule",
    )
    stream = io.StringIO()
    with contextlib.redirect_stdout(stream):
        answer = service.handle(incoming, env)
    # A tag missing upstream is permanent: 200 (no scheduler retry); the alert reads the line.
    assert answer.status == 200, answer.body
    lines: list[dict[str, Any]] = [
        json.loads(text) for text in stream.getvalue().splitlines() if text.strip()
    ]
    summaries = [line for line in lines if line.get("event") == "summary"]
    assert len(summaries) == 1, f"one summary line per run, got {summaries}"
    return summaries[0]


def test_the_run_metric_matches_the_summary_line_a_real_run_writes(
    failed_run_line: dict[str, Any],
) -> None:
    tf = terraform()
    name, metric = run_metric()
    line = failed_run_line
    clauses = metric_filter(tf, metric)
    assert clauses.get("resource.type") == "cloud_run_revision", clauses
    json_fields = {
        k.removeprefix("jsonPayload."): v
        for k, v in clauses.items()
        if k.startswith("jsonPayload.")
    }
    assert json_fields == {"event": "summary"}, clauses
    for field, value in json_fields.items():
        assert line.get(field) == value, f"the line's {field} is {line.get(field)!r}, not {value!r}"
    extractors = metric.get("label_extractors") or {}
    descriptor = one(metric.get("metric_descriptor"), "metric_descriptor")
    declared = {label["key"] for label in descriptor.get("labels", [])}
    assert set(extractors) == declared == {"status", "trigger", "kind", "image"}, (
        extractors,
        declared,
    )
    for label, extractor in extractors.items():
        match = re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", str(extractor))
        assert match, f"label {label}: unexpected extractor {extractor!r}"
        assert isinstance(line.get(match.group(1)), str), (
            f"label {label} reads jsonPayload.{match.group(1)}, which the line lacks: {line}"
        )
    assert (line["status"], line["trigger"], line["kind"], line["image"]) == (
        "failed",
        "scheduler",
        "run",
        "hello",
    )

    # The failure alert: the metric, and a label value the line has.
    policy = policy_with("condition_threshold", 'metric.label.status="failed"')
    condition = condition_of(policy, "condition_threshold")
    policy_clauses = filter_clauses(str(condition["filter"]))
    assert (
        policy_clauses["metric.type"]
        == f"logging.googleapis.com/user/${{google_logging_metric.{name}.name}}"
    )
    labels = {
        k.removeprefix("metric.label."): v
        for k, v in policy_clauses.items()
        if k.startswith("metric.label.")
    }
    for label, value in labels.items():
        assert label in extractors, f"the failure alert filters on unknown label {label}"
        field = str(extractors[label])[len("EXTRACT(jsonPayload.") : -1]
        assert line[field] == value, f"a failed run's {field} is {line[field]!r}, not {value!r}"
    aggregation = one(condition.get("aggregations"), "aggregations")
    assert condition.get("threshold_value") == 0 and condition.get("comparison") == "COMPARISON_GT"
    for field in aggregation.get("group_by_fields", []):
        assert field.removeprefix("metric.label.") in extractors, field


# --- README ----------------------------------------------------------------------------------


def readme_table_names(heading: str) -> set[str]:
    """The backquoted first cells of the table under `## heading` in infra/README.md."""
    text = (INFRA / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))


def test_the_readme_tables_list_every_input_and_output() -> None:
    tf = terraform()
    assert readme_table_names("Inputs") == set(tf.variables), "README Inputs vs variables.tf"
    assert readme_table_names("Outputs") == set(tf.outputs), "README Outputs vs outputs.tf"
