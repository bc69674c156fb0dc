"""FLOP counts against hand computation on a tiny config, and against torch's FLOP counter on a real model."""

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

from safety_rlhf import flops

# hidden 8, intermediate 16, 2 layers, 2 heads of 4, 1 KV head (GQA), vocabulary 10
D = flops.Dims(hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, head_dim=4, vocab=10)
# Per token and layer, 2 x in x out: q 8->8, k 8->4, v 8->4, o 8->8, gate 8->16, up 8->16, down 16->8
LINEAR = 2 * 64 + 2 * 32 + 2 * 32 + 2 * 64 + 3 * 2 * 128  # = 1152
# LoRA r = 2 per token and layer, 2 x r x (in + out): q 16, k 12, v 12, o 16, gate 24, up 24, down 24
LORA = 2 * 2 * (16 + 12 + 12 + 16 + 24 + 24 + 24)  # = 512
HEAD = 2 * 8 * 10  # per position


def attention_by_hand(tokens):
    """Q K^T and P V per layer: query t attends to keys 1..t, 2 x (2 heads x 4) FLOPs per key and product."""
    return sum(2 * 2 * 8 * t for t in range(1, tokens + 1))


def tiny_llama():
    config = LlamaConfig(
        vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True, attn_implementation="eager",
    )  # fmt: skip
    return config, LlamaForCausalLM(config)


def test_dims_from_config():
    config, _ = tiny_llama()
    assert flops.Dims.from_config(config) == D
    assert flops.linear_per_token(D) == LINEAR == 1152
    assert flops.lora_per_token(D, 2) == LORA == 512
    assert flops.lora_per_token(D, 2, ("q_proj", "v_proj")) == 2 * 2 * (16 + 12)
    assert flops.attention(D, 3) == attention_by_hand(3) == 192


def test_forward_backward_by_hand():
    # 3 tokens, LM head on the last 2 positions, all 2 layers
    assert flops.forward(D, 3, 2) == 2 * (3 * LINEAR + 192) + 2 * HEAD  # = 7616
    assert flops.forward(D, 3, 2, lora_r=2) == 7616 + 2 * 3 * LORA
    # The top layer only (from a cached hidden state), LoRA on it, a one-output head (a critic) on every position
    assert flops.forward(D, 3, 3, layers=1, lora_r=2, head_outputs=1) == (3 * LINEAR + 192) + 3 * LORA + 3 * 2 * 8
    # LoRA backward: frozen weights 1x, attention 2x, LoRA 2x, the frozen head 1x
    assert flops.backward(D, 3, 2, lora_r=2) == 2 * (3 * LINEAR + 2 * 192) + 2 * 2 * 3 * LORA + 2 * HEAD
    # Full fine-tuning: weights and head 2x (activation and weight gradients), attention 2x
    assert flops.backward(D, 3, 2, full=True) == 2 * (2 * 3 * LINEAR + 2 * 192) + 2 * 2 * HEAD


def test_generation_is_prefill_plus_decode_steps():
    # Prompt of 2, 2 new tokens: the prefill (2 tokens, head on the last) gives token 1; one decode step (token 1,
    # at position 3, against 2 cached keys + itself) gives token 2.
    prefill = 2 * (2 * LINEAR + attention_by_hand(2)) + HEAD
    decode = 2 * (LINEAR + 2 * 2 * 8 * 3) + HEAD
    assert flops.generation(D, 2, 2) == prefill + decode == flops.forward(D, 3, 2)
    assert flops.generation(D, 2, 2, lora_r=2) == prefill + decode + 3 * 2 * LORA
    assert flops.generation(D, 5, 0) == 0


def full_square(tokens):
    """The counter sees eager attention's full (T, T) products, masked afterwards: 2 layers x 2 products."""
    return 2 * 2 * (2 * 8 * tokens * tokens)


