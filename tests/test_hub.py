"""`safety-rlhf push`: the model card of a run folder and the upload, offline (HfApi's methods are replaced)."""

import hashlib
import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import yaml

from safety_rlhf import SafetyRLHFError
from safety_rlhf.hub import PushArguments, main, model_card, model_kind, push, redact

SECRET = "hf_SECRET123"
BASE = "Qwen/Qwen2.5-0.5B-Instruct"
REPO = "me/tiny-safety"
METRICS = [
    {"step": s, "episode": 32 * s, "objective/scores": 0.25 * s, "objective/kl": 0.5 * s, "kl_coef": 0.05}
    for s in range(1, 5)
]


def _result(model: str, harmful_refused: int) -> dict:
    """An `evaluate` result for 4 harmful and 2 benign prompts, `harmful_refused` of the harmful ones refused."""
    from safety_rlhf.evaluate import summarize

    rows = [
        {"label": "harmful", "category": "weapons", "class": "full_refusal" if i < harmful_refused else "compliance"}
        for i in range(4)
    ]
    rows += [{"label": "benign", "category": "xstest_homonyms", "class": c} for c in ("compliance", "full_refusal")]
    return {"model": model, **summarize(rows), "judge": "phrase_list", "decoding": {"temperature": 0.0}}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished PPO run on a tiny policy: config.yaml (with secrets), a LoRA adapter with its tokenizer, the critic,
    metrics, eval.json (baseline and final), and two checkpoints, one of them unfinished."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import ModelConfig

    from safety_rlhf.config import SafetyPPOConfig, ScriptArguments, save_config
    from safety_rlhf.evaluate import eval_payload
    from safety_rlhf.tiny import TinyArguments, build_tiny_models

    root = tmp_path_factory.mktemp("hub")
    policy = build_tiny_models(
        TinyArguments(output_dir=str(root / "tiny"), hidden_size=32, num_hidden_layers=1, vocab_size=300)
    )["policy"]
    run = root / "ppo"
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(policy), lora).save_pretrained(run)
    AutoTokenizer.from_pretrained(policy).save_pretrained(run)
    AutoModelForCausalLM.from_pretrained(policy).save_pretrained(run / "value")
    save_config(
        run,
        script_args=ScriptArguments(),
        training_args=SafetyPPOConfig(output_dir=str(run), use_cpu=True, hub_token=SECRET, kl_coef=0.07),
        model_args=ModelConfig(model_name_or_path=BASE, use_peft=True),
    )
    # As if an older writer had not masked the token, and a token pasted into a free-text field.
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["training_args"].update(hub_token=SECRET, run_name=f"run-{SECRET}")
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in METRICS))
    payload = eval_payload([_result("runs/sft", 2), _result("runs/ppo", 3)])
    (run / "eval.json").write_text(json.dumps(payload))
    for name in ("checkpoint-2", "checkpoint-4.tmp"):
        (run / name).mkdir()
        shutil.copy(run / "adapter_model.safetensors", run / name)
        (run / name / "state.pt").write_bytes(b"optimizer")
    return run


@pytest.fixture
def run(template, tmp_path):
    """A private copy of the run (tests may break it); the adapter still points at the tiny base."""
    return Path(shutil.copytree(template, tmp_path / "ppo"))


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _tree(folder: Path) -> dict[str, str]:
    files = (p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


class FakeHub:
    """Records HfApi's create_repo and upload_folder calls (bound to this object, not to the HfApi) and keeps the
    uploaded folder's files (it is deleted after)."""

    def __init__(self, monkeypatch, token="hf_fake"):
        self.calls, self.files, self.on_upload = [], {}, None
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: token)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", self.create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", self.upload_folder)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        folder = Path(kwargs["folder_path"])
        self.files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        if self.on_upload:
            self.on_upload(folder)


# ---------------------------------------------------------------------------------------------------------------------
# Model card


