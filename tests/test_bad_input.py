"""Bad input, end to end: every row of the table in docs/bad-input.md through the CLI, in-process.

Each case must end with exit status 2 and ONE stderr line `safety-rlhf <verb>: error: ...` naming the value, no
traceback, and the previous run's files in `output_dir` byte for byte as they were (hashed before and after).
PPO cases run the tiny models with one cheap update, and most fail before training.

Two rows of the table are trainer-level (a reward callable is no CLI input) and are covered in `test_trainer.py`:
`test_nonfinite_rewards_skip_updates_then_abort` (NaN rewards) and `test_reward_of_the_wrong_shape_fails_clearly`.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from safety_rlhf.cli import main

ROOT = Path(__file__).resolve().parents[1]
PPO_RECIPE = str(ROOT / "recipes" / "tiny" / "ppo.yaml")
CHEAP = ["--max_steps", "1", "--response_length", "4", "--per_device_train_batch_size", "2",
         "--gradient_accumulation_steps", "1", "--num_mini_batches", "1", "--num_ppo_epochs", "1",
         "--sample_completions", "0", "--max_samples", "4"]  # fmt: skip


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`: its hash (a folder: "dir")."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def previous_run(folder: Path) -> Path:
    """A folder holding a previous run's files, which no failed start may change."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("previous: run\n")
    (folder / "model.safetensors").write_bytes(b"previous weights")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    return folder


