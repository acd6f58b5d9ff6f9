# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install everything, run the quickstart R-Block study on CIFAR-10
#   make test   - create .venv, install everything, run ruff, mypy and the whole test suite
#   make unit   - the fast loop: the tests not marked slow (under two minutes; no Ray study)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# The demo reads CIFAR-10 from RBLOCK_DATA_DIR (or ./data, downloading it when missing).
# Where the project's shared JPEG copy sits beside the checkout, it is unpacked and used.
SHARED_CIFAR ?= ../shared/datasets/cifar10-jpeg.tar.gz
CACHE ?= $(HOME)/.cache/rblock-tune
DEMO_OUT ?= rblock_runs/demo
DEMO_WORKDIR ?= rblock_runs/quickstart-demo

.PHONY: demo train-demo data test lint typecheck unit suite install clean bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[dev,dashboard]'
	touch $@

install: $(BIN)/.installed

# RBLOCK_DATA_DIR, or the shared copy unpacked into the cache, or ./data (downloaded when missing)
DATA_ENV = if [ -z "$$RBLOCK_DATA_DIR" ] && [ -f "$(SHARED_CIFAR)" ]; then \
	  mkdir -p "$(CACHE)"; \
	  [ -d "$(CACHE)/cifar10-jpeg/test" ] || tar xzf "$(SHARED_CIFAR)" -C "$(CACHE)"; \
	  export RBLOCK_DATA_DIR="$(CACHE)"; \
	fi

demo: $(BIN)/.installed
	@$(DATA_ENV); \
	rm -rf "$(DEMO_WORKDIR)"; \
	$(BIN)/rblock-tune study run search_spaces/quickstart.yaml --workdir "$(DEMO_WORKDIR)"

train-demo: $(BIN)/.installed
	@$(DATA_ENV); \
	rm -rf "$(DEMO_OUT)"; \
	$(BIN)/rblock-tune train --out "$(DEMO_OUT)" \
	  --set data.name=cifar10 --set data.subset=10000 --set model.name=resnet8 \
	  --set reg.variant=bdrop_dml --set reg.alpha=1.0 --set reg.drop_prob=0.1 --set reg.block_size=3 \
	  --set train.epochs=3 --set train.lr=0.05 --set train.warmup_epochs=0.5 --set seed=0

lint: $(BIN)/.installed
	$(BIN)/ruff check rblock_tune tests benchmarks analysis
	$(BIN)/ruff format --check rblock_tune tests benchmarks analysis

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

suite: $(BIN)/.installed
	$(BIN)/python -m pytest -q

test: lint typecheck suite

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) rblock_runs .pytest_cache .mypy_cache .ruff_cache *.egg-info