def test_forward_and_full_backward_match_torch_flop_counter():
    torch.manual_seed(0)
    config, model = tiny_llama()
    ids = torch.randint(0, 10, (1, 5))
    with FlopCounterMode(display=False) as counter:
        logits = model(ids, logits_to_keep=3).logits
    # Our count is over the causal triangle: swap it for the square the eager implementation computes.
    forward = flops.forward(D, 5, 3) - 2 * flops.attention(D, 5) + full_square(5)
    assert counter.get_total_flops() == forward
    with FlopCounterMode(display=False) as counter:
        model(ids, logits_to_keep=3).logits.sum().backward()
    backward = flops.backward(D, 5, 3, full=True) - 2 * 2 * flops.attention(D, 5) + 2 * full_square(5)
    assert counter.get_total_flops() == forward + backward
    del logits


def test_lora_forward_matches_torch_flop_counter():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    _, model = tiny_llama()
    model = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    ids = torch.randint(0, 10, (1, 4))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, logits_to_keep=1)
    assert counter.get_total_flops() == flops.forward(D, 4, 1, lora_r=2) - 2 * flops.attention(D, 4) + full_square(4)


def test_ppo_update_phases_by_hand():
    critic = flops.Dims(hidden=4, intermediate=8, layers=1, heads=1, kv_heads=1, head_dim=4, vocab=10)
    reward = critic
    prompts, responses = [2, 3], [2, 1]
    lora = flops.ppo_update(D, critic, reward, prompts, responses, num_ppo_epochs=3, lora_r=2)
    gen = flops.generation(D, 2, 2, lora_r=2) + flops.generation(D, 3, 1, lora_r=2)
    assert lora["generation"] == gen
    # No-grad: the reference (adapter off) on 4 tokens / 2 response positions and 4 / 1; the critic, one output
    # everywhere, LoRA'd; log-probs come from generation (no policy pass)
    ref = flops.forward(D, 4, 2) + flops.forward(D, 4, 1)
    values = 2 * flops.forward(critic, 4, 4, head_outputs=1, lora_r=2)
    assert lora["forward"] == ref + values
    assert lora["scoring"] == 2 * flops.forward(reward, 4, 4, head_outputs=1)
    policy_train = sum(flops.forward(D, 4, r, lora_r=2) + flops.backward(D, 4, r, lora_r=2) for r in (2, 1))
    critic_train = 2 * (
        flops.forward(critic, 4, 4, head_outputs=1, lora_r=2) + flops.backward(critic, 4, 4, head_outputs=1, lora_r=2)
    )
    assert lora["optimization"] == 3 * (policy_train + critic_train)

    # Recomputed log-probs add the policy's no-grad pass, adapter on.
    again = flops.ppo_update(D, critic, reward, prompts, responses, lora_r=2, logprobs_from_generation=False)
    assert again["forward"] - lora["forward"] == flops.forward(D, 4, 2, lora_r=2) + flops.forward(D, 4, 1, lora_r=2)

    # trainable_layers = 1: LoRA on the top layer only; the bottom layer runs once (no head), the reference and
    # the PPO epochs run the top layer only.
    top = flops.ppo_update(D, critic, reward, prompts, responses, num_ppo_epochs=3, lora_r=2, trainable_layers=1)
    assert top["generation"] == gen - (2 + 2 - 1 + 3 + 1 - 1) * LORA  # one of two layers adapted, per token run
    bottom = 2 * (4 * LINEAR + 2 * 2 * 8 * 10 // 2)  # two rows of 4 tokens, layer 0, no head
    assert top["forward"] == bottom + (ref - bottom) + values  # bottom + top layer = the full reference
    policy_top = sum(
        flops.forward(D, 4, r, layers=1, lora_r=2) + flops.backward(D, 4, r, layers=1, lora_r=2) for r in (2, 1)
    )
    assert top["optimization"] == 3 * (policy_top + critic_train)
    assert top["optimization"] < lora["optimization"]

    # Full fine-tuning: no adapter anywhere, weight gradients in backward.
    full = flops.ppo_update(D, critic, reward, prompts, responses, num_ppo_epochs=1)
    assert full["optimization"] == sum(
        flops.forward(D, 4, r) + flops.backward(D, 4, r, full=True) for r in (2, 1)
    ) + 2 * (flops.forward(critic, 4, 4, head_outputs=1) + flops.backward(critic, 4, 4, head_outputs=1, full=True))
