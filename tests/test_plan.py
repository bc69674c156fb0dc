"""The GPU memory planner against hand computations and against measured footprints of real (tiny) models."""

import json
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from safety_rlhf import plan
from safety_rlhf.cli import main as cli


def qwen_params_by_hand(V, H, I, L, heads, kv_heads, tied):  # noqa: E741
    kv = kv_heads * (H // heads)
    layer = (H * H + H) + 2 * (H * kv + kv) + H * H + 3 * H * I + 2 * H  # q (bias), k, v (bias), o, MLP, 2 norms
    return V * H * (1 if tied else 2) + L * layer + H


def test_parameter_counts_of_known_architectures_match_hand_computation():
    for name, tied in (("qwen2.5-7b", False), ("qwen2.5-0.5b", True)):
        c = plan.KNOWN_CONFIGS[name]
        config, _ = plan.resolve_config(f"Qwen/{name}-Instruct", "policy")
        counted = sum(p.numel() for p in plan.meta_model(config).parameters())
        assert counted == qwen_params_by_hand(
            c["vocab_size"], c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"],
            c["num_attention_heads"], c["num_key_value_heads"], tied,
        )  # fmt: skip
    # The published sizes: 7.61B and 0.49B.
    assert round(qwen_params_by_hand(152064, 3584, 18944, 28, 28, 4, False) / 1e9, 2) == 7.62
    assert round(qwen_params_by_hand(151936, 896, 4864, 24, 14, 2, True) / 1e9, 2) == 0.49


def tiny_config():
    return Qwen2Config(
        vocab_size=1000, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip


def test_weight_bytes_match_the_measured_footprint_fp32_and_nf4(tmp_path):
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_config())
    estimate = plan.model_memory(plan.meta_model(tiny_config()), 4, False, False, None, None, trainable=False)
    assert estimate.weight_bytes == sum(p.numel() * 4 for p in model.parameters())
    assert estimate.weight_bytes == pytest.approx(model.get_memory_footprint(), rel=0.01)

    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    model.save_pretrained(tmp_path)
    quantized = Qwen2ForCausalLM.from_pretrained(
        tmp_path,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
        ),  # fmt: skip
        device_map={"": "cpu"},
        dtype=torch.float32,
    )
    estimate = plan.model_memory(plan.meta_model(tiny_config()), 4, True, True, None, None, trainable=False)
    assert estimate.weight_bytes == pytest.approx(quantized.get_memory_footprint(), rel=0.05)
    assert estimate.weight_bytes < 0.9 * model.get_memory_footprint()


def test_4bit_weight_bytes_match_our_loaded_policy(tmp_path):
    """Our loader prepares a 4-bit model for k-bit training, which casts the weights it does not quantize to fp32
    (a bf16 recipe's embeddings and head included): the plan counts them at 4 bytes."""
    pytest.importorskip("bitsandbytes")
    from transformers import AutoTokenizer
    from trl import ModelConfig

    from safety_rlhf.models import load_policy
    from safety_rlhf.tiny import build_chat_tokenizer, bundled_text

    tokenizer = build_chat_tokenizer(bundled_text(), 1000)
    config = tiny_config()
    config.vocab_size = len(tokenizer)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    margs = ModelConfig(model_name_or_path=str(tmp_path), dtype="bfloat16", load_in_4bit=True, use_peft=True, lora_r=4,
                        lora_alpha=8, lora_target_modules="all-linear", use_bnb_nested_quant=True)  # fmt: skip
    policy = load_policy(margs, AutoTokenizer.from_pretrained(tmp_path))
    base = policy.get_base_model()
    assert base.lm_head.weight.dtype == base.model.embed_tokens.weight.dtype == torch.float32
    estimate = plan.model_memory(plan.meta_model(config), 2, True, True, 4, "all-linear", trainable=True)
    adapter = sum(p.numel() * p.element_size() for n, p in policy.named_parameters() if "lora_" in n)
    assert estimate.weight_bytes == pytest.approx(base.get_memory_footprint(), rel=0.05)
    assert estimate.weight_bytes - 4 * estimate.trainable == pytest.approx(base.get_memory_footprint() - adapter,
                                                                            rel=0.05)  # fmt: skip


