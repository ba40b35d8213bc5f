"""``winnow mix``: plan which pools of a run to train on, how often, and in which phases (DESIGN §3.7–3.10).

Mounted on the main app as ``app.command("mix")(mix_command)``. It reads the curated shards of the run's
``manifest.json`` (with the run's own resolved config unless ``-c`` is given), chooses the union of quality
buckets the Goyal et al. (2024) law predicts best for the budget (within ``mix.max_repeats``), splits the budget
over pools and phases, and writes ``<run>/mixture_plan.json`` (layout in :mod:`winnow.mixers.planner`). The plan
goes to the file; a summary (or ``--json``: the plan) to stdout; warnings and errors to stderr. Exit codes: 0
success, 1 an unreadable shard, 2 a usage error (bad option or config value, a missing run directory, no curated
shards, no kept rows, no budget, a budget the repeat cap forbids).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winnow.core.cli_util import exit_on_error
from winnow.core.errors import ConfigError
from winnow.core.rundir import RunDir
from winnow.mixers.config import MixSection
from winnow.mixers.plan import MixturePlan, UpsamplePhase
from winnow.mixers.planner import build_mixture_plan, write_plan
from winnow.pipeline.config import RESOLVED_CONFIG, WinnowConfig, load_config, load_run_config

__all__ = ["load_mix_config", "mix_command"]

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
RunOpt = Annotated[
    str | None, typer.Option("--run", "-r", help="Run directory holding curated/ shards (default: io.output).")
]
BudgetOpt = Annotated[
    float | None, typer.Option("--budget-tokens", help="Training tokens to plan for, e.g. 2e6 (mix.budget_tokens).")
]
FlopsOpt = Annotated[
    float | None,
    typer.Option("--flops", help="Training FLOPs; the budget is flops / (6 · model params) tokens (mix.flops)."),
]
ParamsOpt = Annotated[
    float | None, typer.Option("--model-params", help="Model parameters N, e.g. 1.1e9 (mix.model_params).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set mix.max_repeats=8; repeatable."),
]
ExplainOpt = Annotated[
    bool, typer.Option("--explain", help="Print every candidate with its predicted error and why the plan chose one.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the plan (the JSON written to mixture_plan.json).")]


# =============================================================================================================
# Config
# =============================================================================================================
def _value(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**63 else repr(float(x))


def load_mix_config(
    config: str | None,
    sets: list[str] | None = None,
    *,
    budget_tokens: float | None = None,
    flops: float | None = None,
    model_params: float | None = None,
    run: str | None = None,
) -> tuple[WinnowConfig, MixSection]:
    """Load the config with ``--set`` overrides and the budget flags applied last; return it and its ``mix``.

    Without ``config``, the run's own ``config.resolved.yaml`` is the base when ``run`` has one.

    ``--budget-tokens`` replaces a configured ``mix.flops`` and ``--flops`` a configured ``mix.budget_tokens``.

    Raises:
        ConfigError: A bad file, key or value (the message names the key).
    """
    overrides = list(sets or [])
    if budget_tokens is not None and flops is not None:
        raise ConfigError("--budget-tokens and --flops are exclusive: give one")
    if budget_tokens is not None:
        overrides += [f"mix.budget_tokens={_value(budget_tokens)}", "mix.flops=null"]
    if flops is not None:
        overrides += [f"mix.flops={_value(flops)}", "mix.budget_tokens=null"]
    if model_params is not None:
        overrides.append(f"mix.model_params={_value(model_params)}")
    if config is None and run is not None and RunDir(run).exists(RESOLVED_CONFIG):
        cfg = load_run_config(RunDir(run), overrides)  # the run's own config (its io fields, seed and mix section)
    else:
        cfg = load_config(config, overrides)
    return cfg, cfg.mix


# =============================================================================================================
# The command
# =============================================================================================================
def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _int(x: int) -> str:
    return f"{x:,}"


def mix_command(
    config: ConfigOpt = None,
    run: RunOpt = None,
    budget_tokens: BudgetOpt = None,
    flops: FlopsOpt = None,
    model_params: ParamsOpt = None,
    set_: SetOpt = None,
    explain: ExplainOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Plan the training mixture of a run and write <run>/mixture_plan.json.

    Pools are quality buckets (quantiles of quality_score, or DataMan levels; one bucket when quality scoring has
    not run) × domains. The plan trains on the union of the top m buckets with the lowest predicted error under
    the Goyal et al. 2024 law, never repeating a pool more than mix.max_repeats times, and ends with an upsampling
    phase for mix.upsample.domains.

    Example: winnow mix -c configs/quickstart.yaml --run runs/quickstart --budget-tokens 2e6 --explain
    """
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    with exit_on_error(err):
        cfg, mix = load_mix_config(
            config, set_, budget_tokens=budget_tokens, flops=flops, model_params=model_params, run=run
        )
        run_dir = run or cfg.io.output
        if not run_dir:
            raise ConfigError("--run: give the run directory (or set io.output in the config)")
        plan = build_mixture_plan(
            run_dir,
            mix,
            text_field=cfg.io.text_field,
            id_field=cfg.io.id_field,
            seed=cfg.run.seed,
            storage_options=cfg.io.storage_options,
        )
        path = write_plan(run_dir, plan, cfg.io.storage_options)
    for w in plan.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if json_:
        typer.echo(plan.to_json(), nl=False)
        return
    _print_summary(out, plan, path)
    if explain:
        _print_explain(out, plan)


