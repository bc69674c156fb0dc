"""Matrix-product FLOPs of a decoder-only causal LM, and of each phase of one PPO update, counted from shapes.

    dims = Dims.from_config(AutoConfig.from_pretrained("models/smollm2-135m-instruct"))
    forward(dims, tokens=102, head_positions=48)        # one sequence: trunk over 102 tokens, LM head on 48
    backward(dims, tokens=102, head_positions=48, lora_r=16)
    generation(dims, prompt_tokens=54, new_tokens=48, lora_r=16)
    ppo_update(policy=dims, critic=dims, reward=dims, prompt_lengths=[...], response_lengths=[...], lora_r=16)

What is counted: every matrix product at 2 FLOPs per multiply-add. Per token and decoder layer, the linear layers
q, k, v, o (GQA-aware: k and v project to `kv_heads x head_dim`) and the gated MLP's gate, up and down; per
sequence of T tokens and layer, the attention scores Q K^T and the context P V over the causal triangle (position t
attends to t keys: 2 x 2 x heads x head_dim x T(T+1)/2 for both); the LM head (hidden x outputs) on the positions
whose outputs are kept; LoRA's two low-rank products (r x (in + out)) per adapted linear layer. Not counted:
embeddings lookups, norms, softmax, rotary embeddings, activation functions, the optimizer step (all elementwise:
time spent there is time no matrix product needs).

Departures from an exact count, each small:
    1. Useful FLOPs only: each row's own tokens (its prompt and its response), not the padded (B, T) rectangle a
       batch computes, nor the steps a finished row keeps generating while others go on. Padding is time no FLOP
       needs, so it shows up as lower utilisation, not as FLOPs.
    2. Backward: a frozen linear layer needs only the activation gradient (1x its forward), a trained one also the
       weight gradient (2x); attention scores and context need the gradients of both operands (2x); LoRA's products
       2x. Layer 0's activation gradient, which nothing below needs under LoRA, is counted anyway (1/L of it).
    3. The reward model is counted on the rollout's token counts (it re-tokenizes the decoded text with its own
       tokenizer, which may give a few tokens more or less), its one-output head on every position.
    4. The value head's weight gradient (2 x hidden per token) is left out: it is under 0.01% of the critic.
"""

from dataclasses import dataclass

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PHASES = ("generation", "forward", "scoring", "optimization")


@dataclass(frozen=True)
class Dims:
    """The shapes of a decoder-only transformer that its matrix products depend on."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> "Dims":
        """From a transformers config (Llama, Mistral, Qwen2 and others with the same field names)."""
        heads = config.num_attention_heads
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            vocab=config.vocab_size,
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }


def linear_per_token(d: Dims) -> int:
    """FLOPs of one decoder layer's linear layers for one token: 2 x (in x out) each."""
    return sum(2 * n_in * n_out for n_in, n_out in d.linear_shapes().values())


def lora_per_token(d: Dims, r: int, targets=LINEARS) -> int:
    """FLOPs of one decoder layer's LoRA products for one token: x A (in -> r) and (x A) B (r -> out) per target."""
    return sum(2 * r * (n_in + n_out) for name, (n_in, n_out) in d.linear_shapes().items() if name in targets)


def attention(d: Dims, tokens: int) -> int:
    """FLOPs of one layer's Q K^T and P V over a causal sequence of `tokens`: position t attends to t keys."""
    return 2 * 2 * d.heads * d.head_dim * tokens * (tokens + 1) // 2


def forward(d: Dims, tokens: int, head_positions: int, layers: int | None = None, lora_r: int = 0,
            lora_layers: int | None = None, head_outputs: int | None = None, lora_targets=LINEARS) -> int:  # fmt: skip
    """One causal sequence of `tokens` through `layers` decoder layers (default: all; fewer = the top layers run from
    a cached hidden state), then a head of `head_outputs` (default: the vocabulary) on `head_positions` positions.

    LoRA of rank `lora_r` adapts `lora_layers` of those layers (default: all that run).
    """
    layers = d.layers if layers is None else layers
    lora_layers = layers if lora_layers is None else lora_layers
    head_outputs = d.vocab if head_outputs is None else head_outputs
    trunk = layers * (tokens * linear_per_token(d) + attention(d, tokens))
    adapter = lora_layers * tokens * lora_per_token(d, lora_r, lora_targets) if lora_r else 0
    return trunk + adapter + 2 * d.hidden * head_outputs * head_positions


