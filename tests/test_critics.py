"""The three critics (`critic: separate | shared | prefix`): each trains end to end and resumes exactly, the shared head
leaves the policy's logits alone, and the prefix critic on the cached state equals an independent full computation."""

import copy
import math

import pytest
import torch
from helpers import (
    LAYERS,
    RESPONSE,
    TOP,
    CrashAfter,
    batch,
    build,
    config,
    length_reward,
    params,
    tiny_lm,
    with_lora,
)
from transformers import AutoModelForCausalLM

from safety_rlhf import SafetyRLHFError, rollout
from safety_rlhf.critics import PrefixCritic, SharedValueHead
from safety_rlhf.prefix_cache import DecoderSplit, causal_lm_of
from safety_rlhf.trainer import PolicyAndValue, sorted_checkpoints

TOL = 1e-5
# The session's tiny policy has 2 layers: LoRA and the prefix critic on the top one.
SETTINGS = {"separate": {}, "shared": {}, "prefix": {"trainable_layers": 1}}


def rollout_values(trainer):
    """Values of the first batch's prompts followed by their own tokens as a response, under the trainer's critic."""
    b, model = trainer.batch(0), trainer.model
    responses = b["queries"][:, -4:]
    mask = torch.ones_like(responses, dtype=torch.bool)
    return rollout.logprobs_and_values(
        model.policy, trainer.ref_model, model.value, model.split, b["queries"], responses, b["query_mask"], mask, 1.0
    )[2]


@pytest.mark.parametrize("critic", list(SETTINGS))
def test_each_critic_trains_end_to_end(tiny_models, tmp_path, critic):
    trainer = build(tiny_models, tmp_path, reward=length_reward, peft=True, critic=critic, max_steps=3,
                    **SETTINGS[critic])  # fmt: skip
    before, values_before = params(trainer.model), rollout_values(trainer)
    history = trainer.train()
    after = params(trainer.model)
    assert all(math.isfinite(m["val/explained_variance"]) for m in history)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    critic_params = {n for n in trainable if n.startswith("value.")}
    assert critic_params and {n for n in trainable if n.startswith("policy.")}
    assert [n for n in trainable if torch.equal(before[n], after[n])] == []  # every trainable parameter moved
    assert not torch.allclose(rollout_values(trainer), values_before)
    groups = [{id(p) for p in g["params"]} for g in trainer.optimizer.param_groups]
    assert groups[1] == {id(p) for n, p in trainer.model.named_parameters() if n in critic_params}
    if critic == "shared":
        assert critic_params == {"value.head.weight", "value.head.bias"}  # the trunk's LoRA is in the policy group
    trainer.save_model(tmp_path / "final")
    from peft import AutoPeftModelForCausalLM

    AutoPeftModelForCausalLM.from_pretrained(tmp_path / "final")  # the policy folder loads alone
    expected = {"separate": "value_head.safetensors", "shared": "value_head.safetensors",
                "prefix": "prefix_critic.safetensors"}  # fmt: skip
    assert (tmp_path / "final" / "value" / expected[critic]).is_file()


@pytest.mark.parametrize("cached", [False, True])
def test_shared_head_leaves_the_policys_logits_and_reads_its_final_hidden_state(cached):
    policy = with_lora(tiny_lm("qwen2-sliding"))
    head = SharedValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(head.head.weight)
    split = DecoderSplit(policy, TOP) if cached else None
    model = PolicyAndValue(policy, head, split)
    ids, attention_mask, position_ids, _ = batch()
    with torch.no_grad():
        hidden = split.bottom(ids, attention_mask, position_ids) if cached else None
        logits, values = model(ids, attention_mask, position_ids, RESPONSE, hidden)
        expected_logits = rollout.response_logits(policy, ids, attention_mask, position_ids, RESPONSE)
        final = causal_lm_of(policy).model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids)
        expected_values = head.head(final.last_hidden_state[:, -RESPONSE - 1 : -1]).squeeze(-1)
    torch.testing.assert_close(logits, expected_logits, atol=TOL, rtol=0)
    torch.testing.assert_close(values, expected_values, atol=TOL, rtol=0)
    assert values.abs().max() > 1e-3


