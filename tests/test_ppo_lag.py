"""PPO-Lagrangian (`algorithm: ppo_lag`): each piece against a plain loop computed by hand, then the trainer end to end
on the tiny models (the multiplier it logs follows its own J_c, the constraint changes what is learned, resume carries
lambda and the cost window). The two-process run is in `test_ddp.py`."""

import json
import math

import pytest
import torch
from helpers import CrashAfter, build, length_cost, length_reward

from safety_rlhf import SafetyRLHFError
from safety_rlhf.config import SafetyPPOConfig
from safety_rlhf.ppo_core import (
    LOG_LAMBDA_BOUND,
    LagrangeMultiplier,
    compute_gae,
    lagrangian_advantages,
    token_costs,
)
from safety_rlhf.trainer import COST_WINDOW_FILE, STATE_FILE

D = torch.float64


def reference_lambda(lambda_init, lr, threshold, costs, lambda_max=None, delay=0):
    """lambda after each update, by hand: log_lambda += lr * (J_c - threshold) * lambda, capped at log(lambda_max)."""
    log_lam, out = math.log(lambda_init), []
    for step, j_c in enumerate(costs):
        if step >= delay:
            log_lam += lr * (j_c - threshold) * math.exp(log_lam)
            if lambda_max is not None:
                log_lam = min(log_lam, math.log(lambda_max))
        out.append(math.exp(log_lam))
    return out


def test_the_multiplier_rises_above_the_threshold_and_falls_below_it():
    costs = [1.5, 1.2, 0.9, -0.5, -2.0, -4.0, -8.0, -8.0, 0.3]
    multiplier = LagrangeMultiplier(lambda_init=0.5, lr=0.2, threshold=0.25)
    got = []
    for step, j_c in enumerate(costs):
        multiplier.step(j_c, step)
        got.append(multiplier.value)
    assert got == pytest.approx(reference_lambda(0.5, 0.2, 0.25, costs), rel=1e-12)
    rising, falling = got[:3], got[3:8]
    assert 0.5 < rising[0] < rising[1] < rising[2]
    assert all(b < a for a, b in zip([rising[2], *falling], falling, strict=False))
    assert all(value > 0 for value in got)  # an exponential: never negative, however far J_c falls
    assert got[-1] > got[-2]  # above the threshold again: it rises again


def test_the_multiplier_waits_for_the_delay_and_stops_at_lambda_max():
    costs = [3.0] * 6
    multiplier = LagrangeMultiplier(lambda_init=1.0, lr=0.5, threshold=0.0, lambda_max=2.5, delay_steps=2)
    got = []
    for step, j_c in enumerate(costs):
        assert multiplier.step(j_c, step) == (step >= 2)  # whether it moved
        got.append(multiplier.value)
    assert got[:2] == [1.0, 1.0]
    assert got == pytest.approx(reference_lambda(1.0, 0.5, 0.0, costs, lambda_max=2.5, delay=2), rel=1e-12)
    assert got[2] > 1.0 and got[-1] == pytest.approx(2.5) and max(got) <= 2.5 + 1e-12


def test_the_cost_window_keeps_the_last_episodes_and_round_trips():
    multiplier = LagrangeMultiplier(lambda_init=1.0, lr=0.1, window_size=4)
    multiplier.add_costs([1.0, 2.0, 3.0])
    multiplier.add_costs([4.0, 5.0, 6.0])
    assert list(multiplier.window) == [3.0, 4.0, 5.0, 6.0] and multiplier.window_mean() == 4.5
    multiplier.step(multiplier.window_mean(), 0)
    copy = LagrangeMultiplier(lambda_init=3.0, lr=0.1, window_size=4)
    copy.load_state_dict(multiplier.state_dict())
    assert copy.value == multiplier.value and list(copy.window) == list(multiplier.window)


def test_lagrangian_advantage_by_hand():
    reward_adv = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=D)
    cost_adv = torch.tensor([[0.5, 1.0], [-1.0, 2.0]], dtype=D)
    got = lagrangian_advantages(reward_adv, cost_adv, 3.0)
    expected = [[(1.0 - 1.5) / 4, (-2.0 - 3.0) / 4], [(0.5 + 3.0) / 4, (3.0 - 6.0) / 4]]
    assert torch.allclose(got, torch.tensor(expected, dtype=D))
    assert torch.equal(lagrangian_advantages(reward_adv, cost_adv, 0.0), reward_adv)  # lambda = 0: plain PPO
    with pytest.raises(ValueError, match="must be >= 0"):
        lagrangian_advantages(reward_adv, cost_adv, -0.1)


