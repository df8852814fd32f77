# Two commands for users: `make demo` and `make test`. Both create .venv when it is
# missing, make sure PyTorch is importable there (a CPU build on a machine without an
# NVIDIA GPU, see tools/install-torch.sh), then install warmstart into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?=

.PHONY: demo test install install-test torch clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

torch: $(PY)
	@TORCH_SPEC='$(TORCH_SPEC)' sh tools/install-torch.sh $(PY)

install: torch
	$(PY) -m pip install --quiet -e .

install-test: torch
	$(PY) -m pip install --quiet -e ".[test]"

demo: install
	$(VENV)/bin/warmstart demo

test: install-test
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
