"""What both PPO throughput scripts share: the flags, the tiny models on disk, the prompts, the timing and the JSON.

This module imports only the standard library, torch and transformers, so that it runs in our virtualenv and in the
peer's (`benchmarks/peer_trl112`, TRL 1.12), which does not have our package.

Models (built once per setting by `ppo_throughput.py`, in our virtualenv, then read by both implementations):
    models_dir/policy   a randomly initialised Qwen2 causal LM with our tiny ChatML tokenizer (PAD != EOS), or a
                        copy of `--policy_path` (a trained causal LM, e.g. SmolLM2-135M-Instruct)
    models_dir/reward   a sequence classifier (one label) of the same size and tokenizer: random Qwen2, or the
                        `--policy_path` trunk with a random head
                        (TRL 1.12 requires the reward model to share the policy's tokenizer, so both use it)
    models_dir/prompts.json  `num_prompts` prompts of exactly `prompt_length` token ids (no padding)
Both implementations initialise their critic from `policy/`: ours as a backbone plus a zero-initialised head, the
peer as `AutoModelForSequenceClassification(num_labels=1)`, as its example script does.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

PHASES = ("generation", "forward", "scoring", "optimization")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    add = p.add_argument
    add("--hidden_size", type=int, default=256, help="Hidden size of policy, critic and reward model.")
    add("--num_layers", type=int, default=4, help="Transformer layers of each model.")
    add("--vocab_size", type=int, default=4096, help="Target vocabulary of the tiny BPE tokenizer.")
    add("--prompt_length", type=int, default=64, help="Tokens per prompt (every prompt has exactly this length).")
    add("--response_length", type=int, default=53, help="Generated tokens per prompt (no stop token: always full).")
    add("--per_device_train_batch_size", type=int, default=8, help="Micro-batch.")
    add("--gradient_accumulation_steps", type=int, default=4, help="Micro-batches per update (batch = 8 x 4 = 32).")
    add("--num_ppo_epochs", type=int, default=4)
    add("--num_mini_batches", type=int, default=1)
    add("--local_rollout_forward_batch_size", type=int, default=64, help="Chunk of generation and no-grad passes.")
    add("--use_peft", action="store_true", help="LoRA (r=16, alpha=32, all linear layers) on the policy.")
    add("--load_in_4bit", action="store_true", help="4-bit NF4 policy (bitsandbytes); needs --use_peft.")
    add(
        "--policy_path",
        default=None,
        help="A trained causal LM folder (e.g. models/smollm2-135m-instruct of `make import-gguf`, runs/demo/sft; "
        "`tiny-sft` builds make demo-tiny's SFT policy) instead of random weights: bundled prompts with the chat template, "
        "up to --prompt_length tokens, and a reward model that is the policy's trunk with a random one-label head; "
        "--hidden_size, --num_layers and --vocab_size are then unused.",
    )
    add(
        "--stop_token",
        choices=("eos",),
        default=None,
        help="Stop at EOS (default: every response runs to --response_length).",
    )
    add(
        "--bf16",
        action="store_true",
        help="Both in bf16, as `dtype: native` runs: frozen weights (the policy's base under --use_peft, the reward "
        "model) loaded in bf16, trained ones (LoRA, a fully trained policy or critic) fp32, all under bf16 autocast; "
        "utilisation is then against the bf16 matmul peak.",
    )
    add("--updates", type=int, default=3, help="Timed PPO updates.")
    add("--warmup_updates", type=int, default=1, help="Untimed updates before them.")
    add("--learning_rate", type=float, default=3e-6)
    add("--seed", type=int, default=0)
    add("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default).")
    add("--models_dir", default=None, help="Where the tiny models live (default: runs/bench/models-<settings>).")
    add("--output_dir", default="runs/bench/out", help="Scratch folder of the trainer.")
    add("--label", default="", help="Free text copied into the JSON line.")
    return p


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    if args.load_in_4bit and not args.use_peft:
        sys.exit("--load_in_4bit needs --use_peft (a 4-bit base cannot be trained without an adapter)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.models_dir is None:
        key = f"h{args.hidden_size}-l{args.num_layers}-v{args.vocab_size}"
        if args.policy_path:
            key = "from-" + "-".join(Path(args.policy_path).parts[-2:])
        args.models_dir = f"runs/bench/models-{key}-p{args.prompt_length}-s{args.seed}"
    args.batch_size = args.per_device_train_batch_size * args.gradient_accumulation_steps
    args.total_updates = args.warmup_updates + args.updates
    args.num_prompts = args.batch_size * args.total_updates
    return args


def shared_config(args) -> dict:
    """The settings both trainers receive, under the names both configs use (TRL 1.12's)."""
    return dict(
        output_dir=args.output_dir,
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_ppo_epochs=args.num_ppo_epochs,
        num_mini_batches=args.num_mini_batches,
        response_length=args.response_length,
        local_rollout_forward_batch_size=args.local_rollout_forward_batch_size,
        learning_rate=args.learning_rate,
        stop_token=args.stop_token,
        missing_eos_penalty=None,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16,
        seed=args.seed,
        disable_tqdm=True,
    )


def models_exist(models_dir, num_prompts: int) -> bool:
    d = Path(models_dir)
    if not all((d / f).is_file() for f in ("policy/config.json", "reward/config.json", "prompts.json")):
        return False
    return len(json.loads((d / "prompts.json").read_text())) >= num_prompts


def load_prompts(models_dir, num_prompts: int) -> list[list[int]]:
    prompts = json.loads((Path(models_dir) / "prompts.json").read_text())
    if len(prompts) < num_prompts:
        sys.exit(
            f"{models_dir}/prompts.json holds {len(prompts)} prompts, fewer than the {num_prompts} needed; "
            "rebuild the models with ppo_throughput.py (it writes enough for its settings)"
        )
    return prompts[:num_prompts]


class UpdateClock:
    """Per-update wall times and phase seconds, fed by wrappers around each implementation's functions.

    `mark_update()` is called when an update's generation starts; `stop()` when training returns. Updates before
    `warmup` are not counted.
    """

    def __init__(self, warmup: int, device: torch.device):
        self.warmup = warmup
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.starts: list[float] = []
        self.end: float | None = None
        self.phase = {name: [] for name in PHASES}  # per update
        self.generated_tokens: list[int] = []

    def mark_update(self) -> None:
        self.sync()
        self.starts.append(time.perf_counter())
        for values in self.phase.values():
            values.append(0.0)
        self.generated_tokens.append(0)

    def add(self, phase: str, seconds: float) -> None:
        self.phase[phase][-1] += seconds

    def timed(self, phase: str, fn):
        def wrapper(*a, **kw):
            self.sync()
            start = time.perf_counter()
            out = fn(*a, **kw)
            self.sync()
            self.add(phase, time.perf_counter() - start)
            return out

        return wrapper

    def stop(self) -> None:
        self.sync()
        self.end = time.perf_counter()

    def result(self, args, implementation: str, batch_size: int) -> dict:
        bounds = [*self.starts, self.end]
        durations = [bounds[i + 1] - bounds[i] for i in range(len(self.starts))][self.warmup :]
        if not durations:
            sys.exit(f"no timed update: {len(self.starts)} updates ran, warmup_updates={self.warmup}")
        total = sum(durations)
        tokens = sum(self.generated_tokens[self.warmup :])
        phases = {name: sum(values[self.warmup :]) / len(durations) for name, values in self.phase.items()}
        if implementation.startswith("trl"):
            # The peer's training loop is one function: its optimisation time is what the wrapped phases leave.
            phases["optimization"] = total / len(durations) - sum(v for k, v in phases.items() if k != "optimization")
        out = {
            "implementation": implementation,
            "label": args.label,
            "samples_per_s": round(batch_size * len(durations) / total, 4),
            "generated_tokens_per_s": round(tokens / total, 2),
            "generated_tokens_per_update": tokens / len(durations),
            "seconds_per_update": round(total / len(durations), 3),
            **{f"seconds_{name}": round(value, 3) for name, value in phases.items()},
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            "timed_updates": len(durations),
            "settings": {
                k: getattr(args, k)
                for k in (
                    "hidden_size",
                    "num_layers",
                    "vocab_size",
                    "prompt_length",
                    "response_length",
                    "per_device_train_batch_size",
                    "gradient_accumulation_steps",
                    "num_ppo_epochs",
                    "num_mini_batches",
                    "use_peft",
                    "load_in_4bit",
                    "bf16",
                    "policy_path",
                    "stop_token",
                    "seed",
                )
            },
            "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        }
        return out


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def response_lengths(responses: torch.Tensor, stop_token_id: int | None) -> torch.Tensor:
    """Generated tokens per row (B,): every column without a stop token; with one, up to and including the row's
    first stop (`generate` pads the rest). A random model may sample the PAD id itself: it still counts."""
    if stop_token_id is None:
        return torch.full((responses.shape[0],), responses.shape[1])
    is_stop = responses == stop_token_id
    return torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1, responses.shape[1])


def count_response_tokens(responses: torch.Tensor, stop_token_id: int | None) -> int:
    return int(response_lengths(responses, stop_token_id).sum())


def weight_dtypes(args) -> tuple:
    """(policy, reward) load dtypes: under --bf16 the frozen weights are bf16 (the policy's base only with LoRA)."""
    if not args.bf16:
        return torch.float32, torch.float32
    return (torch.bfloat16 if args.use_peft else torch.float32), torch.bfloat16


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """What this machine's matrix products reach now: the best of `repeats` (n, n) @ (n, n) products in `dtype`, in
    GFLOP/s (2 n^3 FLOPs each), with torch's threads as the benchmark runs them. The best, not the median: the
    peak is what a product can reach, and a busy machine only ever lowers it."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: thread pool, allocator
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def print_result(result: dict) -> None:
    print(json.dumps(result), flush=True)
