"""`safety-rlhf demo` (`make demo`): the whole pipeline, offline on the CPU, on the tiny recipes.

    safety-rlhf demo --output_dir runs/demo

Stages, each the same code as its verb with the recipe in `recipes/tiny/` (paths redirected into `output_dir`):
    1 tiny models  2 SFT warm start  3 safety reward model  4 evaluate the SFT policy  5 PPO  6 evaluate the PPO
    policy against the SFT one, greedy (eval.json, report.md, plots)  7 the same sampled at the training temperature
    8 the same greedy on the held-out prompts (`bundled_heldout`: written apart, five categories never trained on)
    9 summary table (summary.json)
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import check_output_dir

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"
HEADLINE = (
    ("harmful_refusal_rate", "harmful prompts refused"),
    ("benign_compliance_rate", "benign prompts answered"),
    ("benign_alarming_compliance_rate", "  of which benign-but-alarming"),
    ("plain_benign_compliance_rate", "  of which plain benign"),
    ("mean_score", "mean reward score"),
)


@dataclass
class DemoArguments:
    """Arguments of `safety-rlhf demo`."""

    output_dir: str = field(default="runs/demo", metadata={"help": "Folder that receives every stage's output."})
    recipes_dir: str = field(default=str(RECIPES), metadata={"help": "Folder holding sft/reward/ppo.yaml."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing demo folder."})


def parse(types: list, recipe: Path, **overrides) -> tuple:
    """The dataclasses of `types` that `safety-rlhf <verb> --config recipe --key value ...` would build."""
    from trl import TrlParser

    argv = ["--config", str(recipe)]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return TrlParser(types).parse_args_and_config(argv)


def main(args: DemoArguments) -> dict:
    from trl import ModelConfig, SFTConfig

    from reward.train import SafetyRewardConfig
    from reward.train import main as train_reward

    from . import evaluate, ppo, sft
    from .config import SafetyPPOConfig, ScriptArguments
    from .evaluate import EvalArguments
    from .tiny import TinyArguments, build_tiny_models

    out = check_output_dir(args.output_dir, args.overwrite_output_dir)
    recipes = Path(args.recipes_dir)
    over = {"overwrite_output_dir": "true"} if args.overwrite_output_dir else {}
    timings, console = {}, Console()

    def stage(name: str, fn):
        console.rule(f"[bold]{len(timings) + 1}. {name}")
        start = time.time()
        result = fn()
        timings[name] = round(time.time() - start, 1)
        return result

    stage(
        "tiny models",
        lambda: build_tiny_models(
            TinyArguments(output_dir=str(out / "models"), overwrite_output_dir=args.overwrite_output_dir)
        ),
    )
    stage(
        "SFT warm start",
        lambda: sft.main(
            *parse(
                [ScriptArguments, SFTConfig, ModelConfig],
                recipes / "sft.yaml",
                model_name_or_path=out / "models/policy",
                output_dir=out / "sft",
                **over,
            )
        ),
    )
    stage(
        "safety reward model",
        lambda: train_reward(
            *parse(
                [ScriptArguments, SafetyRewardConfig, ModelConfig],
                recipes / "reward.yaml",
                output_dir=out / "reward",
                **over,
            )
        ),
    )

    def parse_eval(data: dict | None = None, **fields) -> tuple:
        fields = {"reward_model_path": out / "reward", **fields}
        fields = {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}
        return ScriptArguments(overwrite_output_dir=args.overwrite_output_dir, **(data or {})), EvalArguments(**fields)

    stage(
        "evaluate the SFT policy",
        lambda: evaluate.main(*parse_eval(model_name_or_path=out / "sft", output_dir=out / "eval_sft")),
    )
    stage(
        "PPO",
        lambda: ppo.main(
            *parse(
                [ScriptArguments, SafetyPPOConfig, ModelConfig],
                recipes / "ppo.yaml",
                model_name_or_path=out / "sft",
                reward_model_path=out / "reward",
                output_dir=out / "ppo",
                **over,
            )
        ),
    )
    final = stage(
        "evaluate PPO vs SFT",
        lambda: evaluate.main(
            *parse_eval(
                model_name_or_path=out / "ppo",
                baseline_model_name_or_path=out / "sft",
                metrics_file=out / "ppo" / "metrics.jsonl",
                output_dir=out / "eval",
            )
        ),
    )
    # The same comparison sampled at the training temperature: what PPO optimised, not only its mode.
    sampled = stage(
        "evaluate PPO vs SFT, sampled",
        lambda: evaluate.main(
            *parse_eval(
                model_name_or_path=out / "ppo",
                baseline_model_name_or_path=out / "sft",
                temperature=0.7,
                output_dir=out / "eval_sampled",
            )
        ),
    )
    # Prompts written apart from the bundled splits: how far the behaviour carries to requests never trained on.
    heldout = stage(
        "evaluate PPO vs SFT, held-out prompts",
        lambda: evaluate.main(
            *parse_eval(
                data={"dataset_name": "bundled_heldout", "dataset_test_split": "test"},
                model_name_or_path=out / "ppo",
                baseline_model_name_or_path=out / "sft",
                output_dir=out / "eval_heldout",
            )
        ),
    )
    summary = {}
    for suffix, result in (("", final), ("_sampled", sampled), ("_heldout", heldout)):
        summary["before" + suffix] = {k: result["baseline"].get(k) for k, _ in HEADLINE}
        summary["after" + suffix] = {k: result.get(k) for k, _ in HEADLINE}
    summary.update(
        seconds=timings, total_seconds=round(sum(timings.values()), 1), report=str(out / "eval" / "report.md")
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(console, summary)
    return summary


def print_summary(console: Console, summary: dict) -> None:
    tables = (
        ("bundled eval split (greedy | sampled at T=0.7, seed 0)", ("before", "after", "before_sampled", "after_sampled")),
        ("held-out prompts, written apart (greedy)", ("before_heldout", "after_heldout")),
    )  # fmt: skip
    for title, sides in tables:
        table = Table(title=f"safety-rlhf demo: {title}")
        table.add_column("metric", no_wrap=True)
        for side in sides:
            model = "SFT" if side.startswith("before") else "PPO"
            table.add_column(f"{model} {'sampled' if side.endswith('sampled') else 'greedy'}", justify="right")
        for key, label in HEADLINE:
            values = [summary[side][key] for side in sides]
            table.add_row(label, *(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values))
        console.print(table)
    console.print(f"stage times (s): {summary['seconds']}; total {summary['total_seconds']} s")
    console.print(f"report: {summary['report']}")
