# What infra reads from the repository: the sync config (one source of truth for the schedule and
# the secret names) and the list of files deployed as the function's source.
#
# This file is self-contained (no resources, no data sources, no providers) on purpose: the tests
# copy it next to a copy of the repository and evaluate these locals with `terraform console`,
# which works offline.
locals {
  repo_root        = "${path.module}/.."
  config_file_name = "image-sync-config.json"
  config           = jsondecode(file("${local.repo_root}/${local.config_file_name}"))

  # Cron in UTC; the same default as the sync code when the key is absent.
  sync_schedule = try(local.config.sync_schedule, "0 2 * * *")

  # Every "secret:NAME" credential reference under registries becomes a Secret Manager secret of
  # this project. Full references ("secret:projects/P/secrets/S/versions/V") point at secrets
  # managed elsewhere and are left alone; "env:NAME" references are not secrets at all.
  secret_ids = sort(distinct(flatten([
    for host, settings in try(local.config.registries, {}) : [
      for key, value in settings : trimprefix(value, "secret:")
      if can(regex("^secret:[A-Za-z0-9_-]{1,255}$", value))
    ]
  ])))

  # The deployed source: exactly these files, at the zip root. Everything else in the repository
  # (tests, bench, docs, infra, virtual environments, caches, and any stray file under sync/,
  # which archive_file could not read if it were binary) stays out.
  source_files = sort(concat(
    ["main.py", "requirements.txt", local.config_file_name, "sync/py.typed"],
    tolist(fileset(local.repo_root, "sync/**/*.py")),
  ))
}
