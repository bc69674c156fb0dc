#!/usr/bin/env python3
"""Write `safety_rlhf/data/sft_warmstart.jsonl`: the warm start of a real chat model before PPO.

    python scripts/build_warmstart.py

A chat model such as SmolLM2-135M-Instruct complies with every harmful request of our eval split and, sampled, almost
never refuses: PPO cannot reinforce a behaviour it never samples, so it needs a warm start that refuses. It teaches
refusal on every harmful train prompt (`WARMSTART_CATEGORIES`: all ten harmful categories, each prompt with a written
refusal from the bundled preference pairs) and nothing else: no benign rows here (the SFT recipe adds the model's own
benign answers), so the model's benign answers stay its own. Until 2026-12-06 it covered five of the ten categories,
leaving the others to PPO; with all ten, the warm start's greedy eval rates went from 0.643 / 0.875 (harmful refused
/ benign answered) to 0.886 / 0.838 (docs/EXPERIMENTS.md, "Safety RL with a label-aware reward"). Deterministic: the
first refusal of each prompt's preference pairs, in file order.
"""

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "safety_rlhf" / "data"
WARMSTART_CATEGORIES = (
    "weapons", "cyber", "drugs", "fraud", "violence", "self_harm", "hate", "privacy", "extremism", "harassment",
)  # fmt: skip


def build() -> list[dict]:
    pairs = [json.loads(line) for line in (DATA / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    rows, seen = [], set()
    for pair in pairs:
        if pair["label"] != "harmful" or pair["split"] != "train" or pair["category"] not in WARMSTART_CATEGORIES:
            continue
        if pair["prompt"] in seen:
            continue
        seen.add(pair["prompt"])
        messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["chosen"]}]
        rows.append({"messages": messages, "label": "harmful", "category": pair["category"], "split": "train"})
    return rows


if __name__ == "__main__":
    rows = build()
    out = DATA / "sft_warmstart.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} rows -> {out}")
