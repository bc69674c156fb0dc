"""Two CPU processes (gloo; `--multi_gpu` is accelerate's multi-process launcher, CPU without CUDA) through
`accelerate launch`: the ranks stay in sync and the batch is what the config says."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_two_process_ddp_keeps_ranks_in_sync(tiny_models, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", "29533",
        str(HERE / "ddp_ppo.py"), str(tiny_models["policy"]), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # batch = per-device 2 x accumulation 2 x 2 processes; two updates
    assert [r["batch_size"] for r in ranks] == [8, 8] and [r["episode"] for r in ranks] == [16, 16]
    assert ranks[0]["changed"] > 0 and ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    assert ranks[0]["prompts_seen"] != ranks[1]["prompts_seen"]  # each rank rolls out its own slice of the batch
