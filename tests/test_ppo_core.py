import math

import pytest
import torch

from safety_rlhf.ppo_core import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    episode_scores,
    explained_variance,
    label_baseline,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_kl,
    policy_loss,
    prompt_baseline,
    token_rewards,
    value_loss,
)

D = torch.float64


def random_mask(gen, B, T):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    return (torch.arange(T)[None, :] < lengths[:, None]).to(D)


def with_garbage(x, mask, value):
    return torch.where(mask.bool(), x, torch.full_like(x, value))


# masked statistics: x valid entries are {1, 2, 4}: mean 7/3, biased var 14/9, unbiased var 7/3
X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=D)
M = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=D)


def test_masked_mean_hand_values():
    assert masked_mean(X, M).item() == pytest.approx(7 / 3)
    torch.testing.assert_close(masked_mean(X, M, dim=1), torch.tensor([1.5, 4.0], dtype=D))
    torch.testing.assert_close(masked_mean(X, M, dim=0), torch.tensor([2.5, 2.0, math.nan], dtype=D), equal_nan=True)
    # bool and int masks mean the same thing
    assert masked_mean(X, M.bool()).item() == pytest.approx(7 / 3)
    assert masked_mean(X, M.long()).item() == pytest.approx(7 / 3)


def test_masked_var_hand_values():
    assert masked_var(X, M).item() == pytest.approx(7 / 3)
    assert masked_var(X, M, unbiased=False).item() == pytest.approx(14 / 9)
    with pytest.raises(ValueError, match="got 1"):
        masked_var(X, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_masked_whiten_hand_values_and_padding():
    expected = torch.tensor([[1.0, 2.0, 0.0], [4.0, 0.0, 0.0]], dtype=D)
    expected = torch.where(M.bool(), (expected - 7 / 3) / math.sqrt(7 / 3 + 1e-8), 0.0)
    torch.testing.assert_close(masked_whiten(X, M), expected)
    expected_unshifted = torch.where(M.bool(), expected + 7 / 3, 0.0)
    torch.testing.assert_close(masked_whiten(X, M, shift_mean=False), expected_unshifted)
    for garbage in (1e6, math.nan, math.inf):
        torch.testing.assert_close(masked_whiten(with_garbage(X, M, garbage), M), expected)


def test_masked_whiten_moments():
    gen = torch.Generator().manual_seed(0)
    x = 3.0 + 5.0 * torch.randn(16, 20, generator=gen, dtype=D)
    mask = random_mask(gen, 16, 20)
    w = masked_whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert masked_var(w, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert (w[mask == 0] == 0).all()
    w_keep = masked_whiten(x, mask, shift_mean=False)
    assert masked_mean(w_keep, mask).item() == pytest.approx(masked_mean(x, mask).item())
    assert masked_var(w_keep, mask).item() == pytest.approx(1.0, abs=1e-6)


# GAE
def gae_reference(rewards, values, lengths, gamma, lam):
    """Plain Python GAE per row over valid tokens only, V after the last token = 0."""
    advantages = []
    for r, v, n in zip(rewards, values, lengths):
        r, v = r[:n], v[:n]
        adv = [0.0] * n
        next_adv = 0.0
        for t in reversed(range(n)):
            next_v = v[t + 1] if t + 1 < n else 0.0
            next_adv = r[t] + gamma * next_v - v[t] + gamma * lam * next_adv
            adv[t] = next_adv
        advantages.append(adv)
    return advantages


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (1.0, 0.95), (0.99, 0.95), (0.9, 0.0), (0.5, 0.7)])
def test_compute_gae_matches_reference(gamma, lam):
    gen = torch.Generator().manual_seed(1)
    B, T = 6, 9
    rewards = torch.randn(B, T, generator=gen, dtype=D)
    values = torch.randn(B, T, generator=gen, dtype=D)
    mask = random_mask(gen, B, T)
    lengths = mask.sum(1).long().tolist()
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    ref = gae_reference(rewards.tolist(), values.tolist(), lengths, gamma, lam)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(adv[i, :n], torch.tensor(ref[i], dtype=D))
        torch.testing.assert_close(ret[i, :n], adv[i, :n] + values[i, :n])
        assert (adv[i, n:] == 0).all() and (ret[i, n:] == 0).all()


