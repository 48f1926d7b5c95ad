# Two entry points (see README): `make demo` and `make test`. Both build .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vidgen-installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch 2.13.0 is installed first so no dependency pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,test]'
	touch $(STAMP)

.PHONY: setup demo test
setup: $(STAMP)

# The README's main command: a clip from the embedded default model at its own defaults (64x64, 17 frames, 8 fps).
demo: $(STAMP)
	$(VENV)/bin/vidgen generate "a red circle moving right on a black background" -o demo.mp4 --overwrite

test: $(STAMP)
	$(PY) -m pytest -q tests
