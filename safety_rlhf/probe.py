"""`safety-rlhf probe`: how well a policy's own hidden states tell harmful prompts from benign ones.

    safety-rlhf probe --model_name_or_path runs/demo/ppo --output_dir runs/demo/probe

A linear read-out (scikit-learn's `LogisticRegression` on standardised features, classes balanced) is fit on the
hidden state of the last prompt token (one user turn in the chat template, generation prompt included: the state
the first response token is generated from) of the train prompts, at several layers, and scored on the eval
prompts. Per layer it gives the share of harmful eval prompts classified harmful and of benign ones classified
benign: the same two rates as `safety-rlhf eval`'s harmful refusal and benign compliance. The best layer is a
ceiling of sorts for behaviour: what the model can already tell apart with a linear read-out learned from the train
prompts. A policy whose behaviour sits far below it lacks a training signal, not capacity.

Layers: `hidden_states[0]` is the embeddings, `hidden_states[L]` the output of block L (the last one with the final
norm, as transformers returns it). By default every `ceil(num_layers / 6)`-th block and the last are read.

Output: `output_dir/probe.json`: `{"model", "train": {...}, "eval": {...}, "layers": [{"layer", "harmful",
"benign"}, ...], "best": {...}}`, `best` the layer with the highest mean of the two rates (the first on ties).
"""

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import SafetyRLHFError, data
from .config import check_output_dir
from .evaluate import _render
from .models import DTYPES, load_model
from .precision import NATIVE, native_dtype

PROBE_FILE = "probe.json"
LABELS = ("harmful", "benign")


