"""The PPO trainer on tiny models: it learns, its knobs act as documented, and its bookkeeping is exact."""

import json
import math

import pytest
import torch
from helpers import (
    PROMPTS,
    CrashAfter,
    build,
    config,
    length_reward,
    make_dataset,
    model_args,
    params,
    supervised_rows,
)  # fmt: skip

from safety_rlhf import SafetyRLHFError, rollout
from safety_rlhf.config import SafetyPPOConfig
from safety_rlhf.models import load_policy, load_tokenizer, load_value_model
from safety_rlhf.trainer import SafetyPPOTrainer, sorted_checkpoints


def test_ppo_raises_a_synthetic_reward(tiny_models, tmp_path):
    trainer = build(tiny_models, tmp_path, max_steps=30, learning_rate=1e-2, kl_coef=0.01)
    history = trainer.train()
    scores = [m["objective/scores"] for m in history]
    first, last = sum(scores[:5]) / 5, sum(scores[-5:]) / 5
    assert last > 1.3 * first and last > first + 0.05, (first, last)
    names = {"objective/kl", "objective/entropy", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg",
             "loss/value_avg", "val/clipfrac_avg", "val/ratio", "val/num_eos_tokens", "val/explained_variance",
             "kl_coef", "lr", "episode", "eps"}  # fmt: skip
    assert names <= set(history[-1])
    assert history[-1]["episode"] == 30 * 8
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 31))
    build(tiny_models, tmp_path, max_steps=2).train()  # a new run into the same folder starts a new metrics file
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_entropy_bonus_keeps_entropy_higher(tiny_models, tmp_path):
    def final_entropy(ent_coef, sub):
        trainer = build(tiny_models, tmp_path / sub, max_steps=15, learning_rate=1e-2, ent_coef=ent_coef)
        return trainer.train()[-1]["policy/entropy_avg"]

    assert final_entropy(1.0, "bonus") > final_entropy(0.0, "none") + 0.05


def test_large_kl_coef_keeps_kl_lower(tiny_models, tmp_path):
    def mean_kl(kl_coef, sub):
        trainer = build(tiny_models, tmp_path / sub, max_steps=12, learning_rate=3e-3, kl_coef=kl_coef)
        return sum(m["objective/kl"] for m in trainer.train()[-4:]) / 4

    assert mean_kl(2.0, "strong") < mean_kl(0.0, "free")


