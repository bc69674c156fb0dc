"""`safety-rlhf demo` end to end on shortened copies of the tiny recipes (the full demo is `make demo`)."""

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from safety_rlhf import SafetyRLHFError
from safety_rlhf.data import load_prompts
from safety_rlhf.demo import RECIPES, RECIPES_ROOT, DemoArguments, main
from tests.helpers import needs_smollm2


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


SHORT = {
    "sft.yaml": {"max_steps": 4, "num_train_epochs": 1},
    "reward.yaml": {"max_steps": 3, "per_device_train_batch_size": 8},
    "ppo.yaml": {"max_steps": 2, "response_length": 8, "per_device_train_batch_size": 4,
                 "gradient_accumulation_steps": 2, "num_ppo_epochs": 1, "save_steps": 0},
    "cost.yaml": {"max_steps": 3, "per_device_train_batch_size": 8},
    "judge.yaml": {"max_steps": 3, "per_device_train_batch_size": 8},
    "ppo_lag.yaml": {"max_steps": 2, "response_length": 8, "per_device_train_batch_size": 4,
                     "gradient_accumulation_steps": 2, "num_ppo_epochs": 1, "save_steps": 0},
}  # fmt: skip


def short_recipes(folder: Path, source: Path = RECIPES) -> Path:
    folder.mkdir()
    for name, overrides in SHORT.items():
        recipe = yaml.safe_load((source / name).read_text())
        recipe.update(overrides)
        (folder / name).write_text(yaml.safe_dump(recipe))
    return folder


def test_demo_runs_every_stage_and_leaves_a_self_contained_policy(tmp_path):
    """The PPO recipe names a refusal judge (the label-aware reward): the demo trains it and PPO and eval read it."""
    out = tmp_path / "demo"
    recipes = short_recipes(tmp_path / "recipes")
    ppo = yaml.safe_load((recipes / "ppo.yaml").read_text())
    ppo.update(refusal_reward=1.0, refusal_judge_path="runs/tiny/judge")
    (recipes / "ppo.yaml").write_text(yaml.safe_dump(ppo))
    summary = main(DemoArguments(output_dir=str(out), model="tiny", recipes_dir=str(recipes), parallel=True))
    assert list(summary["seconds"]) == [
        "tiny models", "SFT warm start", "safety reward model", "refusal judge", "evaluate the SFT policy", "PPO",
        "evaluate PPO vs SFT",
        "evaluate PPO vs SFT, sampled", "evaluate PPO vs SFT, held-out prompts", "probe the PPO policy's hidden states",
    ]  # fmt: skip
    assert json.loads((out / "summary.json").read_text()) == summary
    # Side by side in two processes: the warm start beside the reward model and judge, the evaluations two by two;
    # each process's output in its log.
    logs = sorted(path.name for path in (out / "logs").iterdir())
    assert logs == ["SFT_warm_start.log", "evaluate_PPO_vs_SFT.log", "evaluate_PPO_vs_SFT_sampled.log",
                    "safety_reward_model.log"]  # fmt: skip
    assert all((out / "logs" / name).stat().st_size > 0 for name in logs)
    probe = json.loads((out / "probe" / "probe.json").read_text())
    assert probe["model"] == str(out / "ppo") and summary["probe"] == probe["best"] in probe["layers"]
    for side in ("before", "after", "before_sampled", "after_sampled", "before_heldout", "after_heldout"):
        assert 0 <= summary[side]["harmful_refusal_rate"] <= 1 and 0 <= summary[side]["benign_compliance_rate"] <= 1
    eval_json = json.loads((out / "eval" / "eval.json").read_text())
    assert eval_json["harmful_refusal_rate"] == summary["after"]["harmful_refusal_rate"]
    assert yaml.safe_load((out / "ppo" / "config.yaml").read_text())["training_args"]["refusal_judge_path"] == str(
        out / "judge"
    )
    assert json.loads((out / "judge" / "eval.json").read_text())["objective"] == "refusal"
    assert summary["after"]["judge_disagreement"] == eval_json["trained_judge"]["disagreement"]
    assert all("safety/judge_disagreement" in row for row in read_jsonl(out / "ppo" / "metrics.jsonl"))
    assert (out / "eval" / "report.md").is_file() and (out / "eval" / "training_curves.png").is_file()
    heldout = json.loads((out / "eval_heldout" / "eval.json").read_text())
    assert heldout["data"]["dataset_name"] == "bundled_heldout" and heldout["data"]["n_prompts"] == 79
    assert heldout["benign_compliance_rate"] == summary["after_heldout"]["benign_compliance_rate"]
    # The final policy loads from its folder alone, chat template included.
    tokenizer = AutoTokenizer.from_pretrained(out / "ppo")
    model = AutoModelForCausalLM.from_pretrained(out / "ppo")
    assert tokenizer.chat_template and model.config.vocab_size >= len(tokenizer)
    with pytest.raises(SafetyRLHFError, match="already holds a previous run"):
        main(DemoArguments(output_dir=str(out), model="tiny", recipes_dir=str(tmp_path / "recipes")))


