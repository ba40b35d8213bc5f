"""The house rules that keep winnow one package with layers (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import import_contract  # noqa: E402

#: imports of winnow modules inside a function that are there for start-up time, never to dodge a cycle
LAZY_ALLOWED = {("pipeline/cli/app.py", "winnow.pipeline.runner")}


def _package_dirs() -> dict[str, Path]:
    return import_contract.package_dirs(REPO)


def _python_files():
    for folder in _package_dirs().values():
        yield from folder.rglob("*.py")


def test_every_package_folder_is_installed():
    """setuptools installs only the listed packages: a new sub-package folder must be listed in pyproject."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in _package_dirs().items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found == listed


def test_one_namespace_outside_the_checkout(tmp_path):
    """From another directory ``import winnow`` works and the card's folders are not top-level modules."""
    code = (
        "import importlib.util, winnow, winnow.pipeline.cli.app, winnow.mixers.loader\n"
        "print(winnow.__version__)\n"
        "for name in ('pipeline', 'scorers', 'clustering', 'mixers', 'core', 'embedding'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    spec = importlib.util.find_spec("winnow.core")
    assert spec is not None and Path(spec.origin).parent == REPO / "core"


def test_no_winnow_import_inside_a_function():
    """Imports sit at module top (TYPE_CHECKING blocks aside); lazy ones must be listed with their reason."""
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("winnow"):
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names if a.name.split(".")[0] == "winnow"]
                found += [(path.relative_to(REPO).as_posix(), n) for n in names]
    assert sorted(set(found) - LAZY_ALLOWED) == []


def test_import_contract_holds(tmp_path):
    tree = import_contract.stage(tmp_path)
    assert import_contract.check(tree) == 0


@pytest.mark.parametrize(
    "module, line",
    [
        ("winnow/core/errors.py", "import winnow.pipeline.config"),  # core reaching up
        ("winnow/clustering/kmeans.py", "from winnow.scorers import base"),  # an algorithm importing a sibling layer
        ("winnow/pipeline/report/command.py", "import winnow.pipeline.stages"),  # report reading stages
        ("winnow/pipeline/prune/base.py", "import winnow.pipeline.config"),  # prune importing the config above it
    ],
)
def test_a_planted_cycle_breaks_the_contract(tmp_path, module, line, capsys):
    tree = import_contract.stage(tmp_path)
    path = tree / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # planted\n", encoding="utf-8")
    assert import_contract.check(tree) == 1
    assert "BROKEN" in capsys.readouterr().out


def test_cli_help_does_not_import_the_heavy_sub_commands():
    code = (
        "import sys\n"
        "from winnow.pipeline.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('winnow.pipeline.runner', 'winnow.pipeline.report.build', 'winnow.mixers.fit',\n"
        "         'winnow.pipeline.cli.mix', 'torch', 'datatrove.executor', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "mix" in proc.stdout and "report" in proc.stdout and "laws" in proc.stdout


def test_version_option():
    from typer.testing import CliRunner

    import winnow
    from winnow.pipeline.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"winnow {winnow.__version__}"