def test_compute_gae_special_cases():
    gen = torch.Generator().manual_seed(2)
    B, T = 5, 7
    rewards = torch.randn(B, T, generator=gen, dtype=D)
    values = torch.randn(B, T, generator=gen, dtype=D)
    mask = random_mask(gen, B, T)
    m = mask.bool()
    r0, v0 = torch.where(m, rewards, 0.0), torch.where(m, values, 0.0)
    # gamma = lam = 1: advantage = reward-to-go - value, return = reward-to-go
    reward_to_go = r0.flip(1).cumsum(1).flip(1)
    adv, ret = compute_gae(rewards, values, mask, 1.0, 1.0)
    torch.testing.assert_close(adv, torch.where(m, reward_to_go - v0, 0.0))
    torch.testing.assert_close(ret, torch.where(m, reward_to_go, 0.0))
    # lam = 0: one-step TD errors, the value after the last valid token is 0
    gamma = 0.9
    next_v = torch.cat([v0[:, 1:], torch.zeros(B, 1, dtype=D)], dim=1)
    adv, _ = compute_gae(rewards, values, mask, gamma, 0.0)
    torch.testing.assert_close(adv, torch.where(m, r0 + gamma * next_v - v0, 0.0))


def test_compute_gae_ignores_padding_garbage():
    gen = torch.Generator().manual_seed(3)
    rewards = torch.randn(4, 8, generator=gen, dtype=D)
    values = torch.randn(4, 8, generator=gen, dtype=D)
    mask = random_mask(gen, 4, 8)
    mask[0] = 1.0  # one full row, one row with a single token
    mask[1] = 0.0
    mask[1, 0] = 1.0
    adv, ret = compute_gae(rewards, values, mask, 0.99, 0.95)
    for garbage in (1e6, -1e6, math.nan, math.inf):
        adv_g, ret_g = compute_gae(
            with_garbage(rewards, mask, garbage), with_garbage(values, mask, garbage), mask, 0.99, 0.95
        )
        torch.testing.assert_close(adv_g, adv)
        torch.testing.assert_close(ret_g, ret)
    # bool mask gives the same result
    adv_b, _ = compute_gae(rewards, values, mask.bool(), 0.99, 0.95)
    torch.testing.assert_close(adv_b, adv)


# KL
def test_per_token_kl_hand_values():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]], dtype=D)
    ref = torch.tensor([[-2.0, -1.0, -0.5]], dtype=D)
    torch.testing.assert_close(per_token_kl(logprobs, ref), torch.tensor([[1.0, -1.0, 0.0]], dtype=D))
    torch.testing.assert_close(per_token_kl(logprobs, ref, "k1"), torch.tensor([[1.0, -1.0, 0.0]], dtype=D))
    # k3 with log r = ref - logprobs: (e^-1 - 1) + 1 = e^-1, (e - 1) - 1 = e - 2
    torch.testing.assert_close(
        per_token_kl(logprobs, ref, "k3"), torch.tensor([[math.exp(-1), math.e - 2, 0.0]], dtype=D)
    )


def test_per_token_kl_k3_properties():
    gen = torch.Generator().manual_seed(4)
    logprobs = -5 * torch.rand(50, 40, generator=gen)
    ref = -5 * torch.rand(50, 40, generator=gen)
    assert (per_token_kl(logprobs, ref, "k3") >= 0).all()
    tiny = torch.tensor([1e-9, -1e-9, 1e-7, -1e-7, 0.0])
    assert (per_token_kl(torch.zeros(5), tiny, "k3") >= 0).all()
    # small differences: k3 ~ k1^2 / 2
    d = 1e-3 * torch.randn(100, generator=gen, dtype=D)
    k1 = per_token_kl(d, torch.zeros_like(d), "k1")
    torch.testing.assert_close(per_token_kl(d, torch.zeros_like(d), "k3"), k1**2 / 2, rtol=1e-2, atol=1e-12)


def test_per_token_kl_unknown_estimator():
    with pytest.raises(ValueError, match="'k2'.*k1.*k3"):
        per_token_kl(torch.zeros(2), torch.zeros(2), "k2")


# policy loss: eps = 0.2; tokens (A, ratio):
# (+1, 1.5) clipped: max(-1.5, -1.2) = -1.2;  (-1, 0.5) clipped: max(0.5, 0.8) = 0.8
# (+2, 0.5) unclipped: max(-1.0, -1.6) = -1.0;  (-1, 1.5) unclipped: max(1.5, 1.2) = 1.5
ADV = torch.tensor([[1.0, -1.0, 0.0], [2.0, -1.0, 0.0]], dtype=D)
RATIO = torch.tensor([[1.5, 0.5, 1.0], [0.5, 1.5, 1.0]], dtype=D)
PG_MASK = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=D)


