"""Every shipped recipe parses through the real parser, and every accelerate config it names exists."""

import re
from pathlib import Path

import pytest
import yaml

from safety_rlhf.cli import _verbs

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "accelerate_configs" not in p.parts)
VERB = {"sft": "sft", "reward": "reward", "cost": "reward", "judge": "reward", "ppo": "ppo", "grpo": "grpo"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_parses(recipe):
    from trl import TrlParser

    verb = VERB[recipe.stem.split("_")[0]]
    # GPU recipes ask for bf16, which TrainingArguments refuses on a CPU-only machine: parse them as CPU runs.
    argv = ["--config", str(recipe)] + (["--bf16", "false", "--use_cpu", "true"] if "tiny" not in recipe.parts else [])
    parsed = TrlParser(_verbs()[verb][0]).parse_args_and_config(argv)
    config = yaml.safe_load(recipe.read_text())
    script_args, train_args, model_args = parsed
    assert train_args.output_dir == config["output_dir"]
    assert model_args.model_name_or_path == config["model_name_or_path"]
    if verb == "ppo":
        assert train_args.batch_size == 32  # the default batch of every recipe


def test_accelerate_configs_named_anywhere_exist():
    configs = {p.name for p in (ROOT / "recipes" / "accelerate_configs").glob("*.yaml")}
    assert {"single_gpu.yaml", "multi_gpu.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml",
            "multi_node_zero3.yaml"} <= configs  # fmt: skip
    files = [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "docs").glob("*.md")]
    files += [p for p in ROOT.glob("recipes/**/*") if p.is_file()]
    texts = [p.read_text() for p in files]
    named = {m for text in texts for m in re.findall(r"accelerate_configs/([\w.-]+\.yaml)", text)}
    assert named and named <= configs, named - configs
    for name in configs:
        config = yaml.safe_load((ROOT / "recipes" / "accelerate_configs" / name).read_text())
        assert config["distributed_type"] in ("NO", "MULTI_GPU", "DEEPSPEED")
        if config["distributed_type"] == "DEEPSPEED":
            assert config["deepspeed_config"]["zero_stage"] in (2, 3)