def _phase_caption(plan: MixturePlan) -> str:
    """``phases: base [0, T); upsample [T, budget) x<factor> for <domains>``."""
    parts = []
    for p in plan.phases:
        part = f"{p.name} [{p.start_token:,}, {p.end_token:,})"
        if isinstance(p, UpsamplePhase):
            part += f" x{p.factor:g} for {', '.join(p.domains)}"
        parts.append(part)
    return "phases: " + "; ".join(parts)


def _print_summary(out: Console, plan: MixturePlan, path: str) -> None:
    choice, budget = plan.choice, plan.budget
    phases = plan.phases
    table = Table(
        title=escape(
            f"mixture plan: {budget.tokens:,} tokens ({budget.source}), top {choice.m} of "
            f"{len(plan.candidates)} quality bucket(s): {', '.join(choice.quality_buckets)}"
        ),
        title_justify="left",
        caption=escape(_phase_caption(plan)),
        caption_justify="left",
    )
    passes = any(p.pass_tokens != p.unique_tokens for p in plan.pools if p.chosen)
    table.add_column("pool", overflow="fold")
    for col in ("documents", "unique tokens", "tokens", "epochs", *(("passes",) if passes else ())):
        table.add_column(col, justify="right")
    for p in phases:
        table.add_column(f"{p.name} weight", justify="right")
    for pool in plan.pools:
        if not pool.chosen:
            continue
        table.add_row(
            escape(pool.pool),
            _int(pool.documents),
            _int(pool.unique_tokens),
            _int(pool.tokens),
            f"{pool.unique_epochs:.3f}",
            *((f"{pool.epochs:.3f}",) if passes else ()),
            *(f"{pool.phase_weights[p.name]:.4f}" for p in phases),
        )
    if passes:
        table.caption += " | epochs: of the unique tokens (<= mix.max_repeats); passes: over the pool with its repeats"
    out.print(table)
    left_out = [p.pool for p in plan.pools if not p.chosen]
    if left_out:
        out.print(escape(f"left out: {', '.join(left_out)}"), highlight=False)
    law = plan.law
    sources = {law.a.source, law.d.source, *(b.source for b in law.buckets)}
    kinds = sorted({s.split(" ", 1)[0].rstrip(":") for s in sources})
    out.print(
        escape(
            f"law: Goyal et al. 2024, a={law.a.value:g}, d={law.d.value:g}, tau scaling "
            f"{law.tau_scaling}; parameters from: {', '.join(kinds)} (see --explain or the plan's law section)"
        ),
        highlight=False,
    )
    out.print(escape(f"why: {choice.reason}"), highlight=False)
    out.print(escape(f"plan written to {path}"), highlight=False)


def _print_explain(out: Console, plan: MixturePlan) -> None:
    cands = plan.candidates
    with_loss = any(c.muennighoff_loss is not None for c in cands)
    table = Table(
        title="candidates: unions of the top m quality buckets (ranked by the law's b, most negative first)",
        title_justify="left",
    )
    for col in ("m", "quality buckets", "unique tokens", "epochs", "predicted error", "effective tokens D'"):
        table.add_column(col, justify="left" if col == "quality buckets" else "right")
    if with_loss:
        table.add_column("Muennighoff loss", justify="right")
    table.add_column("max pool epochs", justify="right")
    table.add_column("within cap")
    for c in cands:
        cells = [
            str(c.m),
            escape(", ".join(c.quality_buckets)),
            _int(c.unique_tokens),
            f"{c.unique_epochs:.4g}",
            _fmt(c.predicted_error),
            f"{c.effective_tokens:,.0f}",
        ]
        if with_loss:
            cells.append(_fmt(c.muennighoff_loss))
        cells += [f"{c.max_unique_epochs:.4g}", "yes" if c.within_cap else "no"]
        style = "bold" if c.chosen else None
        table.add_row(*cells, style=style)
    out.print(table)
    for c in cands:
        mark = "*" if c.chosen else "-"
        out.print(escape(f"{mark} top {c.m} ({', '.join(c.quality_buckets)}): {c.note}"), highlight=False)
    law = plan.law
    params = Table(title="law parameters (Goyal et al. 2024)", title_justify="left")
    for col in ("parameter", "value", "source"):
        params.add_column(col, justify="right" if col == "value" else "left")
    params.add_row("a", f"{law.a.value:g}", escape(law.a.source))
    params.add_row("d", f"{law.d.value:g}", escape(law.d.source))
    for b in law.buckets:
        params.add_row(escape(f"b, tau [{b.quality_bucket}]"), f"{b.b:.4g}, {b.tau:.4g}", escape(b.source))
    out.print(params)
    choice = plan.choice
    out.print(
        escape(f"chosen: top {choice.m} (the law's best: top {choice.law_best_m}); {choice.reason}"),
        highlight=False,
    )
