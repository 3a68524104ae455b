# image-sync: `make demo` runs the job locally, `make test` runs every test. Both set up from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make demo` has its own environment: the runtime dependencies and the demo's, nothing else.
DEMO_VENV  ?= .venv-demo
DEMO_PY    := $(DEMO_VENV)/bin/python
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: setup registry-bin test lint unit demo bench clean infra-check

# A virtual environment with the runtime and development dependencies and the package itself.
$(STAMP): requirements.txt demo/requirements.txt requirements-dev.txt pyproject.toml
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

$(DEMO_STAMP): requirements.txt demo/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_PY) -m pip install --quiet --disable-pip-version-check -r demo/requirements.txt
	$(DEMO_PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(DEMO_STAMP)

# The daily run on this machine, end to end; KEEP=1 leaves it running to try the CLI on.
# Prints its wall time, installation included.
demo:
	@start=$$(date +%s.%N); \
	$(MAKE) --no-print-directory $(DEMO_STAMP) registry-bin && \
	$(DEMO_PY) -m demo $(if $(KEEP),--keep); code=$$?; \
	end=$$(date +%s.%N); \
	awk -v s=$$start -v e=$$end 'BEGIN { printf "make demo: %.1fs wall time, setup included\n", e - s }'; \
	exit $$code

bench: setup
	$(PY) bench/startup_bench.py
	$(PY) bench/copy_bench.py
	$(PY) bench/sync_bench.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) .venv312 .venv-checkov .mypy_cache .ruff_cache .pytest_cache
