"""Arguments shared by every verb, and the two output-folder rules every run follows.

Config flows in one hop: YAML (`--config`) and command-line overrides -> these dataclasses (parsed by TRL's
`TrlParser`, unknown keys fail) -> `main(script_args, train_args, model_args)` of the verb.
"""

import argparse
import dataclasses
import difflib
import json
import math
import os
import shutil
import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from transformers import TrainingArguments
from trl import ModelConfig

from . import SafetyRLHFError
from .precision import DTYPE_CHOICES

CONFIG_FILE = "config.yaml"


@dataclass
class ModelArguments(ModelConfig):
    """TRL's `ModelConfig` with one more `dtype`: `native`, bf16 where the run's device computes it natively (a CPU
    with AVX512-BF16 or AMX, a GPU from Ampere on) and fp32 elsewhere (`safety_rlhf.precision`)."""

    dtype: str | None = field(
        default="float32",
        metadata={
            "help": "Dtype to load the model in: native (bf16 where the device computes it natively, else fp32), "
            "auto (the checkpoint's), bfloat16, float16 or float32.",
            "choices": list(DTYPE_CHOICES),
        },
    )


@dataclass
class ScriptArguments:
    """Data and run arguments shared by every verb. Names follow `trl.ScriptArguments` where the concept is the same.

    Parameters:
        dataset_name (`str`, *optional*, defaults to `"bundled"`):
            `bundled` (our offline files), a local file (`.jsonl`, `.json`, `.csv`, `.parquet`), or a Hub dataset id.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Hub configuration (`name=` of `load_dataset`), or `data_dir` for Anthropic/hh-rlhf (`harmless-base`).
        dataset_mapping (`str` or `None`, *optional*, defaults to `None`):
            Column mapping of a Hub set (see `safety_rlhf.data.MAPPINGS`); `None` infers it from `dataset_name`.
        dataset_train_split (`str`, *optional*, defaults to `"train"`):
            Training split (for bundled data and local files: the value of the `split` column).
        dataset_test_split (`str`, *optional*, defaults to `"eval"`):
            Evaluation split.
        max_prompt_length (`int`, *optional*, defaults to `128`):
            Prompts longer than this many tokens (chat template applied) are dropped and counted.
        max_samples (`int` or `None`, *optional*, defaults to `None`):
            Keep only the first rows of each split (quick runs).
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Allow writing into an `output_dir` that already holds a run; its `checkpoint-*` folders and metrics are
            moved into `previous-run-<time>/`, so a later `--resume_from_checkpoint latest` cannot pick them.
        allow_pickle_weights (`bool`, *optional*, defaults to `False`):
            Also load weights stored as pickle files (`pytorch_model.bin`), which can run code when loaded; by
            default only safetensors files load.
    """

    dataset_name: str = field(default="bundled", metadata={"help": "`bundled`, a local file, or a Hub dataset id."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub configuration or hh-rlhf data_dir."})
    dataset_mapping: str | None = field(default=None, metadata={"help": "Column mapping; None infers it."})
    dataset_train_split: str = field(default="train", metadata={"help": "Training split."})
    dataset_test_split: str = field(default="eval", metadata={"help": "Evaluation split."})
    max_prompt_length: int = field(default=128, metadata={"help": "Longer prompts are dropped and counted."})
    max_samples: int | None = field(default=None, metadata={"help": "Keep the first N rows of each split."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Write into an output_dir holding a run."})
    allow_pickle_weights: bool = field(
        default=False, metadata={"help": "Also load pickle weights (pytorch_model.bin), which can run code."}
    )

    def __post_init__(self):
        check_fields(self, at_least_1=("max_prompt_length", "max_samples"))


# ---------------------------------------------------------------------------------------------------------------------
# Checks every configuration runs in `__post_init__`, so a bad value fails before anything is loaded or written.


def check_fields(args, at_least_1=(), at_least_0=(), positive=(), probability=()) -> None:
    """Fail naming the first field out of its range; `None` passes (it means "not set"), and every float must be
    finite. `probability` is (0, 1]."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SafetyRLHFError(f"{name}={value} must be a finite number")
    rules = [
        (at_least_1, lambda v: v >= 1, "must be at least 1"),
        (at_least_0, lambda v: v >= 0, "must be 0 or more"),
        (positive, lambda v: v > 0, "must be positive"),
        (probability, lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ]
    for names, ok, rule in rules:
        for name in names:
            value = getattr(args, name)
            if value is not None and not ok(value):
                raise SafetyRLHFError(f"{name}={value} {rule}")


def check_training_fields(args: TrainingArguments) -> None:
    """The `TrainingArguments` fields every training verb uses; run before `TrainingArguments.__post_init__`, whose
    own checks would fail later, inside the trainer, or not at all."""
    check_fields(
        args,
        at_least_1=("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"),
        at_least_0=("learning_rate", "weight_decay", "warmup_steps", "max_grad_norm", "num_train_epochs"),
    )
    if args.max_steps == 0 or args.max_steps < -1:
        raise SafetyRLHFError(f"max_steps={args.max_steps} must be at least 1, or -1 for num_train_epochs")


def read_recipe(argv: list[str]) -> tuple[str | None, dict]:
    """The recipe file `--config` names and its mapping (`env` left out); `{}` where there is none or it holds no
    mapping (the parser reports that). A YAML syntax error fails naming the line and column."""
    config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    if not config or not Path(config).is_file():
        return config, {}
    try:
        recipe = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise SafetyRLHFError(f"{config} is not valid YAML ({problem}{where}); fix the file") from None
    if not isinstance(recipe, dict):
        return config, {}
    return config, {key: value for key, value in recipe.items() if key != "env"}


def command_line_values(argv: list[str]) -> dict[str, list[str]]:
    """`--key value ...` and `--key=value` of the command line as key -> the strings that follow it (none for a
    bare flag); `--config` left out."""
    values, key = {}, None
    for item in argv:
        if item.startswith("--"):
            key, _, value = item[2:].partition("=")
            key = key.replace("-", "_")
            values[key] = [value] if "=" in item else []
        elif key is not None:
            values[key].append(item)
    values.pop("config", None)
    return values


def unknown_key_error(types, argv: list[str]) -> str | None:
    """One line naming the first unknown key of the recipe (`--config`) or the command line, with the nearest known
    one (`difflib`), or None. Run before parsing, so a misspelt key is reported before any value check."""
    known = {f.name for t in types for f in dataclasses.fields(t) if f.init}
    config, recipe = read_recipe(argv)
    sources = [(f" in {config}", list(recipe))] if recipe else []
    options = list(command_line_values(argv))
    sources.append((" on the command line", [key for key in options if key not in ("config", "help")]))
    for where, keys in sources:
        for key in keys:
            if key not in known and not (key.startswith("no_") and key[3:] in known):
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "`--help` lists the keys"
                return f"unknown key {key!r}{where}; {hint}"
    return None


def _expected(action, hint, value) -> str:
    """What the field of `action` accepts, in words (`hint`: the field's type), for the rejected `value`."""
    if action.choices:
        choices = [str(c) for c in action.choices]
        if len(choices) <= 6:
            return f"one of {'/'.join(choices)}"
        close = difflib.get_close_matches(str(value), choices, n=1)
        return f"a valid choice ({f'did you mean {close[0]!r}?' if close else '`--help` lists them'})"
    while typing.get_args(hint):  # int | None -> int, list[str] -> str
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return {int: "an int", float: "a float", bool: "true or false"}.get(
        hint, f"a valid {getattr(hint, '__name__', '')}"
    )


def bad_value_error(parser, types, argv: list[str]) -> str | None:
    """One line naming every value of the recipe (`--config`, with the file's name) and of the command line that its
    field's type does not accept, with the type expected, or None. Each value goes through the parser's own
    conversion (`action.type`, `choices`), before parsing, which would report only the first one without the file."""
    actions = {action.dest: action for action in parser._actions}
    hints = {name: hint for t in types for name, hint in typing.get_type_hints(t).items()}
    config, recipe = read_recipe(argv)
    given = command_line_values(argv)
    sources = [(config, {key: [value] for key, value in recipe.items() if key not in given}), ("command line", given)]
    parts = []
    for where, values in sources:
        bad = []
        for key, items in values.items():
            action = actions.get(key)
            if action is None or action.type is None and not action.choices:
                continue
            if action.nargs in ("+", "*") and len(items) == 1 and isinstance(items[0], list):
                items = items[0]
            for item in items:
                if item is None or action.nargs is None and item is not items[0]:
                    continue
                try:
                    value = action.type(str(item)) if action.type else str(item)
                    if action.choices and value not in action.choices:
                        raise ValueError
                except (ValueError, TypeError, argparse.ArgumentTypeError):
                    bad.append(f"{key}={item!r} is not {_expected(action, hints.get(key), item)}")
                    break
        if bad:
            parts.append(f"{where}: {', '.join(bad)}")
    if not parts:
        return None
    count = sum(part.count(" is not ") for part in parts)
    return f"{'; '.join(parts)}; fix the value{'s' if count > 1 else ''}"


def check_writable(path: str | os.PathLike, what: str = "output_dir", folder: bool = True) -> Path:
    """Refuse, before anything loads, an output path the run could not create or write: a file where a folder is
    needed (`path` itself when `folder`, or any folder above it), or a first existing folder on a read-only file
    system (`os.statvfs`'s `ST_RDONLY`, which binds root too) or, for other users, one without write permission.
    Nothing is created here."""
    out = Path(path).expanduser()
    if out.is_dir() and not folder:
        raise SafetyRLHFError(f"{what} {out} is a folder; pass a file path")
    if out.exists() and not out.is_dir() and folder:
        raise SafetyRLHFError(f"{what} {out} is a file; choose a folder")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists() or p == Path(p.anchor))
    if existing != out and not existing.is_dir():
        raise SafetyRLHFError(f"{what} {out} is under the file {existing}, not a folder; choose another {what}")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise SafetyRLHFError(
            f"{what} {out} cannot be written ({existing} is on a read-only file system); choose a writable folder"
        )
    if not os.access(existing, os.W_OK):
        raise SafetyRLHFError(
            f"{what} {out} cannot be written ({existing} is not writable by this user); choose a writable folder"
        )
    return out


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool, resume: bool = False) -> Path:
    """Refuse to write into a folder that holds a previous run unless asked to, or one that cannot be written
    (`check_writable`); nothing is written here."""
    out = Path(output_dir)
    check_writable(out)
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise SafetyRLHFError(
            f"output_dir {out} already holds a previous run; pass --overwrite_output_dir true, "
            "--resume_from_checkpoint latest, or choose another --output_dir"
        )
    return out


PREVIOUS_RUN = ("checkpoint-*", "metrics*.jsonl")


def move_previous_checkpoints(output_dir: str | os.PathLike) -> Path | None:
    """Under `--overwrite_output_dir`, move the previous run's `checkpoint-*` folders and metrics into
    `previous-run-<time>/` (nothing is deleted), so that `--resume_from_checkpoint latest` cannot pick them and a
    resumed run's metrics do not mix; call it once every check passed."""
    out = Path(output_dir)
    old = sorted(p for pattern in PREVIOUS_RUN for p in out.glob(pattern)) if out.is_dir() else []
    if not old:
        return None
    aside = out / f"previous-run-{datetime.now():%Y%m%d-%H%M%S}"
    aside.mkdir(exist_ok=True)
    for path in old:
        shutil.move(str(path), aside / path.name)
    print(f"moved the previous run's {', '.join(p.name for p in old)} into {aside}")
    return aside


def to_dict(args) -> dict:
    """A dataclass as plain YAML-safe data (TrainingArguments' own `to_dict` hides tokens)."""
    data = args.to_dict() if hasattr(args, "to_dict") else dataclasses.asdict(args)
    if "stop_token" in data:  # `to_dict` masks every key ending in `_token`; this one is no secret
        data["stop_token"] = args.stop_token
    return json.loads(json.dumps(data, default=str))


def save_config(output_dir: str | os.PathLike, **sections) -> Path:
    """Write the resolved configuration (every field, defaults included) to `output_dir/config.yaml`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_FILE
    data = {name: to_dict(args) for name, args in sections.items() if args is not None}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def start_cpu_process_group(args: TrainingArguments) -> None:
    """Start a multi-process CPU run's process group with `ddp_timeout`, so a lost peer ends the run with an error.

    `TrainingArguments.__post_init__` starts the process group, and on the CPU path (gloo) it passes no timeout (its
    GPU paths pass `ddp_timeout`): a rank whose peer stalls would then wait 30 minutes. Starting it first, with the
    timeout, makes every later `PartialState` reuse it.
    """
    import torch.distributed as dist
    from accelerate import PartialState

    cpu = args.use_cpu or os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    if cpu and int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        PartialState(cpu=True, backend=args.ddp_backend, timeout=timedelta(seconds=args.ddp_timeout))


@dataclass
class SafetyPPOConfig(TrainingArguments):
    r"""Configuration of [`safety_rlhf.trainer.SafetyPPOTrainer`].

    Names and defaults follow TRL 1.12's `PPOConfig` where the concept is the same. `TrainingArguments` fields keep
    their meaning (`output_dir`, `learning_rate`, `seed`, `logging_steps`, `save_steps`, `save_total_limit`,
    `report_to`, `bf16`, `gradient_checkpointing`, `max_grad_norm`, `push_to_hub`, `hub_model_id`, `max_steps`).

    Batch sizes, per update (one rollout + `num_ppo_epochs` passes over it):
        batch_size = per_device_train_batch_size * gradient_accumulation_steps * world_size   (prompts per update)
        mini_batch_size = batch_size / num_mini_batches                                      (one optimizer step)
        micro-batches per optimizer step = gradient_accumulation_steps / num_mini_batches   (per process)

    Parameters that control the rollout:
        response_length (`int`, *optional*, defaults to `53`): maximum number of generated tokens.
        temperature (`float`, *optional*, defaults to `0.7`): sampling temperature; every log-prob is taken from
            logits divided by it, so the ratio compares the distributions actually sampled from.
        top_p (`float`, *optional*, defaults to `1.0`): nucleus sampling.
        stop_token (`str` or `None`, *optional*, defaults to `"eos"`): `"eos"` stops at the tokenizer's EOS;
            tokens after it become padding. `None` lets every response run to `response_length`.
        stop_token_id (`int` or `None`, *optional*, defaults to `None`): an explicit stop id instead.
        missing_eos_penalty (`float` or `None`, *optional*, defaults to `1.0`): subtracted from the score of a
            response that never emits its stop token (the EOS trick).
        logprobs_from_generation (`bool` or `None`, *optional*, defaults to `None`): `True` reads the rollout
            ("old") log-probs while `generate` samples (one (B, V) step in memory at a time), saving a forward pass of
            the policy; `False` recomputes them with a full forward pass; `None` reads them only where the policy
            computes in fp32 (no `bf16`/`fp16`, a float32 model). The KV-cached decode and the full forward are equal
            in fp32 (within 1e-6) and differ in bf16: up to 0.032 per token on a tiny bf16 model on the CPU, where
            reading them gave `objective/kl` -0.039 at the first update (the policy still equals the reference; 8e-5
            since the rollout's log-softmax runs in fp32) and recomputing gave 0 and a first PPO ratio of 1; on an H200 the 7B QLoRA recipe (bf16 compute), reading
            them, showed `objective/kl` 1.27 per sequence and a clip fraction of 0.039 there (benchmarks/README.md,
            GPU).
        local_rollout_forward_batch_size (`int`, *optional*, defaults to `64`): chunk size of generation and of
            the no-grad forward passes.
        total_episodes (`int` or `None`, *optional*, defaults to `None`): prompts to train on; `None` means
            `num_train_epochs * len(train_dataset)`. `max_steps > 0` (updates) takes precedence.

    Parameters that control the reward:
        reward_model_path (`str` or `None`, *optional*, defaults to `None`): a safety reward model folder or Hub id
            (any one-label sequence-classification model, with its own tokenizer).
        reward_clip (`float` or `None`, *optional*, defaults to `None`): clip scores to [-reward_clip, reward_clip].
        score_anchor (`str` or `None`, *optional*, defaults to `None`): a refusal such as "I can't help with that.";
            when set, each completion's score is the reward model's score minus its score for this refusal of the
            same prompt: the Bradley-Terry log-odds that the completion is preferred to refusing. A pairwise reward
            model leaves each prompt's offset free (only differences within a prompt are trained), so raw scores of
            a harmful and a benign prompt are not on one scale; anchored, a refusal scores 0 on every prompt, an
            answer scores above 0 where answering is preferred and below 0 where it is not. With `reward_clip`,
            both mistakes (answering a harmful prompt, refusing a benign one) then cost at most the same.
        refusal_reward (`float`, *optional*, defaults to `0.0`): the label-aware term (rule-based reward, as in
            OpenAI's RBR) added to the score of prompts that carry a `label`: `+refusal_reward` when a harmful prompt
            is refused or a benign one answered, `-refusal_reward` otherwise, judged by the phrase-list refusal
            detector, or by `refusal_judge_path` when set. Prompts without a label get the reward model alone. 0
            turns it off.
        label_baseline (`bool`, *optional*, defaults to `False`): on labelled prompts, subtract from each score the
            mean score of its label in the batch (`ppo_core.label_baseline`), so that a right refusal of a harmful
            prompt is not "below average" beside the higher scores of benign answers while the critic is untrained.
        samples_per_prompt (`int`, *optional*, defaults to `1`): = k, responses sampled per prompt in each rollout
            batch: an update sees `batch_size / k` prompts, each k times in a row, so a prompt the policy nearly
            always refuses (or always answers) still yields the odd contrary sample. Must divide the batch of each
            process.
        prompt_baseline (`bool`, *optional*, defaults to `False`): with `samples_per_prompt` >= 2, subtract from each
            score the mean score of the other samples of its prompt (RLOO's leave-one-out baseline,
            `ppo_core.prompt_baseline`); excludes `label_baseline`, which it refines.
        refusal_judge_path (`str` or `None`, *optional*, defaults to `None`): a trained refusal judge (`safety-rlhf
            reward --objective refusal`, a `reward.SafetyRefusalJudge`) that decides the `refusal_reward` term instead
            of the phrase list, softly: `refusal_reward * (2 P(refused) - 1)` on harmful prompts, its opposite on
            benign ones. The phrase list stays the evaluation's judge: a policy paid by it learns its phrases.
        ptx_coef (`float`, *optional*, defaults to `0.0`): = gamma of InstructGPT's PPO-ptx: each optimizer step adds
            `ptx_coef` times the negative log-likelihood of a micro-batch of supervised rows (`ptx_dataset_name`, e.g.
            the warm start's refusals and the model's own benign answers) to the PPO loss, so RL cannot trade away
            what the warm start taught on prompts its rollouts rarely get right. 0 turns it off.
        ptx_dataset_name (`str` or `None`, *optional*, defaults to `None`): the supervised conversations of the
            ptx term (any `sft` dataset: `bundled_warmstart`, a Hub or local set), its `ptx_dataset_split`.
        ptx_dataset_split (`str`, *optional*, defaults to `"train"`): split of `ptx_dataset_name`.
        ptx_own_answers (`str` or `None`, *optional*, defaults to `None`): a `safety-rlhf sample` file whose benign
            answers join the ptx rows, as `sft --own_answers` does for the warm start.
        ptx_max_length (`int`, *optional*, defaults to `256`): ptx rows keep their last `ptx_max_length` tokens.
        ptx_cache_mb (`int`, *optional*, defaults to `1024`): with `trainable_layers`, the frozen bottom layers'
            output on each ptx row is kept (on the training device) after its first use, up to this many MiB, and
            the row's later draws run the top layers only; 0 keeps none.
        kl_coef (`float`, *optional*, defaults to `0.05`): = beta, weight of the per-token KL penalty in the reward.
        kl_estimator (`str`, *optional*, defaults to `"k1"`): `"k1"` (log-ratio) or `"k3"` ((r-1) - log r).
        adaptive_kl (`bool`, *optional*, defaults to `False`): adapt `kl_coef` toward `kl_target`
            (Ziegler et al. 2019) with horizon `kl_horizon`.
        kl_target (`float`, *optional*, defaults to `6.0`): target KL per sequence (nats).
        kl_horizon (`int`, *optional*, defaults to `10000`): episodes over which the coefficient adapts.
        whiten_rewards (`bool`, *optional*, defaults to `False`): whiten per-token rewards before GAE.

    Parameters that control the PPO update:
        num_ppo_epochs (`int`, *optional*, defaults to `4`): passes over each rollout batch.
        num_mini_batches (`int`, *optional*, defaults to `1`): optimizer steps per pass.
        cliprange (`float`, *optional*, defaults to `0.2`): = epsilon in the PPO paper.
        cliprange_value (`float`, *optional*, defaults to `0.2`): clip of the value prediction around its rollout
            value.
        vf_coef (`float`, *optional*, defaults to `0.1`): = c1, weight of the value loss.
        value_learning_rate (`float` or `None`, *optional*, defaults to `None`): learning rate of the value model
            (OpenRLHF's `critic_learning_rate`, verl's `critic.optim.lr`); `None` uses `learning_rate`. Under Adam
            the value loss weight barely changes the critic's step size, so a critic that must learn faster than
            the policy moves needs its own rate.
        ent_coef (`float`, *optional*, defaults to `0.001`): = c2, weight of the entropy bonus (mean per-token
            entropy of the full distribution, in nats); 0 disables it.
        gamma (`float`, *optional*, defaults to `1.0`): discount of GAE.
        lam (`float`, *optional*, defaults to `0.95`): = lambda of GAE.
        value_model_path (`str` or `None`, *optional*, defaults to `None`): the `"separate"` critic's initialisation
            (the other critics start from the policy, and a recipe's value_model_path does not stop them); it must
            use the policy's tokenizer (it reads the policy's tokens). `None` uses the policy's base model. A
            smaller model of the same family (e.g. Qwen2.5-0.5B for Qwen2.5-7B) keeps memory down.
        max_nonfinite_updates (`int`, *optional*, defaults to `3`): consecutive updates with a non-finite loss or
            reward that are skipped before the run aborts.
        sample_completions (`int`, *optional*, defaults to `4`): completions shown in the table printed every
            `logging_steps` updates (0 = none).
        trainable_layers (`int` or `None`, *optional*, defaults to `None`): = K, LoRA on the top K decoder layers
            only (PEFT `layers_to_transform`); the frozen bottom layers then run once per rollout
            (`safety_rlhf.prefix_cache`). `None` adapts every layer.
        critic (`str`, *optional*, defaults to `"separate"`): the value function (`safety_rlhf.critics`).
            `"separate"`: a backbone of its own (`value_model_path`) plus a linear head; shares nothing with the
            policy, costs a full model pass per rollout and per micro-batch. `"shared"`: a linear head on the
            policy's final hidden state, one forward for logits and values (TRL's old value-head model); the value
            loss also trains the policy's LoRA. `"prefix"` (needs `trainable_layers`): its own trainable copy of the
            policy's top `critic_layers` layers, final norm and a head, run on the cached prefix state; it never
            runs the bottom layers. Measured in benchmarks/README.md ("Critic options"), which also says why each
            recipe keeps its choice.
        critic_layers (`int` or `None`, *optional*, defaults to `None`): = K', layers of the `"prefix"` critic,
            1 <= K' <= `trainable_layers`; `None` uses `trainable_layers`.

    Parameters of PPO-Lagrangian (Safe RLHF, Dai et al. 2023; names as safe-rlhf's `ppo_lag` arguments):
        algorithm (`str`, *optional*, defaults to `"ppo"`): `"ppo"` maximises the reward. `"ppo_lag"` maximises
            the reward subject to the mean episode cost J_c <= `threshold`: a cost model scores each completion,
            a cost critic (the same `critic` option, its own parameters) gives the cost advantages A_c, and the
            actor's advantage is (A_r - lambda * A_c) / (1 + lambda), with the Lagrange multiplier lambda learned
            (`safety_rlhf.ppo_core.LagrangeMultiplier`). The KL penalty enters the reward as -beta * KL_t and the
            cost as +beta * KL_t.
        cost_model_path (`str` or `None`, *optional*, defaults to `None`): a safety cost model folder
            (`safety-rlhf reward --objective cost`, higher = more harmful) or any one-label sequence-classification
            model, with its own tokenizer; needed by `ppo_lag`.
        cost_clip (`float` or `None`, *optional*, defaults to `None`): clip episode costs to [-cost_clip,
            cost_clip]; `None` clips them at `reward_clip`. Apart from `reward_clip` so that the reward, which carries
            the benign side (answer rather than refuse) once the cost carries the harmful one, can keep more of its
            range than the cost.
        lambda_init (`float`, *optional*, defaults to `1.0`): initial lambda (> 0: it is kept as its log).
        lambda_lr (`float`, *optional*, defaults to `0.1`): SGD learning rate of log(lambda).
        lambda_max (`float` or `None`, *optional*, defaults to `None`): upper bound on lambda; `None` = no bound.
        threshold (`float`, *optional*, defaults to `0.0`): the constraint's bound on J_c. For our cost model (the
            log-odds that a response is unsafe) 0 means "on average as likely safe as not"; lower is stricter.
        lambda_update_delay_steps (`int`, *optional*, defaults to `0`): updates during which lambda stays at
            `lambda_init` (the cost critic warms up first).
        episode_cost_window_size (`int`, *optional*, defaults to `128`): J_c is the mean cost of the last this
            many episodes of each process, averaged over the processes.
    """

    # Overridden TrainingArguments defaults (TRL 1.12's, except batch 32 by default)
    learning_rate: float = field(default=3e-6, metadata={"help": "Learning rate of policy and value."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Micro-batch size per process."})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Micro-batches per process and update."})
    logging_steps: float = field(default=1, metadata={"help": "Print a sample table every N updates."})
    save_steps: float = field(default=100, metadata={"help": "Save a checkpoint every N updates."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Trackers: none, tensorboard, wandb..."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code from model repositories."})

    # Parameters that control the rollout
    response_length: int = field(default=53, metadata={"help": "Maximum number of generated tokens."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    stop_token: str | None = field(default="eos", metadata={"help": "`eos` or None."})
    stop_token_id: int | None = field(default=None, metadata={"help": "Explicit stop token id."})
    missing_eos_penalty: float | None = field(default=1.0, metadata={"help": "Score penalty without stop token."})
    logprobs_from_generation: bool | None = field(
        default=None,
        metadata={
            "help": "Read old log-probs during generation (False: recompute by a forward; None: read them only when "
            "the policy computes in fp32, where decode and forward agree; bf16 rounding makes them differ)."
        },
    )
    local_rollout_forward_batch_size: int = field(default=64, metadata={"help": "Chunk of no-grad passes."})
    total_episodes: int | None = field(default=None, metadata={"help": "Prompts to train on."})

    # Parameters that control the reward
    reward_model_path: str | None = field(default=None, metadata={"help": "Safety reward model folder or Hub id."})
    reward_clip: float | None = field(default=None, metadata={"help": "Clip scores to +-reward_clip."})
    score_anchor: str | None = field(
        default=None, metadata={"help": "Score each completion relative to this refusal of the same prompt."}
    )
    refusal_reward: float = field(default=0.0, metadata={"help": "Rule-based term on labelled prompts; 0 = off."})
    refusal_judge_path: str | None = field(
        default=None, metadata={"help": "Trained refusal judge deciding the refusal_reward term (not the phrases)."}
    )
    label_baseline: bool = field(default=False, metadata={"help": "Subtract each label's mean score in the batch."})
    samples_per_prompt: int = field(default=1, metadata={"help": "Responses sampled per prompt in a rollout batch."})
    prompt_baseline: bool = field(
        default=False, metadata={"help": "Subtract the mean score of the prompt's other samples (RLOO)."}
    )
    ptx_coef: float = field(default=0.0, metadata={"help": "Supervised (PPO-ptx) loss weight; 0 = off."})
    ptx_dataset_name: str | None = field(default=None, metadata={"help": "SFT dataset of the ptx term."})
    ptx_dataset_split: str = field(default="train", metadata={"help": "Split of ptx_dataset_name."})
    ptx_own_answers: str | None = field(
        default=None, metadata={"help": "`safety-rlhf sample` file whose benign answers join the ptx rows."}
    )
    ptx_max_length: int = field(default=256, metadata={"help": "Tokens kept per ptx row (the last ones)."})
    ptx_cache_mb: int = field(
        default=1024, metadata={"help": "MiB of the ptx rows' frozen-layer outputs kept between draws; 0 = none."}
    )
    kl_coef: float = field(default=0.05, metadata={"help": "= beta, per-token KL penalty weight."})
    kl_estimator: str = field(default="k1", metadata={"help": "`k1` or `k3`."})
    adaptive_kl: bool = field(default=False, metadata={"help": "Adaptive KL controller (Ziegler et al. 2019)."})
    kl_target: float = field(default=6.0, metadata={"help": "Target KL per sequence for adaptive_kl."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon of adaptive_kl, in episodes."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten per-token rewards."})

    # Parameters that control the PPO update
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout batch."})
    num_mini_batches: int = field(default=1, metadata={"help": "Optimizer steps per pass."})
    cliprange: float = field(default=0.2, metadata={"help": "= epsilon, policy ratio clip."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip around rollout values."})
    vf_coef: float = field(default=0.1, metadata={"help": "= c1, value loss weight."})
    value_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the value model; None = learning_rate."}
    )
    ent_coef: float = field(default=0.001, metadata={"help": "= c2, entropy bonus weight."})
    gamma: float = field(default=1.0, metadata={"help": "GAE discount."})
    lam: float = field(default=0.95, metadata={"help": "= lambda of GAE."})
    value_model_path: str | None = field(default=None, metadata={"help": "Critic init; policy tokenizer."})
    max_nonfinite_updates: int = field(default=3, metadata={"help": "Skipped non-finite updates before abort."})
    sample_completions: int = field(default=4, metadata={"help": "Rows of the sample table."})
    trainable_layers: int | None = field(
        default=None,
        metadata={
            "help": "LoRA on the top K layers only, and the bottom ones run once per rollout; None = all layers."
        },
    )
    critic: str = field(
        default="separate",
        metadata={
            "help": "Value function: separate (own backbone), shared (head on the policy's trunk), prefix (own copy "
            "of the top critic_layers on the cached prefix; needs trainable_layers). On SmolLM2 with trainable_layers "
            "4, prefix was 1.8x faster per update than separate with the same explained variance; shared fastest but "
            "explained far less (benchmarks/README.md, Critic options)."
        },
    )
    critic_layers: int | None = field(
        default=None, metadata={"help": "Layers of the prefix critic, 1..trainable_layers; None = trainable_layers."}
    )

    # PPO-Lagrangian
    algorithm: str = field(default="ppo", metadata={"help": "`ppo`, or `ppo_lag` (reward subject to a cost bound)."})
    cost_model_path: str | None = field(default=None, metadata={"help": "Safety cost model folder (ppo_lag)."})
    cost_clip: float | None = field(default=None, metadata={"help": "Clip costs to +-cost_clip; None = reward_clip."})
    lambda_init: float = field(default=1.0, metadata={"help": "Initial Lagrange multiplier (> 0)."})
    lambda_lr: float = field(default=0.1, metadata={"help": "SGD learning rate of log(lambda)."})
    lambda_max: float | None = field(default=None, metadata={"help": "Upper bound on lambda; None = none."})
    threshold: float = field(default=0.0, metadata={"help": "Bound on the mean episode cost J_c."})
    lambda_update_delay_steps: int = field(default=0, metadata={"help": "Updates before lambda starts to move."})
    episode_cost_window_size: int = field(default=128, metadata={"help": "Episodes per process in J_c."})

    # Derived in __post_init__
    world_size: int | None = field(default=None, init=False)
    local_batch_size: int | None = field(default=None, init=False)
    batch_size: int | None = field(default=None, init=False)
    local_mini_batch_size: int | None = field(default=None, init=False)
    mini_batch_size: int | None = field(default=None, init=False)

    def __post_init__(self):
        check_training_fields(self)
        check_fields(
            self,
            at_least_1=(
                "num_ppo_epochs", "num_mini_batches", "response_length", "local_rollout_forward_batch_size",
                "total_episodes", "kl_horizon", "max_nonfinite_updates", "episode_cost_window_size", "ptx_max_length",
                "samples_per_prompt",
            ),
            at_least_0=(
                "missing_eos_penalty", "refusal_reward", "ptx_coef", "ptx_cache_mb", "kl_coef", "vf_coef", "ent_coef",
                "lam",
                "sample_completions", "stop_token_id", "value_learning_rate", "lambda_lr", "lambda_update_delay_steps",
            ),
            positive=(
                "temperature", "reward_clip", "cost_clip", "kl_target", "cliprange_value", "lambda_init", "lambda_max",
            ),
            probability=("top_p", "gamma", "cliprange"),
        )  # fmt: skip
        if self.lam > 1:
            raise SafetyRLHFError(f"lam={self.lam} must be in [0, 1]")
        if self.gradient_accumulation_steps % self.num_mini_batches:
            raise SafetyRLHFError(
                f"gradient_accumulation_steps={self.gradient_accumulation_steps} is not divisible by "
                f"num_mini_batches={self.num_mini_batches}; each mini-batch needs a whole number of micro-batches"
            )
        if self.kl_estimator not in ("k1", "k3"):
            raise SafetyRLHFError(f"kl_estimator={self.kl_estimator!r} is not supported; use 'k1' or 'k3'")
        if self.stop_token not in (None, "eos"):
            raise SafetyRLHFError(f"stop_token={self.stop_token!r} is not supported; use 'eos' or set stop_token_id")
        if self.trainable_layers is not None and self.trainable_layers < 1:
            raise SafetyRLHFError(
                f"trainable_layers={self.trainable_layers} must be at least 1; unset it to adapt every layer"
            )
        self.check_critic()
        self.check_algorithm()
        if self.refusal_judge_path and not self.refusal_reward:
            raise SafetyRLHFError(
                f"refusal_judge_path={self.refusal_judge_path!r} is read only by the refusal_reward term, which is 0; "
                "set refusal_reward (e.g. 1.0) or unset refusal_judge_path"
            )
        if self.ptx_coef and not self.ptx_dataset_name:
            raise SafetyRLHFError(
                f"ptx_coef={self.ptx_coef} needs the supervised rows it trains on; set ptx_dataset_name (e.g. "
                "bundled_warmstart) or ptx_coef 0"
            )
        for name in ("ptx_dataset_name", "ptx_own_answers"):
            if getattr(self, name) and not self.ptx_coef:
                raise SafetyRLHFError(
                    f"{name}={getattr(self, name)!r} is read only by the ptx term, whose ptx_coef is 0; set ptx_coef "
                    f"(e.g. 0.1) or unset {name}"
                )
        self.check_sampling()
        start_cpu_process_group(self)
        super().__post_init__()
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_batch_size = self.per_device_train_batch_size * self.gradient_accumulation_steps
        self.batch_size = self.local_batch_size * self.world_size
        self.local_mini_batch_size = self.local_batch_size // self.num_mini_batches
        self.mini_batch_size = self.batch_size // self.num_mini_batches

    def check_sampling(self) -> None:
        k, local = self.samples_per_prompt, self.per_device_train_batch_size * self.gradient_accumulation_steps
        if local % k:
            raise SafetyRLHFError(
                f"samples_per_prompt={k} does not divide the batch of each process (per_device_train_batch_size * "
                f"gradient_accumulation_steps = {local}); choose a divisor of {local}"
            )
        if self.prompt_baseline and k < 2:
            raise SafetyRLHFError(
                f"prompt_baseline compares the samples of one prompt, but samples_per_prompt={k}; set "
                "samples_per_prompt 2 or more, or prompt_baseline false"
            )
        if self.prompt_baseline and self.label_baseline:
            raise SafetyRLHFError(
                "prompt_baseline and label_baseline are both set; prompt_baseline already removes each prompt's (and "
                "so each label's) mean: set label_baseline false"
            )

    def check_algorithm(self) -> None:
        if self.algorithm not in ("ppo", "ppo_lag"):
            hint = "; GRPO has its own verb: `safety-rlhf grpo`" if self.algorithm == "grpo" else ""
            raise SafetyRLHFError(f"algorithm={self.algorithm!r} is not supported; use 'ppo' or 'ppo_lag'{hint}")
        for name in ("cost_model_path", "cost_clip"):  # the ppo_lag fields without a default value
            value = getattr(self, name)
            if self.algorithm == "ppo" and value not in (None, ""):
                raise SafetyRLHFError(
                    f"{name}={value!r} is read only by algorithm='ppo_lag'; set algorithm ppo_lag or unset {name}"
                )
        if self.lambda_max is not None and self.lambda_max < self.lambda_init:
            raise SafetyRLHFError(
                f"lambda_max={self.lambda_max} is below lambda_init={self.lambda_init}; raise lambda_max or lower "
                "lambda_init"
            )

    def check_critic(self) -> None:
        """One-line errors for a critic setting that cannot run, each naming the value and the fix."""
        from .critics import CRITICS

        if self.critic not in CRITICS:
            raise SafetyRLHFError(f"critic={self.critic!r} is not supported; use one of: {', '.join(CRITICS)}")
        if self.critic == "prefix" and self.trainable_layers is None:
            raise SafetyRLHFError(
                "critic='prefix' reads the cached prefix state of trainable_layers, which is unset; set "
                "trainable_layers (e.g. 4), or use critic='shared'"
            )
        if self.critic_layers is not None and self.critic != "prefix":
            raise SafetyRLHFError(
                f"critic_layers={self.critic_layers} is read only by critic='prefix' (critic={self.critic!r}); "
                "unset critic_layers or set critic='prefix'"
            )
        if self.critic_layers is not None and not 1 <= self.critic_layers <= self.trainable_layers:
            raise SafetyRLHFError(
                f"critic_layers={self.critic_layers} is outside 1..trainable_layers={self.trainable_layers}; choose "
                "a value in that range, or unset it to copy all trainable layers"
            )
