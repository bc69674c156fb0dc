"""PPO building blocks: masked statistics, GAE, per-token KL, clipped losses and KL controllers.

All tensors are (B, T) over response tokens; ``mask`` is 1 on valid tokens (a contiguous prefix of each row) and 0 on
padding. Padding entries are replaced by 0 before any arithmetic, so whatever they hold (1e6, inf, nan) never reaches a
result or a gradient.

Departures from the papers:
1. Token-mean aggregation (as in TRL): losses are averaged over all valid tokens of the batch, not per sequence.
2. Value clipping (PPO2 in OpenAI baselines / TRL): the value loss is the max of the clipped and unclipped squared
   errors; the PPO paper uses a plain squared error.
3. KL in the reward (Ziegler et al. 2019; Stiennon et al. 2020): the KL penalty is a per-token reward term built by the
   caller from ``per_token_kl``, not a loss term; its coefficient comes from a KL controller.
4. Each response is one episode: the value after its last valid token is 0, also when it was cut at T without EOS.

PPO-Lagrangian (Safe RLHF: Dai et al. 2023, arXiv 2310.12773; code PKU-Alignment/safe-rlhf,
`safe_rlhf/algorithms/ppo_lag/trainer.py`, and its successor PKU-Alignment/align-anything, whose PPO-Lag trainer has
the same pieces): `token_costs`, `lagrangian_advantages` and `LagrangeMultiplier`. Departure 5: the cost clip is the
reward's (`reward_clip`), applied to the episode cost, as the score's; safe-rlhf clips every per-token reward and cost
at `clip_range_score`.
"""

import math
from collections import deque

import torch

