"""`dtype: native` (`safety_rlhf.precision`): bf16 where the CPU computes it natively, fp32 with a line elsewhere; a
bf16 PPO run whose first update has ratio 1 and KL 0; fp32 trained weights; the merge of a bf16-trained warm start.

The CPU's features are patched, so every branch runs on any machine (bf16 itself runs everywhere, emulated or not).
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from safety_rlhf import SafetyRLHFError, precision, rollout, sft
from safety_rlhf.cli import main
from safety_rlhf.config import ModelArguments, SafetyPPOConfig, ScriptArguments
from safety_rlhf.critics import PrefixCritic
from safety_rlhf.evaluate import EvalArguments
from safety_rlhf.models import load_policy, load_tokenizer
from tests.helpers import HERE, needs_smollm2

ROOT = HERE.parent


def cpu_without_cuda(monkeypatch, avx512_bf16: bool, rates: tuple[float, float] | None = None) -> None:
    """No CUDA; a CPU with or without AVX512-BF16 (never AMX), whose matmuls run at `rates` (bf16, fp32) GFLOP/s."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    if rates is not None:
        monkeypatch.setattr(precision, "cpu_bf16_rates", lambda: rates)


@pytest.fixture
def native_cpu(monkeypatch):
    """A CPU with AVX512-BF16 that multiplies bf16 at 2.5x its fp32 rate."""
    cpu_without_cuda(monkeypatch, True, (400.0, 160.0))


@pytest.fixture
def slow_bf16_cpu(monkeypatch):
    """A CPU with AVX512-BF16 whose bf16 matmuls run slower than its fp32 ones."""
    cpu_without_cuda(monkeypatch, True, (101.0, 169.0))


@pytest.fixture
def old_cpu(monkeypatch):
    """A CPU with neither AVX512-BF16 nor AMX."""
    cpu_without_cuda(monkeypatch, False)


def ppo_config(tmp_path, **kw):
    return SafetyPPOConfig(output_dir=str(tmp_path / "run"), use_cpu=True, per_device_train_batch_size=4,
                           gradient_accumulation_steps=2, **kw)  # fmt: skip


def test_native_cpu_loads_frozen_weights_in_bf16_and_trains_under_autocast(native_cpu, tmp_path, capsys):
    lora = ModelArguments(model_name_or_path="m", dtype="native", use_peft=True)
    args = ppo_config(tmp_path)
    assert not args.bf16
    assert precision.resolve(lora, args, what="ppo") == "bfloat16"
    assert lora.dtype == "bfloat16" and args.bf16 and args.mixed_precision == "bf16"
    line = capsys.readouterr().out
    assert "ppo: dtype native -> bf16 (native on" in line and "AVX512-BF16" in line and "fp32 trained ones" in line
    full = ModelArguments(model_name_or_path="m", dtype="native")  # a full fine-tune: its weights are trained
    args = ppo_config(tmp_path)
    assert precision.resolve(full, args) == "float32" and args.bf16
    assert "fp32 weights, under bf16 autocast" in capsys.readouterr().out


def test_a_cpu_without_native_bf16_falls_back_to_fp32_with_one_line(old_cpu, tmp_path, capsys):
    model_args = ModelArguments(model_name_or_path="m", dtype="native", use_peft=True)
    args = ppo_config(tmp_path)
    assert precision.resolve(model_args, args, what="sft") == "float32"
    assert model_args.dtype == "float32" and not args.bf16
    assert capsys.readouterr().out.strip() == (
        "sft: dtype native -> float32: this CPU has neither AVX512-BF16 nor AMX, where bf16 is emulated and slower "
        "than fp32"
    )
    forced = ModelArguments(model_name_or_path="m", dtype="native", use_peft=True)
    args = ppo_config(tmp_path, bf16=True)  # bf16 asked for explicitly: kept, though emulated
    assert precision.resolve(forced, args) == "bfloat16" and args.bf16
    assert "emulated" in capsys.readouterr().out
    assert EvalArguments(output_dir=str(tmp_path), dtype="native").dtype == "float32"


def test_bf16_instructions_that_run_slower_than_fp32_fall_back_to_fp32_naming_both_rates(slow_bf16_cpu, tmp_path,
                                                                                         capsys):  # fmt: skip
    model_args = ModelArguments(model_name_or_path="m", dtype="native", use_peft=True)
    args = ppo_config(tmp_path)
    assert precision.resolve(model_args, args, what="sft") == "float32" and not args.bf16
    line = capsys.readouterr().out.strip()
    assert line.startswith("sft: dtype native -> float32: this CPU has bf16 instructions but multiplied bf16 at 101 ")
    assert "against 169 in fp32" in line and "1.2x" in line
    assert EvalArguments(output_dir=str(tmp_path), dtype="native").dtype == "float32"
    assert precision.describe(cpu=True).endswith("(matmul bf16 101 / fp32 169 GFLOP/s) (bf16 not chosen)")


def test_trls_default_bf16_is_not_a_request(old_cpu, tmp_path, capsys):
    """TRL's configs (SFT, reward, GRPO) turn an unset `bf16` into True; `resolve` still falls back to fp32 where bf16
    is not chosen, and an explicit `dtype: float32` trains in fp32, not under bf16 autocast."""
    from reward.train import SafetyRewardConfig
    from safety_rlhf.grpo import SafetyGRPOConfig
    from safety_rlhf.sft import SafetySFTConfig

    for config in (SafetySFTConfig, SafetyRewardConfig, SafetyGRPOConfig):
        unset = config(output_dir=str(tmp_path / "a"), use_cpu=True)
        assert unset.bf16 and unset.bf16_requested is None  # TRL's default
        margs = ModelArguments(model_name_or_path="m", dtype="native", use_peft=True)
        assert precision.resolve(margs, unset) == "float32" and not unset.bf16 and unset.mixed_precision == "no"
        fp32 = config(output_dir=str(tmp_path / "b"), use_cpu=True)
        assert precision.resolve(ModelArguments(model_name_or_path="m", dtype="float32"), fp32) == "float32"
        assert not fp32.bf16
        asked = config(output_dir=str(tmp_path / "c"), use_cpu=True, bf16=True)
        margs = ModelArguments(model_name_or_path="m", dtype="native", use_peft=True)
        assert precision.resolve(margs, asked) == "bfloat16" and asked.bf16 and "emulated" in capsys.readouterr().out
        kept = config(output_dir=str(tmp_path / "d"), use_cpu=True, bf16=True)
        assert precision.resolve(ModelArguments(model_name_or_path="m", dtype="float32"), kept) == "float32"
        assert kept.bf16  # asked for: fp32 weights under bf16 autocast


def test_the_bf16_and_fp32_rates_are_measured_once_per_thread_count(monkeypatch):
    monkeypatch.setattr(precision, "_MEASURED", {})
    bf16, fp32 = precision.cpu_bf16_rates()
    assert bf16 > 0 and fp32 > 0
    assert precision.cpu_bf16_rates() == (bf16, fp32)  # the same numbers: measured once
    assert list(precision._MEASURED) == [torch.get_num_threads()]


def test_explicit_dtypes_are_left_alone_and_fp16_conflicts(native_cpu, tmp_path):
    for dtype in ("float32", "bfloat16", "auto"):
        model_args = ModelArguments(model_name_or_path="m", dtype=dtype, use_peft=True)
        args = ppo_config(tmp_path)
        assert precision.resolve(model_args, args) == dtype and model_args.dtype == dtype and not args.bf16
    args = ppo_config(tmp_path)
    args.fp16 = True  # (TrainingArguments refuses fp16 on a CPU at construction)
    with pytest.raises(SafetyRLHFError, match="drop --fp16 true or pass --dtype float16"):
        precision.resolve(ModelArguments(model_name_or_path="m", dtype="native"), args)
    assert EvalArguments(output_dir=str(tmp_path), dtype="native").dtype == "bfloat16"


