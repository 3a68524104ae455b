# image-sync: `make demo` runs the job locally, `make test` runs every test. Both set up from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup registry-bin test lint unit demo bench clean infra-check

# A virtual environment with the runtime and development dependencies and the package itself.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) registry-bin

# CNCF Distribution (Debian's docker-registry) and skopeo for the benchmark; installed via apt
# when missing and we are root, otherwise we say what to install.
registry-bin:
	@bash scripts/ensure-tools.sh

# terraform fmt (when terraform is installed) and checkov, in its own virtual environment.
infra-check:
	bash scripts/check-infra.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint infra-check
	$(VENV)/bin/pytest

# The suite without the tests marked slow (fault injection and crashes).
unit: $(STAMP) registry-bin
	$(VENV)/bin/pytest -m "not slow" -x -q

demo: setup
	$(PY) -m demo

bench: setup
	$(PY) bench/startup_bench.py
	$(PY) bench/copy_bench.py
	$(PY) bench/sync_bench.py

clean:
	rm -rf $(VENV) .venv312 .venv-checkov .mypy_cache .ruff_cache .pytest_cache
