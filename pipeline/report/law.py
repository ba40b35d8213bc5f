"""The Goyal et al. (2024) law in the report: the training budget, the single-pool prediction and its table, and the
law fitted to the proxy LM's checkpoints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from winnow.core.errors import ConfigError
from winnow.mixers.fit import fit_goyal
from winnow.mixers.laws import goyal_error
from winnow.mixers.planner import resolve_law
from winnow.pipeline.config import WinnowConfig

__all__ = ["law_fit_table", "law_prediction_table", "predicted_error", "resolve_budget", "single_pool_law"]


def resolve_budget(cfg: WinnowConfig, corpus_tokens: int, budget_tokens: float | None = None) -> tuple[int, str]:
    """The token budget of ``predicted_error``: the argument, the run's ``mix`` budget, else the corpus's tokens."""
    if budget_tokens is not None:
        if not budget_tokens >= 1:
            msg = f"--budget-tokens must be >= 1, got {budget_tokens:g}"
            raise ConfigError(msg)
        return int(budget_tokens), "--budget-tokens"
    try:
        tokens, source = cfg.mix.resolved_budget()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if tokens is not None:
        return int(tokens), str(source)
    return max(int(corpus_tokens), 1), "default: the corpus's tokens (one epoch of the unpruned corpus)"


def single_pool_law(cfg: WinnowConfig):
    """The Goyal law's parameters for one bucket ``all`` (:func:`winnow.mixers.planner.resolve_law`, as the mixer)."""
    return resolve_law(cfg.mix, [("all", 1)], 1)


def predicted_error(unique_tokens: float, budget: int, law) -> float:
    """Goyal et al. error after ``budget`` tokens drawn from one pool of ``unique_tokens`` (nan for an empty pool)."""
    if unique_tokens <= 0:
        return math.nan
    p = law.bucket("all")
    return float(goyal_error(budget, float(unique_tokens), law.a, p.b, p.tau, law.d))


def law_prediction_table(
    curves: pl.DataFrame, law, budget: int, corpus_tokens: int, max_repeats: float, points: int = 60
) -> pl.DataFrame:
    """``kind, strategy, keep_fraction, unique_tokens, unique_tokens_end, predicted_error, region`` behind
    ``law_prediction.png``.

    ``curve`` rows sample the law over pool sizes from ``budget / (4 · max_repeats)`` to ``4 ×`` the larger of the
    budget and the corpus; ``point`` rows are the pruning-curve points; ``region`` rows span ``[unique_tokens,
    unique_tokens_end]``: ``beyond max_repeats`` (the budget would repeat the pool more than ``mix.max_repeats``
    times) and ``extrapolated`` (more unique tokens than the corpus holds).
    """
    lo = max(1.0, budget / (4.0 * max_repeats))
    hi = 4.0 * max(budget, corpus_tokens)
    grid = np.geomspace(lo, hi, points)
    rows: list[dict[str, Any]] = [
        {"kind": "region", "unique_tokens": lo, "unique_tokens_end": budget / max_repeats,
         "region": "beyond max_repeats"},
        {"kind": "region", "unique_tokens": float(corpus_tokens), "unique_tokens_end": hi, "region": "extrapolated"},
    ]  # fmt: skip
    rows += [{"kind": "curve", "unique_tokens": float(e), "predicted_error": predicted_error(e, budget, law)}
             for e in grid]  # fmt: skip
    for r in curves.iter_rows(named=True):
        rows.append({"kind": "point", "strategy": r["strategy"], "keep_fraction": r["keep_fraction"],
                     "unique_tokens": float(r["unique_tokens_kept"]),
                     "predicted_error": r["predicted_error"]})  # fmt: skip
    schema = {"kind": pl.String, "strategy": pl.String, "keep_fraction": pl.Float64, "unique_tokens": pl.Float64,
              "unique_tokens_end": pl.Float64, "predicted_error": pl.Float64, "region": pl.String}  # fmt: skip
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


def law_fit_table(checkpoints: pl.DataFrame) -> tuple[pl.DataFrame, dict | None, str | None]:
    """Fit the Goyal law to the proxy checkpoints (one pool per strategy); the table behind ``law_fit.png``.

    Every point's last checkpoint is held out (``holdout`` = the points per strategy: their ``tokens_seen`` tie
    at the maximum). Columns: ``kind`` (``observed`` / ``fitted``), ``strategy, keep_fraction, tokens_seen,
    pool_tokens, loss, predicted, heldout``.

    Returns:
        The table, the fit's JSON (``FitResult.to_dict()``), and why there is no fit (or None).
    """
    schema = {"kind": pl.String, "strategy": pl.String, "keep_fraction": pl.Float64,
              "tokens_seen": pl.Float64, "pool_tokens": pl.Float64, "loss": pl.Float64, "predicted": pl.Float64,
              "heldout": pl.Boolean}  # fmt: skip
    if checkpoints.height == 0:
        return pl.DataFrame([], schema=schema), None, "no proxy checkpoints"
    per_pool = checkpoints.group_by("strategy").agg(pl.col("keep_fraction").n_unique())["keep_fraction"].max()
    runs = {
        "samples": checkpoints["tokens_seen"].to_list(),
        "pool_size": checkpoints["pool_tokens"].to_list(),
        "error": checkpoints["loss"].to_list(),
        "pool": checkpoints["strategy"].to_list(),
    }
    try:
        fit = fit_goyal(runs, holdout=int(per_pool))
    except ValueError as e:
        return pl.DataFrame([], schema=schema), None, f"the law could not be fitted: {e}"
    params = fit.params
    by_pool = {p.name: p for p in params.pools}
    held = np.zeros(checkpoints.height, dtype=bool)
    held[list(fit.heldout_index)] = True
    rows = []
    for i, r in enumerate(checkpoints.iter_rows(named=True)):
        pp = by_pool[r["strategy"]]
        pred = float(goyal_error(r["tokens_seen"], r["pool_tokens"], params.a, pp.b, pp.tau, params.d))
        rows.append({"kind": "observed", **{k: r[k] for k in ("strategy", "keep_fraction", "tokens_seen",
                     "pool_tokens", "loss")}, "predicted": pred, "heldout": bool(held[i])})  # fmt: skip
    seen = checkpoints["tokens_seen"].to_numpy().astype(np.float64)
    grid = np.geomspace(seen.min() / 2, seen.max() * 4, 50)
    for (s, frac), g in checkpoints.group_by(["strategy", "keep_fraction"], maintain_order=True):
        pp = by_pool[s]
        e = float(g["pool_tokens"][0])
        pred = goyal_error(grid, e, params.a, pp.b, pp.tau, params.d)
        for n, y in zip(grid, pred, strict=True):
            rows.append({"kind": "fitted", "strategy": s, "keep_fraction": frac, "tokens_seen": float(n),
                         "pool_tokens": e, "loss": None, "predicted": float(y), "heldout": None})  # fmt: skip
    return pl.DataFrame(rows, schema=schema), fit.to_dict(), None