def fails(capsys, verb: str, *argv, names: str, out: Path | None = None) -> str:
    """Run `safety-rlhf verb argv` and check the failure contract; returns the error line."""
    before = tree(out) if out else None
    code = main([verb, *map(str, argv)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err[-3000:]
    assert len(lines) == 1, captured.err[-3000:]
    assert lines[0].startswith(f"safety-rlhf {verb}: error: "), lines[0]
    assert names in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    if out is not None:
        assert tree(out) == before, "a failed start changed the previous run's files"
    return lines[0]


@pytest.fixture(autouse=True, scope="module")
def no_progress_bars():
    """Progress bars of `datasets` and `transformers` write to stderr too; the error must be the only line there."""
    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.disable_progress_bar()
    yield
    datasets.enable_progress_bars()
    logging.enable_progress_bar()


@pytest.fixture
def prev(tmp_path):
    return previous_run(tmp_path / "prev")


def ppo(tiny_models, out, *extra, policy=None, overwrite=True):
    return [
        "--config", PPO_RECIPE, "--model_name_or_path", policy or tiny_models["policy"],
        "--reward_model_path", tiny_models["classifier"], "--output_dir", out,
        "--overwrite_output_dir", str(overwrite).lower(), *CHEAP, *extra,
    ]  # fmt: skip


def sft(tiny_models, out, *extra, overwrite=True):
    return [
        "--model_name_or_path", tiny_models["policy"], "--dtype", "float32", "--output_dir", out, "--use_cpu", "true",
        "--bf16", "false", "--report_to", "none", "--max_steps", "1", "--per_device_train_batch_size", "2",
        "--max_samples", "4", "--overwrite_output_dir", str(overwrite).lower(), *extra,
    ]  # fmt: skip


def copy_model(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


# ---------------------------------------------------------------------------------------------------------------------
# Values out of range: every field is checked once, in the configs' __post_init__.


@pytest.mark.parametrize(
    ("option", "value", "names"),
    [
        ("--max_samples", "-3", "max_samples=-3 must be at least 1"),
        ("--max_prompt_length", "0", "max_prompt_length=0"),
        ("--kl_coef", "-0.5", "kl_coef=-0.5 must be 0 or more"),
        ("--cliprange", "5", "cliprange=5.0 must be in (0, 1]"),
        ("--top_p", "2", "top_p=2.0 must be in (0, 1]"),
        ("--temperature", "0", "temperature=0.0 must be positive"),
        ("--gradient_accumulation_steps", "0", "gradient_accumulation_steps=0 must be at least 1"),
        ("--learning_rate", "nan", "learning_rate=nan must be a finite number"),
        ("--gamma", "1.5", "gamma=1.5 must be in (0, 1]"),
        ("--lam", "2", "lam=2.0 must be in [0, 1]"),
        ("--response_length", "0", "response_length=0 must be at least 1"),
        ("--vf_coef", "-1", "vf_coef=-1.0 must be 0 or more"),
        ("--num_mini_batches", "3", "not divisible by num_mini_batches=3"),
        ("--kl_estimator", "k2", "kl_estimator='k2'"),
    ],
)
def test_ppo_value_out_of_range(tiny_models, prev, capsys, option, value, names):
    fails(capsys, "ppo", *ppo(tiny_models, prev, option, value), names=names, out=prev)


def test_negative_sft_batch_size_leaves_no_stray_config(tiny_models, tmp_path, capsys):
    out = tmp_path / "new"
    fails(capsys, "sft", *sft(tiny_models, out, "--per_device_train_batch_size", "-1"),
          names="per_device_train_batch_size=-1 must be at least 1")  # fmt: skip
    assert not out.exists()  # nothing blocks the corrected rerun


def test_reward_learning_rate_negative(prev, capsys):
    fails(capsys, "reward", "--output_dir", prev, "--overwrite_output_dir", "true", "--learning_rate", "-1",
          names="learning_rate=-1.0 must be 0 or more", out=prev)  # fmt: skip


def test_cost_objective_with_hard_negatives(prev, capsys):
    fails(capsys, "reward", "--output_dir", prev, "--overwrite_output_dir", "true", "--objective", "cost",
          "--hard_negatives", "true", names="hard_negatives=True is for objective='reward'", out=prev)  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--algorithm", "ppo_lag"], "algorithm='ppo_lag' needs a cost model; pass --cost_model_path"),
        (["--cost_model_path", "runs/cost"], "cost_model_path='runs/cost' is read only by algorithm='ppo_lag'"),
        (["--algorithm", "ppo_lag", "--lambda_max", "0.5"], "lambda_max=0.5 is below lambda_init=1.0"),
        (["--algorithm", "trpo"], "algorithm='trpo' is not supported; use 'ppo' or 'ppo_lag'"),
        (["--refusal_judge_path", "runs/judge"], "refusal_judge_path='runs/judge' is read only by the refusal_reward"),
        (["--samples_per_prompt", "3"], "samples_per_prompt=3 does not divide the batch of each process"),
        (
            ["--prompt_baseline", "true"],
            "prompt_baseline compares the samples of one prompt, but samples_per_prompt=1",
        ),
        (["--ptx_coef", "0.1"], "ptx_coef=0.1 needs the supervised rows it trains on; set ptx_dataset_name"),
        (["--ptx_dataset_name", "bundled_warmstart"], "ptx_dataset_name='bundled_warmstart' is read only by the ptx"),
    ],
)
def test_ppo_lag_settings(tiny_models, prev, capsys, extra, names):
    fails(capsys, "ppo", *ppo(tiny_models, prev, *extra), names=names, out=prev)


def test_grpo_verb_with_another_algorithm(prev, capsys):
    fails(capsys, "grpo", "--output_dir", prev, "--overwrite_output_dir", "true", "--algorithm", "ppo",
          names="algorithm='ppo' is run by `safety-rlhf ppo`", out=prev)  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value", "names"),
    [
        ("--gpu_memory_gib", "nan", "gpu_memory_gib=nan must be a finite number"),
        ("--gpu_memory_gib", "inf", "gpu_memory_gib=inf must be a finite number"),
        ("--gpu_memory_gib", "0", "gpu_memory_gib=0.0 must be positive"),
        ("--reserve_fraction", "1.5", "reserve_fraction=1.5 must be below 1"),
    ],
)
def test_plan_value_out_of_range(capsys, option, value, names):
    fails(capsys, "plan", "--config", "recipes/qwen2.5-0.5b-instruct/ppo.yaml", option, value, names=names)


def test_eval_temperature_nan(tiny_models, prev, capsys):
    fails(capsys, "eval", "--model_name_or_path", tiny_models["policy"], "--output_dir", prev, "--temperature", "nan",
          names="temperature=nan must be a finite number", out=prev)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# The recipe itself


