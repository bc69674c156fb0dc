#!/usr/bin/env python3
"""Write `safety_rlhf/data/sft_warmstart.jsonl`: the warm start of a real chat model before PPO.

    python scripts/build_warmstart.py

A chat model such as SmolLM2-135M-Instruct complies with every harmful request of our eval split and, sampled, almost
never refuses: PPO cannot reinforce a behaviour it never samples, so it needs a warm start that refuses sometimes.
That warm start must not do PPO's job. It teaches refusal on HALF of the harmful categories only
(`WARMSTART_CATEGORIES`: every harmful train prompt of those categories with a written refusal from the bundled
preference pairs) and nothing else: no benign rows, so the model's benign answers stay its own, and no refusal of the
other five categories, which PPO must reach (with over-refusal of benign-but-alarming prompts to undo, if the warm
start spills over). Deterministic: the first refusal of each prompt's preference pairs, in file order.
"""

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "safety_rlhf" / "data"
WARMSTART_CATEGORIES = ("weapons", "cyber", "drugs", "fraud", "violence")


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
