"""The critic, V(s_t): a separate backbone, a head on the policy's own trunk, or a small critic on the cached prefix.

Every critic is called the same way, by `rollout.logits_and_values` (step 2, no grad, and each PPO micro-batch):

    values = critic(input_ids, attention_mask, position_ids, response_length, hidden=hidden, trunk=trunk)  # (B, R)

V(s_t) at the R positions that predicted the response tokens. `hidden` is the cached output (B, T, d) of the
policy's frozen bottom layers (`prefix_cache.DecoderSplit.bottom`, `trainable_layers`), `trunk` the input of the
policy's LM head in the same forward pass that gave the logits (its final hidden state, after the final norm, on the
positions whose logits are computed); a critic reads what it needs and `reads_policy` says whether it needs `trunk`.

    critic: separate  `ValueModel`: a backbone of its own (`value_model_path`) and a linear head. Costs a full model
                      pass per rollout and a forward + backward per micro-batch; shares nothing with the policy.
    critic: shared    `SharedValueHead`: a linear head on the policy's final hidden state, as TRL's old
                      `AutoModelForCausalLMWithValueHead`. No model of its own: the policy's forward gives both, and
                      the value loss also trains the policy's trainable weights (its LoRA) through the trunk.
    critic: prefix    `PrefixCritic`: its own trainable copy of the policy's top `critic_layers` decoder layers, the
                      final norm and a linear head, run on the cached prefix state (needs `trainable_layers`); it
                      never runs the bottom layers and does not touch the policy's weights.

Departures and choices:
    1. The shared head reads the LM head's input through a forward pre-hook held only while the policy pass that
       gives the values runs: the model keeps its own forward (no `output_hidden_states`, which keeps every layer's
       output), the LM head still runs on the response positions only, and the reference pass (adapter off) and
       `generate` are never read.
    2. With `critic_layers` K' < `trainable_layers` K, `PrefixCritic` copies the policy's top K' layers (L-K' .. L-1)
       and runs them on the state entering layer L-K: it skips the K-K' layers between, as a residual stream
       tolerates, and trains from there. K' = K (the default) gives at initialisation the policy's own top function.
    3. `PrefixCritic`'s copies are taken from the policy's base weights (LoRA wrappers dropped; 4-bit bitsandbytes
       layers dequantized) and are trainable in full, in fp32 whatever the policy's dtype (under bf16 autocast they
       compute in bf16): K' layers of a 7B model cost their fp32 weights, gradients and AdamW state (16 bytes a
       parameter): keep K' small there.
"""

import copy
import json
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from safetensors.torch import save_file

from .prefix_cache import DecoderSplit, causal_lm_of

CRITICS = ("separate", "shared", "prefix")


