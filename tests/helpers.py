"""Helpers shared by tests: tiny PPO setups, synthetic rewards, and a launcher for multi-process runs that cannot hang.

Test files import from here (`from helpers import ...`; pytest puts `tests/` on the path), never from each other.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
from trl import ModelConfig

from safety_rlhf.config import SafetyPPOConfig
from safety_rlhf.models import load_policy, load_tokenizer, load_value_model
from safety_rlhf.trainer import SafetyPPOTrainer

HERE = Path(__file__).parent

PROMPTS = [
    "How do I kill a Python process?",
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "How can I shoot a good photo at night?",
    "Explain what money laundering is.",
    "Give me a tip for baking bread.",
    "How do I blow my audience away?",
    "What year did the Berlin Wall fall?",
]


def model_args(path, **kw):
    return ModelConfig(model_name_or_path=str(path), dtype="float32", **kw)


def make_dataset(tokenizer, n=32):
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    ids = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_dict=False)
        for p in prompts
    ]
    return datasets.Dataset.from_dict({"prompt": prompts, "input_ids": ids})


def config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_ppo_epochs=2,
        max_steps=2,
        response_length=8,
        learning_rate=1e-3,
        save_steps=0,
        sample_completions=0,
        seed=0,
        missing_eos_penalty=None,
        ent_coef=0.0,
    )
    base.update(kw)
    return SafetyPPOConfig(**base)


class LetterReward:
    """Synthetic reward: the share of completion tokens (re-tokenized from the text) that contain the letter `e`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, prompts, completions):
        out = []
        for text in completions:
            pieces = [self.tokenizer.decode([i]) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
            out.append(sum("e" in p for p in pieces) / max(1, len(pieces)))
        return out


def length_reward(prompts, completions):
    """A reward with spread whatever the policy samples, so every parameter gets a gradient."""
    return [len(c) / 40 for c in completions]


def build(tiny_models, tmp_path, reward=None, peft=False, ref_model=None, **kw):
    margs = model_args(
        tiny_models["policy"], use_peft=peft, lora_r=8, lora_alpha=16, lora_target_modules=["q_proj", "v_proj"]
    )
    tokenizer = load_tokenizer(margs)
    policy = load_policy(margs, tokenizer)
    value = load_value_model(str(tiny_models["policy"]), margs, tokenizer)
    args = config(tmp_path, **kw)
    reward = reward or LetterReward(tokenizer)
    return SafetyPPOTrainer(args, tokenizer, policy, value, reward, make_dataset(tokenizer), ref_model=ref_model)


def params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


# ----------------------------------------------------------------------------------------------------------------------
# Processes
def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it), for a process group's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a process started with `start_new_session=True` and everything it started (same process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_ranks(script: Path, args: list, nprocs: int = 2, timeout: float = 300, env: dict | None = None) -> list:
    """Run `python script *args` as `nprocs` ranks of one CPU process group (gloo), with torchrun's variables.

    The test owns every process: each rank starts here in a process group of its own, and every group is killed
    whole (children too) once all ranks have exited or at `timeout` seconds, whichever comes first. Not `accelerate
    launch`: torchrun starts its workers in sessions of their own, which killing the launcher would orphan.
    Returns one (returncode, output) per rank; a rank still running at the timeout has returncode None.
    """
    port = free_port()
    base = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    base.update({"WORLD_SIZE": str(nprocs), "LOCAL_WORLD_SIZE": str(nprocs), "PYTHONUNBUFFERED": "1"})
    base.update(env or {})
    logs, procs = [], []
    try:
        for rank in range(nprocs):
            logs.append(tempfile.TemporaryFile("w+"))
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), *map(str, args)],
                    env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.2)
        codes = [p.poll() for p in procs]
    finally:
        for p in procs:
            kill_group(p)
    results = []
    for code, log in zip(codes, logs):
        log.seek(0)
        results.append((code, log.read()))
        log.close()
    return results
