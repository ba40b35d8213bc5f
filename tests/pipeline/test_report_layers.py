"""The report package's layering: what importing it pulls in, and where it touches the prune stage."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import winnow.pipeline.report as report_pkg

REPORT_DIR = Path(report_pkg.__file__).parent


def test_import_pulls_in_no_stage_runner_torch_or_matplotlib():
    code = (
        "import sys, winnow.pipeline.report.report\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib')\n"
        "       or m.startswith(('winnow.pipeline.stages', 'winnow.pipeline.runner'))]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(module, depth)`` of every import of a file; depth 0 = module top level."""
    found = []

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            d = depth + isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, depth))
            elif isinstance(child, ast.Import):
                found.extend((a.name, depth) for a in child.names)
            visit(child, d)

    visit(ast.parse(path.read_text()), 0)
    return found


def test_prune_is_imported_in_one_place_and_project_imports_are_at_module_top():
    prune_users = []
    for path in sorted(REPORT_DIR.glob("*.py")):
        for module, depth in _imports(path):
            if module.startswith("winnow.pipeline.prune"):
                prune_users.append(path.name)
            if module.startswith("winnow"):
                assert depth == 0, f"{path.name}: {module} imported inside a function"
    assert prune_users == ["decisions.py"]