def test_unknown_yaml_key_names_the_nearest(tmp_path, prev, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"learning_rat": 0.1, "output_dir": str(prev)}))
    fails(capsys, "ppo", "--config", recipe,
          names=f"unknown key 'learning_rat' in {recipe}; did you mean 'learning_rate'?", out=prev)  # fmt: skip


def test_unknown_option_names_the_nearest(prev, capsys):
    fails(capsys, "sft", "--output_dir", prev, "--bf16", "true", "--learnin_rate", "3",
          names="unknown key 'learnin_rate' on the command line; did you mean 'learning_rate'?", out=prev)  # fmt: skip


def test_yaml_syntax_error(tmp_path, prev, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {prev}\nlearning_rate: [1, 2\n")
    fails(capsys, "ppo", "--config", recipe, names=f"{recipe} is not valid YAML", out=prev)


def test_yaml_values_of_the_wrong_type_all_in_one_line(tmp_path, prev, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {prev}\nlearning_rate: 1e-5x\nnum_ppo_epochs: two\nbf16: maybe\n"
                      "dtype: float64\nmax_samples: null\nkl_coef: 0.1\n")  # fmt: skip
    err = fails(capsys, "ppo", "--config", recipe, "--kl_coef", "x", "--lr_scheduler_type", "cosin", "--bf16", "false",
                names=f"{recipe}: learning_rate='1e-5x' is not a float, num_ppo_epochs='two' is not an int, ",
                out=prev)  # fmt: skip
    assert err.endswith(
        "dtype='float64' is not one of native/auto/bfloat16/float16/float32; command line: kl_coef='x' is not a float, "
        "lr_scheduler_type='cosin' is not a valid choice (did you mean 'cosine'?); fix the values"
    )
    assert "bf16" not in err  # overridden on the command line by a good value
    assert "usage:" not in err


def test_missing_recipe_file(tmp_path, capsys):
    fails(capsys, "ppo", "--config", tmp_path / "nope.yaml", names="nope.yaml")


# ---------------------------------------------------------------------------------------------------------------------
# Data


@pytest.mark.parametrize(
    ("content", "names"),
    [
        (b'{"prompt": "hi there", "label": "benign"}\n{"prompt": "caf\xe9", "label": "benign"}\n',
         "prompts.jsonl line 2: byte b'\\xe9' is not UTF-8"),
        (b'{"prompt": 5, "label": "benign"}\n', "prompts.jsonl line 1: prompt is not text (got int 5)"),
        (b'{"prompt": "hi", "label": "benign", "category": 3}\n', "line 1: category is not text (got int 3)"),
        (b'{"prompt": "hi", "label": "benign", "split": 1}\n', "line 1: split is not text (got int 1)"),
        (b'{"prompt": "   ", "label": "benign"}\n', "line 1: empty prompt"),
        (b'{"prompt": "hi", "label": "benign"}\n{oops\n', "line 2: invalid JSON"),
        (b'{"prompt": "hi", "label": "toxic"}\n', "line 1: unknown label 'toxic'"),
        (b'{"text": "hi"}\n', "line 1: missing column(s) prompt, label"),
        (b"", "prompts.jsonl: no usable rows"),
        (b'{"prompt": "hi", "label": "benign"}\n{"prompt": "hi", "label": "benign"}\n',
         "prompts.jsonl line 2: duplicate of "),
        (b'{"prompt": "hi", "label": "benign"}\n{"prompt": " hi", "label": "harmful"}\n',
         "prompts.jsonl line 2: 'hi' is labelled 'harmful' here but 'benign' on "),
    ],
)  # fmt: skip
def test_bad_prompt_file(tiny_models, tmp_path, prev, capsys, content, names):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(content)
    fails(capsys, "ppo", *ppo(tiny_models, prev, "--dataset_name", prompts), names=names, out=prev)


def test_dataset_path_that_is_an_empty_folder(tiny_models, tmp_path, prev, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    err = fails(capsys, "ppo", *ppo(tiny_models, prev, "--dataset_name", folder), out=prev,
                names=f"dataset_name '{folder}' is a folder that datasets cannot load (")  # fmt: skip
    assert "Hub dataset" not in err.split(";")[0] and "hf auth login" not in err


def test_no_prompt_fits_max_prompt_length(tiny_models, prev, capsys):
    fails(capsys, "ppo", *ppo(tiny_models, prev, "--max_prompt_length", "2"),
          names="longer than max_prompt_length=2", out=prev)  # fmt: skip


def test_a_byte_order_mark_is_accepted(tmp_path, capsys):
    prompts = tmp_path / "bom.jsonl"
    prompts.write_bytes(b'\xef\xbb\xbf{"prompt": "hi there", "label": "benign"}\n')
    assert main(["data", "--dataset_name", str(prompts)]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Models


def test_missing_model_path(tiny_models, tmp_path, prev, capsys):
    fails(capsys, "ppo", *ppo(tiny_models, prev, policy=tmp_path / "no-model"), names="does not exist", out=prev)


def test_truncated_safetensors(tiny_models, tmp_path, prev, capsys):
    model = copy_model(tiny_models["policy"], tmp_path / "model")
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:2000])
    fails(capsys, "ppo", *ppo(tiny_models, prev, policy=model),
          names="has a truncated or damaged safetensors file", out=prev)  # fmt: skip


def test_eval_names_a_truncated_safetensors_as_sft_and_ppo_do(tiny_models, tmp_path, prev, capsys):
    model = copy_model(tiny_models["policy"], tmp_path / "model")
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:2000])
    err = fails(capsys, "eval", "--model_name_or_path", model, "--output_dir", prev, "--overwrite_output_dir", "true",
                "--max_samples", "4", names=f"model '{model}' has a truncated or damaged safetensors file", out=prev)  # fmt: skip
    assert err.endswith("; copy or save the model again") and "existing folder" not in err


