"""``winnow stages`` and ``winnow strategies``: what the registries hold (the same lists the runner, the config and
the report read)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from winnow.core.cli_util import exit_on_error
from winnow.pipeline.config import load_config
from winnow.pipeline.prune import STRATEGIES
from winnow.pipeline.stages import STAGES
from winnow.scorers.backends import RATERS

err = Console(stderr=True, soft_wrap=True)


def stages_command(
    config: Annotated[str | None, typer.Option("--config", "-c", help="YAML config (GPU use depends on it).")] = None,
    set: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config key; repeatable.")] = None,
) -> None:
    """List the registered stages in the order `winnow run` executes them, with what each reads and writes and
    whether it wants a GPU under the config."""
    with exit_on_error(err, config_label="config error"):
        cfg = load_config(config, set)
    table = Table(title="stages")
    for col in ("order", "stage", "needs", "writes", "GPU"):
        table.add_column(col)
    for entry in STAGES.entries():
        gpu = "yes" if entry.obj.wants_gpu(cfg) else "no"
        table.add_row(str(entry.order), entry.name, ", ".join(entry.needs) or "-", "\n".join(entry.writes), gpu)
    Console().print(table)


def strategies_command() -> None:
    """List the registered prune strategies and rater backends: what each needs from earlier stages."""
    table = Table(title="prune strategies (prune.strategy)")
    for col in ("strategy", "needs", "target", "what it does"):
        table.add_column(col)
    for entry in STRATEGIES.entries():
        doc = (entry.obj.__doc__ or sys.modules[entry.obj.__module__].__doc__ or "").strip()
        table.add_row(entry.name, ", ".join(entry.needs) or "-", entry.meta.get("target", ""), doc.split("\n")[0])
    Console().print(table)
    raters = Table(title="rater backends (score.backend)")
    for col in ("backend", "needs embeddings", "GPU"):
        raters.add_column(col)
    for entry in RATERS.entries():
        raters.add_row(entry.name, str(entry.meta.get("needs_embeddings", "")), str(entry.meta.get("gpu", "")))
    Console().print(raters)