def test_lora_trainable_count_matches_peft():
    from peft import LoraConfig, get_peft_model

    model = Qwen2ForCausalLM(tiny_config())
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    estimate = plan.model_memory(plan.meta_model(tiny_config()), 4, False, False, 4, "all-linear", trainable=True)
    assert estimate.trainable == trainable
    assert estimate.state_bytes == 12 * trainable
    named = plan.model_memory(plan.meta_model(tiny_config()), 4, False, False, 4, ["q_proj", "v_proj"], True)
    # q: 64 -> 64, v: 64 -> 32, in each of 2 layers
    assert named.trainable == 2 * 4 * ((64 + 64) + (64 + 32))


def test_kv_cache_and_activations_by_hand():
    dims = plan.decoder_dims(plan.resolve_config("Qwen/Qwen2.5-7B-Instruct", "policy")[0])
    assert dims == {"H": 3584, "I": 18944, "KV": 512, "L": 28}
    # 8 sequences x 512 tokens, 28 layers, K and V of 4 heads x 128, bf16
    assert plan.kv_cache_bytes(dims, 8 * 512, 2) == 8 * 512 * 28 * 2 * 512 * 2
    small = {"H": 10, "I": 20, "KV": 4, "L": 3}
    per_layer = 6 * 10 + 2 * 4 + 4 * 20
    assert plan.training_activation_bytes(small, 100, 2, checkpointing=False) == 100 * 2 * 3 * per_layer
    assert plan.training_activation_bytes(small, 100, 2, checkpointing=True) == 100 * 2 * (3 * 10 + per_layer)


