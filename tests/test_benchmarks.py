"""The benchmark scripts run and report consistent numbers (their speed is measured in benchmarks/, never here)."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
import ppo_throughput  # noqa: E402
import recipe_gpu  # noqa: E402

TINY = ["--hidden_size", "32", "--num_layers", "1", "--vocab_size", "512", "--prompt_length", "8",
        "--response_length", "6", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
        "--num_ppo_epochs", "1", "--updates", "2", "--warmup_updates", "1"]  # fmt: skip


def test_ppo_throughput_reports_one_consistent_json_line(tmp_path, capsys):
    flags = [*TINY, "--models_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out")]
    result = ppo_throughput.main(flags)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["implementation"] == "safety-rlhf" and result["timed_updates"] == 2
    # No stop token: every response has response_length tokens; batch 2 x 2 = 4 prompts per update.
    assert result["generated_tokens_per_update"] == 4 * 6
    # The rates are the counts over the same seconds (rounded in the JSON).
    tokens_per_update = result["generated_tokens_per_s"] * result["seconds_per_update"]
    assert tokens_per_update == pytest.approx(4 * 6, rel=0.05)
    assert result["samples_per_s"] * result["seconds_per_update"] == pytest.approx(4, rel=0.05)
    phases = sum(result[f"seconds_{p}"] for p in ("generation", "forward", "scoring", "optimization"))
    assert 0 < phases <= result["seconds_per_update"] * 1.01
    assert result["peak_rss_mib"] > 100 and result["peak_gpu_mib"] is None
    # FLOPs from the shapes: no stop token, so every row is 8 + 6 tokens; utilisation = flops / seconds / peak.
    from transformers import AutoConfig

    from safety_rlhf import flops

    dims = flops.Dims.from_config(AutoConfig.from_pretrained(tmp_path / "models" / "policy"))
    expected = flops.ppo_update(dims, dims, dims, [8] * 4, [6] * 4, num_ppo_epochs=1)
    assert {p: result[f"flops/{p}"] for p in flops.PHASES} == expected
    assert result["flops/update"] == sum(expected.values())
    assert result["peak_gflops"] > 0
    for phase in (*flops.PHASES, "update"):
        seconds = result[f"seconds_{phase}" if phase != "update" else "seconds_per_update"]
        utilisation = result[f"flops/{phase}"] / seconds / (result["peak_gflops"] * 1e9)
        assert result[f"utilisation/{phase}"] == pytest.approx(utilisation, rel=0.01, abs=1e-4)
    prompts = json.loads((tmp_path / "models" / "prompts.json").read_text())
    assert len(prompts) == 3 * 4 and {len(p) for p in prompts} == {8}


def test_ppo_throughput_trainable_layers_counts_the_top_layers_only(tmp_path):
    from transformers import AutoConfig

    from safety_rlhf import flops

    flags = [*TINY, "--num_layers", "2", "--updates", "1", "--use_peft", "--trainable_layers", "1",
             "--models_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out")]  # fmt: skip
    result = ppo_throughput.main(flags)
    assert result["settings"]["trainable_layers"] == 1 and result["settings"]["use_peft"]
    dims = flops.Dims.from_config(AutoConfig.from_pretrained(tmp_path / "models" / "policy"))
    expected = flops.ppo_update(dims, dims, dims, [8] * 4, [6] * 4, num_ppo_epochs=1, lora_r=16, trainable_layers=1)
    assert {p: result[f"flops/{p}"] for p in flops.PHASES} == expected
    with pytest.raises(SystemExit, match="--use_peft"):
        ppo_throughput.main([*TINY, "--trainable_layers", "1"])


def test_ppo_throughput_in_bf16_loads_the_frozen_base_in_bf16(tmp_path, monkeypatch):
    from safety_rlhf import models

    loaded = []
    load = models.load_policy
    monkeypatch.setattr(models, "load_policy", lambda *a, **kw: loaded.append(load(*a, **kw)) or loaded[-1])
    flags = [*TINY, "--updates", "1", "--use_peft", "--bf16", "--models_dir", str(tmp_path / "models"),
             "--output_dir", str(tmp_path / "out")]  # fmt: skip
    result = ppo_throughput.main(flags)
    assert result["settings"]["bf16"] and result["settings"]["use_peft"] and result["peak_gflops"] > 0
    (policy,) = loaded
    assert {p.dtype for p in policy.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in policy.parameters() if p.requires_grad} == {torch.float32}  # LoRA
    assert ppo_throughput.bench_common.weight_dtypes(argparse.Namespace(bf16=True, use_peft=False)) == (
        torch.float32, torch.bfloat16,  # a fully trained policy keeps fp32 weights; the reward model is frozen
    )  # fmt: skip


def test_compare_table_puts_fp32_and_bf16_side_by_side(tmp_path, capsys):
    def out_file(name, bf16, ours, peer):
        runs = {"ours": [{"settings": {"bf16": bf16}}], "peer": [{}],
                "summary": {"ours_samples_per_s": ours, "peer_samples_per_s": peer, "speedup": ours / peer,
                            "ours_utilisation_update": 0.25, "peak_gflops": 400.0}}  # fmt: skip
        (tmp_path / name).write_text(json.dumps(runs))
        return str(tmp_path / name)

    files = [out_file("worst-case.json", False, 3.0, 2.0), out_file("worst-case-bf16.json", True, 6.0, 2.0)]
    assert compare.main(["--table", *files]) == {}
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1] == "worst-case | fp32 | 3.000 | 2.000 | 1.50x | 25.0% of 400 GFLOP/s"
    assert lines[2] == "worst-case-bf16 | bf16 | 6.000 | 2.000 | 3.00x | 25.0% of 400 GFLOP/s"
    with pytest.raises(SystemExit, match="no benchmark results at .*missing.json"):
        compare.main(["--table", str(tmp_path / "missing.json")])


def test_compare_summary_takes_medians_and_ratios():
    def run(samples, rss):
        return {"samples_per_s": samples, "peak_rss_mib": rss, "peak_gpu_mib": None}

    ours = [run(3.0, 100), run(4.0, 110), run(3.5, 90)]
    peer = [run(2.0, 120), run(2.0, 100), run(3.5, 130)]
    summary = compare.summarize(ours, peer)
    assert summary["ours_samples_per_s"] == 3.5 and summary["peer_samples_per_s"] == 2.0
    assert summary["speedup"] == 1.75
    assert summary["speedup_median_of_rounds"] == 1.5  # rounds: 1.5, 2.0, 1.0
    assert summary["peak_rss_ratio"] == round(100 / 120, 3)
    assert "variant_samples_per_s" not in summary
    # An ours-only variant (e.g. --trainable_layers): its own medians, against ours and against the peer.
    variant = [run(7.0, 100), run(5.0, 100), run(6.0, 80)]
    summary = compare.summarize(ours, peer, variant)
    assert summary["variant_samples_per_s"] == 6.0 and summary["variant_peak_rss_mib"] == 100
    assert summary["variant_speedup_vs_ours"] == round(6.0 / 3.5, 3) and summary["variant_speedup_vs_peer"] == 3.0


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".venv-peer/bin/python").is_file(), reason="no peer virtualenv (make bench-peer)")
def test_make_bench_runs_ours_and_trl112(tmp_path):
    flags = [*TINY, "--models_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out")]
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/compare.py"), "--rounds", "1", "--peer_python",
         str(ROOT / ".venv-peer/bin/python"), *flags],
        capture_output=True, text=True, cwd=ROOT, check=True, timeout=600,
    ).stdout.splitlines()  # fmt: skip
    lines = [json.loads(line) for line in out]
    assert [line.get("implementation") for line in lines[:2]] == ["safety-rlhf", "trl-1.12.0"]
    assert lines[1]["generated_tokens_per_update"] == 24
    assert lines[-1]["summary"]["speedup"] > 0


def test_recipe_gpu_runs_a_recipe_on_random_weights_of_its_shapes(tmp_path, capsys):
    """The 7B QLoRA recipe, every model cut to two small layers (`--shrink`), on the CPU: the models have the
    recipe's architectures, the run is the recipe's, and the JSON carries the planner's estimate for the same flags."""
    flags = ["--recipe", "recipes/qwen2.5-7b-instruct/ppo_qlora.yaml", "--shrink", "--updates", "2",
             "--models_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "run"),
             "--out", str(tmp_path / "r.json"), "--per_device_train_batch_size", "2", "--gradient_accumulation_steps",
             "2", "--response_length", "6", "--local_rollout_forward_batch_size", "4"]  # fmt: skip
    result = recipe_gpu.main(flags)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert {k: v["architecture"] for k, v in result["models"].items()} == {
        "policy": "qwen2.5-7b", "critic": "qwen2.5-0.5b", "reward": "qwen2.5-0.5b"
    }  # fmt: skip
    reward = json.loads((tmp_path / "models" / "reward-qwen2.5-0.5b-shrunk" / "config.json").read_text())
    assert reward["architectures"] == ["Qwen2ForSequenceClassification"] and len(reward["id2label"]) == 1
    assert result["updates"] == 2 and all(u["time/update"] > 0 for u in result["per_update"])
    assert result["mean_response_length"] == [6.0, 6.0]  # random weights: every response runs to the end
    run = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert run["model_args"]["load_in_4bit"] is True and run["script_args"]["dataset_name"] == "bundled"
    assert run["model_args"]["model_name_or_path"] == result["models"]["policy"]["folder"]
    assert result["peak_allocated_gib"] is None and result["plan_peak_gib"] > 0  # no GPU here
    assert result["plan_peak_gib"] == pytest.approx(
        sum(result["plan"].values())
        - sum(
            v
            for k, v in result["plan"].items()
            if k in ("generation (KV cache)", "rollout forwards (no grad)", "training")
        )
        + max(result["plan"][k] for k in ("generation (KV cache)", "rollout forwards (no grad)", "training")),
        abs=0.01,
    )


def test_recipe_gpu_names_the_known_architectures_on_an_unknown_model(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: someone/unknown-7b\nreward_model_path: runs/qwen2.5-0.5b/reward\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recipe_gpu.py"), "--recipe", str(recipe), "--shrink"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("recipe_gpu.py: policy 'someone/unknown-7b' is no known")
    assert "qwen2.5-7b" in proc.stderr
