"""`safety-rlhf push`: publish a PPO run folder to the Hugging Face Hub with a model card.

    safety-rlhf push --run_dir runs/tiny/ppo --hub_model_id me/tiny-safety
    safety-rlhf push --run_dir runs/qwen/ppo --hub_model_id me/qwen-safety --merge_adapter true --private true \\
        --eval_file runs/qwen/eval/eval.json

The run folder is never modified: what is uploaded is a staging folder next to it, made of hard links to the run's
files (copies where the file system refuses links) plus three files written there: `README.md` (the model card of
`model_card`: `huggingface_hub.ModelCard` rendered from `templates/model_card.md`, its eval tables drawn by
`report.py` as in `report.md`), `config.yaml` with secrets removed, and `eval.json` when `eval_file` points elsewhere. Checkpoints
(`checkpoint-*`, `*.tmp`) stay local unless `include_checkpoints` is set.

The token is whatever `huggingface_hub` finds (`HF_TOKEN`, or the one saved by `hf auth login`); it is never passed,
printed or written anywhere by this module.
"""

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
from .models import ADAPTER_CONFIG, adapter_base_model
from .report import (
    EVAL_FILE,
    METRICS_FILE,
    PHRASE_LIST,
    category_table,
    headline_table,
    judge_weakness,
    markdown_table,
    metrics_table,
    read_eval,
    read_metrics,
)

README_FILE = "README.md"
CARD_TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
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
    return base or adapter_base_model(run_dir)


# ---------------------------------------------------------------------------------------------------------------------
# Model card


def _datasets(script_args: dict) -> tuple[str, bool, list[str]]:
    """The datasets table, whether its licence is non-commercial, and the Hub ids for the metadata."""
    name = script_args.get("dataset_name")
    if not name:
        return "The run's config.yaml names no dataset.", False, []
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
    table = markdown_table(["role", "dataset", "licence"], [["PPO prompts", source, licence]])
    return "\n".join(table), "NC" in licence, [name] if is_hub_id(name) else []


def _evaluation(results: list[tuple[str, dict]]) -> dict:
    """What the card's safety evaluation section shows of an `eval.json`; its tables are those of report.md."""
    names, values = [name for name, _ in results], [result for _, result in results]
    final = values[-1]
    counts = final.get("counts") or {}
    headline = headline_table(values, names, intervals=False, number=".4g")
    by_category = category_table(values, names, columns=(("refusal_rate", "refusal rate"),))
    return {
        "models": [(name, result.get("model", "n/a")) for name, result in results],
        "counts": f"{counts['harmful'].get('n')} harmful, {counts['benign'].get('n')} benign prompts"
        if isinstance(counts.get("harmful"), dict) and isinstance(counts.get("benign"), dict)
        else None,
        "judge": final.get("judge"),
        "reward_model": final.get("reward_model"),
        "decoding": ", ".join(f"{k}={v}" for k, v in final["decoding"].items())
        if isinstance(final.get("decoding"), dict)
        else None,
        # A table without rows (header and rule only) is left out.
        "headline_table": "\n".join(headline) if len(headline) > 2 else None,
        "category_table": "\n".join(by_category) if len(by_category) > 2 else None,
    }


def _training(records: list[dict]) -> dict:
    last = records[-1]
    return {
        "updates": len(records),
        "progress": f" (last step {last['step']}, {last['episode']} episodes)"
        if "step" in last and "episode" in last
        else "",
        "table": "\n".join(metrics_table(records)),
    }


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
        `str`: `templates/model_card.md` rendered by `huggingface_hub.ModelCard.from_template`: YAML front matter
        (`ModelCardData`: `base_model` and `datasets` when they are Hub ids, `library_name`, `license`,
        `pipeline_tag`, `tags`) and sections: model, datasets with their licences, safety evaluation, training
        curve, how to use, intended use and limitations, and the resolved configuration with secrets removed.
    """
    from huggingface_hub import ModelCard, ModelCardData

    run = Path(run_dir)
    adapter = model_kind(run) == "adapter" and not merged
    config = redact(read_config(run))
    script_args, training_args = config.get("script_args") or {}, config.get("training_args") or {}
    base = _base_model(run, config)
    datasets_table, non_commercial, dataset_ids = _datasets(script_args)
    eval_path = Path(eval_file) if eval_file else run / EVAL_FILE
    results = read_eval(eval_path) if eval_file or eval_path.is_file() else []
    judge = results[-1][1].get("judge", PHRASE_LIST) if results else PHRASE_LIST
    adapter_base = adapter_base_model(run) if adapter else None
    sections = {k: v for k, v in config.items() if k in ("script_args", "training_args", "model_args")}

    card_data = ModelCardData(
        library_name="peft" if adapter else "transformers",
        base_model=base if is_hub_id(base) else None,
        tags=TAGS,
        license=license,
        pipeline_tag="text-generation",
        datasets=dataset_ids or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(CARD_TEMPLATE),
        repo=hub_model_id or run.name,
        adapter=adapter,
        merged=merged,
        base=base,
        reward_model=training_args.get("reward_model_path"),
        value_model=training_args.get("value_model_path"),
        has_critic=(run / "value").is_dir(),
        lagrangian=training_args.get("algorithm") == "ppo_lag",
        cost_model=training_args.get("cost_model_path"),
        threshold=training_args.get("threshold"),
        has_cost_critic=(run / "cost_value").is_dir(),
        local_adapter_base=str(adapter_base) if adapter and not is_hub_id(adapter_base) else None,
        datasets_table=datasets_table,
        non_commercial=non_commercial,
        eval_file=EVAL_FILE,
        evaluation=_evaluation(results) if results else None,
        metrics_file=METRICS_FILE,
        training=_training(read_metrics(run / METRICS_FILE)) if (run / METRICS_FILE).is_file() else None,
        judge_weakness=judge_weakness(judge),
        config_file=CONFIG_FILE,
        config_yaml=yaml.safe_dump(sections, sort_keys=False).strip(),
    )
    return str(card)


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

    base = adapter_base_model(Path(adapter_dir))
    if not base:
        raise SafetyRLHFError(
            f"{Path(adapter_dir) / ADAPTER_CONFIG} has no base_model_name_or_path; set it to the base model the "
            "adapter was trained on"
        )
    try:
        # dtype="auto": the base's own dtype, so the merged model is the size of the base.
        model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), dtype="auto", use_safetensors=True)
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


__all__ = ["PushArguments", "main", "merge_adapter", "model_card", "model_kind", "push", "redact"]
