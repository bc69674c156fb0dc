"""Command-line entry point: `safety-rlhf <verb> --config recipe.yaml [--key value ...]`.

Each verb is one function `main(*dataclasses)`; YAML gives the defaults, the command line overrides them, and an
unknown key fails naming the key (TRL's `TrlParser`). Under accelerate: `accelerate launch -m safety_rlhf.cli ppo ...`.
"""

import os
import sys
from dataclasses import dataclass, field
from importlib import import_module

from . import SafetyRLHFError


@dataclass
class DataArguments:
    kind: str = field(default="prompts", metadata={"help": "What to validate: `prompts`, `pairs` or `sft`."})


def _verbs() -> dict:
    """verb -> (dataclass types, entry point); imports are deferred so `--help` stays fast."""
    from reward.train import SafetyRewardConfig

    from .config import ModelArguments as ModelConfig
    from .config import SafetyPPOConfig, ScriptArguments
    from .demo import DemoArguments
    from .evaluate import EvalArguments
    from .gguf_import import GGUFImportArguments
    from .grpo import SafetyGRPOConfig
    from .hub import PushArguments
    from .plan import PlanArguments
    from .probe import ProbeArguments
    from .sample import SampleArguments
    from .sft import SafetySFTConfig
    from .tiny import TinyArguments

    def call(module: str, name: str = "main"):
        return lambda *args: getattr(import_module(module), name)(*args)

    return {
        "tiny": ([TinyArguments], call("safety_rlhf.tiny"), "build the tiny offline policy and classifier"),
        "import-gguf": (
            [GGUFImportArguments],
            call("safety_rlhf.gguf_import"),
            "write a model folder from a GGUF chat model (default: the bundled SmolLM2-135M-Instruct)",
        ),
        "data": (
            [ScriptArguments, DataArguments],
            lambda script_args, data_args: import_module("safety_rlhf.data").main(script_args, kind=data_args.kind),
            "validate a dataset source and print its counts",
        ),
        "sample": (
            [SampleArguments],
            call("safety_rlhf.sample"),
            "a policy's own responses to the bundled prompts (for reward --real_responses, sft --own_answers)",
        ),
        "sft": ([ScriptArguments, SafetySFTConfig, ModelConfig], call("safety_rlhf.sft"), "supervised warm start"),
        "reward": (
            [ScriptArguments, SafetyRewardConfig, ModelConfig],
            call("reward.train"),
            "train the safety reward (or cost) model",
        ),
        "ppo": ([ScriptArguments, SafetyPPOConfig, ModelConfig], call("safety_rlhf.ppo"), "PPO against the reward"),
        "grpo": (
            [ScriptArguments, SafetyGRPOConfig, ModelConfig],
            call("safety_rlhf.grpo"),
            "GRPO (TRL's GRPOTrainer, no critic) against the reward",
        ),
        "eval": ([ScriptArguments, EvalArguments], call("safety_rlhf.evaluate"), "safety evaluation and report"),
        "probe": (
            [ProbeArguments],
            call("safety_rlhf.probe"),
            "how well a policy's hidden states separate harmful from benign prompts (a linear probe)",
        ),
        "demo": (
            [DemoArguments],
            call("safety_rlhf.demo"),
            "the whole pipeline offline: tiny models, or --model smollm2",
        ),
        "push": ([PushArguments], call("safety_rlhf.hub"), "publish a run folder to the Hub with a model card"),
        "plan": (
            [ScriptArguments, SafetyPPOConfig, ModelConfig, PlanArguments],
            call("safety_rlhf.plan"),
            "estimate a PPO or GRPO recipe's peak GPU memory and settings that fit",
        ),
    }


def usage(verbs: dict) -> str:
    lines = ["usage: safety-rlhf <verb> --config recipe.yaml [--key value ...]", "", "verbs:"]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in verbs.items()]
    return "\n".join(lines)


def exit_at_once(code: int) -> None:
    """End the process with `code` now, output flushed, without the interpreter's teardown (destructors, atexit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    from .config import bad_value_error, unknown_key_error

    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = _verbs()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(verbs))
        return 0
    verb = argv.pop(0)
    if verb not in verbs:
        print(f"safety-rlhf: error: unknown verb {verb!r}; choose one of {', '.join(verbs)}", file=sys.stderr)
        return 2
    types, entry, _ = verbs[verb]
    if verb == "plan":
        # Planning runs anywhere: a GPU recipe's bf16 must not fail TrainingArguments' checks on a CPU machine.
        argv += ["--bf16", "false", "--fp16", "false", "--use_cpu", "true"]
    try:
        if verb == "plan" and import_module("safety_rlhf.plan").recipe_algorithm(argv) == "grpo":
            from .grpo import SafetyGRPOConfig

            types = [types[0], SafetyGRPOConfig, *types[2:]]
        unknown = unknown_key_error(types, argv)
        if unknown:
            raise SafetyRLHFError(unknown)
        parser = TrlParser(types, prog=f"safety-rlhf {verb}")
        bad = bad_value_error(parser, types, argv)
        if bad:
            raise SafetyRLHFError(bad)
        try:
            args = parser.parse_args_and_config(argv)
        except (ValueError, FileNotFoundError, TypeError) as err:
            raise SafetyRLHFError(" ".join(str(err).split())) from err
        entry(*args)
    except SafetyRLHFError as err:
        print(f"safety-rlhf {verb}: {'error: ' if err.exit_code == 2 else ''}{err}", file=sys.stderr)
        if getattr(err, "exit_at_once", False):  # trainer.CollectiveFailed: no teardown of a broken process group
            exit_at_once(err.exit_code)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"safety-rlhf {verb}: interrupted (a second Ctrl-C): stopped at once", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
