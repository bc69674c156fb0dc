"""`safety-rlhf demo` (`make demo`): the whole pipeline, offline on the CPU.

    safety-rlhf demo --output_dir runs/demo                                 # the real chat model, SmolLM2-135M
    safety-rlhf demo --model tiny --output_dir runs/demo-tiny               # the tiny random-initialised models

Stages, each the same code as its verb with the recipes in `recipes/smollm2-135m-instruct/` (or `recipes/tiny/`),
paths redirected into `output_dir`:
    smollm2: 1 import SmolLM2-135M-Instruct from the bundled GGUF (once; reused from `base_model_dir`)  2 its own
      greedy responses to the train prompts (`safety-rlhf sample`)  3 warm start (SFT on refusals of every harmful train
      prompt plus the model's own benign answers, merged)  4 safety reward model (the written pairs plus pairs
      from the model's own responses)  5 PPO from the warm start
    tiny: 1 tiny models  2 SFT warm start  3 safety reward model  4 evaluate the SFT policy  5 PPO
when the PPO recipe names `refusal_judge_path` (the label-aware reward), a refusal judge is trained after the reward
model (`judge.yaml`, on the written pairs and the model's own responses), PPO reads it and the evaluations report its
disagreement with the phrase list; with `--algorithm ppo_lag` (`make demo-lag`), PPO-Lagrangian instead of PPO (`ppo_lag.yaml`), after two more stages:
the warm start's sampled responses to the train prompts (smollm2 only: the cost model must see the compliances PPO
will sample) and the safety cost model (`cost.yaml`, on both response files);
then: evaluate the PPO policy against the warm start, greedy (eval.json, report.md, plots), the same sampled at the
training temperature, the same greedy on the held-out prompts (`bundled_heldout`: written apart, five categories
never trained on), and a summary table (summary.json). On SmolLM2 the evaluations also measure each policy's KL to
the untrained model along its own responses. On SmolLM2, stages that do not read each other run side by side in two
processes (`parallel`): the warm start beside the reward model and judge, the evaluations and the probe two by two.
"""

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from . import SafetyRLHFError
from .config import check_output_dir
from .precision import DTYPE_CHOICES, NATIVE, describe

RECIPES_ROOT = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = RECIPES_ROOT / "tiny"
MODELS = {"smollm2": "smollm2-135m-instruct", "tiny": "tiny"}
ALGORITHMS = {"ppo": "ppo.yaml", "ppo_lag": "ppo_lag.yaml"}
HEADLINE = (
    ("harmful_refusal_rate", "harmful prompts refused"),
    ("benign_compliance_rate", "benign prompts answered"),
    ("benign_alarming_compliance_rate", "  of which benign-but-alarming"),
    ("plain_benign_compliance_rate", "  of which plain benign"),
    ("mean_score", "mean reward score"),
    ("benign_answer_tokens", "benign answers: mean tokens"),
    ("kl_to_reference", "KL to the untrained model"),
)
EXTRA = (  # read from each evaluation's other keys
    ("refuse_then_answer_rate", "harmful: refused, then answered (partial)"),
    ("judge_disagreement", "trained judge vs phrase list: disagree"),
)


