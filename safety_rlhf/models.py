"""Loading the policy and its tokenizer: local path or Hub id, dtype, 4-bit NF4, LoRA, gradient checkpointing.

Everything goes through `from_pretrained` with TRL's `ModelConfig`, `get_quantization_config` and `get_peft_config`,
so a recipe written for TRL's scripts means the same here. One resolver tells a local folder from a Hub id
(`local_model_path`) and reads a PEFT adapter's base (`adapter_base_model`) for training, `eval` and `push`; a trained
policy (full model or adapter) loads for generation with `load_model`.
"""

import dataclasses
import json
from pathlib import Path

import torch
from peft import get_peft_model, prepare_model_for_kbit_training
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl import ModelConfig, get_peft_config, get_quantization_config

from . import SafetyRLHFError
from .critics import ValueModel
from .precision import DTYPE_CHOICES
from .prefix_cache import causal_lm_of, check_trainable_layers

ADDED_PAD_TOKEN = "<|pad|>"
ADAPTER_CONFIG = "adapter_config.json"
# Weight files that `torch.load` unpickles, which can run arbitrary code; only safetensors load by default.
PICKLE_WEIGHTS = ("pytorch_model", "adapter_model.bin", "tf_model", "flax_model")


def local_model_path(
    name: str, option: str = "model_name_or_path", fix: str = "check the path, or train or build the model first"
) -> Path | None:
    """The folder `name` names if it is one, None for a Hub id; a file, or a path that should exist but does not,
    fails naming the argument `option` it came from (and `fix` for a missing path).

    Hub ids are `name` or `org/name` and may contain dots (`Qwen/Qwen2.5-0.5B-Instruct`); anything else that does
    not exist here is a mistyped path.
    """
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise SafetyRLHFError(f"{option} {name!r} is a file; pass a model folder or a Hub id")
        return local
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise SafetyRLHFError(f"{option} {name!r} does not exist; {fix}")
    return None


def adapter_base_model(folder: Path | None) -> str | None:
    """The base model a PEFT adapter folder names (`base_model_name_or_path`), None if `folder` is no adapter."""
    if folder is None or not (folder / ADAPTER_CONFIG).is_file():
        return None
    return json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")


def check_model_folder(folder: Path | None, what: str, trust_remote_code: bool, allow_pickle: bool = True) -> None:
    """Refuse, before anything loads, a folder whose config names its own code (`auto_map`) unless
    `trust_remote_code`, and one whose weights are pickle files only unless `allow_pickle`."""
    if folder is None:
        return
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if trust_remote_code or not path.is_file():
            continue
        try:
            auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map")
        except (ValueError, AttributeError) as err:
            raise SafetyRLHFError(f"{what} {path} is not a JSON object ({err}); save the model again") from None
        if auto_map:
            code = ", ".join(sorted({str(v) for v in auto_map.values()}))
            raise SafetyRLHFError(
                f"{what} {folder} ships its own code ({name} auto_map: {code}); read that code, then pass "
                "--trust_remote_code true to run it, or use a model that transformers supports natively"
            )
    pickles = sorted(p.name for p in folder.glob("*") if p.name.startswith(PICKLE_WEIGHTS))
    if not allow_pickle and pickles and not any(folder.glob("*.safetensors")):
        raise SafetyRLHFError(
            f"{what} {folder} holds pickle weights only ({', '.join(pickles[:3])}), which can run code when loaded; "
            "convert them to safetensors, or pass --allow_pickle_weights true if you trust the files"
        )


def weights_kwargs(allow_pickle: bool) -> dict:
    """`from_pretrained` keywords: safetensors only, unless pickle weights are allowed (then safetensors first)."""
    return {"use_safetensors": None if allow_pickle else True}


