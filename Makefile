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

.PHONY: install test test-all quality style demo tiny data sft reward ppo eval push clean

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

demo:
	$(BIN)/safety-rlhf demo --output_dir runs/demo $(ARGS)

tiny:
	$(BIN)/safety-rlhf tiny --output_dir models/tiny $(ARGS)

data:
	$(BIN)/safety-rlhf data --config $(or $(RECIPE),recipes/tiny/sft.yaml) $(ARGS)

sft:
	$(LAUNCH) sft --config $(or $(RECIPE),recipes/tiny/sft.yaml) $(ARGS)

reward:
	$(LAUNCH) reward --config $(or $(RECIPE),recipes/tiny/reward.yaml) $(ARGS)

ppo:
	$(LAUNCH) ppo --config $(or $(RECIPE),recipes/tiny/ppo.yaml) $(ARGS)

# make eval ARGS="--model_name_or_path runs/tiny/ppo --baseline_model_name_or_path runs/tiny/sft --output_dir runs/tiny/eval"
eval:
	$(BIN)/safety-rlhf eval $(if $(RECIPE),--config $(RECIPE)) $(ARGS)

# make push ARGS="--run_dir runs/tiny/ppo --hub_model_id you/tiny-safety-ppo"  (token: HF_TOKEN or `hf auth login`)
push:
	$(BIN)/safety-rlhf push $(ARGS)

clean:
	rm -rf runs/ models/ .pytest_cache/ .ruff_cache/