def backward(d: Dims, tokens: int, head_positions: int, layers: int | None = None, lora_r: int = 0,
             lora_layers: int | None = None, head_outputs: int | None = None, full: bool = False,
             lora_targets=LINEARS) -> int:  # fmt: skip
    """The backward pass of `forward` with the same arguments.

    LoRA (`full=False`): activation gradients through the frozen weights (1x their forward), attention 2x, LoRA's
    products 2x (activation and weight gradients). Full fine-tuning (`full=True`): weights 2x, attention 2x.
    """
    layers = d.layers if layers is None else layers
    lora_layers = layers if lora_layers is None else lora_layers
    head_outputs = d.vocab if head_outputs is None else head_outputs
    weights = 2 if full else 1
    trunk = layers * (weights * tokens * linear_per_token(d) + 2 * attention(d, tokens))
    adapter = 2 * lora_layers * tokens * lora_per_token(d, lora_r, lora_targets) if lora_r else 0
    return trunk + adapter + weights * 2 * d.hidden * head_outputs * head_positions


def generation(d: Dims, prompt_tokens: int, new_tokens: int, lora_r: int = 0, lora_layers: int | None = None,
               lora_targets=LINEARS) -> int:  # fmt: skip
    """Sampling `new_tokens` after a prompt with a KV cache, one sequence.

    The prefill runs the prompt and gives the first token; each later step runs one token (the previous one)
    against the cached keys. So the trunk sees prompt + new - 1 tokens, position t attending to t keys as in a
    causal forward of that length, and the LM head runs once per new token.
    """
    if new_tokens < 1:
        return 0
    return forward(d, prompt_tokens + new_tokens - 1, new_tokens, lora_r=lora_r, lora_layers=lora_layers,
                   lora_targets=lora_targets)  # fmt: skip


def ppo_update(policy: Dims, critic: Dims, reward: Dims, prompt_lengths, response_lengths, num_ppo_epochs: int = 4,
               lora_r: int = 0, trainable_layers: int | None = None, logprobs_from_generation: bool = True,
               lora_targets=LINEARS) -> dict[str, int]:  # fmt: skip
    """FLOPs of each phase of one PPO update of `safety_rlhf.trainer`, from the rows' prompt and response lengths.

    generation    the policy samples each response (KV cache), LoRA on
    forward       no grad: the policy's log-probs (only with `logprobs_from_generation=False`), the reference's
                  (the policy with its adapter off under LoRA, a frozen copy otherwise) and the critic's values;
                  with `trainable_layers` K the bottom L - K layers run once, then the policy and the reference
                  run the top K layers only
    scoring       the reward model over prompt + response, a one-output head
    optimization  `num_ppo_epochs` forward + backward passes of the policy (LM head on the response positions;
                  the top K layers only with `trainable_layers`) and of the critic (its own backbone, one-output
                  head on every position; LoRA'd like the policy when `lora_r` is set, else fully trained)
    """
    full = not lora_r
    top = policy.layers if trainable_layers is None else trainable_layers
    out = dict.fromkeys(PHASES, 0)
    for p, r in zip(prompt_lengths, response_lengths, strict=True):
        t = p + r
        out["generation"] += generation(policy, p, r, lora_r, top, lora_targets)
        if trainable_layers is None:
            rollout = forward(policy, t, r)  # the reference: adapter off, or a frozen copy
            if not logprobs_from_generation:
                rollout += forward(policy, t, r, lora_r=lora_r, lora_targets=lora_targets)
        else:
            rollout = forward(policy, t, 0, layers=policy.layers - top)  # the cached bottom, once
            rollout += forward(policy, t, r, layers=top)  # reference: the top with the adapter off
            if not logprobs_from_generation:
                rollout += forward(policy, t, r, layers=top, lora_r=lora_r, lora_targets=lora_targets)
        out["forward"] += rollout + forward(critic, t, t, head_outputs=1, lora_r=lora_r, lora_targets=lora_targets)
        out["scoring"] += forward(reward, t, t, head_outputs=1)
        policy_kw = dict(layers=top, lora_r=lora_r, lora_targets=lora_targets)
        critic_kw = dict(head_outputs=1, lora_r=lora_r, lora_targets=lora_targets)
        out["optimization"] += num_ppo_epochs * (
            forward(policy, t, r, **policy_kw) + backward(policy, t, r, full=full, **policy_kw)
            + forward(critic, t, t, **critic_kw) + backward(critic, t, t, full=full, **critic_kw)
        )  # fmt: skip
    return out
