# Two entry points (see README): `make demo` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vidgen-installed

# torch is installed first, on its own, so its version is fixed before vidgen's dependencies resolve. By default it
# is whatever pip's configuration gives for torch==$(TORCH_VERSION): from PyPI that is the CUDA build on Linux x86-64,
# which pulls ~20 NVIDIA wheels (several GB), unless a local wheel or pip config offers another build. TORCH_INDEX,
# when set, replaces PyPI as the index torch comes from (pip install --index-url); on a machine without a GPU, take
# PyTorch's CPU-only build from PyTorch's own index:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Both apply when .venv is built; to rebuild an existing one, remove it first.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) )torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[train,test]'
	touch $(STAMP)

.PHONY: setup demo test gpu-check
setup: $(STAMP)

# The README's main command: a clip from the embedded default model at its own defaults (64x64, 17 frames, 8 fps).
demo: $(STAMP)
	$(VENV)/bin/vidgen generate "a red circle moving right on a black background" -o demo.mp4 --overwrite

test: $(STAMP)
	$(PY) -m pytest -q tests

# The prepared GPU check (docs/gpu_check.md): ~6 minutes on one CUDA GPU, writes gpu_check.json and a section of
# docs/benchmarks.md. No venv needed (a GPU machine has none): the venv's python when there is one, else python3.
PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_ARGS ?=
gpu-check:
	$(PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)
