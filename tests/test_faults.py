"""Runs that survive faults: SIGTERM/Ctrl-C stop after the current update with a complete checkpoint and exit 75,
and resuming reproduces the uninterrupted run; a process killed (-9) while writing a checkpoint, or a disk that fills
up during a save, never leaves a checkpoint that `latest` would pick and fail to load."""

import errno
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import HERE, build, kill_group

from safety_rlhf import SafetyRLHFError
from safety_rlhf.cli import main
from safety_rlhf.trainer import PREEMPTED_EXIT_CODE, STATE_FILE, find_checkpoint, sorted_checkpoints

ROOT = HERE.parent


def ppo_args(tiny_models, out, *extra):
    return [
        "ppo", "--config", str(ROOT / "recipes" / "tiny" / "ppo.yaml"), "--model_name_or_path",
        str(tiny_models["policy"]), "--reward_model_path", str(tiny_models["classifier"]), "--output_dir", str(out),
        "--max_steps", "4", "--save_steps", "0", "--response_length", "8", "--per_device_train_batch_size", "4",
        "--gradient_accumulation_steps", "2", "--num_ppo_epochs", "1", "--sample_completions", "0", *extra,
    ]  # fmt: skip


def metrics(out):
    path = out / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_update_with_a_checkpoint_and_resume_reproduces_the_run(tiny_models, tmp_path, sig):
    full = tmp_path / "full"
    assert main(ppo_args(tiny_models, full)) == 0

    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "safety_rlhf.cli", *ppo_args(tiny_models, out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not metrics(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)  # during update 2 (or later): that update finishes, then a checkpoint is written
        _, err = proc.communicate(timeout=240)
    finally:
        kill_group(proc)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    done = len(metrics(out))
    assert 1 <= done < 4, "the signal came too late to test anything"
    assert [p.name for p in sorted_checkpoints(out)] == [f"checkpoint-{done}"]
    last = err.strip().splitlines()[-1]
    assert f"stopped by {sig.name} after update {done}" in last and "--resume_from_checkpoint latest" in last
    assert "Traceback" not in err

    assert main([*ppo_args(tiny_models, out), "--resume_from_checkpoint", "latest"]) == 0
    resumed, uninterrupted = metrics(out), metrics(full)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "lr"):
        assert [m[key] for m in resumed] == pytest.approx([m[key] for m in uninterrupted], rel=1e-4, abs=1e-6), key


KILL_DURING_SAVE = """
import os, signal, sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers import build
import safety_rlhf.trainer as t

real_save = torch.save
def save(obj, f, *a, **k):
    # checkpoint-4's trainer state: write half of it, then die as `kill -9` would
    if str(f).endswith("checkpoint-4.tmp/" + t.STATE_FILE):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)
t.torch.save = save
build({{"policy": {policy!r}}}, Path({tmp!r}), max_steps=5, save_steps=2).train()
"""


def test_kill_9_during_a_checkpoint_write_leaves_latest_loadable(tiny_models, tmp_path):
    script = KILL_DURING_SAVE.format(tests=str(HERE), policy=str(tiny_models["policy"]), tmp=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    out = tmp_path / "run"
    assert (out / "checkpoint-4.tmp" / STATE_FILE).is_file()  # the half-written one is there, under its .tmp name
    assert find_checkpoint(out, "latest").name == "checkpoint-2"
    resumed = build(tiny_models, tmp_path, max_steps=5, save_steps=2)
    history = resumed.train(resume_from_checkpoint="latest")
    assert [m["step"] for m in history] == [3, 4, 5]
    assert not (out / "checkpoint-4.tmp").exists()  # the next save of update 4 replaced the leftover
    assert (out / "checkpoint-4" / STATE_FILE).is_file()


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tiny_models, tmp_path, monkeypatch):
    trainer = build(tiny_models, tmp_path, max_steps=5, save_steps=2)
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if "checkpoint-4.tmp" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr("safety_rlhf.trainer.torch.save", save)
    with pytest.raises(
        SafetyRLHFError, match=r"could not write checkpoint-4 \(No space left on device\).*checkpoint-2"
    ):
        trainer.train()
    out = tmp_path / "run"
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint")] == ["checkpoint-2"]
    monkeypatch.undo()
    resumed = build(tiny_models, tmp_path, max_steps=5, save_steps=2)
    assert [m["step"] for m in resumed.train(resume_from_checkpoint="latest")] == [3, 4, 5]


def test_a_truncated_checkpoint_fails_with_a_clear_error(tiny_models, tmp_path):
    build(tiny_models, tmp_path, max_steps=3, save_steps=1).train()
    state = tmp_path / "run" / "checkpoint-2" / STATE_FILE
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(
        SafetyRLHFError, match=r"checkpoint-2.*cannot be read.*--resume_from_checkpoint .*checkpoint-1"
    ):
        build(tiny_models, tmp_path, max_steps=3, save_steps=1).train(resume_from_checkpoint="latest")
