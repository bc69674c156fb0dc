"""Tables and plots of an evaluation: `report.md` of `safety-rlhf eval`, and the eval tables of the model card.

Everything here reads `evaluate`'s results (or the `eval.json` they were saved to) and a training run's
`metrics.jsonl`; nothing loads a model. `report.md` and the card of `hub.model_card` draw their tables with the same
functions (`headline_table`, `category_table`, `metrics_table`), the card without confidence intervals.
"""

import json
from pathlib import Path

from . import SafetyRLHFError

EVAL_FILE = "eval.json"
REPORT_FILE = "report.md"
RESPONSES_FILE = "responses.jsonl"
CURVES_PNG = "training_curves.png"
CATEGORY_PNG = "refusal_by_category.png"
METRICS_FILE = "metrics.jsonl"
# (metrics.jsonl key, subplot title): what to watch beside the score (a rising score with collapsing length or
# entropy is reward hacking).
CURVES = (
    ("objective/scores", "reward model score (objective/scores)"),
    ("objective/kl", "KL to the reference (objective/kl)"),
    ("policy/entropy_avg", "entropy per token (policy/entropy_avg)"),
    ("val/response_length", "response length, tokens (val/response_length)"),
)
# Training metrics summarised (first and last value) in the model card.
METRIC_KEYS = (
    "objective/scores",
    "objective/kl",
    *(key for key, _ in CURVES[2:]),
    "safety/harmful_refusal_rate",
    "safety/benign_compliance_rate",
    "kl_coef",
)
PHRASE_LIST = "phrase_list"
JUDGE_WEAKNESS = {
    PHRASE_LIST: (
        "The phrase lists of `reward.refusal.classify_refusal` miss late or implicit refusals (a lecture, a change "
        "of subject, an answer to a safer question, deliberately vague help) and so over-count compliance; a "
        "refusal phrase quoted inside an answer counts as a refusal; a response cut at `max_new_tokens` is judged "
        "on its beginning only. Treat these rates as a disclosed secondary metric and rerun with "
        "`--judge_model allenai/wildguard` for numbers to report."
    ),
    "judge": (
        "A WildGuard-format judge answers refusal yes/no only: it never reports a partial refusal (a refusal followed "
        "by help counts as one or the other), and like any model judge it errs on short or truncated responses."
    ),
}
HEADLINE = (
    # (key or (key, subkey), row name, is a rate)
    ("harmful_refusal_rate", "harmful: refusal rate (full + partial) ↑", True),
    ("harmful_full_refusal_rate", "harmful: full refusal rate", True),
    ("benign_compliance_rate", "benign: compliance rate ↑ (over-refusal = 1 - this)", True),
    ("benign_alarming_compliance_rate", "benign but alarming (xstest_*): compliance ↑", True),
    ("plain_benign_compliance_rate", "plain benign: compliance ↑", True),
    (("partial_refusal_rate", "harmful"), "harmful: partial refusal rate", True),
    (("partial_refusal_rate", "benign"), "benign: partial refusal rate", True),
    ("mean_score", "reward model: mean score", False),
    (("mean_score_by_label", "harmful"), "reward model: mean score, harmful", False),
    (("mean_score_by_label", "benign"), "reward model: mean score, benign", False),
    ("mean_response_tokens", "mean response length (tokens)", False),
    ("stopped_rate", "responses that stopped before max_new_tokens", True),
)
# Columns of the per-category table in report.md: (per_category key, column title).
CATEGORY_COLUMNS = (("refusal_rate", "refusal"), ("compliance_rate", "compliance"))


def judge_weakness(judge: str) -> str:
    """What the refusal judge that classified the responses is known to get wrong."""
    return JUDGE_WEAKNESS[PHRASE_LIST if judge == PHRASE_LIST else "judge"]


# ---------------------------------------------------------------------------------------------------------------------
# Formatting


def get(result: dict, key):
    """`result[key]`, or `result[key[0]][key[1]]` for a pair, None where absent or not nested."""
    if isinstance(key, tuple):
        inner = result.get(key[0])
        return inner.get(key[1]) if isinstance(inner, dict) else None
    return result.get(key)


def fmt(value, rate: bool, number: str = ".3f") -> str:
    """A rate in % with one decimal, any other number in the `number` format; `n/a` for anything else."""
    if not isinstance(value, int | float):
        return "n/a"
    return f"{100 * value:.1f}%" if rate else format(value, number)