@dataclass
class ProbeArguments:
    """Arguments of `safety-rlhf probe`.

    Parameters:
        model_name_or_path (`str`):
            The policy: a folder (full model or PEFT adapter) or a Hub id.
        output_dir (`str`):
            Where `probe.json` goes.
        dataset_name (`str`, *optional*, defaults to `"bundled"`):
            Labelled prompts (`data.load_prompts`): `bundled`, a local file with a `split` column, or a Hub id.
        train_split (`str`, *optional*, defaults to `"train"`):
            Split the probe is fit on.
        eval_split (`str`, *optional*, defaults to `"eval"`):
            Split it is scored on.
        layers (`str`, *optional*, defaults to `"auto"`):
            Comma-separated block indices (0 = embeddings, negative counts from the last), or `auto`: every
            `ceil(num_layers / 6)`-th block and the last.
        C (`float`, *optional*, defaults to `1.0`):
            Inverse L2 strength of the logistic regression.
        batch_size (`int`, *optional*, defaults to `32`):
            Prompts per forward pass.
        dtype (`str`, *optional*, defaults to `"float32"`):
            Weight dtype; `native`: bf16 where the device computes it natively, else fp32.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the logistic regression's solver.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Allow writing into a folder that already holds files.
    """

    model_name_or_path: str = field(metadata={"help": "Policy folder or Hub id."})
    output_dir: str = field(metadata={"help": "Folder for probe.json."})
    dataset_name: str = field(default="bundled", metadata={"help": "Labelled prompts: bundled, a file or a Hub id."})
    train_split: str = field(default="train", metadata={"help": "Split the probe is fit on."})
    eval_split: str = field(default="eval", metadata={"help": "Split it is scored on."})
    layers: str = field(default="auto", metadata={"help": "Comma-separated block indices, or auto."})
    C: float = field(default=1.0, metadata={"help": "Inverse L2 strength of the logistic regression."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per forward pass."})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16, float16, auto or native."})
    seed: int = field(default=0, metadata={"help": "Seed of the solver."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Write into a folder that holds files."})

    def __post_init__(self):
        if self.C <= 0:
            raise SafetyRLHFError(f"C={self.C} must be positive (the inverse L2 strength; 1.0 is the default)")
        if self.batch_size < 1:
            raise SafetyRLHFError(f"batch_size={self.batch_size} must be at least 1")
        if self.dtype == NATIVE:
            self.dtype = native_dtype(cpu=not torch.cuda.is_available(), what="probe")
        elif self.dtype not in DTYPES:
            raise SafetyRLHFError(f"dtype={self.dtype!r} is not supported; use one of: {', '.join(DTYPES)}, native")
        if self.layers != "auto":
            try:
                [int(x) for x in self.layers.split(",")]
            except ValueError:
                raise SafetyRLHFError(
                    f"layers={self.layers!r}: give comma-separated integers (e.g. 10,20,-1) or auto"
                ) from None


def choose_layers(spec: str, num_layers: int) -> list[int]:
    """Block indices to read, in [0, num_layers], sorted, without repeats."""
    if spec == "auto":
        step = max(1, math.ceil(num_layers / 6))
        return sorted(set(range(step, num_layers + 1, step)) | {num_layers})
    chosen = set()
    for raw in spec.split(","):
        layer = int(raw)
        layer = num_layers + 1 + layer if layer < 0 else layer
        if not 0 <= layer <= num_layers:
            raise SafetyRLHFError(f"layers={spec!r}: {raw} is outside 0..{num_layers} (or -1..-{num_layers + 1})")
        chosen.add(layer)
    return sorted(chosen)


@torch.no_grad()
def last_token_states(model, tokenizer, prompts: list[str], layers: list[int], batch_size: int) -> dict:
    """layer -> float32 tensor (len(prompts), hidden): the state at each prompt's last token (left padding)."""
    device = next(model.parameters()).device
    encoded = [tokenizer(_render(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    states = {layer: [] for layer in layers}
    for start in range(0, len(prompts), batch_size):
        inputs = tokenizer.pad({"input_ids": encoded[start : start + batch_size]}, return_tensors="pt").to(device)
        if tokenizer.padding_side != "left":  # the last real token must sit at -1
            raise SafetyRLHFError("the probe needs a left-padding tokenizer (models.load_eval_tokenizer sets it)")
        hidden = model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states
        for layer in layers:
            states[layer].append(hidden[layer][:, -1].float().cpu())
    return {layer: torch.cat(chunks) for layer, chunks in states.items()}


def fit_and_score(train_x, train_harmful, eval_x, eval_harmful, C: float = 1.0, seed: int = 0) -> dict:
    """Fit the read-out on train features, return `{harmful, benign}` recalls on eval (None for an absent class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(
        StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000, random_state=seed)
    )
    probe.fit(train_x.numpy(), train_harmful)
    predicted = probe.predict(eval_x.numpy())
    rates = {}
    for label, value in (("harmful", True), ("benign", False)):
        hits = [p == value for p, truth in zip(predicted, eval_harmful) if truth == value]
        rates[label] = round(sum(hits) / len(hits), 4) if hits else None
    return rates


def _labelled(args: ProbeArguments, split: str) -> tuple[list[str], list[bool]]:
    rows = data.load_prompts(args.dataset_name, split)
    prompts, harmful = list(rows["prompt"]), [label == "harmful" for label in rows["label"]]
    if split == args.train_split and len(set(harmful)) < 2:
        raise SafetyRLHFError(
            f"{args.dataset_name} split {split!r} holds only {'harmful' if harmful[0] else 'benign'} prompts; the "
            "probe needs both labels to fit (choose another --train_split or --dataset_name)"
        )
    return prompts, harmful


def best_layer(layers: list[dict]) -> dict:
    """The entry with the highest mean of the two rates (the first on ties; a missing rate counts as 0)."""
    return max(layers, key=lambda e: ((e["harmful"] or 0) + (e["benign"] or 0)) / 2)


def main(args: ProbeArguments) -> dict:
    out = check_output_dir(args.output_dir, args.overwrite_output_dir)
    train_prompts, train_harmful = _labelled(args, args.train_split)
    eval_prompts, eval_harmful = _labelled(args, args.eval_split)
    model, tokenizer = load_model(args.model_name_or_path, args.dtype)
    num_layers = model.config.get_text_config().num_hidden_layers
    layers = choose_layers(args.layers, num_layers)
    start = time.perf_counter()
    train_states = last_token_states(model, tokenizer, train_prompts, layers, args.batch_size)
    eval_states = last_token_states(model, tokenizer, eval_prompts, layers, args.batch_size)
    entries = [
        {"layer": layer}
        | fit_and_score(train_states[layer], train_harmful, eval_states[layer], eval_harmful, args.C, args.seed)
        for layer in layers
    ]
    result = {
        "model": args.model_name_or_path,
        "num_layers": num_layers,
        "train": {"dataset": args.dataset_name, "split": args.train_split, "prompts": len(train_prompts)},
        "eval": {"dataset": args.dataset_name, "split": args.eval_split, "prompts": len(eval_prompts)},
        "read_out": f"last prompt token, standardised, logistic regression (C={args.C}, classes balanced)",
        "layers": entries,
        "best": best_layer(entries),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = Path(out) / PROBE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    for entry in entries:
        print(f"layer {entry['layer']:>3}: harmful {entry['harmful']}  benign {entry['benign']}")
    best = result["best"]
    print(
        f"best layer {best['layer']} of {num_layers}: harmful {best['harmful']}, benign {best['benign']} "
        f"({len(train_prompts)} train -> {len(eval_prompts)} eval prompts, {time.perf_counter() - start:.0f} s) "
        f"-> {path}"
    )
    return result
