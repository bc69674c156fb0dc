"""Datasets: the bundled files, local files and Hub safety sets, all turned into the same columns.

    safety-rlhf data --config recipes/tiny/sft.yaml --kind pairs

Three kinds of rows, each a `datasets.Dataset` with fixed columns:

- prompts (`load_prompts`): `prompt, label, category, split`, for PPO rollouts and evaluation;
- pairs (`load_pairs`): `prompt, chosen, rejected, label, category, split`, for the safety reward model;
- sft (`load_sft`): `messages, label, category, split`, for the supervised warm start.

`label` is `harmful` or `benign`; pairs and SFT rows may say `unknown`, and `category` says `unknown` where the
source has none. Benign-but-alarming categories (XSTest style) start with `xstest_`. A source is one of:

- `bundled`: the JSONL files in `safety_rlhf/data/`; `bundled_heldout` (split `test`): the held-out pairs, written
  apart from everything else (five of their categories appear nowhere in training), and as prompts their distinct
  prompts;
- a local `.jsonl`, `.json`, `.csv` or `.parquet` file in our columns, or in a Hub set's columns with `mapping`;
- a Hub dataset id (or a folder holding a copy of one), loaded with `datasets.load_dataset`; the known sets of
  `MAPPINGS` are converted to our columns.

Bad rows are handled according to who can fix them:

1. Files in our columns (bundled or local) are curated data: an empty text, chosen == rejected or a duplicate row is
   an error naming the file and line (JSONL) or row index, so it gets fixed instead of silently lost.
2. Data that goes through a mapping or comes from the Hub cannot be fixed by the user: such rows, and rows a mapping
   filters out by design, are dropped and counted (a logged warning; `safety-rlhf data` prints them). Duplicate
   prompts are merged, and a prompt counts as harmful if any of its rows says so.

Missing columns and unknown labels are errors everywhere: they mean a wrong file or mapping, not a bad row.
"""

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset
from rich.console import Console
from rich.table import Table
from trl import maybe_apply_chat_template

from . import SafetyRLHFError
from .config import ScriptArguments

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
BUNDLED = {
    "prompts": {"bundled": "prompts.jsonl", "bundled_heldout": "pairs_heldout.jsonl"},
    "pairs": {"bundled": "pairs.jsonl", "bundled_heldout": "pairs_heldout.jsonl"},
    # bundled_warmstart: refusals of every harmful train prompt, the warm start of a real chat model before PPO
    # (scripts/build_warmstart.py)
    "sft": {"bundled": "sft.jsonl", "bundled_warmstart": "sft_warmstart.jsonl"},
}
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
COLUMNS = {
    "prompts": ("prompt", "label", "category", "split"),
    "pairs": ("prompt", "chosen", "rejected", "label", "category", "split"),
    "sft": ("messages", "label", "category", "split"),
}
REQUIRED = {"prompts": ("prompt", "label"), "pairs": ("prompt", "chosen", "rejected"), "sft": ("messages",)}
TEXTS = {"prompts": ("prompt",), "pairs": ("prompt", "chosen", "rejected")}  # must be non-empty; identify duplicates
# PPO and evaluation need to know which prompts must be refused; preference and SFT rows are usable without it.
LABELS = {
    "prompts": ("harmful", "benign"),
    "pairs": ("harmful", "benign", "unknown"),
    "sft": ("harmful", "benign", "unknown"),
}
ROLES = ("system", "user", "assistant")

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


# Mappings of the Hub sets: each converter takes a source row and returns a row in our columns (`split` is added
# later), or a string saying why the row is skipped.


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _first_true(flags: dict | None) -> str:
    """First harm category flagged True, in the set's column order, snake_case; `unknown` if none is."""
    return next((_snake(name) for name, flagged in (flags or {}).items() if flagged), "unknown")


