# The two commands a new user needs: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export THP_MEM_ALLOC_ENABLE ?= 1

.PHONY: install run test bench lint clean

install: $(STAMP)

# Re-install only when pyproject.toml changed (or the venv is missing).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

run: install
	$(PY) -m annotator $(ARGS)

test: install
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(PY) bench/run_all.py $(BENCH)

lint: install
	$(VENV)/bin/ruff check annotator tests bench

clean:
	rm -rf $(VENV) build dist *.egg-info
