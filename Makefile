# gandist developer entry points. Both main targets create/reuse .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -q

.PHONY: demo test test-cluster image-test lint install clean

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

# Cluster launch tests: brings up a local single-node SLURM (root, Debian packages), then runs
# the SLURM, Kubernetes-manifest and Dockerfile tests.
test-cluster: $(STAMP)
	bash .ci/slurm_up.sh
	$(BIN)/python -m pytest -m cluster tests/cluster $(PYTEST_ARGS)

# Builds the image with podman from a local debootstrap base and trains inside it (slow).
image-test:
	bash scripts/image_test.sh

lint: $(STAMP)
	$(BIN)/ruff check gandist tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