def _pku_prompt(row: dict) -> dict:
    # PKU-SafeRLHF has no prompt-level label: a prompt is harmful if it elicited an unsafe response.
    unsafe = [i for i in (0, 1) if not row[f"is_response_{i}_safe"]]
    category = _first_true(row.get(f"response_{unsafe[0]}_harm_category")) if unsafe else "unknown"
    return {"prompt": row["prompt"], "label": "harmful" if unsafe else "benign", "category": category}


def _pku_pair(row: dict) -> dict | str:
    # Only one-safe-one-unsafe rows contrast safety; the others differ in helpfulness only.
    if row["is_response_0_safe"] == row["is_response_1_safe"]:
        return "both responses equally safe"
    safer = int(row["safer_response_id"])
    return {
        "prompt": row["prompt"],
        "chosen": row[f"response_{safer}"],
        "rejected": row[f"response_{1 - safer}"],
        "label": "harmful",
        "category": _first_true(row.get(f"response_{1 - safer}_harm_category")),
    }


def _beavertails_prompt(row: dict) -> dict:
    # `is_safe` judges the QA pair; like PKU, a prompt is harmful if a response to it is unsafe.
    harmful = not row["is_safe"]
    return {
        "prompt": row["prompt"],
        "label": "harmful" if harmful else "benign",
        "category": _first_true(row["category"]),
    }


def _hh_split(transcript: str) -> tuple[str, str, str] | None:
    """(history through the last `\\n\\nAssistant:`, last human turn, last assistant turn), or None if malformed."""
    cut = transcript.rfind(ASSISTANT)
    human = transcript.rfind(HUMAN, 0, cut) if cut >= 0 else -1
    if human < 0:
        return None
    end = cut + len(ASSISTANT)
    return transcript[:end], transcript[human + len(HUMAN) : cut].strip(), transcript[end:].strip()


def _hh_prompt(row: dict) -> dict | str:
    # PPO rolls out single-turn prompts, so only the last human turn is kept. harmless-base holds red-team
    # conversations, hence `harmful`; `_hh_load_kwargs` refuses the helpful subsets, where that would be wrong.
    parts = _hh_split(row["chosen"])
    if parts is None:
        return "not a Human/Assistant transcript"
    return {"prompt": parts[1], "label": "harmful", "category": "unknown"}


def _hh_pair(row: dict) -> dict | str:
    chosen, rejected = _hh_split(row["chosen"]), _hh_split(row["rejected"])
    if chosen is None or rejected is None:
        return "not a Human/Assistant transcript"
    if chosen[0] != rejected[0]:
        return "chosen and rejected histories differ"
    return {
        "prompt": chosen[0],
        "chosen": chosen[2],
        "rejected": rejected[2],
        "label": "harmful",
        "category": "unknown",
    }


def _hh_load_kwargs(config: str | None) -> dict:
    # hh-rlhf's subsets are folders, not configurations.
    if config not in (None, "harmless-base"):
        raise SafetyRLHFError(
            f"dataset_config={config!r}: the hh_rlhf mapping labels every prompt harmful, which holds for "
            "harmless-base only; pass --dataset_config harmless-base"
        )
    return {"data_dir": "harmless-base"}


def _wildjailbreak_prompt(row: dict) -> dict:
    # `data_type` is {vanilla,adversarial}_{harmful,benign}; anything else fails the label check with its value.
    prompt = row["adversarial"].strip() or row["vanilla"]
    return {"prompt": prompt, "label": row["data_type"].rsplit("_", 1)[-1], "category": row["data_type"]}


def _wildjailbreak_sft(row: dict) -> dict:
    prompt = _wildjailbreak_prompt(row)
    messages = [{"role": "user", "content": prompt["prompt"]}, {"role": "assistant", "content": row["completion"]}]
    return {"messages": messages, "label": prompt["label"], "category": prompt["category"]}


def _wildjailbreak_load_kwargs(config: str | None) -> dict:
    # The card's loading recipe: the files are TSV, and "NA"/"null" prompts must stay text.
    return {"name": config, "delimiter": "\t", "keep_default_na": False}


def _xstest_prompt(row: dict) -> dict:
    label = {"safe": "benign", "unsafe": "harmful"}.get(row["label"], row["label"])
    return {"prompt": row["prompt"], "label": label, "category": f"xstest_{row['type']}"}


