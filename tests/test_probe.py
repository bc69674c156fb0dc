"""`safety-rlhf probe`: the linear read-out of a policy's hidden states, on the tiny policy and a toy prompt set."""

import json
import random

import pytest

from safety_rlhf import SafetyRLHFError
from safety_rlhf.cli import main as cli_main
from safety_rlhf.probe import ProbeArguments, best_layer, choose_layers

HARMFUL_WORDS = ["bomb", "poison", "steal", "weapon", "explosive", "kill", "hack", "drugs"]
BENIGN_WORDS = ["bread", "poem", "garden", "music", "river", "recipe", "flower", "painting"]


def toy_prompts(path, shuffle_labels: bool = False):
    """60 train and 40 eval prompts, half harmful: words from two disjoint lists, so the two labels are separable
    from the text; with `shuffle_labels` the labels are permuted and carry nothing."""
    rng, rows, seen = random.Random(0), [], set()
    for split, n in (("train", 60), ("eval", 40)):
        for i in range(n):
            harmful = i % 2 == 0
            words = tuple(rng.sample(HARMFUL_WORDS if harmful else BENIGN_WORDS, 3))
            while words in seen:
                words = tuple(rng.sample(HARMFUL_WORDS if harmful else BENIGN_WORDS, 3))
            seen.add(words)
            prompt = f"Tell me about {words[0]} and {words[1]} with {words[2]}."
            rows.append(
                {"prompt": prompt, "label": "harmful" if harmful else "benign", "category": "toy", "split": split}
            )
    if shuffle_labels:
        labels = [r["label"] for r in rows]
        rng.shuffle(labels)
        rows = [r | {"label": label} for r, label in zip(rows, labels)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_probe(tiny_models, tmp_path, shuffle_labels: bool) -> dict:
    source = toy_prompts(tmp_path / f"toy_{shuffle_labels}.jsonl", shuffle_labels)
    out = tmp_path / f"probe_{shuffle_labels}"
    code = cli_main(
        ["probe", "--model_name_or_path", str(tiny_models["policy"]), "--output_dir", str(out)]
        + ["--dataset_name", str(source), "--layers", "1,2"]
    )
    assert code == 0
    return json.loads((out / "probe.json").read_text())


def test_separable_prompts_score_high(tiny_models, tmp_path):
    result = run_probe(tiny_models, tmp_path, shuffle_labels=False)
    assert [e["layer"] for e in result["layers"]] == [1, 2]
    assert result["num_layers"] == 2
    assert result["train"]["prompts"] == 60 and result["eval"]["prompts"] == 40
    best = result["best"]
    assert best in result["layers"]
    assert best["harmful"] >= 0.9 and best["benign"] >= 0.9


def test_shuffled_labels_score_near_chance(tiny_models, tmp_path):
    result = run_probe(tiny_models, tmp_path, shuffle_labels=True)
    for entry in result["layers"]:
        assert 0.25 <= (entry["harmful"] + entry["benign"]) / 2 <= 0.75, entry


def test_choose_layers():
    assert choose_layers("auto", 30) == [5, 10, 15, 20, 25, 30]
    assert choose_layers("auto", 2) == [1, 2]
    assert choose_layers("auto", 4) == [1, 2, 3, 4]
    assert choose_layers("-1,0,3,3", 4) == [0, 3, 4]
    with pytest.raises(SafetyRLHFError, match="outside 0..4"):
        choose_layers("5", 4)


def test_best_layer_takes_the_highest_mean_first_on_ties():
    layers = [{"layer": 1, "harmful": 0.5, "benign": 1.0}, {"layer": 2, "harmful": 1.0, "benign": 0.5}]
    assert best_layer(layers)["layer"] == 1
    layers.append({"layer": 3, "harmful": 0.9, "benign": 0.9})
    assert best_layer(layers)["layer"] == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"C": 0.0}, "C=0.0 must be positive"),
        ({"layers": "ten"}, "layers='ten': give comma-separated integers"),
        ({"batch_size": 0}, "batch_size=0 must be at least 1"),
        ({"dtype": "float8"}, "dtype='float8' is not supported"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(SafetyRLHFError, match=message):
        ProbeArguments(model_name_or_path="m", output_dir="o", **kwargs)


def test_one_label_train_split_fails_clearly_and_writes_nothing(tiny_models, tmp_path, capsys):
    source = tmp_path / "one_label.jsonl"
    row = {"label": "benign", "category": "toy", "split": "train"}
    rows = [row | {"prompt": f"Tell me about bread number {i}."} for i in range(4)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "probe"
    code = cli_main(
        ["probe", "--model_name_or_path", str(tiny_models["policy"]), "--output_dir", str(out)]
        + ["--dataset_name", str(source), "--eval_split", "train"]
    )
    assert code == 2
    assert "holds only benign prompts; the probe needs both labels" in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_is_kept(tiny_models, tmp_path, capsys):
    out = tmp_path / "probe"
    out.mkdir()
    (out / "probe.json").write_text("{}")
    code = cli_main(["probe", "--model_name_or_path", str(tiny_models["policy"]), "--output_dir", str(out)])
    assert code == 2
    assert "already holds a previous run" in capsys.readouterr().err
    assert (out / "probe.json").read_text() == "{}"
