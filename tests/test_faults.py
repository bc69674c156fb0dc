"""Runs that survive faults: SIGTERM/Ctrl-C stop within seconds, whatever phase of an update they come in (the update
is abandoned), with a complete checkpoint of the last complete update and exit 75, and resuming reproduces the
uninterrupted run; a process killed (-9) while writing a checkpoint, or a disk that fills up during a save, never leaves a checkpoint that `latest` would pick and fail to load."""

import errno
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import HERE, build, kill_group
from safetensors.torch import load_file

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


def assert_resume_reproduces(tiny_models, out, full):
    """`--resume_from_checkpoint latest` in `out` ends where the uninterrupted run `full` did, update by update."""
    assert main([*ppo_args(tiny_models, out), "--resume_from_checkpoint", "latest"]) == 0
    resumed, uninterrupted = metrics(out), metrics(full)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "lr"):
        assert [m[key] for m in resumed] == pytest.approx([m[key] for m in uninterrupted], rel=1e-4, abs=1e-6), key


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
        proc.send_signal(sig)  # during update 2 (or later): that update is abandoned, checkpoint-1 written
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

    assert_resume_reproduces(tiny_models, out, full)


SLOW_UPDATE = """
import json, sys, time
from pathlib import Path
import safety_rlhf.trainer as t
from safety_rlhf.cli import main

phase, marker = {phase!r}, Path({marker!r})
calls = []

def stall():
    # update 2 is slow: say so, then sleep (in short naps, as a long GPU phase would hand control back)
    marker.write_text(phase)
    for _ in range(30000):
        time.sleep(0.01)

if phase == "generation":
    real_generate = t.rollout.generate
    def generate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # update 2's rollout
            stall()
        return real_generate(*args, **kwargs)
    t.rollout.generate = generate
else:
    real_loss = t.SafetyPPOTrainer.micro_batch_loss
    def micro_batch_loss(self, *args, **kwargs):
        if self.update == 1:
            calls.append(1)
            if len(calls) == 2:  # update 2's second mini-batch: after the optimizer step of its first one
                stall()
        return real_loss(self, *args, **kwargs)
    t.SafetyPPOTrainer.micro_batch_loss = micro_batch_loss
raise SystemExit(main(json.loads({args!r})))
"""


@pytest.mark.parametrize("phase", ["generation", "ppo_epochs"])
def test_a_signal_in_the_middle_of_a_slow_update_stops_within_seconds_and_resume_reproduces_the_run(
    tiny_models, tmp_path, phase
):
    full = tmp_path / "full"
    assert main(ppo_args(tiny_models, full)) == 0

    out, marker = tmp_path / "stopped", tmp_path / "in-update-2"
    script = SLOW_UPDATE.format(phase=phase, marker=str(marker), args=json.dumps(ppo_args(tiny_models, out)))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), "update 2 never started"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # update 2 would take 300 s more
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        kill_group(proc)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    assert took < 10, f"the run took {took:.1f} s to stop"
    assert len(metrics(out)) == 1
    assert [p.name for p in sorted_checkpoints(out)] == ["checkpoint-1"]  # written at the stop (save_steps 0)
    last = err.strip().splitlines()[-1]
    assert "stopped by SIGTERM after update 1 of 4 (update 2 abandoned)" in last, last
    assert "Traceback" not in err

    # In the ppo_epochs case update 2 had already taken an optimizer step and drawn random numbers: checkpoint-1 holds
    # the state from before it, so the resumed run is the uninterrupted one, to its final weights.
    assert_resume_reproduces(tiny_models, out, full)
    weights = sorted(p.name for p in full.glob("*.safetensors"))
    assert weights and weights == sorted(p.name for p in out.glob("*.safetensors"))
    for name in weights:
        final, again = load_file(full / name), load_file(out / name)
        assert final.keys() == again.keys()
        for key in final:
            torch.testing.assert_close(again[key], final[key], rtol=1e-4, atol=1e-6, msg=key)


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