def test_model_card_metadata_sections_and_no_secret(run):
    card = model_card(run, REPO)
    meta = _front_matter(card)
    assert meta["library_name"] == "peft"
    assert meta["base_model"] == BASE
    assert meta["tags"] == ["safety", "rlhf", "ppo", "trl"]
    assert meta["license"] == "unknown"
    assert "datasets" not in meta  # `bundled` is no Hub id
    assert "| PPO prompts | bundled with safety-rlhf | written by the safety-rlhf authors" in card
    # The whole resolved config, secrets removed: hub_token dropped, a token in a value replaced.
    config = yaml.safe_load(card.split("```yaml\n")[1].split("```")[0])
    assert config["training_args"]["kl_coef"] == 0.07 and config["training_args"]["cliprange"] == 0.2
    assert config["model_args"]["model_name_or_path"] == BASE and config["model_args"]["lora_r"] == 16
    assert "hub_token" not in config["training_args"] and config["training_args"]["run_name"] == "<redacted>"
    assert "stop_token" in config["training_args"]  # a vocabulary entry, not a credential
    assert SECRET not in card
    # Evaluation, baseline then final: 2/4 -> 3/4 harmful prompts refused, 1/2 benign complied.
    assert "| harmful: refusal rate (full + partial) ↑ | 50.0% | 75.0% |" in card
    assert "| benign: compliance rate ↑ (over-refusal = 1 - this) | 50.0% | 50.0% |" in card
    assert "| weapons | harmful | 4 | 50.0% | 75.0% |" in card
    assert "**baseline**: `runs/sft`" in card and "**judge**: `phrase_list`" in card
    # Training curve: first and last values, number of updates.
    assert "4 PPO updates logged in `metrics.jsonl` (last step 4, 128 episodes)" in card
    assert "| `objective/scores` | 0.25 | 1 |" in card and "| `objective/kl` | 0.5 | 2 |" in card
    assert f'AutoPeftModelForCausalLM.from_pretrained("{REPO}")' in card
    assert "The reward model is not a judge" in card and "jailbreaks" in card and "late or implicit" in card
    # The adapter was saved against a local base: the card says how to load it anyway.
    assert "not a Hub id" in card


@pytest.mark.parametrize(
    "dataset, licence, hub",
    [
        ("PKU-Alignment/PKU-SafeRLHF", "CC-BY-NC-4.0", True),
        ("PKU-Alignment/BeaverTails", "CC-BY-NC-4.0", True),
        ("Anthropic/hh-rlhf", "MIT", True),
        ("allenai/wildjailbreak", "ODC-BY (gated)", True),
        ("allenai/wildguardmix", "ODC-BY (gated)", True),
        ("walledai/XSTest", "CC-BY-4.0", True),
        ("Paul/XSTest", "CC-BY-4.0", True),
        ("someone/prompts", "not recorded here: check the dataset card", True),
        ("data/prompts.jsonl", "that of its source (not on the Hub)", False),
    ],
)
def test_model_card_dataset_licences(run, dataset, licence, hub):
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["script_args"]["dataset_name"] = dataset
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    card = model_card(run)
    assert f"| {licence} |" in card
    assert _front_matter(card).get("datasets") == ([dataset] if hub else None)
    assert ("non-commercial" in card) == ("NC" in licence)


def test_model_card_of_a_ppo_lag_run_names_the_cost_model_and_its_critic(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert "PPO-Lagrangian" not in model_card(run) and "cost_value/" not in model_card(run)
    config["training_args"].update(algorithm="ppo_lag", cost_model_path="runs/cost", threshold=-3.7)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(run / "value", run / "cost_value")
    card = model_card(run)
    assert "at or below `-3.7`" in card and "- **cost model**: `runs/cost`" in card
    assert "- `cost_value/` holds the PPO-Lagrangian cost critic" in card


def test_model_card_renders_what_exists(run, tmp_path):
    (run / "metrics.jsonl").unlink()
    (run / "eval.json").unlink()
    card = model_card(run)
    assert "Not evaluated yet" in card and "Training curve" not in card
    assert card.splitlines()[card.splitlines().index("---", 1) + 2] == "# ppo"  # the title falls back to the folder
    # A list of one result (no baseline), given from outside the run.
    (tmp_path / "eval.json").write_text(json.dumps([_result("runs/ppo", 1)]))
    card = model_card(run, eval_file=tmp_path / "eval.json")
    assert "| metric | model |" in card and "| harmful: refusal rate (full + partial) ↑ | 25.0% |" in card


def test_model_card_is_rendered_from_the_shipped_template_with_the_report_tables(run, tmp_path, monkeypatch):
    import ast
    import fnmatch
    import re

    from huggingface_hub import ModelCard

    from safety_rlhf import hub, report

    template = hub.CARD_TEMPLATE.read_text(encoding="utf-8")
    card = model_card(run, REPO)
    headings = [line for line in template.splitlines() if line.startswith("## ")]
    assert len(headings) >= 6 and all(heading in card.splitlines() for heading in headings)
    assert ModelCard(card).data.library_name == "peft"
    # The eval tables are report.md's functions, not a second copy.
    results = [result for _, result in report.read_eval(run / "eval.json")]
    assert "\n".join(report.headline_table(results, ["baseline", "final"], intervals=False, number=".4g")) in card
    # It ships in the wheel: the package data of pyproject.toml names it.
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    patterns = ast.literal_eval(re.search(r"^safety_rlhf = (\[.*\])$", pyproject, re.MULTILINE).group(1))
    relative = hub.CARD_TEMPLATE.relative_to(Path(hub.__file__).parent).as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), patterns
    # The card follows the file: an edited template changes it.
    edited = tmp_path / "model_card.md"
    edited.write_text(template.replace("## How to use", "## Loading it"), encoding="utf-8")
    monkeypatch.setattr(hub, "CARD_TEMPLATE", edited)
    card = model_card(run, REPO)
    assert "## Loading it" in card and "## How to use" not in card


