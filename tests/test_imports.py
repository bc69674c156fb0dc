"""The package's modules import each other without a cycle, counting imports deferred into functions."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "safety_rlhf"


def _imports(path: Path) -> set[str]:
    """The `safety_rlhf` modules `path` imports anywhere in its body (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("safety_rlhf."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("safety_rlhf.")}
    return {name.split(".")[0] for name in found}


def test_no_import_cycle_among_modules():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {m: _imports(PACKAGE / f"{m}.py") & modules for m in modules}
    assert graph["cli"] and graph["hub"], "the parser found no imports; check _imports"
    # Depth-first search; `path` is the chain of modules being visited, so meeting one of them again is a cycle.
    done = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
