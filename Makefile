# One entry point for people and CI. `make test` builds the environment on a fresh machine, then tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env sysdeps test test-slow test-all lint demo clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# HMMER's binaries are the oracle for the search tests (Debian package `hmmer`).
sysdeps:
	@command -v jackhmmer >/dev/null || { apt-get update -qq && apt-get install -y -qq hmmer >/dev/null; }

test: env sysdeps
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: env sysdeps
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

test-all: env sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check model scripts tests bench
	$(VENV)/bin/ruff format --check model scripts tests bench
	$(VENV)/bin/snakemake --lint --configfile config/examples/demo.yaml
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules

demo: env sysdeps
	$(VENV)/bin/snakemake predict --profile profiles/default --configfile config/examples/demo.yaml

clean:
	rm -rf results .snakemake