def _name_kwargs(config: str | None) -> dict:
    return {"name": config}


@dataclass(frozen=True)
class Mapping:
    """How a Hub dataset becomes our columns: one converter per kind of rows it provides (`None`: not provided).

    Parameters:
        description (`str`):
            The set, and the choices the converters make.
        prompts, pairs, sft (`Callable[[dict], dict | str]` or `None`):
            Source row -> our row, or the reason the row is skipped.
        load_kwargs (`Callable[[str | None], dict]`):
            `dataset_config` -> extra keyword arguments of `datasets.load_dataset`.
    """

    description: str
    prompts: Callable[[dict], dict | str] | None = None
    pairs: Callable[[dict], dict | str] | None = None
    sft: Callable[[dict], dict | str] | None = None
    load_kwargs: Callable[[str | None], dict] = _name_kwargs


MAPPINGS = {
    "pku_saferlhf": Mapping(
        "PKU-Alignment/PKU-SafeRLHF and siblings. Prompts: harmful if either response is unsafe. Pairs: rows with "
        "one safe and one unsafe response; chosen = response_{safer_response_id}; label harmful; category = first "
        "harm category of the unsafe response.",
        prompts=_pku_prompt,
        pairs=_pku_pair,
    ),
    "beavertails": Mapping(
        "PKU-Alignment/BeaverTails (QA pairs) as a prompt pool: harmful if a response to the prompt is unsafe "
        "(`is_safe` False), else benign; category = first True key of `category`.",
        prompts=_beavertails_prompt,
    ),
    "hh_rlhf": Mapping(
        "Anthropic/hh-rlhf, harmless-base only (red-team conversations: label harmful, category unknown). Prompts: "
        "the last human turn. Pairs: prompt = the shared history through the last '\\n\\nAssistant:', "
        "chosen/rejected = the final assistant turns.",
        prompts=_hh_prompt,
        pairs=_hh_pair,
        load_kwargs=_hh_load_kwargs,
    ),
    "wildjailbreak": Mapping(
        "allenai/wildjailbreak (gated; dataset_config train or eval). Prompt = `adversarial` if non-empty else "
        "`vanilla`; label and category from `data_type`; SFT: the prompt answered by `completion`.",
        prompts=_wildjailbreak_prompt,
        sft=_wildjailbreak_sft,
        load_kwargs=_wildjailbreak_load_kwargs,
    ),
    "xstest": Mapping(
        "walledai/XSTest or Paul/XSTest: label safe -> benign, unsafe -> harmful; category = xstest_<type>.",
        prompts=_xstest_prompt,
    ),
}


def source_options(script_args: ScriptArguments) -> dict:
    """The `config`, `mapping` and `max_samples` keywords of the `load_*` functions, from a verb's arguments."""
    return {
        "config": script_args.dataset_config,
        "mapping": script_args.dataset_mapping,
        "max_samples": script_args.max_samples,
    }


def load_prompts(
    source: str = "bundled",
    split: str | None = None,
    *,
    config: str | None = None,
    mapping: str | None = None,
    max_samples: int | None = None,
) -> Dataset:
    """Load prompts with columns `prompt, label, category, split`.

    Args:
        source (`str`, *optional*, defaults to `"bundled"`):
            `bundled`, `bundled_heldout` (the held-out prompts, split `test`), a local `.jsonl`/`.json`/`.csv`/
            `.parquet` file, or a Hub dataset id.
        split (`str` or `None`, *optional*, defaults to `None`):
            Files: keep the rows whose `split` column equals it (a file without that column is used whole). Hub:
            the split to load. `None`: every row.
        config (`str` or `None`, *optional*, defaults to `None`):
            Hub configuration (`data_dir` for Anthropic/hh-rlhf).
        mapping (`str` or `None`, *optional*, defaults to `None`):
            Key of `MAPPINGS` to convert the source's columns; `None` infers it from a Hub id.
        max_samples (`int` or `None`, *optional*, defaults to `None`):
            Keep only the first rows.

    Returns:
        `datasets.Dataset`: at least one row, labels `harmful` or `benign`.
    """
    return _load("prompts", source, split, config, mapping, max_samples)[0]


