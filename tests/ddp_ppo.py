"""Run by tests/test_ddp.py as 2 CPU ranks (gloo) through `helpers.run_ranks`: a few PPO updates, then each rank
writes a fingerprint of its weights, the sizes it used and its metrics.

    python tests/ddp_ppo.py POLICY_DIR OUT_DIR SCENARIO

Scenarios: `sync` (plain run), `nan_reward` / `nan_loss` (rank 1 alone sees a NaN reward / loss at update 2),
`stall` (rank 1 stops answering at update 2; rank 0 must end with a clear error after `ddp_timeout`), `ppo_lag`
(PPO-Lagrangian: each rank sees its own costs, lambda must stay the same on both).
Like the CLI, a `SafetyRLHFError` prints one line and exits with status 2.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import length_cost, length_reward, make_dataset, model_args  # noqa: E402

from safety_rlhf import SafetyRLHFError  # noqa: E402
from safety_rlhf.cli import exit_at_once  # noqa: E402
from safety_rlhf.config import SafetyPPOConfig  # noqa: E402
from safety_rlhf.critics import RewardAndCostCritics  # noqa: E402
from safety_rlhf.models import load_policy, load_tokenizer, load_value_model  # noqa: E402
from safety_rlhf.trainer import SafetyPPOTrainer  # noqa: E402

STALL_SECONDS = 25


class OnRank1AtUpdate2:
    """Wraps a function; on rank 1, its call during update 2 does `action` instead."""

    def __init__(self, trainer, fn, action):
        self.trainer, self.fn, self.action = trainer, fn, action

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        if self.trainer.accelerator.process_index == 1 and self.trainer.update == 1:
            return self.action(out)
        return out


def nan_like(out):
    if isinstance(out, tuple):  # micro_batch_loss: (loss, tokens, stats)
        return (out[0] * float("nan"), *out[1:])
    return [float("nan")] * len(out)


def stall(out):
    time.sleep(STALL_SECONDS)
    sys.exit(3)


def main(policy_path: str, out: str, scenario: str) -> None:
    margs = model_args(policy_path)
    tokenizer = load_tokenizer(margs)
    args = SafetyPPOConfig(
        output_dir=out, use_cpu=True, per_device_train_batch_size=2, gradient_accumulation_steps=2, num_ppo_epochs=2,
        max_steps=3, response_length=6, learning_rate=1e-3, save_steps=0, sample_completions=0, seed=0,
        ddp_timeout=8 if scenario == "stall" else 600,
        **(dict(algorithm="ppo_lag", lambda_lr=0.5, threshold=0.0) if scenario == "ppo_lag" else {}),
    )  # fmt: skip
    lag = scenario == "ppo_lag"
    critic = load_value_model(policy_path, margs, tokenizer)
    if lag:
        critic = RewardAndCostCritics(critic, load_value_model(policy_path, margs, tokenizer))
    trainer = SafetyPPOTrainer(
        args,
        tokenizer,
        load_policy(margs, tokenizer),
        critic,
        length_reward,
        make_dataset(tokenizer),
        cost_model=length_cost if lag else None,
    )
    if scenario in ("nan_reward", "stall"):
        trainer.reward_fn = OnRank1AtUpdate2(trainer, length_reward, nan_like if scenario == "nan_reward" else stall)
    elif scenario == "nan_loss":
        trainer.micro_batch_loss = OnRank1AtUpdate2(trainer, trainer.micro_batch_loss, nan_like)
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
                "nonfinite": [m["nonfinite_update"] for m in history],
                "fingerprint": fingerprint,
                "changed": sum(fingerprint[n] != initial[n] for n in initial),
                "prompts_seen": trainer.batch(0)["prompts"],
                "costs": [m.get("objective/cost") for m in history],
                "lambda": [m.get("lagrangian/lambda") for m in history],
                "window": list(trainer.multiplier.window) if lag else [],
            }
        )
    )
    torch.distributed.barrier()
    trainer.close()


def exit_with_parent(interval: float = 1.0) -> None:
    """End this rank when the test that started it is gone (killed by a timeout, Ctrl-C, CI): reparented, its parent
    id changes. A thread, because this sandbox's kernel does not honour PR_SET_PDEATHSIG."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    exit_with_parent()
    try:
        main(*sys.argv[1:4])
    except SafetyRLHFError as err:
        print(f"error: {err}", file=sys.stderr)
        if getattr(err, "exit_at_once", False):  # as the CLI does: no teardown of a broken process group
            exit_at_once(2)
        sys.exit(2)
