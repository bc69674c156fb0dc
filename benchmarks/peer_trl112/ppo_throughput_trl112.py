"""PPO throughput of TRL 1.12's PPOTrainer on the same tiny models, data and settings: the same JSON line.

    make bench-peer                                   # once: .venv-peer with trl==1.12.0 (requirements.txt)
    .venv/bin/python benchmarks/ppo_throughput.py     # builds the models the first time
    .venv-peer/bin/python benchmarks/peer_trl112/ppo_throughput_trl112.py

Runs in the peer's virtualenv, which does not have our package: it reads the models that `ppo_throughput.py` wrote
(same flags, same `--models_dir`). The policy is the causal LM, the critic `AutoModelForSequenceClassification`
from the policy (num_labels=1, as TRL's example script builds it), the reward model the Qwen2 classifier that shares
the policy's tokenizer. Phases are timed by wrapping the module functions the trainer calls: `batch_generation`
(generation), `forward` (reference log-probs; its training calls are left to optimisation) and `get_reward` (values -> forward, reward model -> scoring); the
peer's optimisation time is what is left of each update.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench_common  # noqa: E402


def main(argv=None) -> dict:
    args = bench_common.finish_args(bench_common.parser(__doc__.splitlines()[0]).parse_args(argv))
    if not bench_common.models_exist(args.models_dir, args.num_prompts):
        sys.exit(
            f"no benchmark models for these settings in {args.models_dir}; run benchmarks/ppo_throughput.py with the "
            "same flags first (it builds them)"
        )

    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BitsAndBytesConfig,
        set_seed,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as peer

    if trl.__version__ != "1.12.0":
        sys.exit(f"trl {trl.__version__} is installed here; the peer is trl==1.12.0 (run `make bench-peer`)")

    set_seed(args.seed)
    models = Path(args.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(models / "policy", padding_side="left")
    quantization = None
    if args.load_in_4bit:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if args.bf16 else torch.float32,
        )
    device_map = {"": "cuda:0" if torch.cuda.is_available() else "cpu"} if quantization else None
    policy_dtype, reward_dtype = bench_common.weight_dtypes(args)  # the critic is trained in full: fp32 weights
    policy = AutoModelForCausalLM.from_pretrained(
        models / "policy", dtype=policy_dtype, quantization_config=quantization, device_map=device_map
    )
    value = AutoModelForSequenceClassification.from_pretrained(models / "policy", num_labels=1, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(models / "reward", num_labels=1, dtype=reward_dtype)
    peft_config = None
    if args.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    config = PPOConfig(**bench_common.shared_config(args), total_episodes=args.num_prompts, num_sample_generations=0)
    prompts = bench_common.load_prompts(models, args.num_prompts)
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=None,
        reward_model=reward,
        train_dataset=Dataset.from_dict({"input_ids": prompts}),
        value_model=value,
        peft_config=peft_config,
    )

    clock = bench_common.UpdateClock(args.warmup_updates, trainer.accelerator.device)
    originals = {name: getattr(peer, name) for name in ("batch_generation", "forward", "get_reward")}
    generation = clock.timed("generation", originals["batch_generation"])
    stop_id = tokenizer.eos_token_id if args.stop_token == "eos" else None

    def batch_generation(*a, **kw):
        clock.mark_update()
        query_responses, logits = generation(*a, **kw)
        responses = query_responses[:, a[1].shape[1] :]  # after the (padded) queries
        clock.generated_tokens[-1] += bench_common.count_response_tokens(responses, stop_id)
        return query_responses, logits

    value_call = clock.timed("forward", originals["get_reward"])
    reward_call = clock.timed("scoring", originals["get_reward"])

    def get_reward(model, *a, **kw):
        return (reward_call if model is trainer.reward_model else value_call)(model, *a, **kw)

    reference_call = clock.timed("forward", originals["forward"])

    def forward(model, *a, **kw):
        # The same function runs the training forward of the policy-and-value wrapper: that is optimisation.
        return (originals["forward"] if model is trainer.model else reference_call)(model, *a, **kw)

    peer.batch_generation = batch_generation
    peer.forward = forward
    peer.get_reward = get_reward
    try:
        trainer.train()
    finally:
        for name, fn in originals.items():
            setattr(peer, name, fn)
    clock.stop()
    result = clock.result(args, f"trl-{trl.__version__}", config.batch_size)
    bench_common.print_result(result)
    return result


if __name__ == "__main__":
    main()