def load_pairs(
    source: str = "bundled",
    split: str | None = None,
    *,
    config: str | None = None,
    mapping: str | None = None,
    max_samples: int | None = None,
) -> Dataset:
    """Load preference pairs with columns `prompt, chosen, rejected, label, category, split`.

    Arguments as in `load_prompts`; `source="bundled_heldout"` loads the held-out pairs (split `test`).
    """
    return _load("pairs", source, split, config, mapping, max_samples)[0]


def load_sft(
    source: str = "bundled",
    split: str | None = None,
    *,
    config: str | None = None,
    mapping: str | None = None,
    max_samples: int | None = None,
) -> Dataset:
    """Load conversations with columns `messages, label, category, split`; each ends with an assistant turn.

    Arguments as in `load_prompts`.
    """
    return _load("sft", source, split, config, mapping, max_samples)[0]


RESPONSE_COLUMNS = ("prompt", "label", "category", "split", "decoding", "response", "stopped", "refusal")


def read_responses(name: str, option: str = "responses") -> list[dict]:
    """The rows of a `safety-rlhf sample` file (`RESPONSE_COLUMNS`): a path, or a bare name in `safety_rlhf/data/`;
    several files as comma-separated names (e.g. the responses of the starting model and of the warm start), their
    rows in that order.

    `option` is the config field that named the file, for the error messages.
    """
    if "," in name:
        return [row for part in name.split(",") if part.strip() for row in read_responses(part.strip(), option)]
    path = Path(name)
    if not path.is_file() and (DATA_DIR / name).is_file():
        path = DATA_DIR / name
    if not path.is_file():
        raise SafetyRLHFError(
            f"{option}={name!r} is neither a file nor a file in {DATA_DIR}; write one with `safety-rlhf sample` "
            "(e.g. `make sample`)"
        )
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [key for key in RESPONSE_COLUMNS if key not in rows[0]] if rows else []
    if not rows or missing:
        raise SafetyRLHFError(
            f"{option}={name!r}: {'rows lack ' + ', '.join(missing) if rows else 'no rows'}; write the file with "
            "`safety-rlhf sample`"
        )
    return rows


def _load(
    kind: str, source: str, split: str | None, config: str | None, mapping: str | None, max_samples: int | None
) -> tuple[Dataset, Counter]:
    """The loaders' common path; also returns the dropped rows per reason."""
    bundled = BUNDLED[kind].get(source)
    path = DATA_DIR / bundled if bundled else Path(source)
    # A folder goes to `load_dataset` like a Hub id: it is a local copy of a Hub set.
    is_file = bundled is not None or path.is_file() or path.suffix.lower() in LOCAL_BUILDERS
    if not is_file and mapping is None:
        # The mapping whose name, with `-` for `_`, occurs in the Hub id (case-insensitive).
        mapping = next((name for name in MAPPINGS if name.replace("_", "-") in source.lower()), None)
    spec = _mapping(mapping, kind) if mapping else None
    if bundled and not path.is_file():
        raise SafetyRLHFError(f"bundled file {path} is missing; reinstall the package (`make install`)")
    raw = _read_file(path, bundled or source) if is_file else _read_hub(source, split, config, spec)
    if bundled and kind == "prompts" and BUNDLED["pairs"].get(source) == bundled:
        raw = _first_row_per_prompt(raw)  # a pairs file serving as prompts: each prompt has several pairs
    convert = getattr(spec, kind) if spec else None
    # Rows are dropped and counted only where the user cannot fix them (module docstring); otherwise they fail.
    lenient = spec is not None or not is_file
    rows, dropped = _check_rows(kind, _convert(kind, raw, convert, mapping), lenient)

    if split is not None:
        if not any(row["split"] is not None for row in rows):
            logger.warning("%s has no 'split' column: all its rows serve as split %r", source, split)
        selected = [row for row in rows if row["split"] in (split, None)]
        if rows and not selected:
            found = ", ".join(sorted({row["split"] for row in rows}))
            raise SafetyRLHFError(
                f"{source}: no rows with split {split!r} (found: {found}); pass one of those as "
                "--dataset_train_split / --dataset_test_split"
            )
        rows = selected
    rows = rows[:max_samples]
    if not rows:
        raise SafetyRLHFError(f"{source}: no usable rows (dropped: {_reasons(dropped)}); check the source and mapping")
    if dropped:
        logger.warning("%s: dropped %s", source, _reasons(dropped))
    for row in rows:
        row["split"] = row["split"] or "unknown"
    return Dataset.from_list(rows), dropped


