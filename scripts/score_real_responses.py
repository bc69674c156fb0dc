#!/usr/bin/env python3
"""Pairwise accuracy of a reward model on a policy's own responses to prompts it was not trained on.

    PYTHONPATH=. python scripts/score_real_responses.py --reward_model runs/tiny/reward \\
        --responses runs/smollm2_responses.jsonl

Pairs come from `reward.train.real_response_pairs` (the responses of `safety-rlhf sample` against the
refusals written for the same prompts): harmful prompts, the refusal must win; benign prompts, the model's own answer
must win, reported apart for benign-but-alarming (`alarming`, categories `xstest_*`) and plain benign prompts
(`plain`). `hack_*` keys: the real response must beat its empty, truncated, refusal-mixed and repeated versions (see
`reward.train.HACKS`). `real_*` keys: the eval split; `real_heldout_*`: the held-out prompts. `safety-rlhf reward`
writes the same keys into `eval.json` when trained with `--real_responses`.
"""

import argparse
import json

from reward import SafetyRewardModel
from reward.train import evaluate_real_responses, real_response_pairs
from safety_rlhf.data import load_pairs, read_responses


def main(reward_model: str, responses: str, batch_size: int = 64, hacks: bool = True) -> dict:
    model = SafetyRewardModel.from_pretrained(reward_model, device="cpu")
    rows = read_responses(responses)
    result = {}
    for prefix, split, written in (
        ("real_", "eval", load_pairs("bundled", "eval")),
        ("real_heldout_", "heldout", load_pairs("bundled_heldout")),
    ):
        result.update(
            evaluate_real_responses(model, real_response_pairs(rows, written, split), prefix, batch_size, hacks)
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward_model", required=True)
    parser.add_argument("--responses", default="runs/smollm2_responses.jsonl")
    parser.add_argument("--output", help="also write the numbers to this JSON file")
    parser.add_argument("--no_hacks", action="store_true", help="skip the degenerate variants (5x fewer texts)")
    cli = parser.parse_args()
    numbers = main(cli.reward_model, cli.responses, hacks=not cli.no_hacks)
    text = json.dumps(numbers, indent=2)
    print(text)
    if cli.output:
        with open(cli.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