@pytest.mark.parametrize("critic_layers", [TOP, 1])
@pytest.mark.parametrize("name", ["qwen2-sliding", "llama"])
def test_prefix_critic_on_the_cached_state_equals_a_full_computation(name, critic_layers):
    """The critic's layers + head on the cached prefix equal an independent decoder (transformers' own forward, masks
    and rotary embeddings) made of the copied layers and run on `output_hidden_states[L-K]`, with left padding."""
    policy = with_lora(tiny_lm(name))
    critic = PrefixCritic(policy, trainable_layers=TOP, critic_layers=critic_layers)
    torch.nn.init.normal_(critic.head.weight)
    ids, attention_mask, position_ids, _ = batch()
    with torch.no_grad():
        hidden = critic.split.bottom(ids, attention_mask, position_ids)
        values = critic(ids, attention_mask, position_ids, RESPONSE, hidden=hidden)

        state = policy(
            input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, output_hidden_states=True
        ).hidden_states[LAYERS - TOP]
        config = copy.deepcopy(policy.config)
        config.num_hidden_layers = critic_layers
        if name.startswith("qwen2"):  # each copied layer keeps its attention kind (the top ones slide)
            config.layer_types = config.layer_types[LAYERS - critic_layers :]
        reference = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        for mine, theirs in zip(critic.layers, reference.model.layers, strict=True):
            theirs.load_state_dict(mine.state_dict())
        reference.model.norm.load_state_dict(critic.norm.state_dict())
        out = reference.model(inputs_embeds=state, attention_mask=attention_mask, position_ids=position_ids)
        expected = critic.head(out.last_hidden_state[:, -RESPONSE - 1 : -1]).squeeze(-1)
    torch.testing.assert_close(values, expected, atol=TOL, rtol=0)
    assert values.abs().max() > 1e-3
    # The copies are the policy's base weights (LoRA dropped), trainable, and not the policy's own tensors.
    top = causal_lm_of(policy).model.layers[LAYERS - 1].self_attn.q_proj
    copied = critic.layers[-1].self_attn.q_proj
    assert type(copied) is torch.nn.Linear and torch.equal(copied.weight, top.base_layer.weight)
    assert copied.weight.data_ptr() != top.base_layer.weight.data_ptr()
    assert all(p.requires_grad for p in critic.parameters())


def test_prefix_critic_dequantizes_a_4bit_policy(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    tiny_lm("llama", hidden_size=64, intermediate_size=128).save_pretrained(tmp_path)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=quantization, device_map={"": "cpu"})
    critic = PrefixCritic(with_lora(model), trainable_layers=TOP)
    assert {type(m).__name__ for m in critic.modules()} & {"Linear4bit", "Linear"} == {"Linear"}
    ids, attention_mask, position_ids, _ = batch()
    values = critic(ids, attention_mask, position_ids, RESPONSE)
    values.sum().backward()
    assert all(p.grad is not None for p in critic.parameters())


@pytest.mark.parametrize("critic", ["shared", "prefix"])
def test_resume_reproduces_an_uninterrupted_run(tiny_models, tmp_path, critic):
    kw = dict(peft=True, critic=critic, max_steps=4, save_steps=2, **SETTINGS[critic])
    full = build(tiny_models, tmp_path / "full", **kw).train()
    crashing = build(tiny_models, tmp_path / "crash", **kw)
    crashing.reward_fn = CrashAfter(crashing.reward_fn, calls=3)  # dies during update 4, after checkpoint-2
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    assert [p.name for p in sorted_checkpoints(tmp_path / "crash" / "run")] == ["checkpoint-2"]
    resumed = build(tiny_models, tmp_path / "crash", **kw)
    history = resumed.train(resume_from_checkpoint="latest")
    assert [m["step"] for m in history] == [3, 4]
    for got, want in zip(history, full[2:], strict=True):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "val/explained_variance"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(critic="value-head"), "critic='value-head' is not supported; use one of: separate, shared, prefix"),
        (dict(critic="prefix"), "critic='prefix' reads the cached prefix state of trainable_layers, which is unset"),
        (
            dict(critic="prefix", trainable_layers=2, critic_layers=3),
            "critic_layers=3 is outside 1..trainable_layers=2",
        ),
        (
            dict(critic="prefix", trainable_layers=2, critic_layers=0),
            "critic_layers=0 is outside 1..trainable_layers=2",
        ),
        (dict(critic="shared", critic_layers=1), "critic_layers=1 is read only by critic='prefix'"),
    ],
)
def test_bad_critic_settings_fail_in_one_line(tmp_path, kw, message):
    with pytest.raises(SafetyRLHFError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        config(tmp_path, **kw)
    assert "\n" not in str(err.value)