def test_lagrangian_advantage_stays_finite_for_every_lambda():
    """safe-rlhf's (A_r - lambda A_c) / (1 + lambda) is inf / inf = nan at lambda = inf and loses A_r's digits long
    before; the weighted form tends to -A_c."""
    reward_adv = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    cost_adv = torch.tensor([[0.5, 1.0], [-1.0, 2.0]])
    assert torch.equal(lagrangian_advantages(reward_adv, cost_adv, math.inf), -cost_adv)
    for lam in (1e30, float(torch.finfo(torch.float32).max), 1e300):
        got = lagrangian_advantages(reward_adv, cost_adv, lam)
        assert torch.isfinite(got).all() and torch.allclose(got, -cost_adv), lam
    for lam in (0.25, 3.0, 1e6):  # the same numbers as safe-rlhf's form where that one is finite
        expected = (reward_adv.double() - lam * cost_adv.double()) / (1 + lam)
        assert torch.allclose(lagrangian_advantages(reward_adv, cost_adv, lam).double(), expected, atol=1e-6), lam
    with pytest.raises(ValueError, match="must be >= 0, got nan"):
        lagrangian_advantages(reward_adv, cost_adv, math.nan)


def test_the_multiplier_stays_within_float32_and_says_when_it_saturates():
    """An unreachable threshold: each step is lr * (J_c - threshold) * lambda, so lambda explodes (safe-rlhf's rule
    reaches inf in two steps here); it stops at float32's largest value, finite, and comes back down from there."""
    multiplier = LagrangeMultiplier(lambda_init=1.0, lr=0.5, threshold=-100.0)
    multiplier.step(1.0, 0)
    assert not multiplier.saturated and multiplier.value == pytest.approx(math.exp(50.5))
    unbounded = 50.5 + 0.5 * 101.0 * math.exp(50.5)  # log(lambda) after step 2 of the unbounded rule
    assert torch.tensor(unbounded, dtype=D).exp().isinf()
    for step in (1, 2, 3):
        multiplier.step(1.0, step)
        assert multiplier.saturated
        assert multiplier.value == pytest.approx(float(torch.finfo(torch.float32).max), rel=1e-6)
    multiplier.threshold = 200.0  # now far below: lambda falls, and stops at the bound's other side, still > 0
    multiplier.step(1.0, 4)
    assert not multiplier.saturated
    assert float(multiplier.log_lambda.detach()) == pytest.approx(-LOG_LAMBDA_BOUND) and multiplier.value > 0
    capped = LagrangeMultiplier(lambda_init=1.0, lr=0.5, threshold=-100.0, lambda_max=1e10)
    for step in range(3):
        capped.step(1.0, step)
    assert capped.value == pytest.approx(1e10) and not capped.saturated  # lambda_max set: that is the user's bound


def test_ppo_lag_with_an_unreachable_threshold_stays_finite_and_says_why_lambda_saturated(tiny_models, tmp_path,
                                                                                         capsys):  # fmt: skip
    trainer = build(tiny_models, tmp_path, algorithm="ppo_lag", lambda_lr=0.5, threshold=-100.0, max_steps=4)
    history = trainer.train()
    assert [m["nonfinite_update"] for m in history] == [0, 0, 0, 0]
    for key in ("objective/scores", "loss/policy_avg", "loss/value_avg", "loss/cost_value_avg", "lagrangian/lambda"):
        assert all(math.isfinite(m[key]) for m in history), key
    assert [m["lagrangian/saturated"] for m in history] == [0, 1, 1, 1]
    assert history[-1]["lagrangian/lambda"] == pytest.approx(float(torch.finfo(torch.float32).max), rel=1e-6)
    err = capsys.readouterr().err
    assert err.count("reached float32's largest value") == 1  # said once, at update 2
    assert "update 2: the Lagrange multiplier lambda reached" in err and "raise threshold or set lambda_max" in err
    # Were a loss to go non-finite now, the error names the saturation beside the usual suspects.
    with pytest.raises(
        SafetyRLHFError, match="non-finite reward or loss.*reached float32's largest value.*lambda_max"
    ):
        for _ in range(trainer.args.max_nonfinite_updates):
            trainer.count_nonfinite(False)


def test_token_costs_and_cost_gae_by_hand():
    """Per-token costs +beta * KL_t with the episode cost on the last valid token, then GAE, by a plain loop."""
    beta, gamma, lam = 0.1, 0.9, 0.8
    kl = torch.tensor([[0.5, -0.2, 0.3], [0.4, 0.1, 9.0]], dtype=D)  # row 2 is 2 tokens long: 9.0 is padding
    values = torch.tensor([[0.2, 0.1, -0.3], [1.0, 0.5, 7.0]], dtype=D)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=D)
    lengths = torch.tensor([3, 2])
    episode_costs = torch.tensor([2.0, -1.0], dtype=D)

    per_token = token_costs(episode_costs, kl * mask, lengths, mask, beta)
    expected = [[0.05, -0.02, 0.03 + 2.0], [0.04, 0.01 - 1.0, 0.0]]
    assert torch.allclose(per_token, torch.tensor(expected, dtype=D))

    advantages, returns = compute_gae(per_token, values, mask, gamma, lam)
    for row in range(2):
        n = int(lengths[row])
        c, v = per_token[row, :n].tolist(), values[row, :n].tolist() + [0.0]
        gae, hand = 0.0, [0.0] * n
        for t in reversed(range(n)):
            gae = c[t] + gamma * v[t + 1] - v[t] + gamma * lam * gae
            hand[t] = gae
        assert advantages[row, :n].tolist() == pytest.approx(hand, rel=1e-12)
        assert returns[row, :n].tolist() == pytest.approx([a + b for a, b in zip(hand, v, strict=False)], rel=1e-12)


