"""`safety-rlhf grpo`: GRPO, the critic-free alternative to PPO, with TRL's `GRPOTrainer` on our safety reward.

    safety-rlhf grpo --config recipes/tiny/grpo.yaml
    safety-rlhf grpo --config recipes/smollm2-135m-instruct/grpo.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml -m safety_rlhf.cli grpo --config ...

Everything of GRPO is TRL's: sampling `num_generations` completions per prompt, group-normalized advantages, the
clipped loss and the KL term (`beta`) against the reference (the adapter switched off under LoRA). Ours are the
inputs: the prompts of `safety_rlhf.data` as one user turn, the policy and tokenizer of `safety_rlhf.models` (a PAD
distinct from EOS, LoRA / 4-bit from the same `ModelConfig` as `sft` and `ppo`), and the reward: `SafetyReward`
turns `reward.SafetyRewardModel` into a TRL reward function. It scores decoded text with the reward model's own
tokenizer, so any policy can be scored by any reward model; it adds the EOS trick (`missing_eos_penalty`) and the
rule-based `refusal_reward` of `ppo`, and logs the `safety/*` refusal rates of the sampled completions.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, get_peft_config

from . import SafetyRLHFError, data, ppo_core
from .config import ScriptArguments, check_output_dir, save_config
from .models import check_fits, load_policy, load_tokenizer, lora_on_top_layers
from .precision import note_bf16_request
from .precision import resolve as resolve_precision

METRICS_FILE = "metrics.jsonl"


@dataclass
class SafetyGRPOConfig(GRPOConfig):
    r"""TRL's `GRPOConfig` plus the reward of our PPO (same names, same meaning as in `SafetyPPOConfig`).

    `num_generations` is the group size G; `per_device_train_batch_size` counts completions, so a process trains on
    `per_device_train_batch_size / num_generations` prompts per micro-batch, and the generation batch
    (`per_device_train_batch_size * gradient_accumulation_steps * world_size` completions) must hold whole groups.

    Parameters that control the reward:
        reward_model_path (`str` or `None`, *optional*, defaults to `None`): a safety reward model folder or Hub id
            (any one-label sequence-classification model, with its own tokenizer).
        missing_eos_penalty (`float` or `None`, *optional*, defaults to `None`): subtracted from the score of a
            completion that never emits EOS (the EOS trick); `None` scores it as it is, as TRL does.
        refusal_reward (`float`, *optional*, defaults to `0.0`): `+refusal_reward` when a harmful prompt is refused
            or a benign one answered, `-refusal_reward` otherwise (phrase-list refusal detector); 0 turns it off.
        algorithm (`str`, *optional*, defaults to `"grpo"`): always `"grpo"`; the field exists so that one recipe
            key names the algorithm of every RL recipe (`safety-rlhf plan` reads it).
        trainable_layers (`int` or `None`, *optional*, defaults to `None`): = K, LoRA on the top K decoder layers
            only, as in `ppo` (PEFT `layers_to_transform`), so that both train the same parameters; the backward pass
            then stops at layer L-K. TRL's trainer still runs the bottom layers in every pass (no prefix caching).
    """

    # Overridden GRPOConfig defaults
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimizer steps."})

    # Parameters that control the reward
    reward_model_path: str | None = field(default=None, metadata={"help": "Safety reward model folder or Hub id."})
    missing_eos_penalty: float | None = field(default=None, metadata={"help": "Score penalty without EOS."})
    refusal_reward: float = field(default=0.0, metadata={"help": "Rule-based term on labelled prompts; 0 = off."})
    algorithm: str = field(default="grpo", metadata={"help": "Always `grpo` here (`ppo`, `ppo_lag`: the ppo verb)."})
    trainable_layers: int | None = field(
        default=None, metadata={"help": "LoRA on the top K decoder layers only; None = all layers."}
    )

    def __post_init__(self):
        note_bf16_request(self)  # before TRL turns an unset bf16 into True
        if self.algorithm != "grpo":
            raise SafetyRLHFError(
                f"algorithm={self.algorithm!r} is run by `safety-rlhf ppo`; the grpo verb runs algorithm 'grpo' only"
            )
        if self.trainable_layers is not None and self.trainable_layers < 1:
            raise SafetyRLHFError(
                f"trainable_layers={self.trainable_layers} must be at least 1; unset it to adapt every layer"
            )
        super().__post_init__()


def user_text(prompt) -> str:
    """The last user turn of a conversational prompt (a list of messages), or a plain-text prompt as it is."""
    if isinstance(prompt, str):
        return prompt
    return next(_content(m) for m in reversed(prompt) if m["role"] == "user")


def assistant_text(completion) -> str:
    """The assistant's text of a conversational completion (a list of messages), or a plain-text one as it is."""
    if isinstance(completion, str):
        return completion
    return "".join(_content(m) for m in completion if m["role"] == "assistant")


