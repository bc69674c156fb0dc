"""The GPU memory planner against hand computations and against measured footprints of real (tiny) models."""

import json

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
    # NF4 linears + bf16 embeddings and untied head: between 4 and 6.5 GiB, far below 15 GiB of bf16.
    assert 4 * plan.GIB < p["static_bytes"]["policy weights"] < 6.5 * plan.GIB
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