def _first_row_per_prompt(raw: list[tuple[str, dict, None]]) -> list[tuple[str, dict, None]]:
    seen, kept = set(), []
    for where, row, hub_split in raw:
        if row.get("prompt") not in seen:
            seen.add(row.get("prompt"))
            kept.append((where, row, hub_split))
    return kept


def _mapping(name: str, kind: str) -> Mapping:
    if name not in MAPPINGS:
        raise SafetyRLHFError(f"dataset_mapping={name!r} is unknown; use one of: {', '.join(MAPPINGS)}")
    if getattr(MAPPINGS[name], kind) is None:
        provided = ", ".join(k for k in COLUMNS if getattr(MAPPINGS[name], k) is not None)
        raise SafetyRLHFError(f"dataset_mapping={name!r} provides no {kind} (only: {provided}); use another source")
    return MAPPINGS[name]


def _read_file(path: Path, name: str) -> list[tuple[str, dict, None]]:
    """Rows of a local file as (where, row, split): `where` names the line or row index for error messages."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise SafetyRLHFError(f"{name}: no such file; check the path")
    if suffix not in LOCAL_BUILDERS:
        raise SafetyRLHFError(
            f"{name}: not a data file ({suffix or 'no extension'}); use one of: {', '.join(LOCAL_BUILDERS)}"
        )
    if suffix == ".jsonl":
        return [(where, row, None) for where, row in read_jsonl(path, name)]
    # "NA" or "null" is a valid prompt; pandas would turn it into a missing value.
    kwargs = {"keep_default_na": False} if suffix == ".csv" else {}
    try:
        dataset = load_dataset(LOCAL_BUILDERS[suffix], data_files=str(path), split="train", **kwargs)
    except Exception as err:
        raise SafetyRLHFError(f"{name}: cannot read it as {suffix[1:]} ({_first_line(err)}); fix the file") from err
    return [(f"{name} row {i}", row, None) for i, row in enumerate(_iter_rows(dataset))]


def read_jsonl(path: Path, name: str) -> list[tuple[str, dict]]:
    """(`name line N`, object) for each non-blank line; a line that is not a JSON object fails with its number.

    Parsed here rather than by `datasets`, which cannot say which line is broken.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is no part of line 1
    except UnicodeDecodeError as err:
        number = raw[: err.start].count(b"\n") + 1
        raise SafetyRLHFError(
            f"{name} line {number}: byte {raw[err.start : err.start + 1]!r} is not UTF-8; save the file as UTF-8"
        ) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SafetyRLHFError(f"{where}: invalid JSON ({err}); fix the line or remove it") from None
        if not isinstance(row, dict):
            raise SafetyRLHFError(f"{where}: expected a JSON object, got {type(row).__name__}; fix the line")
        rows.append((where, row))
    return rows


