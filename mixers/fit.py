"""Fit the scaling laws of :mod:`winnow.mixers.laws` to proxy runs (DESIGN §3.7, §3.8; STYLE rule 21).

Every fit works the same way: residuals are ``log(predicted) − log(observed)``; a grid of starting points is
scored first, then ``scipy.optimize.least_squares(..., loss="huber")`` runs from the best few of them (the
locuslab README reports that a single scipy start is unstable for these laws, hence their grid search); the
largest runs are held out and predicted by the fitted law to check extrapolation.

Proxy-run tables (a CSV read with :func:`read_runs`, or any mapping / DataFrame / ``pyarrow.Table`` whose
columns can be read with ``runs[name]``), one row per evaluated run or checkpoint:

* Goyal et al. 2024 (``fit_goyal``):

  ============== ====================================================================================
  ``samples``    samples seen ``n`` (> 0)
  ``pool_size``  unique samples ``E`` in the pool the run drew from (> 0); proxies may use subsampled pools
  ``error``      observed error, e.g. ``1 − accuracy`` (> 0)
  ``pool``       optional pool name; all rows are one pool when absent. ``a`` and ``d`` are shared by all
                 pools, ``b`` and ``tau`` are fitted per pool.
  ============== ====================================================================================

* Muennighoff et al. 2023 (``fit_muennighoff``):

  ================= ===============================================================
  ``params``        model parameters ``N`` (> 0)
  ``tokens``        training tokens ``D`` (> 0)
  ``unique_tokens`` unique tokens ``U`` (> 0)
  ``loss``          observed loss (> 0)
  ================= ===============================================================
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import fsspec
import numpy as np
from scipy.optimize import least_squares

from winnow.core.errors import ConfigError
from winnow.mixers.laws import (
    GoyalParams,
    MuennighoffParams,
    PoolParams,
    goyal_error,
    muennighoff_loss,
)

__all__ = [
    "GOYAL_COLUMNS",
    "MUENNIGHOFF_COLUMNS",
    "FitResult",
    "FittedLaw",
    "fit_goyal",
    "fit_muennighoff",
    "read_fitted_law",
    "read_runs",
]

#: Required columns of a Goyal proxy-run table (``pool`` is optional).
GOYAL_COLUMNS = ("samples", "pool_size", "error")
#: Required columns of a Muennighoff proxy-run table.
MUENNIGHOFF_COLUMNS = ("params", "tokens", "unique_tokens", "loss")
#: Residual standing in for a prediction that is not finite, so the optimiser steers away from it.
_BAD_RESIDUAL = 1e3


@dataclass(frozen=True)
class FitResult:
    """A fitted law and its diagnostics.

    Args:
        law: ``"goyal"`` or ``"muennighoff"``.
        params: The fitted parameters.
        start: The starting point (from the grid) the best local fit started from.
        residuals: ``log(pred) − log(obs)`` on the training runs, in table order.
        heldout_residuals: ``log(pred) − log(obs)`` on the held-out runs, in table order.
        heldout_index: Table row indices of the held-out runs.
        heldout_rel_error: Mean ``|pred − obs| / obs`` over the held-out runs (``nan`` when none is held out).
        train_rel_error: Mean ``|pred − obs| / obs`` over the training runs.
        cost: Final Huber cost of the best local fit (scipy's ``cost``).
        success: scipy's success flag and a finite cost.
        message: scipy's message.
        n_starts: How many local fits were run.
    """

    law: str
    params: GoyalParams | MuennighoffParams
    start: GoyalParams | MuennighoffParams
    residuals: tuple[float, ...]
    heldout_residuals: tuple[float, ...]
    heldout_index: tuple[int, ...]
    heldout_rel_error: float
    train_rel_error: float
    cost: float
    success: bool
    message: str
    n_starts: int

    def to_dict(self) -> dict:
        """JSON-ready dict (``nan`` becomes ``None``)."""

        def clean(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        return {
            "law": self.law,
            "params": self.params.to_dict(),
            "start": self.start.to_dict(),
            "residuals": [clean(r) for r in self.residuals],
            "heldout_residuals": [clean(r) for r in self.heldout_residuals],
            "heldout_index": list(self.heldout_index),
            "heldout_rel_error": clean(self.heldout_rel_error),
            "train_rel_error": clean(self.train_rel_error),
            "cost": clean(self.cost),
            "success": self.success,
            "message": self.message,
            "n_starts": self.n_starts,
        }


# =============================================================================================================
# Reading runs
# =============================================================================================================
def read_runs(path: str, storage_options: Mapping | None = None) -> dict[str, list[str]]:
    """Read a proxy-run CSV (header row first) into ``{column: [cell, ...]}``.

    Cells stay strings; the fit functions convert them and name the file line of a bad value only when the
    table came from here (they name the row otherwise).

    Args:
        path: Local path or fsspec URL of the CSV.
        storage_options: fsspec options for remote paths.

    Returns:
        Column name → list of cell strings.

    Raises:
        ValueError: If the file has no header or a row has the wrong number of cells.
    """
    with fsspec.open(path, "rt", encoding="utf-8", newline="", **(storage_options or {})) as f:
        text = f.read()
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        msg = f"{path}: empty file, expected a CSV header"
        raise ValueError(msg) from None
    table: dict[str, list[str]] = {h: [] for h in header}
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            msg = f"{path}, line {line_no}: {len(row)} cells, the header has {len(header)}"
            raise ValueError(msg)
        for h, c in zip(header, row, strict=True):
            table[h].append(c.strip())
    return table


def _columns_of(runs) -> list[str]:
    for attr in ("column_names", "columns"):
        if hasattr(runs, attr):
            return [str(c) for c in getattr(runs, attr)]
    return [str(k) for k in runs.keys()]


def _require(runs, required: Sequence[str]) -> None:
    available = _columns_of(runs)
    missing = [c for c in required if c not in available]
    if missing:
        msg = f"missing column(s) {', '.join(missing)}; available: {', '.join(available) or '(none)'}"
        raise ValueError(msg)


def _numbers(runs, name: str, *, positive: bool = True) -> np.ndarray:
    column = runs[name]
    values = column.to_pylist() if hasattr(column, "to_pylist") else list(column)  # pyarrow columns
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            msg = f"column {name!r}, row {i + 1} (line {i + 2} of a CSV): not a number: {v!r}"
            raise ValueError(msg) from None
        if not math.isfinite(out[i]) or (positive and out[i] <= 0):
            msg = f"column {name!r}, row {i + 1} (line {i + 2} of a CSV): must be a finite number > 0, got {v!r}"
            raise ValueError(msg)
    return out


def _largest(values: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest ``values`` of each group (ties: later rows first)."""
    mask = np.zeros(len(values), dtype=bool)
    if k <= 0:
        return mask
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        order = idx[np.argsort(values[idx], kind="stable")]
        mask[order[-k:]] = True
    return mask


# =============================================================================================================
# The multi-start robust least squares
# =============================================================================================================
def _huber_cost(r: np.ndarray, f_scale: float) -> float:
    z = (r / f_scale) ** 2
    rho = np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
    return 0.5 * f_scale**2 * float(rho.sum())


def _multistart(
    residual: Callable[[np.ndarray], np.ndarray],
    starts: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    n_starts: int,
    f_scale: float,
    max_nfev: int | None,
):
    """Score every start, run ``least_squares`` (Huber) from the ``n_starts`` best, keep the lowest cost."""
    starts = np.clip(starts, lower, upper)
    scores = np.array([_huber_cost(residual(x), f_scale) for x in starts])
    best = np.argsort(scores, kind="stable")[: max(1, n_starts)]
    fits = []
    for i in best:
        res = least_squares(
            residual, starts[i], bounds=(lower, upper), loss="huber", f_scale=f_scale, x_scale="jac",
            max_nfev=max_nfev,
        )  # fmt: skip
        fits.append((float(res.cost), int(i), res))
    cost, i, res = min(fits, key=lambda t: (t[0] if math.isfinite(t[0]) else math.inf, t[1]))
    return res, starts[i], len(best)


def _safe_log_residual(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        r = np.log(pred) - np.log(obs)
    return np.where(np.isfinite(r), r, _BAD_RESIDUAL)


def _rel_error(pred: np.ndarray, obs: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - obs) / obs)) if len(obs) else math.nan


