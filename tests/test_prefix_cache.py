"""Frozen-prefix caching is exact: bottom once + top K layers give the full model's log-probs, reference log-probs,
LoRA gradients and logits, on left-padded batches of tiny Llama, Mistral and Qwen2 models (fp32 and 4-bit)."""

from contextlib import nullcontext

import pytest
import torch
from helpers import (
    CONFIGS,
    LAYERS,
    RESPONSE,
    TOP,
    VOCAB,
    batch,
    config,
    length_reward,
    make_dataset,
    model_args,
    params,
    tiny_lm,
    with_lora,
)
from transformers import AutoModelForCausalLM, GPT2Config
from trl import ModelConfig

from safety_rlhf import SafetyRLHFError, rollout
from safety_rlhf.config import SafetyPPOConfig
from safety_rlhf.models import load_policy, load_tokenizer, load_value_model
from safety_rlhf.prefix_cache import DecoderSplit, attention_kinds
from safety_rlhf.trainer import SafetyPPOTrainer

TEMPERATURE, TOL = 0.7, 1e-5


def full_logprobs(model, ids, attention_mask, position_ids, responses):
    logits = rollout.response_logits(model, ids, attention_mask, position_ids, RESPONSE)
    return rollout.response_logprobs(logits, responses, TEMPERATURE)


def cached_logprobs(split, hidden, attention_mask, position_ids, responses):
    logits = split.response_logits(hidden, attention_mask, position_ids, RESPONSE)
    return rollout.response_logprobs(logits, responses, TEMPERATURE)


def assert_cached_equals_full(policy, with_reference: bool = False) -> None:
    """The policy's log-probs (and the reference's, adapter off) from the cached path equal the full forward's."""
    ids, attention_mask, position_ids, responses = batch()
    split = DecoderSplit(policy, trainable_layers=TOP)
    with torch.no_grad():
        hidden = split.bottom(ids, attention_mask, position_ids)
        for adapter_off in (False, True) if with_reference else (False,):
            with policy.disable_adapter() if adapter_off else nullcontext():
                torch.testing.assert_close(
                    cached_logprobs(split, hidden, attention_mask, position_ids, responses),
                    full_logprobs(policy, ids, attention_mask, position_ids, responses),
                    atol=TOL,
                    rtol=0,
                )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_policy_and_reference_logprobs_equal_the_full_forward(name):
    policy = with_lora(tiny_lm(name))
    ids, attention_mask, position_ids, responses = batch()
    split = DecoderSplit(policy, trainable_layers=TOP)
    with torch.no_grad():
        hidden = split.bottom(ids, attention_mask, position_ids)
        expected_hidden = policy(
            input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, output_hidden_states=True
        ).hidden_states[LAYERS - TOP]
        torch.testing.assert_close(hidden, expected_hidden, atol=TOL, rtol=0)

        policy_lp = full_logprobs(policy, ids, attention_mask, position_ids, responses)
        torch.testing.assert_close(
            cached_logprobs(split, hidden, attention_mask, position_ids, responses), policy_lp, atol=TOL, rtol=0
        )
        with policy.disable_adapter():
            ref_lp = full_logprobs(policy, ids, attention_mask, position_ids, responses)
            cached_ref_lp = cached_logprobs(split, hidden, attention_mask, position_ids, responses)
        torch.testing.assert_close(cached_ref_lp, ref_lp, atol=TOL, rtol=0)
        assert (policy_lp - ref_lp).abs().max() > 1e-3  # the adapter matters, so the reference check means something


def test_eager_attention_is_exact_too():
    assert_cached_equals_full(with_lora(tiny_lm("qwen2-sliding", attn="eager")))


def test_sliding_window_is_taken_per_layer_index():
    """The top layers of this Qwen2 slide, the bottom ones do not; the window changes the logits at this length."""
    sliding, full = tiny_lm("qwen2-sliding"), tiny_lm("qwen2")
    assert attention_kinds(sliding.config) == ["full_attention"] * 2 + ["sliding_attention"] * 2
    ids, attention_mask, position_ids, _ = batch()
    with torch.no_grad():
        kwargs = dict(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids)
        assert (sliding(**kwargs).logits - full(**kwargs).logits).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["llama", "qwen2-sliding"])
def test_lora_gradients_through_the_cached_path_equal_the_full_forward(name):
    policy = with_lora(tiny_lm(name))
    ids, attention_mask, position_ids, responses = batch()
    weights = torch.linspace(-1.0, 1.0, responses.numel()).view_as(responses) * attention_mask[:, -RESPONSE:]

    def lora_grads(logprobs):
        policy.zero_grad()
        (logprobs * weights).sum().backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}

    policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.train()  # checkpointing is active in training mode; dropout is 0 in these configs
    expected = lora_grads(full_logprobs(policy, ids, attention_mask, position_ids, responses))
    split = DecoderSplit(policy, trainable_layers=TOP)
    with torch.no_grad():
        hidden = split.bottom(ids, attention_mask, position_ids)
    got = lora_grads(cached_logprobs(split, hidden, attention_mask, position_ids, responses))
    assert len(got) == 2 * 3 * TOP  # lora_A and lora_B of 3 modules in each top layer
    assert all(g.abs().max() > 0 for g in expected.values())
    for name_ in expected:
        torch.testing.assert_close(got[name_], expected[name_], atol=TOL, rtol=0)


def test_logits_to_keep():
    policy = with_lora(tiny_lm("llama"))
    ids, attention_mask, position_ids, _ = batch()
    split = DecoderSplit(policy, trainable_layers=TOP)
    with torch.no_grad():
        full = policy(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids).logits
        hidden = split.bottom(ids, attention_mask, position_ids)
        everything = split.top(hidden, attention_mask, position_ids)
        last3 = split.top(hidden, attention_mask, position_ids, logits_to_keep=3)
    assert everything.shape == full.shape and last3.shape == (3, 3, VOCAB)
    torch.testing.assert_close(everything, full, atol=TOL, rtol=0)
    torch.testing.assert_close(last3, full[:, -3:], atol=TOL, rtol=0)