def test_policy_loss_ratio_one_is_unclipped():
    gen = torch.Generator().manual_seed(5)
    logprobs = -torch.rand(3, 6, generator=gen, dtype=D)
    adv = torch.randn(3, 6, generator=gen, dtype=D)
    mask = random_mask(gen, 3, 6)
    loss, stats = policy_loss(logprobs, logprobs.clone(), adv, mask, 0.2)
    assert loss.item() == pytest.approx(-masked_mean(adv, mask).item())
    assert stats["clipfrac"].item() == 0.0
    assert stats["approxkl"].item() == 0.0
    assert stats["ratio"].item() == pytest.approx(1.0)
    assert stats["ratio_var"].item() == pytest.approx(0.0)


def test_policy_loss_stats_against_valid_entries():
    gen = torch.Generator().manual_seed(7)
    old = -torch.rand(4, 6, generator=gen, dtype=D)
    logprobs = old + 0.5 * torch.randn(4, 6, generator=gen, dtype=D)
    adv = torch.randn(4, 6, generator=gen, dtype=D)
    mask = random_mask(gen, 4, 6)
    valid = mask.bool()
    loss, stats = policy_loss(logprobs, old, adv, mask, 0.2)
    ratio, a = (logprobs - old).exp()[valid], adv[valid]
    clipped = ratio.clamp(0.8, 1.2)
    assert loss.item() == pytest.approx(torch.max(-a * ratio, -a * clipped).mean().item())
    assert stats["clipfrac"].item() == pytest.approx((-a * clipped > -a * ratio).to(D).mean().item())
    assert stats["approxkl"].item() == pytest.approx(0.5 * ((logprobs - old)[valid] ** 2).mean().item())
    assert stats["ratio"].item() == pytest.approx(ratio.mean().item())
    assert stats["ratio_var"].item() == pytest.approx(ratio.var(unbiased=False).item())


def test_policy_loss_hand_computed_with_clipping():
    old = torch.full((2, 3), -1.0, dtype=D)
    logprobs = (old + RATIO.log()).requires_grad_()
    loss, stats = policy_loss(logprobs, old, ADV, PG_MASK, 0.2)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 1.0 + 1.5) / 4)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    log15, log05 = math.log(1.5), math.log(0.5)
    assert stats["approxkl"].item() == pytest.approx(0.5 * (2 * log15**2 + 2 * log05**2) / 4)
    assert stats["ratio"].item() == pytest.approx(1.0)
    assert stats["ratio_var"].item() == pytest.approx(0.25)
    assert all(v.ndim == 0 and not v.requires_grad for v in stats.values())
    loss.backward()
    # clipped tokens get no gradient; unclipped get d(-A * ratio)/dlogprob / n = -A * ratio / 4
    expected = torch.tensor([[0.0, 0.0, 0.0], [-2.0 * 0.5 / 4, 1.0 * 1.5 / 4, 0.0]], dtype=D)
    torch.testing.assert_close(logprobs.grad, expected)


def test_policy_loss_ignores_padding():
    old = torch.full((2, 3), -1.0, dtype=D)
    logprobs = old + RATIO.log()
    loss, stats = policy_loss(logprobs, old, ADV, PG_MASK, 0.2)
    for garbage in (1e6, -1e6, math.nan):
        lp = with_garbage(logprobs, PG_MASK, garbage).requires_grad_()
        loss_g, stats_g = policy_loss(
            lp, with_garbage(old, PG_MASK, -garbage), with_garbage(ADV, PG_MASK, garbage), PG_MASK, 0.2
        )
        torch.testing.assert_close(loss_g, loss)
        for k in stats:
            torch.testing.assert_close(stats_g[k], stats[k])
        loss_g.backward()
        assert torch.isfinite(lp.grad).all() and (lp.grad[PG_MASK == 0] == 0).all()


# value loss: c = 0.2; tokens (V, V_old, R):
# (1.0, 0.5, 1.0): clip V -> 0.7, max(0, 0.09) = 0.09 clipped;   (1.0, 0.9, 0.0): in range, 1.0, not clipped
# (0.0, 0.5, -1.0): clip V -> 0.3, max(1, 1.69) = 1.69 clipped;   (2.0, 0.0, 0.1): clip V -> 0.2, max(3.61, 0.01) = 3.61
V = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]], dtype=D)
V_OLD = torch.tensor([[0.5, 0.9, 0.0], [0.5, 0.0, 0.0]], dtype=D)
R = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.1, 0.0]], dtype=D)
V_MASK = torch.tensor([[1, 1, 0], [1, 1, 0]], dtype=D)


