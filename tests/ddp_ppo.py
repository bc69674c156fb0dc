"""Run by tests/test_ddp.py under `accelerate launch --multi_gpu --num_processes 2` (CPU: gloo): two PPO updates, then each rank
writes a fingerprint of its weights and the sizes it used."""

import json
import sys
from pathlib import Path

import torch
from trl import ModelConfig

from safety_rlhf.config import SafetyPPOConfig
from safety_rlhf.models import load_policy, load_tokenizer, load_value_model
from safety_rlhf.trainer import SafetyPPOTrainer

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import length_reward, make_dataset  # noqa: E402


def main(policy_path: str, out: str) -> None:
    margs = ModelConfig(model_name_or_path=policy_path, dtype="float32")
    tokenizer = load_tokenizer(margs)
    args = SafetyPPOConfig(
        output_dir=out, use_cpu=True, per_device_train_batch_size=2, gradient_accumulation_steps=2, num_ppo_epochs=2,
        max_steps=2, response_length=6, learning_rate=1e-3, save_steps=0, sample_completions=0, seed=0,
    )  # fmt: skip
    trainer = SafetyPPOTrainer(
        args,
        tokenizer,
        load_policy(margs, tokenizer),
        load_value_model(policy_path, margs, tokenizer),
        length_reward,
        make_dataset(tokenizer),
    )
    model = trainer.accelerator.unwrap_model(trainer.model)
    initial = {n: float(p.detach().double().sum()) for n, p in model.named_parameters()}
    history = trainer.train()
    fingerprint = {n: float(p.detach().double().sum()) for n, p in model.named_parameters()}
    rank = trainer.accelerator.process_index
    (Path(out) / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "world_size": trainer.accelerator.num_processes,
                "batch_size": args.batch_size,
                "episode": history[-1]["episode"],
                "fingerprint": fingerprint,
                "changed": sum(fingerprint[n] != initial[n] for n in initial),
                "prompts_seen": trainer.batch(0)["prompts"],
            }
        )
    )
    torch.distributed.barrier() if torch.distributed.is_initialized() else None


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