def _load(
    loader, name: str, what: str, allow_pickle: bool | None = None, option: str = "model_name_or_path", **kwargs
):
    """`loader(name, **kwargs)`, errors naming `what` and its argument `option`; `allow_pickle` None: no weights."""
    if not name:
        raise SafetyRLHFError(f"no {what} given; set {option} to a local folder or a Hub id")
    local = local_model_path(name, option)
    check_model_folder(local, what, kwargs.get("trust_remote_code", False), allow_pickle is not False)
    if allow_pickle is not None:
        kwargs.update(weights_kwargs(allow_pickle))
    try:
        return loader(str(local) if local else name, **kwargs)
    except SafetensorError as err:
        raise damaged_weights(what, name, err) from err
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ""
        if "trust_remote_code" in str(err):
            hint = "; pass --trust_remote_code true if you trust its code"
        elif "safetensors" in str(err) and not allow_pickle:
            hint = "; only safetensors weights load unless --allow_pickle_weights true"
        raise SafetyRLHFError(
            f"could not load {what} {name!r} ({first}); check the local path or Hub id "
            f"(offline machines need a local copy){hint}"
        ) from err


def load_tokenizer(model_args: ModelConfig, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Tokenizer ready for PPO: left padding, a PAD token distinct from EOS, a chat template.

    A missing PAD (or PAD == EOS, as in many Llama checkpoints and SmolLM2) is fixed by `prepare_tokenizer`: with
    PAD == EOS the response mask would drop the EOS itself (the bug behind huggingface/trl#3750).
    """
    tokenizer = _load(
        AutoTokenizer.from_pretrained,
        model_args.model_name_or_path,
        "tokenizer",
        revision=model_args.model_revision,
        trust_remote_code=trust_remote_code,
    )
    return prepare_tokenizer(tokenizer, model_args.model_name_or_path)


def unused_special_token(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """A special token of the vocabulary that can serve as PAD without a new embedding row, or None.

    Candidates are the special added tokens that have no role (BOS, EOS, UNK, SEP, CLS, MASK) and that the chat
    template never writes. One whose name says pad (Llama 3.1's `<|finetune_right_pad_id|>`) is preferred, then the
    one with the highest id. For SmolLM2 that is `<empty_output>` (id 16), a StarCoder marker for notebook cells
    that a chat never uses: sampling SmolLM2-135M-Instruct at T=1 on six chat prompts (about 480 response tokens),
    its log-prob stayed at or below -12.29 (p < 5e-6) at every position. `<|endoftext|>` (id 0) is not a candidate:
    it is SmolLM2's UNK, and a document separator the model gave up to e^-5.6 there.

    Should the model sample the PAD id anyway, nothing breaks: `rollout.truncate_at_stop` builds the response mask
    from the first stop token's position, never by comparing ids with PAD, so a PAD sampled before the stop stays a
    scored, trained token, and the attention masks follow the response mask.
    """
    roles = {getattr(tokenizer, f"{role}_token", None) for role in ("bos", "eos", "unk", "sep", "cls", "mask")}
    template = template_text(tokenizer)
    candidates = [
        token.content
        for _, token in sorted(tokenizer.added_tokens_decoder.items())
        if token.special and token.content not in roles and token.content not in template
    ]
    named_pad = [c for c in candidates if "pad" in c.lower()]
    return (named_pad or candidates or [None])[-1]


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """Checks and fixes shared by training and evaluation: an EOS, a PAD distinct from it, left padding, a template.

    A missing PAD (or PAD == EOS) becomes an unused special token of the vocabulary (`unused_special_token`), else a
    new `<|pad|>`; `needs_resize` is set on the returned tokenizer when the embedding matrix must grow.
    """
    if tokenizer.eos_token_id is None:
        raise SafetyRLHFError(f"tokenizer of {name!r} has no EOS token; use a chat model whose tokenizer sets one")
    tokenizer.needs_resize = False
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        unused = unused_special_token(tokenizer)
        if unused is not None:
            tokenizer.pad_token = unused
        else:
            tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
            tokenizer.needs_resize = True
    tokenizer.padding_side = "left"
    if not template_text(tokenizer).strip():  # an empty or blank template (a chat_template.jinja of spaces) is none
        raise SafetyRLHFError(
            f"tokenizer of {name!r} has no chat template; use an instruct/chat model, "
            "or add one with `tokenizer.chat_template = ...` and save it next to the model"
        )
    return tokenizer


def template_text(tokenizer: PreTrainedTokenizerBase) -> str:
    """The chat template's text (all of a named set's templates), "" for none."""
    template = tokenizer.chat_template or ""
    return " ".join(template.values()) if isinstance(template, dict) else template


def damaged_weights(what: str, name: str, err: Exception) -> SafetyRLHFError:
    return SafetyRLHFError(
        f"{what} {name!r} has a truncated or damaged safetensors file ({err}); copy or save the model again"
    )


# Config keys that name the longest sequence a model's positions cover, as the configs of transformers spell it.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def position_limit(name: str, trust_remote_code: bool = False) -> tuple[str, int] | None:
    """`(key, tokens)`: the longest sequence the model `name` takes, read from its config alone (`AutoConfig`; for a
    PEFT adapter its base's), before any weights load; None where the config names no limit or cannot be read here
    (loading the model then fails, or not, on its own)."""
    from transformers import AutoConfig

    try:
        local = local_model_path(name)
        source = adapter_base_model(local) or (str(local) if local else name)
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code).get_text_config()
    except Exception:  # noqa: BLE001 - a config that cannot be read fails where the model loads, with its own error
        return None
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return config.attribute_map.get(key, key), value  # the name the config file uses (GPT-2: n_positions)
    return None


def check_fits(
    name: str, option: str, length: int, prompt_ids=(), what: str = "policy", trust_remote_code: bool = False
) -> None:
    """Refuse `option=length` new tokens (plus the longest of the tokenized prompts `prompt_ids`) above the position
    limit of the model `name` (`position_limit`), naming the value, the limit and the fix; run before weights load."""
    limit = position_limit(name, trust_remote_code)
    longest = max(map(len, prompt_ids), default=0)
    if limit is None or length + longest <= limit[1]:
        return
    key, most = limit
    fixes = [f"lower {option} to at most {most - longest}"] if most > longest else []
    if longest and most > length:
        fixes.append(f"max_prompt_length to at most {most - length} (longer prompts are dropped)")
    prompt = f" + the longest prompt ({longest} tokens)" if longest else ""
    raise SafetyRLHFError(
        f"{option}={length}{prompt} exceeds the {what}'s {key}={most} ({name}); "
        f"{', or '.join(fixes) or 'use a model with more positions'}"
    )


def keep_4bit_layers_trainable(model) -> None:
    """Turn off bitsandbytes' one-way CPU repacking of 4-bit weights, which breaks training after an eval pass.

    On a CPU with AVX512-BF16, bitsandbytes (0.49+) repacks a `Linear4bit`'s weights for a faster kernel the first time
    it runs in eval mode without grad (our rollout), and keeps that layout; the training forward that follows then
    takes the inference kernel and fails in backward ("a view of a leaf Variable that requires grad is being used in an
    in-place operation"). PPO alternates the two modes every update, so the policy keeps the trainable layout.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _prepare_for_training(model, quantized: bool, gradient_checkpointing: bool):
    """k-bit preparation (fp32 norms, input grads) for a quantized model; non-reentrant checkpointing if asked."""
    if quantized:
        keep_4bit_layers_trainable(model)
        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def contiguous_head_input(model) -> None:
    """Make the LM head's input contiguous (a forward pre-hook), as `logits_to_keep` slices it (B, T', d) of (B, T, d).

    On the CPU, a bf16 `linear` on that strided slice does not fold into one matrix product: torch's matmul expands
    the (V, d) head to (B, d, V), copies it and runs a batched product. For SmolLM2 (V = 49,152) at batch 32 that was
    a 1.8 GB copy and 2.1 s for what takes 0.19 s on a contiguous input (fp32 folds either way); copying the slice
    costs B x T' x d values.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_contiguous_input", False):
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
        head._contiguous_input = True


def torch_dtype(model_args: ModelConfig):
    if model_args.dtype in (None, "auto"):
        return "auto"
    return getattr(torch, model_args.dtype)


def load_policy(
    model_args: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
    device_map=None,
    apply_peft: bool = True,
    trainable_layers: int | None = None,
    allow_pickle: bool = False,
) -> PreTrainedModel:
    """The policy: base model (optionally 4-bit NF4 with double quantization) plus a trainable LoRA adapter.

    With `apply_peft=False` the LoRA config is left to the caller (TRL's trainers take `peft_config` themselves).
    With `trainable_layers=K`, LoRA adapts the top K decoder layers only (see `safety_rlhf.prefix_cache`).
    """
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and device_map is None:
        device_map = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    model = _load(
        AutoModelForCausalLM.from_pretrained,
        model_args.model_name_or_path,
        "policy model",
        allow_pickle,
        revision=model_args.model_revision,
        dtype=torch_dtype(model_args),
        attn_implementation=model_args.attn_implementation,
        quantization_config=quantization_config,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
    )
    if getattr(tokenizer, "needs_resize", False):
        if quantization_config is not None:
            raise SafetyRLHFError(
                f"tokenizer of {model_args.model_name_or_path!r} needs a new PAD token, which a quantized model cannot "
                "add; save the tokenizer with a pad_token first, or load the model without --load_in_4bit"
            )
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    contiguous_head_input(model)
    model = _prepare_for_training(model, quantization_config is not None, gradient_checkpointing)
    peft_config = get_peft_config(model_args)
    if trainable_layers is not None:
        peft_config = lora_on_top_layers(peft_config, model, trainable_layers)
    if apply_peft and peft_config is not None:
        model = get_peft_model(model, peft_config)
    return model


def lora_on_top_layers(peft_config, model, trainable_layers: int):
    """The LoRA config restricted to the top K decoder layers: `layers_to_transform = [L-K, ..., L-1]`.

    PEFT honours `layers_to_transform` only with a list of module names, so `all-linear` becomes the names of the
    decoder layers' linear modules and a single name (TRL turns a one-element list into a string) a list of one;
    a regex cannot be restricted by layer and is refused. `layers_pattern="layers"` reads the index after
    `model.layers.` (Llama, Mistral, Qwen2), not the first number in the module path.
    """
    if peft_config is None:
        raise SafetyRLHFError(
            f"trainable_layers={trainable_layers} restricts LoRA to the top layers but use_peft is off; "
            "pass --use_peft true or unset trainable_layers"
        )
    n_layers = model.config.num_hidden_layers
    check_trainable_layers(trainable_layers, n_layers)
    targets = peft_config.target_modules
    if isinstance(targets, str) and targets.lower() == "all-linear":
        layers = causal_lm_of(model).model.layers
        targets = sorted(
            {name.rsplit(".", 1)[-1] for name, m in layers.named_modules() if isinstance(m, torch.nn.Linear)}
        )
    elif isinstance(targets, str) and targets.isidentifier():
        targets = [targets]
    elif isinstance(targets, str) or not targets:
        raise SafetyRLHFError(
            f"trainable_layers={trainable_layers} needs lora_target_modules as module names or all-linear, got "
            f"{targets!r}; list the module names (e.g. q_proj v_proj) instead"
        )
    return dataclasses.replace(
        peft_config,
        target_modules=list(targets),
        layers_to_transform=list(range(n_layers - trainable_layers, n_layers)),
        layers_pattern="layers",
    )


def check_same_tokenizer(path: str, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse a value model whose folder holds a tokenizer that maps tokens to other ids than the policy's: the critic
    reads the policy's token ids, and a vocabulary of the same size would hide the mismatch."""
    local = local_model_path(path, "value_model_path")
    if local is None or not any((local / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        return
    try:
        theirs = AutoTokenizer.from_pretrained(str(local)).get_vocab()
    except (OSError, ValueError):
        return  # no usable tokenizer there: nothing to compare (the weights load, or fail, on their own)
    ours = tokenizer.get_vocab()
    differ = sum(ours.get(token) != index for token, index in theirs.items())
    if differ:
        raise SafetyRLHFError(
            f"value model {path!r} uses another tokenizer than the policy ({differ} of its {len(theirs)} tokens have "
            "other ids); use a value model of the policy's family, trained with the same tokenizer"
        )


def load_value_model(
    path: str,
    model_args: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> ValueModel:
    """Critic initialised from `path` (a causal LM or backbone that uses the policy's tokenizer)."""
    from transformers import AutoModel

    quantization_config = get_quantization_config(model_args)
    device_map = None
    if quantization_config is not None:
        device_map = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    backbone = _load(
        AutoModel.from_pretrained,
        path,
        "value model",
        allow_pickle,
        option="value_model_path",
        dtype=torch_dtype(model_args),
        quantization_config=quantization_config,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
    )
    check_same_tokenizer(path, tokenizer)
    vocab = backbone.get_input_embeddings().num_embeddings
    if vocab < len(tokenizer):
        if quantization_config is not None:
            raise SafetyRLHFError(
                f"value model {path!r} has {vocab} embeddings but the policy tokenizer has {len(tokenizer)} tokens; "
                "use a value model of the policy's family (same tokenizer)"
            )
        backbone.resize_token_embeddings(len(tokenizer))
    backbone = _prepare_for_training(backbone, quantization_config is not None, gradient_checkpointing)
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        peft_config.task_type = None
        backbone = get_peft_model(backbone, peft_config)
    return ValueModel(backbone, backbone.config.hidden_size)


# ---------------------------------------------------------------------------------------------------------------------
# Loading a trained policy to generate with (`eval`)

DTYPES = DTYPE_CHOICES  # native: resolved by EvalArguments and SampleArguments (precision.native_dtype)


def _load_error(what: str, name: str, err: Exception) -> SafetyRLHFError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = "" if Path(name).expanduser().exists() else "no such local folder, and as a Hub id: "
    return SafetyRLHFError(
        f"could not load {what} {name!r} ({where}{reason}); pass an existing folder or a reachable Hub id "
        "(offline machines need a local copy)"
    )


def _tokenizer_source(path: str, local: Path | None) -> str:
    """The adapter folder itself when it holds tokenizer files, else the adapter's base model."""
    if local is None or not (local / ADAPTER_CONFIG).is_file():
        return path
    if any((local / name).is_file() for name in ("tokenizer_config.json", "tokenizer.json")):
        return str(local)
    base = adapter_base_model(local)
    if not base:
        raise SafetyRLHFError(f"PEFT adapter {path} has no tokenizer files and no base_model_name_or_path; save both")
    return base


def load_eval_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """Tokenizer of a policy folder or Hub id, as `load_tokenizer` prepares it: left padding, a PAD distinct from
    EOS (a dedicated `<|pad|>` is added; `needs_resize` says the embeddings must grow), a chat template."""
    if not path:
        raise SafetyRLHFError("no model given; set --model_name_or_path to a policy folder or a Hub id")
    source = _tokenizer_source(path, local_model_path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise _load_error("tokenizer", source, err) from err
    return prepare_tokenizer(tokenizer, path)


def load_model(path: str, dtype: str = "float32", device: str | None = None, allow_pickle: bool = False):
    """Load a policy for evaluation: `(model, tokenizer)`, the model in eval mode on `device` (CUDA if available).

    A folder with `adapter_config.json` is a PEFT adapter (`peft.AutoPeftModelForCausalLM`, the base from its
    `base_model_name_or_path`); anything else loads with `AutoModelForCausalLM`. The tokenizer comes from the same
    folder (see `load_eval_tokenizer`).
    """
    if dtype not in DTYPES:
        raise SafetyRLHFError(f"dtype={dtype!r} is not supported; use one of: {', '.join(DTYPES)}")
    tokenizer = load_eval_tokenizer(path)
    local = local_model_path(path)
    is_adapter = local is not None and (local / ADAPTER_CONFIG).is_file()
    dtype_ = dtype if dtype == "auto" else getattr(torch, dtype)
    check_model_folder(local, "model", trust_remote_code=False, allow_pickle=allow_pickle)
    try:
        if is_adapter:
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(str(local), dtype=dtype_, **weights_kwargs(allow_pickle))
        else:
            model = AutoModelForCausalLM.from_pretrained(
                str(local) if local else path, dtype=dtype_, **weights_kwargs(allow_pickle)
            )
    except SafetensorError as err:
        raise damaged_weights("PEFT adapter" if is_adapter else "model", path, err) from err
    except (OSError, ValueError) as err:
        raise _load_error("PEFT adapter" if is_adapter else "model", path, err) from err
    if tokenizer.needs_resize or model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    contiguous_head_input(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer
