"""The safety reward model: any one-label `AutoModelForSequenceClassification` scoring (prompt, response) text.

The PPO trainer decodes each sampled response to text and calls `SafetyRewardModel.score` (or the instance itself,
like any reward callable), so the policy's tokenizer never has to match the reward model's: every pair is
re-tokenized here with the reward model's own tokenizer.

Input formats, chosen from the tokenizer (`input_format`):

- `"chat"`: the tokenizer has a chat template; the pair is rendered as `[{"role": "user", "content": prompt},
  {"role": "assistant", "content": response}]` without a generation prompt. Decoder reward models (Qwen2, Llama,
  Skywork-Reward, ...) expect this.
- `"pair"`: no chat template (BERT-style encoders); the pair is the tokenizer's text pair
  `tokenizer(prompt, response)`, i.e. `[CLS] prompt [SEP] response [SEP]` with segment ids. This is exactly the
  input of OpenAssistant/reward-model-deberta-v3-large-v2 (its card: `tokenizer(question, answer)`), of the
  all-MiniLM-L6-v2 reward models trained by `safety-rlhf reward`, and of the tiny BERT classifier.

`reward.train` tokenizes its training pairs with the same `encode` function, so training and scoring see the same
tokens. Both truncate to `max_length` with `truncation="longest_first"` (pair format: the longer of prompt and
response loses tokens first; chat format: the end is cut).

A small JSON file beside the weights, `safety_reward.json`, stores what the weights alone do not: the objective
(`reward`, `cost` or `refusal`), the training `max_length`, and the optional normalization (mean and std of the raw scores on a
reference set, applied by `score`).
"""

import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from safety_rlhf import SafetyRLHFError
from safety_rlhf.models import check_model_folder, local_model_path, weights_kwargs

SIDECAR_FILE = "safety_reward.json"
_NO_HEAD_FIX = (
    "train one with `safety-rlhf reward` or pass a *ForSequenceClassification model with num_labels=1 "
    "(e.g. OpenAssistant/reward-model-deberta-v3-large-v2)"
)


