# Everything runs from the project's own virtual environment in .venv, created on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/tre-link demo --config conf/demo.yaml

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q

# The edit loop: everything but the end-to-end demo run and the minutes-long subprocess checks.
test-fast: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q -m "not slow and not e2e"

bench: $(INSTALLED)
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf out spark-warehouse metastore_db derby.log