def _content(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


class SafetyReward:
    """A `SafetyRewardModel` (or any `(prompts, completions) -> scores` callable) as a TRL reward function.

    TRL calls it with `prompts`, `completions` (text or messages), `completion_ids` (token ids, EOS included when
    sampled) and every other dataset column (`label`, `category`) as keyword lists, plus `log_metric`.

    Args:
        reward_model (`Callable[[list[str], list[str]], list[float]]`):
            Scores (user text, assistant text) pairs; `SafetyRewardModel` re-tokenizes them with its own tokenizer.
        stop_token_ids (`set[int]`, *optional*, defaults to `()`):
            Ids that end a completion (the policy's EOS); a completion not ending with one gets the penalty.
        missing_eos_penalty (`float` or `None`, *optional*, defaults to `None`):
            The EOS trick; `None` disables it.
        refusal_reward (`float`, *optional*, defaults to `0.0`):
            The rule-based term on labelled prompts; 0 disables it.
    """

    __name__ = "safety_reward"  # TRL logs `rewards/safety_reward/mean` and `.../std`

    def __init__(self, reward_model, stop_token_ids=(), missing_eos_penalty=None, refusal_reward: float = 0.0):
        self.reward_model = reward_model
        self.stop_token_ids = set(stop_token_ids)
        self.missing_eos_penalty = missing_eos_penalty
        self.refusal_reward = refusal_reward

    def __call__(self, prompts, completions, completion_ids=None, label=None, log_metric=None, **kwargs) -> list:
        prompt_texts = [user_text(p) for p in prompts]
        texts = [assistant_text(c) for c in completions]
        raw = torch.as_tensor(self.reward_model(prompt_texts, texts), dtype=torch.float32)  # (N,)
        rule_term = None
        if label is not None:
            from reward.refusal import classify_refusal

            refused = torch.tensor([classify_refusal(t) != "compliance" for t in texts])
            harmful = torch.tensor([lab == "harmful" for lab in label])
            if log_metric is not None and harmful.any():
                log_metric("safety/harmful_refusal_rate", refused[harmful].float().mean().item())
            if log_metric is not None and not harmful.all():
                log_metric("safety/benign_compliance_rate", (~refused[~harmful]).float().mean().item())
            if self.refusal_reward:
                rule_term = self.refusal_reward * torch.where(refused == harmful, 1.0, -1.0)
        penalty = self.missing_eos_penalty if completion_ids is not None and self.stop_token_ids else None
        has_stop = torch.tensor([bool(ids) and ids[-1] in self.stop_token_ids for ids in completion_ids or []])
        return ppo_core.episode_scores(raw, has_stop, penalty, None, rule_term).tolist()


class MetricsFile(TrainerCallback):
    """Append every log of the trainer to `output_dir/metrics.jsonl`, as every verb's run folder holds."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(Path(args.output_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def load_train_dataset(script_args: ScriptArguments, tokenizer):
    """Our prompts as TRL's conversational `prompt` column (one user turn); `label` and `category` stay as columns,
    which TRL passes on to the reward function, and `input_ids` (for `check_fits`; drop it before training). Prompts
    longer than `max_prompt_length` tokens are dropped."""
    prompts = data.load_prompts(
        script_args.dataset_name, split=script_args.dataset_train_split, **data.source_options(script_args)
    )
    kept, dropped = data.tokenize_prompts(prompts, tokenizer, script_args.max_prompt_length)
    if dropped:
        print(f"dropped {dropped} prompts longer than max_prompt_length={script_args.max_prompt_length} tokens")
    return kept.map(
        lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}]},
        remove_columns=["text", "split"],
    )


def main(script_args: ScriptArguments, training_args: SafetyGRPOConfig, model_args):
    from trl import GRPOTrainer

    from .ppo import check_reward_given, load_reward

    resume = training_args.resume_from_checkpoint
    if training_args.use_vllm:
        raise SafetyRLHFError("use_vllm is not supported by `safety-rlhf grpo`; generation runs in transformers")
    check_output_dir(training_args.output_dir, script_args.overwrite_output_dir, bool(resume))
    resolve_precision(model_args, training_args, what="grpo")
    # Everything that can fail on bad input runs before the first byte is written to output_dir.
    check_reward_given(training_args.reward_model_path)
    tokenizer = load_tokenizer(model_args, training_args.trust_remote_code)
    peft_config = get_peft_config(model_args)
    if tokenizer.needs_resize and peft_config is None and training_args.beta:
        # TRL builds the full-model reference from the checkpoint, whose embeddings lack the PAD row we add.
        raise SafetyRLHFError(
            f"tokenizer of {model_args.model_name_or_path!r} needs a new PAD token, which GRPO's reference copy "
            "cannot have; pass --use_peft true, --beta 0, or save the model with a pad_token first"
        )
    train_dataset = load_train_dataset(script_args, tokenizer)
    check_fits(
        model_args.model_name_or_path,
        "max_completion_length",
        training_args.max_completion_length,
        train_dataset["input_ids"],
        trust_remote_code=training_args.trust_remote_code,
    )
    train_dataset = train_dataset.remove_columns("input_ids")
    reward_model = load_reward(
        training_args.reward_model_path, training_args.trust_remote_code, script_args.allow_pickle_weights
    )
    model = load_policy(
        model_args,
        tokenizer,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
        apply_peft=False,
        allow_pickle=script_args.allow_pickle_weights,
    )
    if training_args.trainable_layers is not None:
        peft_config = lora_on_top_layers(peft_config, model, training_args.trainable_layers)
    generation_eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    stop_ids = {
        tokenizer.eos_token_id,
        *([generation_eos] if isinstance(generation_eos, int) else generation_eos or []),
    }
    reward_fn = SafetyReward(reward_model, stop_ids, training_args.missing_eos_penalty, training_args.refusal_reward)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_fn],
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[MetricsFile()],
    )
    if trainer.accelerator.is_main_process:
        save_config(
            training_args.output_dir, script_args=script_args, training_args=training_args, model_args=model_args
        )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
    return trainer
