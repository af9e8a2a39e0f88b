# The README's two commands: `make demo` and `make test`. Each creates .venv if absent, installs the pinned
# stack (torch==2.13.0 on CPU machines, held by PIP_CONSTRAINT so no build environment pulls a CUDA torch),
# builds the extension with `pip install --no-build-isolation -e .`, then runs. Both are idempotent: stamps
# skip the install and the build when nothing they depend on changed.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export PIP_CONSTRAINT := $(abspath constraints.txt)
export MAX_JOBS ?= 2
SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*)

.PHONY: demo test build env bench lint clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.stack: $(PY) pyproject.toml constraints.txt
	$(PIP) install -q torch==2.13.0 "setuptools>=64" wheel ninja
	$(PIP) install -q --no-build-isolation -e ".[dev]"
	touch $@
	touch $(VENV)/.built  # after the stack stamp, so the extension is not built a second time

$(VENV)/.built: $(VENV)/.stack $(SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

env: $(VENV)/.stack
build: $(VENV)/.built

test: build
	$(PY) -m pytest -q -x -p no:cacheprovider tests
	$(VENV)/bin/ruff check .

lint: env
	$(VENV)/bin/ruff check .

demo: build
	$(PY) -m lit_align.demo

bench: build
	$(PY) benchmarks/bench_ops.py --device cpu

clean:
	rm -rf build lit_align/*.so *.egg-info
