"""``winnow laws``: a calculator for the scaling laws of :mod:`winnow.mixers.laws` and their fits (DESIGN §3.7, §3.8).

Commands:

* ``goyal``: predicted error of the union of the top m pools for every m and budget, and the best m.
* ``muennighoff``: loss, effective tokens and effective parameters of a data-constrained run.
* ``fit``: fit either law to a CSV of proxy runs and print the parameters, residuals and held-out error.

Results go to stdout (a rich table, or JSON with ``--json``); errors to stderr. Exit codes: 0 success, 1 a fit
that did not converge, 2 a usage error (bad option value, list lengths that disagree, a missing CSV column).
"""

from __future__ import annotations

import json
import math
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winnow.core.errors import ConfigError
from winnow.mixers.fit import GOYAL_COLUMNS, MUENNIGHOFF_COLUMNS, FitResult, fit_goyal, fit_muennighoff, read_runs
from winnow.mixers.laws import best_top_m, effective_data, effective_params, muennighoff_loss, unique_params

laws_app = typer.Typer(
    name="laws",
    help="Scaling-law calculator: Goyal et al. 2024 (quality vs repetition of pools), Muennighoff et al. 2023 "
    "(value of repeated tokens), and fits of both to proxy runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


# =============================================================================================================
# Parsing helpers: every error names its option and exits 2
# =============================================================================================================
def _number(text: str, option: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        msg = f"{option}: expected a number (like 0.02 or 2e6), got {text.strip()!r}"
        raise ConfigError(msg) from None
    if not math.isfinite(value):
        msg = f"{option}: expected a finite number, got {text.strip()!r}"
        raise ConfigError(msg)
    return value


def _numbers(text: str, option: str) -> list[float]:
    parts = text.split(",")
    if not text.strip() or any(not p.strip() for p in parts):
        msg = f"{option}: expected numbers separated by commas, got {text!r}"
        raise ConfigError(msg)
    return [_number(p, option) for p in parts]


def _check(ok: bool, option: str, message: str) -> None:
    if not ok:
        msg = f"{option}: {message}"
        raise ConfigError(msg)


def _usage_error(e: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
    return typer.Exit(2)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _json_number(x: float) -> float | int | None:
    if not math.isfinite(x):
        return None
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


# =============================================================================================================
# goyal
# =============================================================================================================
@laws_app.command("goyal")
def goyal(
    a: Annotated[str, typer.Option("--a", help="Sample-efficiency scale a, shared by all pools (> 0).")],
    d: Annotated[str, typer.Option("--d", help="Error floor d, shared by all pools (>= 0).")],
    b: Annotated[str, typer.Option("--b", help="Utility exponent of each pool, comma-separated (each < 0).")],
    tau: Annotated[
        str, typer.Option("--tau", help="Half-life in repetitions of each pool, comma-separated (each > 0).")
    ],
    pool_size: Annotated[
        str,
        typer.Option("--pool-size", help="Unique samples E per pool: one number for every pool, or one per pool."),
    ],
    samples: Annotated[str, typer.Option("--samples", help="Sample budgets N, comma-separated (each > 0).")],
    tau_scaling: Annotated[
        str,
        typer.Option(
            "--tau-scaling",
            help="'pools': multiply each tau by the number of pools combined (the reference code); 'none': keep it.",
        ),
    ] = "pools",
    as_json: JsonOpt = False,
) -> None:
    """Predict the error of training on the union of the top m pools (Goyal et al. 2024), for every m and budget.

    Pools are ranked by b, most negative (highest quality) first; m is 1-based.

    Example: winnow laws goyal --a 0.025 --d 0.1 --b=-0.16,-0.1 --tau 6.7,5.3 --pool-size 12.8e6 --samples 3.2e7,6.4e8
    """
    try:
        a_value = _number(a, "--a")
        _check(a_value > 0, "--a", f"must be > 0, got {a_value:g}")
        d_value = _number(d, "--d")
        _check(d_value >= 0, "--d", f"must be >= 0, got {d_value:g}")
        bs = _numbers(b, "--b")
        for x in bs:
            _check(x < 0, "--b", f"every b must be < 0 (the utility exponent), got {x:g}")
        taus = _numbers(tau, "--tau")
        for x in taus:
            _check(x > 0, "--tau", f"every tau must be > 0 (half-life in repetitions), got {x:g}")
        _check(len(taus) == len(bs), "--tau", f"got {len(taus)} value(s) but --b has {len(bs)}; give one per pool")
        sizes = _numbers(pool_size, "--pool-size")
        for x in sizes:
            _check(x > 0, "--pool-size", f"every pool size must be > 0, got {x:g}")
        _check(
            len(sizes) in (1, len(bs)),
            "--pool-size",
            f"got {len(sizes)} value(s) but --b has {len(bs)}; give one for all pools or one per pool",
        )
        if len(sizes) == 1:
            sizes = sizes * len(bs)
        budgets = _numbers(samples, "--samples")
        for x in budgets:
            _check(x > 0, "--samples", f"every budget must be > 0, got {x:g}")
        _check(tau_scaling in ("pools", "none"), "--tau-scaling", f"must be 'pools' or 'none', got {tau_scaling!r}")
        results = [best_top_m(n, sizes, a_value, bs, taus, d_value, tau_scaling) for n in budgets]
    except (ConfigError, ValueError) as e:
        raise _usage_error(e) from None

    order = [int(i) + 1 for i in results[0].order]
    # the smallest union is the best pool alone: its s_0 is the smallest of all the candidates
    low = [n for n in budgets if a_value * min(sizes[order[0] - 1], n) / 1e5 <= 1]
    if low:
        err.print(
            f"[yellow]warning:[/] s_0 = a·min(E, N)/1e5 <= 1 for N = {', '.join(f'{n:g}' for n in low)}: outside "
            "the law's regime, where a more negative b predicts a higher error (see winnow.mixers.laws).",
            highlight=False,
        )
    if as_json:
        payload = {
            "results": [
                {"samples": _json_number(n), "errors_by_top_m": [float(e) for e in r.errors], "best_top_m": r.best_m}
                for n, r in zip(budgets, results, strict=True)
            ],
            "pool_order": order,
        }
        typer.echo(json.dumps(payload))
        return
    table = Table(
        title=f"Goyal et al. 2024: predicted error of the top m pools (a={a_value:g}, d={d_value:g}, "
        f"tau scaling: {tau_scaling})",
        title_justify="left",
        caption="pools by b, best first: " + ", ".join(f"#{i} (b={bs[i - 1]:g}, tau={taus[i - 1]:g})" for i in order),
        caption_justify="left",
    )
    table.add_column("samples N", justify="right")
    for m in range(1, len(bs) + 1):
        table.add_column(f"top {m}", justify="right")
    table.add_column("best m", justify="right")
    for n, r in zip(budgets, results, strict=True):
        cells = [f"[bold]{_fmt(e)}[/]" if m == r.best_m else _fmt(e) for m, e in enumerate(r.errors.tolist(), start=1)]
        table.add_row(f"{n:,.0f}" if n >= 1 else _fmt(n), *cells, str(r.best_m))
    out.print(table)


# =============================================================================================================
# muennighoff
# =============================================================================================================
@laws_app.command("muennighoff")
def muennighoff(
    params: Annotated[str, typer.Option("--params", help="Model parameters N (> 0), e.g. 1.1e9.")],
    tokens: Annotated[str, typer.Option("--tokens", help="Training tokens D (> 0), e.g. 2e11.")],
    unique_tokens: Annotated[str, typer.Option("--unique-tokens", help="Unique tokens U (> 0), e.g. 2.5e10.")],
    as_json: JsonOpt = False,
) -> None:
    """Loss, effective tokens D' and effective parameters N' of a data-constrained run (Muennighoff et al. 2023).

    Example: winnow laws muennighoff --params 6.34e9 --tokens 242e9 --unique-tokens 25e9
    """
    try:
        values = {}
        for option, text in (("--params", params), ("--tokens", tokens), ("--unique-tokens", unique_tokens)):
            values[option] = _number(text, option)
            _check(values[option] > 0, option, f"must be > 0, got {values[option]:g}")
    except ConfigError as e:
        raise _usage_error(e) from None
    n, d, u = values["--params"], values["--tokens"], values["--unique-tokens"]
    u_d = min(u, d)
    u_n = float(unique_params(u_d, n))
    result = {
        "loss": float(muennighoff_loss(n, d, u)),
        "effective_tokens": float(effective_data(u_d, d)),
        "effective_params": float(effective_params(u_n, n)),
        "unique_params": u_n,
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title="Muennighoff et al. 2023 (C4 fit)", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("loss L", f"{result['loss']:.6f}")
    table.add_row("effective tokens D'", f"{result['effective_tokens']:,.0f}")
    table.add_row("  D' / D", f"{result['effective_tokens'] / d:.4f}")
    table.add_row("effective params N'", f"{result['effective_params']:,.0f}")
    table.add_row("  N' / N", f"{result['effective_params'] / n:.4f}")
    table.add_row("params the unique data supports U_N", f"{u_n:,.0f}")
    table.add_row("epochs D / U", f"{d / u:.4g}")
    out.print(table)


# =============================================================================================================
# fit
# =============================================================================================================
@laws_app.command("fit")
def fit(
    law: Annotated[str, typer.Option("--law", help="Which law to fit: goyal or muennighoff.")],
    runs: Annotated[
        str,
        typer.Option(
            "--runs",
            help=f"CSV of proxy runs (path or fsspec URL). goyal: {', '.join(GOYAL_COLUMNS)} [, pool]; "
            f"muennighoff: {', '.join(MUENNIGHOFF_COLUMNS)}.",
        ),
    ],
    holdout: Annotated[
        int,
        typer.Option(
            "--holdout",
            help="Largest runs held out to check extrapolation (goyal: per pool, by samples; muennighoff: by tokens).",
        ),
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Fit a law to proxy runs (multi-start Huber least squares in log space) and print parameters and errors.

    Example: winnow laws fit --law goyal --runs proxy_runs.csv --holdout 1
    """
    try:
        _check(law in ("goyal", "muennighoff"), "--law", f"must be 'goyal' or 'muennighoff', got {law!r}")
        _check(holdout >= 0, "--holdout", f"must be >= 0, got {holdout}")
        try:
            table = read_runs(runs)
        except FileNotFoundError:
            msg = f"--runs: no such file: {runs}"
            raise ConfigError(msg) from None
        except (OSError, ValueError, UnicodeDecodeError) as e:
            msg = f"--runs: {e}"
            raise ConfigError(msg) from None
        try:
            result = fit_goyal(table, holdout=holdout) if law == "goyal" else fit_muennighoff(table, holdout=holdout)
        except ValueError as e:
            msg = f"--runs {runs}: {e}"
            raise ConfigError(msg) from None
    except ConfigError as e:
        raise _usage_error(e) from None

    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        _print_fit(result, runs)
    if not result.success:
        err.print(f"[bold red]fit did not converge:[/] {escape(result.message)}", highlight=False)
        raise typer.Exit(1)


def _print_fit(result: FitResult, runs: str) -> None:
    table = Table(title=escape(f"{result.law} fit to {runs}"), title_justify="left")
    table.add_column("parameter")
    table.add_column("fitted", justify="right")
    table.add_column("start", justify="right")
    p, s = result.params.to_dict(), result.start.to_dict()
    if result.law == "goyal":
        table.add_row("a", _fmt(p["a"]), _fmt(s["a"]))
        table.add_row("d", _fmt(p["d"]), _fmt(s["d"]))
        for pool, start in zip(p["pools"], s["pools"], strict=True):
            table.add_row(escape(f"b [{pool['name']}]"), _fmt(pool["b"]), _fmt(start["b"]))
            table.add_row(escape(f"tau [{pool['name']}]"), _fmt(pool["tau"]), _fmt(start["tau"]))
    else:
        for name, value in p.items():
            table.add_row(name, _fmt(value), _fmt(s[name]))
    out.print(table)
    res = list(result.residuals)
    out.print(
        f"training runs: {len(res)}, log residuals: mean {sum(res) / len(res):+.4f}, "
        f"max |r| {max(abs(r) for r in res):.4f}, mean relative error {result.train_rel_error:.4%}",
        highlight=False,
    )
    if result.heldout_index:
        cells = ", ".join(
            f"row {i + 1}: {r:+.4f}" for i, r in zip(result.heldout_index, result.heldout_residuals, strict=True)
        )
        out.print(
            f"held-out runs: {len(result.heldout_index)} ({cells}), "
            f"mean relative error {result.heldout_rel_error:.4%}",
            highlight=False,
        )
    else:
        out.print("held-out runs: none (--holdout 0)", highlight=False)
    out.print(f"success: {result.success} ({result.message}); local fits: {result.n_starts}", highlight=False)
