# The README's two commands: `make demo` (the main job end to end) and `make test` (the suite).
# Both create .venv in the repo root when it is missing and install the project into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch==2.13.0 is the CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
# Empty: the demo generates a SynthKinetics clip with known ground truth. Any video file works too.
DEMO_CLIP ?=
DEMO_OUT ?= demo-out

.PHONY: demo test install stubs clean browser gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

stubs: $(STAMP)
	$(PY) -c "import staa.v1"

demo: $(STAMP) stubs
	$(PY) -m clients.demo $(if $(DEMO_CLIP),--clip "$(DEMO_CLIP)") --out "$(DEMO_OUT)"

# The browser test drives Debian's chromium (browsers cannot be downloaded from anywhere else).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver)

test: $(STAMP) stubs browser
	$(PY) -m pytest -q tests

# The GPU check (benchmarks/gpu.py) on a machine with CUDA; GPU_CHECK_ARGS=--quick with --device cpu is the dry run.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP) stubs
	$(PY) -m benchmarks.gpu $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) proto/staa/v1/*_pb2*.py proto/staa/v1/*_pb2*.pyi proto/staa/v1/.stubs.sha256
