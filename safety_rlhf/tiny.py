"""Tiny offline models, built from configs, for tests, the CPU recipes and the offline demo.

`safety-rlhf tiny --output_dir models/tiny` writes two folders that load with the ordinary `from_pretrained` path:

- `policy/`: a causal LM (Qwen2 or Llama architecture) with a byte-level BPE tokenizer trained on the bundled text,
  ChatML special tokens, a chat template, and PAD distinct from EOS (`<|endoftext|>` vs `<|im_end|>`).
- `classifier/`: a BERT sequence-classification model (one label) with its own lower-cased tokenizer, so that the
  reward path that re-tokenizes text for a different tokenizer is exercised for real.

The same seed gives the same files (weights and tokenizers).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from . import SafetyRLHFError

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
    arch: str = field(default="qwen2", metadata={"help": "Policy architecture: `qwen2` or `llama`."})
    hidden_size: int = field(default=128, metadata={"help": "Policy hidden size (32-256)."})
    num_hidden_layers: int = field(default=3, metadata={"help": "Policy layers."})
    vocab_size: int = field(default=2048, metadata={"help": "Target vocabulary size of both tokenizers."})
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
        raise SafetyRLHFError(f"arch={arch!r} is not supported; use 'qwen2' or 'llama'")
    torch.manual_seed(seed)
    model = cls(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=common["bos_token_id"]
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


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
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite_output_dir:
        raise SafetyRLHFError(
            f"output_dir {out} is not empty; pass --overwrite_output_dir true or choose another folder"
        )
    texts = bundled_text()
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