def test_all_layers_trainable_caches_only_the_embedding():
    policy = with_lora(tiny_lm("llama"), layers=range(LAYERS))
    ids, attention_mask, position_ids, _ = batch()
    split = DecoderSplit(policy, trainable_layers=LAYERS)
    with torch.no_grad():
        hidden = split.bottom(ids, attention_mask, position_ids)
        full = policy(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids).logits
        torch.testing.assert_close(split.top(hidden, attention_mask, position_ids), full, atol=TOL, rtol=0)


def test_unsupported_models_and_bad_sizes_fail_clearly():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB))
    with pytest.raises(SafetyRLHFError, match="does not support GPT2LMHeadModel"):
        DecoderSplit(gpt2, trainable_layers=1)
    policy = with_lora(tiny_lm("llama"))
    for bad in (0, LAYERS + 1):
        with pytest.raises(SafetyRLHFError, match=f"trainable_layers={bad} is outside 1..{LAYERS}"):
            DecoderSplit(policy, trainable_layers=bad)
    # LoRA on layer 1 would be cached with the adapter on, then reused for the reference: refused.
    with pytest.raises(SafetyRLHFError, match="layers.1.*is below the top 2 layers"):
        DecoderSplit(with_lora(tiny_lm("llama"), layers=(1, 2, 3)), trainable_layers=TOP)
    with pytest.raises(SafetyRLHFError, match="trainable_layers=0 must be at least 1"):
        SafetyPPOConfig(output_dir="unused", trainable_layers=0)


def lora_layer_indices(model) -> set[int]:
    return {
        int(name.split(".layers.")[1].split(".")[0]) for name, _ in model.named_modules() if name.endswith("lora_A")
    }


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], "all-linear"])
def test_trainable_layers_restricts_lora_to_the_top_layers(tiny_models, targets):
    margs = ModelConfig(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", use_peft=True, lora_target_modules=targets
    )
    tokenizer = load_tokenizer(margs)
    n_layers = 2  # the session's tiny Qwen2 policy
    assert lora_layer_indices(load_policy(margs, tokenizer)) == {0, 1}
    policy = load_policy(margs, tokenizer, trainable_layers=1)
    assert lora_layer_indices(policy) == {1}
    names = {name.rsplit(".", 2)[-2] for name, _ in policy.named_modules() if name.endswith("lora_A")}
    if targets == "all-linear":
        assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with pytest.raises(SafetyRLHFError, match=f"trainable_layers=3 is outside 1..{n_layers}"):
        load_policy(margs, tokenizer, trainable_layers=3)
    # TRL turns a one-element list into a string, which PEFT reads as a regex; with trainable_layers it is a name.
    one = ModelConfig(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", use_peft=True, lora_target_modules=["q_proj"]
    )
    assert lora_layer_indices(load_policy(one, tokenizer, trainable_layers=1)) == {1}
    no_lora = ModelConfig(model_name_or_path=str(tiny_models["policy"]), dtype="float32")
    with pytest.raises(SafetyRLHFError, match="use_peft is off"):
        load_policy(no_lora, tokenizer, trainable_layers=1)


def test_four_bit_model_is_exact(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    # bitsandbytes' CPU weight packing needs at least 32 output features per projection (k_proj: 2 heads x 16).
    tiny_lm("llama", hidden_size=64, intermediate_size=128).save_pretrained(tmp_path)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=quantization, device_map={"": "cpu"})
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert_cached_equals_full(with_lora(model), with_reference=True)


def test_ppo_with_the_cached_prefix_equals_the_uncached_run(tiny_models, tmp_path):
    """Same LoRA layout (the top layer only), same seed: caching the bottom layer (trainable_layers=1) or running the
    whole model in every pass gives the same metrics and weights, over 2 updates of 2 epochs with accumulation."""
    runs = {}
    for cached in (True, False):
        torch.manual_seed(0)  # the same LoRA A initialisation in both runs
        margs = model_args(tiny_models["policy"], use_peft=True, lora_r=8, lora_target_modules=["q_proj", "v_proj"])
        tokenizer = load_tokenizer(margs)
        policy = load_policy(margs, tokenizer, trainable_layers=1)
        value = load_value_model(str(tiny_models["policy"]), margs, tokenizer)
        args = config(
            tmp_path / str(cached), trainable_layers=1 if cached else None, logprobs_from_generation=False,
            stop_token=None, stop_token_id=356,  # sampled in 2 of the 8 first rows: responses of different lengths
        )  # fmt: skip
        trainer = SafetyPPOTrainer(args, tokenizer, policy, value, length_reward, make_dataset(tokenizer))
        assert (trainer.model.split is not None) == cached
        runs[cached] = (trainer.train(), params(trainer.model))
    (cached, cached_params), (full, full_params) = runs[True], runs[False]
    assert 0 < full[0]["val/num_eos_tokens"] < 8
    for step_cached, step_full in zip(cached, full, strict=True):
        for key, value in step_full.items():
            if not key.startswith("time/") and key != "eps":
                # abs 1e-6: `objective/kl` is a sum of log-prob differences near 0 (3e-5 here), each log-prob of
                # size ~1-10, so float32 rounding between the two paths shows at ~4e-7 there and nowhere else.
                assert step_cached[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for name in full_params:
        torch.testing.assert_close(cached_params[name], full_params[name], rtol=1e-5, atol=1e-7, msg=name)