def _read_hub(source: str, split: str | None, config: str | None, mapping: Mapping | None):
    kwargs = mapping.load_kwargs(config) if mapping else _name_kwargs(config)
    try:
        loaded = load_dataset(source, split=split, **kwargs)
    except Exception as err:
        if Path(source).is_dir():
            raise SafetyRLHFError(
                f"dataset_name {source!r} is a folder that datasets cannot load ({_first_line(err)}); pass a data "
                f"file ({', '.join(LOCAL_BUILDERS)}), or a folder holding a saved copy of a Hub dataset"
            ) from err
        raise SafetyRLHFError(
            f"cannot load Hub dataset {source!r} (split={split!r}, {kwargs}): {_first_line(err)}; check the id, "
            "--dataset_config and split, log in (`hf auth login`) for gated sets, or use a local file "
            "(offline: a cached copy with HF_HUB_OFFLINE=1)"
        ) from err
    named = loaded.items() if isinstance(loaded, DatasetDict) else [(split, loaded)]
    for name, dataset in named:
        for i, row in enumerate(_iter_rows(dataset)):
            yield f"{source} {name} row {i}", row, name


def _iter_rows(dataset: Dataset) -> Iterator[dict]:
    # Batches of columns are much faster to read than one row at a time.
    for batch in dataset.iter(batch_size=1024):
        for values in zip(*batch.values()):
            yield dict(zip(batch, values))


def _convert(kind: str, raw, convert: Callable | None, mapping: str | None) -> Iterator[tuple[str, dict | str]]:
    """Rows in our columns (or skip reasons); `split` is the Hub split, else the row's `split`, else None."""
    for where, row, hub_split in raw:
        if convert is None:
            missing = [column for column in REQUIRED[kind] if column not in row]
            if missing:
                raise SafetyRLHFError(
                    f"{where}: missing column(s) {', '.join(missing)} (found: {', '.join(row)}); rename them, or "
                    f"pass --dataset_mapping (one of: {', '.join(MAPPINGS)}) for a known Hub set"
                )
            ours = {column: row[column] for column in REQUIRED[kind]}
            ours.update(
                {column: row.get(column) or "unknown" for column in ("label", "category") if column not in ours}
            )
            ours["split"] = hub_split or row.get("split")
        else:
            try:
                ours = convert(row)
            except KeyError as err:
                raise SafetyRLHFError(
                    f"{where}: missing column {err} for dataset_mapping {mapping!r} (found: {', '.join(row)}); "
                    "pass the right --dataset_mapping"
                ) from None
            if isinstance(ours, dict):
                ours["split"] = hub_split
        yield where, ours


def _check_rows(kind: str, rows, lenient: bool) -> tuple[list[dict], Counter]:
    kept, dropped, seen = [], Counter(), {}
    for where, row in rows:
        problem = row if isinstance(row, str) else _problem(kind, row)
        if problem:
            if not lenient:
                raise SafetyRLHFError(f"{where}: {problem}; fix the row or remove it")
            dropped[problem] += 1
            continue
        if row["label"] not in LABELS[kind]:
            raise SafetyRLHFError(f"{where}: unknown label {row['label']!r}; use one of: {', '.join(LABELS[kind])}")
        key = _key(kind, row)
        if key in seen:
            index, first = seen[key]
            if not lenient and row["label"] != kept[index]["label"]:
                raise SafetyRLHFError(
                    f"{where}: {_short(key[0] if isinstance(key[0], str) else key[0][1])} is labelled {row['label']!r} here but {kept[index]['label']!r} on "
                    f"{first}; keep one row with the right label"
                )
            if not lenient:
                raise SafetyRLHFError(f"{where}: duplicate of {first}; remove one of them")
            if row["label"] == "harmful" and kept[index]["label"] != "harmful":
                kept[index].update(label="harmful", category=row["category"])
            dropped["duplicate"] += 1
            continue
        seen[key] = (len(kept), where)
        kept.append(row)
    return kept, dropped


def _short(text: str, width: int = 60) -> str:
    """`text` quoted for a one-line message, cut at `width` characters."""
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _text_problem(what: str, text) -> str | None:
    if not isinstance(text, str):
        return f"{what} is not text (got {type(text).__name__} {text!r})"
    return None if text.strip() else f"empty {what}"