KL_ESTIMATORS = ("k1", "k3")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over valid entries, over all dims or along ``dim``.

    x, mask: (B, T). Returns a 0-dim tensor, or ``x`` reduced along ``dim``. Nan where nothing is valid.
    """
    mask = mask.bool()
    x = torch.where(mask, x, 0.0)
    if dim is None:
        return x.sum() / mask.sum()
    return x.sum(dim) / mask.sum(dim)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over all valid entries, with Bessel's correction when ``unbiased``.

    x, mask: (B, T). Returns a 0-dim tensor. Raises ValueError with fewer than 2 valid entries (1 if not unbiased).
    """
    mask = mask.bool()
    n = int(mask.sum())
    if n < (2 if unbiased else 1):
        raise ValueError(
            f"masked_var needs at least {2 if unbiased else 1} valid entries (unbiased={unbiased}), got {n}"
        )
    variance = masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    if unbiased:
        variance = variance * n / (n - 1)
    return variance


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Whiten ``x`` over valid entries: (x - mean) / sqrt(var + 1e-8), mean added back when not ``shift_mean``.

    x, mask: (B, T) -> (B, T), 0 at padding. Uses the unbiased variance (as TRL).
    """
    mask = mask.bool()
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, 0.0)


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, arXiv 1506.02438, Eq. 16).

    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1},
    with V and A after the last valid token equal to 0.

    rewards, values, mask: (B, T). Returns (advantages, returns), each (B, T), returns = advantages + values,
    both 0 at padding. Callers pass detached values (gradients are not cut here).
    """
    mask = mask.bool()
    rewards = torch.where(mask, rewards, 0.0)  # (B, T)
    values = torch.where(mask, values, 0.0)  # (B, T); V = 0 after the last valid token
    T = rewards.shape[1]
    lastgaelam = torch.zeros_like(values[:, 0])  # (B,)
    advantages_reversed = []
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam  # stays 0 over trailing padding (r = V = 0 there)
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)  # (B, T)
    returns = advantages + values
    return advantages, returns


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from sampled-token log-probs (http://joschu.net/blog/kl-approx.html).

    "k1": log r' = logprobs - ref_logprobs (log pi / pi_ref).
    "k3": (r - 1) - log r with r = exp(ref_logprobs - logprobs); unbiased, low variance, always >= 0.
    logprobs, ref_logprobs: (B, T) -> (B, T). Not masked: the caller masks.
    """
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        log_r = ref_logprobs - logprobs
        return torch.expm1(log_r) - log_r  # expm1 keeps (r - 1) accurate for small log r
    raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {', '.join(KL_ESTIMATORS)}")


def episode_scores(
    raw_scores: torch.Tensor,
    has_stop: torch.Tensor,
    missing_eos_penalty: float | None = None,
    reward_clip: float | None = None,
    rule_term: torch.Tensor | None = None,
) -> torch.Tensor:
    """The score of each episode from the reward model's raw score, in this order:

    1. ``rule_term`` (optional, (B,)) is added (the rule-based refusal term: +r right behaviour, -r wrong);
    2. the EOS trick (Huang et al. 2024, "The N+ implementation details of RLHF with PPO", arXiv 2403.17031):
       ``missing_eos_penalty`` is subtracted where ``has_stop`` is False; None disables it;
    3. the result is clipped to [-reward_clip, reward_clip] (None disables it).

    raw_scores: (B,) float; has_stop: (B,) bool. Returns (B,).
    """
    scores = raw_scores if rule_term is None else raw_scores + rule_term
    if missing_eos_penalty is not None:
        scores = torch.where(has_stop, scores, scores - missing_eos_penalty)
    if reward_clip is not None:
        scores = scores.clamp(-reward_clip, reward_clip)
    return scores


def label_baseline(scores: torch.Tensor, harmful: torch.Tensor) -> torch.Tensor:
    """Each score minus the mean score of its label (harmful or benign) in the batch: a baseline per kind of prompt,
    as RLOO and GRPO take one per prompt. Harmful and benign prompts have different best scores (refusing the one
    ends near 0 after `score_anchor`, answering the other well above); a critic that has not learnt the label yet
    would otherwise count a harmful prompt's right refusal as below average. A baseline that depends on the prompt
    only leaves the expected policy gradient unchanged.

    scores, harmful: (B,) float (harmful 0/1). Returns (B,)."""
    out = scores.clone()
    for group in (harmful > 0.5, harmful <= 0.5):
        if group.any():
            out[group] = scores[group] - scores[group].mean()
    return out


def prompt_baseline(scores: torch.Tensor, group: int) -> torch.Tensor:
    """Each score minus the mean score of the other samples of its prompt (RLOO's leave-one-out baseline, Ahmadian et
    al. 2024): rows come in consecutive groups of `group` samples of one prompt. Independent of the sample it is
    subtracted from, so the expected policy gradient is unchanged; what remains is how much better this response was
    than the policy's other tries at the same prompt.

    scores: (B,), B a multiple of `group` >= 2. Returns (B,)."""
    grouped = scores.view(-1, group)
    others = (grouped.sum(1, keepdim=True) - grouped) / (group - 1)
    return (grouped - others).view(-1)


def token_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    lengths: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    whiten: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (Ziegler et al. 2019, Eq. 2): r_t = -kl_coef * KL_t, plus the episode score on the last
    valid token (the stop token itself when there is one, not the padding slot after it: trl#3750).

    scores: (B,); kl: (B, T) per-token KL (``per_token_kl``); lengths: (B,) valid tokens per row (>= 1); mask: (B, T).
    With ``whiten``, the rewards are whitened over valid tokens keeping their mean (``masked_whiten(shift_mean=False)``).
    Returns (rewards, non_score_reward), each (B, T) and 0 at padding; non_score_reward is the KL part alone.
    """
    mask = mask.bool()
    non_score_reward = torch.where(mask, -kl_coef * kl, 0.0)
    rewards = non_score_reward.clone()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, lengths - 1] += scores.to(rewards.dtype)
    if whiten:
        rewards = masked_whiten(rewards, mask, shift_mean=False)
    return rewards, non_score_reward


