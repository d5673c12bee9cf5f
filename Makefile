# genlab: two set-up commands.
#   make demo   install everything into .venv and run the main job (genlab demo)
#   make test   install everything into .venv (and headless Chromium) and run the tests
#
# torch: if .venv already has a torch (e.g. a CUDA build you installed yourself),
# it is kept; otherwise TORCH_SPEC is installed (here a local CPU wheel).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin
STAMP = $(VENV)/.genlab-installed

.PHONY: install demo demo-quick test test-all browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/genlab demo

demo-quick: install
	$(BIN)/genlab demo --quick --out runs/demo-quick

browser:
	bash scripts/install-browser.sh

test: install browser
	$(BIN)/python -m pytest -q -n 2 --durations=15

test-all: install browser
	$(BIN)/python -m pytest -q -n 2 -m "slow or not slow"

clean:
	rm -rf runs test-artifacts .pytest_cache