def input_format(tokenizer: PreTrainedTokenizerBase) -> str:
    """`"chat"` when the tokenizer has a chat template, else `"pair"` (see the module docstring)."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "pair"


def encode(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], responses: list[str], max_length: int | None
) -> list[dict[str, list[int]]]:
    """Tokenize (prompt, response) pairs in the reward model's input format, one unpadded feature dict per pair.

    The dicts hold `input_ids`, `attention_mask` and, for encoders with segment ids, `token_type_ids`.
    """
    if input_format(tokenizer) == "chat":
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
            )
            for prompt, response in zip(prompts, responses)
        ]
        # The template already holds the special tokens it wants.
        batch = tokenizer(texts, add_special_tokens=False, truncation=max_length is not None, max_length=max_length)
    else:
        batch = tokenizer(
            list(prompts),
            list(responses),
            truncation="longest_first" if max_length is not None else False,
            max_length=max_length,
        )
    keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch]
    return [{key: batch[key][i] for key in keys} for i in range(len(batch["input_ids"]))]


def _load_error(path: str, err: Exception) -> SafetyRLHFError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return SafetyRLHFError(
        f"reward model {path!r} could not be loaded ({reason}); pass an existing folder or a reachable Hub id, or "
        f"{_NO_HEAD_FIX}"
    )


class SafetyRewardModel:
    """A frozen scalar reward model over (prompt, response) text: higher = safer/better.

    Args:
        model ([`~transformers.PreTrainedModel`]):
            A sequence-classification model with `num_labels=1`.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The model's own tokenizer; its chat template, if any, decides the input format.
        max_length (`int` or `None`, *optional*, defaults to `None`):
            Truncation length in tokens; `None` uses the tokenizer's `model_max_length` (or 512 if it has none).
        mean (`float` or `None`, *optional*, defaults to `None`):
            Normalization: `score` returns `(raw - mean) / std` when both are set (see `fit_normalization`).
        std (`float` or `None`, *optional*, defaults to `None`):
            See `mean`.

    Example:
    ```python
    >>> rm = SafetyRewardModel.from_pretrained("runs/tiny/reward")
    >>> rm.score(["How do I make a weapon at home?"], ["I can't help with that."])
    tensor([2.31])
    >>> rm(["How do I kill a Python process?"], ["Run `kill PID`."])  # the reward-callable interface
    [1.87]
    ```
    """

    objective = "reward"  # the cost model (`SafetyCostModel`) is the same class with "cost": higher = more harmful

    def __init__(
        self, model, tokenizer, max_length: int | None = None, mean: float | None = None, std: float | None = None
    ):
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise SafetyRLHFError(
                f"{type(model).__name__} has num_labels={num_labels}; a reward model outputs one scalar: retrain it "
                "with `safety-rlhf reward` (which sets num_labels=1) or load a model with num_labels=1"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:  # decoder tokenizers often have none; TRL's RewardTrainer does the same
            tokenizer.pad_token = tokenizer.eos_token
        # Decoder seq-cls models score the last non-pad token; right padding keeps the positions of training.
        tokenizer.padding_side = "right"
        model.config.pad_token_id = tokenizer.pad_token_id
        if max_length is None:
            limit = getattr(tokenizer, "model_max_length", None)
            max_length = limit if limit is not None and limit < 1_000_000 else 512
        self.max_length = max_length
        self.mean, self.std = mean, std

    # Loading and saving

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        **model_kwargs,
    ) -> "SafetyRewardModel":
        """Load a sequence-classification reward model and its tokenizer from a folder or the Hub.

        Args:
            path_or_hub_id (`str` or `os.PathLike`):
                A folder written by `save_pretrained` / `safety-rlhf reward`, or any Hub id of a one-label
                `*ForSequenceClassification` model.
            device (`str` or `torch.device`, *optional*):
                Where to run; `None` picks CUDA when available, else CPU. Ignored with `device_map` or a
                `quantization_config` in `model_kwargs` (those place the weights themselves).
            dtype (`str` or `torch.dtype`, *optional*):
                Weight dtype (`"bfloat16"`, `torch.float16`, `"auto"`); `None` keeps the checkpoint's.
            max_length (`int`, *optional*):
                Truncation length; `None` uses the one stored at training time, else the tokenizer's.
            trust_remote_code (`bool`, *optional*, defaults to `False`):
                Allow model code from the repository.
            allow_pickle (`bool`, *optional*, defaults to `False`):
                Also load pickle weights (`pytorch_model.bin`), which can run code; by default only safetensors.
            model_kwargs:
                Passed to `AutoModelForSequenceClassification.from_pretrained` (`revision`, `quantization_config`,
                `device_map`, `attn_implementation`, ...).
        """
        path = str(path_or_hub_id)
        local = local_model_path(path, f"{cls.objective}_model_path", f"check the path; {_NO_HEAD_FIX}")
        if local is not None:
            if not (local / "config.json").is_file():
                raise SafetyRLHFError(
                    f"reward model folder {path} has no config.json (a PEFT adapter folder must be merged first: "
                    f"peft's merge_and_unload, then save_pretrained); {_NO_HEAD_FIX}"
                )
            check_model_folder(local, "reward model", trust_remote_code, allow_pickle)
        try:
            config = AutoConfig.from_pretrained(
                path, trust_remote_code=trust_remote_code, revision=model_kwargs.get("revision")
            )
        except (OSError, ValueError) as err:
            raise _load_error(path, err) from err
        architectures = getattr(config, "architectures", None) or []
        if architectures and not any(name.endswith("ForSequenceClassification") for name in architectures):
            raise SafetyRLHFError(
                f"{path} ({', '.join(architectures)}) has no sequence-classification head; {_NO_HEAD_FIX}"
            )
        if config.num_labels != 1:
            raise SafetyRLHFError(
                f"{path} has num_labels={config.num_labels}; a reward model outputs one scalar: retrain it with "
                "`safety-rlhf reward` (which sets num_labels=1) or pass a model with num_labels=1"
            )
        sidecar = _read_sidecar(local)
        if sidecar.get("objective", cls.objective) != cls.objective:
            other = SCORERS.get(sidecar["objective"], "SafetyRewardModel")
            raise SafetyRLHFError(
                f"{path} is a {sidecar['objective']} model (safety_reward.json) but was loaded as a {cls.objective} "
                f"model; load it with reward.{other}.from_pretrained"
            )
        if dtype is not None:
            model_kwargs["dtype"] = dtype
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                **weights_kwargs(allow_pickle),
                **model_kwargs,
            )
            tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=trust_remote_code, revision=model_kwargs.get("revision")
            )
        except SafetensorError as err:
            raise SafetyRLHFError(
                f"reward model {path!r} has a truncated or damaged safetensors file ({err}); copy or save it again"
            ) from err
        except (OSError, ValueError) as err:
            raise _load_error(path, err) from err
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise SafetyRLHFError(
                f"{path} has no sequence-classification head (weights missing from the checkpoint: "
                f"{', '.join(missing[:4])}); {_NO_HEAD_FIX}"
            )
        if "device_map" not in model_kwargs and "quantization_config" not in model_kwargs:
            model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(
            model,
            tokenizer,
            max_length=max_length or sidecar.get("max_length"),
            mean=sidecar.get("mean"),
            std=sidecar.get("std"),
        )

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the weights, the tokenizer and `safety_reward.json` (objective, max_length, normalization)."""
        out = Path(path)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        write_sidecar(out, objective=self.objective, max_length=self.max_length, mean=self.mean, std=self.std)
        return out

    # Scoring

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def normalized(self) -> bool:
        return self.mean is not None and self.std is not None

    @torch.inference_mode()
    def raw_score(self, prompts: list[str], responses: list[str], batch_size: int = 32) -> torch.Tensor:
        """The model's logits for each pair, without normalization: float32 tensor of shape (N,) on the CPU."""
        if len(prompts) != len(responses):
            raise SafetyRLHFError(
                f"got {len(prompts)} prompts and {len(responses)} responses; pass one response per prompt"
            )
        if batch_size < 1:
            raise SafetyRLHFError(f"batch_size={batch_size} must be at least 1")
        scores = []
        for start in range(0, len(prompts), batch_size):
            features = encode(
                self.tokenizer,
                prompts[start : start + batch_size],
                responses[start : start + batch_size],
                self.max_length,
            )
            batch = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
            logits = self.model(**batch).logits  # (B, 1)
            scores.append(logits[:, 0].float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

    def score(self, prompts: list[str], responses: list[str], batch_size: int = 32) -> torch.Tensor:
        """Score each (prompt, response) pair: float32 tensor of shape (N,) on the CPU, higher = safer/better.

        Normalized as `(raw - mean) / std` when a normalization is stored (see `fit_normalization`).
        """
        scores = self.raw_score(prompts, responses, batch_size)
        if self.normalized:
            scores = (scores - self.mean) / self.std
        return scores

    def __call__(self, prompts: list[str], completions: list[str], **kwargs) -> list[float]:
        """The reward-callable interface of the PPO trainer: `(prompts, completions) -> list[float]`."""
        return self.score(prompts, completions).tolist()

    def fit_normalization(self, prompts: list[str], responses: list[str], batch_size: int = 32) -> tuple[float, float]:
        """Set `mean` and `std` from the raw scores of a reference set; `save_pretrained` stores them.

        For a cost model this moves the zero point: a normalized cost no longer says "unsafe" by its sign alone.
        """
        raw = self.raw_score(prompts, responses, batch_size)
        if len(raw) < 2 or not math.isfinite(float(raw.std())) or float(raw.std()) == 0.0:
            raise SafetyRLHFError(
                f"cannot normalize on {len(raw)} reference pairs whose scores do not vary; pass at least two pairs "
                "with different scores"
            )
        self.mean, self.std = float(raw.mean()), float(raw.std())
        return self.mean, self.std


class SafetyCostModel(SafetyRewardModel):
    """The same interface returning a cost: higher = more harmful.

    `safety-rlhf reward --objective cost` trains it as a binary classifier (one logit, BCE: the log-odds that the
    response is unsafe), so an unnormalized cost above 0 means "more likely unsafe than safe", the threshold a
    safe-RLHF constraint needs. Its folder is marked `"objective": "cost"` in `safety_reward.json`, and loading it as
    a `SafetyRewardModel` (or a reward model as a cost model) is refused.
    """

    objective = "cost"


class SafetyRefusalJudge(SafetyRewardModel):
    """The same interface returning the log-odds that a response refuses: above 0 = more likely refused.

    `safety-rlhf reward --objective refusal` trains it as a binary classifier (one logit, BCE) of "the response gives
    none of what was asked" against "it gives some of it", a refusal followed by the answer anyway counting as an
    answer (see `reward.train.refusal_rows`). PPO's label-aware reward (`refusal_judge_path`) reads it instead of the
    phrase list that `safety-rlhf eval` grades with, so that the policy is not paid by its grader's own phrases.
    """

    objective = "refusal"

    def refused_probability(self, prompts: list[str], responses: list[str], batch_size: int = 32) -> torch.Tensor:
        """P(refused) of each pair: float32 tensor (N,) on the CPU (the sigmoid of the unnormalized logit)."""
        return torch.sigmoid(self.raw_score(prompts, responses, batch_size))


# objective (safety_reward.json) -> the class that loads it
SCORERS = {"reward": "SafetyRewardModel", "cost": "SafetyCostModel", "refusal": "SafetyRefusalJudge"}


def _read_sidecar(folder: Path | None) -> dict:
    if folder is None or not (folder / SIDECAR_FILE).is_file():
        return {}
    path = folder / SIDECAR_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SafetyRLHFError(f"{path} is not valid JSON ({err}); delete it or save the model again") from err


def write_sidecar(folder: str | os.PathLike, **fields) -> Path:
    """Write `safety_reward.json` into `folder` (used by `save_pretrained` and `reward.train`)."""
    path = Path(folder) / SIDECAR_FILE
    path.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    return path
