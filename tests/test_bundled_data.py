"""Checks on the bundled offline datasets in safety_rlhf/data/ (built by scripts/build_bundled_data.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "safety_rlhf" / "data"
GENERATOR = ROOT / "scripts" / "build_bundled_data.py"
FILES = ("prompts.jsonl", "pairs.jsonl", "sft.jsonl", "pairs_heldout.jsonl")

PROMPT_KEYS = {"prompt", "label", "category", "split"}
PAIR_KEYS = {"prompt", "chosen", "rejected", "label", "category", "split"}
SFT_KEYS = {"messages", "label", "category", "split"}
LABELS = {"harmful", "benign"}
REQUIRED_HARMFUL = {"weapons", "cyber", "self_harm", "fraud", "hate", "privacy", "drugs", "violence"}
REQUIRED_XSTEST = {
    "xstest_homonyms",
    "xstest_figurative_language",
    "xstest_safe_targets",
    "xstest_safe_contexts",
    "xstest_definitions",
    "xstest_historical_events",
    "xstest_privacy_public",
    "xstest_privacy_fictional",
}
# Placeholder compliances are content-free: every one of them carries a bracketed placeholder like "[omitted]".
PLACEHOLDER = re.compile(r"\[[^\]]+\]")


def load(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def norm(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def prompts() -> list[dict]:
    return load("prompts.jsonl")


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return load("pairs.jsonl")


@pytest.fixture(scope="module")
def sft() -> list[dict]:
    return load("sft.jsonl")


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return load("pairs_heldout.jsonl")


def test_prompts_schema_and_counts(prompts):
    assert len(prompts) >= 440
    for row in prompts:
        assert set(row) == PROMPT_KEYS
        assert row["label"] in LABELS
        assert row["split"] in {"train", "eval"}
        assert row["prompt"].strip() and row["category"].strip()
    harmful = [r for r in prompts if r["label"] == "harmful"]
    xstest = [r for r in prompts if r["category"].startswith("xstest_")]
    plain = [r for r in prompts if r["label"] == "benign" and not r["category"].startswith("xstest_")]
    assert len(harmful) >= 200
    harmful_cats = {r["category"] for r in harmful}
    assert len(harmful_cats) >= 8
    assert REQUIRED_HARMFUL <= harmful_cats
    assert all(r["label"] == "benign" for r in xstest)
    assert len(xstest) >= 120
    assert REQUIRED_XSTEST <= {r["category"] for r in xstest}
    assert len(plain) >= 80


def test_prompts_unique(prompts):
    keys = [norm(r["prompt"]) for r in prompts]
    assert len(keys) == len(set(keys))


def test_eval_split_fraction_and_coverage(prompts):
    for label in LABELS:
        rows = [r for r in prompts if r["label"] == label]
        assert sum(r["split"] == "eval" for r in rows) / len(rows) >= 0.25, label
    by_cat: dict[str, set[str]] = {}
    for r in prompts:
        by_cat.setdefault(r["category"], set()).add(r["split"])
    for category, splits in by_cat.items():
        assert splits == {"train", "eval"}, category


def test_eval_train_disjoint(prompts):
    train = {norm(r["prompt"]) for r in prompts if r["split"] == "train"}
    evals = {norm(r["prompt"]) for r in prompts if r["split"] == "eval"}
    assert not train & evals


def check_pair_rows(rows: list[dict], splits: set[str]) -> None:
    for row in rows:
        assert set(row) == PAIR_KEYS
        assert row["label"] in LABELS
        assert row["split"] in splits
        for key in ("prompt", "chosen", "rejected", "category"):
            assert isinstance(row[key], str) and row[key].strip(), (key, row)
        assert row["chosen"] != row["rejected"]


def test_pairs(pairs, prompts):
    assert len(pairs) >= 900
    check_pair_rows(pairs, {"train", "eval"})
    split_of = {norm(r["prompt"]): r["split"] for r in prompts}
    for row in pairs:
        if norm(row["prompt"]) in split_of:
            assert row["split"] == split_of[norm(row["prompt"])], row["prompt"]
    assert all(norm(r["prompt"]) in split_of for r in pairs)
    eval_frac = sum(r["split"] == "eval" for r in pairs) / len(pairs)
    assert 0.15 <= eval_frac <= 0.35
    assert len({(r["prompt"], r["chosen"], r["rejected"]) for r in pairs}) == len(pairs)


def test_pairs_response_variety(pairs):
    harmful = [r for r in pairs if r["label"] == "harmful"]
    benign = [r for r in pairs if r["label"] == "benign"]
    assert len({r["chosen"] for r in harmful}) >= 25  # refusal templates
    assert len({r["rejected"] for r in harmful}) >= 15  # placeholder compliance templates
    assert all(PLACEHOLDER.search(r["rejected"]) for r in harmful)
    assert not any(PLACEHOLDER.search(r["chosen"]) for r in harmful)
    # Unnecessary refusals of benign prompts reuse the harmful-refusal style, so the prompt has to matter.
    harmful_refusals = {r["chosen"] for r in harmful}
    assert {r["rejected"] for r in benign} <= harmful_refusals
    assert len({r["rejected"] for r in benign}) >= 10


def test_sft(sft, prompts):
    train_prompts = {norm(r["prompt"]) for r in prompts if r["split"] == "train"}
    split_of = {norm(r["prompt"]): r["split"] for r in prompts}
    covered = set()
    for row in sft:
        assert set(row) == SFT_KEYS
        assert row["label"] in LABELS
        assert row["split"] in {"train", "eval"}
        messages = row["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert all(set(m) == {"role", "content"} and m["content"].strip() for m in messages)
        key = norm(messages[0]["content"])
        assert split_of[key] == row["split"]
        if row["split"] == "train":
            covered.add(key)
    assert covered == train_prompts
    harmful_train = [r for r in sft if r["label"] == "harmful" and r["split"] == "train"]
    refusals = sum(not PLACEHOLDER.search(r["messages"][1]["content"]) for r in harmful_train)
    assert 0.35 <= refusals / len(harmful_train) <= 0.65


def test_sft_benign_answers_match_pairs(sft, pairs):
    chosen = {(r["prompt"], r["chosen"]) for r in pairs if r["label"] == "benign"}
    for row in sft:
        if row["label"] == "benign":
            assert (row["messages"][0]["content"], row["messages"][1]["content"]) in chosen


def test_heldout(heldout, prompts, pairs):
    assert len(heldout) >= 120
    check_pair_rows(heldout, {"test"})
    assert {r["label"] for r in heldout} == LABELS
    assert any(r["category"].startswith("xstest_") for r in heldout)
    new_categories = {r["category"] for r in heldout} - {r["category"] for r in prompts}
    assert len(new_categories) >= 2
    seen_prompts = {norm(r["prompt"]) for r in prompts}
    assert not {norm(r["prompt"]) for r in heldout} & seen_prompts
    seen_responses = {norm(t) for r in pairs for t in (r["chosen"], r["rejected"])}
    assert not {norm(t) for r in heldout for t in (r["chosen"], r["rejected"])} & seen_responses


def test_label_category_consistency(prompts, pairs, sft):
    label_of = {r["category"]: r["label"] for r in prompts}
    for row in prompts + pairs + sft:
        assert label_of[row["category"]] == row["label"], row["category"]


def test_generator_is_deterministic(tmp_path):
    subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, capture_output=True, timeout=300
    )
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), f"{name} is stale: rerun the generator"


def test_warmstart_refuses_every_harmful_train_prompt_and_nothing_else(prompts):
    """`sft_warmstart.jsonl` (scripts/build_warmstart.py): refusals of the harmful train prompts of all ten harmful
    categories."""
    import importlib.util

    from reward.refusal import classify_refusal

    rows = [json.loads(line) for line in (DATA / "sft_warmstart.jsonl").read_text().splitlines()]
    spec = importlib.util.spec_from_file_location("build_warmstart", ROOT / "scripts" / "build_warmstart.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert rows == builder.build()  # the file is what the script writes
    categories = set(builder.WARMSTART_CATEGORIES)
    harmful_categories = {p["category"] for p in prompts if p["label"] == "harmful"}
    assert {r["category"] for r in rows} == categories == harmful_categories and len(categories) == 10
    assert all(r["label"] == "harmful" and r["split"] == "train" for r in rows)
    assert all(classify_refusal(r["messages"][-1]["content"]) == "full_refusal" for r in rows)
    wanted = {p["prompt"] for p in prompts if p["label"] == "harmful" and p["split"] == "train"}
    wanted = {p["prompt"] for p in prompts if p["prompt"] in wanted and p["category"] in categories}
    assert {r["messages"][0]["content"] for r in rows} == wanted  # every train prompt of those categories, once


def test_smollm2_train_more_is_the_train_split_plus_new_prompts_and_nothing_evaluated(prompts, heldout):
    """recipes/smollm2-135m-instruct/train_more.jsonl (docs/EXPERIMENTS.md, 2026-12-01): the bundled train prompts
    plus 160 harmful and 160 benign ones written otherwise; none of them an eval or held-out prompt."""
    more = [json.loads(line) for line in (ROOT / "recipes" / "smollm2-135m-instruct" / "train_more.jsonl").open()]
    assert all(set(r) == PROMPT_KEYS and r["split"] == "train" for r in more)
    keys = [norm(r["prompt"]) for r in more]
    assert len(keys) == len(set(keys))
    train = [r for r in prompts if r["split"] == "train"]
    assert more[: len(train)] == train
    new = more[len(train) :]
    assert sum(r["label"] == "harmful" for r in new) == 160 and sum(r["label"] == "benign" for r in new) == 160
    label_of = {r["category"]: r["label"] for r in prompts}
    assert all(label_of[r["category"]] == r["label"] for r in new)  # bundled categories, the same labels
    evaluated = {norm(r["prompt"]) for r in prompts if r["split"] == "eval"} | {norm(r["prompt"]) for r in heldout}
    assert not set(keys) & evaluated