def test_ppo_lag_logs_a_multiplier_that_follows_its_own_episode_costs(tiny_models, tmp_path):
    kw = dict(algorithm="ppo_lag", lambda_init=0.5, lambda_lr=0.3, threshold=0.2, max_steps=4)
    trainer = build(tiny_models, tmp_path, peft=True, critic="prefix", trainable_layers=1, **kw)
    critic = trainer.accelerator.unwrap_model(trainer.model).value
    before = {n: p.detach().clone() for n, p in critic.cost.named_parameters()}
    history = trainer.train()
    for key in ("objective/cost", "lagrangian/lambda", "lagrangian/J_c", "loss/cost_value_avg",
                "val/cost_explained_variance"):  # fmt: skip
        assert all(math.isfinite(m[key]) for m in history), key
    # J_c is the mean cost of every episode so far (the window of 128 holds them all; 8 episodes per update) ...
    costs = [m["objective/cost"] for m in history]
    assert [m["lagrangian/J_c"] for m in history] == pytest.approx(
        [sum(costs[: k + 1]) / (k + 1) for k in range(4)], rel=1e-6
    )
    # ... and lambda takes one SGD step on it per update.
    j_c = [m["lagrangian/J_c"] for m in history]
    assert [m["lagrangian/lambda"] for m in history] == pytest.approx(reference_lambda(0.5, 0.3, 0.2, j_c), rel=1e-6)
    assert any(not torch.equal(before[n], p) for n, p in critic.cost.named_parameters())  # the cost critic learns
    trainer.save_model(tmp_path / "final")
    assert (tmp_path / "final" / "value" / "prefix_critic.safetensors").is_file()
    assert (tmp_path / "final" / "cost_value" / "prefix_critic.safetensors").is_file()


def test_cost_clip_clips_the_cost_apart_from_the_reward(tiny_models, tmp_path):
    """Every episode costs 1 and scores 3: cost_clip 0.5 clips the cost and leaves the reward to reward_clip (10);
    without cost_clip the cost is clipped at reward_clip, as before the option existed."""
    kw = dict(algorithm="ppo_lag", max_steps=2, reward=lambda p, c: [3.0] * len(c), cost=lambda p, c: [1.0] * len(c))

    def run(sub, **fields):
        history = build(tiny_models, tmp_path / sub, **kw, **fields).train()
        assert [m["objective/cost"] for m in history] == pytest.approx([1.0, 1.0])
        return [v for m in history for v in (m["objective/clipped_cost"], m["objective/scores"])]

    assert run("apart", reward_clip=10.0, cost_clip=0.5) == pytest.approx([0.5, 3.0] * 2)
    assert run("shared", reward_clip=0.5) == pytest.approx([0.5, 0.5] * 2)
    assert run("none") == pytest.approx([1.0, 3.0] * 2)


def test_the_constraint_reverses_a_reward_that_is_also_the_cost(tiny_models, tmp_path):
    """Reward and cost both the completion's length: PPO makes completions longer; PPO-Lagrangian with lambda held
    at 4 (lambda_lr 0) follows (A_r - 4 A_c) / 5 = -0.6 A_r and makes them shorter."""

    def length_trend(sub, **kw):
        trainer = build(tiny_models, tmp_path / sub, reward=length_reward, max_steps=16, learning_rate=1e-2,
                        kl_coef=0.0, **kw)  # fmt: skip
        scores = [m["objective/scores"] for m in trainer.train()]
        return sum(scores[-4:]) / 4 - sum(scores[:4]) / 4

    assert length_trend("ppo") > 0.02
    assert length_trend("lag", algorithm="ppo_lag", cost=length_cost, lambda_init=4.0, lambda_lr=0.0) < -0.02