def test_value_loss_hand_computed_clipped():
    values = V.clone().requires_grad_()
    loss, stats = value_loss(values, V_OLD, R, V_MASK, 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.09 + 1.0 + 1.69 + 3.61) / 4)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    assert stats["vpred"].item() == pytest.approx(1.0)
    assert all(v.ndim == 0 and not v.requires_grad for v in stats.values())
    loss.backward()
    # clipped tokens: no gradient; unclipped: 0.5 * 2 * (V - R) / 4
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 0.25, 0.0], [0.0, 0.475, 0.0]], dtype=D))


def test_value_loss_unclipped():
    old = V + 0.05
    loss, stats = value_loss(V, old, R, V_MASK, 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.0 + 1.0 + 1.0 + 1.9**2) / 4)
    assert stats["clipfrac"].item() == 0.0


def test_value_loss_ignores_padding():
    loss, stats = value_loss(V, V_OLD, R, V_MASK, 0.2)
    for garbage in (1e6, -1e6, math.nan, math.inf):
        values = with_garbage(V, V_MASK, garbage).requires_grad_()
        loss_g, stats_g = value_loss(
            values, with_garbage(V_OLD, V_MASK, -garbage), with_garbage(R, V_MASK, garbage), V_MASK, 0.2
        )
        torch.testing.assert_close(loss_g, loss)
        for k in stats:
            torch.testing.assert_close(stats_g[k], stats[k])
        loss_g.backward()
        assert torch.isfinite(values.grad).all()


# explained variance
def test_explained_variance():
    gen = torch.Generator().manual_seed(6)
    returns = torch.randn(4, 5, generator=gen, dtype=D)
    mask = random_mask(gen, 4, 5)
    mask[0, :2] = 1.0
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    mean_prediction = torch.full_like(returns, masked_mean(returns, mask).item())
    assert explained_variance(mean_prediction, returns, mask).item() == pytest.approx(0.0, abs=1e-12)
    # R = [1, 2, 3], V = [1, 2, 2]: 1 - (2/9) / (2/3) = 2/3, padding garbage ignored
    r = torch.tensor([[1.0, 2.0, 3.0, 1e6]], dtype=D)
    v = torch.tensor([[1.0, 2.0, 2.0, -1e6]], dtype=D)
    m = torch.tensor([[1, 1, 1, 0]])
    assert explained_variance(v, r, m).item() == pytest.approx(2 / 3)
    # constant returns: 0, not nan
    assert explained_variance(v, torch.ones_like(r), m).item() == 0.0


# KL controllers
def test_adaptive_kl_controller_sequence():
    ctl = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    expected = 0.1
    for kl, n_steps, error in [(12.0, 256, 0.2), (6.0, 256, 0.0), (0.0, 512, -0.2), (6.6, 1000, 0.1), (100, 1, 0.2)]:
        ctl.update(kl, n_steps)
        expected *= 1 + error * n_steps / 10000
        assert ctl.value == pytest.approx(expected, rel=1e-12)
    assert ctl.value == pytest.approx(0.1 * 1.00512 * 0.98976 * 1.01 * 1.00002, rel=1e-12)
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0, horizon=10000)


def test_kl_controller_state_dict_round_trip():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(10.0, 512)
    restored = AdaptiveKLController(0.05, target=1.0, horizon=5)
    restored.load_state_dict(ctl.state_dict())
    assert (restored.value, restored.target, restored.horizon) == (ctl.value, 6.0, 10000.0)
    ctl.update(3.0, 128)
    restored.update(3.0, 128)
    assert restored.value == ctl.value

    fixed = FixedKLController(0.05)
    for kl in (0.0, 100.0, 6.0):
        fixed.update(kl, 512)
    assert fixed.value == 0.05
    fixed2 = FixedKLController(1.0)
    fixed2.load_state_dict(fixed.state_dict())
    assert fixed2.value == 0.05


