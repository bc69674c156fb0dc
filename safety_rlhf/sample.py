"""`safety-rlhf sample`: a policy's own responses to the bundled prompts, the text PPO's reward model really ranks.

    safety-rlhf sample --model_name_or_path models/smollm2-135m-instruct --output runs/smollm2_responses.jsonl

Two uses: `safety-rlhf reward --real_responses FILE` turns the `train` rows into preference pairs (and scores the
reward model on the `eval` / `heldout` rows), and `safety-rlhf sft --own_answers FILE` adds the model's own answers
to benign train prompts to the warm start, so it keeps answering them in its own words. `safety-rlhf demo --model
smollm2` runs this verb on the train prompts (greedy) before both.

Every prompt of `prompts.jsonl` (splits `train` and `eval`) and every distinct held-out prompt of
`pairs_heldout.jsonl` (split `heldout` here; prompts and categories written apart, never trained on) is answered
twice, through the generation path of `safety-rlhf eval` (`evaluate._generate`: one user turn in the
model's chat template, left-padded batches, explicit decoding knobs from `rollout.generation_config`):

- `greedy`: temperature 0;
- `sampled`: temperature 0.7, top_p 1, seeded (`--seed`, set before each split's generation).

`max_new_tokens` is 48 by default, the length `safety-rlhf eval` and the demo judge responses at (the SmolLM2 PPO
recipe samples 32). Each output row is `{prompt, label, category, split, decoding, response, stopped, refusal}`:
`stopped` says the model ended with EOS (else it ran out of tokens), `refusal` is the class
`reward.refusal.classify_refusal` gives (`compliance`, `full_refusal`, `partial_refusal`).

Keep such a file local: on harmful prompts it holds a real model's unedited compliance, which our bundled data never
does (its compliances are content-free placeholders). Measurements made with it: docs/EXPERIMENTS.md.
"""

import json
import time
from dataclasses import dataclass, field

import torch

from reward.refusal import classify_refusal

from . import SafetyRLHFError, data
from .config import check_writable
from .evaluate import EvalArguments, _generate  # the eval verb's generation, with the stop flags
from .models import check_fits, load_model
from .precision import NATIVE, native_dtype

SPLITS = ("train", "eval", "heldout")
DECODINGS = ("greedy", "sampled")


@dataclass
class SampleArguments:
    """Arguments of `safety-rlhf sample`.

    Parameters:
        model_name_or_path (`str`):
            The policy: a folder (full model or PEFT adapter) or a Hub id.
        output (`str`, *optional*, defaults to `"responses.jsonl"`):
            The JSONL file to write (rewritten after each split and decoding, so a stopped run keeps what it did).
        splits (`str`, *optional*, defaults to `"train,eval,heldout"`):
            Comma-separated prompt splits; `heldout` is the distinct prompts of `pairs_heldout.jsonl`.
        decodings (`str`, *optional*, defaults to `"greedy,sampled"`):
            Comma-separated: `greedy` (temperature 0) and/or `sampled` (`temperature`, seeded).
        max_new_tokens (`int`, *optional*, defaults to `48`):
            Maximum tokens per response (the evaluation's length).
        temperature (`float`, *optional*, defaults to `0.7`):
            Temperature of the `sampled` decoding.
        seed (`int`, *optional*, defaults to `0`):
            Seed set before each sampled generation.
        batch_size (`int`, *optional*, defaults to `32`):
            Prompts per `generate` call.
        max_prompts (`int` or `None`, *optional*, defaults to `None`):
            Keep only the first prompts of each split (quick checks).
        dtype (`str`, *optional*, defaults to `"float32"`):
            Weight dtype; `native`: bf16 where the device computes it natively, else fp32.
    """

    model_name_or_path: str = field(metadata={"help": "Policy folder or Hub id."})
    output: str = field(default="responses.jsonl", metadata={"help": "JSONL file to write."})
    splits: str = field(default=",".join(SPLITS), metadata={"help": "Comma-separated: train, eval, heldout."})
    decodings: str = field(default=",".join(DECODINGS), metadata={"help": "Comma-separated: greedy, sampled."})
    max_new_tokens: int = field(
        default=48, metadata={"help": "Maximum tokens per response (the evaluation's length)."}
    )
    temperature: float = field(default=0.7, metadata={"help": "Temperature of the sampled decoding."})
    seed: int = field(default=0, metadata={"help": "Seed set before each sampled generation."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per generate call."})
    max_prompts: int | None = field(default=None, metadata={"help": "Keep only the first prompts of each split."})
    dtype: str = field(
        default="float32", metadata={"help": "float32, bfloat16, float16, auto or native (bf16 where native)."}
    )

    def __post_init__(self):
        for name, value, known in (("splits", self.splits, SPLITS), ("decodings", self.decodings, DECODINGS)):
            unknown = [v for v in value.split(",") if v not in known]
            if unknown or not value:
                raise SafetyRLHFError(f"{name}={value!r}: {unknown or 'nothing'} is not one of {', '.join(known)}")
        if self.temperature <= 0:
            raise SafetyRLHFError(f"temperature={self.temperature} must be positive (the greedy decoding is separate)")
        if self.dtype == NATIVE:
            self.dtype = native_dtype(cpu=not torch.cuda.is_available(), what="sample")


def load_split_prompts(split: str, max_prompts: int | None = None) -> list[dict]:
    """The bundled prompts of `split` as `{prompt, label, category, split}` rows, in file order."""
    if split == "heldout":
        rows = data.load_prompts("bundled_heldout", max_samples=max_prompts)  # one row per distinct prompt
    else:
        rows = data.load_prompts("bundled", split, max_samples=max_prompts)
    return [{"prompt": r["prompt"], "label": r["label"], "category": r["category"], "split": split} for r in rows]


def main(args: SampleArguments) -> list[dict]:
    """Generate, classify and write every row; returns the rows."""
    output = check_writable(args.output, "output", folder=False)
    check_fits(args.model_name_or_path, "max_new_tokens", args.max_new_tokens)
    model, tokenizer = load_model(args.model_name_or_path, args.dtype)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in args.splits.split(","):
        prompts = load_split_prompts(split, args.max_prompts)
        for decoding in args.decodings.split(","):
            settings = EvalArguments(
                max_new_tokens=args.max_new_tokens,
                temperature=0.0 if decoding == "greedy" else args.temperature,
                top_p=1.0,
                batch_size=args.batch_size,
                seed=args.seed,
                dtype=args.dtype,
            )
            start = time.perf_counter()
            responses, _, stopped = _generate(model, tokenizer, [p["prompt"] for p in prompts], settings)[:3]
            for prompt, response, stop in zip(prompts, responses, stopped):
                rows.append(
                    {**prompt, "decoding": decoding, "response": response, "stopped": stop}
                    | {"refusal": classify_refusal(response)}
                )
            with open(output, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps({key: row[key] for key in data.RESPONSE_COLUMNS}, ensure_ascii=False) + "\n")
            print(f"{split}/{decoding}: {len(prompts)} prompts in {time.perf_counter() - start:.0f} s -> {output}")
    return rows
