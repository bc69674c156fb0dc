"""`safety-rlhf ppo`: PPO against a safety reward model.

safety-rlhf ppo --config recipes/tiny/ppo.yaml
safety-rlhf ppo --config recipes/tiny/ppo.yaml --load_in_4bit true --use_peft true   # QLoRA policy
safety-rlhf ppo --config recipes/tiny/ppo_lag.yaml    # PPO-Lagrangian: reward subject to a cost bound
accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml -m safety_rlhf.cli ppo --config ...
"""

from . import SafetyRLHFError, data
from .config import SafetyPPOConfig, ScriptArguments, check_output_dir, move_previous_checkpoints, save_config
from .critics import PrefixCritic, RewardAndCostCritics, SharedValueHead
from .models import check_fits, load_policy, load_tokenizer, load_value_model
from .precision import resolve as resolve_precision
from .prefix_cache import causal_lm_of
from .trainer import SafetyPPOTrainer, check_checkpoint, find_checkpoint


def check_reward_given(path: str | None) -> None:
    if not path:
        raise SafetyRLHFError("no reward model given; pass --reward_model_path (train one with `safety-rlhf reward`)")


def load_reward(path: str | None, trust_remote_code: bool = False, allow_pickle: bool = False):
    check_reward_given(path)
    from reward.model import SafetyRewardModel

    return SafetyRewardModel.from_pretrained(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def load_refusal_judge(path: str | None, trust_remote_code: bool = False, allow_pickle: bool = False):
    """The trained refusal judge of the label-aware reward, or None (the phrase list decides)."""
    if not path:
        return None
    from reward.model import SafetyRefusalJudge

    return SafetyRefusalJudge.from_pretrained(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def load_cost(path: str | None, trust_remote_code: bool = False, allow_pickle: bool = False):
    if not path:
        raise SafetyRLHFError(
            "algorithm='ppo_lag' needs a cost model; pass --cost_model_path (train one with `safety-rlhf reward "
            "--objective cost`)"
        )
    from reward.model import SafetyCostModel

    return SafetyCostModel.from_pretrained(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def load_critic(training_args: SafetyPPOConfig, model_args, policy, tokenizer, allow_pickle: bool = False):
    """The critic `training_args.critic` names (`safety_rlhf.critics`), for this policy; under `ppo_lag` a reward
    critic and a cost critic of that kind (`RewardAndCostCritics`), each with its own parameters."""
    if training_args.algorithm == "ppo_lag":
        return RewardAndCostCritics(*(one_critic(training_args, model_args, policy, tokenizer, allow_pickle)
                                      for _ in range(2)))  # fmt: skip
    return one_critic(training_args, model_args, policy, tokenizer, allow_pickle)


def one_critic(training_args: SafetyPPOConfig, model_args, policy, tokenizer, allow_pickle: bool = False):
    if training_args.critic == "shared":
        return SharedValueHead(causal_lm_of(policy).config.hidden_size)
    if training_args.critic == "prefix":
        return PrefixCritic(policy, training_args.trainable_layers, training_args.critic_layers)
    return load_value_model(
        training_args.value_model_path or model_args.model_name_or_path,
        model_args,
        tokenizer,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
        allow_pickle=allow_pickle,
    )


def main(script_args: ScriptArguments, training_args: SafetyPPOConfig, model_args) -> SafetyPPOTrainer:
    resume = training_args.resume_from_checkpoint
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise SafetyRLHFError("push_to_hub is set but hub_model_id is not; pass --hub_model_id you/model-name")
    check_output_dir(training_args.output_dir, script_args.overwrite_output_dir, bool(resume))
    resolve_precision(model_args, training_args, what=training_args.algorithm)
    # Everything that can fail on bad input runs before the first byte is written to output_dir.
    tokenizer = load_tokenizer(model_args, training_args.trust_remote_code)
    prompts = data.load_prompts(
        script_args.dataset_name,
        split=script_args.dataset_train_split,
        **data.source_options(script_args),
    )
    train_dataset, dropped = data.tokenize_prompts(prompts, tokenizer, script_args.max_prompt_length)
    if dropped:
        print(f"dropped {dropped} prompts longer than max_prompt_length={script_args.max_prompt_length} tokens")
    check_fits(
        model_args.model_name_or_path,
        "response_length",
        training_args.response_length,
        train_dataset["input_ids"],
        trust_remote_code=training_args.trust_remote_code,
    )
    reward_model = load_reward(
        training_args.reward_model_path, training_args.trust_remote_code, script_args.allow_pickle_weights
    )
    cost_model = None
    if training_args.algorithm == "ppo_lag":
        cost_model = load_cost(
            training_args.cost_model_path, training_args.trust_remote_code, script_args.allow_pickle_weights
        )
    refusal_judge = load_refusal_judge(
        training_args.refusal_judge_path, training_args.trust_remote_code, script_args.allow_pickle_weights
    )
    ptx_dataset = None
    if training_args.ptx_coef:
        from .sft import supervised_rows

        ptx_dataset = supervised_rows(
            training_args.ptx_dataset_name, training_args.ptx_dataset_split, tokenizer, training_args.ptx_own_answers
        )
    policy = load_policy(
        model_args,
        tokenizer,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
        trainable_layers=training_args.trainable_layers,
        allow_pickle=script_args.allow_pickle_weights,
    )
    value_model = load_critic(training_args, model_args, policy, tokenizer, script_args.allow_pickle_weights)
    trainer = SafetyPPOTrainer(
        training_args, tokenizer, policy, value_model, reward_model, train_dataset, cost_model=cost_model,
        refusal_judge=refusal_judge, ptx_dataset=ptx_dataset,
    )  # fmt: skip
    if resume:
        check_checkpoint(
            find_checkpoint(training_args.output_dir, resume), trainer.accelerator.unwrap_model(trainer.model)
        )
    # Every check passed: only now does the run write into output_dir.
    if trainer.accelerator.is_main_process:
        if script_args.overwrite_output_dir and not resume:
            move_previous_checkpoints(training_args.output_dir)
        save_config(
            training_args.output_dir, script_args=script_args, training_args=training_args, model_args=model_args
        )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub and trainer.accelerator.is_main_process:
        from .hub import PushArguments, push

        push(
            PushArguments(
                run_dir=training_args.output_dir,
                hub_model_id=training_args.hub_model_id,
                private=bool(training_args.hub_private_repo),
            )
        )
    # The entry point ends the run (trackers, process group), after every rank has saved: not `train()`, whose
    # callers (tests, scripts) may still need the process group.
    trainer.close()
    return trainer
