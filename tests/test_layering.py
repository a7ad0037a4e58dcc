"""The house's seams: no import cycle among chronicle's modules (at module level, or in a
function), and an offline audit imports no HTTP client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ((ROOT / "src" / "chronicle", "chronicle"), (ROOT / "events", "chronicle.events"),
            (ROOT / "projections", "chronicle.projections"))


def _modules() -> dict[str, Path]:
    mods = {}
    for base, prefix in PACKAGES:
        for f in base.rglob("*.py"):
            if "__pycache__" in f.parts:
                continue
            parts = [p for p in f.relative_to(base).with_suffix("").parts if p != "__init__"]
            mods[".".join([prefix, *parts])] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules ``name`` imports anywhere in it, but in ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for b in ast.walk(tree) if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.dump(b.test)
                   for n in ast.walk(b)}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            base = (base + "." + node.module if node.module else base) if node.level else (node.module or "")
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m in mods and m != name}


def test_no_module_imports_itself_back_through_others() -> None:
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    cycles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_an_offline_audit_imports_no_http_client() -> None:
    code = "import sys, chronicle.audit; print(sorted(m for m in ('aiohttp', 'chronicle.experiment.client', " \
           "'chronicle.experiment.runner') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_building_the_command_line_imports_no_verbs_work() -> None:
    """Every verb pays only for what it uses: the parser itself needs no Polars, Arrow or rules."""
    code = "import sys; from chronicle.cli import build_parser; build_parser(); print(sorted(m for m in ('polars', " \
           "'pyarrow', 'chronicle.secrets.rules', 'chronicle.store.log', 'aiohttp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_command_keeps_pandas_out_where_it_is_installed(tmp_path: Path) -> None:
    """pyarrow imports pandas on its first list conversion where pandas is installed (0.35 s a
    command); the command keeps it out, and still reads and writes."""
    pytest.importorskip("pandas")
    code = ("import sys; from chronicle import entry; sys.argv = ['chronicle', '--root', sys.argv[1], 'show', "
            "'events_by_type', '--json']\ntry:\n    entry.main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('pandas' in sys.modules, code)")
    subprocess.run([sys.executable, "-m", "chronicle", "--root", str(tmp_path), "init"], check=True, capture_output=True)
    note = b'{"type":"annotation","stream":"doc:x","target":"doc:x","key":"k","value":"v","author":"me"}\n'
    subprocess.run([sys.executable, "-m", "chronicle", "--root", str(tmp_path), "append"], input=note, check=True,
                   capture_output=True)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False 0" and '"events":1' in out
