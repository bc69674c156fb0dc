# Thin calls of the CLI. Override any variable on the command line, e.g.
#   make ppo RECIPE=recipes/qwen2.5-7b-instruct/ppo_qlora.yaml ACCELERATE=recipes/accelerate_configs/single_gpu.yaml
VENV ?= .venv
PYTHON ?= python3
# torch==2.13.0 resolves to the CPU wheel on our machines (local file) and to the CUDA wheel from PyPI on a GPU box.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,demo
BIN := $(VENV)/bin
RECIPE ?=
ACCELERATE ?=
ARGS ?=
LAUNCH = $(if $(ACCELERATE),$(BIN)/accelerate launch --config_file $(ACCELERATE) -m safety_rlhf.cli,$(BIN)/safety-rlhf)

.PHONY: install test test-all quality style tiny data sft clean

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"

test:
	$(BIN)/python -m pytest -m "not slow" -q

test-all:
	$(BIN)/python -m pytest -q

quality:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

tiny:
	$(BIN)/safety-rlhf tiny --output_dir models/tiny $(ARGS)

data:
	$(BIN)/safety-rlhf data --config $(or $(RECIPE),recipes/tiny/sft.yaml) $(ARGS)

sft:
	$(LAUNCH) sft --config $(or $(RECIPE),recipes/tiny/sft.yaml) $(ARGS)

clean:
	rm -rf runs/ models/ .pytest_cache/ .ruff_cache/