def test_resume_carries_lambda_and_the_cost_window(tiny_models, tmp_path):
    kw = dict(
        algorithm="ppo_lag", lambda_lr=0.5, threshold=0.1, max_steps=4, save_steps=2, episode_cost_window_size=12
    )
    full = build(tiny_models, tmp_path / "full", **kw).train()

    crashing = build(tiny_models, tmp_path / "crash", **kw)
    crashing.reward_fn = CrashAfter(crashing.reward_fn, calls=2)  # dies in update 3, after checkpoint-2
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    ckpt = tmp_path / "crash" / "run" / "checkpoint-2"
    state = torch.load(ckpt / STATE_FILE, weights_only=True)
    assert math.exp(float(state["lagrangian"]["log_lambda"])) == pytest.approx(full[1]["lagrangian/lambda"])
    window = torch.load(ckpt / COST_WINDOW_FILE.format(rank=0), weights_only=True)
    assert len(window) == 12  # the last 12 of 16 episodes

    resumed = build(tiny_models, tmp_path / "crash", **kw).train(resume_from_checkpoint="latest")
    for key in ("lagrangian/J_c", "lagrangian/lambda", "objective/cost", "loss/cost_value_avg"):
        assert [m[key] for m in resumed] == pytest.approx([m[key] for m in full[2:]], rel=1e-4), key


def test_a_ppo_checkpoint_does_not_resume_a_ppo_lag_run(tiny_models, tmp_path):
    build(tiny_models, tmp_path, max_steps=2, save_steps=1, critic="shared").train()
    lag = build(tiny_models, tmp_path, algorithm="ppo_lag", max_steps=3, critic="shared")
    # The checkpoint lacks the cost critic's head: refused before any weight is touched.
    with pytest.raises(SafetyRLHFError, match="missing"):
        lag.train(resume_from_checkpoint="latest")


def test_ppo_lag_needs_its_cost_model_and_critics(tiny_models, tmp_path):
    from safety_rlhf.trainer import SafetyPPOTrainer

    trainer = build(tiny_models, tmp_path / "a", algorithm="ppo_lag")
    args, tok, dataset = trainer.args, trainer.tokenizer, trainer.train_dataset
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    with pytest.raises(SafetyRLHFError, match="needs a cost model; pass --cost_model_path"):
        SafetyPPOTrainer(args, tok, unwrapped.policy, unwrapped.value, length_reward, dataset)
    with pytest.raises(SafetyRLHFError, match="needs a reward critic and a cost critic"):
        SafetyPPOTrainer(args, tok, unwrapped.policy, unwrapped.value.reward, length_reward, dataset,
                         cost_model=length_cost)  # fmt: skip
    plain = build(tiny_models, tmp_path / "b")
    with pytest.raises(SafetyRLHFError, match="read only by algorithm='ppo_lag'"):
        SafetyPPOTrainer(plain.args, tok, unwrapped.policy, unwrapped.value.reward, length_reward, dataset,
                         cost_model=length_cost)  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"algorithm": "grpo"}, "algorithm='grpo' is not supported; use 'ppo' or 'ppo_lag'; GRPO has its own verb"),
        ({"cost_model_path": "runs/cost"}, "cost_model_path='runs/cost' is read only by algorithm='ppo_lag'"),
        ({"cost_clip": 2.0}, "cost_clip=2.0 is read only by algorithm='ppo_lag'"),
        ({"algorithm": "ppo_lag", "cost_clip": 0.0}, "cost_clip=0.0 must be positive"),
        ({"algorithm": "ppo_lag", "lambda_init": 0.0}, "lambda_init=0.0 must be positive"),
        ({"algorithm": "ppo_lag", "lambda_init": 2.0, "lambda_max": 1.0}, "lambda_max=1.0 is below lambda_init=2.0"),
        ({"algorithm": "ppo_lag", "lambda_lr": -1.0}, "lambda_lr=-1.0 must be 0 or more"),
        ({"algorithm": "ppo_lag", "episode_cost_window_size": 0}, "episode_cost_window_size=0 must be at least 1"),
    ],
)
def test_ppo_lag_fields_are_checked(tmp_path, fields, names):
    with pytest.raises(SafetyRLHFError, match=names.replace("(", r"\(").replace(")", r"\)")):
        SafetyPPOConfig(output_dir=str(tmp_path), use_cpu=True, **fields)


def test_the_cli_runs_ppo_lag_with_a_cost_model(tiny_models, tmp_path):
    from safety_rlhf.cli import main

    out = tmp_path / "lag"
    code = main(["ppo", "--config", "recipes/tiny/ppo_lag.yaml", "--model_name_or_path", str(tiny_models["policy"]),
                 "--reward_model_path", str(tiny_models["classifier"]), "--cost_model_path",
                 str(tiny_models["classifier"]), "--output_dir", str(out), "--max_steps", "2", "--save_steps", "0",
                 "--response_length", "4", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
                 "--max_samples", "8", "--sample_completions", "0"])  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and all("lagrangian/lambda" in m for m in lines)
    assert (out / "value").is_dir() and (out / "cost_value").is_dir()
