"""Rollout pieces of one PPO iteration: generate, truncate, recompute log-probs and values, score.

Shapes: B prompts, Q padded prompt tokens (left padding), R = response_length. `query_responses` is (B, Q + R);
every per-token tensor over the response is (B, R) and `mask` is 1 on the response tokens up to and including the
stop token.
"""

import copy
import inspect
import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from . import SafetyRLHFError, critics

RewardFn = Callable[[list[str], list[str]], "list[float] | torch.Tensor"]


def generation_config(args, tokenizer, stop_token_ids: list[int], model_vocab: int | None = None) -> GenerationConfig:
    """Pure sampling: no top-k, no repetition penalty, so the sampling distribution is softmax(logits / T).

    Every knob is explicit: `generate` fills the unset ones from the model's generation_config.json (Qwen2.5-Instruct
    ships repetition_penalty 1.05 and top_k 20), which would make the sampled distribution differ from the one
    whose log-probs PPO uses.

    `model_vocab`: the rows of the model's LM head. Where it has more than the tokenizer has tokens (Qwen2.5-7B: 152,064
    rows, 151,665 tokens; its 0.5B critic has 151,936 embedding rows), the rows past the tokenizer are suppressed:
    no token decodes to them, and a sampled id past the critic's embedding is an out-of-range index (a device-side
    assert that ends a CUDA run, seen on an H200 with random weights). The training log-probs drop the same rows
    (`response_logprobs(vocab_size=...)`), so both use softmax over the tokenizer's ids.
    """
    extra = {}
    if model_vocab is not None and model_vocab > len(tokenizer):
        extra["suppress_tokens"] = list(range(len(tokenizer), model_vocab))
    return GenerationConfig(
        **extra,
        max_new_tokens=args.response_length,
        min_new_tokens=0,
        do_sample=True,
        num_beams=1,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=0,
        typical_p=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=stop_token_ids or None,
        pad_token_id=tokenizer.pad_token_id,
    )


