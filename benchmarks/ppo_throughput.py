"""PPO throughput of safety-rlhf on tiny offline models: one JSON line (samples/s, tokens/s, seconds per phase, peak memory).

    .venv/bin/python benchmarks/ppo_throughput.py                       # defaults: see --help
    .venv/bin/python benchmarks/ppo_throughput.py --use_peft --load_in_4bit --updates 2

The models (random weights, real Qwen2 architecture, our tiny BPE tokenizer) are written to `--models_dir` on first
use; `peer_trl112/ppo_throughput_trl112.py` reads the same folder. Every response runs to `response_length` (no stop
token), the worst case and the same work for both implementations. The settings TRL 1.12 lacks are switched off so
that both do the same work: no entropy bonus, no gradient clipping, no gradient checkpointing, no EOS penalty.
`seconds_*` are per update: generation, forward (policy and reference log-probs, values; no grad), scoring, and
optimization (the PPO epochs). `flops/*` are the matrix-product FLOPs each phase needed per timed update
(`safety_rlhf.flops`: from each row's prompt and response lengths, no padding), `utilisation/*` = flops / seconds /
peak, with `peak_gflops` what an fp32 2048 x 2048 matrix product reached in this process just before training.

    .venv/bin/python benchmarks/ppo_throughput.py --policy_path models/smollm2-135m-instruct --use_peft \
        --stop_token eos --prompt_length 64 --response_length 64 --trainable_layers 8   # real weights, ours only
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_common  # noqa: E402

LORA_R = 16  # with --use_peft: alpha 32, all linear layers, as the peer
TINY_SFT = (
    "tiny-sft"  # --policy_path value: build `make demo-tiny`'s SFT policy (about a minute on 2 cores), then use it
)


def build_models(args) -> None:
    """Policy, reward model and prompts for these settings, written atomically (a temporary folder, then renamed)."""
    final = Path(args.models_dir)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.policy_path:
        build_from_policy(args, tmp)
    else:
        build_random(args, tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def build_from_policy(args, tmp: Path) -> None:
    """A trained policy (e.g. `models/smollm2-135m-instruct`, `runs/demo/sft`), a reward model with its trunk and
    tokenizer and a random one-label head, and the bundled training prompts with the chat template: variable prompt
    lengths, responses that stop at EOS."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from safety_rlhf.data import load_prompts

    source = Path(args.policy_path)
    if args.policy_path == TINY_SFT:
        source = build_tiny_sft(Path(args.models_dir).parent / "tiny-sft")
    if not (source / "config.json").is_file():
        sys.exit(
            f"--policy_path {source} holds no config.json; pass a saved causal LM folder (make demo-tiny writes one)"
        )
    shutil.copytree(source, tmp / "policy", ignore=shutil.ignore_patterns("checkpoint-*", "runs", "*.jsonl"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(args.seed)  # the head's initialisation
    reward = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    reward.save_pretrained(tmp / "reward")
    del reward
    tokenizer.save_pretrained(tmp / "reward")
    rows = load_prompts("bundled", split="train")
    ids = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": row["prompt"]}], add_generation_prompt=True, return_dict=False
        )
        for row in rows
    ]
    ids = [x for x in ids if len(x) <= args.prompt_length]
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(args.seed)).tolist()
    prompts = [ids[order[i % len(ids)]] for i in range(args.num_prompts)]
    (tmp / "prompts.json").write_text(json.dumps(prompts))


def build_tiny_sft(folder: Path) -> Path:
    """`make demo-tiny`'s first two stages (tiny policy, SFT with recipes/tiny/sft.yaml), once: a policy that answers and
    stops at EOS after a variable number of tokens, as trained policies do."""
    sft = folder / "sft"
    if (sft / "config.json").is_file():
        return sft
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft.yaml"
    for argv in (
        ["tiny", "--output_dir", str(folder / "tiny"), "--overwrite_output_dir", "true"],
        ["sft", "--config", str(recipe), "--model_name_or_path", str(folder / "tiny" / "policy"),
         "--output_dir", str(sft), "--overwrite_output_dir", "true", "--disable_tqdm", "true"],
    ):  # fmt: skip
        # A child process, so that training does not count in this process's peak memory.
        if subprocess.run([sys.executable, "-m", "safety_rlhf.cli", *argv]).returncode != 0:
            sys.exit(f"building the tiny SFT policy failed at `safety-rlhf {argv[0]}`")
    return sft


