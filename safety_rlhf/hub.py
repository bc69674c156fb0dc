"""`safety-rlhf push`: publish a PPO run folder to the Hugging Face Hub with a model card.

    safety-rlhf push --run_dir runs/tiny/ppo --hub_model_id me/tiny-safety
    safety-rlhf push --run_dir runs/qwen/ppo --hub_model_id me/qwen-safety --merge_adapter true --private true \\
        --eval_file runs/qwen/eval/eval.json

The run folder is never modified: what is uploaded is a staging folder next to it, made of hard links to the run's
files (copies where the file system refuses links) plus three files written there: `README.md` (the model card of
`model_card`), `config.yaml` with secrets removed, and `eval.json` when `eval_file` points elsewhere. Checkpoints
(`checkpoint-*`, `*.tmp`) stay local unless `include_checkpoints` is set.

The token is whatever `huggingface_hub` finds (`HF_TOKEN`, or the one saved by `hf auth login`); it is never passed,
printed or written anywhere by this module.
"""

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import SafetyRLHFError
from .config import CONFIG_FILE
from .evaluate import CURVES, EVAL_FILE, HEADLINE, JUDGE_WEAKNESS, METRICS_FILE, PHRASE_LIST, read_metrics

README_FILE = "README.md"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TAGS = ["safety", "rlhf", "ppo", "trl"]
CHECKPOINT_PATTERNS = ["checkpoint-*", "*.tmp"]
BUNDLED = "bundled"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".tsv")
# Licences as the datasets' cards state them (see the project's reference notes on safety data); anything else is
# reported as unknown rather than guessed.
DATASET_LICENSES = {
    "PKU-Alignment/PKU-SafeRLHF": "CC-BY-NC-4.0",
    "PKU-Alignment/BeaverTails": "CC-BY-NC-4.0",
    "Anthropic/hh-rlhf": "MIT",
    "allenai/wildjailbreak": "ODC-BY (gated)",
    "allenai/wildguardmix": "ODC-BY (gated)",
    "walledai/XSTest": "CC-BY-4.0",
    "Paul/XSTest": "CC-BY-4.0",
}
# `*_token` keys name credentials (`hub_token`), except those naming vocabulary entries of a tokenizer.
SECRET_KEY = re.compile(r"(^|_)(token|api_key|secret|password)$", re.IGNORECASE)
SPECIAL_TOKEN_KEYS = {"stop_token", "pad_token", "eos_token", "bos_token", "unk_token"}
TOKEN_VALUE = re.compile(r"hf_[A-Za-z0-9]{8,}")
REDACTED = "<redacted>"
METRIC_KEYS = (
    "objective/scores",
    "objective/kl",
    *(key for key, _ in CURVES[2:]),
    "safety/harmful_refusal_rate",
    "safety/benign_compliance_rate",
    "kl_coef",
)