def token_costs(
    costs: torch.Tensor,
    kl: torch.Tensor,
    lengths: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    whiten: bool = False,
) -> torch.Tensor:
    """Per-token costs of PPO-Lagrangian: c_t = +kl_coef * KL_t, plus the episode cost on the last valid token.

    The KL term enters the cost with the opposite sign to the reward's (align-anything's
    `add_kl_divergence_regularization_with_cost`: rewards = -beta * KL + reward, costs = +beta * KL + cost), so
    that in the combined advantage (A_r - lambda * A_c) / (1 + lambda) the KL penalty keeps its weight beta whatever
    lambda.
    costs: (B,); kl, mask: (B, T); lengths: (B,). Returns (B, T), 0 at padding (see `token_rewards`).
    """
    return token_rewards(costs, -kl, lengths, mask, kl_coef, whiten=whiten)[0]


def lagrangian_advantages(
    reward_advantages: torch.Tensor, cost_advantages: torch.Tensor, multiplier: float
) -> torch.Tensor:
    """The actor's advantage of PPO-Lagrangian: (A_r - lambda * A_c) / (1 + lambda) (safe-rlhf
    `PPOLagTrainer.actor_loss_fn`). Dividing by 1 + lambda keeps its scale bounded as lambda grows.

    Computed as A_r / (1 + lambda) - A_c * lambda / (1 + lambda): both weights lie in [0, 1], so it stays finite for
    every lambda, up to lambda = inf where it is -A_c (safe-rlhf's form overflows to inf / inf = nan there).
    (B, T) -> (B, T)."""
    if not multiplier >= 0:  # nan too
        raise ValueError(f"the Lagrange multiplier must be >= 0, got {multiplier}")
    if math.isinf(multiplier):
        return -cost_advantages
    return reward_advantages * (1.0 / (1.0 + multiplier)) - cost_advantages * (multiplier / (1.0 + multiplier))


# log(lambda) is kept within +-log(float32's largest value): lambda and the advantages' weights stay finite in float32.
LOG_LAMBDA_BOUND = math.log(torch.finfo(torch.float32).max)


