"""The README and the docs/ pages cannot drift from the code.

- every "`snippet` ([file.py](path#L123))" link points at a line that still holds the quoted code;
- every relative link (README.md, docs/*.md, recipes/*/README.md) points at a file that exists, and its anchor at a
  line within the file (`#L123`) or at a heading of the page;
- every command in a fenced code block (`safety-rlhf VERB ...`, `accelerate launch ... -m safety_rlhf.cli VERB ...`,
  `make TARGET VAR=... ARGS="..."`) names a verb the CLI knows and only flags that verb's parser accepts, and a make
  target and variables the Makefile has;
- every test that docs/bad-input.md names for a row exists.
"""

import functools
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # the pages whose commands are checked
LINKED = [*PAGES, *sorted((ROOT / "recipes").glob("*/README.md"))]  # the pages whose links are checked
QUOTED = re.compile(r"`([^`]+)`\s*\(\[[^\]]+\]\(((?:\.\./)*(?:safety_rlhf|reward)/[\w/]+\.py)#L(\d+)\)\)")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def test_every_quoted_link_points_at_its_code():
    links = []
    for page in PAGES:
        text = " ".join(page.read_text().split())
        links += [(page, snippet, path, int(line)) for snippet, path, line in QUOTED.findall(text)]
    assert len(links) >= 15
    for page, snippet, path, line in links:
        lines = (page.parent / path).read_text().splitlines()
        assert line <= len(lines), (rel(page), path, line)
        assert snippet in " ".join(lines[line - 1].split()), f"{rel(page)}: {path}#L{line} no longer holds `{snippet}`"


