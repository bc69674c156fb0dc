"""Security defaults: safetensors weights only unless `--allow_pickle_weights`, no repository code unless
`--trust_remote_code`, and the Hub token in no file, log or upload of a run."""

import dataclasses
import re
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file

from reward.model import SafetyRewardModel
from safety_rlhf import SafetyRLHFError
from safety_rlhf.cli import main
from safety_rlhf.models import load_policy, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_SECRETtoken123"


def pickle_only(src: Path, dst: Path) -> Path:
    """A copy of a model folder whose weights are a `pytorch_model.bin` (pickle) instead of safetensors."""
    folder = Path(shutil.copytree(src, dst))
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_pickle_weights_load_only_with_the_flag(tiny_models, tmp_path):
    from helpers import model_args

    folder = pickle_only(tiny_models["policy"], tmp_path / "policy")
    tokenizer = load_tokenizer(model_args(folder))
    with pytest.raises(SafetyRLHFError, match="pickle weights only .*--allow_pickle_weights true"):
        load_policy(model_args(folder), tokenizer)
    assert load_policy(model_args(folder), tokenizer, allow_pickle=True).num_parameters() > 0


def test_pickle_reward_model_loads_only_with_the_flag(tiny_models, tmp_path):
    folder = pickle_only(tiny_models["classifier"], tmp_path / "reward")
    with pytest.raises(SafetyRLHFError, match="--allow_pickle_weights true"):
        SafetyRewardModel.from_pretrained(folder, device="cpu")
    assert SafetyRewardModel.from_pretrained(folder, device="cpu", allow_pickle=True).score(["a"], ["b"]).shape == (1,)


def test_no_code_turns_on_trust_remote_code():
    """Every `trust_remote_code` passed to transformers is a user's flag (default False), never a literal True."""
    sources = [p for d in ("safety_rlhf", "reward") for p in (ROOT / d).rglob("*.py")]
    literal = [str(p) for p in sources if re.search(r"trust_remote_code\s*=\s*True", p.read_text())]
    assert literal == []
    from reward.train import SafetyRewardConfig
    from safety_rlhf.config import SafetyPPOConfig
    from safety_rlhf.sft import SafetySFTConfig

    for config in (SafetyPPOConfig, SafetySFTConfig, SafetyRewardConfig):
        assert {f.name: f.default for f in dataclasses.fields(config)}["trust_remote_code"] is False, config


def test_hub_token_appears_in_no_file_log_or_upload(tiny_models, tmp_path, monkeypatch, capsys):
    uploaded = {}

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        uploaded.update({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()})

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: f"https://hf.co/{repo_id}")
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "ppo"
    argv = [
        "ppo", "--config", str(ROOT / "recipes" / "tiny" / "ppo.yaml"), "--model_name_or_path",
        str(tiny_models["policy"]), "--reward_model_path", str(tiny_models["classifier"]), "--output_dir", str(out),
        "--max_steps", "1", "--response_length", "4", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--num_mini_batches", "1", "--num_ppo_epochs", "1", "--save_steps", "1",
        "--sample_completions", "2", "--logging_steps", "1", "--report_to", "tensorboard", "--use_peft", "true",
        "--hub_token", TOKEN, "--push_to_hub", "true", "--hub_model_id", "me/tiny-safety",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    assert (
        main(["push", "--run_dir", str(out), "--hub_model_id", "me/tiny-safety", "--include_checkpoints", "true"]) == 0
    )
    captured = capsys.readouterr()
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "config.yaml" in written and "metrics.jsonl" in written and "README.md" in uploaded
    assert any("tfevents" in name for name in written)
    leaks = [name for name, content in {**written, **uploaded}.items() if TOKEN.encode() in content]
    assert leaks == []
    assert TOKEN not in captured.out + captured.err
