# One entry point for people and CI. `make test` builds the environment on a fresh machine, then tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env sysdeps oracle test test-slow test-all lint demo clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Test oracles and tools outside the Python pins: HMMER's binaries (search tests) and Chromium (the report
# test) from Debian; the DockQ package (DockQ tests), which declares numpy<2 but builds and runs against
# the pinned numpy 2.4, so it is compiled here without pip's resolver (its other needs pinned by hand)
# and never from pip's cache, which may hold a build against numpy 1.
DOCKQ_DEPS := cython==3.3.1 biopython==1.88 parallelbar==2.5 tqdm==4.70.1
sysdeps: env
	@command -v jackhmmer >/dev/null && command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq hmmer chromium >/dev/null; }
	@$(PY) -c "import DockQ.DockQ" 2>/dev/null || { $(PY) -m pip install --quiet $(DOCKQ_DEPS) && \
		$(PY) -m pip install --quiet --no-deps --no-build-isolation --no-cache-dir --force-reinstall \
			dockq==2.1.3 && $(PY) -c "import DockQ.DockQ"; }

# Protenix 2.0.0 in its own environment: the oracle of the feature-parity tests (docs/network.md).
# Its CCD cache is built offline from the CCD Foldline reads (tests/oracle/export_ccd.py) with Protenix's
# own builder. Installing over an existing folder is safe, so a changed requirement rebuilds in place.
ORACLE ?= .venv-oracle

oracle: $(ORACLE)/.installed

ORACLE_BUILD := tests/oracle/requirements.txt tests/oracle/export_ccd.py tests/oracle/build_ccd_cache.py \
	tests/oracle/protenix_env.py

$(ORACLE)/.installed: $(ORACLE_BUILD) | $(VENV)/.installed
	$(PYTHON) -m venv $(ORACLE)
	$(ORACLE)/bin/python -m pip install --quiet -r tests/oracle/requirements.txt
	$(ORACLE)/bin/python -m pip install --quiet --no-deps protenix==2.0.0
	$(PY) tests/oracle/export_ccd.py $(ORACLE)/protenix_root/common/components.cif
	$(ORACLE)/bin/python tests/oracle/build_ccd_cache.py
	touch $@

test: env sysdeps oracle
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: env sysdeps oracle
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

test-all: env sysdeps oracle
	$(PY) -m pytest $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check model scripts tests bench
	$(VENV)/bin/ruff format --check model scripts tests bench
	$(VENV)/bin/snakemake --lint --configfile config/examples/demo.yaml
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules

# Ends with report.html: one page per target (PAE, pLDDT, ranking, 3-D view) and the training curves.
demo: env sysdeps
	$(VENV)/bin/snakemake predict --profile profiles/default --configfile config/examples/demo.yaml
	$(VENV)/bin/snakemake predict --profile profiles/default --configfile config/examples/demo.yaml \
		--report report.html

clean:
	rm -rf results .snakemake