# =============================================================================================================
# Goyal et al. 2024
# =============================================================================================================
def _goyal_predict(x: np.ndarray, pool_ids: np.ndarray, n: np.ndarray, sizes: np.ndarray, n_pools: int):
    a, d = math.exp(x[0]), x[1]
    bs, taus = x[2 : 2 + n_pools], np.exp(x[2 + n_pools :])
    pred = np.empty(len(n))
    for p in range(n_pools):
        rows = np.flatnonzero(pool_ids == p)
        b, tau = bs[p], taus[p]
        for size in np.unique(sizes[rows]):  # the law's epochs depend on E: one vectorised call per pool size
            r = rows[sizes[rows] == size]
            with np.errstate(all="ignore"):
                pred[r] = goyal_error(n[r], size, a, b, tau, d)
    return pred


def fit_goyal(
    runs,
    *,
    holdout: int = 1,
    n_starts: int = 5,
    f_scale: float = 0.05,
    a_grid: Sequence[float] = tuple(np.geomspace(1e-4, 1.0, 9)),
    b_grid: Sequence[float] = (-0.03, -0.1, -0.3),
    tau_grid: Sequence[float] = (1.0, 4.0, 16.0),
    d_fractions: Sequence[float] = (0.0, 0.5, 0.9),
    max_nfev: int | None = 2000,
) -> FitResult:
    """Fit the Goyal et al. (2024) quality-quantity law to proxy runs: shared ``a``, ``d``; ``b``, ``tau`` per pool.

    Parameters are fitted as ``[log a, d, b_1..b_P, log tau_1..log tau_P]`` with bounds ``a ∈ [1e-8, 1e4]``,
    ``d ∈ [0, max error]``, ``b ∈ [-5, -1e-6]``, ``tau ∈ [1e-2, 1e4]``. The start grid is every combination of
    ``a_grid``, ``d_fractions × min(error)``, ``b_grid`` and ``tau_grid`` (the same ``b``, ``tau`` for all pools).

    Args:
        runs: Proxy runs with columns ``samples``, ``pool_size``, ``error`` and optionally ``pool`` (module doc).
        holdout: Runs held out *per pool*: the ``holdout`` largest by ``samples`` (default 1; 0 for none).
        n_starts: Local fits run from the best-scoring grid points (default 5).
        f_scale: Huber scale of the log residuals (default 0.05, i.e. about 5% relative error).
        a_grid: Starting values of ``a`` (default 9 log-spaced values in [1e-4, 1]).
        b_grid: Starting values of ``b`` (default -0.03, -0.1, -0.3).
        tau_grid: Starting values of ``tau`` (default 1, 4, 16).
        d_fractions: Starting ``d`` as fractions of the smallest observed error (default 0, 0.5, 0.9).
        max_nfev: Function-evaluation cap of each local fit (default 2000).

    Returns:
        A :class:`FitResult` whose ``params`` is a :class:`~winnow.mixers.laws.GoyalParams` (pools in first-seen
        order).

    Raises:
        ValueError: Missing columns, bad values, or fewer training runs than free parameters.
    """
    _require(runs, GOYAL_COLUMNS)
    n = _numbers(runs, "samples")
    sizes = _numbers(runs, "pool_size")
    err = _numbers(runs, "error")
    if "pool" in _columns_of(runs):
        column = runs["pool"]
        pool_names_col = [str(p) for p in (column.to_pylist() if hasattr(column, "to_pylist") else column)]
    else:
        pool_names_col = ["pool"] * len(n)
    names = list(dict.fromkeys(pool_names_col))
    pool_ids = np.array([names.index(p) for p in pool_names_col], dtype=np.int64)
    n_pools = len(names)

    held = _largest(n, pool_ids, holdout)
    train = ~held
    n_free = 2 + 2 * n_pools
    if train.sum() < n_free:
        msg = (
            f"{int(train.sum())} training run(s) after holding out {holdout} per pool, need at least {n_free} "
            f"for {n_pools} pool(s) (a, d, and b, tau per pool)"
        )
        raise ValueError(msg)

    def residual(x: np.ndarray) -> np.ndarray:
        pred = _goyal_predict(x, pool_ids[train], n[train], sizes[train], n_pools)
        return _safe_log_residual(pred, err[train])

    lower = np.r_[math.log(1e-8), 0.0, np.full(n_pools, -5.0), np.full(n_pools, math.log(1e-2))]
    upper = np.r_[math.log(1e4), float(err.max()), np.full(n_pools, -1e-6), np.full(n_pools, math.log(1e4))]
    starts = np.array(
        [
            np.r_[math.log(a), frac * float(err.min()), np.full(n_pools, b), np.full(n_pools, math.log(tau))]
            for a, frac, b, tau in itertools.product(a_grid, d_fractions, b_grid, tau_grid)
        ]
    )
    res, x0, used = _multistart(residual, starts, lower, upper, n_starts, f_scale, max_nfev)

    def params_of(x: np.ndarray) -> GoyalParams:
        pools = tuple(
            PoolParams(b=float(x[2 + i]), tau=float(math.exp(x[2 + n_pools + i])), name=names[i])
            for i in range(n_pools)
        )
        return GoyalParams(a=float(math.exp(x[0])), d=float(x[1]), pools=pools)

    pred = _goyal_predict(res.x, pool_ids, n, sizes, n_pools)
    return _result("goyal", params_of(res.x), params_of(x0), pred, err, held, res, used)


