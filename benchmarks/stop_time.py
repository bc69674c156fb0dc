"""How long a PPO run takes to stop after SIGTERM: seconds from the signal to the process's exit, with the checkpoint of
the last complete update written (exit 75).

Runs `safety-rlhf ppo ARGS... --output_dir OUT/<delay>` once per `--delays` value, sends SIGTERM that many seconds
after update 1's metrics line appears (so inside update 2: early in it = generation, later = the PPO epochs), and
prints one JSON line per run: the delay, the exit code, seconds to exit, the checkpoints left and the last log line.

    python benchmarks/stop_time.py --out /tmp/stop --delays 3 12 -- \
        --config recipes/smollm2-135m-instruct/ppo.yaml --model_name_or_path models/smollm2-135m-instruct \
        --reward_model_path runs/smollm2-135m/reward --response_length 64 --save_steps 0 --max_steps 4
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def one_run(ppo_args: list, out: Path, delay: float, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "safety_rlhf.cli", "ppo", *ppo_args, "--output_dir", str(out)]
    metrics = out / "metrics.jsonl"
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if metrics.is_file() and metrics.read_text().strip():
                    break
                time.sleep(0.05)
            time.sleep(delay)
            if proc.poll() is not None:
                raise SystemExit(f"the run ended before the signal (exit {proc.returncode}); see {log.name}")
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=timeout)
            took = time.monotonic() - sent
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    lines = out.with_suffix(".log").read_text().strip().splitlines()
    return {
        "delay_s": delay,
        "exit_code": code,
        "seconds_to_exit": round(took, 2),
        "updates_done": len(metrics.read_text().splitlines()),
        "checkpoints": sorted(p.name for p in out.glob("checkpoint-*")),
        "last_line": lines[-1] if lines else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a new folder: one run folder and log per delay")
    parser.add_argument("--delays", type=float, nargs="+", default=[3.0], help="seconds into update 2")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run is killed whole")
    parser.add_argument("ppo_args", nargs=argparse.REMAINDER, help="after --: the arguments of `safety-rlhf ppo`")
    args = parser.parse_args()
    ppo_args = args.ppo_args[1:] if args.ppo_args[:1] == ["--"] else args.ppo_args
    if args.out.exists():
        raise SystemExit(f"--out {args.out} exists; name a new folder (nothing is overwritten)")
    args.out.mkdir(parents=True)
    for delay in args.delays:
        print(json.dumps(one_run(ppo_args, args.out / f"delay-{delay:g}", delay, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