def test_demo_with_ppo_lagrangian_trains_a_cost_model_and_runs_the_updates_asked(tmp_path):
    """`--algorithm ppo_lag --ppo_max_steps 3`: a cost model stage, then PPO-Lagrangian against it for 3 updates (the
    shortened recipe says 2); `parallel` off (the tiny demo's default): every stage in this process, in turn."""
    out = tmp_path / "demo"
    summary = main(
        DemoArguments(
            output_dir=str(out), model="tiny", recipes_dir=str(short_recipes(tmp_path / "recipes")),
            algorithm="ppo_lag", ppo_max_steps=3, parallel=False,
        )
    )  # fmt: skip
    assert not (out / "logs").exists()
    assert list(summary["seconds"]) == [
        "tiny models", "SFT warm start", "safety reward model", "evaluate the SFT policy", "safety cost model",
        "PPO-Lagrangian", "evaluate PPO vs SFT", "evaluate PPO vs SFT, sampled", "evaluate PPO vs SFT, held-out prompts",
        "probe the PPO policy's hidden states",
    ]  # fmt: skip
    assert summary["algorithm"] == "ppo_lag"
    cost = json.loads((out / "cost" / "eval.json").read_text())
    assert cost["objective"] == "cost"
    config = yaml.safe_load((out / "ppo" / "config.yaml").read_text())["training_args"]
    assert config["algorithm"] == "ppo_lag" and config["cost_model_path"] == str(out / "cost")
    assert config["max_steps"] == 3
    rows = read_jsonl(out / "ppo" / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3] and all("lagrangian/lambda" in row for row in rows)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"algorithm": "grpo"}, r"algorithm='grpo' has no demo; use one of: ppo, ppo_lag"),
        ({"model": "llama"}, r"model='llama' has no demo; use one of: smollm2, tiny"),
        ({"ppo_max_steps": 0}, r"ppo_max_steps=0 must be at least 1"),
    ],
)
def test_demo_refuses_an_unknown_model_or_algorithm_or_no_updates(tmp_path, fields, message):
    with pytest.raises(SafetyRLHFError, match=message):
        DemoArguments(output_dir=str(tmp_path / "demo"), **fields)
    assert not (tmp_path / "demo").exists()


# The real model's demo: the stages every algorithm runs, then the algorithm's own, then the three evaluations.
REAL_MODEL_STAGES = ["import SmolLM2-135M-Instruct", "sample the model's own responses", "SFT warm start",
                     "safety reward model"]  # fmt: skip
ALGORITHM_STAGES = {
    "ppo": ["refusal judge", "PPO"],  # ppo.yaml's label-aware reward reads a trained refusal judge
    "ppo_lag": ["sample the warm start's responses", "safety cost model", "PPO-Lagrangian"],
}
EVALUATIONS = ["evaluate PPO vs SFT", "evaluate PPO vs SFT, sampled", "evaluate PPO vs SFT, held-out prompts",
               "probe the PPO policy's hidden states"]  # fmt: skip


@pytest.mark.slow
@needs_smollm2
@pytest.mark.parametrize("algorithm", ["ppo", "ppo_lag"])
def test_demo_on_the_real_model_runs_every_stage_and_leaves_a_policy_that_loads_alone(tmp_path, algorithm):
    """`safety-rlhf demo --model smollm2 [--algorithm ppo_lag]` with every training stage cut to a few steps (about
    7.5 min on 2 cores, 9 min with ppo_lag): the import, the model's own responses, the warm start on them, the reward
    model with pairs from them (ppo_lag: the warm start's sampled responses and the cost model on both response
    files), PPO or PPO-Lagrangian, and the three evaluations, on the real SmolLM2-135M-Instruct."""
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "demo"
    recipes = short_recipes(tmp_path / "recipes", RECIPES_ROOT / "smollm2-135m-instruct")
    summary = main(
        DemoArguments(
            output_dir=str(out), model="smollm2", recipes_dir=str(recipes), base_model_dir=str(tmp_path / "base"),
            algorithm=algorithm,
        )
    )  # fmt: skip
    assert list(summary["seconds"]) == REAL_MODEL_STAGES + ALGORITHM_STAGES[algorithm] + EVALUATIONS
    n_train = len(load_prompts("bundled", "train"))
    own = read_jsonl(out / "own_responses.jsonl")
    assert len(own) == n_train and {(row["split"], row["decoding"]) for row in own} == {("train", "greedy")}
    sft_config = yaml.safe_load((out / "sft" / "config.yaml").read_text())
    assert sft_config["training_args"]["own_answers"] == str(out / "own_responses.jsonl")
    for side in ("before", "after", "before_heldout", "after_heldout"):
        assert 0 <= summary[side]["harmful_refusal_rate"] <= 1 and summary[side]["kl_to_reference"] is not None
    assert summary["after_sampled"]["kl_to_reference"] is None  # measured greedy and held out only
    reward = json.loads((out / "reward" / "eval.json").read_text())
    assert reward["real_n_train"] > 300  # pairs from the model's own responses joined the training
    if algorithm == "ppo_lag":
        warm = read_jsonl(out / "warm_responses.jsonl")
        assert len(warm) == n_train and {(row["split"], row["decoding"]) for row in warm} == {("train", "sampled")}
        assert json.loads((out / "cost" / "eval.json").read_text())["objective"] == "cost"
        cost_config = yaml.safe_load((out / "cost" / "config.yaml").read_text())["training_args"]
        assert cost_config["real_responses"] == f"{out / 'own_responses.jsonl'},{out / 'warm_responses.jsonl'}"
        rows = read_jsonl(out / "ppo" / "metrics.jsonl")
        assert [row["step"] for row in rows] == [1, 2] and all("lagrangian/lambda" in row for row in rows)
    tokenizer = AutoTokenizer.from_pretrained(out / "ppo")
    policy = AutoPeftModelForCausalLM.from_pretrained(out / "ppo")
    assert tokenizer.chat_template and policy.config.num_hidden_layers == 30
