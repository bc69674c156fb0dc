"""`safety-rlhf plan`: estimated peak GPU memory of a PPO or GRPO recipe, per component, and settings that fit a GPU.

    safety-rlhf plan --config recipes/qwen2.5-7b-instruct/ppo_qlora.yaml --gpu_memory_gib 24
    safety-rlhf plan --config recipes/smollm2-135m-instruct/grpo.yaml --reward_model_config minilm --gpu_memory_gib 8
    make plan RECIPE=recipes/qwen2.5-0.5b-instruct/ppo.yaml ARGS="--gpu_memory_gib 16"

Every figure is an estimate from the architecture (parameter counts are exact: the model is built on the `meta`
device from its config) and from the recipe (precision, 4-bit, LoRA, micro-batch, lengths, checkpointing). The
allocated peak is comparable with `torch.cuda.max_memory_allocated`; the fit test adds `reserve_fraction` and
`reserve_gib` for the CUDA context and the allocator's fragmentation. One process's memory: DDP replicates it,
DeepSpeed ZeRO shards the trainable state and (ZeRO-3) the weights, which this plan does not model.

Phases, which do not overlap, so the peak is the static part plus the largest of them:
    generation  KV cache of one chunk (`local_rollout_forward_batch_size` sequences of prompt + response tokens)
    rollout     no-grad forward passes (reference, critic, reward; the policy too without logprobs_from_generation):
                one layer's activations of a chunk, the (chunk, R + 1, V) response logits and their scaled copy
                (fp32 under 4-bit, whose LM head is fp32)
    training    policy and critic activations of one micro-batch, stored for backward (all layers, or only each
                layer's input plus one recomputed layer under gradient checkpointing), and the (micro, R + 1, V)
                logits, their temperature-scaled copy and gradient; under 4-bit, the compute-dtype copy of the fp32
                LM head that autocast keeps for the backward pass

Under 4-bit, the weights that are not quantized (embeddings, LM head, norms) are fp32: peft's
`prepare_model_for_kbit_training` casts them. Checked on an H200 with `benchmarks/recipe_gpu.py` (random weights of
the real shapes): the 7B QLoRA recipe allocated 12.13 GiB at its peak against 12.48 planned (9.18 before these three
terms); the 0.5B bf16 recipe 13.03 GiB against 14.07.

With `trainable_layers` K (LoRA on the top K decoder layers, `safety_rlhf.prefix_cache`), the policy's adapter
covers the top K layers only, the PPO epochs store the policy's activations of those K layers only, and the output
of the frozen bottom layers, a (local_batch_size, prompt + response, hidden) tensor in the compute dtype, is kept
from the rollout passes through the PPO epochs (it counts in both phases). The reference costs no weights under
LoRA, with or without K.

Critics (`critic`, `safety_rlhf.critics`): `separate` is a model of its own (`value_model_path` or the policy's base,
LoRA'd like the policy, plus a head); `shared` is a head on the policy's trunk, so it adds only the head and no
activations (the policy's forward gives the values); `prefix` is a trainable copy of the policy's top
`critic_layers` K' layers and final norm in fp32 (weights, gradients and two AdamW moments) plus a
head, and stores the activations of its K' layers. The no-grad rollout passes are bounded by one layer of the
largest model either way, so they do not change.

PPO-Lagrangian (`algorithm: ppo_lag`) adds the cost model (`cost_model_path`, or `--cost_model_config` before it
exists; frozen, like the reward model) and a second critic of the same kind: twice the critic's weights, trainable
state and training activations.

A GRPO recipe (`algorithm: grpo`, or one that sets `num_generations`) is planned with TRL's `GRPOTrainer` in mind:
no critic; a reference only when `beta` > 0 (none under LoRA: the adapter is switched off; a full copy at the
recipe's dtype otherwise); `per_device_train_batch_size` counts completions (`num_generations` per prompt), and each
process generates its whole share of the generation batch at once (`per_device_train_batch_size *
steps_per_generation` completions), then runs the reference and the loss on micro-batches of
`per_device_train_batch_size`.
"""

import functools
import json
import os
import re
from dataclasses import dataclass, field

import torch

from . import SafetyRLHFError
from .config import check_fields
from .prefix_cache import check_trainable_layers

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 2, "native": 2, None: 4}  # native: bf16 on a GPU
# bitsandbytes NF4 with blocksize 64: 4 bits per weight plus the absmax constants, one per block of 64 (fp32, or 8-bit
# with double quantization, which adds one fp32 constant per 256 blocks).
NF4_BYTES = {False: 0.5 + 4 / 64, True: 0.5 + 1 / 64 + 4 / (64 * 256)}

