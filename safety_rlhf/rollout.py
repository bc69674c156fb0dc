"""Rollout pieces of one PPO iteration: generate, truncate, recompute log-probs and values, score.

Shapes: B prompts, Q padded prompt tokens (left padding), R = response_length. `query_responses` is (B, Q + R);
every per-token tensor over the response is (B, R) and `mask` is 1 on the response tokens up to and including the
stop token.
"""

import math
from collections.abc import Callable

import torch
from transformers import GenerationConfig
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from . import SafetyRLHFError

RewardFn = Callable[[list[str], list[str]], "list[float] | torch.Tensor"]


def generation_config(args, tokenizer, stop_token_ids: list[int]) -> GenerationConfig:
    """Pure sampling: no top-k, no repetition penalty, so the sampling distribution is softmax(logits / T)."""
    return GenerationConfig(
        max_new_tokens=args.response_length,
        do_sample=True,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=0,
        eos_token_id=stop_token_ids or None,
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.no_grad()
def generate(policy, queries, query_mask, gen_config, pad_token_id: int, chunk_size: int) -> torch.Tensor:
    """Sample responses with the real `generate` (KV cache on); returns (B, R) padded with `pad_token_id`."""
    width = gen_config.max_new_tokens
    responses = []
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start : start + chunk_size]
        out = policy.generate(
            input_ids=q, attention_mask=query_mask[start : start + chunk_size], generation_config=gen_config
        )
        response = out[:, q.shape[1] :]
        responses.append(torch.nn.functional.pad(response, (0, width - response.shape[1]), value=pad_token_id))
    return torch.cat(responses)


def truncate_at_stop(responses, stop_token_ids: list[int], pad_token_id: int):
    """Everything after the first stop token becomes padding; returns (responses, mask, lengths, has_stop).

    The stop token itself stays a valid response token: its log-prob is trained and the score is placed on it.
    """
    _, width = responses.shape
    positions = torch.arange(width, device=responses.device)
    if stop_token_ids:
        is_stop = torch.isin(responses, torch.tensor(stop_token_ids, device=responses.device))
        has_stop = is_stop.any(dim=1)
        first_stop = torch.where(has_stop, is_stop.int().argmax(dim=1), width - 1)
    else:
        has_stop = torch.zeros(responses.shape[0], dtype=torch.bool, device=responses.device)
        first_stop = torch.full((responses.shape[0],), width - 1, device=responses.device)
    lengths = first_stop + 1  # (B,)
    mask = positions[None, :] < lengths[:, None]  # (B, R)
    return responses.masked_fill(~mask, pad_token_id), mask, lengths, has_stop


def position_ids_from(attention_mask):
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)


def response_logprobs(logits, responses, temperature: float, with_entropy: bool = False):
    """Log-probs of the sampled tokens under softmax(logits / T); logits already cut to the response: (B, R, V)."""
    logits = logits / temperature
    logprobs = selective_log_softmax(logits, responses)
    return (logprobs, entropy_from_logits(logits)) if with_entropy else logprobs


def forward_response(model, queries, responses, query_mask, mask):
    """Logits (B, R, V) that predicted each response token, from one forward pass on prompt + response."""
    attention_mask = torch.cat([query_mask, mask.to(query_mask.dtype)], dim=1)
    out = model(
        input_ids=torch.cat([queries, responses], dim=1),
        attention_mask=attention_mask,
        position_ids=position_ids_from(attention_mask),
        use_cache=False,
    )
    context = queries.shape[1]
    return out.logits[:, context - 1 : -1]


def score(reward_fn: RewardFn, prompts: list[str], completions: list[str], device) -> torch.Tensor:
    """Scores (B,) from a reward model or any `(prompts, completions) -> list[float]` callable, checked."""
    scores = reward_fn(prompts, completions)
    scores = torch.as_tensor(scores if torch.is_tensor(scores) else list(scores), dtype=torch.float32)
    if scores.shape != (len(prompts),):
        raise SafetyRLHFError(
            f"the reward function returned shape {tuple(scores.shape)} for {len(prompts)} completions; "
            "it must return one float per completion"
        )
    return scores.to(device)


def is_finite(*values) -> bool:
    return all(math.isfinite(float(v)) if not torch.is_tensor(v) else bool(torch.isfinite(v).all()) for v in values)