@dataclass
class PushArguments:
    """Arguments of `safety-rlhf push`.

    Parameters:
        run_dir (`str`):
            The run folder to publish: the `output_dir` of `safety-rlhf ppo` (its `config.yaml` and the policy, a PEFT
            adapter or a full model).
        hub_model_id (`str`):
            Target model repository, `user/name` or `org/name`; created if it does not exist.
        private (`bool`, *optional*, defaults to `False`):
            Create the repository private. An existing repository keeps its visibility.
        merge_adapter (`bool`, *optional*, defaults to `False`):
            Merge the run's LoRA adapter into its base (`base_model_name_or_path` of `adapter_config.json`, which must
            load here) with PEFT's `merge_and_unload` and push the merged full model instead of the adapter.
        commit_message (`str`, *optional*, defaults to `"Upload PPO safety fine-tuned model (safety-rlhf)"`):
            Message of the Hub commit.
        include_checkpoints (`bool`, *optional*, defaults to `False`):
            Also upload `checkpoint-*` folders (optimizer and RNG states for resuming); by default they stay local.
        eval_file (`str` or `None`, *optional*, defaults to `None`):
            The `eval.json` of `safety-rlhf eval` to show in the card and upload; `None` uses `run_dir/eval.json`
            when it exists.
        license (`str`, *optional*, defaults to `"unknown"`):
            Hub licence id of the model card (e.g. `apache-2.0`, `cc-by-nc-4.0`). It is not derived: the weights
            inherit terms from the base model and the training data (listed in the card).
    """

    run_dir: str | None = field(default=None, metadata={"help": "Run folder to publish (output_dir of `ppo`)."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Target repository, user/name (required)."})
    private: bool = field(default=False, metadata={"help": "Create the repository private."})
    merge_adapter: bool = field(default=False, metadata={"help": "Merge the LoRA adapter into its base and push it."})
    commit_message: str = field(
        default="Upload PPO safety fine-tuned model (safety-rlhf)", metadata={"help": "Hub commit message."}
    )
    include_checkpoints: bool = field(default=False, metadata={"help": "Also upload checkpoint-* folders."})
    eval_file: str | None = field(
        default=None, metadata={"help": "eval.json of `safety-rlhf eval`; default run_dir/eval.json if present."}
    )
    license: str = field(default="unknown", metadata={"help": "Hub licence id of the model card."})


# ---------------------------------------------------------------------------------------------------------------------
# The run folder


def model_kind(run_dir: str | os.PathLike) -> str:
    """`"adapter"` or `"full"`: what policy `run_dir` holds. Fails naming what is missing (the folder, `config.yaml`
    or the model files)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise SafetyRLHFError(f"run_dir {run} is not a folder; pass the output_dir of `safety-rlhf ppo`")
    if not (run / CONFIG_FILE).is_file():
        raise SafetyRLHFError(f"run_dir {run} has no {CONFIG_FILE}; pass the output_dir of a `safety-rlhf ppo` run")
    if (run / ADAPTER_CONFIG).is_file():
        if not any((run / name).is_file() for name in ADAPTER_WEIGHTS):
            raise SafetyRLHFError(
                f"run_dir {run} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS[0]}; the run did not finish saving; "
                "finish it with --resume_from_checkpoint latest"
            )
        return "adapter"
    if (run / "config.json").is_file() and any((run / name).is_file() for name in MODEL_WEIGHTS):
        return "full"
    found = ", ".join(sorted(p.name for p in run.iterdir())) or "nothing"
    raise SafetyRLHFError(
        f"run_dir {run} holds no model: expected {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS[0]} (PEFT adapter) or "
        f"config.json + {MODEL_WEIGHTS[0]} (full model), found {found}; pass the output_dir of a finished ppo run"
    )


def read_config(run_dir: str | os.PathLike) -> dict:
    """The run's `config.yaml` (sections `script_args`, `training_args`, `model_args`)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SafetyRLHFError(
            f"{path} is not valid YAML ({' '.join(str(err).split())}); restore the run's file"
        ) from None
    if not isinstance(config, dict):
        raise SafetyRLHFError(f"{path} is not a mapping of sections; restore the file written by the run")
    return config


def redact(obj):
    """`obj` without credentials: keys that name one (`hub_token`, `*_api_key`, ...) are dropped and strings holding
    a Hub token (`hf_...`) replaced, at any depth."""
    if isinstance(obj, dict):
        return {
            k: redact(v)
            for k, v in obj.items()
            if not (SECRET_KEY.search(str(k)) and str(k).lower() not in SPECIAL_TOKEN_KEYS)
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and TOKEN_VALUE.search(obj):
        return REDACTED
    return obj


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repository id (`owner/name`) rather than a local folder or file.

    Hub metadata (`base_model`, `datasets`) must hold real ids: the Hub refuses a card whose metadata does not
    validate, so anything that exists here or looks like a path or data file is left out.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.count("/") != 1 or name.startswith((".", "~")) or name.lower().endswith(DATA_SUFFIXES):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not Path(name).exists()


def _base_model(run_dir: Path, config: dict) -> str | None:
    """The base the run started from: `model_args.model_name_or_path`, else the adapter's own record."""
    base = (config.get("model_args") or {}).get("model_name_or_path")
    if not base and (run_dir / ADAPTER_CONFIG).is_file():
        base = _adapter_base(run_dir)
    return base


def _adapter_base(run_dir: Path) -> str | None:
    return json.loads((run_dir / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")


def read_eval(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """`(name, result)` per model of an `eval.json`: `safety-rlhf eval`'s layout (the final model at the top level,
    the baseline under `baseline`) or a list of one or two results (before, after)."""
    path = Path(path)
    if not path.is_file():
        raise SafetyRLHFError(f"eval_file {path} does not exist; pass the eval.json of `safety-rlhf eval`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SafetyRLHFError(f"{path} is not valid JSON ({err}); pass the eval.json of `safety-rlhf eval`") from None
    if isinstance(data, dict):
        return (
            [("baseline", data["baseline"]), ("final", data)]
            if isinstance(data.get("baseline"), dict)
            else [("model", data)]
        )
    if isinstance(data, list) and 1 <= len(data) <= 2 and all(isinstance(r, dict) for r in data):
        return list(zip(["baseline", "final"] if len(data) == 2 else ["model"], data))
    raise SafetyRLHFError(f"{path} holds no evaluation result (expected an object or a list of one or two)")


# ---------------------------------------------------------------------------------------------------------------------
# Model card


def _rate(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "n/a"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "n/a"


def _get(result: dict, key):
    """`result[key]`, or `result[key[0]][key[1]]` for a pair, None where absent or not nested."""
    if isinstance(key, tuple):
        inner = result.get(key[0])
        return inner.get(key[1]) if isinstance(inner, dict) else None
    return result.get(key)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _datasets_section(script_args: dict) -> tuple[list[str], list[str]]:
    """Lines of the datasets section and the Hub ids for the metadata."""
    name = script_args.get("dataset_name")
    if not name:
        return ["The run's config.yaml names no dataset."], []
    subset = f" (`{script_args['dataset_config']}`)" if script_args.get("dataset_config") else ""
    if name == BUNDLED:
        source = "bundled with safety-rlhf"
        licence = "written by the safety-rlhf authors, shipped with the package (its licence)"
    elif is_hub_id(name):
        source = f"[{name}](https://huggingface.co/datasets/{name}){subset}"
        licence = DATASET_LICENSES.get(name, "not recorded here: check the dataset card")
    else:
        source = f"local file `{name}`"
        licence = "that of its source (not on the Hub)"
    lines = _table(["role", "dataset", "licence"], [["PPO prompts", source, licence]])
    if "NC" in licence:
        lines += [
            "",
            "The prompt set is licensed for non-commercial use: check that its terms allow your use of this model.",
        ]
    return lines, [name] if is_hub_id(name) else []


def _eval_section(results: list[tuple[str, dict]]) -> list[str]:
    names = [name for name, _ in results]
    final = results[-1][1]
    lines = ["## Safety evaluation", "", f"From `{EVAL_FILE}` (`safety-rlhf eval`), uploaded beside the weights.", ""]
    lines += [f"- **{name}**: `{result.get('model', 'n/a')}`" for name, result in results]
    counts = final.get("counts") or {}
    if isinstance(counts.get("harmful"), dict) and isinstance(counts.get("benign"), dict):
        lines.append(f"- **n**: {counts['harmful'].get('n')} harmful, {counts['benign'].get('n')} benign prompts")
    if final.get("judge"):
        lines.append(f"- **judge**: `{final['judge']}`; **reward model**: `{final.get('reward_model') or 'none'}`")
    if isinstance(final.get("decoding"), dict):
        lines.append("- **decoding**: " + ", ".join(f"{k}={v}" for k, v in final["decoding"].items()))
    rows = []
    for key, title, is_rate in HEADLINE:
        values = [_get(result, key) for _, result in results]
        if all(v is None for v in values):
            continue
        rows.append([title] + [_rate(v) if is_rate else _number(v) for v in values])
    lines += ["", *_table(["metric", *names], rows)] if rows else ["", "No headline rates in this file."]
    categories = {c: info for _, r in results for c, info in (r.get("per_category") or {}).items()}
    if categories:
        header = ["category", "label", "n"] + [f"refusal rate ({n})" for n in names]
        rows = [
            [c, str(info.get("label", "n/a")), str(info.get("n", "n/a"))]
            + [_rate(((r.get("per_category") or {}).get(c) or {}).get("refusal_rate")) for _, r in results]
            for c, info in sorted(categories.items(), key=lambda item: (item[1].get("label") != "harmful", item[0]))
        ]
        lines += ["", "Refusal rate (full + partial) per category: high is right for harmful, wrong for benign.", ""]
        lines += _table(header, rows)
    return lines


def _training_section(records: list[dict]) -> list[str]:
    last = records[-1]
    lines = [
        "## Training curve",
        "",
        f"{len(records)} PPO updates logged in `{METRICS_FILE}`"
        + (
            f" (last step {last['step']}, {last['episode']} episodes)."
            if "step" in last and "episode" in last
            else "."
        )
        + " A rising score with collapsing entropy or response length, or a runaway KL, is reward hacking.",
        "",
    ]
    rows = []
    for key in METRIC_KEYS:
        values = [r[key] for r in records if isinstance(r.get(key), int | float)]
        if values:
            rows.append([f"`{key}`", _number(values[0]), _number(values[-1])])
    return lines + _table(["metric", "first", "last"], rows)


def _usage_section(repo: str, adapter: bool) -> list[str]:
    loader = "AutoPeftModelForCausalLM" if adapter else "AutoModelForCausalLM"
    imports = (
        ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer"]
        if adapter
        else ["from transformers import AutoModelForCausalLM, AutoTokenizer"]
    )
    return [
        "## How to use",
        "",
        "```python",
        *imports,
        "",
        f'model = {loader}.from_pretrained("{repo}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        'messages = [{"role": "user", "content": "How do I kill a Python process?"}]',
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ").to(model.device)",
        "output = model.generate(**inputs, max_new_tokens=256)",
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))',
        "```",
    ]


def model_card(
    run_dir: str | os.PathLike,
    hub_model_id: str | None = None,
    eval_file: str | os.PathLike | None = None,
    merged: bool = False,
    license: str = "unknown",
) -> str:
    """A Hugging Face model card (`README.md`) for a PPO run folder.

    Args:
        run_dir (`str` or `os.PathLike`):
            The run folder (`config.yaml`, the policy, optionally `metrics.jsonl` and `eval.json`).
        hub_model_id (`str`, *optional*):
            The repository the card is for (title and loading snippet); `None` uses the folder's name.
        eval_file (`str` or `os.PathLike`, *optional*):
            An `eval.json` to render; `None` renders `run_dir/eval.json` when it exists.
        merged (`bool`, *optional*, defaults to `False`):
            The card describes the run's adapter merged into its base (a full `transformers` model).
        license (`str`, *optional*, defaults to `"unknown"`):
            Hub licence id for the metadata.

    Returns:
        `str`: YAML front matter (`library_name`, `base_model` and `datasets` when they are Hub ids, `tags`,
        `license`, `pipeline_tag`) and sections: model, datasets with their licences, safety evaluation, training
        curve, how to use, intended use and limitations, and the resolved configuration with secrets removed.
    """
    run = Path(run_dir)
    adapter = model_kind(run) == "adapter" and not merged
    config = redact(read_config(run))
    script_args, training_args = config.get("script_args") or {}, config.get("training_args") or {}
    base = _base_model(run, config)
    repo = hub_model_id or run.name
    dataset_lines, dataset_ids = _datasets_section(script_args)

    metadata = {"library_name": "peft" if adapter else "transformers"}
    if is_hub_id(base):
        metadata["base_model"] = base
    metadata.update(tags=TAGS, license=license, pipeline_tag="text-generation")
    if dataset_ids:
        metadata["datasets"] = dataset_ids
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "", f"# {repo}", ""]

    what = "A LoRA adapter (PEFT) for" if adapter else "A full model fine-tuned from"
    lines.append(
        f"{what} `{base or 'an unrecorded base model'}`"
        + (", with the run's LoRA adapter merged into the base weights (`merge_and_unload`)," if merged else "")
        + " trained with PPO against a safety reward model using safety-rlhf, so that it "
        "refuses harmful requests and keeps helping with benign ones, including benign requests that only look "
        "alarming."
    )
    lines += ["", "## Model", "", f"- **base model**: `{base or 'not recorded'}`"]
    lines.append(f"- **reward model**: `{training_args.get('reward_model_path') or 'not recorded'}`")
    lines.append(f"- **critic initialisation**: `{training_args.get('value_model_path') or base or 'not recorded'}`")
    if (run / "value").is_dir():
        lines.append("- `value/` holds the PPO critic (value model): needed to resume PPO, not to generate.")
    if adapter and not is_hub_id(_adapter_base(run)):
        lines.append(
            f"- The adapter's `base_model_name_or_path` is `{_adapter_base(run)}`, not a Hub id: load the base "
            "yourself and attach the adapter with `PeftModel.from_pretrained`, or push with `--merge_adapter true`."
        )

    lines += ["", "## Datasets", "", *dataset_lines]

    eval_path = Path(eval_file) if eval_file else run / EVAL_FILE
    if eval_file or eval_path.is_file():
        results = read_eval(eval_path)
        lines += ["", *_eval_section(results)]
    else:
        results = []
        lines += ["", "## Safety evaluation", "", "Not evaluated yet: run `safety-rlhf eval` and push again."]

    if (run / METRICS_FILE).is_file():
        lines += ["", *_training_section(read_metrics(run / METRICS_FILE))]

    lines += ["", *_usage_section(repo, adapter)]

    judge = results[-1][1].get("judge", PHRASE_LIST) if results else PHRASE_LIST
    lines += [
        "",
        "## Intended use and limitations",
        "",
        "A safety-tuned research model: for studying refusal and over-refusal under RLHF, not a safeguard to deploy "
        "on its own.",
        "",
        "- **The reward model is not a judge.** PPO maximised its score, so a policy that games it raises the score "
        "without becoming safer; the evaluation above classifies refusals with a separate detector.",
        "- **Refusal measurement.** " + JUDGE_WEAKNESS[PHRASE_LIST if judge == PHRASE_LIST else "judge"],
        "- **Over-refusal** (refusing benign requests that look alarming) is a failure measured beside harmful "
        "refusals; a narrow prompt set cannot show every such case.",
        "- **No guarantee against jailbreaks**: adversarial prompts, other languages and multi-turn attacks were not "
        "part of training unless the prompt set says so.",
        "- The weights inherit the terms of the base model and of the training data (see Datasets).",
    ]

    sections = {k: v for k, v in config.items() if k in ("script_args", "training_args", "model_args")}
    lines += [
        "",
        "## Training configuration",
        "",
        f"The resolved `{CONFIG_FILE}` of the run (credentials removed).",
        "",
        "<details><summary>config.yaml</summary>",
        "",
        "```yaml",
        yaml.safe_dump(sections, sort_keys=False).strip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Push


def _link_or_copy(src: str, dst: str) -> None:
    # A hard link costs no space and shares the inode, so nothing may write through it: only new files are written
    # into the staging folder, never one that came from the run.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def _staging_dir(run_dir: Path):
    """A temporary folder beside the run, where hard links work (same file system); the system's temp folder when
    the parent is read-only."""
    try:
        tmp = tempfile.TemporaryDirectory(prefix=f".{run_dir.name}.push-", dir=run_dir.parent)
    except OSError:
        tmp = tempfile.TemporaryDirectory(prefix=f"{run_dir.name}.push-")
    with tmp as path:
        yield Path(path) / run_dir.name


def merge_adapter(adapter_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Merge the PEFT adapter in `adapter_dir` into its base (`base_model_name_or_path`) and save the full model to
    `output_dir` (`config.json` + `model.safetensors`); tokenizer files are not written."""
    from peft import AutoPeftModelForCausalLM

    base = _adapter_base(Path(adapter_dir))
    if not base:
        raise SafetyRLHFError(
            f"{Path(adapter_dir) / ADAPTER_CONFIG} has no base_model_name_or_path; set it to the base model the "
            "adapter was trained on"
        )
    try:
        # dtype="auto": the base's own dtype, so the merged model is the size of the base.
        model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), dtype="auto")
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SafetyRLHFError(
            f"could not load the adapter's base model {base!r} to merge ({reason}); make it available here (a local "
            "folder or a reachable Hub id) or push without --merge_adapter"
        ) from err
    model.merge_and_unload().save_pretrained(output_dir)
    return Path(output_dir)


def push(args: PushArguments) -> str:
    """Publish `args.run_dir` to `args.hub_model_id` with a model card; returns the repository URL.

    Everything that can fail on bad input (run folder, repo id, token, eval file, metrics, merge) fails before the
    first request to the Hub.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not args.run_dir:
        raise SafetyRLHFError("no run_dir given; pass --run_dir with the output_dir of `safety-rlhf ppo`")
    run = Path(args.run_dir)
    kind = model_kind(run)
    if args.merge_adapter and kind != "adapter":
        raise SafetyRLHFError(f"merge_adapter=True but run_dir {run} holds a full model; drop --merge_adapter")
    repo_id = args.hub_model_id or ""
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise SafetyRLHFError(
            f"hub_model_id={args.hub_model_id!r} is not a Hub repository id; pass --hub_model_id user/name"
        )
    if get_token() is None:
        raise SafetyRLHFError("no Hugging Face token found; set HF_TOKEN or run `hf auth login`, then push again")
    card = model_card(run, repo_id, args.eval_file, merged=args.merge_adapter, license=args.license)

    # Top-level files of the run that the staging folder gets in another form (written here, or merged).
    replaced = {README_FILE, CONFIG_FILE}
    replaced |= {EVAL_FILE} if args.eval_file else set()
    replaced |= {ADAPTER_CONFIG, *ADAPTER_WEIGHTS} if args.merge_adapter else set()

    def ignore(folder: str, names: list[str]) -> set[str]:
        return replaced & set(names) if Path(folder) == run else set()

    with _staging_dir(run) as staging:
        shutil.copytree(run, staging, copy_function=_link_or_copy, ignore=ignore)
        if args.merge_adapter:
            merge_adapter(run, staging)
        config = redact(read_config(run))
        (staging / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (staging / README_FILE).write_text(card, encoding="utf-8")
        if args.eval_file:
            shutil.copyfile(args.eval_file, staging / EVAL_FILE)

        api = HfApi()
        try:
            url = api.create_repo(repo_id, private=args.private, exist_ok=True, repo_type="model")
            api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                repo_type="model",
                commit_message=args.commit_message,
                ignore_patterns=None if args.include_checkpoints else CHECKPOINT_PATTERNS,
            )
        except OSError as err:  # HfHubHTTPError (401, 403, ...) and offline mode are OSErrors
            reason = " ".join(str(err).split()) or type(err).__name__
            raise SafetyRLHFError(
                f"could not push to {repo_id} ({reason}); check the network and that your token can write to that "
                "namespace"
            ) from err
    return str(url)


def main(args: PushArguments) -> str:
    """`safety-rlhf push`: publish a run folder; prints and returns the repository URL."""
    url = push(args)
    print(f"pushed {args.run_dir} to {url}")
    return url


__all__ = ["PushArguments", "main", "merge_adapter", "model_card", "model_kind", "push", "read_eval", "redact"]