# Architectures of models a recipe names, for planning without their files (config.json of each Hub repository;
# the Instruct models share their base's architecture).
_QWEN25 = dict(
    model_type="qwen2",
    vocab_size=151936,
    tie_word_embeddings=True,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    torch_dtype="bfloat16",
)
KNOWN_CONFIGS = {
    "qwen2.5-0.5b": dict(_QWEN25, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2),
    "qwen2.5-1.5b": dict(_QWEN25, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2),
    "qwen2.5-3b": dict(_QWEN25, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2),
    "qwen2.5-7b": dict(_QWEN25, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "all-minilm-l6-v2": dict(
        model_type="bert", hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=12,
        vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, torch_dtype="float32",
    ),
}  # fmt: skip
KNOWN_CONFIGS["smollm2-135m"] = dict(
    model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True, max_position_embeddings=8192,
    rope_theta=100000.0, rms_norm_eps=1e-5, torch_dtype="bfloat16",
)  # fmt: skip
KNOWN_CONFIGS["minilm"] = KNOWN_CONFIGS["all-minilm-l6-v2"]


@dataclass
class PlanArguments:
    """Arguments of `safety-rlhf plan` (the recipe itself comes with `--config`)."""

    gpu_memory_gib: float = field(default=24.0, metadata={"help": "Memory of the GPU to plan for, in GiB."})
    reserve_fraction: float = field(default=0.1, metadata={"help": "Share kept free for fragmentation."})
    reserve_gib: float = field(default=0.75, metadata={"help": "GiB kept free for the CUDA context."})
    reward_model_config: str | None = field(
        default=None, metadata={"help": "Architecture of the reward model when its folder does not exist yet."}
    )
    cost_model_config: str | None = field(
        default=None, metadata={"help": "ppo_lag: architecture of the cost model when its folder does not exist yet."}
    )
    json_output: bool = field(default=False, metadata={"help": "Print the plan as one JSON object."})

    def __post_init__(self):
        check_fields(self, positive=("gpu_memory_gib",), at_least_0=("reserve_fraction", "reserve_gib"))
        if self.reserve_fraction >= 1:
            raise SafetyRLHFError(f"reserve_fraction={self.reserve_fraction} must be below 1, e.g. 0.1")


def recipe_algorithm(argv: list[str]) -> str:
    """`ppo`, `ppo_lag` or `grpo`: `algorithm` (command line or recipe) if given, else `grpo` when the recipe or the
    command line sets `num_generations`. Decided before parsing: GRPO recipes have other training arguments."""
    import yaml

    def value(flag: str):
        for i, arg in enumerate(argv):
            if arg == f"--{flag}" and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(f"--{flag}="):
                return arg.split("=", 1)[1]
        return None

    recipe = {}
    if value("config") and os.path.isfile(value("config")):
        with open(value("config"), encoding="utf-8") as f:
            recipe = yaml.safe_load(f) or {}
    algorithm = value("algorithm") or recipe.get("algorithm")
    if algorithm is None:
        algorithm = "grpo" if "num_generations" in recipe or value("num_generations") else "ppo"
    if algorithm not in ("ppo", "ppo_lag", "grpo"):
        raise SafetyRLHFError(f"algorithm={algorithm!r} is not supported; use 'ppo', 'ppo_lag' or 'grpo'")
    return algorithm


# ---------------------------------------------------------------------------------------------------------------------
# Architecture
def known_architecture(name: str) -> str | None:
    """The `KNOWN_CONFIGS` key of a Hub id (`Qwen/Qwen2.5-7B-Instruct`) or of a run folder named after its base
    (`runs/qwen2.5-0.5b/reward`)."""
    key = name.lower().rstrip("/").split("/")[-1].replace("-instruct", "")
    if key in KNOWN_CONFIGS:
        return key
    matches = [k for k in KNOWN_CONFIGS if k in name.lower() and k != "minilm"]
    return max(matches, key=len) if matches else None


def known_config(key: str, **overrides):
    """The transformers config of the `KNOWN_CONFIGS` architecture `key`, with `overrides` on top."""
    from transformers import AutoConfig

    values = {**KNOWN_CONFIGS[key], **overrides}
    return AutoConfig.for_model(values.pop("model_type"), **values)


@functools.lru_cache(maxsize=16)
def resolve_config(name: str, what: str):
    """(transformers config, where it came from): a folder or the Hub cache, then `KNOWN_CONFIGS`, then the Hub."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, local_files_only=True), name
    except (OSError, ValueError) as err:
        error = err
    known = known_architecture(name)
    if known is not None:
        return known_config(known), f"{name} (not on disk; known {known} shapes)"
    if not os.environ.get("HF_HUB_OFFLINE"):
        try:
            return AutoConfig.from_pretrained(name), name
        except (OSError, ValueError) as err:
            error = err
    raise SafetyRLHFError(
        f"{what} {name!r}: no config.json found ({' '.join(str(error).split())[:120]}); pass a model folder or a "
        f"cached Hub id, or a known architecture ({', '.join(sorted(KNOWN_CONFIGS))})"
    )


@functools.lru_cache(maxsize=16)
def meta_model_of(name: str, what: str, causal_lm: bool):
    """`meta_model` of a model named in a recipe (built once per process: the suggestion search reuses it)."""
    return meta_model(resolve_config(name, what)[0], causal_lm)


def meta_model(config, causal_lm: bool = True):
    """The model built on the meta device: exact parameter shapes, no memory."""
    from transformers import AutoModel, AutoModelForCausalLM

    with torch.device("meta"):
        if causal_lm:
            try:
                return AutoModelForCausalLM.from_config(config)
            except ValueError:
                pass
        return AutoModel.from_config(config)


def lora_targets(model, target_modules, trainable_layers: int | None = None) -> list[torch.nn.Linear]:
    """The linear layers PEFT would adapt: `all-linear` = every Linear except the output head; with
    `trainable_layers` K, only those of the top K decoder layers (`layers_to_transform`)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]
    if trainable_layers is not None:
        first = model.config.num_hidden_layers - trainable_layers
        linears = [(n, m) for n, m in linears if (i := re.search(r"\.layers\.(\d+)\.", n)) and int(i[1]) >= first]
    if target_modules in ("all-linear", ["all-linear"]):
        return [m for _, m in linears]
    names = {target_modules} if isinstance(target_modules, str) else set(target_modules or [])
    return [m for n, m in linears if n.split(".")[-1] in names]