@pytest.mark.parametrize(
    ("verb", "option"),
    [("sft", "--model_name_or_path"), ("ppo", "--model_name_or_path"), ("ppo", "--reward_model_path"),
     ("ppo", "--value_model_path"), ("eval", "--baseline_model_name_or_path"), ("eval", "--reward_model_path")],
)  # fmt: skip
def test_model_path_that_is_a_file_names_the_argument(tiny_models, tmp_path, prev, capsys, verb, option):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"weights")
    argv = writing_verbs(tiny_models, prev)[verb] + ["--overwrite_output_dir", "true", "--max_samples", "4"]
    err = fails(capsys, verb, *argv, option, file, out=prev,
                names=f"{option[2:]} '{file}' is a file; pass a model folder or a Hub id")  # fmt: skip
    assert "PEFT" not in err and "tokenizer" not in err


def test_pickle_weights_need_the_flag(tiny_models, tmp_path, prev, capsys):
    model = copy_model(tiny_models["policy"], tmp_path / "model")
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    fails(capsys, "ppo", *ppo(tiny_models, prev, policy=model), names="--allow_pickle_weights true", out=prev)


def test_remote_code_needs_the_flag(tiny_models, tmp_path, prev, capsys):
    model = copy_model(tiny_models["policy"], tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (model / "config.json").write_text(json.dumps(config))
    err = fails(capsys, "ppo", *ppo(tiny_models, prev, policy=model), names="--trust_remote_code true", out=prev)
    assert "modeling_custom.CustomForCausalLM" in err


@pytest.mark.parametrize("template", ["", "  \n"])
def test_empty_chat_template_is_no_chat_template(tiny_models, tmp_path, prev, capsys, template):
    model = copy_model(tiny_models["policy"], tmp_path / "model")
    (model / "chat_template.jinja").write_text(template)
    fails(capsys, "ppo", *ppo(tiny_models, prev, policy=model), out=prev,
          names=f"tokenizer of '{model}' has no chat template; use an instruct/chat model")  # fmt: skip


def test_push_of_a_run_whose_adapter_is_missing(tiny_models, tmp_path, capsys, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("the Hub was called"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("training_args: {}\n")
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_models["policy"])}))
    fails(capsys, "push", "--run_dir", run, "--hub_model_id", "me/tiny-safety", out=run,
          names=f"run_dir {run} has adapter_config.json but no adapter_model.safetensors")  # fmt: skip