# =============================================================================================================
# Muennighoff et al. 2023
# =============================================================================================================
_M_NAMES = ("A", "B", "E", "alpha", "beta", "r_star_d", "r_star_n")
_M_LOG = {"A", "B", "E", "r_star_d", "r_star_n"}  # fitted as logarithms
_M_BOUNDS = {
    "A": (-5.0, 30.0),
    "B": (-5.0, 30.0),
    "E": (-10.0, 5.0),
    "alpha": (0.01, 2.0),
    "beta": (0.01, 2.0),
    "r_star_d": (math.log(0.1), math.log(1e4)),
    "r_star_n": (math.log(0.1), math.log(1e4)),
}


def fit_muennighoff(
    runs,
    *,
    holdout: int = 1,
    tie_exponents: bool = True,
    fixed: Mapping[str, float] | None = None,
    n_starts: int = 5,
    f_scale: float = 0.02,
    grid: Mapping[str, Sequence[float]] | None = None,
    max_nfev: int | None = 2000,
) -> FitResult:
    """Fit the Muennighoff et al. (2023) data-constrained law to proxy runs.

    Free parameters are fitted as ``log A``, ``log B``, ``log E``, ``alpha``, ``beta``, ``log R*_D``,
    ``log R*_N`` (as the paper fits ``a = log A`` etc., App. A). ``U_N`` follows the fitted ``A, B, alpha,
    beta`` (see :func:`winnow.mixers.laws.unique_params`). With few proxy runs, fix the base law (``fixed={"A": ...,
    "B": ..., "E": ..., "alpha": ..., "beta": ...}``) and fit only the decay constants, as the paper does in its
    second stage.

    Args:
        runs: Proxy runs with columns ``params``, ``tokens``, ``unique_tokens``, ``loss`` (module doc).
        holdout: Runs held out: the ``holdout`` largest by ``tokens`` (default 1; 0 for none).
        tie_exponents: Fit ``beta = alpha`` (default True; the paper's fit has ``α = β = 0.3526596``).
        fixed: Parameter name → value to hold fixed (names: ``A, B, E, alpha, beta, r_star_d, r_star_n``;
            natural units, not logs). Default none.
        n_starts: Local fits run from the best-scoring grid points (default 5).
        f_scale: Huber scale of the log residuals (default 0.02).
        grid: Starting values per parameter name, natural units (defaults: ``A, B`` in ``e^{2, 6, 10}``, ``E``
            in ``{0.3, 0.6, 0.9} × min(loss)``, ``alpha``/``beta`` in ``{0.2, 0.35, 0.5}``, ``r_star_d`` in
            ``{5, 15, 50}``, ``r_star_n`` in ``{2, 5, 15}``).
        max_nfev: Function-evaluation cap of each local fit (default 2000).

    Returns:
        A :class:`FitResult` whose ``params`` is a :class:`~winnow.mixers.laws.MuennighoffParams`.

    Raises:
        ValueError: Missing columns, bad values, unknown fixed names, or too few training runs.
    """
    _require(runs, MUENNIGHOFF_COLUMNS)
    N = _numbers(runs, "params")
    D = _numbers(runs, "tokens")
    U = _numbers(runs, "unique_tokens")
    loss = _numbers(runs, "loss")
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - set(_M_NAMES))
    if unknown:
        msg = f"unknown fixed parameter(s) {', '.join(unknown)}; known: {', '.join(_M_NAMES)}"
        raise ValueError(msg)
    if tie_exponents and "beta" in fixed and "alpha" not in fixed:
        fixed["alpha"] = fixed["beta"]
    free = [k for k in _M_NAMES if k not in fixed and not (tie_exponents and k == "beta")]
    if not free:
        msg = "every parameter is fixed; nothing to fit"
        raise ValueError(msg)

    held = _largest(D, np.zeros(len(D), dtype=np.int64), holdout)
    train = ~held
    if train.sum() < len(free):
        msg = f"{int(train.sum())} training run(s) after holding out {holdout}, need at least {len(free)}"
        raise ValueError(msg)

    def params_of(x: np.ndarray) -> MuennighoffParams:
        values = dict(fixed)
        for name, v in zip(free, x, strict=True):
            values[name] = math.exp(v) if name in _M_LOG else float(v)
        if tie_exponents:
            values["beta"] = values["alpha"]
        return MuennighoffParams(**{f.name: float(values[f.name]) for f in fields(MuennighoffParams)})

    def predict(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return muennighoff_loss(N[rows], D[rows], U[rows], params_of(x))

    def residual(x: np.ndarray) -> np.ndarray:
        return _safe_log_residual(predict(x, train), loss[train])

    default_grid = {
        "A": np.exp([2.0, 6.0, 10.0]),
        "B": np.exp([2.0, 6.0, 10.0]),
        "E": np.array([0.3, 0.6, 0.9]) * float(loss.min()),
        "alpha": [0.2, 0.35, 0.5],
        "beta": [0.2, 0.35, 0.5],
        "r_star_d": [5.0, 15.0, 50.0],
        "r_star_n": [2.0, 5.0, 15.0],
    }
    default_grid.update({k: list(v) for k, v in (grid or {}).items()})
    axes = [[math.log(v) if name in _M_LOG else float(v) for v in default_grid[name]] for name in free]
    starts = np.array(list(itertools.product(*axes)), dtype=np.float64)
    lower = np.array([_M_BOUNDS[name][0] for name in free])
    upper = np.array([_M_BOUNDS[name][1] for name in free])
    res, x0, used = _multistart(residual, starts, lower, upper, n_starts, f_scale, max_nfev)
    pred = predict(res.x, np.arange(len(loss)))
    return _result("muennighoff", params_of(res.x), params_of(x0), pred, loss, held, res, used)


def _result(law, params, start, pred, obs, held, res, used) -> FitResult:
    train = ~held
    r_all = _safe_log_residual(pred, obs)
    return FitResult(
        law=law,
        params=params,
        start=start,
        residuals=tuple(float(r) for r in r_all[train]),
        heldout_residuals=tuple(float(r) for r in r_all[held]),
        heldout_index=tuple(int(i) for i in np.flatnonzero(held)),
        heldout_rel_error=_rel_error(pred[held], obs[held]),
        train_rel_error=_rel_error(pred[train], obs[train]),
        cost=float(res.cost),
        success=bool(res.success and math.isfinite(res.cost)),
        message=str(res.message),
        n_starts=used,
    )


# =============================================================================================================
# Reading a fitted Goyal law back (mix.law.fitted)
# =============================================================================================================
@dataclass(frozen=True)
class FittedLaw:
    """A Goyal et al. (2024) fit read from a JSON file (:func:`read_fitted_law`).

    Args:
        path: The file it was read from.
        a: Shared sample-efficiency scale.
        d: Shared error floor.
        pools: ``name -> (b, tau)`` in the file's order.
        buckets: The quality-bucket definition the fit was made on (``winnow report`` writes it), or None.
        unit: What the fit's samples count (``winnow report`` writes it), or None.
        notes: Things the user should know (a fit that did not converge).
    """

    path: str
    a: float
    d: float
    pools: dict[str, tuple[float, float]]
    buckets: dict | None = None
    unit: str | None = None
    notes: tuple[str, ...] = ()


def _fitted_error(path: str, what: str) -> ConfigError:
    return ConfigError(f"mix.law.fitted: {path}: {what}")


def _fitted_number(path: str, obj: Mapping, key: str, where: str, ok: Callable[[float], bool], rule: str) -> float:
    if key not in obj:
        raise _fitted_error(path, f"missing key {where}{key}")
    try:
        v = float(obj[key])
    except (TypeError, ValueError):
        raise _fitted_error(path, f"{where}{key} is not a number: {obj[key]!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise _fitted_error(path, f"{where}{key} must be {rule}, got {obj[key]!r}")
    return v


def _fitted_pools(path: str, pools: object, prefix: str) -> dict[str, tuple[float, float]]:
    if not isinstance(pools, list) or not pools:
        raise _fitted_error(path, f"{prefix}pools must be a non-empty list of {{name, b, tau}}")
    out: dict[str, tuple[float, float]] = {}
    for i, p in enumerate(pools):
        where = f"{prefix}pools[{i}]."
        if not isinstance(p, Mapping):
            raise _fitted_error(path, f"{prefix}pools[{i}] must be an object {{name, b, tau}}, got {p!r}")
        if "name" not in p:
            raise _fitted_error(path, f"missing key {where}name (the quality bucket it fits)")
        name = str(p["name"])
        if name in out:
            raise _fitted_error(path, f"{where}name {name!r} appears twice")
        b = _fitted_number(path, p, "b", where, lambda x: x < 0, "< 0 (the utility exponent)")
        tau = _fitted_number(path, p, "tau", where, lambda x: x > 0, "> 0 (the half-life in repetitions)")
        out[name] = (b, tau)
    return out


def read_fitted_law(
    path: str, labels: Sequence[str] | None = None, storage_options: Mapping | None = None
) -> FittedLaw:
    """Read a Goyal fit: ``winnow report --proxy lm``'s ``law_fit.json``, ``winnow laws fit --law goyal --json``'s
    output (both ``{"law": "goyal", "params": {...}, ...}``) or a bare ``{"a", "d", "pools": [{"name", "b",
    "tau"}]}``.

    Args:
        path: The file (any fsspec URL).
        labels: The quality buckets the fit must be for (``q1``..``q<n>``, ``overall_1``..``overall_5``, ``all``);
            a pool of another name is an error. None: any names.
        storage_options: fsspec options.

    Returns:
        A :class:`FittedLaw`.

    Raises:
        ConfigError: The file is missing or not JSON, a key is missing or has a bad value (the message names the
            file and the key), or a pool is not one of ``labels``.
    """
    try:
        with fsspec.open(path, "rt", encoding="utf-8", **dict(storage_options or {})) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"mix.law.fitted: no such file: {path}") from None
    except (OSError, ValueError) as e:
        raise _fitted_error(path, f"not a JSON file ({e})") from None
    if not isinstance(data, Mapping):
        raise _fitted_error(path, 'expected a JSON object {"law": "goyal", "params": {"a", "d", "pools"}}')
    notes: list[str] = []
    meta = data
    if "params" in data:
        if data.get("law", "goyal") != "goyal":
            raise _fitted_error(path, f"law is {data.get('law')!r}; the mixer needs a goyal fit")
        if data.get("success") is False:
            notes.append(f"the fit in {path} did not converge ({data.get('message', '')}); its parameters are used")
        data = data["params"]
        where = "params."
        if not isinstance(data, Mapping):
            raise _fitted_error(path, 'params must be an object {"a", "d", "pools"}')
    else:
        where = ""
    a = _fitted_number(path, data, "a", where, lambda x: x > 0, "> 0")
    d = _fitted_number(path, data, "d", where, lambda x: x >= 0, ">= 0")
    if "pools" not in data:
        raise _fitted_error(path, f"missing key {where}pools")
    pools = _fitted_pools(path, data["pools"], where)
    if labels is not None:
        unknown = [n for n in pools if n not in set(labels)]
        if unknown:
            raise _fitted_error(
                path,
                f"{where}pools name(s) {', '.join(map(repr, unknown))} are not quality buckets of mix.pools "
                f"({', '.join(labels)}); fit one pool per bucket (`winnow report --proxy lm` does)",
            )
    buckets = meta.get("buckets") if isinstance(meta.get("buckets"), Mapping) else None
    unit = str(meta["unit"]) if meta.get("unit") is not None else None
    return FittedLaw(str(path), a, d, pools, dict(buckets) if buckets else None, unit, tuple(notes))