def test_accumulation_does_not_change_the_update(tiny_models, tmp_path):
    """(micro-batch 4, accumulation 1) and (micro-batch 1, accumulation 4): same parameters after one update.

    The stop token is a frequent one so responses have different lengths: a mean of per-micro-batch token means
    would differ from the token mean over the mini-batch.
    """
    probe = build(tiny_models, tmp_path / "probe", per_device_train_batch_size=4, gradient_accumulation_steps=1)
    batch = probe.batch(0)
    torch.manual_seed(0)  # the trainer seeds at init; the first rollout samples exactly these responses
    responses = rollout.generate(
        probe.model.policy, batch["queries"], batch["query_mask"], probe.gen_config, probe.tokenizer.pad_token_id, 64
    )[:, :6]
    present = [set(row.tolist()) for row in responses]
    stop = next(t for t in responses[0].tolist() if 1 <= sum(t in row for row in present) < 4)
    results = []
    for micro, accum in ((4, 1), (1, 4)):
        trainer = build(
            tiny_models, tmp_path / f"{micro}x{accum}", per_device_train_batch_size=micro,
            gradient_accumulation_steps=accum, max_steps=1, num_ppo_epochs=1, stop_token=None, stop_token_id=stop,
            learning_rate=1.0, adam_epsilon=1.0,  # Adam with a large eps: the step is ~ the gradient itself
        )  # fmt: skip
        history = trainer.train()
        assert 1 <= history[0]["val/num_eos_tokens"] < 4
        results.append(params(trainer.model))
    before = params(build(tiny_models, tmp_path / "init", max_steps=1).model)
    assert any(not torch.equal(before[n], results[0][n]) for n in before)
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_every_trainable_parameter_changes_and_frozen_ones_do_not(tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = AutoModelForSequenceClassification.from_pretrained(tiny_models["classifier"])
    rm_tok = AutoTokenizer.from_pretrained(tiny_models["classifier"])

    def reward(prompts, completions):
        with torch.no_grad():
            return rm(**rm_tok(prompts, completions, return_tensors="pt", padding=True)).logits[:, 0]

    rm_before = params(rm)
    trainer = build(tiny_models, tmp_path, reward=reward, max_steps=2)
    ref_before = params(trainer.ref_model)
    before = params(trainer.model)
    trainer.train()
    after = params(trainer.model)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and {n.split(".")[0] for n in trainable} == {"policy", "value"}
    unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
    assert not unchanged
    assert all(torch.equal(ref_before[n], p) for n, p in trainer.ref_model.named_parameters())
    assert all(torch.equal(rm_before[n], p) for n, p in rm.named_parameters())


def test_lora_reference_is_the_base_with_the_adapter_off(tiny_models, tmp_path):
    trainer = build(tiny_models, tmp_path, reward=length_reward, peft=True, max_steps=2)
    assert trainer.ref_model is None
    before = params(trainer.model)
    trainer.train()
    after = params(trainer.model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert changed == trainable
    assert all("lora_" in n or n.startswith("value.head") for n in trainable)
    trainer.save_model(tmp_path / "final")
    assert (tmp_path / "final" / "adapter_config.json").is_file()
    assert (tmp_path / "final" / "value" / "value_head.safetensors").is_file()


def test_4bit_lora_policy_trains_on_cpu(tiny_models, tmp_path):
    margs = model_args(
        tiny_models["policy"], use_peft=True, load_in_4bit=True, use_bnb_nested_quant=True, lora_r=8,
        lora_target_modules="all-linear",
    )  # fmt: skip
    tokenizer = load_tokenizer(margs)
    policy = load_policy(margs, tokenizer)
    value = load_value_model(str(tiny_models["policy"]), margs, tokenizer)
    assert type(policy.base_model.model.model.layers[0].mlp.up_proj.base_layer).__name__ == "Linear4bit"
    trainer = SafetyPPOTrainer(config(tmp_path), tokenizer, policy, value, length_reward, make_dataset(tokenizer))
    before = params(trainer.model)
    history = trainer.train()
    assert all(torch.isfinite(torch.tensor(m["loss/policy_avg"])) for m in history)
    lora = [n for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert lora and all(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if n in lora)


def test_resume_reproduces_an_uninterrupted_run(tiny_models, tmp_path):
    kw = dict(max_steps=5, save_steps=2, save_total_limit=2, adaptive_kl=True, kl_target=0.1, kl_horizon=100)
    full = build(tiny_models, tmp_path / "full", **kw).train()

    crashing = build(tiny_models, tmp_path / "crash", **kw)
    crashing.reward_fn = CrashAfter(crashing.reward_fn, calls=4)  # dies during update 5, after checkpoint-4
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    out = tmp_path / "crash" / "run"
    assert [p.name for p in sorted_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    resumed = build(tiny_models, tmp_path / "crash", **kw).train(resume_from_checkpoint="latest")
    assert [m["step"] for m in resumed] == [5]
    for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "kl_coef", "lr"):
        assert resumed[0][key] == pytest.approx(full[4][key], rel=1e-4, abs=1e-6), key
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_resume_refuses_a_checkpoint_with_one_optimizer_group(tiny_models, tmp_path):
    build(tiny_models, tmp_path, max_steps=2, save_steps=1).train()
    ckpt = tmp_path / "run" / "checkpoint-1"
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    policy, critic = state["optimizer"]["param_groups"]
    state["optimizer"]["param_groups"] = [{**policy, "params": policy["params"] + critic["params"]}]  # before 442e724
    torch.save(state, ckpt / "trainer_state.pt")
    trainer = build(tiny_models, tmp_path, max_steps=3, save_steps=1)
    before = params(trainer.model)
    refused = "holds 1 optimizer parameter group.*--model_name_or_path .*checkpoint-1"
    with pytest.raises(SafetyRLHFError, match=refused):
        trainer.train(resume_from_checkpoint="latest")
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_checkpoints_are_atomic_and_limited(tiny_models, tmp_path):
    trainer = build(tiny_models, tmp_path, max_steps=5, save_steps=1, save_total_limit=2)
    stale = tmp_path / "run" / "checkpoint-3.tmp"
    stale.mkdir(parents=True)  # a crash in the middle of an earlier save
    trainer.train()
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-3", "checkpoint-4"]
    for ckpt in ("checkpoint-3", "checkpoint-4"):
        assert (out / ckpt / "trainer_state.pt").is_file() and (out / ckpt / "config.json").is_file()


def test_nonfinite_rewards_skip_updates_then_abort(tiny_models, tmp_path):
    trainer = build(tiny_models, tmp_path, reward=lambda p, c: [float("nan")] * len(c), max_steps=5)
    before = params(trainer.model)
    with pytest.raises(SafetyRLHFError, match="3 consecutive updates had a non-finite"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["nonfinite_update"] for m in lines] == [1, 1]


def test_reward_of_the_wrong_shape_fails_clearly(tiny_models, tmp_path):
    trainer = build(tiny_models, tmp_path, reward=lambda p, c: [0.0] * (len(c) - 1))
    with pytest.raises(SafetyRLHFError, match=r"returned shape \(7,\) for 8 completions"):
        trainer.train()


def test_batch_sizes_are_derived_and_checked(tmp_path):
    args = config(tmp_path, per_device_train_batch_size=8, gradient_accumulation_steps=4, num_mini_batches=2)
    assert (args.batch_size, args.mini_batch_size, args.local_mini_batch_size) == (32, 16, 16)
    assert SafetyPPOConfig(output_dir=str(tmp_path), use_cpu=True).batch_size == 32
    with pytest.raises(SafetyRLHFError, match="gradient_accumulation_steps=3 is not divisible by num_mini_batches=2"):
        config(tmp_path, gradient_accumulation_steps=3, num_mini_batches=2)
    with pytest.raises(SafetyRLHFError, match="kl_estimator='k2'"):
        config(tmp_path, kl_estimator="k2")


def test_logprobs_read_during_generation_equal_a_recomputing_run(tiny_models, tmp_path):
    """Same seed, one update: reading old log-probs while sampling or recomputing them gives the same update."""
    runs = {}
    for from_generation in (True, False):
        trainer = build(
            tiny_models, tmp_path / str(from_generation), max_steps=1, num_ppo_epochs=1,
            logprobs_from_generation=from_generation, stop_token=None, stop_token_id=5,
            learning_rate=1.0, adam_epsilon=1.0,  # Adam with a large eps: the step is ~ the gradient itself
        )  # fmt: skip
        runs[from_generation] = (trainer.train()[0], params(trainer.model))
    (fast, fast_params), (slow, slow_params) = runs[True], runs[False]
    assert fast["val/ratio"] == pytest.approx(1.0, abs=1e-5)  # one epoch, one step: old = new before the step
    for key in ("objective/kl", "objective/entropy", "objective/scores", "loss/policy_avg", "loss/value_avg"):
        assert fast[key] == pytest.approx(slow[key], rel=1e-4, abs=1e-6), key
    for name in fast_params:
        torch.testing.assert_close(fast_params[name], slow_params[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_policy_recomputes_old_logprobs_by_default(tiny_models, tmp_path):
    """In bf16 the KV-cached decode and the full forward differ by rounding: read during sampling, the old log-probs
    give a nonzero KL to a reference the policy still equals (-0.039 while the rollout's log-softmax ran in bf16, 8e-5
    since it runs in fp32); recomputed (the default in bf16), KL 0 and ratio 1."""
    first = {}
    for dtype, choice in (("float32", None), ("bfloat16", True), ("bfloat16", None)):
        margs = model_args(
            tiny_models["policy"], use_peft=True, lora_r=8, lora_alpha=16, lora_target_modules="all-linear"
        )
        margs.dtype = dtype
        tokenizer = load_tokenizer(margs)
        torch.manual_seed(0)
        policy = load_policy(margs, tokenizer)
        value = load_value_model(str(tiny_models["policy"]), margs, tokenizer)
        args = config(tmp_path / f"{dtype}{choice}", max_steps=1, num_ppo_epochs=1, response_length=24,
                      logprobs_from_generation=choice)  # fmt: skip
        trainer = SafetyPPOTrainer(args, tokenizer, policy, value, length_reward, make_dataset(tokenizer))
        first[dtype, choice] = (trainer.args.logprobs_from_generation, trainer.train()[0])
    assert first["float32", None][0] is True and first["bfloat16", None][0] is False
    assert abs(first["float32", None][1]["objective/kl"]) < 1e-5
    assert abs(first["bfloat16", True][1]["objective/kl"]) > 1e-6  # bf16 rounding shows when read during sampling
    recomputed = first["bfloat16", None][1]
    # 1 within 1e-4: the training pass (with grad) and the no-grad pass take different bf16 kernels, ~1e-5 apart
    assert recomputed["objective/kl"] == 0 and recomputed["val/ratio"] == pytest.approx(1.0, abs=1e-4)


def test_sampled_logprobs_match_a_full_forward(tiny_models):
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    policy = load_policy(margs, tokenizer).eval()
    args = config(tiny_models["policy"].parent, response_length=12, temperature=0.7)
    gen_config = rollout.generation_config(args, tokenizer, [tokenizer.eos_token_id, 7])
    batch = tokenizer.pad(
        {"input_ids": [tokenizer(p)["input_ids"] for p in PROMPTS[:5]]}, padding=True, return_tensors="pt"
    )
    torch.manual_seed(0)
    responses, logprobs = rollout.generate(
        policy, batch["input_ids"], batch["attention_mask"], gen_config, tokenizer.pad_token_id, 2, with_logprobs=True
    )
    responses, mask, _, _ = rollout.truncate_at_stop(responses, [tokenizer.eos_token_id, 7], tokenizer.pad_token_id)
    with torch.no_grad():
        logits = rollout.forward_response(policy, batch["input_ids"], responses, batch["attention_mask"], mask)
        expected = rollout.response_logprobs(logits, responses, 0.7)
    assert logprobs.shape == expected.shape == (5, 12)
    torch.testing.assert_close(logprobs[mask], expected[mask], rtol=0, atol=1e-5)


def test_the_inverse_cdf_sampler_draws_softmax_over_temperature_within_top_p():
    """200,000 draws from one row: each token's frequency within 0.005 of softmax(scores / T) (the largest standard
    error is 0.0011), renormalised over the top-p nucleus with top_p; a suppressed token (-inf) is never drawn."""
    torch.manual_seed(0)
    scores = torch.randn(1, 50) * 2
    scores[0, 3] = -math.inf
    rows = scores.expand(200_000, 50)
    out = rollout.InverseCDFSampler(0.7, 1.0)(None, rows)
    assert (torch.isfinite(out).sum(dim=1) == 1).all()  # `generate`, run greedy, picks the drawn token
    frequencies = torch.bincount(out.argmax(dim=1), minlength=50) / rows.shape[0]
    p = torch.softmax(scores[0] / 0.7, dim=-1)
    assert frequencies[3] == 0 and (frequencies - p).abs().max() < 0.005
    p_sorted, order = p.sort(descending=True)
    nucleus = order[: int((p_sorted.cumsum(0) < 0.99).sum()) + 1]  # HF's top-p: the smallest set reaching 0.99
    assert 3 < len(nucleus) < 49
    frequencies = torch.bincount(rollout.InverseCDFSampler(0.7, 0.99)(None, rows).argmax(dim=1), minlength=50)
    frequencies = frequencies / rows.shape[0]
    assert set(frequencies.nonzero().flatten().tolist()) <= set(nucleus.tolist())
    assert (frequencies[nucleus] - p[nucleus] / p[nucleus].sum()).abs().max() < 0.005


@pytest.mark.filterwarnings("error::FutureWarning")  # the cache goes under the name this transformers expects
def test_generation_samples_without_multinomial_and_shares_each_prompts_pass(tiny_models, monkeypatch):
    """4 samples of 3 prompts: the prompt pass shared by each prompt's 4 rows gives the same tokens and log-probs as
    12 separate prompt passes (same seed); `torch.multinomial` (38 ms a step on SmolLM2's vocabulary, 2 CPU cores) is
    never called."""
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    policy = load_policy(margs, tokenizer).eval()

    def refuse(*args, **kwargs):
        raise AssertionError("torch.multinomial called")

    monkeypatch.setattr(torch, "multinomial", refuse)
    ids = [tokenizer(p)["input_ids"] for p in PROMPTS[:3] for _ in range(4)]
    batch = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    calls = []
    policy.register_forward_pre_hook(lambda module, a, k: calls.append(tuple(k["input_ids"].shape)), with_kwargs=True)
    args = config(tiny_models["policy"].parent, response_length=10, temperature=0.7)
    gen_config = rollout.generation_config(args, tokenizer, [tokenizer.eos_token_id])
    out = {}
    for copies in (1, 4):
        calls.clear()
        torch.manual_seed(0)
        out[copies] = rollout.generate(
            policy, batch["input_ids"], batch["attention_mask"], gen_config, tokenizer.pad_token_id, 12,
            with_logprobs=True, copies=copies,
        )  # fmt: skip
        assert calls[0] == (12 if copies == 1 else 3, batch["input_ids"].shape[1] - (copies > 1))  # the prompt pass
    assert torch.equal(out[1][0], out[4][0])
    torch.testing.assert_close(out[1][1], out[4][1], rtol=0, atol=1e-5)
    assert len({tuple(row) for row in out[1][0][::4].tolist()}) == 3  # not one sequence everywhere
    # rows that are not groups of identical prompts (or chunks that split a group) take the plain path
    assert rollout.shared_prompt_cache(policy, batch["input_ids"].flip(0)[:6], batch["attention_mask"][:6], 4) is None


def test_padded_vocabulary_rows_are_never_sampled_and_never_counted(tiny_models, tmp_path):
    """Qwen2.5-7B's LM head has 152,064 rows for 151,665 tokens: the rows past the tokenizer are suppressed while
    sampling (an id past the 0.5B critic's 151,936 embeddings is an out-of-range index), and the PPO log-probs use the
    same softmax over the tokenizer's ids, so the log-probs read while sampling equal the training forward's."""
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    n = len(tokenizer)
    policy = load_policy(margs, tokenizer).eval()
    policy.resize_token_embeddings(n + 64)  # 64 padding rows, initialised at the mean row: as likely as a token
    args = config(tmp_path, response_length=12, temperature=0.7)
    batch = tokenizer.pad({"input_ids": [tokenizer(p)["input_ids"] for p in PROMPTS[:5]]}, return_tensors="pt")
    sampled = {}
    for rows in (None, n + 64):
        torch.manual_seed(0)
        sampled[rows] = rollout.generate(
            policy, batch["input_ids"], batch["attention_mask"], rollout.generation_config(args, tokenizer, [], rows),
            tokenizer.pad_token_id, 5, with_logprobs=True,
        )  # fmt: skip
    assert int(sampled[None][0].max()) >= n  # without the limit the padding rows are sampled: the test can fail
    responses, logprobs = sampled[n + 64]
    assert int(responses.max()) < n
    mask = torch.ones_like(responses, dtype=torch.bool)
    with torch.no_grad():
        logits = rollout.forward_response(policy, batch["input_ids"], responses, batch["attention_mask"], mask)
    torch.testing.assert_close(logprobs, rollout.response_logprobs(logits, responses, 0.7, vocab_size=n), rtol=0,
                               atol=1e-5)  # fmt: skip
    assert (logprobs - rollout.response_logprobs(logits, responses, 0.7)).abs().min() > 1e-3

    # One epoch, one optimizer step: the new log-probs equal the old ones (ratio 1) only if both drop the same rows.
    args = config(tmp_path, response_length=12, temperature=0.7, max_steps=1, num_ppo_epochs=1)
    value = load_value_model(str(tiny_models["policy"]), margs, tokenizer)
    trainer = SafetyPPOTrainer(args, tokenizer, policy, value, length_reward, make_dataset(tokenizer))
    assert trainer.vocab_size == n and trainer.gen_config.suppress_tokens == list(range(n, n + 64))
    assert trainer.train()[0]["val/ratio"] == pytest.approx(1.0, abs=1e-5)


def test_generation_config_overrides_the_models_sampling_defaults(tiny_models):
    """Qwen2.5-Instruct ships repetition_penalty 1.05 and top_k 20: they must not reach PPO's sampling."""
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    policy = load_policy(margs, tokenizer)
    policy.generation_config.repetition_penalty = 1.05
    policy.generation_config.top_k = 20
    policy.generation_config.no_repeat_ngram_size = 3
    gen_config = rollout.generation_config(config(tiny_models["policy"].parent), tokenizer, [tokenizer.eos_token_id])
    merged, _ = policy._prepare_generation_config(gen_config)  # what `generate` will use
    assert (merged.repetition_penalty, merged.top_k, merged.no_repeat_ngram_size) == (1.0, 0, 0)


def test_response_logits_for_kept_positions_and_trimmed_columns(tiny_models):
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    policy = load_policy(margs, tokenizer).eval()
    assert rollout.accepts_logits_to_keep(policy)
    ids = torch.randint(3, 200, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding of row 0
    mask[1, :2] = 0
    mask[2, :3] = 0
    position_ids = rollout.position_ids_from(mask)
    with torch.no_grad():
        kept = rollout.response_logits(policy, ids, mask, position_ids, 4, keep=True)
        full = rollout.response_logits(policy, ids, mask, position_ids, 4, keep=False)
        # Every row pads at least 2 columns: dropping them changes no logit.
        trimmed = rollout.response_logits(policy, ids[:, 2:], mask[:, 2:], position_ids[:, 2:], 4)
    assert kept.shape == (3, 4, policy.config.vocab_size)
    torch.testing.assert_close(kept, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)
    assert rollout.micro_batch_columns(mask[:, :6], torch.tensor([3, 1, 2])) == (2, 3)
    assert rollout.micro_batch_columns(mask[1:2, :6], torch.tensor([4])) == (2, 4)


def test_refusal_reward_adds_the_rule_based_term(tiny_models, tmp_path):
    from reward.refusal import classify_refusal

    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    dataset = make_dataset(tokenizer, n=8).add_column("label", ["harmful", "benign"] * 4)
    args = config(tmp_path, refusal_reward=0.5, sample_completions=8, max_steps=1)
    trainer = SafetyPPOTrainer(
        args, tokenizer, load_policy(margs, tokenizer), load_value_model(str(tiny_models["policy"]), margs, tokenizer),
        lambda prompts, completions: [0.0] * len(prompts), dataset,
    )  # fmt: skip
    batch = trainer.batch(0)
    metrics, samples = trainer.step(batch)
    for label, (_, completion, score) in zip(batch["labels"], samples, strict=True):
        right = (classify_refusal(completion) != "compliance") == (label == "harmful")
        assert score == pytest.approx(0.5 if right else -0.5)
    assert "safety/harmful_refusal_rate" in metrics and "safety/benign_compliance_rate" in metrics


def test_refusal_judge_decides_the_rule_based_term_softly(tiny_models, tmp_path):
    """With a trained judge, the term is r * (2p - 1) on harmful prompts and r * (1 - 2p) on benign ones, p the
    judge's P(refused), whatever the phrase list says; the phrase list still gives the safety/* rates."""
    from reward.refusal import classify_refusal

    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    dataset = make_dataset(tokenizer, n=8).add_column("label", ["harmful", "benign"] * 4)
    args = config(tmp_path, refusal_reward=0.5, sample_completions=8, max_steps=1)
    seen = []

    def judge(prompts, completions):  # P(refused) from the completion's length: unrelated to the phrase list
        seen.append(list(completions))
        return [min(len(c), 40) / 40 for c in completions]

    trainer = SafetyPPOTrainer(
        args, tokenizer, load_policy(margs, tokenizer), load_value_model(str(tiny_models["policy"]), margs, tokenizer),
        lambda prompts, completions: [0.0] * len(prompts), dataset, refusal_judge=judge,
    )  # fmt: skip
    batch = trainer.batch(0)
    metrics, samples = trainer.step(batch)
    assert seen and seen[0] == [completion for _, completion, _ in samples]
    for label, (_, completion, score) in zip(batch["labels"], samples, strict=True):
        p = min(len(completion), 40) / 40
        assert score == pytest.approx(0.5 * ((2 * p - 1) if label == "harmful" else (1 - 2 * p)), abs=1e-6)
    judged = torch.tensor([min(len(c), 40) / 40 > 0.5 for _, c, _ in samples], dtype=torch.float32)
    phrase = torch.tensor([classify_refusal(c) != "compliance" for _, c, _ in samples], dtype=torch.float32)
    assert metrics["safety/judge_refused_rate"] == pytest.approx(judged.mean().item())
    assert metrics["safety/judge_disagreement"] == pytest.approx((judged != phrase).float().mean().item())
    assert "safety/harmful_refusal_rate" in metrics


def test_score_anchor_scores_each_completion_relative_to_a_refusal_of_its_prompt(tiny_models, tmp_path):
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    anchor = "I can't help with that."
    # A reward whose per-prompt offset (the prompt's length) a pairwise model would leave free.
    calls = []

    def reward(prompts, completions):
        calls.append(list(completions))
        return [len(p) + (5.0 if c == anchor else float(len(c) % 7)) for p, c in zip(prompts, completions)]

    args = config(tmp_path, score_anchor=anchor, sample_completions=8, max_steps=1)
    trainer = SafetyPPOTrainer(
        args, tokenizer, load_policy(margs, tokenizer), load_value_model(str(tiny_models["policy"]), margs, tokenizer),
        reward, make_dataset(tokenizer, n=8),
    )  # fmt: skip
    metrics, samples = trainer.step(trainer.batch(0))
    assert calls[1] == [anchor] * 8  # the refusal, scored once per completion's prompt
    for (_, completion, score), raw in zip(samples, calls[0], strict=True):
        assert completion == raw
        assert score == pytest.approx(len(completion) % 7 - 5.0)  # the prompt's offset is gone
    assert metrics["objective/raw_scores"] == pytest.approx(sum(len(c) % 7 - 5.0 for c in calls[0]) / 8, abs=1e-5)


def test_value_learning_rate_is_the_critics_own(tiny_models, tmp_path):
    trainer = build(tiny_models, tmp_path, reward=length_reward, max_steps=1, value_learning_rate=0.0)
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [1e-3, 0.0]
    before = params(trainer.model)
    trainer.train()
    after = params(trainer.model)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    moved = {n.split(".")[0] for n in trainable if not torch.equal(before[n], after[n])}
    assert moved == {"policy"}  # the critic at rate 0 did not move; the policy did
    default = build(tiny_models, tmp_path / "default", max_steps=1)
    assert [group["lr"] for group in default.optimizer.param_groups] == [1e-3, 1e-3]


def ptx_nll(trainer, rows) -> float:
    """The policy's mean negative log-likelihood of every supervised row (one pass over them, no update)."""
    trainer.ptx_dataset = rows
    steps = len(rows) // trainer.args.per_device_train_batch_size
    with torch.no_grad():
        return sum(trainer.ptx_loss(i).item() for i in range(steps)) / steps


@pytest.mark.parametrize(
    ("layout", "margin"),
    [
        (dict(learning_rate=1e-2), 0.5),
        # LoRA on one layer's q/v of a random tiny model moves its logits slowly (seen: 6.23 -> 6.11 in 4 updates).
        (dict(learning_rate=5e-2, peft=True, critic="prefix", trainable_layers=1), 0.08),
    ],
    ids=["full", "top-layer-lora"],
)
def test_ptx_term_teaches_the_supervised_rows_and_ppo_alone_does_not(tiny_models, tmp_path, layout, margin):
    """A zero reward gives PPO no signal about the supervised rows (its updates follow the untrained critic's noise);
    with ptx_coef the rows' negative log-likelihood falls far below both (the whole model, or the top layer's LoRA on
    the cached prefix)."""
    tokenizer = load_tokenizer(model_args(tiny_models["policy"]))
    rows = supervised_rows(tokenizer)
    zero = lambda prompts, completions: [0.0] * len(prompts)  # noqa: E731
    kw = dict(max_steps=4, **layout)
    before = ptx_nll(build(tiny_models, tmp_path / "init", reward=zero, **kw), rows)
    off = build(tiny_models, tmp_path / "off", reward=zero, **kw)
    off.train()
    on = build(
        tiny_models, tmp_path / "on", reward=zero, ptx_coef=1.0, ptx_dataset_name="rows", ptx_dataset=rows, **kw
    )
    history = on.train()
    assert all(m["loss/ptx_avg"] > 0 for m in history)
    assert history[-1]["loss/ptx_avg"] < history[0]["loss/ptx_avg"]
    assert ptx_nll(on, rows) < min(before, ptx_nll(off, rows)) - margin, (
        before,
        ptx_nll(off, rows),
        ptx_nll(on, rows),
    )


def test_ptx_rows_cover_every_row_once_per_pass(tiny_models, tmp_path):
    tokenizer = load_tokenizer(model_args(tiny_models["policy"]))
    rows = supervised_rows(tokenizer, n=12)
    trainer = build(tiny_models, tmp_path, ptx_coef=0.1, ptx_dataset_name="rows", ptx_dataset=rows)
    steps = 12 // trainer.args.per_device_train_batch_size
    for start in (0, steps):  # two passes, each a permutation of all rows, and not the same one
        seen = [i for step in range(start, start + steps) for i in trainer.ptx_rows(step)]
        assert sorted(seen) == list(range(12))
    assert trainer.ptx_rows(0) + trainer.ptx_rows(1) != trainer.ptx_rows(steps) + trainer.ptx_rows(steps + 1)
    assert trainer.ptx_rows(5) == trainer.ptx_rows(5)  # a function of the step: resuming needs no state


def test_ptx_cache_keeps_each_rows_frozen_layers_and_leaves_loss_and_gradients_unchanged(tiny_models, tmp_path):
    """With `trainable_layers`, each ptx row's bottom-layer output is computed once and reused in later micro-batches
    (other rows, other padding): the loss and the LoRA gradients equal the whole model's forward pass; the cache stops
    at its byte limit, and rows past it are computed as before."""
    tokenizer = load_tokenizer(model_args(tiny_models["policy"]))
    rows = supervised_rows(tokenizer, n=12)
    kw = dict(peft=True, critic="prefix", trainable_layers=1, ptx_dataset_name="rows", ptx_dataset=rows)
    trainer = build(tiny_models, tmp_path, ptx_coef=1.0, **kw)
    lora = [p for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" in n]
    torch.nn.init.normal_(lora[1], std=0.1)  # LoRA B starts at 0: give the adapter an output, so the gradients differ

    def loss_and_grads(step):
        trainer.model.zero_grad()
        loss = trainer.ptx_loss(step)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in lora]

    steps = len(rows) // trainer.args.per_device_train_batch_size
    for step in range(2 * steps):  # the second pass meets every row again, in another micro-batch
        cached, cached_grads = loss_and_grads(step)
        split, trainer.model.split = trainer.model.split, None  # the whole model's forward pass, no cache
        fresh, fresh_grads = loss_and_grads(step)
        trainer.model.split = split
        assert torch.allclose(cached, fresh, rtol=1e-5, atol=1e-6), (step, cached, fresh)
        for a, b in zip(cached_grads, fresh_grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), step
    hidden = trainer.model.policy.config.hidden_size
    lengths = {len(ids) for ids in rows["input_ids"]}
    assert sorted(trainer.ptx_cache) == list(range(12)) and len(lengths) > 1  # rows of several lengths
    assert all(state.shape == (len(rows["input_ids"][i]), hidden) for i, state in trainer.ptx_cache.items())
    assert trainer.ptx_cache_bytes == sum(state.nbytes for state in trainer.ptx_cache.values())

    capped = build(tiny_models, tmp_path / "capped", ptx_coef=1.0, **kw)
    capped.ptx_cache_limit = 3 * trainer.ptx_cache_bytes // 12
    for step in range(2 * steps):
        capped.ptx_loss(step)
    assert 0 < len(capped.ptx_cache) < 12 and capped.ptx_cache_bytes <= capped.ptx_cache_limit
    assert build(tiny_models, tmp_path / "off", ptx_coef=1.0, ptx_cache_mb=0, **kw).ptx_cache_limit == 0


def test_ptx_term_runs_under_the_mixed_precision_of_the_ppo_loss(tiny_models, tmp_path):
    """On one process the ptx term runs the policy without the critic, through the prepared model whose forward
    Accelerate runs under autocast (bf16 logits under `bf16`, fp32 without)."""
    rows = supervised_rows(load_tokenizer(model_args(tiny_models["policy"])))
    for bf16, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        trainer = build(tiny_models, tmp_path / str(bf16), bf16=bf16, ptx_coef=1.0, ptx_dataset_name="rows",
                        ptx_dataset=rows)  # fmt: skip
        seen, critic = [], []
        hook = trainer.model.policy.lm_head.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.dtype))
        critic_hook = trainer.model.value.register_forward_hook(lambda m, i, o, critic=critic: critic.append(1))
        assert torch.isfinite(trainer.ptx_loss(0))
        hook.remove(), critic_hook.remove()
        assert seen == [dtype] and critic == []


def test_ptx_coef_without_rows_fails_clearly(tiny_models, tmp_path):
    with pytest.raises(SafetyRLHFError, match="ptx_coef=0.1 needs supervised rows with columns input_ids and labels"):
        build(tiny_models, tmp_path, ptx_coef=0.1, ptx_dataset_name="rows")


def test_samples_per_prompt_groups_each_prompt_and_the_prompt_baseline_reads_the_groups(tiny_models, tmp_path):
    margs = model_args(tiny_models["policy"])
    tokenizer = load_tokenizer(margs)
    dataset = make_dataset(tokenizer, n=16).add_column("label", ["harmful", "benign"] * 8)
    args = config(tmp_path, samples_per_prompt=4, prompt_baseline=True, refusal_reward=0.5, sample_completions=8)
    seen = []

    def reward(prompts, completions):
        seen.append(list(zip(prompts, completions)))
        return [len(c) / 10 for c in completions]

    trainer = SafetyPPOTrainer(
        args, tokenizer, load_policy(margs, tokenizer), load_value_model(str(tiny_models["policy"]), margs, tokenizer),
        reward, dataset,
    )  # fmt: skip
    assert trainer.batches_per_epoch == 16 // 2  # 8 responses per update: 2 prompts, 4 samples each
    batch = trainer.batch(0)
    assert batch["prompts"][:4] == [batch["prompts"][0]] * 4 and batch["prompts"][4:] == [batch["prompts"][4]] * 4
    assert batch["prompts"][0] != batch["prompts"][4]
    assert {p for u in range(8) for p in trainer.batch(u)["prompts"]} == set(dataset["prompt"])  # one epoch
    metrics, samples = trainer.step(batch)
    assert len({c for _, c in seen[0][:4]}) > 1  # the same prompt, sampled four times
    assert 0.0 <= metrics["safety/prompts_without_contrast"] <= 1.0
    assert len(samples) == 8 and [p for p, _, _ in samples] == batch["prompts"]
