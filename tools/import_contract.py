"""Check winnow's import contract (``[tool.importlinter]`` in pyproject.toml) with import-linter.

import-linter (through grimp) finds a package's modules by walking its folder, but winnow's sub-packages live in
the repository's top-level folders (``core/``, ``pipeline/``, ... mapped into ``winnow.*`` by setuptools
``package-dir``). So this copies the sources into the layout ``pip install`` produces, in a temporary folder, and
runs import-linter on that copy: the same modules, the same imports.

    python tools/import_contract.py          # exit 0 when every contract holds, 1 when one is broken
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def package_dirs(repo: Path = REPO) -> dict[str, Path]:
    """``{"winnow.core": <repo>/core, ...}`` from pyproject's ``[tool.setuptools.package-dir]``."""
    config = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: repo / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def stage(dest: Path, repo: Path = REPO) -> Path:
    """Copy the package's sources into ``dest/winnow/...`` as installed; returns ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, src in sorted(package_dirs(repo).items(), key=lambda kv: kv[0].count(".")):
        target = dest.joinpath(*name.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.is_file() and item.suffix == ".py":
                shutil.copy2(item, target / item.name)
            elif item.is_dir() and (item / "__init__.py").exists() and f"{name}.{item.name}" not in package_dirs(repo):
                shutil.copytree(item, target / item.name, ignore=ignore, dirs_exist_ok=True)
    return dest


def check(tree: Path, repo: Path = REPO) -> int:
    """Run import-linter with the repository's contracts on the staged ``tree``; its exit code."""
    from importlinter.cli import lint_imports

    saved = {m: sys.modules.pop(m) for m in list(sys.modules) if m == "winnow" or m.startswith("winnow.")}
    # (grimp must see the staged copy, not the installed package; the caller's modules are put back after)
    # import-linter puts the working directory first on sys.path: run it from the copy (the repository root has a
    # bare winnow/ folder that would shadow it)
    cwd = os.getcwd()
    sys.path.insert(0, str(tree))
    os.chdir(tree)
    try:
        return lint_imports(config_filename=str(repo / "pyproject.toml"), no_cache=True)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(tree))
        for mod in [m for m in sys.modules if m == "winnow" or m.startswith("winnow.")]:
            del sys.modules[mod]
        sys.modules.update(saved)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="winnow-contract-") as tmp:
        return check(stage(Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