@dataclass
class ModelMemory:
    """Bytes of one model's weights and trainable state, and its parameter counts."""

    params: int
    trainable: int
    weight_bytes: float
    state_bytes: float  # gradients and two AdamW moments of the trainable parameters


def model_memory(model, dtype_bytes: int, load_in_4bit: bool, nested: bool, lora_r: int | None,
                 target_modules, trainable: bool, trainable_layers: int | None = None) -> ModelMemory:  # fmt: skip
    """Weights at the recipe's precision (NF4 for the non-head linear layers under 4-bit) and the trainable state.

    Under 4-bit, every weight that is not quantized (embeddings, LM head, norms, biases) is fp32 whatever the
    recipe's dtype: peft's `prepare_model_for_kbit_training`, which our loaders call, casts them (measured on an
    H200: the 7B QLoRA recipe allocated 12.1 GiB where bf16 embeddings and head gave a 9.2 GiB plan).
    Under LoRA the adapter (r x (in + out) per adapted layer) is trained in fp32: 4 bytes of weight, 4 of gradient,
    8 of AdamW moments. Fully trained weights carry a gradient and two moments in their own dtype.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    params = sum(p.numel() for p in model.parameters())
    quantized = 0
    if load_in_4bit:
        quantized = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    weight_bytes = quantized * NF4_BYTES[nested] + (params - quantized) * (4 if load_in_4bit else dtype_bytes)
    if not trainable:
        return ModelMemory(params, 0, weight_bytes, 0.0)
    if lora_r:
        targets = lora_targets(model, target_modules, trainable_layers)
        adapter = sum(lora_r * (m.in_features + m.out_features) for m in targets)
        return ModelMemory(params, adapter, weight_bytes + 4 * adapter, 12 * adapter)
    return ModelMemory(params, params, weight_bytes, 3 * dtype_bytes * params)


def decoder_dims(config) -> dict:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    return {"H": config.hidden_size, "I": config.intermediate_size, "KV": kv, "L": config.num_hidden_layers}


def layer_activation_elements(dims: dict) -> int:
    """Elements stored per token by one decoder layer for backward: norms' inputs and outputs, q, k, v, attention
    output, o-proj input, residual (6 H + 2 KV), and the MLP's gate, up, activation and product (4 I)."""
    return 6 * dims["H"] + 2 * dims["KV"] + 4 * dims["I"]


