"""PPO for safety RLHF: our own trainer, in TRL 1.12's names, on transformers + accelerate + peft.

    safety-rlhf ppo --config recipes/tiny/ppo.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml -m safety_rlhf.cli ppo --config ...

One update (`SafetyPPOTrainer.train`) reads as numbered steps:
    1 generate  2 log-probs, reference log-probs and values  3 score  4 per-token rewards  5 advantages
    6 PPO epochs over shuffled mini-batches with gradient accumulation  7 KL control, logging, checkpoint

Departures from TRL 1.12's PPOTrainer (each a fix of a documented limitation):
    1. The reward model may use any tokenizer: completions are decoded and re-tokenized by the scorer (trl#3595).
    2. The score sits on the stop token itself, not on the padding slot after it (trl#3750).
    3. One optimizer step per mini-batch whatever the accumulation (trl#5645), token-mean over the whole mini-batch
       (so accumulation does not change the update), and metrics averaged over every micro-batch (no dilution).
    4. Entropy bonus (`ent_coef`), gradient clipping (`max_grad_norm`), adaptive KL, full-state resume.
    5. Old log-probs are read during generation one step at a time (`rollout.SampledLogprobs`), not from a stored
       (B, R, V) tensor of scores, where the policy computes in fp32; in bf16/fp16 (`logprobs_from_generation`
       None, the default) or with `False` they are recomputed with a forward pass.

`algorithm: ppo_lag` (PPO-Lagrangian, Safe RLHF) adds to the same steps: 3 the cost model scores each completion and
the multiplier lambda takes one step on the recent episodes' mean cost; 4 per-token costs (+beta * KL_t); 5 cost GAE
from the cost critic, and the actor's advantage (A_r - lambda * A_c) / (1 + lambda); 6 the cost critic's clipped value
loss beside the reward critic's. See `ppo_core` for the pieces and their sources.
"""

import copy
import gc
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import get_scheduler
from trl import create_reference_model
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import disable_dropout_in_model

from . import SafetyRLHFError, critics, ppo_core, prefix_cache, rollout
from .config import SafetyPPOConfig, to_dict

METRICS_FILE = "metrics.jsonl"
STATE_FILE = "trainer_state.pt"
COST_WINDOW_FILE = "cost_window_{rank}.pth"  # ppo_lag: each process's recent episode costs
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Words in the RuntimeError of a failed gloo/NCCL collective (torch raises no dedicated type for all of them).
COLLECTIVE_ERRORS = ("gloo", "NCCL", "nccl", "Timed out", "Connection closed", "Connection reset", "timed out")
# The exit status of a run stopped by SIGTERM or Ctrl-C after a complete checkpoint (sysexits' EX_TEMPFAIL: "try
# again"): a job script can requeue on it, e.g. `[ $? -eq 75 ] && scontrol requeue $SLURM_JOB_ID`.
PREEMPTED_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STAT_KEYS = ("pg_loss", "vf_loss", "pg_clipfrac", "vf_clipfrac", "approxkl", "entropy", "ratio", "ratio_var")


class Preempted(SafetyRLHFError):
    """The run stopped on a signal after a complete checkpoint; the CLI exits with `PREEMPTED_EXIT_CODE`."""

    exit_code = PREEMPTED_EXIT_CODE


class CollectiveFailed(SafetyRLHFError):
    """A collective operation failed (a peer crashed or stalled past `ddp_timeout`). The process group cannot be torn
    down cleanly then: gloo's worker threads, still bound to the lost peer, can abort the interpreter at exit
    ("terminate called without an active exception", SIGABRT instead of exit status 2), so the entry point leaves
    with `os._exit` once the error is printed (`exit_at_once`)."""

    exit_at_once = True


class UpdateAbandoned(BaseException):
    """Raised by the stop handler inside an update, so the update in flight ends at once. A `BaseException`, as
    `KeyboardInterrupt` is: no `except Exception` on the way (generation, a reward callable) can swallow it."""


def cpu_copy(obj):
    """A copy of `obj` (nested dicts, lists and tuples of tensors and plain values) whose tensors live on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: cpu_copy(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(value) for value in obj)
    return copy.deepcopy(obj)


class PhaseTimer:
    """Wall-clock seconds per phase of an update (`time/*` metrics); waits for the GPU at each boundary."""

    PHASES = ("generation", "forward", "scoring", "optimization")

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.seconds = dict.fromkeys(self.PHASES, 0.0)

    @contextmanager
    def __call__(self, phase: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[phase] += time.perf_counter() - start


class PolicyAndValue(torch.nn.Module):
    """One module for the optimizer, DDP and DeepSpeed; `forward` returns the policy's logits and the values.

    `value` is one of `critics` (its parameters only: a `SharedValueHead` reads the policy's trunk, a `PrefixCritic`
    holds its own layer copies). `split` (a `prefix_cache.DecoderSplit`, or None) is a plain attribute: its modules
    are the policy's own.
    """

    def __init__(self, policy, value, split=None):
        super().__init__()
        self.policy = policy
        self.value = value
        self.split = split
        self.keep_logits = rollout.accepts_logits_to_keep(policy)

    def forward(self, input_ids, attention_mask, position_ids, response_length: int, hidden=None, with_values=True):
        """Logits (B, R, V) and values (B, R) at the positions that predict the last R tokens (values None without
        `with_values`).

        With `hidden`, the cached output (B, T, d) of the policy's frozen bottom layers, only its top layers run.
        """
        return rollout.logits_and_values(
            self.policy, self.value, self.split, input_ids, attention_mask, position_ids, response_length, hidden,
            keep=self.keep_logits, with_values=with_values,
        )  # fmt: skip

    # TRL's `unwrap_model_for_generation` (ZeRO-3 parameter gathering) toggles checkpointing on the model it unwraps.
    @property
    def is_gradient_checkpointing(self) -> bool:
        return getattr(self.policy, "is_gradient_checkpointing", False)

    def gradient_checkpointing_disable(self):
        self.policy.gradient_checkpointing_disable()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def find_checkpoint(output_dir, resume_from_checkpoint: str) -> Path:
    if resume_from_checkpoint != "latest":
        path = Path(resume_from_checkpoint)
        if not (path / STATE_FILE).is_file():
            raise SafetyRLHFError(f"resume_from_checkpoint {path} holds no {STATE_FILE}; pass a checkpoint-N folder")
        return path
    found = [p for p in sorted_checkpoints(output_dir) if (p / STATE_FILE).is_file()]
    if not found:
        raise SafetyRLHFError(
            f"resume_from_checkpoint=latest but {output_dir} holds no complete checkpoint-N folder; start a new run "
            "without --resume_from_checkpoint"
        )
    return found[-1]


def check_checkpoint(path: Path, model: torch.nn.Module) -> None:
    """Fail, before a resumed run writes anything, on a checkpoint that cannot resume `model` (the unwrapped policy
    and critic): a state file that does not load, or trainable parameters of other names or shapes than `model`'s
    (another model, LoRA rank or target modules). The state loads with `weights_only`: nothing in it is unpickled."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        saved = {name: tuple(value.shape) for name, value in state["trainable"].items()}
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, KeyError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise SafetyRLHFError(
            f"checkpoint {path} is incomplete or damaged ({type(err).__name__}: {reason}); resume from another "
            "checkpoint-N or start a new run"
        ) from None
    ours = {name: tuple(p.shape) for name, p in model.named_parameters() if p.requires_grad}
    reshaped = sorted(name for name in ours.keys() & saved.keys() if ours[name] != saved[name])
    missing, unexpected = sorted(ours.keys() - saved.keys()), sorted(saved.keys() - ours.keys())
    if reshaped:
        detail = f"{reshaped[0]} has shape {list(saved[reshaped[0]])} there, {list(ours[reshaped[0]])} here"
    elif missing or unexpected:
        detail = (
            f"{len(missing)} trainable tensors missing, {len(unexpected)} unknown, e.g. {(missing or unexpected)[0]}"
        )
    else:
        return
    raise SafetyRLHFError(
        f"checkpoint {path} was written for another model or LoRA setting ({detail}); resume with the recipe that "
        "wrote it, or start a new run in another --output_dir"
    )


