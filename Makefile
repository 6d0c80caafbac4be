# gandist developer entry points. Both main targets create/reuse .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -q

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Train the default recipe (DCGAN on the built-in digits) for a few minutes on CPU.
demo: $(STAMP)
	$(BIN)/gandist train configs/dcgan_digits.yaml train.run_name=demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gandist tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