@dataclass
class DemoArguments:
    """Arguments of `safety-rlhf demo`."""

    output_dir: str = field(default="runs/demo", metadata={"help": "Folder that receives every stage's output."})
    model: str = field(
        default="smollm2", metadata={"help": "`smollm2` (the real chat model) or `tiny` (tiny random models)."}
    )
    recipes_dir: str | None = field(
        default=None, metadata={"help": "Folder holding sft/reward/ppo.yaml; default recipes/<model's folder>."}
    )
    base_model_dir: str = field(
        default="models/smollm2-135m-instruct",
        metadata={"help": "Where SmolLM2 is imported from its GGUF, once; later demos reuse it."},
    )
    algorithm: str = field(
        default="ppo",
        metadata={
            "help": "`ppo` (against the reward model, ppo.yaml) or `ppo_lag` (PPO-Lagrangian: adds a cost model, "
            "cost.yaml, and the warm start's sampled responses it learns from; ppo_lag.yaml)."
        },
    )
    ppo_max_steps: int | None = field(
        default=None, metadata={"help": "PPO updates, replacing the recipe's max_steps (24 in both SmolLM2 recipes)."}
    )
    eval_batch_size: int = field(default=80, metadata={"help": "Prompts per generate call in the evaluations."})
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "Every stage's dtype, replacing the recipes' (SmolLM2: native, bf16 where the CPU computes it "
            "natively, else fp32; tiny: float32); --dtype float32 gives the fp32 demo."
        },
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing demo folder."})
    parallel: bool | None = field(
        default=None,
        metadata={
            "help": "Run independent stages (the warm start beside the reward model and judge; the three "
            "evaluations and the probe) in two processes that share the torch threads, their output in "
            "output_dir/logs; false runs every stage in this process, one after another. Default: on for smollm2, "
            "off for tiny (a new process's imports take longer than its tiny stages)."
        },
    )

    def __post_init__(self):
        if self.model not in MODELS:
            raise SafetyRLHFError(f"model={self.model!r} has no demo; use one of: {', '.join(MODELS)}")
        if self.algorithm not in ALGORITHMS:
            raise SafetyRLHFError(f"algorithm={self.algorithm!r} has no demo; use one of: {', '.join(ALGORITHMS)}")
        if self.dtype is not None and self.dtype not in DTYPE_CHOICES:
            raise SafetyRLHFError(f"dtype={self.dtype!r} is not supported; use one of: {', '.join(DTYPE_CHOICES)}")
        if self.ppo_max_steps is not None and self.ppo_max_steps < 1:
            raise SafetyRLHFError(f"ppo_max_steps={self.ppo_max_steps} must be at least 1 (or unset: the recipe's)")
        if self.recipes_dir is None:
            self.recipes_dir = str(RECIPES_ROOT / MODELS[self.model])
        if self.parallel is None:
            self.parallel = self.model == "smollm2"


def parse(types: list, recipe: Path, **overrides) -> tuple:
    """The dataclasses of `types` that `safety-rlhf <verb> --config recipe --key value ...` would build."""
    from trl import TrlParser

    argv = ["--config", str(recipe)]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return TrlParser(types).parse_args_and_config(argv)


def run_logged(log: str, threads: int, steps: list) -> list:
    """One worker of `in_parallel`: `threads` torch threads, stdout and stderr to `log`, then each `(fn, args)` of
    `steps` in turn; returns [(result, seconds)]. Module-level, so a spawned process can unpickle it."""
    import torch

    torch.set_num_threads(threads)
    with open(log, "w", encoding="utf-8") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        done = []
        for fn, fn_args in steps:
            start = time.time()
            result = fn(*fn_args)
            done.append((result, round(time.time() - start, 1)))
        return done


def sft_stage(*args) -> None:
    """`sft.main` without its return value (a trainer, which cannot cross processes)."""
    from . import sft

    sft.main(*args)