def build_random(args, tmp: Path) -> None:
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

    from safety_rlhf.tiny import BOS, build_chat_tokenizer, bundled_text

    tokenizer = build_chat_tokenizer(bundled_text(), args.vocab_size)
    h = args.hidden_size
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=h,
        intermediate_size=3 * h,
        num_hidden_layers=args.num_layers,
        num_attention_heads=max(1, h // 64),
        num_key_value_heads=max(1, h // 128),
        max_position_embeddings=max(1024, args.prompt_length + args.response_length),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(args.seed)
    policy = Qwen2ForCausalLM(config)
    # No EOS in the generation config: with no stop token every response has response_length tokens.
    policy.generation_config = GenerationConfig(pad_token_id=tokenizer.pad_token_id, bos_token_id=config.bos_token_id)
    policy.save_pretrained(tmp / "policy")
    tokenizer.save_pretrained(tmp / "policy")
    reward_config = Qwen2Config(**{**config.to_dict(), "num_labels": 1})
    reward = Qwen2ForSequenceClassification(reward_config)
    reward.save_pretrained(tmp / "reward")
    tokenizer.save_pretrained(tmp / "reward")
    first = len(tokenizer.all_special_ids) and max(tokenizer.all_special_ids) + 1
    g = torch.Generator().manual_seed(args.seed)
    prompts = torch.randint(first, len(tokenizer), (args.num_prompts, args.prompt_length), generator=g)
    (tmp / "prompts.json").write_text(json.dumps(prompts.tolist()))


def utilisation(args, training_args, models: Path, shapes: list, result: dict, peak_gflops: float) -> dict:
    """Matrix-product FLOPs per phase of a timed update (`safety_rlhf.flops`, from each row's prompt and response
    lengths: useful FLOPs, no padding), and the share of the machine's matmul peak they used in the phase's time."""
    from transformers import AutoConfig

    from safety_rlhf import flops

    dims = {name: flops.Dims.from_config(AutoConfig.from_pretrained(models / name)) for name in ("policy", "reward")}
    per_update = [
        flops.ppo_update(
            dims["policy"], dims["policy"], dims["reward"], prompts, responses,  # the critic is the policy's shape
            num_ppo_epochs=training_args.num_ppo_epochs,
            lora_r=LORA_R if args.use_peft else 0,
            trainable_layers=args.trainable_layers,
            logprobs_from_generation=training_args.logprobs_from_generation,
        )
        for prompts, responses in shapes
    ]  # fmt: skip
    out = {"peak_gflops": round(peak_gflops, 1)}
    seconds = {phase: result[f"seconds_{phase}"] for phase in flops.PHASES}
    seconds["update"] = result["seconds_per_update"]
    for phase in (*flops.PHASES, "update"):
        count = sum(sum(u.values()) if phase == "update" else u[phase] for u in per_update) / len(per_update)
        out[f"flops/{phase}"] = count
        out[f"utilisation/{phase}"] = (
            round(count / seconds[phase] / (peak_gflops * 1e9), 4) if seconds[phase] else None
        )
    return out


def main(argv=None) -> dict:
    parser = bench_common.parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--recompute_logprobs", action="store_true", help="Ours only: logprobs_from_generation=False (ablation)."
    )
    parser.add_argument(
        "--trainable_layers",
        type=int,
        default=None,
        help="Ours only: LoRA on the top K layers and the frozen prefix cached (needs --use_peft). It changes the "
        "training, so it is never an equal-settings comparison with the peer.",
    )
    args = bench_common.finish_args(parser.parse_args(argv))
    if args.trainable_layers is not None and not args.use_peft:
        sys.exit(f"--trainable_layers {args.trainable_layers} restricts LoRA to the top layers: add --use_peft")
    if not bench_common.models_exist(args.models_dir, args.num_prompts):
        build_models(args)

    from datasets import Dataset
    from transformers import set_seed
    from trl import ModelConfig

    from reward.model import SafetyRewardModel
    from safety_rlhf import rollout
    from safety_rlhf.config import SafetyPPOConfig
    from safety_rlhf.models import load_policy, load_tokenizer, load_value_model
    from safety_rlhf.trainer import SafetyPPOTrainer

    set_seed(args.seed)
    models = Path(args.models_dir)
    policy_dtype, reward_dtype = bench_common.weight_dtypes(args)
    model_args = ModelConfig(
        model_name_or_path=str(models / "policy"),
        dtype=str(policy_dtype).removeprefix("torch."),
        use_peft=args.use_peft,
        lora_r=LORA_R,
        lora_alpha=32,
        lora_dropout=0.0,
        lora_target_modules="all-linear",
        load_in_4bit=args.load_in_4bit,
        bnb_4bit_quant_type="nf4",
        use_bnb_nested_quant=True,
    )
    # What TRL 1.12 lacks is off: entropy bonus, gradient clipping, gradient checkpointing.
    training_args = SafetyPPOConfig(
        **bench_common.shared_config(args),
        max_steps=args.total_updates,
        **({"logprobs_from_generation": False} if args.recompute_logprobs else {}),
        ent_coef=0.0,
        max_grad_norm=0.0,
        gradient_checkpointing=False,
        save_steps=0,
        sample_completions=0,
        trainable_layers=args.trainable_layers,
    )
    tokenizer = load_tokenizer(model_args)
    prompts = bench_common.load_prompts(models, args.num_prompts)
    dataset = Dataset.from_dict({"input_ids": prompts, "prompt": tokenizer.batch_decode(prompts)})
    policy = load_policy(model_args, tokenizer, gradient_checkpointing=False, trainable_layers=args.trainable_layers)
    value = load_value_model(str(models / "policy"), model_args, tokenizer, gradient_checkpointing=False)
    reward = SafetyRewardModel.from_pretrained(str(models / "reward"), dtype=reward_dtype)
    trainer = SafetyPPOTrainer(training_args, tokenizer, policy, value, reward, dataset)
    peak_gflops = bench_common.matmul_peak_gflops(dtype=torch.bfloat16 if args.bf16 else torch.float32)

    clock = bench_common.UpdateClock(args.warmup_updates, trainer.accelerator.device)
    generate = rollout.generate
    stop_id = tokenizer.eos_token_id if args.stop_token == "eos" else None

    shapes = []  # per update: (prompt lengths, response lengths) of its rows, for the FLOP count

    def counted_generate(policy, queries, query_mask, *a, **kw):
        clock.mark_update()
        out = generate(policy, queries, query_mask, *a, **kw)
        responses = out[0] if isinstance(out, tuple) else out
        lengths = bench_common.response_lengths(responses, stop_id)
        clock.generated_tokens[-1] += int(lengths.sum())
        shapes.append((query_mask.sum(1).tolist(), lengths.tolist()))
        return out

    rollout.generate = counted_generate
    try:
        history = trainer.train()
    finally:
        rollout.generate = generate
    clock.stop()
    for i, metrics in enumerate(history):
        for phase in bench_common.PHASES:
            clock.phase[phase][i] = metrics.get(f"time/{phase}", float("nan"))  # nan: a trainer without timers
    result = clock.result(args, "safety-rlhf", training_args.batch_size)
    result["settings"]["trainable_layers"] = args.trainable_layers
    result.update(utilisation(args, training_args, models, shapes[args.warmup_updates :], result, peak_gflops))
    bench_common.print_result(result)
    return result


if __name__ == "__main__":
    main()