@pytest.mark.parametrize(
    "content, message", [(None, "eval_file .* does not exist"), ("{oops", "is not valid JSON"), ("[]", "holds no")]
)
def test_model_card_bad_eval_file(run, tmp_path, content, message):
    if content is not None:
        (tmp_path / "eval.json").write_text(content)
    with pytest.raises(SafetyRLHFError, match=message):
        model_card(run, eval_file=tmp_path / "eval.json")


def test_model_card_full_model_run(template, tmp_path):
    full = tmp_path / "full"
    shutil.copytree(template / "value", full)
    shutil.copy(template / "config.yaml", full)
    assert model_kind(full) == "full"
    card = model_card(full, REPO)
    assert _front_matter(card)["library_name"] == "transformers"
    assert f'AutoModelForCausalLM.from_pretrained("{REPO}")' in card and "Peft" not in card


def test_redact_nested_keys_and_values():
    config = {
        "a": {"hub_token": "x", "wandb_api_key": "y", "stop_token": "eos", "pad_token_id": 3, "max_new_tokens": 8},
        "b": [f"Bearer {SECRET}", "hf_short", {"token": "z"}],
    }
    assert redact(config) == {
        "a": {"stop_token": "eos", "pad_token_id": 3, "max_new_tokens": 8},
        "b": ["<redacted>", "hf_short", {}],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Push


def test_push_uploads_a_staging_folder_and_leaves_the_run_untouched(run, monkeypatch):
    from huggingface_hub.utils import filter_repo_objects

    hub = FakeHub(monkeypatch)
    before = _tree(run)
    url = push(PushArguments(run_dir=str(run), hub_model_id=REPO))
    assert url == f"https://huggingface.co/{REPO}"
    (create, repo, create_kwargs), (upload, upload_repo, kwargs) = hub.calls
    assert (create, repo, create_kwargs) == (
        "create_repo",
        REPO,
        {"private": False, "exist_ok": True, "repo_type": "model"},
    )
    assert (upload, upload_repo, kwargs["repo_type"]) == ("upload_folder", REPO, "model")
    assert "token" not in create_kwargs and "token" not in kwargs  # the token stays where huggingface_hub finds it
    # What the Hub would receive after its ignore patterns: no checkpoint, everything else of the run.
    uploaded = set(filter_repo_objects(hub.files, ignore_patterns=kwargs["ignore_patterns"]))
    assert uploaded == (set(before) - {f for f in before if f.startswith("checkpoint-")}) | {"README.md"}
    assert hub.files["README.md"].decode() == model_card(run, REPO)
    assert all(SECRET.encode() not in data for data in hub.files.values())
    assert "hub_token" not in yaml.safe_load(hub.files["config.yaml"])["training_args"]
    assert _tree(run) == before  # byte for byte, and no README.md added
    assert sorted(p.name for p in run.parent.iterdir()) == ["ppo"]  # the staging folder is gone


def test_push_options(run, monkeypatch, tmp_path, capsys):
    hub = FakeHub(monkeypatch)
    (tmp_path / "eval.json").write_text(json.dumps([_result("runs/ppo", 4)]))
    url = main(
        PushArguments(
            run_dir=str(run),
            hub_model_id=REPO,
            private=True,
            include_checkpoints=True,
            commit_message="PPO, 4 updates",
            eval_file=str(tmp_path / "eval.json"),
            license="cc-by-nc-4.0",
        )
    )
    assert url in capsys.readouterr().out
    create_kwargs, kwargs = hub.calls[0][2], hub.calls[1][2]
    assert create_kwargs["private"] is True
    assert kwargs["ignore_patterns"] is None and kwargs["commit_message"] == "PPO, 4 updates"
    assert "checkpoint-2/state.pt" in hub.files
    assert hub.files["eval.json"] == (tmp_path / "eval.json").read_bytes()
    card = hub.files["README.md"].decode()
    assert _front_matter(card)["license"] == "cc-by-nc-4.0" and "| 100.0% |" in card


def test_push_merge_adapter_uploads_a_full_model_that_loads(run, monkeypatch):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        expected = AutoPeftModelForCausalLM.from_pretrained(str(run)).eval()(ids).logits
        base = json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(base).eval()(ids).logits, expected)
    hub = FakeHub(monkeypatch)
    logits = {}

    def load(folder):
        with torch.no_grad():
            logits["merged"] = AutoModelForCausalLM.from_pretrained(folder).eval()(ids).logits

    hub.on_upload = load
    before = _tree(run)
    push(PushArguments(run_dir=str(run), hub_model_id=REPO, merge_adapter=True))
    assert {"config.json", "model.safetensors", "tokenizer.json", "config.yaml", "README.md"} <= set(hub.files)
    assert not {"adapter_config.json", "adapter_model.safetensors"} & set(hub.files)
    torch.testing.assert_close(logits["merged"], expected, rtol=1e-4, atol=1e-4)
    card = hub.files["README.md"].decode()
    assert _front_matter(card)["library_name"] == "transformers" and "merge_and_unload" in card
    assert _tree(run) == before