class SampledLogprobs(LogitsProcessor):
    """Records log softmax(logits / T) of each sampled token while `generate` runs, one step in memory at a time.

    `generate` calls processors before sampling, so step t keeps its (B, V) log-probs until step t + 1 shows which
    token was sampled (the last column of `input_ids`); `finish` reads the last step from the returned sequences.
    Custom processors run after `generate`'s own processors (none with our config) and before its temperature and
    top-p warpers, so these are the log-probs of softmax(logits / T), as the training forward computes them.
    TRL 1.12 instead keeps every step's scores, (B, R, V).
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.previous = None
        self.logprobs = []

    def __call__(self, input_ids, scores):
        if self.previous is not None:
            self.logprobs.append(self.previous.gather(1, input_ids[:, -1:]))
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, responses) -> torch.Tensor:
        """(B, R') log-probs of the R' generated tokens of `responses` (B, R')."""
        if self.previous is not None and len(self.logprobs) < responses.shape[1]:
            self.logprobs.append(self.previous.gather(1, responses[:, -1:]))
        self.previous = None
        return torch.cat(self.logprobs, dim=1)


class InverseCDFSampler(LogitsProcessor):
    """Draws the next token from softmax(scores / T) (within the top-p nucleus) by inverse transform sampling, one
    uniform per row, a cumulative sum and a binary search, and returns scores where only that token is finite, so
    that `generate`, run greedy, picks it (`sample_by_inverse_cdf`).

    The distribution is that of `generate`'s own sampling (its temperature and top-p warpers, then `torch.multinomial`),
    but `torch.multinomial` draws one exponential per vocabulary entry and row on the CPU: 38 ms a step for 32 rows of
    SmolLM2's 49,152 tokens (2 cores, Intel Xeon, 2026-12-07), about 1 s of a PPO update's 6 s of generation; this
    takes 0.8 ms. Tokens of probability 0 (suppressed, outside the nucleus) are never drawn.
    """

    def __init__(self, temperature: float, top_p: float):
        self.warpers = LogitsProcessorList(
            [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])
        )

    def __call__(self, input_ids, scores):
        cdf = torch.softmax(self.warpers(input_ids, scores.float()), dim=-1).cumsum(dim=-1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
        tokens = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
        return torch.full_like(scores, -math.inf).scatter_(1, tokens, 0.0)


def sample_by_inverse_cdf(gen_config: GenerationConfig) -> tuple[GenerationConfig, list]:
    """A sampling config as a greedy config plus the `InverseCDFSampler` to append to the logits processors (after
    any that read the raw scores); a greedy or beam config comes back as is, with no processor."""
    if not gen_config.do_sample or gen_config.num_beams != 1:
        return gen_config, []
    sampler = InverseCDFSampler(gen_config.temperature, gen_config.top_p if gen_config.top_p is not None else 1.0)
    greedy = copy.deepcopy(gen_config)
    make_greedy(greedy)
    return greedy, [sampler]


def make_greedy(gen_config: GenerationConfig) -> None:
    """Greedy decoding, the sampling knobs back at their defaults (`generate` warns about ones set but unused)."""
    gen_config.do_sample, gen_config.temperature, gen_config.top_p, gen_config.top_k = False, 1.0, 1.0, 50


def shared_prompt_cache(policy, queries, query_mask, copies: int):
    """The KV cache of every prompt token but the last, computed once for each group of `copies` identical rows of
    `queries` (consecutive) and repeated for its rows; None where the rows do not come in such groups.

    `generate` given this cache runs only the last prompt token and the response: with 4 samples per prompt, a
    quarter of the prompt tokens go through the model (SmolLM2's PPO recipe, 2 threads, Intel Xeon: generation 5.1 ->
    4.3 s an update).
    """
    rows, width = queries.shape
    if copies < 2 or rows % copies or width < 2:
        return None
    grouped = queries.view(rows // copies, copies, width)
    if not (grouped == grouped[:, :1]).all() or not (query_mask.view_as(grouped) == query_mask[::copies, None]).all():
        return None
    from transformers import DynamicCache

    ids, mask = queries[::copies, :-1], query_mask[::copies, :-1]
    cache = DynamicCache(config=policy.config)
    extra = {"logits_to_keep": 1} if accepts_logits_to_keep(policy) else {}
    policy(input_ids=ids, attention_mask=mask, position_ids=position_ids_from(mask), use_cache=True,
           **{cache_argument(policy): cache}, **extra)  # fmt: skip
    cache.batch_repeat_interleave(copies)
    return cache


def cache_argument(model) -> str:
    """The name under which `forward` and `generate` take a KV cache: `cache` where `forward` has it (transformers
    5.25 deprecates `past_key_values`), else `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.no_grad()
def generate(policy, queries, query_mask, gen_config, pad_token_id: int, chunk_size: int, with_logprobs=False,
             copies: int = 1):  # fmt: skip
    """Sample responses with the real `generate` (KV cache on; `sample_by_inverse_cdf` draws the tokens); returns
    (B, R) padded with `pad_token_id`.

    With `with_logprobs`, also the (B, R) log-probs of the sampled tokens at temperature T (0 beyond each
    response's end), read during generation by `SampledLogprobs`. With `copies` > 1, rows come in groups of `copies`
    identical prompts (`samples_per_prompt`) whose prompt pass is shared (`shared_prompt_cache`) in every chunk made
    of such groups.
    """
    width = gen_config.max_new_tokens
    config, sampler = sample_by_inverse_cdf(gen_config)
    responses, logprobs = [], []
    for start in range(0, queries.shape[0], chunk_size):
        q, m = queries[start : start + chunk_size], query_mask[start : start + chunk_size]
        recorder = SampledLogprobs(gen_config.temperature) if with_logprobs else None
        cache = shared_prompt_cache(policy, q, m, copies)
        out = policy.generate(
            input_ids=q,
            attention_mask=m,
            generation_config=config,
            logits_processor=LogitsProcessorList(([recorder] if recorder else []) + sampler),
            **({cache_argument(policy): cache} if cache is not None else {}),
        )
        response = out[:, q.shape[1] :]
        responses.append(torch.nn.functional.pad(response, (0, width - response.shape[1]), value=pad_token_id))
        if recorder:
            logprobs.append(torch.nn.functional.pad(recorder.finish(response), (0, width - response.shape[1])))
    return (torch.cat(responses), torch.cat(logprobs)) if with_logprobs else torch.cat(responses)


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


def response_logprobs(logits, responses, temperature: float, with_entropy: bool = False, entropy_grad: bool = True,
                      vocab_size: int | None = None):  # fmt: skip
    """Log-probs of the sampled tokens under softmax(logits / T); logits already cut to the response: (B, R, V).

    With `with_entropy`, also the entropy of that distribution per token; `entropy_grad=False` computes it without
    a graph (for logging only: no backward pass through a (B, R, V) softmax when the entropy bonus is off).
    `vocab_size`: only the first `vocab_size` logits count (the tokenizer's ids; see `generation_config`).
    """
    if vocab_size is not None and vocab_size < logits.shape[-1]:
        logits = logits[..., :vocab_size]
    logprobs = None
    if logits.dtype in (torch.bfloat16, torch.float16):
        # Half-precision logits (the no-grad passes under autocast; every pass of a bf16 model without it; the PPO
        # epochs under autocast get fp32 ones, as accelerate casts the prepared model's outputs): the log-softmax runs
        # in fp32 all the same, one sequence at a time, so the rollout and the PPO epochs agree (the first ratio was
        # 1.0011 with a bf16 log-softmax on one side) without an fp32 copy of the whole (B, R, V) tensor at once.
        rows = [selective_log_softmax(row.float() / temperature, ids) for row, ids in zip(logits, responses)]
        logprobs = torch.stack(rows)
        if not with_entropy:
            return logprobs
    logits = logits / temperature
    if logprobs is None:
        logprobs = selective_log_softmax(logits, responses)
    if not with_entropy:
        return logprobs
    with nullcontext() if entropy_grad else torch.no_grad():
        return logprobs, entropy_from_logits(logits)


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM (or the base of a PEFT model) can compute logits for the last positions only."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def response_logits(model, input_ids, attention_mask, position_ids, response_length: int, keep: bool | None = None):
    """Logits (B, R, V) that predicted each of the last R tokens, from one forward pass on prompt + response.

    The LM head runs on the R + 1 last positions only when the model allows it (`logits_to_keep`): prompt positions
    need no (T, V) logits, which are most of the memory and a large share of the FLOPs of small models.
    """
    if keep is None:
        keep = accepts_logits_to_keep(model)
    extra = {"logits_to_keep": response_length + 1} if keep else {}
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **extra
    ).logits
    return logits[:, -response_length - 1 : -1]


def micro_batch_columns(query_mask, lengths) -> tuple[int, int]:
    """(first prompt column any row uses, longest response) of some rows: the columns their forward pass needs."""
    used = query_mask.any(dim=0)
    start = int(used.int().argmax()) if bool(used.any()) else query_mask.shape[1] - 1
    return start, int(lengths.max())


def forward_response(model, queries, responses, query_mask, mask):
    """Logits (B, R, V) that predicted each response token, from one forward pass on prompt + response."""
    attention_mask = torch.cat([query_mask, mask.to(query_mask.dtype)], dim=1)
    return response_logits(
        model,
        torch.cat([queries, responses], dim=1),
        attention_mask,
        position_ids_from(attention_mask),
        responses.shape[1],
    )


def logits_and_values(policy, critic, split, input_ids, attention_mask, position_ids, response_length: int,
                      hidden=None, with_logits: bool = True, keep: bool = True, with_values: bool = True):  # fmt: skip
    """The policy's logits (B, R, V) predicting the last R tokens and the critic's values (B, R) at the same positions.

    The policy runs if `with_logits` or if the critic reads its trunk (`critics.SharedValueHead`: one pass gives both);
    otherwise logits are None. The critic runs if `with_values`; otherwise values are None. With `hidden`, the cached
    output of the frozen bottom layers (`split.bottom`), only the top layers run, and `critics.PrefixCritic` reads it
    too.
    """
    logits, trunk = None, None
    if with_logits or critic.reads_policy:
        with critics.reading(critic, policy) as seen:
            if hidden is not None:
                logits = split.response_logits(hidden, attention_mask, position_ids, response_length)
            else:
                logits = response_logits(policy, input_ids, attention_mask, position_ids, response_length, keep=keep)
        trunk = seen[-1] if seen else None
    if not with_values:
        return logits, None
    values = critic(input_ids, attention_mask, position_ids, response_length, hidden=hidden, trunk=trunk)
    return logits, values


@torch.no_grad()
def logprobs_and_values(policy, ref_model, critic, split, queries, responses, query_mask, mask, temperature: float,
                        with_policy: bool = True, vocab_size: int | None = None):  # fmt: skip
    """Step 2 on some rows: (policy log-probs or None, reference log-probs, values, cached hidden or None), (B, R).

    The reference is `ref_model`, or the policy with its adapter off when `ref_model` is None. With a
    `prefix_cache.DecoderSplit` (`trainable_layers`), the frozen bottom layers run once and the policy and the
    reference run only the top layers from their output, the hidden state (B, T, d) returned for the PPO epochs.
    Values (B, R) are V(s_t) at the positions that predicted each response token (`critic`: see `critics`).
    """
    attention_mask = torch.cat([query_mask, mask.to(query_mask.dtype)], dim=1)
    position_ids = position_ids_from(attention_mask)
    input_ids, width = torch.cat([queries, responses], dim=1), responses.shape[1]
    hidden = split.bottom(input_ids, attention_mask, position_ids) if split is not None else None
    logits, values = logits_and_values(
        policy, critic, split, input_ids, attention_mask, position_ids, width, hidden, with_logits=with_policy
    )
    logprobs = response_logprobs(logits, responses, temperature, vocab_size=vocab_size) if with_policy else None
    if ref_model is None:
        with policy.disable_adapter():
            if hidden is not None:
                logits = split.response_logits(hidden, attention_mask, position_ids, width)
            else:
                logits = response_logits(policy, input_ids, attention_mask, position_ids, width)
    else:
        logits = response_logits(ref_model, input_ids, attention_mask, position_ids, width)
    return logprobs, response_logprobs(logits, responses, temperature, vocab_size=vocab_size), values.float(), hidden


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