def in_parallel(workers: list[list], logs: list[Path]) -> list[list]:
    """Run each worker's steps (a list of `(fn, args)`) in its own spawned process, the torch threads of this one
    shared between them: on 2 CPU cores, two 1-thread processes trained PPO about 1.3x faster together than one
    2-thread process (docs/EXPERIMENTS.md, 2026-12-06): small models leave threads idle between small ops. Returns
    each worker's [(result, seconds)]; the first failure is raised here."""
    import torch

    threads = max(1, torch.get_num_threads() // len(workers))
    with ProcessPoolExecutor(len(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_logged, str(log), threads, steps) for log, steps in zip(logs, workers, strict=True)]
        return [future.result() for future in futures]


def main(args: DemoArguments) -> dict:
    from reward.train import SafetyRewardConfig
    from reward.train import main as train_reward

    from . import evaluate, ppo
    from .config import ModelArguments as ModelConfig
    from .config import SafetyPPOConfig, ScriptArguments
    from .evaluate import EvalArguments
    from .sft import MERGED_DIR, SafetySFTConfig

    out = check_output_dir(args.output_dir, args.overwrite_output_dir)
    recipes = Path(args.recipes_dir)
    over = {"overwrite_output_dir": "true"} if args.overwrite_output_dir else {}
    if args.dtype:
        over["dtype"] = args.dtype
    generation_dtype = args.dtype or (NATIVE if args.model == "smollm2" else "float32")  # sample and eval stages
    timings, console, demo_start = {}, Console(), time.time()
    real = args.model == "smollm2"

    def stage(name: str, fn):
        console.rule(f"[bold]{len(timings) + 1}. {name}")
        start = time.time()
        result = fn()
        timings[name] = round(time.time() - start, 1)
        return result

    def stages_together(workers: list[list[tuple]], order: list[tuple] | None = None) -> dict:
        """Independent stages: each worker a list of `(name, fn, args)` run in turn, the workers side by side
        (`in_parallel`) unless `parallel` is off or there is one thread; `order` (the same tuples) is the order of
        the stage list and of a run in this process. Returns {name: result}."""
        import torch

        named = order or [step for worker in workers for step in worker]
        if not args.parallel or torch.get_num_threads() < 2:
            return {name: stage(name, lambda fn=fn, fn_args=fn_args: fn(*fn_args)) for name, fn, fn_args in named}
        first = len(timings) + 1
        console.rule(f"[bold]{first}-{first + len(named) - 1}. {' | '.join(name for name, _, _ in named)}")
        logs = [out / "logs" / (worker[0][0].replace(" ", "_").replace(",", "") + ".log") for worker in workers]
        logs[0].parent.mkdir(parents=True, exist_ok=True)
        console.print(f"side by side, in {len(workers)} processes; their output: {', '.join(map(str, logs))}")
        done = in_parallel([[(fn, fn_args) for _, fn, fn_args in worker] for worker in workers], logs)
        results, seconds = {}, {}
        for worker, outcomes in zip(workers, done, strict=True):
            for (name, _, _), (result, took) in zip(worker, outcomes, strict=True):
                results[name], seconds[name] = result, took
        timings.update((name, seconds[name]) for name, _, _ in named)
        return results

    def sample_train(name: str, model: Path, output: Path, **fields) -> Path:
        """A `safety-rlhf sample` stage: `model`'s responses to the train prompts, written to `output`."""
        from .sample import SampleArguments
        from .sample import main as sample

        settings = SampleArguments(
            model_name_or_path=str(model),
            output=str(output),
            splits="train",
            batch_size=args.eval_batch_size,
            dtype=generation_dtype,
            **fields,
        )
        stage(name, lambda: sample(settings))
        return output

    if real:
        from .gguf_import import import_gguf

        base = stage("import SmolLM2-135M-Instruct", lambda: import_gguf(None, args.base_model_dir)[0])
    else:
        from .tiny import TinyArguments, build_tiny_models

        stage(
            "tiny models",
            lambda: build_tiny_models(
                TinyArguments(output_dir=str(out / "models"), overwrite_output_dir=args.overwrite_output_dir)
            ),
        )
        base = out / "models" / "policy"
    # The real model's own responses to the train prompts: its benign answers join the warm start (so the warm start
    # keeps its voice), and the reward model learns to rank its real compliance below a refusal.
    own = None
    if real:
        own = sample_train("sample the model's own responses", base, out / "own_responses.jsonl", decodings="greedy")
    # PPO starts from the warm start: on SmolLM2 its LoRA merged into a full model (the PPO adapter then loads alone).
    start = out / "sft" / MERGED_DIR if real else out / "sft"

    def scorer_args(recipe: str, folder: str, responses: Path | str | None) -> tuple:
        """The reward, judge or cost model stage's arguments (`reward.train`): the written pairs plus `responses`."""
        extra = {"real_responses": responses} if responses else {}
        types = [ScriptArguments, SafetyRewardConfig, ModelConfig]
        return parse(types, recipes / recipe, output_dir=out / folder, **extra, **over)

    # The warm start, and beside it (it does not read the warm start) the reward model, then the label-aware reward's
    # refusal judge when the PPO recipe reads one (refusal_judge_path): trained on the written pairs and the model's
    # own responses, so PPO is not paid by the phrase list that grades it.
    warm_start = (
        "SFT warm start",
        sft_stage,
        parse(
            [ScriptArguments, SafetySFTConfig, ModelConfig],
            recipes / "sft.yaml",
            model_name_or_path=base,
            output_dir=out / "sft",
            **({"own_answers": own} if own else {}),
            **over,
        ),
    )
    scorers = [("safety reward model", train_reward, scorer_args("reward.yaml", "reward", own))]
    ppo_recipe = recipes / ALGORITHMS[args.algorithm]
    ppo_fields = yaml.safe_load(ppo_recipe.read_text(encoding="utf-8"))
    judge = {}
    if ppo_fields.get("refusal_judge_path"):
        scorers.append(("refusal judge", train_reward, scorer_args("judge.yaml", "judge", own)))
        judge = {"refusal_judge_path": out / "judge"}
    stages_together([[warm_start], scorers])

    def parse_eval(data: dict | None = None, kl: bool = True, **fields) -> tuple:
        fields = {"reward_model_path": out / "reward", "batch_size": args.eval_batch_size, "dtype": generation_dtype,
                  **judge, **fields}  # fmt: skip
        if real:
            fields.update(max_new_tokens=48)  # answers long enough to judge and measure
            if kl:
                fields.update(kl_reference=base)
        fields = {k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}
        return ScriptArguments(overwrite_output_dir=args.overwrite_output_dir, **(data or {})), EvalArguments(**fields)

    if not real:
        stage(
            "evaluate the SFT policy",
            lambda: evaluate.main(*parse_eval(model_name_or_path=out / "sft", output_dir=out / "eval_sft")),
        )
    lag = {}
    if args.algorithm == "ppo_lag":
        warm_and_own = None
        if real:
            # The cost model learns what a harmful compliance looks like from the untrained model's greedy answers and
            # the warm start's sampled ones, as PPO samples them; with the former alone it rated most of the warm
            # start's compliances safe and the constraint could not bite (cost.yaml).
            warm = sample_train(
                "sample the warm start's responses", start, out / "warm_responses.jsonl", decodings="sampled",
                max_new_tokens=32,
            )  # fmt: skip
            warm_and_own = f"{own},{warm}"
        stage("safety cost model", lambda: train_reward(*scorer_args("cost.yaml", "cost", warm_and_own)))
        lag = {"cost_model_path": out / "cost"}
    steps = {} if args.ppo_max_steps is None else {"max_steps": args.ppo_max_steps}
    # The supervised term's rows are the warm start's: its written conversations and this demo's own answers.
    ptx = {"ptx_own_answers": own} if own and ppo_fields.get("ptx_own_answers") else {}
    stage(
        "PPO-Lagrangian" if args.algorithm == "ppo_lag" else "PPO",
        lambda: ppo.main(
            *parse(
                [ScriptArguments, SafetyPPOConfig, ModelConfig],
                ppo_recipe,
                model_name_or_path=start,
                reward_model_path=out / "reward",
                output_dir=out / "ppo",
                **lag,
                **judge,
                **ptx,
                **steps,
                **over,
            )
        ),
    )
    # The evaluations and the probe read the trained policy only: side by side. Greedy against the warm start (with
    # the training curves); the same sampled at the training temperature (what PPO optimised, not only its mode); the
    # held-out prompts, written apart from the bundled splits (how far the behaviour carries to requests never trained
    # on); the probe: what the policy's own hidden states tell apart with a linear read-out (train -> eval prompts),
    # how far its behaviour is from what it can already distinguish.
    from .probe import ProbeArguments
    from .probe import main as probe

    compared = {"model_name_or_path": out / "ppo", "baseline_model_name_or_path": start}
    greedy = ("evaluate PPO vs SFT", evaluate.main, parse_eval(
        **compared, metrics_file=out / "ppo" / "metrics.jsonl", output_dir=out / "eval"
    ))  # fmt: skip
    # The KL to the untrained model is measured greedy and held out: on the sampled responses its forward pass of the
    # untrained model would be a third of the stage (2 cores, 2026-12-07).
    sampled = ("evaluate PPO vs SFT, sampled", evaluate.main, parse_eval(
        **compared, kl=False, temperature=0.7, output_dir=out / "eval_sampled"
    ))  # fmt: skip
    heldout = ("evaluate PPO vs SFT, held-out prompts", evaluate.main, parse_eval(
        data={"dataset_name": "bundled_heldout", "dataset_test_split": "test"}, **compared,
        output_dir=out / "eval_heldout",
    ))  # fmt: skip
    probe_args = ProbeArguments(
        model_name_or_path=str(out / "ppo"), output_dir=str(out / "probe"), dtype=generation_dtype,
        overwrite_output_dir=args.overwrite_output_dir,
    )  # fmt: skip
    probed = ("probe the PPO policy's hidden states", probe, (probe_args,))
    # Two workers of about equal length.
    results = stages_together([[greedy, probed], [sampled, heldout]], order=[greedy, sampled, heldout, probed])
    final, sampled, heldout, probed = (results[name] for name, _, _ in (greedy, sampled, heldout, probed))
    summary = {"model": args.model, "algorithm": args.algorithm, "probe": probed["best"]}
    for suffix, result in (("", final), ("_sampled", sampled), ("_heldout", heldout)):
        summary["before" + suffix] = {k: result["baseline"].get(k) for k, _ in HEADLINE}
        summary["after" + suffix] = {k: result.get(k) for k, _ in HEADLINE}
        for side, metrics in (("before", result["baseline"]), ("after", result)):
            summary[side + suffix]["refuse_then_answer_rate"] = (metrics.get("partial_refusal_rate") or {}).get(
                "harmful"
            )
            if "trained_judge" in metrics:
                summary[side + suffix]["judge_disagreement"] = metrics["trained_judge"]["disagreement"]
    summary.update(
        seconds=timings, total_seconds=round(time.time() - demo_start, 1), machine=describe(cpu=True),
        report=str(out / "eval" / "report.md"),
    )  # fmt: skip
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
        for key, label in HEADLINE + EXTRA:
            if all(key not in summary[side] for side in sides):
                continue
            values = [summary[side].get(key) for side in sides]
            table.add_row(
                label, *(f"{v:.3f}" if isinstance(v, float) else "n/a" if v is None else str(v) for v in values)
            )
        console.print(table)
    probe = summary["probe"]
    console.print(
        f"separable in the PPO policy's hidden states (linear probe, layer {probe['layer']}, eval prompts): harmful "
        f"{probe['harmful']:.3f}, benign {probe['benign']:.3f}; its greedy behaviour: harmful refused "
        f"{summary['after']['harmful_refusal_rate']:.3f}, benign answered {summary['after']['benign_compliance_rate']:.3f}"
    )
    console.print(
        f"stage times (s; stages side by side overlap): {summary['seconds']}; total (wall) {summary['total_seconds']} s on "
        f"{summary['machine']}"
    )
    console.print(f"report: {summary['report']}")