def test_the_command_line_dtype_replaces_the_recipes_native_and_bad_values_name_the_choices(tmp_path, capsys):
    from trl import TrlParser

    from safety_rlhf.demo import RECIPES_ROOT

    recipe = str(RECIPES_ROOT / "smollm2-135m-instruct" / "ppo.yaml")
    types = [ScriptArguments, SafetyPPOConfig, ModelArguments]
    assert TrlParser(types).parse_args_and_config(["--config", recipe])[2].dtype == "native"
    override = TrlParser(types).parse_args_and_config(["--config", recipe, "--dtype", "float32"])
    assert override[2].dtype == "float32" and not override[1].bf16
    assert main(["ppo", "--config", recipe, "--dtype", "bf16", "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "dtype" in err and "'bf16'" in err and "native" in err and not (tmp_path / "x").exists()


def test_bf16_logprobs_are_the_fp32_log_softmax_of_the_same_logits():
    torch.manual_seed(0)
    logits = (3 * torch.randn(3, 5, 40)).to(torch.bfloat16)
    tokens = torch.randint(0, 40, (3, 5))
    expected = torch.log_softmax(logits.float() / 0.7, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    got = rollout.response_logprobs(logits, tokens, 0.7)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # ... as the PPO epochs compute them from the same logits cast to fp32 by accelerate
    torch.testing.assert_close(got, rollout.response_logprobs(logits.float(), tokens, 0.7), rtol=1e-6, atol=1e-6)


def test_prefix_critic_trains_fp32_copies_of_a_bf16_policy(tiny_models):
    margs = ModelArguments(model_name_or_path=str(tiny_models["policy"]), dtype="bfloat16", use_peft=True, lora_r=4,
                           lora_target_modules="all-linear")  # fmt: skip
    policy = load_policy(margs, load_tokenizer(margs), trainable_layers=1)
    assert {p.dtype for p in policy.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in policy.parameters() if p.requires_grad} == {torch.float32}  # LoRA
    critic = PrefixCritic(policy, 1)
    assert {p.dtype for p in critic.parameters()} == {torch.float32}
    ids = torch.randint(3, 100, (2, 12))
    mask, positions = torch.ones_like(ids), torch.arange(12).expand(2, -1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = critic(ids, mask, positions, 4)
    assert values.shape == (2, 4) and values.dtype == torch.float32  # the head reads in fp32 under autocast
    assert critic(ids, mask, positions, 4).dtype == torch.float32  # and runs outside autocast too


def test_native_ppo_first_update_has_ratio_1_and_kl_0_and_saves_fp32_trained_weights(native_cpu, tiny_models,
                                                                                     tmp_path, capsys):  # fmt: skip
    out = tmp_path / "ppo"
    argv = [
        "ppo", "--config", str(ROOT / "recipes" / "tiny" / "ppo.yaml"), "--model_name_or_path",
        str(tiny_models["policy"]), "--reward_model_path", str(tiny_models["classifier"]), "--output_dir", str(out),
        "--max_steps", "2", "--save_steps", "0", "--response_length", "8", "--per_device_train_batch_size", "4",
        "--gradient_accumulation_steps", "2", "--num_mini_batches", "1", "--num_ppo_epochs", "1",
        "--sample_completions", "0", "--dtype", "native", "--use_peft", "true", "--critic", "prefix",
        "--trainable_layers", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "ppo: dtype native -> bf16" in capsys.readouterr().out
    first, second = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # One optimizer step per update: the first update's forward sees the policy that sampled, equal to the reference.
    assert first["objective/kl"] == 0 and first["val/ratio"] == pytest.approx(1.0, abs=1e-4)
    assert first["policy/approxkl_avg"] < 1e-6 and first["nonfinite_update"] == 0
    assert second["objective/kl"] != 0  # the first step moved the policy
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and {t.dtype for t in adapter.values()} == {torch.float32}
    critic = load_file(out / "value" / "prefix_critic.safetensors")
    assert critic and {t.dtype for t in critic.values()} == {torch.float32}
    saved = (out / "config.yaml").read_text()
    assert "dtype: bfloat16" in saved and "bf16: true" in saved  # the resolved precision is what the run records


def test_sft_in_bf16_merges_into_the_fp32_base(native_cpu, tiny_models, tmp_path):
    from safety_rlhf.sft import MERGED_DIR, SafetySFTConfig

    args = SafetySFTConfig(
        output_dir=str(tmp_path / "sft"), use_cpu=True, report_to="none", save_strategy="no",
        gradient_checkpointing=False, max_steps=2, per_device_train_batch_size=8, learning_rate=5e-3,
        max_length=128, seed=0, merge_lora=True,
    )  # fmt: skip
    model_args = ModelArguments(model_name_or_path=str(tiny_models["policy"]), dtype="native", use_peft=True,
                                lora_r=4, lora_target_modules=["q_proj", "v_proj"])  # fmt: skip
    sft.main(ScriptArguments(dataset_name="bundled_warmstart", max_samples=16), args, model_args)
    assert model_args.dtype == "bfloat16" and args.bf16
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "sft" / MERGED_DIR)
    base = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    assert merged.dtype == torch.float32
    # Weights the adapter does not touch keep the fp32 checkpoint's exact values (a bf16 merge would round them).
    untouched = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(merged.state_dict()[untouched], base.state_dict()[untouched])
    assert not torch.equal(base.state_dict()[untouched].bfloat16().float(), base.state_dict()[untouched])
    adapted = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[adapted], base.state_dict()[adapted])  # the trained update is in


@pytest.mark.slow
@needs_smollm2
def test_smollm2_bf16_and_fp32_give_the_same_first_ppo_step(native_cpu, tmp_path_factory):
    """SmolLM2-135M-Instruct, the PPO recipe's policy (LoRA r 16 on the top 4 layers), one batch of 8 prompts with the
    same 32 response tokens: the log-probs and the first PPO step's gradient (ratio 1: the clipped surrogate's gradient
    is the policy gradient) in bf16 (`dtype: native`: bf16 base, fp32 LoRA, bf16 autocast) against fp32."""
    from safety_rlhf import data, ppo_core
    from safety_rlhf.gguf_import import import_gguf

    path, _ = import_gguf(None, str(tmp_path_factory.mktemp("smollm2") / "smollm2"))
    prompts = [row["prompt"] for row in data.load_prompts("bundled", split="train", max_samples=8)]
    results = {}
    for dtype in ("float32", "native"):
        margs = ModelArguments(model_name_or_path=str(path), dtype=dtype, use_peft=True, lora_r=16, lora_alpha=32,
                               lora_target_modules="all-linear")  # fmt: skip
        args = SafetyPPOConfig(output_dir=str(tmp_path_factory.mktemp("out")), use_cpu=True)
        precision.resolve(margs, args)
        tokenizer = load_tokenizer(margs)
        torch.manual_seed(0)  # the same LoRA initialisation in both
        policy = load_policy(margs, tokenizer, trainable_layers=4)
        chats = [[{"role": "user", "content": p}] for p in prompts]
        batch = tokenizer.apply_chat_template(chats, add_generation_prompt=True, padding=True, return_tensors="pt",
                                              return_dict=True)  # fmt: skip
        if dtype == "float32":  # the responses: the fp32 policy's greedy ones, used by both
            with torch.no_grad():
                out = policy.generate(**batch, max_new_tokens=32, min_new_tokens=32, do_sample=False)
            responses = out[:, batch["input_ids"].shape[1] :]
        ids = torch.cat([batch["input_ids"], responses], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(responses)], dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = policy(input_ids=ids, attention_mask=mask).logits[:, -33:-1]
        logprobs = rollout.response_logprobs(logits.float(), responses, 0.7)
        advantages = torch.linspace(-1, 1, logprobs.numel()).reshape(logprobs.shape)
        loss, stats = ppo_core.policy_loss(logprobs, logprobs.detach(), advantages, torch.ones_like(logprobs), 0.2)
        loss.backward()
        grads = {n: p.grad.flatten() for n, p in policy.named_parameters() if p.requires_grad}
        results[dtype] = (logprobs.detach(), torch.cat(list(grads.values())), stats["ratio"].item(), args.bf16)
    (lp32, g32, ratio32, bf16_32), (lp16, g16, ratio16, bf16_16) = results["float32"], results["native"]
    assert not bf16_32 and bf16_16 and ratio32 == ratio16 == 1.0
    difference = (lp16 - lp32).abs()
    print(
        f"log-prob |bf16 - fp32|: mean {difference.mean():.4f}, max {difference.max():.4f}; gradient cosine "
        f"{torch.nn.functional.cosine_similarity(g16, g32, dim=0):.4f}, norm ratio {g16.norm() / g32.norm():.4f}"
    )
    # Measured 2026-12-06: mean 0.023, max 0.154; cosine 0.948, norm ratio 1.0004. bf16 rounds every weight a matmul
    # reads to 8 bits of mantissa (autocast of fp32 weights does the same), hence a direction ~5% off, not 0.1%.
    assert difference.mean() < 0.05 and difference.max() < 0.5
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.9
    assert 0.95 < g16.norm() / g32.norm() < 1.05
