# image-sync: `make demo` runs the job locally, `make test` runs every test. Both set up from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# uv installs the pinned requirements (and checkov's) far faster than pip; each venv gets its own.
UV_VERSION := 0.13.9
UV     := $(VENV)/bin/uv
# pytest-xdist workers for `make test` and `make unit`: most tests wait on registries and servers.
JOBS   ?= 2
# `make demo` has its own environment: the runtime dependencies and the demo's, nothing else.
DEMO_VENV  ?= .venv-demo
DEMO_PY    := $(DEMO_VENV)/bin/python
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: setup registry-bin schema-wheel test lint unit demo bench clean infra-check

# A virtual environment with the runtime and development dependencies and the package itself.
$(STAMP): requirements.txt demo/requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) registry-bin schema-wheel

# The provider bindings the infra schema test reads (tests/google_schema.py), fetched here so
# that the test suite itself never reaches the network.
schema-wheel: $(STAMP)
	$(PY) -m tests.google_schema --fetch

# CNCF Distribution (Debian's docker-registry) and skopeo for the benchmark; installed via apt
# when missing and we are root, otherwise we say what to install.
registry-bin:
	@bash scripts/ensure-tools.sh

# terraform fmt (when terraform is installed) and checkov, in its own virtual environment.
infra-check: $(STAMP)
	UV=$(UV) bash scripts/check-infra.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: setup lint infra-check
	$(VENV)/bin/pytest -n $(JOBS) --dist loadscope

# The tests that start no process (no registry, server or subprocess): well under a minute.
unit: $(STAMP)
	$(VENV)/bin/pytest -n $(JOBS) -m "not integration" -q

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
