"""The command line: overrides, unknown keys, and each bad input of the foundation issue as one clear line."""

import json
import subprocess
import sys

import pytest
import yaml

from safety_rlhf.cli import main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def write_recipe(path, **kw):
    path.write_text(yaml.safe_dump(kw))
    return str(path)


def sft_recipe(tmp_path, tiny_models, **kw):
    base = dict(
        model_name_or_path=str(tiny_models["policy"]), dtype="float32", output_dir=str(tmp_path / "out"),
        use_cpu=True, bf16=False, report_to="none", max_steps=2, per_device_train_batch_size=4,
        save_strategy="no", gradient_checkpointing=False, max_samples=16,
    )  # fmt: skip
    base.update(kw)
    return write_recipe(tmp_path / "sft.yaml", **base)


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_help_lists_the_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(
        verb in out
        for verb in (
            "tiny",
            "import-gguf",
            "sample",
            "data",
            "sft",
            "reward",
            "ppo",
            "grpo",
            "eval",
            "probe",
            "demo",
            "push",
            "plan",
        )
    )


def test_unknown_verb(capsys):
    code, err = run_cli(capsys, "fly")
    assert code == 2 and "unknown verb 'fly'" in err


def test_unknown_yaml_key_fails_naming_it(tmp_path, tiny_models, capsys):
    recipe = sft_recipe(tmp_path, tiny_models, lerning_rate=0.1)
    code, err = run_cli(capsys, "sft", "--config", recipe)
    assert code == 2 and "lerning_rate" in err
    assert not (tmp_path / "out").exists()


def test_existing_output_dir_is_left_untouched(tmp_path, tiny_models, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("previous run")
    code, err = run_cli(capsys, "sft", "--config", sft_recipe(tmp_path, tiny_models))
    assert code == 2 and "already holds a previous run" in err and "--overwrite_output_dir" in err
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]
    assert (out / "model.safetensors").read_text() == "previous run"


@pytest.mark.parametrize(
    "rows, expected",
    [
        (['{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}', "{oops"],
         "line 2"),
        (['{"text": "hello"}'], "messages"),
    ],
)  # fmt: skip
def test_bad_dataset_fails_with_one_line(tmp_path, tiny_models, capsys, rows, expected):
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(rows) + "\n")
    recipe = sft_recipe(tmp_path, tiny_models, dataset_name=str(data), dataset_train_split="train")
    code, err = run_cli(capsys, "sft", "--config", recipe)
    assert code == 2 and expected in err and str(data.name) in err
    assert not (tmp_path / "out").exists()


def test_nonexistent_model_path(tmp_path, tiny_models, capsys):
    recipe = sft_recipe(tmp_path, tiny_models, model_name_or_path=str(tmp_path / "missing-model"))
    code, err = run_cli(capsys, "sft", "--config", recipe)
    assert code == 2 and "missing-model" in err and "does not exist" in err


def test_a_failed_collective_exits_2_without_the_interpreter_teardown(tmp_path, capsys, monkeypatch):
    """After a collective failed, gloo's threads can abort the interpreter's teardown (SIGABRT instead of 2): the CLI
    prints the error, then leaves with os._exit(2)."""
    import safety_rlhf.cli as cli
    from safety_rlhf.trainer import CollectiveFailed

    verbs = cli._verbs()

    def entry(*args):
        raise CollectiveFailed("update 2: a collective operation failed on rank 0 of 2 (Timed out)")

    class Exited(Exception):
        pass

    def os_exit(code):
        raise Exited(code)

    monkeypatch.setattr(cli, "_verbs", lambda: {"ppo": (verbs["ppo"][0], entry, "")})
    monkeypatch.setattr(cli.os, "_exit", os_exit)
    with pytest.raises(Exited) as exited:
        cli.main(["ppo", "--output_dir", str(tmp_path / "run")])
    assert exited.value.args == (2,)
    assert "safety-rlhf ppo: error: update 2: a collective operation failed" in capsys.readouterr().err


def test_data_verb_counts_labels_and_categories(capsys):
    assert main(["data", "--dataset_name", "bundled", "--kind", "prompts"]) == 0
    out = capsys.readouterr().out
    assert "harmful" in out and "benign" in out and "xstest_homonyms" in out


def test_console_script_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "safety_rlhf.cli", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0 and "usage: safety-rlhf" in proc.stdout


def test_sft_trains_offline_and_writes_the_resolved_config(tmp_path, tiny_models, capsys):
    recipe = sft_recipe(tmp_path, tiny_models, max_steps=12, learning_rate=3e-3, logging_steps=1)
    assert main(["sft", "--config", recipe, "--learning_rate", "5e-3"]) == 0
    out = tmp_path / "out"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["training_args"]["learning_rate"] == 5e-3  # the command line overrides the YAML
    assert config["model_args"]["model_name_or_path"] == str(tiny_models["policy"])
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_ppo_verb_end_to_end_with_tensorboard(tmp_path, tiny_models, capsys):
    recipe = ROOT / "recipes" / "tiny" / "ppo.yaml"
    out = tmp_path / "ppo"
    code = main(
        ["ppo", "--config", str(recipe), "--model_name_or_path", str(tiny_models["policy"]),
         "--reward_model_path", str(tiny_models["classifier"]), "--output_dir", str(out), "--max_steps", "2",
         "--save_steps", "1", "--response_length", "8", "--per_device_train_batch_size", "4",
         "--gradient_accumulation_steps", "2", "--num_ppo_epochs", "1", "--report_to", "tensorboard",
         "--use_peft", "true"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err[-2000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    assert {"safety/harmful_refusal_rate", "safety/benign_compliance_rate"} <= set(lines[0])
    assert yaml.safe_load((out / "config.yaml").read_text())["training_args"]["max_steps"] == 2
    assert (out / "adapter_config.json").is_file() and (out / "value" / "value_head.safetensors").is_file()
    assert (out / "checkpoint-1" / "trainer_state.pt").is_file()
    assert list(out.rglob("events.out.tfevents.*")), "tensorboard wrote no event file"


def test_push_to_hub_in_a_ppo_recipe_pushes_the_run(tmp_path, tiny_models, monkeypatch, capsys):
    import safety_rlhf.hub

    pushed = []
    monkeypatch.setattr(safety_rlhf.hub, "push", lambda args: pushed.append(args) or "https://hf.co/me/x")
    out = tmp_path / "ppo"
    code = main(
        ["ppo", "--config", str(ROOT / "recipes" / "tiny" / "ppo.yaml"), "--model_name_or_path",
         str(tiny_models["policy"]), "--reward_model_path", str(tiny_models["classifier"]), "--output_dir", str(out),
         "--max_steps", "1", "--response_length", "4", "--per_device_train_batch_size", "4",
         "--gradient_accumulation_steps", "2", "--num_ppo_epochs", "1", "--push_to_hub", "true",
         "--hub_model_id", "me/tiny-safety"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err[-2000:]
    assert [(a.run_dir, a.hub_model_id) for a in pushed] == [(str(out), "me/tiny-safety")]
    code, err = run_cli(capsys, "ppo", "--config", str(ROOT / "recipes" / "tiny" / "ppo.yaml"), "--push_to_hub",
                        "true", "--output_dir", str(tmp_path / "other"))  # fmt: skip
    assert code == 2 and "hub_model_id" in err