def sorted_checkpoints(output_dir) -> list[Path]:
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


class SafetyPPOTrainer:
    """PPO with a critic, GAE, clipped policy and value losses, entropy bonus and KL control.

    Args:
        args (`SafetyPPOConfig`): the configuration.
        processing_class: the policy's tokenizer (left padding, PAD != EOS, chat template).
        model: the policy, a causal LM or a `PeftModel` (then the reference is the same base with the adapter off).
        value_model: the critic, one of `safety_rlhf.critics` (`ValueModel`, `SharedValueHead`, `PrefixCritic`).
        reward_model: a `reward.SafetyRewardModel` or any callable `(prompts, completions) -> list[float]`.
        train_dataset: rows with `input_ids` (chat template applied, unpadded) and `prompt` (the text given to the
            reward); an optional `label` (`harmful`/`benign`) enables the `safety/*` rollout metrics.
        ref_model: an explicit frozen reference; default: adapter disabled (PEFT) or a frozen copy of the policy.
        cost_model: `algorithm: ppo_lag` only: a `reward.SafetyCostModel` or any callable `(prompts, completions) ->
            list[float]`, higher = more harmful; `value_model` is then a `critics.RewardAndCostCritics`.
        refusal_judge: with `refusal_reward`: a `reward.SafetyRefusalJudge` or any callable `(prompts, completions)
            -> P(refused)` per completion, read by the label-aware term instead of the phrase list.
        ptx_dataset: with `ptx_coef`: supervised rows, `input_ids` and `labels` (-100 where no loss, as
            `sft.supervised_rows` builds them), whose negative log-likelihood joins every PPO optimizer step.
    """

    def __init__(self, args: SafetyPPOConfig, processing_class, model, value_model, reward_model, train_dataset,
                 ref_model=None, cost_model=None, refusal_judge=None, ptx_dataset=None):  # fmt: skip
        self.args = args
        self.tokenizer = processing_class

        # Accelerator
        mixed_precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
        # Micro-batches per optimizer step. Accelerate divides each backward loss by it (DeepSpeed's engine does the
        # same and steps at that boundary), so the losses below are multiplied back by it.
        self.micro_per_step = args.gradient_accumulation_steps // args.num_mini_batches
        if args.ptx_coef:
            if ptx_dataset is None or not {"input_ids", "labels"} <= set(ptx_dataset.column_names):
                raise SafetyRLHFError(
                    f"ptx_coef={args.ptx_coef} needs supervised rows with columns input_ids and labels; set "
                    "ptx_dataset_name (e.g. bundled_warmstart) or ptx_coef 0"
                )
            self.micro_per_step += 1  # one supervised micro-batch joins each optimizer step
        self.ptx_dataset = ptx_dataset if args.ptx_coef else None
        self.ptx_cache, self.ptx_cache_bytes, self.ptx_cache_limit = {}, 0, args.ptx_cache_mb * 2**20
        self.accelerator = Accelerator(
            gradient_accumulation_steps=self.micro_per_step,
            mixed_precision=mixed_precision,
            cpu=args.use_cpu,
            log_with=None if args.report_to in ("none", ["none"], [], None) else args.report_to,
            project_dir=args.output_dir,
        )
        if self.accelerator.num_processes != args.world_size:
            args.world_size = self.accelerator.num_processes
            args.batch_size = args.local_batch_size * args.world_size
            args.mini_batch_size = args.batch_size // args.num_mini_batches
        torch.manual_seed(args.seed)

        # Models: policy, reference, value
        self.is_peft = isinstance(model, PeftModel)
        if ref_model is None and not self.is_peft:
            ref_model = create_reference_model(model)
        self.ref_model = ref_model
        for m in (model, value_model, ref_model):
            if m is not None:
                disable_dropout_in_model(m)
        stop_ids = [args.stop_token_id] if args.stop_token_id is not None else []
        if args.stop_token == "eos":
            stop_ids = [processing_class.eos_token_id]
        self.stop_token_ids = stop_ids
        # Sampling and log-probs over the tokenizer's ids only, where the LM head has more rows (padded vocabularies).
        base = prefix_cache.causal_lm_of(model)
        head_rows = base.get_output_embeddings().out_features
        self.vocab_size = min(len(processing_class), head_rows)
        self.gen_config = rollout.generation_config(args, processing_class, stop_ids, head_rows)
        if args.logprobs_from_generation is None:  # decode and full forward agree in fp32 only (config docstring)
            dtype = str(getattr(base.config, "dtype", "float32")).replace("torch.", "")
            args.logprobs_from_generation = not (args.bf16 or args.fp16 or dtype in ("bfloat16", "float16"))

        # Reward, and under ppo_lag the cost and its multiplier
        self.reward_fn = reward_model
        self.cost_fn = cost_model
        self.judge_fn = getattr(refusal_judge, "refused_probability", refusal_judge)
        self.multiplier = None
        self.saturation_reported = False  # the log line when lambda saturates is written once
        if args.algorithm == "ppo_lag":
            if cost_model is None:
                raise SafetyRLHFError(
                    "algorithm='ppo_lag' needs a cost model; pass --cost_model_path (train one with "
                    "`safety-rlhf reward --objective cost`)"
                )
            if not isinstance(value_model, critics.RewardAndCostCritics):
                raise SafetyRLHFError(
                    "algorithm='ppo_lag' needs a reward critic and a cost critic: pass a critics.RewardAndCostCritics "
                    "(safety_rlhf.ppo.load_critic builds one)"
                )
            self.multiplier = ppo_core.LagrangeMultiplier(
                args.lambda_init, args.lambda_lr, args.threshold, args.lambda_max, args.lambda_update_delay_steps,
                args.episode_cost_window_size,
            )  # fmt: skip
        elif cost_model is not None or isinstance(value_model, critics.RewardAndCostCritics):
            raise SafetyRLHFError(
                f"a cost model and cost critic are read only by algorithm='ppo_lag' (algorithm={args.algorithm!r}); "
                "set algorithm ppo_lag or pass neither"
            )

        # Dataset
        if "input_ids" not in train_dataset.column_names or "prompt" not in train_dataset.column_names:
            raise SafetyRLHFError(
                f"train_dataset needs columns input_ids and prompt (found {', '.join(train_dataset.column_names)}); "
                "build it with safety_rlhf.data.tokenize_prompts"
            )
        self.train_dataset = train_dataset
        self.prompts_per_batch = args.batch_size // args.samples_per_prompt
        self.batches_per_epoch = len(train_dataset) // self.prompts_per_batch
        if self.batches_per_epoch == 0:
            raise SafetyRLHFError(
                f"the training set has {len(train_dataset)} prompts, fewer than the {self.prompts_per_batch} a batch "
                "needs; lower per_device_train_batch_size or gradient_accumulation_steps, or add prompts"
            )
        if args.max_steps > 0:
            self.num_updates = args.max_steps
        else:
            episodes = args.total_episodes or int(args.num_train_epochs * len(train_dataset))
            self.num_updates = max(1, math.ceil(episodes / args.batch_size))

        # Optimizer and schedule (one scheduler step per update, as in TRL)
        split = prefix_cache.DecoderSplit(model, args.trainable_layers) if args.trainable_layers else None
        self.model = PolicyAndValue(model, value_model, split)
        # Two parameter groups (policy, critic): the critic may learn at its own rate. No overlap: a shared critic's group
        # is its head (the trunk is the policy's), a prefix critic's its own layer copies and head.
        value_lr = args.learning_rate if args.value_learning_rate is None else args.value_learning_rate
        groups = [
            {"params": [p for p in self.model.policy.parameters() if p.requires_grad]},
            {"params": [p for p in self.model.value.parameters() if p.requires_grad], "lr": value_lr},
        ]
        params = groups[0]["params"] + groups[1]["params"]
        # Fused AdamW (one kernel for all parameters, CPU and CUDA) except under DeepSpeed, which brings its own.
        fused = self.accelerator.distributed_type != DistributedType.DEEPSPEED and all(
            p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
        )
        optimizer = torch.optim.AdamW(
            [group for group in groups if group["params"]],
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
            weight_decay=args.weight_decay,
            fused=fused,
        )
        self.scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=args.get_warmup_steps(self.num_updates),
            num_training_steps=self.num_updates,
        )
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        if self.ref_model is not None:
            self.ref_model = self.ref_model.to(self.accelerator.device)
        if isinstance(reward_model, torch.nn.Module):
            self.reward_fn = reward_model.to(self.accelerator.device).eval()
        if isinstance(cost_model, torch.nn.Module):
            self.cost_fn = cost_model.to(self.accelerator.device).eval()

        # KL control
        if args.adaptive_kl:
            self.kl_ctl = ppo_core.AdaptiveKLController(args.kl_coef, args.kl_target, args.kl_horizon)
        else:
            self.kl_ctl = ppo_core.FixedKLController(args.kl_coef)

        self.update = 0  # updates done
        self.nonfinite_streak = 0
        self.in_update = False  # inside `step`, where a stop signal abandons the update (`stop_on_signals`)
        self.trainable = [
            n for n, p in self.accelerator.unwrap_model(self.model).named_parameters() if p.requires_grad
        ]

    # ----------------------------------------------------------------------------------------------------------------
    # Data: the batch of update u is a function of (seed, u), so resuming needs no dataloader state.
    def batch(self, update: int) -> dict:
        args, acc = self.args, self.accelerator
        epoch, index = divmod(update, self.batches_per_epoch)
        order = torch.randperm(len(self.train_dataset), generator=torch.Generator().manual_seed(args.seed + epoch))
        ids = order[index * self.prompts_per_batch : (index + 1) * self.prompts_per_batch]
        local = args.local_batch_size // args.samples_per_prompt
        ids = ids[acc.process_index * local : (acc.process_index + 1) * local]
        # `samples_per_prompt` copies of each prompt in a row: the groups `ppo_core.prompt_baseline` reads.
        rows = self.train_dataset[ids.repeat_interleave(args.samples_per_prompt).tolist()]
        padded = self.tokenizer.pad({"input_ids": rows["input_ids"]}, padding=True, return_tensors="pt")
        return {
            "queries": padded["input_ids"].to(acc.device),
            "query_mask": padded["attention_mask"].to(acc.device),
            "prompts": rows["prompt"],
            "labels": rows.get("label"),
        }

    # ----------------------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | None = None) -> list[dict]:
        args, acc = self.args, self.accelerator
        if resume_from_checkpoint:
            self.load_checkpoint(find_checkpoint(args.output_dir, resume_from_checkpoint))
        if acc.is_main_process:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            if not resume_from_checkpoint:
                # A new run (into a new folder, or one the user asked to overwrite) starts its own metrics file.
                (Path(args.output_dir) / METRICS_FILE).unlink(missing_ok=True)
        acc.init_trackers(  # `to_dict` masks credentials (`hub_token`): trackers upload their config
            "safety-rlhf-ppo",
            config={k: v for k, v in to_dict(args).items() if isinstance(v, (int, float, str, bool))},
        )
        history = []
        start_time, start_update = time.time(), self.update
        bar = tqdm(
            total=self.num_updates,
            initial=self.update,
            disable=bool(args.disable_tqdm) or not acc.is_local_main_process,
            desc="ppo",
        )
        with self.stop_on_signals() as received:
            while self.update < self.num_updates:
                # What a stop in the middle of this update restores (None: checkpoint-N already holds it).
                boundary = self.snapshot()
                try:
                    with self.abandonable(received), self.collectives_explained():
                        metrics, samples = self.step(self.batch(self.update))
                except UpdateAbandoned:
                    bar.close()
                    raise self.abandon(boundary, received) from None
                self.update += 1
                metrics.update(
                    {
                        "step": self.update,
                        "episode": self.update * args.batch_size,
                        "eps": (self.update - start_update) * args.batch_size / (time.time() - start_time),
                        "lr": self.scheduler.get_last_lr()[0],
                    }
                )
                if acc.device.type == "cuda":  # the peak so far, to compare with `safety-rlhf plan`
                    metrics["memory/max_allocated_gib"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
                history.append(metrics)
                self.log(metrics, samples)
                bar.update(1)
                postfix = {"episode": metrics["episode"], "score": f"{metrics['objective/scores']:.3f}"}
                if self.multiplier is not None:
                    postfix.update(cost=f"{metrics['objective/cost']:.3f}", lam=f"{metrics['lagrangian/lambda']:.3f}")
                bar.set_postfix(**postfix, kl=f"{metrics['objective/kl']:.3f}")
                if self.update == self.num_updates:
                    break  # the entry point saves the final model
                periodic = bool(args.save_steps) and self.update % int(args.save_steps) == 0
                path = self.save_checkpoint() if periodic else None
                if self.stop_requested(received):
                    bar.close()
                    path = path or self.save_checkpoint()
                    raise Preempted(
                        f"stopped by {received[0]} after update {self.update} of {self.num_updates}; {path} holds the "
                        "full training state: continue with --resume_from_checkpoint latest"
                    )
        bar.close()
        return history

    @contextmanager
    def stop_on_signals(self):
        """SIGTERM (Slurm, Kubernetes, spot instances, `kill`) and Ctrl-C stop the run with a checkpoint of the last
        complete update, within seconds: an update in flight is abandoned (`abandonable`), except with several
        processes, which finish it first so that no process waits in a collective for one that left. A second
        Ctrl-C stops at once. Yields the list of signal names received."""
        received = []
        if threading.current_thread() is not threading.main_thread():
            yield received  # signal handlers can only be set from the main thread
            return

        def handler(signum, frame):
            name = signal.Signals(signum).name
            if received and signum == signal.SIGINT:
                raise KeyboardInterrupt
            received.append(name)
            if self.in_update and self.abandons_updates:
                self.in_update = False
                print(f"\nreceived {name}: abandoning update {self.update + 1}", file=sys.stderr, flush=True)
                raise UpdateAbandoned(name)
            print(
                f"\nreceived {name}: finishing update {self.update + 1}, then writing a checkpoint"
                + (" (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""),
                file=sys.stderr,
                flush=True,
            )

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield received
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @property
    def abandons_updates(self) -> bool:
        """Whether a stop signal abandons the update in flight: on one process. Several processes finish it first, so
        that no process waits in a collective for one that left."""
        return self.accelerator.num_processes == 1

    @contextmanager
    def abandonable(self, received: list):
        """The update run inside may be abandoned by a stop signal (the handler raises `UpdateAbandoned`); one that
        came just before it starts abandons it at once."""
        self.in_update = True
        try:
            if received and self.abandons_updates:
                raise UpdateAbandoned(received[0])
            yield
        finally:
            self.in_update = False

    def abandon(self, boundary: dict | None, received: list) -> Preempted:
        """After an abandoned update: the state of the last complete update back in place (`boundary`), its
        checkpoint written unless it exists, and the error that stops the run."""
        if boundary is not None:
            self.restore(boundary)
        path = Path(self.args.output_dir) / f"checkpoint-{self.update}"
        if not (path / STATE_FILE).is_file():
            path = self.save_checkpoint()
        return Preempted(
            f"stopped by {received[0]} after update {self.update} of {self.num_updates} (update {self.update + 1} "
            f"abandoned); {path} holds the full training state: continue with --resume_from_checkpoint latest"
        )

    def stop_requested(self, received: list) -> bool:
        """Whether any process received a stop signal: all processes stop at the same update."""
        stop = self.on_any_rank(bool(received))
        if stop and not received:
            received.append("a signal on another process")
        return stop

    def close(self) -> None:
        """End the run (trackers, process group) in an order that cannot deadlock at exit.

        DDP's C++ `Reducer` holds the process group. Freed last by the Reducer, with the GIL held, gloo's destructor
        joins its worker threads, and a worker still freeing a finished collective's tensors waits for the GIL: both
        wait forever (pytorch/pytorch#56297; seen here as rank 0 never exiting after training). So the model holding
        the Reducer goes first, and the process group's last reference is dropped from Python, whose binding
        releases the GIL while the workers finish. The trainer cannot train after this.
        """
        import torch.distributed as dist

        group = dist.group.WORLD if dist.is_available() and dist.is_initialized() else None
        self.accelerator.end_training()
        self.accelerator.free_memory()  # the prepared (DDP) model and optimizer
        self.model = self.optimizer = self.scheduler = None
        gc.collect()
        del group

    @contextmanager
    def collectives_explained(self):
        """A failed collective (a peer that crashed, or stalled past `ddp_timeout`) becomes one clear error."""
        try:
            yield
        except RuntimeError as err:
            acc, text = self.accelerator, str(err)
            if acc.num_processes == 1 or not any(word in text for word in COLLECTIVE_ERRORS):
                raise
            first = " ".join(text.split())[:300]
            raise CollectiveFailed(
                f"update {self.update + 1}: a collective operation failed on rank {acc.process_index} of "
                f"{acc.num_processes} ({first}); another process crashed or stalled longer than ddp_timeout="
                f"{self.args.ddp_timeout}s: read its log, and raise ddp_timeout if a step legitimately takes longer"
            ) from err

    def step(self, batch: dict) -> tuple[dict, list]:
        """One PPO iteration on one batch of prompts; returns its metrics and a few samples."""
        args, acc, tok = self.args, self.accelerator, self.tokenizer
        queries, query_mask = batch["queries"], batch["query_mask"]
        context = queries.shape[1]
        chunk = args.local_rollout_forward_batch_size
        unwrapped = acc.unwrap_model(self.model)
        unwrapped.eval()
        timer, start = PhaseTimer(acc.device), time.perf_counter()

        # 1. Generate: sampling with temperature/top_p, KV cache, stop at EOS; everything after it becomes PAD.
        with timer("generation"), unwrap_model_for_generation(self.model, acc, gather_deepspeed3_params=True) as gm:
            from_generation = args.logprobs_from_generation
            generated = rollout.generate(
                gm.policy, queries, query_mask, self.gen_config, tok.pad_token_id, chunk, with_logprobs=from_generation,
                copies=args.samples_per_prompt,
            )  # fmt: skip
            responses, generated_logprobs = generated if from_generation else (generated, None)
        responses, mask, lengths, has_stop = rollout.truncate_at_stop(responses, self.stop_token_ids, tok.pad_token_id)
        # Columns after the longest response are padding in every row: no pass below computes them.
        width = int(lengths.max())
        responses, mask = responses[:, :width], mask[:, :width]
        if generated_logprobs is not None:
            generated_logprobs = generated_logprobs[:, :width]
        maskf = mask.float()  # (B, R), R <= response_length

        # 2. Log-probs of the sampled tokens (policy and reference, logits / T) and values, without grad. With
        # `trainable_layers`, the frozen bottom layers run once here and their output is kept for the PPO epochs. Under
        # the same autocast as the PPO epochs' forward: with bf16 weights and fp32 LoRA (or a 4-bit model's fp32 head),
        # a pass outside it computes those layers in fp32, and the first ratio was 1.0011 instead of 1 (tiny model).
        chunks = []
        with timer("forward"), acc.autocast():
            for s in range(0, queries.shape[0], chunk):
                rows = slice(s, s + chunk)
                chunks.append(rollout.logprobs_and_values(
                    unwrapped.policy, self.ref_model, unwrapped.value, unwrapped.split, queries[rows], responses[rows],
                    query_mask[rows], mask[rows], args.temperature, with_policy=generated_logprobs is None,
                    vocab_size=self.vocab_size,
                ))  # fmt: skip
        logprobs, ref_logprobs, values, hidden = (torch.cat(x) if x[0] is not None else None for x in zip(*chunks))
        logprobs = generated_logprobs if generated_logprobs is not None else logprobs
        lagrangian = self.multiplier is not None
        values = values * (maskf.unsqueeze(-1) if lagrangian else maskf)  # ppo_lag: (B, R, 2), reward and cost

        # 3. Score the decoded completions with the reward's own tokenizer; the EOS trick on missing stop tokens.
        with timer("scoring"):
            completions = tok.batch_decode(responses, skip_special_tokens=True)
            raw_scores = rollout.score(self.reward_fn, batch["prompts"], completions, acc.device)
            if args.score_anchor:  # relative to refusing the same prompt (see the config's help)
                anchors = [args.score_anchor] * len(completions)
                raw_scores = raw_scores - rollout.score(self.reward_fn, batch["prompts"], anchors, acc.device)
        refused, harmful = self.refusals(batch.get("labels"), completions)
        rule_term, judged = None, None
        if args.refusal_reward and refused is not None:
            # Label-aware term: +r for the right behaviour (refuse harmful, answer benign), -r for the wrong one; with
            # a trained judge, r * (2 P(refused) - 1) on harmful prompts and r * (1 - 2 P(refused)) on benign ones.
            behaviour = refused
            if self.judge_fn is not None:
                with timer("scoring"):
                    judged = rollout.score(self.judge_fn, batch["prompts"], completions, acc.device)
                behaviour = judged
            rule_term = args.refusal_reward * torch.where(harmful.bool(), 2 * behaviour - 1, 1 - 2 * behaviour)
        eos_penalty = args.missing_eos_penalty if self.stop_token_ids else None
        scores = ppo_core.episode_scores(raw_scores, has_stop, eos_penalty, args.reward_clip, rule_term)
        logged_scores = scores
        if args.label_baseline and harmful is not None:
            scores = ppo_core.label_baseline(scores, harmful)
        if args.prompt_baseline:
            scores = ppo_core.prompt_baseline(scores, args.samples_per_prompt)
        if lagrangian:  # ppo_lag: the cost of each completion, then one step of lambda
            with timer("scoring"):
                costs = self.score_costs(batch["prompts"], completions, has_stop)

        # 4. Per-token rewards: -beta * KL_t on every response token, plus the score on the last one (the stop token).
        kl = ppo_core.per_token_kl(logprobs, ref_logprobs, args.kl_estimator) * maskf
        rewards, non_score_reward = ppo_core.token_rewards(
            scores, kl, lengths, maskf, self.kl_ctl.value, whiten=args.whiten_rewards
        )

        # 5. Advantages: GAE over response tokens, returns = A + V, advantages whitened over the batch (ppo_lag: the
        # reward's and the cost's, combined; `lagrangian_advantages`).
        if lagrangian:
            advantages, returns = self.lagrangian_advantages(rewards, costs["clipped"], kl, lengths, values, maskf)
        else:
            advantages, returns = ppo_core.compute_gae(rewards, values, maskf, args.gamma, args.lam)
        advantages = ppo_core.masked_whiten(advantages, maskf)

        query_responses = torch.cat([queries, responses], dim=1)
        attention_mask = torch.cat([query_mask, mask.to(query_mask.dtype)], dim=1)
        rollout_batch = {
            "query_responses": query_responses,
            "attention_mask": attention_mask,
            "position_ids": rollout.position_ids_from(attention_mask),
            "query_mask": query_mask,
            "responses": responses,
            "lengths": lengths,
            "mask": maskf,
            "logprobs": logprobs,
            "values": values,
            "returns": returns,
            "advantages": advantages,
            "hidden": hidden,  # (B, T, d) output of the frozen bottom layers, or None
        }
        finite = self.all_finite(rewards, advantages, values, returns)
        sequence_lengths = query_mask.sum(1) + lengths

        # 6. PPO epochs: shuffled mini-batches, each one optimizer step over accumulated micro-batches.
        unwrapped.train()
        extra = (("cost_vf_loss",) if lagrangian else ()) + (("ptx_loss",) if self.ptx_dataset is not None else ())
        stats = {k: [] for k in STAT_KEYS + extra}
        if finite:
            with timer("optimization"):
                finite = self.ppo_epochs(rollout_batch, sequence_lengths, context, stats)
        self.count_nonfinite(finite)
        self.scheduler.step()

        # 7. KL control and metrics (TRL's names; sums over a sequence, means over the batch and processes).
        mean = self.mean_over_processes
        kl_per_seq = kl.sum(1)
        self.kl_ctl.update(mean(kl_per_seq), args.batch_size)
        reward_values, reward_returns = (values[..., 0], returns[..., 0]) if lagrangian else (values, returns)
        metrics = {
            "objective/kl": mean(kl_per_seq),
            "objective/entropy": mean((-logprobs * maskf).sum(1)),
            "objective/non_score_reward": mean(non_score_reward.sum(1)),
            "objective/rlhf_reward": mean(non_score_reward.sum(1) + logged_scores),
            "objective/scores": mean(logged_scores),
            "objective/raw_scores": mean(raw_scores),
            "val/num_eos_tokens": acc.reduce(has_stop.sum(), reduction="sum").item(),
            "val/response_length": mean(lengths),
            "val/explained_variance": mean(ppo_core.explained_variance(reward_values, reward_returns, maskf)),
            "kl_coef": self.kl_ctl.value,
            "nonfinite_update": int(not finite),
            **{f"time/{phase}": seconds for phase, seconds in timer.seconds.items()},
            "time/update": time.perf_counter() - start,
        }
        if stats["pg_loss"]:
            avg = {k: mean(torch.stack(v)) for k, v in stats.items()}
            metrics.update(
                {
                    "policy/approxkl_avg": avg["approxkl"],
                    "policy/clipfrac_avg": avg["pg_clipfrac"],
                    "policy/entropy_avg": avg["entropy"],
                    "loss/policy_avg": avg["pg_loss"],
                    "loss/value_avg": avg["vf_loss"],
                    "val/clipfrac_avg": avg["vf_clipfrac"],
                    "val/ratio": avg["ratio"],
                    "val/ratio_var": avg["ratio_var"],
                }
            )
        if stats.get("ptx_loss"):
            metrics["loss/ptx_avg"] = mean(torch.stack(stats["ptx_loss"]))
        if lagrangian:
            metrics.update(self.lagrangian_metrics(costs, values, returns, maskf, stats["cost_vf_loss"]))
        metrics.update(self.safety_metrics(refused, harmful))
        if refused is not None and args.samples_per_prompt > 1:
            # Prompts whose samples all got the same behaviour (all refused or all answered): no contrast to learn from.
            groups = refused.view(-1, args.samples_per_prompt)
            metrics["safety/prompts_without_contrast"] = mean((groups.amin(1) == groups.amax(1)).float().mean())
        if judged is not None:
            # How often the trained judge and the evaluation's phrase list disagree on this rollout's completions.
            metrics["safety/judge_refused_rate"] = mean((judged > 0.5).float().mean())
            metrics["safety/judge_disagreement"] = mean(((judged > 0.5).float() != refused).float().mean())
        samples = list(zip(batch["prompts"], completions, logged_scores.tolist(), strict=True))
        samples = samples[: args.sample_completions]
        return metrics, samples

    # ----------------------------------------------------------------------------------------------------------------
    # ppo_lag (PPO-Lagrangian): its additions to steps 3, 5 and 7; values and returns are (B, R, 2), reward and cost.
    def score_costs(self, prompts: list[str], completions: list[str], has_stop) -> dict:
        """Step 3: the cost model's score of each completion (`raw`, and `clipped` at `cost_clip`), then one step
        of lambda on J_c, the mean cost of the recent episodes (this rollout's included) averaged over the processes,
        as safe-rlhf does before its PPO step. Non-finite costs never enter the window (J_c is then nan)."""
        acc = self.accelerator
        raw = rollout.score(self.cost_fn, prompts, completions, acc.device)
        episode_cost = float("nan")
        if self.all_finite(raw):
            self.multiplier.add_costs(raw.tolist())
            local = torch.tensor(self.multiplier.window_mean(), dtype=torch.float64, device=acc.device)
            episode_cost = acc.reduce(local, reduction="mean").item()
            moved = self.multiplier.step(episode_cost, self.update)
            if moved and self.multiplier.saturated and not self.saturation_reported:
                self.saturation_reported = True
                if acc.is_main_process:
                    print(f"\nupdate {self.update + 1}: {self.saturation_note()}", file=sys.stderr, flush=True)
        clip = self.args.cost_clip if self.args.cost_clip is not None else self.args.reward_clip
        clipped = ppo_core.episode_scores(raw, has_stop, reward_clip=clip)
        return {"raw": raw, "clipped": clipped, "J_c": episode_cost}

    def saturation_note(self) -> str:
        """What a saturated multiplier means, and the fix (a log line, and part of the non-finite error)."""
        return (
            f"the Lagrange multiplier lambda reached float32's largest value ({self.multiplier.value:.3g}): the mean "
            f"episode cost J_c stays above threshold={self.args.threshold:g}, which this policy and cost model do not "
            "reach, and the actor now follows the cost alone; raise threshold or set lambda_max"
        )

    def lagrangian_advantages(self, rewards, costs, kl, lengths, values, maskf):
        """Step 5: the reward's GAE from the reward critic, the cost's own GAE (per-token costs +beta * KL_t, the
        episode cost on the last token) from the cost critic, and the actor's advantage
        (A_r - lambda * A_c) / (1 + lambda). Returns (advantages (B, R), returns (B, R, 2)). The caller whitens the
        advantages (safe-rlhf does not: the 1 / (1 + lambda) then only sets the scale, which whitening also does;
        lambda's relative weight stays)."""
        args = self.args
        reward_adv, reward_ret = ppo_core.compute_gae(rewards, values[..., 0], maskf, args.gamma, args.lam)
        cost_rewards = ppo_core.token_costs(costs, kl, lengths, maskf, self.kl_ctl.value, whiten=args.whiten_rewards)
        cost_adv, cost_ret = ppo_core.compute_gae(cost_rewards, values[..., 1], maskf, args.gamma, args.lam)
        advantages = ppo_core.lagrangian_advantages(reward_adv, cost_adv, self.multiplier.value)
        return advantages, torch.stack([reward_ret, cost_ret], dim=-1)

    def lagrangian_metrics(self, costs: dict, values, returns, maskf, cost_value_losses: list) -> dict:
        """Step 7: `objective/cost`, `lagrangian/*`, the cost critic's explained variance and loss."""
        mean = self.mean_over_processes
        metrics = {
            "objective/cost": mean(costs["raw"]),
            "objective/clipped_cost": mean(costs["clipped"]),
            "lagrangian/lambda": self.multiplier.value,
            "lagrangian/saturated": int(self.multiplier.saturated),
            "lagrangian/J_c": costs["J_c"],
            "val/cost_explained_variance": mean(ppo_core.explained_variance(values[..., 1], returns[..., 1], maskf)),
        }
        if cost_value_losses:
            metrics["loss/cost_value_avg"] = mean(torch.stack(cost_value_losses))
        return metrics

    # ----------------------------------------------------------------------------------------------------------------
    def ppo_epochs(self, rb: dict, sequence_lengths, context: int, stats: dict) -> bool:
        """`num_ppo_epochs` passes over the rollout batch `rb` in shuffled mini-batches, one optimizer step each over
        accumulated micro-batches; appends each micro-batch's statistics to `stats`.

        Returns False, with the current mini-batch's gradients dropped, as soon as a loss is non-finite on any
        process: the decision is taken by all processes together, so they leave at the same micro-batch and no one
        waits in a gradient all-reduce that another skipped.
        """
        args, acc = self.args, self.accelerator
        local_bs, mini, micro = args.local_batch_size, args.local_mini_batch_size, args.per_device_train_batch_size
        for epoch in range(args.num_ppo_epochs):
            order = torch.randperm(local_bs, device=acc.device)
            for mb_start in range(0, local_bs, mini):
                mb = order[mb_start : mb_start + mini]
                if self.ptx_dataset is not None:  # PPO-ptx: the supervised micro-batch first, gradients kept locally
                    step_index = (self.update * args.num_ppo_epochs + epoch) * args.num_mini_batches + mb_start // mini
                    with acc.no_sync(self.model):
                        ptx_loss = self.ptx_loss(step_index)
                        if not self.all_finite(ptx_loss):
                            self.optimizer.zero_grad()
                            return False
                        acc.backward(args.ptx_coef * ptx_loss * self.micro_per_step)
                    stats["ptx_loss"].append(ptx_loss.detach().float())
                # Rows of similar length share a micro-batch, so each forward pass has little padding to cut. The loss
                # is a token sum over the whole mini-batch: the grouping does not change the update.
                mb = mb[torch.argsort(sequence_lengths[mb], descending=True, stable=True)]
                # Token-mean over the whole mini-batch (all processes): micro-batches are weighted by their tokens.
                mb_tokens = acc.reduce(rb["mask"][mb].sum(), reduction="sum")
                for mc_start in range(0, mini, micro):
                    last = mc_start + micro >= mini
                    with nullcontext() if last else acc.no_sync(self.model):
                        loss, tokens, micro_stats = self.micro_batch_loss(rb, mb[mc_start : mc_start + micro], context)
                        if not self.all_finite(loss):
                            self.optimizer.zero_grad()
                            return False
                        acc.backward(loss * tokens * acc.num_processes / mb_tokens * self.micro_per_step)
                    for key, value in micro_stats.items():
                        stats[key].append(value.detach().float())
                if args.max_grad_norm and args.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()
        return True

    def ptx_rows(self, step_index: int) -> list[int]:
        """This process's supervised rows for PPO optimizer step `step_index` (counted from the start of training):
        a function of (seed, step_index), so resuming needs no state. Each pass over the rows is a new permutation;
        the processes take disjoint slices of it."""
        args, acc = self.args, self.accelerator
        micro, n = args.per_device_train_batch_size, len(self.ptx_dataset)
        per_step = micro * acc.num_processes
        steps_per_pass = max(1, n // per_step)
        epoch, index = divmod(step_index, steps_per_pass)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + 7919 * (epoch + 1)))
        start = index * per_step + acc.process_index * micro
        return [int(order[(start + k) % n]) for k in range(micro)]

    def ptx_loss(self, step_index: int) -> torch.Tensor:
        """PPO-ptx (InstructGPT): the token-mean negative log-likelihood of a micro-batch of supervised rows under the
        policy (at temperature 1), the gradient of `ptx_coef` times it added to the optimizer step it belongs to.

        Rows are left-padded so that every row's labelled tokens (its answer) lie in the last W columns; the forward
        pass computes logits for those only, and with `trainable_layers` the frozen bottom layers run without grad.
        """
        args, acc = self.args, self.accelerator
        rows_index = self.ptx_rows(step_index)
        rows = self.ptx_dataset[rows_index]
        ids = [row[-args.ptx_max_length :] for row in rows["input_ids"]]
        labels = [row[-args.ptx_max_length :] for row in rows["labels"]]
        padded = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")  # left, as `batch`
        input_ids, attention_mask = padded["input_ids"].to(acc.device), padded["attention_mask"].to(acc.device)
        width = input_ids.shape[1]
        targets = torch.tensor([[-100] * (width - len(r)) + r for r in labels], device=acc.device)
        position_ids = rollout.position_ids_from(attention_mask)
        labelled = targets != -100
        first = int(labelled.float().argmax(1).min())  # earliest labelled column over the rows
        answer_width = width - max(first, 1)
        unwrapped = acc.unwrap_model(self.model)
        hidden = None
        if unwrapped.split is not None:
            hidden = self.ptx_bottom(unwrapped.split, rows_index, input_ids, attention_mask, position_ids)
        # The critic only under DDP or DeepSpeed, where every parameter must take part in the backward pass.
        alone = acc.distributed_type == DistributedType.NO
        logits, values = self.model(
            input_ids, attention_mask, position_ids, answer_width, hidden, with_values=not alone
        )
        logprobs = rollout.response_logprobs(logits, input_ids[:, -answer_width:], 1.0, vocab_size=self.vocab_size)
        mask = labelled[:, -answer_width:].float()
        loss = -(logprobs * mask).sum() / mask.sum().clamp(min=1)
        return loss if values is None else loss + 0.0 * values.float().sum()  # the critic joins with weight 0

    @torch.no_grad()
    def ptx_bottom(self, split, rows: list[int], input_ids, attention_mask, position_ids) -> torch.Tensor:
        """The frozen bottom layers' output (B, T, d) on a left-padded ptx micro-batch, each row's computed once per
        run: the bottom never changes (`prefix_cache.DecoderSplit` checks it), and the rows come back pass after pass
        (24 updates of the demo draw 768 rows from 357). A row's real positions do not depend on its batch's padding
        (equal up to float rounding); pad positions hold zeros, which the attention mask hides. Rows stop being kept
        once the cache holds `ptx_cache_mb`."""
        states = {k: self.ptx_cache[row] for k, row in enumerate(rows) if row in self.ptx_cache}
        missing = [k for k in range(len(rows)) if k not in states]
        if missing:
            fresh = split.bottom(input_ids[missing], attention_mask[missing], position_ids[missing])
            for k, state in zip(missing, fresh):
                states[k] = state[-int(attention_mask[k].sum()) :]
                if rows[k] not in self.ptx_cache and self.ptx_cache_bytes + states[k].nbytes <= self.ptx_cache_limit:
                    self.ptx_cache[rows[k]] = states[k].clone()
                    self.ptx_cache_bytes += states[k].nbytes
        width, first = input_ids.shape[1], states[0]
        hidden = first.new_zeros(len(rows), width, first.shape[-1])
        for k, state in states.items():
            hidden[k, width - state.shape[0] :] = state
        return hidden

    def mean_over_processes(self, x: torch.Tensor) -> float:
        """The mean of `x` on this process, averaged over the processes (a metric)."""
        return self.accelerator.reduce(x.float().mean(), reduction="mean").item()

    def all_finite(self, *values) -> bool:
        """Whether every value is finite on every process. One decision for all ranks: a rank that skipped an update
        alone would leave the others waiting forever in a collective (an all-reduce, DDP's gradient sync)."""
        return not self.on_any_rank(not rollout.is_finite(*values))

    def on_any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds on any process (one scalar all-reduce; no collective on a single process)."""
        if self.accelerator.num_processes == 1:
            return flag
        total = self.accelerator.reduce(torch.tensor(float(flag), device=self.accelerator.device), reduction="sum")
        return bool(total > 0)

    def count_nonfinite(self, finite: bool) -> None:
        """Skipped (non-finite) updates in a row; the run stops with a clear error after `max_nonfinite_updates`."""
        self.nonfinite_streak = 0 if finite else self.nonfinite_streak + 1
        if self.nonfinite_streak >= self.args.max_nonfinite_updates:
            saturated = self.multiplier is not None and self.multiplier.saturated
            raise SafetyRLHFError(
                f"{self.nonfinite_streak} consecutive updates had a non-finite reward or loss (last at update "
                f"{self.update + 1}); "
                + (f"{self.saturation_note()}; " if saturated else "")
                + "check the reward model's outputs, lower learning_rate, or raise max_nonfinite_updates"
            )

    def micro_batch_loss(self, rb: dict, idx, context: int):
        """PPO loss of the rows `idx` of the rollout batch `rb`, its number of response tokens, and its statistics.

        The forward pass runs on this micro-batch's own columns: prompt padding that every row has (left) and response
        columns after its longest response are cut, which changes no valid token's logits or values.
        """
        args = self.args
        start, width = rollout.micro_batch_columns(rb["query_mask"][idx], rb["lengths"][idx])
        cols = slice(start, context + width)
        hidden = rb["hidden"][idx, cols] if rb["hidden"] is not None else None
        logits, vpred = self.model(
            rb["query_responses"][idx, cols], rb["attention_mask"][idx, cols], rb["position_ids"][idx, cols], width,
            hidden,
        )  # fmt: skip
        new_logprobs, entropy = rollout.response_logprobs(
            logits, rb["responses"][idx, :width], args.temperature, with_entropy=True, entropy_grad=args.ent_coef != 0,
            vocab_size=self.vocab_size,
        )  # fmt: skip
        vpred = vpred.float()
        m = rb["mask"][idx, :width]
        pg_loss, pg_stats = ppo_core.policy_loss(
            new_logprobs, rb["logprobs"][idx, :width], rb["advantages"][idx, :width], m, args.cliprange
        )
        old_values, returns = rb["values"][idx, :width], rb["returns"][idx, :width]
        cost_stats = {}
        if vpred.dim() == 3:  # ppo_lag: the reward critic's values [..., 0], the cost critic's [..., 1]
            vf_loss, vf_stats = ppo_core.value_loss(
                vpred[..., 0], old_values[..., 0], returns[..., 0], m, args.cliprange_value
            )
            cost_vf_loss, _ = ppo_core.value_loss(
                vpred[..., 1], old_values[..., 1], returns[..., 1], m, args.cliprange_value
            )
            cost_stats["cost_vf_loss"] = cost_vf_loss
            vf_total = vf_loss + cost_vf_loss
        else:
            vf_loss, vf_stats = ppo_core.value_loss(vpred, old_values, returns, m, args.cliprange_value)
            vf_total = vf_loss
        entropy_mean = ppo_core.masked_mean(entropy, m)
        loss = pg_loss + args.vf_coef * vf_total - args.ent_coef * entropy_mean
        stats = {
            **cost_stats,
            "pg_loss": pg_loss,
            "vf_loss": vf_loss,
            "pg_clipfrac": pg_stats["clipfrac"],
            "vf_clipfrac": vf_stats["clipfrac"],
            "approxkl": pg_stats["approxkl"],
            "entropy": entropy_mean,
            "ratio": pg_stats["ratio"],
            "ratio_var": pg_stats["ratio_var"],
        }
        return loss, m.sum(), stats

    def refusals(self, labels, completions) -> tuple:
        """(refused, harmful) as 0/1 tensors on the device by the phrase-list detector; (None, None) without labels."""
        if not labels:
            return None, None
        from reward.refusal import classify_refusal

        device = self.accelerator.device
        refused = torch.tensor([classify_refusal(c) != "compliance" for c in completions], dtype=torch.float32)
        harmful = torch.tensor([label == "harmful" for label in labels], dtype=torch.float32)
        return refused.to(device), harmful.to(device)

    def safety_metrics(self, refused, harmful) -> dict:
        """Refusal rates of this rollout (sampled at the training temperature) by the phrase-list detector."""
        if refused is None:
            return {}
        counts = torch.stack(
            [(refused * harmful).sum(), harmful.sum(), ((1 - refused) * (1 - harmful)).sum(), (1 - harmful).sum()]
        ).to(self.accelerator.device)
        counts = self.accelerator.reduce(counts, reduction="sum").tolist()
        out = {}
        if counts[1]:
            out["safety/harmful_refusal_rate"] = counts[0] / counts[1]
        if counts[3]:
            out["safety/benign_compliance_rate"] = counts[2] / counts[3]
        return out

    # ----------------------------------------------------------------------------------------------------------------
    def log(self, metrics: dict, samples: list) -> None:
        acc = self.accelerator
        acc.log(metrics, step=self.update)
        if not acc.is_main_process:
            return
        with open(Path(self.args.output_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        if samples and self.args.logging_steps and self.update % int(self.args.logging_steps) == 0:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=f"update {self.update}: sample completions", show_lines=True)
            for column in ("prompt", "completion", "score"):
                table.add_column(column)
            for prompt, completion, value in samples:
                table.add_row(prompt[:200], completion[:300], f"{value:.3f}")
            Console(stderr=True).print(table)

    # ----------------------------------------------------------------------------------------------------------------
    # Checkpoints: written to checkpoint-N.tmp, then renamed, so a crash mid-save leaves the previous one intact.
    def save_checkpoint(self) -> Path:
        acc, args = self.accelerator, self.args
        final = Path(args.output_dir) / f"checkpoint-{self.update}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        try:
            torch.save(self.rng_state(), tmp / f"rng_state_{acc.process_index}.pth")
            if self.multiplier is not None:  # each process's own recent costs (J_c averages the processes' means)
                window = torch.tensor(list(self.multiplier.window), dtype=torch.float64)
                torch.save(window, tmp / COST_WINDOW_FILE.format(rank=acc.process_index))
            if acc.is_main_process:
                self.save_model(tmp)
                torch.save(self.training_state(), tmp / STATE_FILE)  # last: a folder without it is never resumed
        except OSError as err:  # a full disk, a quota, a lost mount: the checkpoints already written stay as they are
            shutil.rmtree(tmp, ignore_errors=True)
            kept = [p.name for p in sorted_checkpoints(args.output_dir)]
            raise SafetyRLHFError(
                f"could not write {final.name} ({err.strerror or err}); "
                + (f"{', '.join(kept)} intact" if kept else "no earlier checkpoint")
                + ": free disk space, then continue with --resume_from_checkpoint latest"
            ) from err
        if acc.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)  # atomic: `checkpoint-N` exists only complete
            self.prune_checkpoints()
        acc.wait_for_everyone()
        return final

    @staticmethod
    def rng_state() -> dict:
        """This process's random generators (one file per process in a checkpoint)."""
        return {
            "python": random.getstate(),
            # as plain lists, so that the file loads with weights_only (torch's loader that unpickles no object)
            "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    @staticmethod
    def apply_rng_state(rng: dict) -> None:
        random.setstate(rng["python"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def training_state(self) -> dict:
        """The trainable tensors and every state an update changes: a checkpoint's `STATE_FILE`. Its tensors are the
        live ones (the optimizer's state included): save or copy it before the next update."""
        unwrapped, trainable = self.accelerator.unwrap_model(self.model), set(self.trainable)
        return {
            "trainable": {n: p.detach().cpu() for n, p in unwrapped.named_parameters() if n in trainable},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            **({"lagrangian": self.multiplier.state_dict()} if self.multiplier is not None else {}),
            "update": self.update,
            "nonfinite_streak": self.nonfinite_streak,
        }

    def apply_training_state(self, state: dict) -> None:
        """`training_state`'s inverse, but for the Lagrange multiplier (a checkpoint keeps its window per process:
        `load_lagrangian`)."""
        with torch.no_grad():
            params = dict(self.accelerator.unwrap_model(self.model).named_parameters())
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.update = state["update"]
        self.nonfinite_streak = state["nonfinite_streak"]

    def snapshot(self) -> dict | None:
        """A CPU copy of the state before an update (`training_state` and the random generators), which a stop in
        the middle of the update puts back (`restore`). None where no update is abandoned (several processes) or
        where checkpoint-N already holds that state. Costs one copy of the trainable tensors and their optimizer
        state per update: 180 MB for the SmolLM2 recipe (0.02 s), about 0.6 GB for the 7B QLoRA one."""
        if not self.abandons_updates:
            return None
        if (Path(self.args.output_dir) / f"checkpoint-{self.update}" / STATE_FILE).is_file():
            return None
        return cpu_copy({"state": self.training_state(), "rng": self.rng_state()})

    def restore(self, snapshot: dict) -> None:
        """Put back the state `snapshot` copied: parameters, optimizer, schedule, KL and Lagrange controllers, the
        random generators; the abandoned update's gradients are dropped."""
        self.apply_training_state(snapshot["state"])
        if self.multiplier is not None:
            self.multiplier.load_state_dict(snapshot["state"]["lagrangian"])
        self.apply_rng_state(snapshot["rng"])
        self.optimizer.zero_grad(set_to_none=True)

    def prune_checkpoints(self) -> None:
        limit = self.args.save_total_limit
        if limit:
            for old in sorted_checkpoints(self.args.output_dir)[:-limit]:
                # Renamed first, so a kill in the middle of the deletion leaves no half checkpoint under its name.
                doomed = old.with_name(old.name + ".deleting")
                os.replace(old, doomed)
                shutil.rmtree(doomed)

    def load_checkpoint(self, path: Path) -> None:
        acc = self.accelerator
        try:
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
            earlier = [
                p for p in sorted_checkpoints(path.parent) if p.name != path.name and (p / STATE_FILE).is_file()
            ]
            hint = (
                f"--resume_from_checkpoint {earlier[-1]}" if earlier else "a new run without --resume_from_checkpoint"
            )
            raise SafetyRLHFError(
                f"checkpoint {path} cannot be read ({' '.join(str(err).split())[:160]}); it is damaged: resume from "
                f"an earlier one with {hint}"
            ) from err
        missing = set(self.trainable) - set(state["trainable"])
        if missing:
            raise SafetyRLHFError(
                f"checkpoint {path} does not match this model (missing {sorted(missing)[:3]}...); resume with the "
                "same model and LoRA settings"
            )
        groups, ours = len(state["optimizer"]["param_groups"]), len(self.optimizer.param_groups)
        if groups != ours:
            # Checkpoints written before value_learning_rate hold one group for policy and critic together.
            raise SafetyRLHFError(
                f"checkpoint {path} holds {groups} optimizer parameter group(s), this version has {ours} (policy, "
                "critic), so it cannot resume; start a new run from its weights instead (policy in the folder, critic "
                f"in value/; without LoRA: --model_name_or_path {path} --value_model_path {path / 'value'})"
            )
        self.apply_training_state(state)
        if self.multiplier is not None:
            self.load_lagrangian(path, state)
        rng_file = path / f"rng_state_{acc.process_index}.pth"
        if rng_file.is_file():
            self.apply_rng_state(torch.load(rng_file, weights_only=True))
        metrics = Path(self.args.output_dir) / METRICS_FILE
        if acc.is_main_process and metrics.is_file():
            # Updates after the checkpoint are redone: their old lines move aside rather than being deleted.
            lines = metrics.read_text(encoding="utf-8").splitlines()
            keep = [ln for ln in lines if json.loads(ln)["step"] <= self.update]
            later = [ln for ln in lines if json.loads(ln)["step"] > self.update]
            if later:
                with open(metrics.with_name("metrics.superseded.jsonl"), "a", encoding="utf-8") as f:
                    f.write("\n".join(later) + "\n")
                metrics.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def load_lagrangian(self, path: Path, state: dict) -> None:
        """lambda (its log and SGD state) from the state file, and this process's cost window from its own file (the
        first process's when the run resumes on more processes than it was saved from)."""
        if "lagrangian" not in state:
            raise SafetyRLHFError(
                f"checkpoint {path} was written by algorithm='ppo' and holds no Lagrange multiplier; resume it with "
                "algorithm ppo, or start the ppo_lag run from its weights"
            )
        mine = path / COST_WINDOW_FILE.format(rank=self.accelerator.process_index)
        window = mine if mine.is_file() else path / COST_WINDOW_FILE.format(rank=0)
        lagrangian = dict(state["lagrangian"])
        if window.is_file():
            lagrangian["window"] = torch.load(window, weights_only=True)
        self.multiplier.load_state_dict(lagrangian)

    def save_model(self, output_dir) -> None:
        """The policy (a PEFT adapter under LoRA, else the full model) with its tokenizer, and the critic in `value/`
        (under ppo_lag the cost critic in `cost_value/`)."""
        acc = self.accelerator
        if not acc.is_main_process:
            return
        unwrapped = acc.unwrap_model(self.model)
        unwrapped.policy.save_pretrained(output_dir)
        self.tokenizer.save_pretrained(output_dir)
        critics.save_critics(unwrapped.value, output_dir)
