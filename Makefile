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
	# sam2 ships as an sdist: build it against the torch installed here (no CUDA extension, no
	# isolated build env that would download torch again), before the rest.
	$(PY) -m pip install "torch>=2.5.1" "setuptools>=77" wheel
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --no-build-isolation "sam2>=1.1.0"
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