def _problem(kind: str, row: dict) -> str | None:
    """What makes a row unusable, or None."""
    for column in ("category", "split"):
        if row.get(column) is not None and not isinstance(row[column], str):
            return f"{column} is not text (got {type(row[column]).__name__} {row[column]!r})"
    if kind == "sft":
        messages = row["messages"]
        if not (isinstance(messages, list) and len(messages) >= 2 and all(isinstance(m, dict) for m in messages)):
            return "messages is not a list of {role, content} turns"
        for i, message in enumerate(messages):
            if message.get("role") not in ROLES:
                return f"message {i} has role {message.get('role')!r} (allowed: {', '.join(ROLES)})"
            problem = _text_problem("content", message.get("content"))
            if problem:
                return f"message {i} has {problem}" if problem.startswith("empty") else f"message {i} {problem}"
        return None if messages[-1]["role"] == "assistant" else "the last message is not an assistant turn"
    for column in TEXTS[kind]:
        problem = _text_problem(column, row[column])
        if problem:
            return problem
    if kind == "pairs" and row["chosen"].strip() == row["rejected"].strip():
        return "chosen == rejected"
    return None


def _key(kind: str, row: dict) -> tuple:
    if kind == "sft":
        return tuple((message["role"], message["content"].strip()) for message in row["messages"])
    return tuple(row[column].strip() for column in TEXTS[kind])


def _reasons(dropped: Counter) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in dropped.most_common()) or "none"


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def apply_chat_template(dataset: Dataset, tokenizer) -> Dataset:
    """Add `text`: the prompt as a single user turn, rendered by the tokenizer's chat template with the generation
    prompt, through TRL's helper so prompts render exactly as in TRL's trainers."""

    def render(row: dict) -> dict:
        example = {"prompt": [{"role": "user", "content": row["prompt"]}]}
        return {"text": maybe_apply_chat_template(example, tokenizer)["prompt"]}

    return dataset.map(render)


def tokenize_prompts(dataset: Dataset, tokenizer, max_prompt_length: int) -> tuple[Dataset, int]:
    """Apply the chat template, add `input_ids` (unpadded) and drop the prompts longer than `max_prompt_length`.

    Returns:
        `tuple[datasets.Dataset, int]`: the kept prompts and how many were dropped.
    """
    dataset = apply_chat_template(dataset, tokenizer)
    # The chat template already wrote the special tokens; letting the tokenizer add them would double BOS.
    dataset = dataset.map(
        lambda batch: {"input_ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}, batched=True
    )
    lengths = [len(ids) for ids in dataset["input_ids"]]
    kept = [i for i, length in enumerate(lengths) if length <= max_prompt_length]
    if not kept:
        raise SafetyRLHFError(
            f"all {len(lengths)} prompts are longer than max_prompt_length={max_prompt_length} tokens (shortest "
            f"{min(lengths)}, longest {max(lengths)}); raise --max_prompt_length to at least {min(lengths)}"
        )
    return dataset.select(kept), len(lengths) - len(kept)


def describe(dataset: Dataset) -> dict:
    """Row count and counts per label, category and split, most frequent first."""
    summary = {"rows": len(dataset)}
    for column in ("label", "category", "split"):
        summary[column] = dict(Counter(dataset[column]).most_common())
    return summary


def main(script_args: ScriptArguments, kind: str = "prompts") -> dict:
    """`safety-rlhf data`: load every split of the source as `kind` rows, print the counts and the dropped rows."""
    if kind not in COLUMNS:
        raise SafetyRLHFError(f"kind={kind!r} is unknown; use one of: {', '.join(COLUMNS)}")
    dataset, dropped = _load(kind, script_args.dataset_name, None, **source_options(script_args))
    summary = {**describe(dataset), "dropped": dict(dropped.most_common())}
    table = Table(title=f"{script_args.dataset_name}: {summary['rows']} {kind} rows")
    for name, justify in (("column", "left"), ("value", "left"), ("rows", "right")):
        table.add_column(name, justify=justify)
    for column in ("split", "label", "category", "dropped"):
        for value, count in summary[column].items():
            table.add_row(column, value, str(count))
    Console().print(table)
    return summary