def zero_head(hidden_size: int) -> torch.nn.Linear:
    """A linear head that starts at V = 0 everywhere: the first advantages are the returns themselves."""
    head = torch.nn.Linear(hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def read_head(head: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """Values (B, R) from a value head, computed in its own dtype (fp32) even under bf16 autocast: a bf16 value would
    round the returns it regresses on to 1/256 of their size."""
    with torch.autocast(hidden.device.type, enabled=False):
        return head(hidden.to(head.weight.dtype)).squeeze(-1)


def save_state(module: torch.nn.Module, path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, path)


class ValueModel(torch.nn.Module):
    """`critic: separate`. A transformer backbone reading the policy's tokens and a linear head.

    It is a separate model, not a second adapter on the policy's base: PEFT switches adapters through global state,
    which gradient checkpointing would read at recomputation time (in backward), i.e. with the wrong adapter active.
    A separate backbone can be much smaller than the policy (same tokenizer required), 4-bit and LoRA'd like it.
    """

    HEAD_FILE = "value_head.safetensors"
    reads_policy = False

    def __init__(self, backbone: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = zero_head(hidden_size)

    def forward(self, input_ids, attention_mask, position_ids, response_length: int, hidden=None, trunk=None):
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        hidden = hidden[:, -response_length - 1 : -1]  # (B, R, d)
        return read_head(self.head, hidden)

    def save_pretrained(self, path) -> None:
        self.backbone.save_pretrained(path)
        save_state(self.head, Path(path) / self.HEAD_FILE)


class SharedValueHead(torch.nn.Module):
    """`critic: shared`. A linear head on the policy's final hidden state (after the final norm): the policy's
    forward gives logits and values together. Its only parameters are the head's; the trunk is the policy's."""

    HEAD_FILE = ValueModel.HEAD_FILE
    reads_policy = True

    def __init__(self, hidden_size: int):
        super().__init__()
        self.head = zero_head(hidden_size)

    @staticmethod
    @contextmanager
    def reading(policy):
        """Inside, the policy's LM head records its input, (B, T', d) on the T' positions whose logits are computed;
        yields the list it appends to."""
        seen = []
        lm_head = causal_lm_of(policy).get_output_embeddings()
        hook = lm_head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        try:
            yield seen
        finally:
            hook.remove()

    def forward(self, input_ids, attention_mask, position_ids, response_length: int, hidden=None, trunk=None):
        trunk = trunk[:, -response_length - 1 : -1]  # (B, R, d)
        return read_head(self.head, trunk)

    def save_pretrained(self, path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        save_state(self, Path(path) / self.HEAD_FILE)


class PrefixCritic(torch.nn.Module):
    """`critic: prefix`. Its own trainable copy of the policy's top `critic_layers` decoder layers, final norm and a
    linear head, run on the cached prefix state `output_hidden_states[L-K]` (K = `trainable_layers`).

    Args:
        policy: the policy (a Llama, Mistral or Qwen2 causal LM or a `PeftModel` around one), LoRA on the top K only.
        trainable_layers (`int`): = K, where the cached prefix ends.
        critic_layers (`int` or `None`, *optional*, defaults to `trainable_layers`): = K', 1 <= K' <= K.
    """

    FILE = "prefix_critic.safetensors"
    reads_policy = False

    def __init__(self, policy, trainable_layers: int, critic_layers: int | None = None):
        super().__init__()
        self.split = DecoderSplit(policy, trainable_layers)  # a plain object: the policy's modules stay its own
        n_layers = len(self.split.layers)
        self.critic_layers = critic_layers or trainable_layers
        self.indices = range(n_layers - self.critic_layers, n_layers)
        # Trained weights stay fp32 whatever the policy's dtype: under bf16 autocast they compute in bf16, and AdamW
        # updates fp32 masters (a bf16 weight rounds away updates below 1/256 of its size).
        self.layers = torch.nn.ModuleList(trainable_copy(self.split.layers[i]).float() for i in self.indices)
        self.norm = trainable_copy(self.split.norm).float()
        self.head = zero_head(self.split.config.hidden_size)

    def forward(self, input_ids, attention_mask, position_ids, response_length: int, hidden=None, trunk=None):
        if hidden is None:
            with torch.no_grad():
                hidden = self.split.bottom(input_ids, attention_mask, position_ids)
        layers = dict(zip(self.indices, self.layers, strict=True))
        hidden = self.split.run_layers(hidden, self.indices, attention_mask, position_ids, layers=layers)
        hidden = self.norm(hidden[:, -response_length - 1 : -1])  # (B, R, d)
        return read_head(self.head, hidden)

    def save_pretrained(self, path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        save_state(self, Path(path) / self.FILE)
        layout = {"critic": "prefix", "policy_layers": list(self.indices), "reads_hidden_state": self.split.boundary}
        (Path(path) / "prefix_critic.json").write_text(json.dumps(layout, indent=2) + "\n")


class RewardAndCostCritics(torch.nn.Module):
    """`algorithm: ppo_lag`: the reward critic and the cost critic (two critics of the same option, each with its own
    parameters and head), called as one: values (B, R, 2), [..., 0] for the reward and [..., 1] for the cost.

    `save_critics` writes them to two folders, `value/` (the reward critic, as in `ppo`) and `cost_value/`.
    """

    def __init__(self, reward: torch.nn.Module, cost: torch.nn.Module):
        super().__init__()
        self.reward = reward
        self.cost = cost
        self.reads_policy = reward.reads_policy or cost.reads_policy

    def reading(self, policy):
        return SharedValueHead.reading(policy)

    def forward(self, input_ids, attention_mask, position_ids, response_length: int, hidden=None, trunk=None):
        args = (input_ids, attention_mask, position_ids, response_length)
        return torch.stack(
            [self.reward(*args, hidden=hidden, trunk=trunk), self.cost(*args, hidden=hidden, trunk=trunk)], -1
        )


def save_critics(critic: torch.nn.Module, run_dir) -> None:
    """The critic in `run_dir/value`; a `RewardAndCostCritics` also writes its cost critic to `run_dir/cost_value`."""
    if isinstance(critic, RewardAndCostCritics):
        critic.reward.save_pretrained(Path(run_dir) / "value")
        critic.cost.save_pretrained(Path(run_dir) / "cost_value")
    else:
        critic.save_pretrained(Path(run_dir) / "value")


def reading(critic, policy):
    """The context in which the policy's forward pass also gives `critic` its trunk state (None if it needs none)."""
    return critic.reading(policy) if critic.reads_policy else nullcontext()


def trainable_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A trainable copy of a policy module's base weights: PEFT LoRA wrappers replaced by their base layer, 4-bit
    (bitsandbytes) linear layers by a dequantized `nn.Linear` in their compute dtype."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    memo = {}  # deepcopy puts these in place of the modules with these ids
    for m in module.modules():
        base = m.get_base_layer() if isinstance(m, BaseTunerLayer) else m
        if type(base).__name__ == "Linear4bit":
            memo[id(m)] = dequantized(base)
        elif base is not m:
            memo[id(m)] = copy.deepcopy(base)
    out = copy.deepcopy(module, memo)
    return out.requires_grad_(True)


def dequantized(layer) -> torch.nn.Linear:
    import bitsandbytes.functional as bnbf

    weight = bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(layer.compute_dtype or torch.float32)
    out = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=weight.device)
    out = out.to(weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if layer.bias is not None:
            out.bias.copy_(layer.bias)
    return out
