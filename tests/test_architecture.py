"""The package's import contracts, read from the source (AST), so the tree keeps its shape.

* the core (``policy``, ``signals``, ``allocate`` and the leaf modules ``errors``, ``units``,
  ``typing``) imports no edge (``ingest``, ``ledger``, ``cycle``, ``state``, ``views``,
  ``cli``, ``service``, ``research``, ``config``, the seed adapters) and reads no clock and no
  file;
* nothing imports the CLI; only the CLI imports ``research``;
* no import cycle between modules (imports inside ``if TYPE_CHECKING:`` count: a cycle there is
  still a cycle in the design), counting a package's ``__init__`` as imported by every import
  of one of its modules (which is what Python runs).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "meta_supervisor"
CORE = ("policy", "signals", "allocate", "errors", "units", "typing")
EDGES = (
    "ingest",
    "ledger",
    "cycle",
    "state",
    "views",
    "cli",
    "service",
    "research",
    "config",
    "allocation",
    "confidence_decay",
    "strategy_cvar",
    "notebook",
)
#: Calls that read a clock or touch files: the core takes ``as_of`` and data as arguments
#: (``np.savez``/``np.load`` on an in-memory buffer, as the engine state uses them, are fine).
CLOCK_AND_FILES = {
    "datetime.now",
    "datetime.utcnow",
    "date.today",
    "time.time",
    "time.monotonic",
    "time.perf_counter",
    "open",
    "Path.read_text",
    "Path.read_bytes",
    "Path.write_text",
    "Path.write_bytes",
    "pl.read_parquet",
    "pl.scan_parquet",
    "pl.read_csv",
    "pl.read_ndjson",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """Every ``meta_supervisor`` module this file imports (``from pkg import mod`` resolved to
    ``pkg.mod`` when ``mod`` is a module)."""
    modules = _modules()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("meta_supervisor")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("meta_supervisor"):
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules}
    # Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first: those are imports too.
    parents = {".".join(m.split(".")[:k]) for m in found for k in range(2, m.count(".") + 1)}
    return {m for m in found | parents if m in modules and m != name and not name.startswith(m)}


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    return {name: _imports(path, name) for name, path in _modules().items()}


GRAPH = _graph()


def test_the_tree_has_the_packages_the_readme_names():
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert {"ingest", "ledger", "signals", "allocate", "cycle", "state", "views", "cli"} <= packages
    assert {"research", "policy"} <= packages


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if _top(n) in CORE))
def test_the_core_imports_no_edge(name):
    edges = sorted(m for m in GRAPH[name] if _top(m) in EDGES)
    assert not edges, f"{name} (core) imports {edges}"


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if _top(n) in CORE))
def test_the_core_reads_no_clock_and_no_file(name):
    tree = ast.parse(_modules()[name].read_text(encoding="utf-8"))
    calls = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                calls.add(func.id)
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                calls.add(f"{func.value.id}.{func.attr}")
            elif isinstance(func, ast.Attribute):
                calls.add(f"Path.{func.attr}")
    assert not calls & CLOCK_AND_FILES, f"{name} calls {sorted(calls & CLOCK_AND_FILES)}"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_nothing_imports_the_cli_and_only_the_cli_imports_research(name):
    if _top(name) == "cli" or name == "meta_supervisor.__main__":
        return
    assert not [m for m in GRAPH[name] if _top(m) == "cli"], f"{name} imports the CLI"
    if _top(name) != "research":
        assert not [m for m in GRAPH[name] if _top(m) == "research"], f"{name} imports research"


def test_no_import_cycles():
    # Tarjan's strongly connected components over the module graph; a cycle is one of size > 1
    # (or a module importing itself, which _imports already drops).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The contracts can fail: a core module importing the cycle is caught."""
    bad = tmp_path / "meta_supervisor" / "signals"
    bad.mkdir(parents=True)
    (bad / "__init__.py").write_text("")
    (bad / "leak.py").write_text("from meta_supervisor.cycle.run import decide\n")
    (tmp_path / "meta_supervisor" / "__init__.py").write_text("")
    cycle = tmp_path / "meta_supervisor" / "cycle"
    cycle.mkdir()
    (cycle / "__init__.py").write_text("")
    (cycle / "run.py").write_text("from meta_supervisor.signals import leak\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "meta_supervisor")
    graph = {name: _imports(path, name) for name, path in _modules().items()}
    assert "meta_supervisor.cycle.run" in graph["meta_supervisor.signals.leak"]
    assert "meta_supervisor.signals.leak" in graph["meta_supervisor.cycle.run"]