def training_activation_bytes(dims: dict, tokens: int, act_bytes: int, checkpointing: bool) -> float:
    per_layer = layer_activation_elements(dims)
    if checkpointing:
        return tokens * act_bytes * (dims["L"] * dims["H"] + per_layer)
    return tokens * act_bytes * dims["L"] * per_layer


def planned_scorer(path: str, what: str) -> tuple:
    """(config, where it came from, bytes per weight, `ModelMemory`) of a frozen reward or cost model, its weights at
    its config's dtype (fp32 when it names none)."""
    config, source = resolve_config(path, what)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    dtype_bytes = DTYPE_BYTES.get(str(dtype).replace("torch.", "") if dtype else None, 4)
    memory = model_memory(meta_model_of(path, what, False), dtype_bytes, False, False, None, None, False)
    return config, source, dtype_bytes, memory


def kv_cache_bytes(dims: dict, tokens: int, act_bytes: int) -> float:
    return tokens * dims["L"] * 2 * dims["KV"] * act_bytes


def planned_policy(model_args, policy_config, dtype_bytes: int, lora_r, top: int | None) -> tuple:
    """(meta model, `ModelMemory`) of the trained policy, LoRA on the top `top` layers when set (checked here)."""
    if top is not None:
        if not lora_r:
            raise SafetyRLHFError(
                f"trainable_layers={top} restricts LoRA to the top layers but use_peft is off; pass --use_peft true "
                "or unset trainable_layers"
            )
        check_trainable_layers(top, policy_config.num_hidden_layers)
    policy_model = meta_model_of(model_args.model_name_or_path, "policy", True)
    four_bit, nested = bool(model_args.load_in_4bit), bool(model_args.use_bnb_nested_quant)
    policy = model_memory(policy_model, dtype_bytes, four_bit, nested, lora_r,
                          model_args.lora_target_modules, trainable=True, trainable_layers=top)  # fmt: skip
    return policy_model, policy


