#!/usr/bin/env bash
# Offline checks of infra/: `terraform fmt` (when terraform is installed) and checkov's Terraform
# rules. checkov lives in its own virtual environment (.venv-checkov), because it installs a fork
# of python-hcl2 under the same module name as the python-hcl2 that tests/test_infra.py uses.
# Exits non-zero when either check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
CHECKOV_VENV="${CHECKOV_VENV:-.venv-checkov}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"

if command -v terraform >/dev/null 2>&1; then
  echo "terraform fmt -check -recursive infra"
  # No provider download needed; the CLI-config warning some machines print goes to stderr.
  if ! terraform fmt -check -recursive -diff infra; then
    echo "FAIL: infra/ is not formatted; run: terraform fmt -recursive infra" >&2
    exit 1
  fi
else
  echo "terraform is not on the PATH: skipped terraform fmt -check"
fi

stamp="$CHECKOV_VENV/.checkov-$CHECKOV_VERSION"
if [ ! -f "$stamp" ]; then
  echo "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
  log="$(mktemp)"
  if [ -n "${UV:-}" ] && [ -x "$UV" ]; then
    # uv (the Makefile passes the one in .venv): a fraction of pip's time for checkov's many deps.
    [ -x "$CHECKOV_VENV/bin/python" ] || "$UV" venv --quiet --python "$PYTHON" "$CHECKOV_VENV"
    install=("$UV" pip install --quiet --python "$CHECKOV_VENV/bin/python")
  else
    [ -x "$CHECKOV_VENV/bin/python" ] || "$PYTHON" -m venv "$CHECKOV_VENV"
    install=("$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  fi
  if ! "${install[@]}" "checkov==$CHECKOV_VERSION" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "FAIL: could not install checkov into $CHECKOV_VENV" >&2
    exit 1
  fi
  rm -f "$log"
  rm -f "$CHECKOV_VENV"/.checkov-*
  touch "$stamp"
fi

echo "checkov -d infra --framework terraform"
# --skip-download: no call to the Prisma Cloud API (this must work offline); the checks are local.
if ! "$CHECKOV_VENV/bin/checkov" -d infra --framework terraform --quiet --compact --skip-download; then
  echo "FAIL: checkov found problems in infra/ (fix them, or add '# checkov:skip=ID: reason' only where the rule does not apply)" >&2
  exit 1
fi
echo "infra checks passed"
