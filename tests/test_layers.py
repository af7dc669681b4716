"""The package's layer rules, read from the import statements (every import, also inside
functions; `if TYPE_CHECKING:` blocks excepted, they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "olmo"
PLUGINS = ("olmo.eval", "olmo.energy", "olmo.observe", "olmo.launch", "olmo.run")


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> set[str]:
    """Modules of the kit that `path` imports at run time."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("olmo"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("olmo"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    edges = {}
    for name, path in mods.items():
        # `from olmo.x import y` names module olmo.x.y only when that module exists.
        edges[name] = {m for m in imports(path) if m in mods and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_training_loop_imports_none_of_its_plugins():
    bad = [
        f"{m} → {d}"
        for m, deps in graph().items()
        if m.startswith("olmo.train")
        for d in deps
        if d.startswith(PLUGINS)
    ]
    assert not bad, "olmo/train must not import eval/energy/observe/launch/run:\n" + "\n".join(bad)


def test_slurm_facts_module_is_a_leaf():
    deps = graph()["olmo.slurm"]
    assert deps <= {"olmo.errors"}, deps


def test_logbook_writer_is_a_leaf():
    """The trainer, launchers and batch script all write the logbook without importing each
    other: the writer imports nothing of the kit."""
    assert graph()["olmo.logbook"] == set()


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles (break them, or make the import type-only):\n" + "\n".join(
        " ↔ ".join(c) for c in found
    )


def test_the_checker_sees_a_cycle_and_a_plugin_import(tmp_path: Path):
    """The rules above could pass by reading nothing: check them on a hand-made graph."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import olmo.eval\n"
        "def f():\n    from olmo.energy import callback\n"
    )
    assert imports(src) == {"olmo.energy", "olmo.energy.callback"}