# ---------------------------------------------------------------------------------------------------------------------
def estimate(script_args, ppo_args, model_args, plan_args: PlanArguments, micro=None, checkpointing=None,
             chunk=None) -> dict:  # fmt: skip
    """The plan of a recipe (optionally with another micro-batch, checkpointing or rollout chunk): bytes per line."""
    micro = micro or ppo_args.per_device_train_batch_size
    checkpointing = ppo_args.gradient_checkpointing if checkpointing is None else checkpointing
    chunk = min(chunk or ppo_args.local_rollout_forward_batch_size, ppo_args.local_batch_size)
    dtype_bytes = DTYPE_BYTES.get(model_args.dtype, 4)
    lora_r = model_args.lora_r if model_args.use_peft else None
    four_bit, nested = bool(model_args.load_in_4bit), bool(model_args.use_bnb_nested_quant)

    policy_config, policy_source = resolve_config(model_args.model_name_or_path, "policy")
    kind = ppo_args.critic  # separate | shared | prefix (`safety_rlhf.critics`)
    # Only the separate critic reads value_model_path; the others start from the policy.
    critic_path = ppo_args.value_model_path if kind == "separate" and ppo_args.value_model_path else None
    critic_path = critic_path or model_args.model_name_or_path
    critic_config, critic_source = resolve_config(critic_path, "value model")
    reward_path = plan_args.reward_model_config or ppo_args.reward_model_path
    if not reward_path:
        raise SafetyRLHFError("the recipe has no reward_model_path; add it, or pass --reward_model_config")
    reward_config, reward_source, _, reward = planned_scorer(reward_path, "reward model")
    lagrangian = ppo_args.algorithm == "ppo_lag"
    cost_config = cost_source = cost = None
    if lagrangian:
        cost_path = plan_args.cost_model_config or ppo_args.cost_model_path
        if not cost_path:
            raise SafetyRLHFError("the ppo_lag recipe has no cost_model_path; add it, or pass --cost_model_config")
        cost_config, cost_source, _, cost = planned_scorer(cost_path, "cost model")
    n_critics = 2 if lagrangian else 1  # ppo_lag: a reward critic and a cost critic of the same kind

    top = ppo_args.trainable_layers  # = K: LoRA on the top K policy layers, the frozen prefix cached
    policy_model, policy = planned_policy(model_args, policy_config, dtype_bytes, lora_r, top)
    critic_model = meta_model_of(critic_path, "value model", False)
    critic = model_memory(critic_model, dtype_bytes, four_bit, nested, lora_r, model_args.lora_target_modules,
                          trainable=True)  # fmt: skip
    head = critic_config.hidden_size + 1  # the value head, fp32-trained like an adapter
    critic = ModelMemory(critic.params + head, critic.trainable + head, critic.weight_bytes + 4 * head,
                         critic.state_bytes + 12 * head)  # fmt: skip
    critic_layers = None  # = K', the prefix critic's layers
    if kind == "shared":  # a head on the policy's trunk: no model of its own
        critic = ModelMemory(head, head, 4 * head, 12 * head)
    elif kind == "prefix":  # a trainable copy of the top K' layers and the final norm, in fp32
        critic_layers = ppo_args.critic_layers or top
        copied = critic_layers * sum(p.numel() for p in policy_model.model.layers[-1].parameters())
        copied += policy_config.hidden_size  # the final norm
        critic = ModelMemory(copied + head, copied + head, 4 * copied + 4 * head, 12 * copied + 12 * head)
    reference = 0.0 if lora_r else policy.weight_bytes  # LoRA: the same base with the adapter off

    p_dims, c_dims = decoder_dims(policy_config), decoder_dims(critic_config)
    r_dims = decoder_dims(reward_config)
    scorer_dims = [r_dims] + ([decoder_dims(cost_config)] if lagrangian else [])
    prompt, response, vocab = script_args.max_prompt_length, ppo_args.response_length, policy_config.vocab_size
    seq = prompt + response
    act = dtype_bytes  # activations follow the weights' precision (the compute dtype under 4-bit)

    # The bottom layers' output for the whole rollout batch, from the rollout passes to the last PPO epoch.
    prefix = ppo_args.local_batch_size * seq * p_dims["H"] * act if top is not None else 0

    generation = kv_cache_bytes(p_dims, chunk * seq, act) + 3 * chunk * vocab * 4
    # Under 4-bit the LM head is fp32 (`model_memory`): the PPO epochs run under autocast, which keeps a compute-dtype
    # copy of the head for the backward pass. The no-grad passes ran outside autocast (fp32 logits) when the H200
    # figures in the module docstring were measured; they run under it since 2026-12-06 (logits in the compute dtype,
    # log-softmax in fp32 one sequence at a time), so the fp32 term below is an upper bound, not re-measured on a GPU.
    head_fp32 = four_bit and act < 4
    rollout = (
        max(chunk * seq * (2 * d["H"] + d["I"] + 2 * d["KV"]) * act for d in (p_dims, c_dims, *scorer_dims))
        + 2 * chunk * (response + 1) * vocab * (4 if head_fp32 else act)
        + prefix
    )
    trained_dims = p_dims if top is None else {**p_dims, "L": top}  # the PPO epochs run the top K layers only
    training_policy = training_activation_bytes(trained_dims, micro * seq, act, checkpointing)
    training_critic = training_activation_bytes(c_dims, micro * seq, act, checkpointing)
    if kind == "shared":  # the policy's own forward gives the values
        training_critic = 0
    elif kind == "prefix":
        training_critic = training_activation_bytes({**p_dims, "L": critic_layers}, micro * seq, act, checkpointing)
    training_critic *= n_critics  # both critics' activations are stored in the same micro-batch
    training_logits = 3 * micro * (response + 1) * vocab * act
    # bitsandbytes dequantizes one 4-bit weight at a time for its matmul (the head is not quantized).
    dequant = max(m.weight.numel() for m in lora_targets(policy_model, "all-linear")) * act * four_bit
    head_copy = policy_model.get_output_embeddings().weight.numel() * act if head_fp32 else 0
    training = training_policy + training_critic + training_logits + dequant + head_copy + prefix

    static = {
        "policy weights": policy.weight_bytes,
        "policy trainable state (grads + AdamW)": policy.state_bytes,
        "reference": reference,
        "critic weights": critic.weight_bytes,
        "critic trainable state (grads + AdamW)": critic.state_bytes,
        "reward model": reward.weight_bytes,
    }
    if lagrangian:
        static.update(
            {
                "cost critic weights": critic.weight_bytes,
                "cost critic trainable state (grads + AdamW)": critic.state_bytes,
                "cost model": cost.weight_bytes,
            }
        )
    phases = {"generation (KV cache)": generation, "rollout forwards (no grad)": rollout, "training": training}
    peak = sum(static.values()) + max(phases.values())
    need = peak * (1 + plan_args.reserve_fraction) + plan_args.reserve_gib * GIB
    return {
        "algorithm": ppo_args.algorithm,
        "sources": {
            "policy": policy_source,
            "critic": critic_source,
            "reward": reward_source,
            **({"cost": cost_source} if lagrangian else {}),
        },
        "params": {
            "policy": policy.params,
            "policy_trainable": policy.trainable,
            "critic": critic.params,
            "critic_trainable": critic.trainable,
            "critics": n_critics,
            "reward": reward.params,
            **({"cost": cost.params} if lagrangian else {}),
        },  # fmt: skip
        "settings": {
            "per_device_train_batch_size": micro,
            "gradient_checkpointing": checkpointing,
            "local_rollout_forward_batch_size": chunk,
            "dtype": model_args.dtype,
            "load_in_4bit": four_bit,
            "lora_r": lora_r,
            "max_prompt_length": prompt,
            "response_length": response,
            "trainable_layers": top,
            "critic": kind,
            "critic_layers": critic_layers,
        },  # fmt: skip
        "static_bytes": static,
        "phase_bytes": phases,
        "training_detail_bytes": {
            "policy activations": training_policy,
            "critic activations": training_critic,
            "logits": training_logits,
            "4-bit dequantized weight": dequant,
            "compute-dtype copy of the fp32 LM head (4-bit)": head_copy,
            "cached prefix hidden state": prefix,
        },  # fmt: skip
        "peak_bytes": peak,
        "needed_bytes": need,
        "fits": need <= plan_args.gpu_memory_gib * GIB,
    }