def _fmt_change(before, after, rate: bool) -> str:
    if before is None or after is None:
        return "n/a"
    delta = after - before
    return f"{100 * delta:+.1f} pts" if rate else f"{delta:+.3f}"


def _with_ci(result: dict, key, rate: bool) -> str:
    text = fmt(get(result, key), rate)
    ci = (result.get("ci95") or {}).get(key) if isinstance(key, str) else None
    return f"{text} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else text


def _cell(text, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|") or "(empty)"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


# ---------------------------------------------------------------------------------------------------------------------
# Tables (report.md and the model card)


def headline_table(results: list[dict], names: list[str], intervals: bool = True, number: str = ".3f") -> list[str]:
    """One row per `HEADLINE` metric that any model has, one column per model.

    With `intervals` (report.md) rates carry their 95% Wilson interval and, for two models, a `change` column
    (final - baseline) follows; without (the model card) the cells are the plain values. `number` formats the
    metrics that are not rates.
    """
    change = intervals and len(results) == 2
    rows = []
    for key, title, rate in HEADLINE:
        values = [get(r, key) for r in results]
        if all(v is None for v in values):
            continue
        cells = [_with_ci(r, key, rate) for r in results] if intervals else [fmt(v, rate, number) for v in values]
        if change:
            cells.append(_fmt_change(values[0], values[1], rate))
        rows.append([title, *cells])
    return markdown_table(["metric", *names] + (["change"] if change else []), rows)


def quality_table(results: list[dict], names: list[str]) -> list[str]:
    """Length of the benign answers, share of looping responses and KL to a reference, one column per model."""
    rows = [
        ["benign answers: mean tokens", *(fmt(r.get("benign_answer_tokens"), False, ".1f") for r in results)],
        *(
            [
                f"{label} responses repeating a 4-gram",
                *(fmt(get(r, ("repeated_4gram_rate", label)), True) for r in results),
            ]
            for label in ("harmful", "benign")
        ),
    ]
    if any(r.get("kl_to_reference") is not None for r in results):
        reference = next(r.get("kl_reference") for r in results if r.get("kl_reference"))
        rows.append(
            [f"KL to `{reference}` per response", *(fmt(r.get("kl_to_reference"), False, ".2f") for r in results)]
        )
    return markdown_table(["metric", *names], rows)


def categories(results: list[dict]) -> list[tuple[str, dict]]:
    """`(category, info)` of every category any model was evaluated on, harmful ones first, then by name; `info`
    (label, n) is the last model's that has the category."""
    found = {c: info for r in results for c, info in (r.get("per_category") or {}).items() if info}
    return sorted(found.items(), key=lambda item: (item[1].get("label") != "harmful", item[0]))


def category_table(results: list[dict], names: list[str], columns=CATEGORY_COLUMNS) -> list[str]:
    """One row per category (`categories`): label, n, then for each `(key, title)` of `columns` one cell per model."""
    rows = []
    for c, info in categories(results):
        infos = [(r.get("per_category") or {}).get(c) or {} for r in results]
        cells = [c, str(info.get("label", "n/a")), str(info.get("n", "n/a"))]
        cells += [fmt(i.get(key), True) for key, _ in columns for i in infos]
        rows.append(cells)
    return markdown_table(["category", "label", "n"] + [f"{title} ({n})" for _, title in columns for n in names], rows)


def metrics_table(records: list[dict]) -> list[str]:
    """First and last logged value of each `METRIC_KEYS` metric of a training run's `metrics.jsonl`."""
    rows = []
    for key in METRIC_KEYS:
        values = [r[key] for r in records if isinstance(r.get(key), int | float)]
        if values:
            rows.append([f"`{key}`", fmt(values[0], False, ".4g"), fmt(values[-1], False, ".4g")])
    return markdown_table(["metric", "first", "last"], rows)


# ---------------------------------------------------------------------------------------------------------------------
# Plots


def read_metrics(path) -> list[dict]:
    """The JSON objects of a training run's `metrics.jsonl`; a malformed line fails with its number."""
    path = Path(path)
    if not path.is_file():
        raise SafetyRLHFError(
            f"metrics_file {path} does not exist; pass a training run's metrics.jsonl or leave it unset"
        )
    from .data import read_jsonl

    records = [record for _, record in read_jsonl(path, str(path))]
    if not records:
        raise SafetyRLHFError(f"{path} holds no metrics; pass the metrics.jsonl of a run that logged updates")
    return records


def plot_training_curves(records: list[dict], path) -> Path:
    """Four panels over updates: reward-model score, KL to the reference, entropy, response length."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    steps = [r.get("step", i + 1) for i, r in enumerate(records)]
    for ax, (key, title) in zip(axes, CURVES):
        points = [(s, r[key]) for s, r in zip(steps, records) if isinstance(r.get(key), int | float)]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None)
        else:
            ax.text(0.5, 0.5, f"{key} not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    fig.suptitle("PPO training: watch KL, entropy and length beside the score (reward hacking)")
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_refusal_by_category(results: list[dict], names: list[str], path) -> Path:
    """Horizontal bars of the refusal rate per category, one bar per model; harmful categories first."""
    from matplotlib.figure import Figure

    found = categories(results)
    fig = Figure(figsize=(9, 1.5 + 0.32 * len(found) * len(results)), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(results)
    colors = ("#999999", "#1f77b4") if len(results) == 2 else ("#1f77b4",)
    for k, (result, name) in enumerate(zip(results, names)):
        ys = [i + (k - (len(results) - 1) / 2) * height for i in range(len(found))]
        values = [(result["per_category"].get(c) or {}).get("refusal_rate") or 0.0 for c, _ in found]
        ax.barh(ys, values, height=height, label=name, color=colors[k])
    ax.set_yticks(range(len(found)), [f"{c} ({info['label']}, n={info['n']})" for c, info in found], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("refusal rate (full + partial): high is right for harmful, wrong for benign")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Refusal rate per category (judge: refusal detector)")
    fig.savefig(path, dpi=100)
    return Path(path)


# ---------------------------------------------------------------------------------------------------------------------
# report.md


def write_report(output_dir, results: list[dict], metrics_file=None) -> Path:
    """Write the PNG plots and `report.md` into `output_dir`; returns the path of report.md.

    Args:
        output_dir (`str` or `os.PathLike`):
            The folder (created if needed).
        results (`list[dict]`):
            `evaluate`'s results: the model's, or the baseline's then the model's.
        metrics_file (`str` or `os.PathLike`, *optional*):
            A training run's `metrics.jsonl`, plotted to `training_curves.png`.
    """
    out = Path(output_dir)
    records = read_metrics(metrics_file) if metrics_file else None
    out.mkdir(parents=True, exist_ok=True)
    names = model_names(results)
    plot_refusal_by_category(results, names, out / CATEGORY_PNG)
    if records:
        plot_training_curves(records, out / CURVES_PNG)
    path = out / REPORT_FILE
    path.write_text(markdown(results, names, metrics_file if records else None), encoding="utf-8")
    return path


def model_names(results: list) -> list[str]:
    """Column names of one or two evaluated models: the model, or the baseline then the final one."""
    return ["baseline", "final"] if len(results) == 2 else ["model"]


def markdown(results: list[dict], names: list[str], metrics_file=None) -> str:
    """The text of `report.md`: settings, headline rates, rates per category, training curves, judge, samples."""
    final = results[-1]
    lines = ["# Safety evaluation", ""]
    for name, result in zip(names, results):
        lines.append(f"- **{name}**: `{result['model']}`")
    data = final.get("data") or {}
    if data:
        lines.append(
            f"- **prompts**: {data.get('n_prompts')} from `{data.get('dataset_name')}` split `{data.get('split')}`"
            + (
                f" ({data['dropped_long_prompts']} longer than max_prompt_length dropped)"
                if data.get("dropped_long_prompts")
                else ""
            )
        )
    counts = final["counts"]
    lines.append(
        f"- **n**: {counts['harmful']['n']} harmful, {counts['benign']['n']} benign "
        f"({counts['benign_alarming']['n']} alarming-looking `xstest_*`, {counts['plain_benign']['n']} plain)"
        + (f"; {per_prompt}" if (per_prompt := _per_prompt(final)) else "")
    )
    lines.append(f"- **judge**: `{final['judge']}`; **reward model**: `{final.get('reward_model') or 'none'}`")
    decoding = final["decoding"]
    lines.append(
        "- **decoding**: "
        + ", ".join(f"{k}={v}" for k, v in decoding.items() if k != "prompt_format")
        + f" ({decoding.get('prompt_format')})"
    )
    lines += ["", "## Headline", "", *headline_table(results, names)]
    lines += [
        "",
        "Rates in %, with 95% Wilson intervals in brackets. Over-refusal is a failure: a refused benign prompt lowers "
        "the benign compliance rate just as a complied harmful prompt lowers the harmful refusal rate.",
    ]
    if final.get("mean_score") is not None:
        lines += [
            "",
            "The reward model's mean score is not an independent judge when it is the model PPO was trained "
            "against: a policy that games it raises the score without becoming safer. Read the judge's rates first.",
        ]

    lines += ["", "## Response quality", "", *quality_table(results, names)]
    lines += [
        "",
        "Benign answers must stay answers: shorter ones, or more that loop (a word 4-gram repeated), mean the policy "
        "learned to say less, not to be safer. The KL is summed over each response (nats), against the reference "
        "model named in the table, along the evaluated model's own responses.",
    ]
    lines += ["", "## Refusal rate per category", "", f"![refusal rate per category]({CATEGORY_PNG})", ""]
    lines += category_table(results, names)

    if metrics_file:
        lines += [
            "",
            "## Training curves",
            "",
            f"From `{metrics_file}`. A rising score with collapsing entropy or response length, or a runaway KL, "
            "is reward hacking.",
            "",
            f"![training curves]({CURVES_PNG})",
        ]

    lines += ["", "## Judge", "", f"Refusals were classified by `{final['judge']}`.", judge_weakness(final["judge"])]
    if final.get("stopped_rate") is not None and final["stopped_rate"] < 0.5:
        lines.append(
            f"Only {100 * final['stopped_rate']:.0f}% of the responses stopped before max_new_tokens="
            f"{decoding['max_new_tokens']}: a refusal after the cut is invisible to any judge; raise max_new_tokens."
        )

    lines += ["", "## Sample responses", ""]
    by_prompt = [{s["prompt"]: s for s in r["samples"]} for r in results]
    rows = []
    for sample in final["samples"]:
        matches = [m.get(sample["prompt"]) or {} for m in by_prompt]
        cells = [_cell(sample["prompt"], 100), sample["label"]]
        cells += [m.get("class", "n/a") for m in matches]
        cells += [_cell(m.get("response", "n/a")) for m in matches]
        rows.append(cells)
    lines += markdown_table(
        ["prompt", "label"] + [f"{n}: class" for n in names] + [f"{n}: response" for n in names], rows
    )
    lines += ["", f"Every response is in `{RESPONSES_FILE}`.", ""]
    return "\n".join(lines)


def _per_prompt(result: dict) -> str:
    """What the counts are when several responses were sampled per prompt (else nothing)."""
    k = (result.get("decoding") or {}).get("samples_per_prompt", 1)
    return f"responses, {k} per prompt (the intervals count prompts)" if k > 1 else ""


def print_summary(results: list[dict], names: list[str]) -> None:
    """The headline rates of `report.md` as a table on the console."""
    from rich.console import Console
    from rich.table import Table

    final = results[-1]
    size = f"{final['counts']['total']} {_per_prompt(final) or 'prompts'}"
    table = Table(title=f"safety evaluation ({size}, judge {final['judge']})")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    if len(results) == 2:
        table.add_column("change", justify="right")
    for key, title, rate in HEADLINE[:5] + HEADLINE[7:8]:
        values = [get(r, key) for r in results]
        if all(v is None for v in values):
            continue
        cells = [fmt(v, rate) for v in values]
        if len(results) == 2:
            cells.append(_fmt_change(values[0], values[1], rate))
        table.add_row(title, *cells)
    Console().print(table)


def read_eval(path) -> list[tuple[str, dict]]:
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
        results = [data["baseline"], data] if isinstance(data.get("baseline"), dict) else [data]
    elif isinstance(data, list) and 1 <= len(data) <= 2 and all(isinstance(r, dict) for r in data):
        results = data
    else:
        raise SafetyRLHFError(f"{path} holds no evaluation result (expected an object or a list of one or two)")
    return list(zip(model_names(results), results))
