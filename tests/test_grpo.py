"""GRPO with TRL's GRPOTrainer: our reward adapter, our data, and `safety-rlhf grpo` end to end on tiny models."""

import json

import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer

from reward.model import SafetyRewardModel
from safety_rlhf.cli import main as cli
from safety_rlhf.grpo import SafetyReward

HARMFUL = "How do I make a pipe bomb?"
BENIGN = "How do I bake bread?"
REFUSAL = "I can't help with that."
ANSWER = "Mix flour, water, yeast and salt, let it rise, then bake it for forty minutes."


def test_reward_adapter_scores_conversational_and_plain_text_with_the_reward_tokenizer(tiny_models):
    rm = SafetyRewardModel.from_pretrained(tiny_models["classifier"], device="cpu")
    reward = SafetyReward(rm)
    expected = rm.score([HARMFUL, BENIGN], [REFUSAL, ANSWER]).tolist()
    # The policy's messages: a system turn and the user turn; only the user's text reaches the BERT classifier.
    prompts = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": HARMFUL}],
        [{"role": "user", "content": [{"type": "text", "text": BENIGN}]}],
    ]
    completions = [[{"role": "assistant", "content": REFUSAL}], [{"role": "assistant", "content": ANSWER}]]
    assert reward(prompts=prompts, completions=completions) == expected
    assert reward(prompts=[HARMFUL, BENIGN], completions=[REFUSAL, ANSWER]) == expected
    assert reward.__name__ == "safety_reward"


def test_reward_adapter_eos_penalty_refusal_term_and_safety_metrics():
    def constant(prompts, completions):
        return [1.0] * len(prompts)

    logged = {}
    reward = SafetyReward(constant, stop_token_ids={2}, missing_eos_penalty=0.5, refusal_reward=0.25)
    scores = reward(
        prompts=[HARMFUL, HARMFUL, BENIGN, BENIGN],
        completions=[REFUSAL, ANSWER, ANSWER, REFUSAL],
        completion_ids=[[5, 2], [5, 6], [7, 2], []],  # the 2nd never stops, the 4th is empty
        label=["harmful", "harmful", "benign", "benign"],
        log_metric=logged.__setitem__,
    )
    # 1 + rule term (+0.25 right behaviour, -0.25 wrong) - 0.5 without EOS
    assert scores == [1.25, 1 - 0.25 - 0.5, 1.25, 1 - 0.25 - 0.5]
    assert logged == {"safety/harmful_refusal_rate": 0.5, "safety/benign_compliance_rate": 0.5}


def grpo_recipe(tmp_path, tiny_models, **kw):
    recipe = dict(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", reward_model_path=str(tiny_models["classifier"]),
        use_peft=True, lora_r=8, lora_alpha=16, lora_target_modules=["q_proj", "v_proj"],
        max_samples=16, max_prompt_length=96, num_generations=4, max_completion_length=12, temperature=1.0,
        missing_eos_penalty=1.0, refusal_reward=0.5, per_device_train_batch_size=8, gradient_accumulation_steps=1,
        learning_rate=1e-2, beta=0.04, max_steps=2, output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False,
        gradient_checkpointing=False, save_strategy="no", logging_steps=1, seed=0,
    )  # fmt: skip
    recipe.update(kw)
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_grpo_end_to_end_on_tiny_models_trains_the_adapter_and_logs_the_reward(tmp_path, tiny_models, capsys):
    # The reward model is on another tokenizer (BERT's) than the policy (Qwen2's): it re-tokenizes the decoded text.
    policy_vocab = AutoTokenizer.from_pretrained(tiny_models["policy"]).get_vocab()
    assert AutoTokenizer.from_pretrained(tiny_models["classifier"]).get_vocab() != policy_vocab
    assert cli(["grpo", "--config", grpo_recipe(tmp_path, tiny_models)]) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    assert {"config.yaml", "adapter_config.json", "adapter_model.safetensors", "metrics.jsonl"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "tokenizer_config.json").is_file()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["training_args"]["num_generations"] == 4 and config["training_args"]["beta"] == 0.04

    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [log for log in logs if "rewards/safety_reward/mean" in log]
    assert [log["step"] for log in steps] == [1, 2]
    assert all("kl" in log and "completions/mean_length" in log for log in steps)
    assert any("safety/harmful_refusal_rate" in log or "safety/benign_compliance_rate" in log for log in steps)

    # LoRA B starts at zero: every adapted matrix moved away from it, and only adapter weights were saved.
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and all(k.split(".")[-2] in ("lora_A", "lora_B") for k in adapter)
    assert all(v.abs().max() > 0 for v in lora_b.values()), [k for k, v in lora_b.items() if not v.any()]

    # The adapter loads on its base and generates.
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(out)
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=False).shape == (1, 5)


def test_grpo_without_reward_model_is_a_one_line_error_and_writes_nothing(tmp_path, tiny_models, capsys):
    recipe = grpo_recipe(tmp_path, tiny_models, reward_model_path=None)
    assert cli(["grpo", "--config", recipe]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reward_model_path" in err
    assert not (tmp_path / "out").exists()
    # A group size that does not divide the generation batch: TRL's check, as one line too.
    assert cli(["grpo", "--config", recipe, "--num_generations", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "num_generations" in err
    assert not (tmp_path / "out").exists()


def test_grpo_trainable_layers_puts_lora_on_the_top_layers_only(tmp_path, tiny_models, capsys):
    recipe = grpo_recipe(tmp_path, tiny_models, trainable_layers=1, max_steps=1)
    assert cli(["grpo", "--config", recipe]) == 0, capsys.readouterr().err
    adapter = load_file(tmp_path / "out" / "adapter_model.safetensors")
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in adapter}
    assert layers == {1}  # the tiny policy has 2 decoder layers: only the top one is adapted
    assert cli(["grpo", "--config", recipe, "--trainable_layers", "0", "--overwrite_output_dir", "true"]) == 2
    assert "trainable_layers=0 must be at least 1" in capsys.readouterr().err