def estimate_grpo(script_args, grpo_args, model_args, plan_args: PlanArguments, micro=None,
                  checkpointing=None) -> dict:  # fmt: skip
    """The plan of a GRPO recipe (optionally with another micro-batch or checkpointing): bytes per line.

    The generation batch of a process stays the recipe's: `per_device_train_batch_size * steps_per_generation`
    completions of `max_prompt_length + max_completion_length` tokens.
    """
    micro = micro or grpo_args.per_device_train_batch_size
    checkpointing = grpo_args.gradient_checkpointing if checkpointing is None else checkpointing
    completions = grpo_args.per_device_train_batch_size * grpo_args.steps_per_generation  # generated per process
    dtype_bytes = DTYPE_BYTES.get(model_args.dtype, 4)
    lora_r = model_args.lora_r if model_args.use_peft else None
    four_bit = bool(model_args.load_in_4bit)

    policy_config, policy_source = resolve_config(model_args.model_name_or_path, "policy")
    reward_path = plan_args.reward_model_config or grpo_args.reward_model_path
    if not reward_path:
        raise SafetyRLHFError("the recipe has no reward_model_path; add it, or pass --reward_model_config")
    reward_config, reward_source, reward_bytes, reward = planned_scorer(reward_path, "reward model")

    top = grpo_args.trainable_layers  # = K: LoRA on the top K layers; backward stops there, every layer still runs
    policy_model, policy = planned_policy(model_args, policy_config, dtype_bytes, lora_r, top)
    # TRL's reference: none without the KL term, the adapter switched off under LoRA, else a copy at the dtype.
    reference = 0.0
    if grpo_args.beta and not lora_r:
        reference = model_memory(policy_model, dtype_bytes, False, False, None, None, False).weight_bytes

    p_dims, r_dims = decoder_dims(policy_config), decoder_dims(reward_config)
    prompt, completion = script_args.max_prompt_length, grpo_args.max_completion_length
    seq, vocab, act = prompt + completion, policy_config.vocab_size, dtype_bytes

    generation = kv_cache_bytes(p_dims, completions * seq, act) + 3 * completions * vocab * 4
    # No-grad passes: the reference (and old log-probs) per micro-batch, the reward model per 32 (`score`'s batch);
    # one layer's activations at a time, and the (micro, C + 1, V) logits with their temperature-scaled copy.
    layer = lambda d: 2 * d["H"] + d["I"] + 2 * d["KV"]  # noqa: E731
    scoring = max(
        micro * seq * layer(p_dims) * act + 2 * micro * (completion + 1) * vocab * act,
        min(completions, 32) * seq * layer(r_dims) * reward_bytes,
    )
    trained_dims = p_dims if top is None else {**p_dims, "L": top}  # nothing below layer L-K is kept for backward
    training_policy = training_activation_bytes(trained_dims, micro * seq, act, checkpointing)
    training_logits = 3 * micro * (completion + 1) * vocab * act
    dequant = max(m.weight.numel() for m in lora_targets(policy_model, "all-linear")) * act * four_bit
    training = training_policy + training_logits + dequant

    static = {
        "policy weights": policy.weight_bytes,
        "policy trainable state (grads + AdamW)": policy.state_bytes,
        "reference": reference,
        "reward model": reward.weight_bytes,
    }
    phases = {
        "generation (KV cache)": generation,
        "reference / old log-probs, reward (no grad)": scoring,
        "training": training,
    }
    peak = sum(static.values()) + max(phases.values())
    need = peak * (1 + plan_args.reserve_fraction) + plan_args.reserve_gib * GIB
    return {
        "algorithm": "grpo",
        "sources": {"policy": policy_source, "reward": reward_source},
        "params": {"policy": policy.params, "policy_trainable": policy.trainable, "reward": reward.params},
        "settings": {
            "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": completions // micro,
            "gradient_checkpointing": checkpointing,
            "num_generations": grpo_args.num_generations,
            "completions_generated": completions,
            "beta": grpo_args.beta,
            "dtype": model_args.dtype,
            "load_in_4bit": four_bit,
            "lora_r": lora_r,
            "max_prompt_length": prompt,
            "max_completion_length": completion,
            "trainable_layers": top,
        },  # fmt: skip
        "static_bytes": static,
        "phase_bytes": phases,
        "training_detail_bytes": {
            "policy activations": training_policy,
            "logits": training_logits,
            "4-bit dequantized weight": dequant,
        },  # fmt: skip
        "peak_bytes": peak,
        "needed_bytes": need,
        "fits": need <= plan_args.gpu_memory_gib * GIB,
    }