# Reward assembly: episode scores (rule term, EOS trick, clip), then per-token rewards (KL penalty + score on the last
# valid token), by hand.
def test_episode_scores_eos_penalty_rule_term_and_clip_by_hand():
    raw = torch.tensor([0.5, 2.0, -0.4, 3.0], dtype=D)
    has_stop = torch.tensor([True, False, False, True])
    assert torch.equal(episode_scores(raw, has_stop), raw)  # everything off: the raw score
    # EOS trick: rows 1 and 2 never stopped -> 2.0 - 1.5 = 0.5, -0.4 - 1.5 = -1.9
    out = episode_scores(raw, has_stop, missing_eos_penalty=1.5)
    assert torch.allclose(out, torch.tensor([0.5, 0.5, -1.9, 3.0], dtype=D))
    # + rule term, then the penalty, then the clip to [-1, 1]: [0.5+1, 2-1-1.5, -0.4+1-1.5, 3-1] -> [1, -0.5, -0.9, 1]
    rule = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=D)
    out = episode_scores(raw, has_stop, missing_eos_penalty=1.5, reward_clip=1.0, rule_term=rule)
    assert torch.allclose(out, torch.tensor([1.0, -0.5, -0.9, 1.0], dtype=D))
    assert torch.equal(raw, torch.tensor([0.5, 2.0, -0.4, 3.0], dtype=D))  # the input is not modified


def test_token_rewards_score_on_the_last_valid_token_by_hand():
    kl = torch.tensor([[0.2, -0.1, 0.4, 9.0], [0.3, 9.0, 9.0, 9.0]], dtype=D)  # 9.0: garbage at padding
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=D)
    lengths = torch.tensor([3, 1])
    scores = torch.tensor([1.0, -2.0], dtype=D)
    rewards, non_score = token_rewards(scores, kl, lengths, mask, kl_coef=0.5)
    assert torch.allclose(non_score, torch.tensor([[-0.1, 0.05, -0.2, 0.0], [-0.15, 0, 0, 0]], dtype=D))
    # the score sits on token 3 of row 0 (its stop token), token 1 of row 1; nothing on the padding after them
    assert torch.allclose(rewards, torch.tensor([[-0.1, 0.05, 0.8, 0.0], [-2.15, 0, 0, 0]], dtype=D))
    # sum of rewards = score + sum of the KL terms, per row
    assert torch.allclose(rewards.sum(1), scores + non_score.sum(1))


def test_token_rewards_whitening_keeps_the_mean():
    kl = torch.tensor([[0.2, -0.1, 0.4], [0.3, 0.0, 0.0]], dtype=D)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=D)
    scores, lengths = torch.tensor([1.0, -2.0], dtype=D), torch.tensor([3, 1])
    plain, _ = token_rewards(scores, kl, lengths, mask, kl_coef=0.5)
    whitened, _ = token_rewards(scores, kl, lengths, mask, kl_coef=0.5, whiten=True)
    # valid plain rewards {-0.1, 0.05, 0.8, -2.15}: mean -0.35, unbiased var from the hand values
    valid = torch.tensor([-0.1, 0.05, 0.8, -2.15], dtype=D)
    mean, var = valid.mean(), valid.var(unbiased=True)
    expected = torch.where(mask.bool(), (plain - mean) / torch.sqrt(var + 1e-8) + mean, 0.0)
    assert torch.allclose(whitened, expected)
    assert torch.isclose(whitened[mask.bool()].mean(), mean)


def test_label_baseline_centres_each_label_on_its_own_mean():
    scores = torch.tensor([2.0, -3.0, 3.0, -1.0, 2.0])
    harmful = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    out = label_baseline(scores, harmful)
    assert torch.allclose(out, torch.tensor([2 - 1 / 3, -3 - 1 / 3, 2.0, -2.0, 2 - 1 / 3]))
    assert out[harmful > 0].mean().abs() < 1e-6 and out[harmful == 0].mean().abs() < 1e-6
    only_benign = label_baseline(torch.tensor([1.0, 3.0]), torch.zeros(2))
    assert torch.equal(only_benign, torch.tensor([-1.0, 1.0]))
    assert torch.equal(scores, torch.tensor([2.0, -3.0, 3.0, -1.0, 2.0]))  # not modified in place


def test_prompt_baseline_subtracts_the_mean_of_the_other_samples_of_each_prompt():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0])
    out = prompt_baseline(scores, 4)
    assert torch.allclose(out[:4], torch.tensor([1 - 3.0, 2 - 8 / 3, 3 - 7 / 3, 4 - 2.0]))
    assert torch.equal(out[4:], torch.zeros(4))  # every sample alike: no signal from that prompt
    pairs = prompt_baseline(torch.tensor([0.0, 2.0, 5.0, 1.0]), 2)
    assert torch.equal(pairs, torch.tensor([-2.0, 2.0, 4.0, -4.0]))
    assert torch.equal(scores[:4], torch.tensor([1.0, 2.0, 3.0, 4.0]))  # not modified in place