# ---------------------------------------------------------------------------------------------------------------------
# Relative links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def link_errors(page: Path) -> list[str]:
    """Each relative link of `page` whose file, line or heading does not exist."""
    errors = []
    for target in MD_LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            errors.append(f"{rel(page)}: {target} does not exist")
        elif re.fullmatch(r"L\d+(-L\d+)?", anchor):
            last = max(int(n) for n in re.findall(r"\d+", anchor))
            if last > len(file.read_text().splitlines()):
                errors.append(f"{rel(page)}: {target} is past the end of the file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            errors.append(f"{rel(page)}: {target} names no heading of {file.name}")
    return errors


def test_every_relative_link_resolves():
    assert len(LINKED) >= 10
    errors = [e for page in LINKED for e in link_errors(page)]
    assert not errors, "\n".join(errors)


def test_a_broken_link_is_reported(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "code.py").write_text("a\nb\n")
    page.write_text("# A heading\n[ok](code.py#L2) [top](#a-heading) [gone](nope.md) [far](code.py#L3) [h](#nope)\n")
    errors = link_errors(page)
    assert errors == [
        "page.md: nope.md does not exist", "page.md: code.py#L3 is past the end of the file",
        "page.md: #nope names no heading of page.md",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Commands in code blocks


@functools.cache
def known_flags() -> dict[str, frozenset[str]]:
    """verb -> every option string its real parser accepts (plus --config, which TrlParser reads itself)."""
    from trl import TrlParser

    from safety_rlhf.cli import _verbs
    from safety_rlhf.grpo import SafetyGRPOConfig

    verbs = {verb: types for verb, (types, _, _) in _verbs().items()}
    flags = {verb: set(TrlParser(types)._option_string_actions) for verb, types in verbs.items()}
    plan = verbs["plan"]  # a GRPO recipe is planned with GRPO's config in place of PPO's (cli.main)
    flags["plan"] |= set(TrlParser([plan[0], SafetyGRPOConfig, *plan[2:]])._option_string_actions)
    return {verb: frozenset(names | {"--config"}) for verb, names in flags.items()}


def makefile() -> tuple[dict[str, str | None], set[str]]:
    """The Makefile's targets, each with the verb its recipe runs (None: no verb), and its variables."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    variables = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*[?:]?=", text, re.M))
    targets, current = {}, None
    for line in text.splitlines():
        rule = re.match(r"^([\w.-]+)\s*:(?!=)\s*(.*)$", line)
        if rule and not line.startswith("\t"):
            current = rule.group(1)
            targets[current] = None
            prerequisites = rule.group(2).split()
            if prerequisites and prerequisites[0] in targets:  # an alias (demo-smollm2: demo)
                targets[current] = targets[prerequisites[0]]
        elif line.startswith("\t") and current and targets[current] is None:
            verb = re.search(r"(?:safety-rlhf|\$\(LAUNCH\))\s+([\w-]+)", line)
            targets[current] = verb.group(1) if verb else None
    targets.pop(".PHONY", None)
    return targets, variables


def commands(text: str) -> list[str]:
    """The lines of every fenced code block in `text`, continuation lines (trailing backslash) joined."""
    lines = []
    for block in FENCE.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def command_errors(line: str, flags: dict[str, frozenset[str]], targets: dict, variables: set[str]) -> list[str]:
    """What is wrong with one command line: an unknown verb, make target or variable, or a flag its verb lacks."""
    words = line.split()
    while words and words[0] in ("$", "time", "/usr/bin/time"):  # a prompt or a timer before the command
        line = line.split(None, 1)[1] if len(words) > 1 else ""
        words = words[1:]
    if not words or not (
        words[0].endswith("safety-rlhf") or words[0] in ("make", "accelerate") or "safety_rlhf.cli" in words
    ):
        return []
    tokens = shlex.split(line, comments=True)
    verb, args = None, []
    if tokens[0].endswith("safety-rlhf"):
        verb, args = (tokens[1], tokens[2:]) if len(tokens) > 1 else (None, [])
        if verb is None:
            return [f"{line}: no verb"]
    elif "safety_rlhf.cli" in tokens:
        i = tokens.index("safety_rlhf.cli")
        verb, args = tokens[i + 1], tokens[i + 2 :]
    elif tokens[0] == "make":
        errors = []
        for word in tokens[1:]:
            name, eq, value = word.partition("=")
            if not eq:
                if name not in targets:
                    errors.append(f"{line}: make target {name!r} is not in the Makefile")
                elif verb is None:
                    verb = targets[name]
            elif name not in variables:
                errors.append(f"{line}: make variable {name!r} is not in the Makefile")
            elif name == "ARGS":
                args += shlex.split(value)
        if verb is None:
            return errors
        return errors + flag_errors(line, verb, args, flags)
    else:  # accelerate without safety_rlhf.cli: not ours
        return []
    if verb not in flags:
        return [f"{line}: unknown verb {verb!r}"]
    return flag_errors(line, verb, args, flags)


def flag_errors(line: str, verb: str, args: list[str], flags: dict[str, frozenset[str]]) -> list[str]:
    if verb not in flags:
        return [f"{line}: unknown verb {verb!r}"]
    return [
        f"{line}: safety-rlhf {verb} has no flag {arg.split('=')[0]}"
        for arg in args
        if arg.startswith("--") and arg.split("=")[0] not in flags[verb]
    ]


def test_every_command_uses_known_verbs_and_flags():
    flags, (targets, variables) = known_flags(), makefile()
    checked, errors = 0, []
    for page in LINKED:
        for line in commands(page.read_text()):
            found = command_errors(line, flags, targets, variables)
            errors += [f"{rel(page)}: {e}" for e in found]
            checked += bool(line.split()) and ("safety-rlhf" in line or line.split()[0] in ("make", "accelerate"))
    assert checked >= 50, checked
    assert not errors, "\n".join(errors)


def test_the_makefile_passes_known_flags():
    flags, (targets, _) = known_flags(), makefile()
    assert targets["demo"] == "demo" and targets["ppo"] == "ppo" and targets["demo-smollm2"] == "demo"
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    errors = []
    for line in text.splitlines():
        run = re.search(r"(?:safety-rlhf|\$\(LAUNCH\))\s+([\w-]+)(.*)$", line)
        if line.startswith("\t") and run:
            args = [a for a in run.group(2).split() if a.startswith("--")]
            errors += flag_errors(line.strip(), run.group(1), args, flags)
    assert not errors, "\n".join(errors)


def test_an_unknown_flag_or_verb_fails():
    flags, (targets, variables) = known_flags(), makefile()
    block = """
```bash
safety-rlhf ppo --config recipes/tiny/ppo.yaml \\
    --learning_rate=1e-3 --use_peft true --no_such_flag 1   # a comment with --not_checked
safety-rlhf frobnicate --config x.yaml
accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml -m safety_rlhf.cli sft --kl_coef 0.1
make plan RECIPE=recipes/tiny/ppo.yaml ARGS="--gpu_memory_gib 24 --cliprange=0.2 --not_a_plan_flag 3"
make no-such-target NOPE=1
make demo ARGS="--ppo_max_steps 120 --learning_rate 1e-3"
```
"""
    errors = [e for line in commands(block) for e in command_errors(line, flags, targets, variables)]
    tails = [e.rsplit(": ", 1)[1] for e in errors]
    assert tails == [
        "safety-rlhf ppo has no flag --no_such_flag",
        "unknown verb 'frobnicate'",
        "safety-rlhf sft has no flag --kl_coef",
        "safety-rlhf plan has no flag --not_a_plan_flag",
        "make target 'no-such-target' is not in the Makefile",
        "make variable 'NOPE' is not in the Makefile",
        "safety-rlhf demo has no flag --learning_rate",
    ], errors


# ---------------------------------------------------------------------------------------------------------------------
# docs/bad-input.md: each row names its test


def test_every_bad_input_row_names_an_existing_test():
    table = [line for line in (ROOT / "docs" / "bad-input.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| bad input |") and len(table) >= 50
    for row in table[1:]:
        tests = re.findall(r"`(test_\w+\.py)::(test_\w+)`", row.rstrip(" |").rsplit("|", 1)[1])
        assert tests, f"docs/bad-input.md names no test for: {row[:80]}"
        for file, name in tests:
            assert re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M), f"no {file}::{name}"
