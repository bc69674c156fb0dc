"""A recipe's real shapes with random weights: measured peak GPU memory and seconds per update against `plan`.

    python benchmarks/recipe_gpu.py --recipe recipes/qwen2.5-7b-instruct/ppo_qlora.yaml --tokenizer TOKENIZER_DIR \
        --updates 2 --out runs/bench/qlora7b.json [any `safety-rlhf ppo` flag, passed on]
    python benchmarks/recipe_gpu.py --shape smollm2-135m --tokenizer TOKENIZER_DIR --save DIR   # one model, then exit

Memory and time do not depend on the weights' values, only on the shapes, the settings and the lengths, so a recipe
can be measured where its models cannot be downloaded: each model the recipe names (policy, critic, reward and cost
model) is written once under `--models_dir` with random weights of its `plan.KNOWN_CONFIGS` architecture (the same
shapes `safety-rlhf plan` counts) and `--tokenizer`'s vocabulary and chat template (default: our tiny BPE chat
tokenizer, built offline; a real one, e.g. `make import-gguf`'s SmolLM2 folder, gives real prompt lengths). The run is
then the recipe itself (`safety-rlhf ppo --config RECIPE`, in this process) on the bundled prompts for `--updates`
updates. Random weights rarely sample EOS, so every response runs to `response_length`: the longest rollouts the
recipe allows, and the upper bound of its memory.

Prints one JSON line: the planner's estimate for the same settings (`plan_peak_gib`, its components), what the run
allocated (`peak_allocated_gib` = `torch.cuda.max_memory_allocated`, what the plan estimates; `peak_reserved_gib`,
what the caching allocator held), and per update the wall time and the trainer's phase timers. Without a GPU it runs
too (peak memory is then null): `--shrink` cuts every model to two small layers, for tests.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROLES = {  # recipe key -> (what, causal LM?)
    "model_name_or_path": ("policy", True),
    "value_model_path": ("critic", True),
    "reward_model_path": ("reward", False),
    "cost_model_path": ("cost", False),
}
SHRINK = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16)  # fmt: skip


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", help="A PPO recipe (YAML) whose models are KNOWN_CONFIGS architectures.")
    p.add_argument("--tokenizer", default=None, help="A tokenizer folder with a chat template (default: tiny BPE).")
    p.add_argument("--updates", type=int, default=2, help="PPO updates to run (the first includes warm-up).")
    p.add_argument("--models_dir", default="runs/bench/recipe-models", help="Where the random-weight models go.")
    p.add_argument("--output_dir", default="runs/bench/recipe-run", help="The run's output_dir (overwritten).")
    p.add_argument("--out", default=None, help="Also write the JSON line to this file.")
    p.add_argument("--shrink", action="store_true", help="Two small layers per model (tests on the CPU).")
    p.add_argument("--shape", default=None, help="With --save: one KNOWN_CONFIGS causal LM, written, then exit.")
    p.add_argument("--save", default=None, help="With --shape: the folder to write.")
    args, extra = p.parse_known_args(argv)
    if bool(args.shape) != bool(args.save):
        p.error("--shape and --save go together")
    if not args.shape and not args.recipe:
        p.error("pass --recipe RECIPE (or --shape KEY --save DIR)")
    return args, extra


def chat_tokenizer(folder: str | None):
    from transformers import AutoTokenizer

    if folder:
        return AutoTokenizer.from_pretrained(folder)
    from safety_rlhf.tiny import build_chat_tokenizer, bundled_text

    return build_chat_tokenizer(bundled_text(), 4096)


def random_config(name: str, what: str, tokenizer, shrink: bool):
    """The transformers config of `name` (a Hub id or run folder named after a KNOWN_CONFIGS architecture)."""
    from safety_rlhf import SafetyRLHFError
    from safety_rlhf.plan import KNOWN_CONFIGS, known_architecture, known_config

    key = known_architecture(name)
    if key is None:
        raise SafetyRLHFError(
            f"{what} {name!r} is no known architecture; name one of {', '.join(sorted(KNOWN_CONFIGS))} "
            "(safety_rlhf/plan.py)"
        )
    config = known_config(key, **({**SHRINK, "vocab_size": len(tokenizer)} if shrink else {}))
    if config.vocab_size < len(tokenizer):
        raise SafetyRLHFError(
            f"--tokenizer has {len(tokenizer)} tokens, more than {key}'s vocabulary of {config.vocab_size}; "
            "pass a smaller tokenizer"
        )
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config.eos_token_id, config.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    return key, config


def write_model(config, tokenizer, folder: Path, causal_lm: bool, dtype: torch.dtype) -> None:
    """Random weights of `config` (initialised on the GPU when there is one: seconds for a 7B), saved with the
    tokenizer, atomically (a temporary folder, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if (folder / "config.json").is_file():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        if causal_lm:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        else:
            one_label = copy.deepcopy(config)
            one_label.num_labels = 1
            model = AutoModelForSequenceClassification.from_config(one_label, dtype=dtype)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    os.replace(tmp, folder)


def gib(x) -> float | None:
    return None if x is None else round(x / 2**30, 3)


def main(argv=None) -> dict:
    args, extra = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from safety_rlhf import cli

    tokenizer = chat_tokenizer(args.tokenizer)
    if args.shape:
        _, config = random_config(args.shape, "--shape", tokenizer, args.shrink)
        write_model(config, tokenizer, Path(args.save), True, torch.float32)
        return {}
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    dtype = getattr(torch, recipe.get("dtype", "float32"))
    overrides, models = [], {}
    for field_name, (what, causal_lm) in ROLES.items():
        if not recipe.get(field_name):
            continue
        key, config = random_config(recipe[field_name], what, tokenizer, args.shrink)
        folder = Path(args.models_dir) / f"{what}-{key}{'-shrunk' if args.shrink else ''}"
        start = time.perf_counter()
        write_model(config, tokenizer, folder, causal_lm, dtype)
        models[what] = {"architecture": key, "folder": str(folder), "write_s": round(time.perf_counter() - start, 1)}
        print(f"{what}: {key} in {folder} ({models[what]['write_s']} s)", file=sys.stderr, flush=True)
        overrides += [f"--{field_name}", str(folder)]
    run = [*overrides, "--dataset_name", "bundled", "--dataset_train_split", "train", "--max_steps",
           str(args.updates), "--output_dir", args.output_dir, "--overwrite_output_dir", "true", "--report_to", "none",
           "--save_steps", "0", "--push_to_hub", "false", "--disable_tqdm", "true", *extra]  # fmt: skip
    if not torch.cuda.is_available():  # the recipe's bf16 needs a GPU; fp32 on the CPU
        run = ["--bf16", "false", "--use_cpu", "true", *run]

    # The planner in a child process: its CPU-only arguments must not set up this process's accelerator state.
    planned = subprocess.run(
        [sys.executable, "-m", "safety_rlhf.cli", "plan", "--config", args.recipe, *run, "--json_output", "true"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if planned.returncode:
        sys.exit(f"safety-rlhf plan failed (exit {planned.returncode}) for {args.recipe}: {planned.stderr[-500:]}")
    plan = json.loads(planned.stdout.strip().splitlines()[-1])["plan"]

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    code = cli.main(["ppo", "--config", args.recipe, *run])
    if code:
        sys.exit(f"safety-rlhf ppo failed (exit {code}) for {args.recipe}")
    wall = time.perf_counter() - start
    metrics_file = Path(args.output_dir) / "metrics.jsonl"
    history = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    timers = sorted({k for m in history for k in m if k.startswith(("time/", "memory/"))})
    cuda = torch.cuda.is_available()
    result = {
        "recipe": args.recipe,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "versions": {
            name: __import__(name).__version__ for name in ("torch", "transformers", "trl", "peft", "bitsandbytes")
        },
        "models": models,
        "tokenizer": args.tokenizer or "tiny BPE (4,096)",
        "extra_flags": extra,
        "updates": len(history),
        "wall_s": round(wall, 1),
        "per_update": [{k: round(m[k], 3) for k in timers if k in m} for m in history],
        "mean_response_length": [m.get("val/response_length") for m in history],
        "peak_allocated_gib": gib(torch.cuda.max_memory_allocated()) if cuda else None,
        "peak_reserved_gib": gib(torch.cuda.max_memory_reserved()) if cuda else None,
        "plan_peak_gib": gib(plan["peak_bytes"]),
        "plan": {k: gib(v) for k, v in {**plan["static_bytes"], **plan["phase_bytes"]}.items()},
    }
    if cuda:
        result["peak_allocated_over_plan"] = round(result["peak_allocated_gib"] / result["plan_peak_gib"], 3)
    line = json.dumps(result)
    print(line, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    return result


if __name__ == "__main__":
    from safety_rlhf import SafetyRLHFError

    try:
        main()
    except SafetyRLHFError as err:
        sys.exit(f"recipe_gpu.py: {err}")