class LagrangeMultiplier:
    """The multiplier lambda >= 0 of the cost constraint J_c <= threshold, kept as `log_lambda` (safe-rlhf
    `PPOLagTrainer`: `log_lambda` initialised at log(lambda_init), SGD at `lambda_lr`).

    Each update (`step`), once `delay_steps` updates are done: one SGD step on the loss
    -(J_c - threshold) * exp(log_lambda), i.e. log_lambda += lr * (J_c - threshold) * lambda, then log_lambda is
    capped at log(lambda_max). So lambda rises while the mean episode cost J_c is above the threshold, falls while it
    is below, and is never negative (it is an exponential). The step is proportional to lambda, so with a threshold
    the policy cannot reach lambda grows without bound (safe-rlhf's rule does the same): `log_lambda` stays within
    +-`LOG_LAMBDA_BOUND`, and `saturated` says when lambda sits at that bound. J_c is the mean cost of the last
    `window_size` episodes (`add_costs`); with several processes the caller averages the per-process means
    (`window_mean`), as safe-rlhf's all-reduce of the episode-cost mean (`PPOLagTrainer.rl_step`), so every process
    takes the same step.
    """

    def __init__(self, lambda_init: float, lr: float, threshold: float = 0.0, lambda_max: float | None = None,
                 delay_steps: int = 0, window_size: int = 128):  # fmt: skip
        if lambda_init <= 0:
            raise ValueError(f"lambda_init must be > 0 (lambda is kept as its log), got {lambda_init}")
        self.log_lambda = torch.nn.Parameter(torch.tensor(math.log(lambda_init), dtype=torch.float64))
        self.optimizer = torch.optim.SGD([self.log_lambda], lr=lr)
        self.threshold = float(threshold)
        self.log_lambda_max = math.log(lambda_max) if lambda_max else None
        self.delay_steps = int(delay_steps)
        self.window = deque(maxlen=int(window_size))

    @property
    def value(self) -> float:
        return float(self.log_lambda.detach().exp())

    def add_costs(self, costs) -> None:
        """Append this rollout's episode costs (a sequence of floats) to the window."""
        self.window.extend(float(c) for c in costs)

    def window_mean(self) -> float:
        return sum(self.window) / len(self.window) if self.window else 0.0

    def step(self, episode_cost: float, updates_done: int) -> bool:
        """One multiplier update from J_c = `episode_cost`; nothing before `delay_steps` updates. Returns whether it
        moved."""
        if updates_done < self.delay_steps:
            return False
        loss = -(float(episode_cost) - self.threshold) * self.log_lambda.exp()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        upper = LOG_LAMBDA_BOUND if self.log_lambda_max is None else min(self.log_lambda_max, LOG_LAMBDA_BOUND)
        with torch.no_grad():  # a step of 1e38 (lambda near the bound times J_c - threshold) lands on the bound
            self.log_lambda.clamp_(-LOG_LAMBDA_BOUND, upper)
        return True

    @property
    def saturated(self) -> bool:
        """Whether lambda sits at float32's largest value (`LOG_LAMBDA_BOUND`), not at a `lambda_max` below it."""
        return float(self.log_lambda.detach()) >= LOG_LAMBDA_BOUND

    def state_dict(self) -> dict:
        return {
            "log_lambda": self.log_lambda.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "window": torch.tensor(list(self.window), dtype=torch.float64),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_lambda.copy_(state["log_lambda"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.window.clear()
        self.window.extend(state["window"].tolist())


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate loss (Schulman et al. 2017, arXiv 1707.06347, Eq. 7), negated, token-mean.

    ratio = exp(logprobs - old_logprobs); loss = mean over valid tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)).
    logprobs, old_logprobs, advantages, mask: (B, T). Returns (0-dim loss, stats) where stats holds 0-dim detached
    tensors: clipfrac (fraction of valid tokens where the clipped term is larger), approxkl
    (0.5 * mean (logprobs - old_logprobs)^2), ratio (mean ratio), ratio_var (biased variance of the ratio).
    """
    mask = mask.bool()
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)  # (B, T)
    advantages = torch.where(mask, advantages, 0.0)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg_losses_clipped > pg_losses).to(ratio.dtype), mask),
            "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
            "ratio_var": masked_var(ratio, mask, unbiased=False),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (PPO2, OpenAI baselines / TRL), token-mean.

    loss = 0.5 * mean over valid tokens of max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2).
    values, old_values, returns, mask: (B, T). Returns (0-dim loss, stats) where stats holds 0-dim detached tensors:
    clipfrac (fraction of valid tokens where the clipped loss is larger) and vpred (mean V).
    """
    mask = mask.bool()
    values = torch.where(mask, values, 0.0)  # (B, T)
    old_values = torch.where(mask, old_values, 0.0)
    returns = torch.where(mask, returns, 0.0)
    values_clipped = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    vf_losses = (values - returns) ** 2
    vf_losses_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((vf_losses_clipped > vf_losses).to(values.dtype), mask),
            "vpred": masked_mean(values, mask),
        }
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(R - V) / Var(R) over valid tokens; 0 when Var(R) == 0.

    values, returns, mask: (B, T). Returns a 0-dim tensor: 1 for perfect prediction, 0 for predicting the mean.
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    var_residual = masked_var(returns - values, mask, unbiased=False)
    return torch.where(var_returns == 0, torch.zeros_like(var_returns), 1 - var_residual / var_returns)


class FixedKLController:
    """Constant KL coefficient (Ziegler et al. 2019, arXiv 1909.08593, Sec. 2.2, fixed beta)."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient stays fixed."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.value = float(state_dict["value"])


class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, arXiv 1909.08593, Sec. 2.2).

    e = clip(KL / target - 1, -0.2, 0.2);  beta <- beta * (1 + e * n_steps / horizon).
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"AdaptiveKLController needs target > 0 and horizon > 0, got {target=}, {horizon=}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move beta towards keeping ``current_kl`` at ``target``; ``n_steps`` samples were seen since the last call."""
        proportional_error = min(max(float(current_kl) / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.value = float(state_dict["value"])
        self.target = float(state_dict["target"])
        self.horizon = float(state_dict["horizon"])