def test_push_without_token_fails_before_the_hub(run, monkeypatch):
    hub = FakeHub(monkeypatch, token=None)
    with pytest.raises(SafetyRLHFError, match="no Hugging Face token found; set HF_TOKEN or run `hf auth login`"):
        push(PushArguments(run_dir=str(run), hub_model_id=REPO))
    assert hub.calls == []


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda run: shutil.rmtree(run), "is not a folder"),
        (lambda run: (run / "config.yaml").unlink(), "has no config.yaml"),
        (lambda run: (run / "adapter_model.safetensors").unlink(), "has adapter_config.json but no adapter_model"),
        (
            lambda run: (run / "adapter_config.json").unlink(),
            "holds no model: expected adapter_config.json \\+ adapter_model.safetensors .* or config.json \\+ "
            "model.safetensors .*, found",
        ),
    ],
)
def test_push_bad_run_dir_names_what_is_missing(run, monkeypatch, breakage, message):
    hub = FakeHub(monkeypatch)
    breakage(run)
    with pytest.raises(SafetyRLHFError, match=message):
        push(PushArguments(run_dir=str(run), hub_model_id=REPO))
    assert hub.calls == []


@pytest.mark.parametrize("repo_id", [None, "tiny-safety", "me/tiny/safety", "me/tiny safety"])
def test_push_bad_hub_model_id(run, monkeypatch, repo_id):
    FakeHub(monkeypatch)
    with pytest.raises(SafetyRLHFError, match="is not a Hub repository id; pass --hub_model_id user/name"):
        push(PushArguments(run_dir=str(run), hub_model_id=repo_id))


def test_push_merge_errors(run, template, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    full = tmp_path / "full"
    shutil.copytree(template / "value", full)
    shutil.copy(template / "config.yaml", full)
    with pytest.raises(SafetyRLHFError, match="holds a full model; drop --merge_adapter"):
        push(PushArguments(run_dir=str(full), hub_model_id=REPO, merge_adapter=True))
    adapter_config = json.loads((run / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(tmp_path / "gone")
    (run / "adapter_config.json").write_text(json.dumps(adapter_config))
    with pytest.raises(SafetyRLHFError, match="could not load the adapter's base model .*gone"):
        push(PushArguments(run_dir=str(run), hub_model_id=REPO, merge_adapter=True))
    assert hub.calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "ppo"]  # no staging folder left behind


def test_push_hub_error_is_one_line(run, monkeypatch):
    from huggingface_hub.errors import OfflineModeIsEnabled

    FakeHub(monkeypatch)

    def offline(api, repo_id, **kwargs):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", offline)
    with pytest.raises(SafetyRLHFError, match=f"could not push to {REPO} \\(Cannot reach .*\\); check the network"):
        push(PushArguments(run_dir=str(run), hub_model_id=REPO))
