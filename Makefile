# Two commands set up a fresh machine:  make demo  (install + run the whole pipeline on the demo)
#                                        make test  (install + run the tests)
PYTHON ?= python3
VENV ?= .venv
# The CPU build is enough for the demo and the tests; on a GPU machine install the CUDA build of torch
# into the venv first (see README), and `make` keeps it.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test clean-demo
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: install
	$(BIN)/forumtune run examples/demo.yaml

test: install
	$(BIN)/pytest -q

clean-demo:
	rm -rf examples/runs/demo