def test_reward_model_that_is_a_causal_lm(tiny_models, prev, capsys):
    fails(capsys, "ppo", *ppo(tiny_models, prev, "--reward_model_path", tiny_models["policy"]),
          names="has no sequence-classification head", out=prev)  # fmt: skip


def test_no_reward_model(tiny_models, prev, capsys):
    fails(capsys, "ppo", *ppo(tiny_models, prev, "--reward_model_path", ""), names="no reward model given", out=prev)


def test_value_model_with_another_tokenizer_of_the_same_size(tiny_models, tmp_path, prev, capsys):
    value = copy_model(tiny_models["policy"], tmp_path / "value")
    tok = json.loads((value / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = list(vocab)[100], list(vocab)[200]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (value / "tokenizer.json").write_text(json.dumps(tok))
    fails(capsys, "ppo", *ppo(tiny_models, prev, "--value_model_path", value),
          names="uses another tokenizer than the policy (2 of its", out=prev)  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "option", "value", "names"),
    [
        ("ppo", "--response_length", 100000, "response_length=100000 + the longest prompt ("),
        ("grpo", "--max_completion_length", 5000, "max_completion_length=5000 + the longest prompt ("),
        ("sft", "--max_length", 4096, "max_length=4096 exceeds the policy's max_position_embeddings=1024"),
        ("eval", "--max_new_tokens", 2000, "max_new_tokens=2000 + the longest prompt ("),
        ("sample", "--max_new_tokens", 2000, "max_new_tokens=2000 exceeds the policy's max_position_embeddings=1024"),
    ],
)
def test_lengths_past_the_model(tiny_models, prev, capsys, monkeypatch, verb, option, value, names):
    """The tiny policy's config says max_position_embeddings=1024; the check reads only that, before any weights."""
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the length check")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", no_weights)
    argv = writing_verbs(tiny_models, prev)[verb] + ["--overwrite_output_dir", "true"] * (verb in ("grpo", "eval"))
    if verb == "sample":
        argv = ["--model_name_or_path", tiny_models["policy"], "--output", prev / "responses.jsonl"]
    err = fails(capsys, verb, *argv, option, value, names=names, out=prev)
    assert "max_position_embeddings=1024" in err and " to at most " in err


def test_length_that_fits_only_with_shorter_prompts(tiny_models, prev, capsys):
    err = fails(capsys, "ppo", *ppo(tiny_models, prev, "--response_length", "1020"), out=prev,
                names="response_length=1020 + the longest prompt (")  # fmt: skip
    longest = int(err.split("the longest prompt (")[1].split(" tokens")[0])
    assert err.endswith(f"lower response_length to at most {1024 - longest}, or max_prompt_length to at most 4 "
                        "(longer prompts are dropped)")  # fmt: skip


def test_gguf_that_is_not_one(tmp_path, capsys):
    text = tmp_path / "model.gguf"
    text.write_text("hello, I am a text file\n")
    fails(capsys, "import-gguf", "--gguf_file", text, "--output_dir", tmp_path / "out", names="is not a GGUF file")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Output folders and resuming: a failed start writes nothing, config.yaml included.


def test_output_dir_holding_a_run(tiny_models, prev, capsys):
    fails(capsys, "ppo", *ppo(tiny_models, prev, overwrite=False), names="already holds a previous run", out=prev)


