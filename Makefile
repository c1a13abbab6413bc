# The README's two commands: `make demo` (the main job end to end) and `make test` (the suite).
# Both create .venv in the repo root when it is missing and install the project into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every install is locked: requirements.lock pins the whole development and test environment (the
# project's [test] extra, its build tools and pip) with exact versions and hashes, and .venv is built
# from it alone. `make lock` regenerates it on purpose; pyproject.toml keeps the ranges a user's
# `pip install staa-serve` resolves. torch is the CPU build on this machine's disk (pip's find-links):
# an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0+cpu
LOCK := requirements.lock
TRITON_LOCK := clients/oip/tritonclient.lock
TRITONCLIENT_PIN := tritonclient[grpc]==2.73.0
# uv compiles the locks (uv pip compile: one static binary, resolves for a named platform whatever
# machine runs it); pip installs them (--require-hashes), so installing needs nothing but Python.
UV_PIN := uv==0.13.10
LOCK_VENV := .venv-lock
UV := $(LOCK_VENV)/bin/uv
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
UV_COMPILE := $(UV) pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --find-links $(FIND_LINKS) --custom-compile-command "make lock" --annotation-style line
# Empty: the demo generates a SynthKinetics clip with known ground truth. Any video file works too.
DEMO_CLIP ?=
DEMO_OUT ?= demo-out

.PHONY: demo test test-latest install stubs clean browser gpu-check gpu-wheels lock

install: $(STAMP)

# $(call venv_from_lock,VENV,LOCK): a lock that differs from the one VENV was built from (a copy kept
# inside it) rebuilds VENV from nothing, so it holds exactly what the lock says.
venv_from_lock = if ! cmp -s $(2) $(1)/$(notdir $(2)); then rm -rf $(1) && $(PYTHON) -m venv $(1) && \
  $(1)/bin/python -m pip install --quiet --no-deps --require-hashes -r $(2) && cp $(2) $(1)/$(notdir $(2)); \
  else touch $(1)/$(notdir $(2)); fi

LOCKED := $(VENV)/$(notdir $(LOCK))
$(LOCKED): $(LOCK)
	$(call venv_from_lock,$(VENV),$(LOCK))

# The project itself, editable, with no dependency resolution and the locked build tools.
$(STAMP): $(LOCKED) pyproject.toml setup.py
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(UV):
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "$(UV_PIN)"

# Regenerates both locks from pyproject.toml's ranges (newest versions they allow), on purpose only.
lock: $(UV)
	printf '%s\n' "$(TORCH_PIN)" pip "setuptools>=68" | $(UV_COMPILE) pyproject.toml - --extra test -o $(LOCK)
	printf '%s\n' "$(TRITONCLIENT_PIN)" | $(UV_COMPILE) - -o $(TRITON_LOCK)

# Regenerated with the venv's own grpcio-tools every time: stubs carry the gencode version of the
# grpcio-tools that made them, which the runtime importing them must not be older than (the canary's
# newer grpcio-tools must not leave stubs that the locked venv cannot import).
GENERATE_STUBS := -c "from pathlib import Path; from staa.stubs import generate_stubs; \
  [generate_stubs(Path('proto/staa').resolve() / package) for package in ('v1', 'oip')]"
stubs: $(STAMP)
	$(PY) $(GENERATE_STUBS)

demo: $(STAMP) stubs
	$(PY) -m staa_serve.clients.demo $(if $(DEMO_CLIP),--clip "$(DEMO_CLIP)") --out "$(DEMO_OUT)"

# The browser test drives Debian's chromium (browsers cannot be downloaded from anywhere else).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver)

# The Node.js client example (clients/node): its pinned packages, from the lock file.
NODE_STAMP := clients/node/node_modules/.installed
$(NODE_STAMP): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# tritonclient[grpc] (an OIP v2 client) pins protobuf < 7 while grpcio-tools needs >= 7.35: its own venv,
# which the OIP test runs as a separate client process.
TRITON_VENV := .venv-tritonclient
TRITON_STAMP := $(TRITON_VENV)/$(notdir $(TRITON_LOCK))
$(TRITON_STAMP): $(TRITON_LOCK)
	$(call venv_from_lock,$(TRITON_VENV),$(TRITON_LOCK))

test: $(STAMP) stubs browser $(NODE_STAMP) $(TRITON_STAMP)
	$(PY) -m pytest -q --durations=10 tests

# The drift canary, not part of `make test`: the whole suite in its own venv holding the newest
# versions pyproject.toml's ranges allow today (Hugging Face's `kernels` too, which transformers may
# import), to see a release that breaks us before a user or the next `make lock` does. torch stays the
# CPU build (TORCH_PIN); the tritonclient venv stays locked (it is a separate client, not our range).
LATEST_VENV := .venv-latest
test-latest: browser $(NODE_STAMP) $(TRITON_STAMP)
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	echo "$(TORCH_PIN)" > $(LATEST_VENV)/constraints.txt
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager \
	  -c $(LATEST_VENV)/constraints.txt -e ".[test]" kernels
	$(LATEST_VENV)/bin/python -m pip list --format freeze > $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/python $(GENERATE_STUBS)
	$(LATEST_VENV)/bin/python -m pytest -q --durations=10 tests

# The GPU check (benchmarks/gpu.py). On a lent GPU machine it runs with that image's Python (its
# CUDA torch, transformers, triton): no .venv there, which would install the CPU torch. What the
# image lacks travels from here: `make gpu-wheels` (wheels into .whl) and `make stubs` (generated
# stubs, ignored by git: carry proto/staa/v1, proto/staa/oip and .whl); the staa_serve namespace is
# a folder of links to the repo's top-level folders (GPU_SITE). Here, with .venv,
# `make gpu-check GPU_CHECK_ARGS="--device cpu --quick"` is the dry run.
GPU_CHECK_ARGS ?=
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_SITE ?= /tmp/staa-site
GPU_WHEELS := av==18.1.0 protobuf==7.36.2 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
gpu-wheels: stubs
	rm -rf .whl && $(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp $(foreach platform,$(GPU_PLATFORMS),--platform $(platform)) -d .whl $(GPU_WHEELS)
gpu-check:
	if [ "$(GPU_PYTHON)" != "$(PY)" ] && ls .whl/*.whl >/dev/null 2>&1; then $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile \
	  --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl; fi
	mkdir -p $(GPU_SITE)/staa_serve && for folder in models kernels server clients benchmarks; do \
	  ln -sfn "$(CURDIR)/$$folder" $(GPU_SITE)/staa_serve/$$folder; done
	PYTHONPATH=$(GPU_SITE):.:proto $(GPU_PYTHON) -m staa_serve.benchmarks.gpu $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV) $(DEMO_OUT) clients/node/node_modules $(TRITON_VENV) build dist *.egg-info .whl \
	  $(foreach package,v1 oip,proto/staa/$(package)/*_pb2*.py proto/staa/$(package)/*_pb2*.pyi proto/staa/$(package)/.stubs.sha256)