def run_plan(capsys, *argv):
    code = cli(["plan", *argv, "--json_output", "true"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_plan_of_the_7b_qlora_recipe(capsys):
    result = run_plan(capsys, "--config", "recipes/qwen2.5-7b-instruct/ppo_qlora.yaml", "--gpu_memory_gib", "24")
    p = result["plan"]
    assert p["static_bytes"]["reference"] == 0  # LoRA: the adapter disabled is the reference
    assert p["params"]["policy"] == qwen_params_by_hand(152064, 3584, 18944, 28, 28, 4, False)
    # NF4 linears (6.5B weights, ~0.53 bytes each) + fp32 embeddings and untied head (2 x 545M x 4 bytes): between 6.5
    # and 8 GiB, far below 15 GiB of bf16.
    assert 6.5 * plan.GIB < p["static_bytes"]["policy weights"] < 8 * plan.GIB
    detail = p["training_detail_bytes"]
    assert detail["compute-dtype copy of the fp32 LM head (4-bit)"] == 152064 * 3584 * 2
    assert p["fits"] and result["suggestion"]["settings"]["per_device_train_batch_size"] >= 4


def test_plan_suggests_smaller_settings_for_a_smaller_gpu(capsys):
    recipe = "recipes/qwen2.5-0.5b-instruct/ppo.yaml"
    big = run_plan(capsys, "--config", recipe, "--gpu_memory_gib", "80")
    small = run_plan(capsys, "--config", recipe, "--gpu_memory_gib", "12")
    assert big["plan"]["fits"]
    s = small["suggestion"]
    assert s is not None and s["needed_bytes"] <= 12 * plan.GIB
    fitted = (s["settings"]["per_device_train_batch_size"], s["settings"]["local_rollout_forward_batch_size"])
    assert fitted < (8, 32) or s["settings"]["gradient_checkpointing"]
    assert s["settings"]["per_device_train_batch_size"] * s["settings"]["gradient_accumulation_steps"] == 32
    # Nothing fits 1 GiB: no suggestion, and the text says what to change.
    code = cli(["plan", "--config", recipe, "--gpu_memory_gib", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "does NOT fit" in out and "load_in_4bit" in out


def test_plan_bad_input_is_one_line_error(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: nowhere/unknown-model\nreward_model_path: minilm\n")
    assert cli(["plan", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere/unknown-model" in err and "known architecture" in err and len(err.splitlines()) == 1
    assert cli(["plan", "--config", "recipes/qwen2.5-0.5b-instruct/ppo.yaml", "--gpu_memory_gib", "0"]) == 2
    assert "gpu_memory_gib=0" in capsys.readouterr().err


def grpo_recipe(tmp_path, tiny_models, **kw):
    import yaml

    recipe = dict(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", reward_model_path=str(tiny_models["classifier"]),
        use_peft=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"], num_generations=4,
        per_device_train_batch_size=8, gradient_accumulation_steps=2, max_prompt_length=32, max_completion_length=16,
        beta=0.04, gradient_checkpointing=False, output_dir=str(tmp_path / "out"),
    )  # fmt: skip
    recipe.update(kw)
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_grpo_plan_by_hand(tmp_path, tiny_models, capsys):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    policy = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    c = policy.config
    H, I, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size  # noqa: E741
    KV = c.num_key_value_heads * (getattr(c, "head_dim", None) or H // c.num_attention_heads)
    params = sum(p.numel() for p in policy.parameters())
    # The reward model's encoder: the planner leaves out the one-label head (H + 1 parameters), as for PPO.
    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_models["classifier"])
    reward = sum(p.numel() for p in classifier.base_model.parameters())
    adapter = L * 4 * ((H + H) + (H + KV))  # r = 4 on q (H -> H) and v (H -> KV)
    completions, seq = 8 * 2, 32 + 16  # 8 per micro-batch x 2 steps per generation; prompt + completion tokens

    recipe = grpo_recipe(tmp_path, tiny_models)
    p = run_plan(capsys, "--config", recipe)["plan"]  # a recipe with num_generations is planned as GRPO
    assert p["algorithm"] == "grpo" and "critic" not in p["sources"]
    assert p["static_bytes"] == {
        "policy weights": 4 * params + 4 * adapter,
        "policy trainable state (grads + AdamW)": 12 * adapter,
        "reference": 0,  # LoRA: the adapter switched off
        "reward model": 4 * reward,
    }
    assert p["settings"]["completions_generated"] == completions and p["settings"]["num_generations"] == 4
    assert p["phase_bytes"]["generation (KV cache)"] == completions * seq * L * 2 * KV * 4 + 3 * completions * V * 4
    per_layer = 6 * H + 2 * KV + 4 * I
    assert p["phase_bytes"]["training"] == 8 * seq * 4 * L * per_layer + 3 * 8 * (16 + 1) * V * 4
    assert p["peak_bytes"] == sum(p["static_bytes"].values()) + max(p["phase_bytes"].values())

    # Full fine-tuning: TRL's reference is a copy of the policy, unless beta = 0 (no KL term, no reference).
    full = run_plan(capsys, "--config", recipe, "--use_peft", "false")["plan"]["static_bytes"]
    assert full["reference"] == 4 * params and full["policy trainable state (grads + AdamW)"] == 12 * params
    no_kl = run_plan(capsys, "--config", recipe, "--use_peft", "false", "--beta", "0")["plan"]["static_bytes"]
    assert no_kl["reference"] == 0

    # --algorithm grpo plans a recipe without num_generations with GRPOConfig's default group size (8).
    bare = grpo_recipe(tmp_path, tiny_models)
    text = (tmp_path / "grpo.yaml").read_text().replace("num_generations: 4\n", "")
    (tmp_path / "grpo.yaml").write_text(text)
    assert run_plan(capsys, "--config", bare, "--algorithm", "grpo")["plan"]["settings"]["num_generations"] == 8


def test_grpo_plan_of_the_smollm2_recipe_and_a_smaller_gpu(capsys):
    recipe = "recipes/smollm2-135m-instruct/grpo.yaml"
    # The recipe's dtype native plans as bf16 (a GPU computes it natively); fp32 here, the sizes this test was made on.
    result = run_plan(capsys, "--config", recipe, "--reward_model_config", "minilm", "--gpu_memory_gib", "8",
                      "--dtype", "float32")  # fmt: skip
    p = result["plan"]
    assert p["fits"] and p["static_bytes"]["reference"] == 0
    assert round(p["params"]["policy"] / 1e6, 1) == 134.5  # SmolLM2-135M's published size
    gib = p["needed_bytes"] / plan.GIB
    small = run_plan(capsys, "--config", recipe, "--reward_model_config", "minilm", "--gpu_memory_gib", f"{gib - 0.3}",
                     "--dtype", "float32")  # fmt: skip
    s = small["suggestion"]["settings"]
    assert not small["plan"]["fits"] and small["suggestion"]["needed_bytes"] <= (gib - 0.3) * plan.GIB
    assert (
        s["per_device_train_batch_size"] < 16
        and s["per_device_train_batch_size"] * s["gradient_accumulation_steps"] == 32  # the generation batch kept
    )
    assert (
        cli(
            [
                "plan",
                "--config",
                recipe,
                "--reward_model_config",
                "minilm",
                "--gpu_memory_gib",
                f"{gib - 0.3}",
                "--dtype",
                "float32",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "no critic (GRPO)" in out and "does NOT fit" in out and "--per_device_train_batch_size" in out


def test_grpo_plan_with_trainable_layers(tmp_path, capsys):
    """LoRA on the top 4 of SmolLM2's 30 identical layers: 4/30 of the adapter and of the stored activations."""
    import yaml

    recipe = yaml.safe_load(Path("recipes/smollm2-135m-instruct/grpo.yaml").read_text())
    recipe.pop("trainable_layers")
    every = tmp_path / "grpo.yaml"
    every.write_text(yaml.safe_dump(recipe))
    argv = ["--reward_model_config", "minilm", "--gradient_checkpointing", "false"]
    top = run_plan(capsys, "--config", "recipes/smollm2-135m-instruct/grpo.yaml", *argv)["plan"]
    full = run_plan(capsys, "--config", str(every), *argv)["plan"]
    assert top["settings"]["trainable_layers"] == 4 and full["settings"]["trainable_layers"] is None
    assert top["params"]["policy_trainable"] * 30 == full["params"]["policy_trainable"] * 4
    acts = "policy activations"
    assert top["training_detail_bytes"][acts] * 30 == pytest.approx(full["training_detail_bytes"][acts] * 4)


def test_ppo_plan_with_trainable_layers_by_hand(tmp_path, tiny_models, capsys):
    import yaml
    from transformers import AutoModelForCausalLM

    c = AutoModelForCausalLM.from_pretrained(tiny_models["policy"]).config
    H, I, L = c.hidden_size, c.intermediate_size, c.num_hidden_layers  # noqa: E741
    KV = c.num_key_value_heads * (getattr(c, "head_dim", None) or H // c.num_attention_heads)
    recipe = tmp_path / "ppo.yaml"
    recipe.write_text(yaml.safe_dump(dict(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", reward_model_path=str(tiny_models["policy"]),
        use_peft=True, lora_r=4, lora_target_modules="all-linear", max_prompt_length=32, response_length=16,
        per_device_train_batch_size=2, gradient_accumulation_steps=4, local_rollout_forward_batch_size=8,
        gradient_checkpointing=False, output_dir=str(tmp_path / "out"),
    )))  # fmt: skip
    before = run_plan(capsys, "--config", str(recipe))["plan"]
    after = run_plan(capsys, "--config", str(recipe), "--trainable_layers", "1")["plan"]
    assert before["settings"]["trainable_layers"] is None and after["settings"]["trainable_layers"] == 1

    # LoRA r = 4 on q, k, v, o, gate, up, down of one layer: r x (in + out) each
    per_layer = 4 * ((H + H) + (H + KV) + (H + KV) + (H + H) + 3 * (H + I))
    assert before["params"]["policy_trainable"] == L * per_layer
    assert after["params"]["policy_trainable"] == 1 * per_layer  # the top layer only
    assert after["params"]["critic_trainable"] == before["params"]["critic_trainable"]  # the critic: every layer
    assert (
        before["static_bytes"]["policy weights"] - after["static_bytes"]["policy weights"] == 4 * (L - 1) * per_layer
    )
    assert after["static_bytes"]["policy trainable state (grads + AdamW)"] == 12 * per_layer
    assert after["static_bytes"]["reference"] == 0  # LoRA: the adapter switched off, with or without the cache

    # The cached prefix: the whole local batch (8 rows) x (32 + 16) tokens x H, fp32, in the rollout and training
    seq, prefix = 32 + 16, 8 * (32 + 16) * H * 4
    assert after["training_detail_bytes"]["cached prefix hidden state"] == prefix
    assert before["training_detail_bytes"]["cached prefix hidden state"] == 0
    assert (
        after["phase_bytes"]["rollout forwards (no grad)"]
        == before["phase_bytes"]["rollout forwards (no grad)"] + prefix
    )
    # The PPO epochs store the policy's activations of the top layer only (micro-batch 2, no checkpointing).
    layer = 6 * H + 2 * KV + 4 * I
    assert before["training_detail_bytes"]["policy activations"] == 2 * seq * 4 * L * layer
    assert after["training_detail_bytes"]["policy activations"] == 2 * seq * 4 * 1 * layer
    assert after["phase_bytes"]["training"] == (
        before["phase_bytes"]["training"] - 2 * seq * 4 * (L - 1) * layer + prefix
    )
    assert after["peak_bytes"] == sum(after["static_bytes"].values()) + max(after["phase_bytes"].values())

    # Critics: `shared` is a head on the policy's trunk (no weights, no activations of its own); `prefix` a copy of
    # the policy's top K' = 1 layer (Qwen2: q and v with bias, k, o, MLP, two norms) and the final norm, trained in
    # full in fp32, plus the head.
    head = H + 1
    shared = run_plan(capsys, "--config", str(recipe), "--trainable_layers", "1", "--critic", "shared")["plan"]
    assert shared["static_bytes"]["critic weights"] == 4 * head
    assert shared["static_bytes"]["critic trainable state (grads + AdamW)"] == 12 * head
    assert shared["training_detail_bytes"]["critic activations"] == 0
    prefix_critic = run_plan(capsys, "--config", str(recipe), "--trainable_layers", "1", "--critic", "prefix")["plan"]
    copied = (H * H + H) + 2 * (H * KV + KV) + H * H + 3 * H * I + 2 * H + H
    assert prefix_critic["settings"]["critic_layers"] == 1 and prefix_critic["params"]["critic"] == copied + head
    assert prefix_critic["static_bytes"]["critic weights"] == 4 * copied + 4 * head
    assert prefix_critic["static_bytes"]["critic trainable state (grads + AdamW)"] == 12 * copied + 12 * head
    assert prefix_critic["training_detail_bytes"]["critic activations"] == 2 * seq * 4 * 1 * layer

    # K outside 1..L, or K without LoRA: one-line errors.
    assert cli(["plan", "--config", str(recipe), "--trainable_layers", str(L + 1)]) == 2
    assert f"outside 1..{L}" in capsys.readouterr().err
    assert cli(["plan", "--config", str(recipe), "--trainable_layers", "1", "--use_peft", "false"]) == 2
    assert "use_peft" in capsys.readouterr().err


def test_plan_of_the_7b_recipe_with_trainable_layers(capsys):
    recipe = ["--config", "recipes/qwen2.5-7b-instruct/ppo_qlora.yaml", "--gpu_memory_gib", "24"]
    before = run_plan(capsys, *recipe)["plan"]
    after = run_plan(capsys, *recipe, "--trainable_layers", "8")["plan"]
    # Qwen2.5-7B: LoRA r = 16 on 8 of 28 layers; each layer's linears hold 16 x (in + out) adapter weights.
    H, I, KV = 3584, 18944, 512  # noqa: E741
    per_layer = 16 * ((H + H) + 2 * (H + KV) + (H + H) + 3 * (H + I))
    assert (
        before["params"]["policy_trainable"] == 28 * per_layer and after["params"]["policy_trainable"] == 8 * per_layer
    )
    # Cached prefix: 32 rows x 512 tokens x 3584 in bf16 = 112 MiB
    assert after["training_detail_bytes"]["cached prefix hidden state"] == 32 * 512 * 3584 * 2
    assert after["peak_bytes"] < before["peak_bytes"] and after["fits"]


def test_plan_of_the_7b_ppo_lag_recipe_adds_a_cost_model_and_a_second_critic(capsys):
    base = run_plan(capsys, "--config", "recipes/qwen2.5-7b-instruct/ppo_qlora.yaml")["plan"]
    lag = run_plan(capsys, "--config", "recipes/qwen2.5-7b-instruct/ppo_lag_qlora.yaml")["plan"]
    s, b = lag["static_bytes"], base["static_bytes"]
    assert lag["algorithm"] == "ppo_lag" and lag["params"]["critics"] == 2 and base["params"]["critics"] == 1
    # The same 0.5B critic twice, and a 0.5B cost model beside the 0.5B reward model, all from the known shapes.
    assert s["cost critic weights"] == s["critic weights"] == b["critic weights"]
    assert s["cost critic trainable state (grads + AdamW)"] == b["critic trainable state (grads + AdamW)"]
    assert s["cost model"] == b["reward model"] and lag["params"]["cost"] == base["params"]["reward"]
    critic_acts = base["training_detail_bytes"]["critic activations"]
    assert lag["training_detail_bytes"]["critic activations"] == 2 * critic_acts
    # Training is the largest phase in both plans: the peak grows by exactly the additions.
    assert max(lag["phase_bytes"], key=lag["phase_bytes"].get) == "training"
    added = s["cost critic weights"] + s["cost critic trainable state (grads + AdamW)"] + s["cost model"] + critic_acts
    assert lag["peak_bytes"] == pytest.approx(base["peak_bytes"] + added)
    assert lag["fits"] and lag["needed_bytes"] < 24 * plan.GIB


def test_plan_of_ppo_lag_without_a_cost_model_is_one_line_error(capsys):
    argv = ["plan", "--config", "recipes/qwen2.5-7b-instruct/ppo_qlora.yaml", "--algorithm", "ppo_lag"]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no cost_model_path; add it, or pass --cost_model_config" in err and len(err.splitlines()) == 1