def suggest_grpo(script_args, grpo_args, model_args, plan_args) -> dict | None:
    """The recipe's settings if they fit; else the first that fit, keeping the generation batch: the recipe's
    checkpointing before turning it on, then the largest micro-batch (of completions) dividing the batch."""
    completions = grpo_args.per_device_train_batch_size * grpo_args.steps_per_generation
    for checkpointing in sorted({grpo_args.gradient_checkpointing, True}):
        for micro in (m for m in range(grpo_args.per_device_train_batch_size, 0, -1) if completions % m == 0):
            plan = estimate_grpo(script_args, grpo_args, model_args, plan_args, micro, checkpointing)
            if plan["fits"]:
                return plan
    return None


def suggest(script_args, ppo_args, model_args, plan_args) -> dict | None:
    """The recipe's settings if they fit; else the first that fit, keeping the batch: the recipe's checkpointing
    before turning it on, then the largest micro-batch, then the largest rollout chunk."""
    plan = estimate(script_args, ppo_args, model_args, plan_args)
    local_batch = ppo_args.local_batch_size
    if plan["fits"]:
        plan["settings"]["gradient_accumulation_steps"] = ppo_args.gradient_accumulation_steps
        return plan
    local_batch = ppo_args.local_batch_size
    micros = [m for m in range(local_batch, 0, -1)
              if local_batch % m == 0 and (local_batch // m) % ppo_args.num_mini_batches == 0]  # fmt: skip
    chunks = sorted({c for c in (ppo_args.local_rollout_forward_batch_size, 64, 32, 16, 8, 4, 2, 1)
                     if c <= ppo_args.local_rollout_forward_batch_size}, reverse=True)  # fmt: skip
    for checkpointing in sorted({ppo_args.gradient_checkpointing, True}):
        for micro in micros:
            for chunk in chunks:
                plan = estimate(script_args, ppo_args, model_args, plan_args, micro, checkpointing, chunk)
                if plan["fits"]:
                    plan["settings"]["gradient_accumulation_steps"] = local_batch // micro
                    return plan
    return None


def render(plan: dict, plan_args: PlanArguments, suggestion: dict | None) -> str:
    gib = lambda b: f"{b / GIB:6.2f}"  # noqa: E731
    s, sources, params = plan["settings"], plan["sources"], plan["params"]
    grpo = plan.get("algorithm") == "grpo"
    lag = plan.get("algorithm") == "ppo_lag"
    critic = "" if grpo else f"  critic: {sources['critic']}"
    cost = f"  cost: {sources['cost']}" if lag else ""
    lines = [f"policy: {sources['policy']}{critic}  reward: {sources['reward']}{cost}"]
    critic = "no critic (GRPO)" if grpo else (
        ("reward and cost critics " if lag else "critic ")
        + f"{params['critic'] / 1e9:.3f}B ({params['critic_trainable'] / 1e6:.1f}M trainable)"
        + (" each" if lag else "")
    )  # fmt: skip
    lines.append(
        f"params: policy {params['policy'] / 1e9:.3f}B ({params['policy_trainable'] / 1e6:.1f}M trainable), "
        f"{critic}, reward {params['reward'] / 1e9:.3f}B" + (f", cost {params['cost'] / 1e9:.3f}B" if lag else "")
    )
    if grpo:
        lines.append(
            f"settings: dtype {s['dtype']}, 4-bit {s['load_in_4bit']}, LoRA r {s['lora_r']}, group size "
            f"{s['num_generations']}, {s['completions_generated']} completions generated per process, micro-batch "
            f"{s['per_device_train_batch_size']} completions, gradient checkpointing {s['gradient_checkpointing']}, "
            f"beta {s['beta']}, {s['max_prompt_length']} + {s['max_completion_length']} tokens"
        )
    else:
        lines.append(
            f"settings: dtype {s['dtype']}, 4-bit {s['load_in_4bit']}, LoRA r {s['lora_r']}, micro-batch "
            f"{s['per_device_train_batch_size']}, gradient checkpointing {s['gradient_checkpointing']}, rollout chunk "
            f"{s['local_rollout_forward_batch_size']}, {s['max_prompt_length']} + {s['response_length']} tokens"
            + (f", LoRA on the top {s['trainable_layers']} layers" if s["trainable_layers"] else "")
            + (", PPO-Lagrangian" if lag else "")
        )
    lines += [
        "",
        "| component | GiB |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {gib(b)} |" for name, b in plan["static_bytes"].items()]
    lines += [f"| phase: {name} | {gib(b)} |" for name, b in plan["phase_bytes"].items()]
    lines += [f"| training: {name} | {gib(b)} |" for name, b in plan["training_detail_bytes"].items() if b]
    lines += [
        f"| **estimated peak (static + largest phase)** | **{gib(plan['peak_bytes'])}** |",
        f"| with reserve ({plan_args.reserve_fraction:.0%} + {plan_args.reserve_gib} GiB) | {gib(plan['needed_bytes'])} |",
        "",
        f"{plan_args.gpu_memory_gib:g} GiB GPU: {'fits' if plan['fits'] else 'does NOT fit'}",
    ]
    if suggestion is None and grpo:
        lines.append(
            "no micro-batch / checkpointing setting fits: use load_in_4bit and use_peft, fewer completions per "
            "generation batch, shorter max_completion_length, or a larger GPU"
        )
    elif suggestion is None:
        lines.append(
            "no micro-batch / checkpointing / rollout chunk setting fits: use load_in_4bit and use_peft, a smaller "
            "critic (value_model_path), shorter response_length, or a larger GPU"
        )
    elif not plan["fits"] and grpo:
        t = suggestion["settings"]
        lines.append(
            f"suggested: --per_device_train_batch_size {t['per_device_train_batch_size']} "
            f"--gradient_accumulation_steps {t['gradient_accumulation_steps']} --gradient_checkpointing "
            f"{str(t['gradient_checkpointing']).lower()} (estimated peak {gib(suggestion['peak_bytes']).strip()} GiB)"
        )
    elif not plan["fits"]:
        t = suggestion["settings"]
        lines.append(
            f"suggested: --per_device_train_batch_size {t['per_device_train_batch_size']} "
            f"--gradient_accumulation_steps {t['gradient_accumulation_steps']} --gradient_checkpointing "
            f"{str(t['gradient_checkpointing']).lower()} --local_rollout_forward_batch_size "
            f"{t['local_rollout_forward_batch_size']} (estimated peak {gib(suggestion['peak_bytes']).strip()} GiB)"
        )
    return "\n".join(lines)


def main(script_args, ppo_args, model_args, plan_args: PlanArguments) -> dict:
    from trl import GRPOConfig

    grpo = isinstance(ppo_args, GRPOConfig)
    plan = (estimate_grpo if grpo else estimate)(script_args, ppo_args, model_args, plan_args)
    suggestion = (suggest_grpo if grpo else suggest)(script_args, ppo_args, model_args, plan_args)
    if plan_args.json_output:
        print(json.dumps({"plan": plan, "suggestion": suggestion}))
    else:
        print(render(plan, plan_args, suggestion))
    return {"plan": plan, "suggestion": suggestion}
