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

.PHONY: demo test install stubs clean browser gpu-check gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

stubs: $(STAMP)
	$(PY) -c "import staa.v1, staa.oip"

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
TRITON_STAMP := $(TRITON_VENV)/.installed
$(TRITON_STAMP):
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet "tritonclient[grpc]==2.73.0"
	touch $(TRITON_STAMP)

test: $(STAMP) stubs browser $(NODE_STAMP) $(TRITON_STAMP)
	$(PY) -m pytest -q tests

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
	rm -rf $(VENV) $(DEMO_OUT) clients/node/node_modules $(TRITON_VENV) build dist *.egg-info .whl \
	  $(foreach package,v1 oip,proto/staa/$(package)/*_pb2*.py proto/staa/$(package)/*_pb2*.pyi proto/staa/$(package)/.stubs.sha256)