def test_output_dir_that_is_a_file(tiny_models, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    fails(capsys, "sft", *sft(tiny_models, file), names="is a file")


def writing_verbs(tiny_models, out: Path) -> dict[str, list]:
    """The arguments of every verb that writes, with `out` as its output path (sample: its output file)."""
    policy, classifier = tiny_models["policy"], tiny_models["classifier"]
    return {
        "tiny": ["--output_dir", out],
        "import-gguf": ["--output_dir", out],
        "sample": ["--model_name_or_path", policy, "--output", out / "responses.jsonl"],
        "sft": sft(tiny_models, out),
        "reward": ["--config", ROOT / "recipes" / "tiny" / "reward.yaml", "--output_dir", out],
        "ppo": ppo(tiny_models, out),
        "grpo": ["--config", ROOT / "recipes" / "tiny" / "grpo.yaml", "--model_name_or_path", policy,
                 "--reward_model_path", classifier, "--output_dir", out],
        "eval": ["--model_name_or_path", policy, "--output_dir", out],
        "demo": ["--model", "tiny", "--output_dir", out],
    }  # fmt: skip


@pytest.mark.parametrize("verb", ["tiny", "import-gguf", "sample", "sft", "reward", "ppo", "grpo", "eval", "demo"])
def test_output_dir_under_a_file(tiny_models, tmp_path, capsys, verb):
    file = tmp_path / "file"
    file.write_text("x")
    argv = writing_verbs(tiny_models, file / "run")[verb]
    fails(capsys, verb, *argv, names=f"is under the file {file}, not a folder; choose another")
    assert file.read_text() == "x"


@pytest.mark.parametrize("verb", ["tiny", "sample", "sft", "ppo", "eval"])
def test_output_dir_on_a_read_only_file_system(tiny_models, tmp_path, capsys, monkeypatch, verb):
    """Root writes through permission bits, so the check reads the mount's read-only flag (`os.statvfs`); this one
    reports `tmp_path` as on a read-only mount."""
    real = os.statvfs

    def statvfs(path):
        result = real(path)
        if Path(path) == tmp_path:
            return os.statvfs_result((*result[:8], result.f_flag | os.ST_RDONLY, *result[9:]))
        return result

    monkeypatch.setattr(os, "statvfs", statvfs)
    argv = writing_verbs(tiny_models, tmp_path / "new" / "run")[verb]
    fails(capsys, verb, *argv, names=f"cannot be written ({tmp_path} is on a read-only file system)")
    assert not (tmp_path / "new").exists()


READ_ONLY_MOUNTS = [p for p in ("/proc/sys", "/sys") if Path(p).is_dir() and os.statvfs(p).f_flag & os.ST_RDONLY]


@pytest.mark.skipif(not READ_ONLY_MOUNTS, reason="no read-only mount (/proc/sys, /sys) on this machine")
def test_output_dir_on_a_real_read_only_mount(capsys):
    out = Path(READ_ONLY_MOUNTS[0]) / "safety-rlhf-run"
    fails(capsys, "tiny", "--output_dir", out, names="is on a read-only file system; choose a writable folder")


@pytest.fixture(scope="module")
def ppo_run(tiny_models, tmp_path_factory):
    """A finished tiny PPO run with LoRA r=8 and its checkpoint-1 (the last update writes no checkpoint)."""
    out = tmp_path_factory.mktemp("ppo") / "run"
    argv = ppo(tiny_models, out, "--use_peft", "true", "--lora_r", "8", "--save_steps", "1", "--max_steps", "2",
               overwrite=False)  # fmt: skip
    assert main(["ppo", *map(str, argv)]) == 0
    assert (out / "checkpoint-1" / "trainer_state.pt").is_file()
    return out


@pytest.fixture
def ppo_copy(ppo_run, tmp_path):
    return Path(shutil.copytree(ppo_run, tmp_path / "run"))


def resume_ppo(tiny_models, out, checkpoint, *extra):
    return ppo(tiny_models, out, "--use_peft", "true", "--resume_from_checkpoint", checkpoint, *extra, overwrite=False)


def test_ppo_resume_from_a_missing_checkpoint(tiny_models, ppo_copy, capsys):
    fails(capsys, "ppo", *resume_ppo(tiny_models, ppo_copy, ppo_copy / "checkpoint-9", "--lora_r", "8"),
          names="checkpoint-9 holds no trainer_state.pt", out=ppo_copy)  # fmt: skip


def test_ppo_resume_latest_without_checkpoints(tiny_models, prev, capsys):
    fails(capsys, "ppo", *resume_ppo(tiny_models, prev, "latest"), names="checkpoint-N folder", out=prev)


def test_ppo_resume_from_another_lora_rank(tiny_models, ppo_copy, capsys):
    err = fails(capsys, "ppo", *resume_ppo(tiny_models, ppo_copy, "latest", "--lora_r", "4"),
                names="was written for another model or LoRA setting", out=ppo_copy)  # fmt: skip
    assert "lora" in err and " there, " in err and " here" in err


def test_ppo_resume_without_lora_from_a_lora_checkpoint(tiny_models, ppo_copy, capsys):
    argv = ppo(tiny_models, ppo_copy, "--resume_from_checkpoint", "latest", overwrite=False)
    fails(capsys, "ppo", *argv, names="was written for another model or LoRA setting", out=ppo_copy)


def test_ppo_resume_from_a_damaged_state_file(tiny_models, ppo_copy, capsys):
    state = ppo_copy / "checkpoint-1" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    fails(capsys, "ppo", *resume_ppo(tiny_models, ppo_copy, "latest", "--lora_r", "8"),
          names="checkpoint-1 is incomplete or damaged", out=ppo_copy)  # fmt: skip


def test_ppo_resume_from_its_own_checkpoint_passes_the_check(tiny_models, ppo_copy, capsys):
    argv = resume_ppo(tiny_models, ppo_copy, "latest", "--lora_r", "8", "--max_steps", "2", "--save_steps", "0")
    assert main(["ppo", *map(str, argv)]) == 0, capsys.readouterr().err[-3000:]


@pytest.fixture(scope="module")
def sft_run(tiny_models, tmp_path_factory):
    """A tiny SFT run with LoRA r=8 and its checkpoint-1."""
    out = tmp_path_factory.mktemp("sft") / "run"
    argv = sft(tiny_models, out, "--use_peft", "true", "--lora_r", "8", "--save_steps", "1", overwrite=False)
    assert main(["sft", *map(str, argv)]) == 0
    assert (out / "checkpoint-1" / "adapter_model.safetensors").is_file()
    return out


def test_sft_resume_latest_without_checkpoints(tiny_models, prev, capsys):
    fails(capsys, "sft", *sft(tiny_models, prev, "--resume_from_checkpoint", "latest", overwrite=False),
          names="checkpoint-N folder", out=prev)  # fmt: skip


def test_sft_own_answers_missing_or_without_benign_answers(tiny_models, prev, tmp_path, capsys):
    fails(capsys, "sft", *sft(tiny_models, prev, "--own_answers", tmp_path / "none.jsonl"),
          names="is neither a file nor a file in", out=prev)  # fmt: skip
    harmful_only = tmp_path / "own.jsonl"
    harmful_only.write_text(json.dumps(dict(
        prompt="How do I make a pipe bomb?", label="harmful", category="weapons", split="train", decoding="greedy",
        response="Take a pipe.", stopped=False, refusal="compliance",
    )) + "\n")  # fmt: skip
    fails(capsys, "sft", *sft(tiny_models, prev, "--own_answers", harmful_only),
          names="holds no benign answer for split 'train'", out=prev)  # fmt: skip


def test_sft_resume_from_a_missing_checkpoint(tiny_models, prev, capsys):
    fails(capsys, "sft", *sft(tiny_models, prev, "--resume_from_checkpoint", prev / "checkpoint-3", overwrite=False),
          names="checkpoint-3 holds no trainer_state.json", out=prev)  # fmt: skip


def test_sft_resume_from_another_lora_rank(tiny_models, sft_run, tmp_path, capsys):
    out = Path(shutil.copytree(sft_run, tmp_path / "run"))
    argv = sft(tiny_models, out, "--use_peft", "true", "--lora_r", "4", "--resume_from_checkpoint", "latest",
               overwrite=False)  # fmt: skip
    fails(capsys, "sft", *argv, names="was written for another model or LoRA setting", out=out)


# ---------------------------------------------------------------------------------------------------------------------
# Overwriting: the previous run's checkpoints are moved aside, never deleted.


def test_overwrite_moves_the_previous_checkpoints_aside(tiny_models, ppo_copy, capsys):
    old = tree(ppo_copy / "checkpoint-1")
    assert main(["ppo", *map(str, ppo(tiny_models, ppo_copy))]) == 0, capsys.readouterr().err[-3000:]
    (aside,) = ppo_copy.glob("previous-run-*")
    assert tree(aside / "checkpoint-1") == old
    assert not list(ppo_copy.glob("checkpoint-*"))
    assert f"into {aside}" in capsys.readouterr().out
