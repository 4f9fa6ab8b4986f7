"""The package's shape: the import contracts in setup.cfg, no import cycle
(imports inside functions and ``TYPE_CHECKING`` blocks included), small modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_refiner_segment"
MAX_LINES = 400


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def find_cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import cycle among the graph's modules, or ``None``."""
    done: set[str] = set()

    def visit(module: str, path: list[str], on_path: set[str]) -> list[str] | None:
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported in on_path:
                return [*path[path.index(imported) :], imported]
            if imported not in done:
                found = visit(imported, [*path, imported], on_path | {imported})
                if found:
                    return found
        done.add(module)
        return None

    for module in sorted(graph.modules):
        if module not in done:
            found = visit(module, [module], {module})
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    graph = grimp.build_graph("flask_refiner_segment", cache_dir=None)
    assert find_cycle(graph) is None


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "import typing as t\nif t.TYPE_CHECKING:\n    from . import b\n"
    )
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclic_pkg", cache_dir=None)
    assert find_cycle(graph) == ["cyclic_pkg.a", "cyclic_pkg.b", "cyclic_pkg.a"]


def test_modules_are_small() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
