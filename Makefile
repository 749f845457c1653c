# Everything runs from the project's own virtual environment in .venv, created on first use and
# installed from the lock file (exact versions, checked by hash), then tre-link itself without deps.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
# The Spark line to install: 4.1 (CI's, requirements.lock) or 4.0 (Databricks 17.3 LTS,
# requirements-spark4.0.lock), e.g. `make test SPARK_LINE=4.0`.
SPARK_LINE ?= 4.1
LOCK := $(if $(filter 4.1,$(SPARK_LINE)),requirements.lock,requirements-spark$(SPARK_LINE).lock)
INSTALLED := $(VENV)/.installed-spark$(SPARK_LINE)
# uv itself, pinned by hash: it installs the lock with parallel downloads (pip took 9 of CI's minutes).
BOOTSTRAP_LOCK := requirements-bootstrap.lock
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python
UV_COMPILE_FLAGS = --generate-hashes --python-version 3.11 --python-platform linux --upgrade --quiet \
	--custom-compile-command "make lock"
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --extra dev $(UV_COMPILE_FLAGS)
BUNDLE ?= dist/bundle

.PHONY: demo test test-fast bench lock bundle install-offline clean

$(INSTALLED): $(LOCK) $(BOOTSTRAP_LOCK) pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed-*
	$(VENV)/bin/pip install --quiet --require-hashes -r $(BOOTSTRAP_LOCK)
	$(UV_INSTALL) --require-hashes -r $(LOCK)
	$(UV_INSTALL) --no-deps -e .
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/tre-link demo --config conf/demo.yaml

# Two workers (TEST_WORKERS=0 for one process): on two cores they cut the suite's time by
# overlapping one test's JVM start-up, Delta commits and subprocess waits with another's work.
# Each file runs on one worker (--dist loadfile), so its module fixtures are built once; files go
# out in the order tests/conftest.py puts them (longest first), not xdist's (most tests first).
TEST_WORKERS ?= 2
test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# The edit loop: everything but the end-to-end demo run and the minutes-long checks (subprocess
# runs, refreshes, crashes and their reruns).
test-fast: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q -m "not slow and not e2e"

bench: $(INSTALLED)
	$(VENV)/bin/python bench/run.py

# Re-resolve both lock files to the newest versions pyproject.toml allows (review the diff, then commit).
lock:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r $(BOOTSTRAP_LOCK)
	$(UV_COMPILE) -o requirements.lock
	$(UV_COMPILE) --override constraints/spark-4.0.txt -o requirements-spark4.0.lock
	echo uv | $(VENV)/bin/uv pip compile - $(UV_COMPILE_FLAGS) -o $(BOOTSTRAP_LOCK)

# Everything an air-gapped TRE needs, in one directory: wheels of tre-link and of every locked
# dependency, the lock file, SHA256SUMS, and the Delta and Splink jars (jars/, for spark.jars_dir).
bundle: $(INSTALLED)
	rm -rf $(BUNDLE) && mkdir -p $(BUNDLE)/wheels
	$(VENV)/bin/pip wheel --quiet --require-hashes --wheel-dir $(BUNDLE)/wheels -r $(LOCK)
	$(VENV)/bin/pip wheel --quiet --no-deps --wheel-dir $(BUNDLE)/wheels . && rm -rf build
	$(VENV)/bin/python -m tre_link.platform.bundle_jars $(BUNDLE)/jars
	cp $(LOCK) $(BUNDLE)/requirements.lock
	cd $(BUNDLE) && find wheels jars requirements.lock -type f | sort | xargs sha256sum > SHA256SUMS
	@echo "bundle written to $(BUNDLE): copy it into the TRE, then: make install-offline BUNDLE=$(BUNDLE)"

# Inside the TRE: install from a bundle, with no index and no network. The files are checked against
# SHA256SUMS (the lock's own hashes are PyPI's, and pyspark's wheel is built from its source there).
install-offline:
	cd $(BUNDLE) && sha256sum --check --quiet SHA256SUMS
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	grep -E '^[A-Za-z0-9]' $(BUNDLE)/requirements.lock | sed 's/ *\\$$//' > $(VENV)/offline-pins.txt
	$(VENV)/bin/pip install --quiet --no-index --find-links $(BUNDLE)/wheels -r $(VENV)/offline-pins.txt
	$(VENV)/bin/pip install --quiet --no-index --no-deps $(BUNDLE)/wheels/tre_link-*.whl
	cp $(BUNDLE)/requirements.lock $(VENV)/requirements.lock  # what runs record the SHA-256 of
	@echo "installed; set spark.jars_dir: $(abspath $(BUNDLE))/jars in the job's config"

clean:
	rm -rf out spark-warehouse metastore_db derby.log
