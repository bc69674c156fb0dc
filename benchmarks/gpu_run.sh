#!/usr/bin/env bash
# The GPU measurements of benchmarks/README.md ("GPU"), in one go, on a CUDA machine that cannot reach a package
# index or the Hub (the lent H200 of our workplace): our dependencies come as wheels from .whl/, the peer's trl 1.12
# from .whl/peer/, a real chat tokenizer from .whl/tok/ (README: how to fill .whl/). Three measurements, each with its
# own time limit inside BUDGET seconds, logs and JSON in $OUT:
#   qlora7b   recipes/qwen2.5-7b-instruct/ppo_qlora.yaml, random weights of its real shapes (recipe_gpu.py)
#   smollm2   ours vs TRL 1.12 (compare.py) on SmolLM2-135M's shape, random weights, LoRA, plus trainable_layers 8
#   ppo05b    recipes/qwen2.5-0.5b-instruct/ppo.yaml (bf16, full fine-tuning), random weights
set -u
OUT=${OUT:-runs/bench/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
deadline=$((SECONDS + ${BUDGET:-560}))
STEPS=${STEPS:-qlora7b smollm2 ppo05b}  # which measurements to run
QLORA7B_UPDATES=${QLORA7B_UPDATES:-2}

step() {  # step NAME MAX_SECONDS COMMAND...: run with the smaller of MAX_SECONDS and the time left; log to $OUT
    local name=$1 limit=$2 left=$((deadline - SECONDS)) start=$SECONDS
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    ((left < limit)) && limit=$left
    if ((limit < 30)); then echo "== $name: skipped (${left}s left)"; return; fi
    echo "== $name: up to ${limit}s"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start))s"
    grep -v "^{" "$OUT/$name.log" | grep -iE "error|Traceback" | tail -3
}

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peer .whl/peer/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
printf '#!/bin/sh\nPYTHONPATH=/tmp/peer:%s exec python3 "$@"\n' "$PYTHONPATH" >/tmp/peer_python
chmod +x /tmp/peer_python
python3 - <<'EOF' || exit 1
import importlib, torch
names = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "pyarrow")
print({n: importlib.import_module(n).__version__ for n in names}, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
EOF
/tmp/peer_python -c "import trl; print('peer trl', trl.__version__)" || exit 1

step qlora7b 300 python3 benchmarks/recipe_gpu.py --recipe recipes/qwen2.5-7b-instruct/ppo_qlora.yaml \
    --tokenizer .whl/tok --updates "$QLORA7B_UPDATES" --models_dir /tmp/models --output_dir /tmp/run-qlora7b --out "$OUT/qlora7b.json"
cp /tmp/run-qlora7b/metrics.jsonl "$OUT/qlora7b.metrics.jsonl" 2>/dev/null  # per update, also when stopped early
step smollm2 200 bash -c "python3 benchmarks/recipe_gpu.py --shape smollm2-135m --tokenizer .whl/tok \
    --save /tmp/smollm2-random && python3 benchmarks/compare.py --rounds 1 --peer_python /tmp/peer_python \
    --policy_path /tmp/smollm2-random --use_peft --stop_token eos --prompt_length 64 --response_length 64 \
    --updates 2 --warmup_updates 1 --ours_variant '--trainable_layers 8' --out $OUT/smollm2.json"
step ppo05b 150 python3 benchmarks/recipe_gpu.py --recipe recipes/qwen2.5-0.5b-instruct/ppo.yaml \
    --tokenizer .whl/tok --updates 2 --models_dir /tmp/models --output_dir /tmp/run-ppo05b --out "$OUT/ppo05b.json"
cp /tmp/run-ppo05b/metrics.jsonl "$OUT/ppo05b.metrics.jsonl" 2>/dev/null
for f in "$OUT"/*.json; do echo "== $f"; cat "$f"; done
