"""The README's implementation-detail links point at the code they quote, so the docs cannot drift."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"`([^`]+)`\s*\(\[[^\]]+\]\(((?:safety_rlhf|reward)/[\w/]+\.py)#L(\d+)\)\)")


def test_every_quoted_link_points_at_its_code():
    readme = " ".join((ROOT / "README.md").read_text().split())
    links = LINK.findall(readme)
    assert len(links) >= 15
    for snippet, path, line in links:
        lines = (ROOT / path).read_text().splitlines()
        assert int(line) <= len(lines), (path, line)
        assert snippet in " ".join(lines[int(line) - 1].split()), f"{path}#L{line} no longer holds `{snippet}`"
