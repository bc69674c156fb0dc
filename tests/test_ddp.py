"""Two CPU ranks (gloo), started and owned by the test (`helpers.run_ranks`: killed whole at the timeout): the ranks
stay in sync, a NaN on one rank alone skips the update on both instead of hanging them, a stalled peer ends the
run with a clear error after `ddp_timeout`, and PPO-Lagrangian's multiplier is the same on both ranks."""

import json
import math

import pytest
from helpers import HERE, run_ranks

SCRIPT = HERE / "ddp_ppo.py"


def ranks(tiny_models, tmp_path, scenario):
    results = run_ranks(SCRIPT, [tiny_models["policy"], tmp_path, scenario], timeout=240)
    return results, [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]


def test_two_process_ddp_keeps_ranks_in_sync(tiny_models, tmp_path):
    results, out = ranks(tiny_models, tmp_path, "sync")
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert [r["world_size"] for r in out] == [2, 2]
    # batch = per-device 2 x accumulation 2 x 2 processes; three updates
    assert [r["batch_size"] for r in out] == [8, 8] and [r["episode"] for r in out] == [24, 24]
    assert out[0]["changed"] > 0 and out[0]["fingerprint"] == out[1]["fingerprint"]
    assert out[0]["prompts_seen"] != out[1]["prompts_seen"]  # each rank rolls out its own slice of the batch


def test_ppo_lag_keeps_lambda_identical_on_both_ranks(tiny_models, tmp_path):
    results, out = ranks(tiny_models, tmp_path, "ppo_lag")
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert out[0]["window"] != out[1]["window"]  # each rank's own episodes ...
    assert out[0]["lambda"] == out[1]["lambda"]  # ... one multiplier, from J_c averaged over the ranks
    assert out[0]["lambda"][-1] != 1.0 and out[0]["fingerprint"] == out[1]["fingerprint"]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    j_c = (mean(out[0]["window"]) + mean(out[1]["window"])) / 2  # the last update's J_c, by hand
    lam_before = out[0]["lambda"][-2]
    assert out[0]["lambda"][-1] == pytest.approx(lam_before * math.exp(0.5 * j_c * lam_before), rel=1e-9)


@pytest.mark.parametrize("scenario", ["nan_reward", "nan_loss"])
def test_a_nan_on_one_rank_skips_the_update_on_both(tiny_models, tmp_path, scenario):
    results, out = ranks(tiny_models, tmp_path, scenario)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert [r["nonfinite"] for r in out] == [[0, 1, 0], [0, 1, 0]]
    assert out[0]["changed"] > 0 and out[0]["fingerprint"] == out[1]["fingerprint"]


def test_a_stalled_peer_ends_the_run_with_a_clear_error(tiny_models, tmp_path):
    (code0, log0), (code1, _) = run_ranks(SCRIPT, [tiny_models["policy"], tmp_path, "stall"], timeout=240)
    assert code0 == 2 and code1 == 3, log0[-3000:]
    error = [line for line in log0.splitlines() if "error: " in line][-1]
    assert "update 2: a collective operation failed on rank 0 of 2" in error
    assert "Timed out" in error and "ddp_timeout=8s" in error
