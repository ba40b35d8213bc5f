"""Scaling laws for data curation: pure functions, vectorised over budgets where natural (DESIGN §3.7, §3.8).

Two families:

* **Quality-quantity (Goyal et al. 2024, "Scaling Laws for Data Filtering — Data Curation cannot be Compute
  Agnostic", CVPR 2024).** A pool of E unique samples has a utility exponent ``b < 0`` that decays with every
  repetition, halving every ``tau`` repetitions. The predicted error after ``n`` samples is

  .. code-block:: text

      K    = floor(n / E)                               completed epochs (k = 0..K, the last one partial)
      b_k  = b · 0.5^(k / τ)                            utility of the k-th repetition
      s_k  = a · min(E·(k+1), n) / 1e5                  samples seen by the end of epoch k (normalised)
      s'_k = a · E·k / 1e5                              samples seen by the start of epoch k
      y_0  = s_0^(b_0) + d
      y    = y_0 · Π_{k=1..K} (s_k / s'_k)^(b_k)

  When ``n`` is an exact multiple of ``E`` the last factor is ``(n / n)^(b_K) = 1``, so the formula is
  continuous in ``n``. ``a`` (sample-efficiency scale) and ``d`` (the floor) are *shared by all pools*: the
  reference code asserts a single ``a`` when pools are combined (``objective.py``), chooses one ``a`` and one
  ``d`` jointly for all pools (``ablations/finding_a.py``) and takes ``d`` as one number (``--d``) in
  ``estimate_best_pool.py``. Only ``b`` and ``tau`` belong to a pool. The union of several pools is one pool of
  ``E = Σ E_i`` samples whose k-th repetition has exponent ``b_k = mean_i(b_i · 0.5^(k / τ_i))``; the reference
  code also multiplies every ``τ_i`` by the number of pools combined (``tau_scaling="pools"``, the default
  here), ``tau_scaling="none"`` keeps them as they are.

  The law assumes ``s_0 = a·min(E, n)/1e5 > 1`` (the regime of the paper: a ≈ 0.025, pools of 12.8M samples,
  s_0 ≈ 3). Below it, ``s_0^b`` grows as ``b`` becomes more negative, so "better" pools predict a *higher*
  error and the choice of the best pools is no longer monotone in the budget.

* **Repetition value (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", NeurIPS 2023).**
  Effective data ``D' = U_D + U_D·R*_D·(1 − exp(−R_D / R*_D))`` with ``R_D = D/U_D − 1`` (Eq. 5), effective
  parameters ``N' = U_N + U_N·R*_N·(1 − exp(−R_N / R*_N))`` with ``R_N = N/U_N − 1`` (Eq. 6) and the loss
  ``L = E + A / N'^α + B / D'^β``. ``U_N`` — the parameters the unique data supports — is the Chinchilla
  compute-optimal model size for ``U_D`` tokens under the same fitted law, capped at ``N``:
  ``U_N = min(N, G·(G·U_D)^(β/α))`` with ``G = (α·A / (β·B))^(1/(α+β))`` (Muennighoff et al. 2023; ``D_to_N`` in the
  README of huggingface/datablations). With the fitted constants ``U_N ≈ 0.051·U_D``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ALPHA",
    "BETA",
    "GOYAL_DECAY_BASE",
    "GOYAL_NORMALIZER",
    "MUENNIGHOFF_2023",
    "R_STAR_D",
    "R_STAR_N",
    "A",
    "B",
    "E",
    "GoyalParams",
    "MuennighoffParams",
    "PoolParams",
    "TopM",
    "best_top_m",
    "chinchilla_optimal_params",
    "effective_data",
    "effective_params",
    "goyal_error",
    "goyal_union_error",
    "muennighoff_loss",
    "unique_params",
    "union_exponents",
    "utility_exponents",
]

TauScaling = Literal["pools", "none"]
BMean = Literal["pools", "samples"]

# --- Goyal et al. 2024 ---------------------------------------------------------------------------------------
#: Samples are divided by this before the power law (the reference code's ``normalizer=100_000``).
GOYAL_NORMALIZER = 1e5
#: Base of the utility decay: the exponent halves every ``tau`` repetitions.
GOYAL_DECAY_BASE = 0.5

# --- Muennighoff et al. 2023 (Appendix A fit on C4) ----------------------------------------------------------
#: Decay constant of repeated tokens: at R_D = R*_D repeated tokens are worth 1 − 1/e of fresh ones.
R_STAR_D = 15.387756
#: Decay constant of excess parameters.
R_STAR_N = 5.309743
LOG_A = 6.255414
LOG_B = 7.3049974
LOG_E = 0.6254804
A = float(np.exp(LOG_A))  # ≈ 521
B = float(np.exp(LOG_B))  # ≈ 1488
E = float(np.exp(LOG_E))  # ≈ 1.87
ALPHA = 0.3526596
BETA = 0.3526596


# =============================================================================================================
# Parameter containers
# =============================================================================================================
@dataclass(frozen=True)
class PoolParams:
    """The per-pool parameters of the Goyal et al. (2024) law.

    Args:
        b: Utility exponent of fresh data, ``< 0``; more negative means higher quality.
        tau: Half-life of the utility in repetitions, ``> 0``.
        name: Optional label of the pool (quality bucket × domain, a CSV ``pool`` value).
    """

    b: float
    tau: float
    name: str = ""

    def __post_init__(self) -> None:
        _check_b(self.b, "b")
        _check_tau(self.tau, "tau")


@dataclass(frozen=True)
class GoyalParams:
    """A fitted Goyal et al. (2024) law: shared ``a`` and ``d`` plus ``b``/``tau`` per pool.

    Args:
        a: Sample-efficiency scale shared by every pool, ``> 0``.
        d: Error floor shared by every pool, ``>= 0``.
        pools: One :class:`PoolParams` per pool.
    """

    a: float
    d: float
    pools: tuple[PoolParams, ...]

    def __post_init__(self) -> None:
        _check_positive(self.a, "a")
        _check_nonnegative(self.d, "d")

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"a", "d", "pools": [{"name", "b", "tau"}, ...]}``."""
        return {"a": self.a, "d": self.d, "pools": [asdict(p) for p in self.pools]}


@dataclass(frozen=True)
class MuennighoffParams:
    """The constants of the Muennighoff et al. (2023) data-constrained law.

    Defaults are the paper's Appendix A fit (``MUENNIGHOFF_2023``).

    Args:
        A: Parameter term coefficient (default ``e^6.255414``).
        B: Data term coefficient (default ``e^7.3049974``).
        E: Irreducible loss (default ``e^0.6254804``).
        alpha: Parameter exponent (default 0.3526596).
        beta: Data exponent (default 0.3526596).
        r_star_d: Decay constant of repeated tokens (default 15.387756).
        r_star_n: Decay constant of excess parameters (default 5.309743).
    """

    A: float = A
    B: float = B
    E: float = E
    alpha: float = ALPHA
    beta: float = BETA
    r_star_d: float = R_STAR_D
    r_star_n: float = R_STAR_N

    def to_dict(self) -> dict:
        """JSON-ready dict of the seven constants."""
        return asdict(self)


MUENNIGHOFF_2023 = MuennighoffParams()


# =============================================================================================================
# Goyal et al. 2024
# =============================================================================================================
def utility_exponents(b: float, tau: float, epochs: ArrayLike) -> np.ndarray:
    """Utility exponent of the k-th repetition, ``b_k = b · 0.5^(k/τ)`` (Goyal et al. 2024).

    Args:
        b: Exponent of fresh data (``< 0``).
        tau: Half-life in repetitions (``> 0``).
        epochs: Repetition indices ``k`` (0 = the first pass).

    Returns:
        ``b_k`` with the shape of ``epochs``.
    """
    k = np.asarray(epochs, dtype=np.float64)
    return b * GOYAL_DECAY_BASE ** (k / tau)


def union_exponents(
    bs: ArrayLike,
    taus: ArrayLike,
    epochs: ArrayLike,
    tau_scaling: TauScaling = "pools",
    pool_sizes: ArrayLike | None = None,
    b_mean: BMean = "pools",
) -> np.ndarray:
    """Exponent of the k-th repetition of a union of pools, ``b_k = mean_i(b_i · 0.5^(k / τ_i))`` (Goyal et al.).

    Args:
        bs: ``b_i`` of each pool.
        taus: ``τ_i`` of each pool.
        epochs: Repetition indices ``k`` of the union.
        tau_scaling: ``"pools"`` (default, as the reference ``estimate_best_pool.py``) multiplies every ``τ_i``
            by the number of pools combined; ``"none"`` uses the ``τ_i`` as given.
        pool_sizes: Only used with ``b_mean="samples"``.
        b_mean: ``"pools"`` (default, DESIGN §3.7 and the reference) averages the pools' exponents with equal
            weights; ``"samples"`` weights them by pool size, which differs only when the sizes differ.

    Returns:
        ``b_k`` with the shape of ``epochs``.
    """
    bs = np.atleast_1d(np.asarray(bs, dtype=np.float64))
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if tau_scaling == "pools":
        taus = taus * len(bs)
    elif tau_scaling != "none":
        msg = f"tau_scaling must be 'pools' or 'none', got {tau_scaling!r}"
        raise ValueError(msg)
    if b_mean == "pools":
        weights = np.full(len(bs), 1.0 / len(bs))
    elif b_mean == "samples":
        if pool_sizes is None:
            msg = "b_mean='samples' needs pool_sizes"
            raise ValueError(msg)
        sizes = np.asarray(pool_sizes, dtype=np.float64)
        weights = sizes / sizes.sum()
    else:
        msg = f"b_mean must be 'pools' or 'samples', got {b_mean!r}"
        raise ValueError(msg)
    k = np.asarray(epochs, dtype=np.float64)
    per_pool = bs[:, None] * GOYAL_DECAY_BASE ** (k.reshape(1, -1) / taus[:, None])  # (pools, epochs)
    return (weights @ per_pool).reshape(k.shape)


def _goyal(n: ArrayLike, pool_size: float, a: float, d: float, exponents) -> np.ndarray:
    """Goyal error for budgets ``n`` of one pool of ``pool_size`` samples with ``exponents(k) -> b_k``.

    Computed as ``log y = log y_0 + Σ_{k=1..K} b_k · log(s_k / s'_k)`` over a (budgets × epochs) grid, masking
    epochs beyond each budget's K. ``a`` and the 1e5 normaliser cancel in ``s_k / s'_k``.
    """
    n = np.asarray(n, dtype=np.float64)
    if np.any(~np.isfinite(n)) or np.any(n <= 0):
        msg = f"samples must be finite and > 0, got {n.tolist()}"
        raise ValueError(msg)
    _check_positive(pool_size, "pool_size")
    _check_positive(a, "a")
    _check_nonnegative(d, "d")
    epochs_done = np.floor(n / pool_size)  # K
    k_max = int(epochs_done.max()) if n.size else 0
    b_k = np.asarray(exponents(np.arange(k_max + 1)), dtype=np.float64)
    s0 = a * np.minimum(pool_size, n) / GOYAL_NORMALIZER
    y0 = s0 ** b_k[0] + d
    if k_max == 0:
        return y0
    k = np.arange(1, k_max + 1, dtype=np.float64)
    s = np.minimum(pool_size * (k + 1), n[..., None])  # (..., K_max)
    s_prev = pool_size * k
    live = k <= epochs_done[..., None]  # k > K: the epoch never started
    log_ratio = np.where(live, np.log(np.where(live, s / s_prev, 1.0)), 0.0)
    return y0 * np.exp((log_ratio * b_k[1:]).sum(axis=-1))


def goyal_error(n: ArrayLike, pool_size: float, a: float, b: float, tau: float, d: float) -> np.ndarray:
    """Predicted error after ``n`` samples from one pool (Goyal et al. 2024; DESIGN §3.7).

    ``y = (s_0^(b_0) + d) · Π_{k=1..K} (s_k / s'_k)^(b_k)`` with ``K = floor(n/E)``, ``b_k = b·0.5^(k/τ)``,
    ``s_k = a·min(E(k+1), n)/1e5`` and ``s'_k = a·E·k/1e5``. For ``n <= E`` (one epoch of unique data) this is
    the no-repetition law ``(a·n/1e5)^b + d``.

    Args:
        n: Samples seen (scalar or array), ``> 0``.
        pool_size: Unique samples in the pool, ``E > 0``.
        a: Shared sample-efficiency scale, ``> 0``.
        b: Utility exponent of fresh data, ``< 0``.
        tau: Half-life of the utility in repetitions, ``> 0``.
        d: Shared error floor, ``>= 0``.

    Returns:
        Predicted error, same shape as ``n``. Memory and time grow with ``len(n) · max(K)``.
    """
    _check_b(b, "b")
    _check_tau(tau, "tau")
    return _goyal(n, pool_size, a, d, lambda k: utility_exponents(b, tau, k))


def goyal_union_error(
    n: ArrayLike,
    pool_sizes: ArrayLike,
    a: float,
    bs: ArrayLike,
    taus: ArrayLike,
    d: float,
    tau_scaling: TauScaling = "pools",
    b_mean: BMean = "pools",
) -> np.ndarray:
    """Predicted error after ``n`` samples from the union of pools (Goyal et al. 2024; DESIGN §3.7).

    The union is one pool of ``E = Σ E_i`` samples whose k-th repetition has exponent
    ``b_k = mean_i(b_i · 0.5^(k / τ_i))`` (see :func:`union_exponents`); ``a`` and ``d`` are shared. For a single
    pool this is :func:`goyal_error` whatever ``tau_scaling`` (the pool count is 1).

    Args:
        n: Samples seen (scalar or array), ``> 0``.
        pool_sizes: ``E_i`` of each pool.
        a: Shared sample-efficiency scale, ``> 0``.
        bs: ``b_i < 0`` of each pool.
        taus: ``τ_i > 0`` of each pool.
        d: Shared error floor, ``>= 0``.
        tau_scaling: ``"pools"`` (default, the reference code) multiplies each ``τ_i`` by the number of pools
            combined; ``"none"`` keeps the ``τ_i``.
        b_mean: ``"pools"`` (default) equal-weight mean of the exponents; ``"samples"`` weights by pool size.

    Returns:
        Predicted error, same shape as ``n``.
    """
    sizes, bs, taus = _check_pools(pool_sizes, bs, taus)
    return _goyal(n, float(sizes.sum()), a, d, lambda k: union_exponents(bs, taus, k, tau_scaling, sizes, b_mean))


@dataclass(frozen=True)
class TopM:
    """Predicted error of the union of the top m pools, m = 1..M, for one budget.

    Args:
        errors: ``errors[m-1]`` is the predicted error of the union of the ``m`` best pools.
        best_m: The 1-based ``m`` of the smallest error (the smallest such ``m`` on ties).
        order: Indices of the input pools, best (most negative ``b``) first.
    """

    errors: np.ndarray
    best_m: int
    order: np.ndarray


def best_top_m(
    n: float,
    pool_sizes: ArrayLike,
    a: float,
    bs: ArrayLike,
    taus: ArrayLike,
    d: float,
    tau_scaling: TauScaling = "pools",
    b_mean: BMean = "pools",
) -> TopM:
    """Best curation for a budget of ``n`` samples: how many of the best pools to train on (Goyal et al. 2024).

    Pools are sorted by ``b`` ascending (most negative = highest quality first; stable on ties); the error of
    the union of the top ``m`` pools is predicted for every ``m``, and the argmin is returned.

    Args:
        n: Sample budget, ``> 0``.
        pool_sizes: ``E_i`` of each pool (in input order).
        a: Shared sample-efficiency scale, ``> 0``.
        bs: ``b_i < 0`` of each pool.
        taus: ``τ_i > 0`` of each pool.
        d: Shared error floor, ``>= 0``.
        tau_scaling: See :func:`goyal_union_error`; with ``"pools"`` the union of ``m`` pools uses ``m·τ_i``.
        b_mean: See :func:`goyal_union_error`.

    Returns:
        A :class:`TopM` with the errors for ``m = 1..M``, the best ``m`` (1-based) and the pool order.
    """
    sizes, bs, taus = _check_pools(pool_sizes, bs, taus)
    if np.ndim(n) != 0:
        msg = "best_top_m takes one budget n; loop over budgets"
        raise ValueError(msg)
    order = np.argsort(bs, kind="stable")
    errors = np.array(
        [
            float(goyal_union_error(n, sizes[order[:m]], a, bs[order[:m]], taus[order[:m]], d, tau_scaling, b_mean))
            for m in range(1, len(bs) + 1)
        ]
    )
    return TopM(errors=errors, best_m=int(np.argmin(errors)) + 1, order=order)


# =============================================================================================================
# Muennighoff et al. 2023
# =============================================================================================================
def _repetition_value(unique: ArrayLike, total: ArrayLike, r_star: float) -> np.ndarray:
    unique = np.asarray(unique, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    seen = np.minimum(unique, total)  # total < unique: only `total` of them are ever seen, none repeated
    reps = np.maximum(total / seen - 1.0, 0.0)
    return seen + seen * r_star * (1.0 - np.exp(-reps / r_star))


def effective_data(U: ArrayLike, D: ArrayLike, r_star: float = R_STAR_D) -> np.ndarray:
    """Effective data ``D' = U + U·R*·(1 − exp(−R/R*))``, ``R = D/U − 1`` (Muennighoff et al. 2023, Eq. 5).

    ``D <= U`` means no repetition and ``D' = D`` (the unique tokens actually seen are ``min(U, D)``). As
    ``R → ∞``, ``D' → (1 + R*)·U``; four epochs are worth about 93% of fresh data, sixteen about 66%.

    Args:
        U: Unique tokens ``U_D`` (> 0).
        D: Total training tokens.
        r_star: ``R*_D`` (default 15.387756).

    Returns:
        ``D'``, broadcast over the inputs.
    """
    return _repetition_value(U, D, r_star)


def effective_params(U_N: ArrayLike, N: ArrayLike, r_star: float = R_STAR_N) -> np.ndarray:
    """Effective parameters ``N' = U_N + U_N·R*_N·(1 − exp(−R_N/R*_N))``, ``R_N = N/U_N − 1`` (Eq. 6).

    Args:
        U_N: Parameters the unique data supports (see :func:`unique_params`); ``N <= U_N`` gives ``N' = N``.
        N: Model parameters.
        r_star: ``R*_N`` (default 5.309743).

    Returns:
        ``N'``, broadcast over the inputs.
    """
    return _repetition_value(U_N, N, r_star)


def chinchilla_optimal_params(D: ArrayLike, params: MuennighoffParams = MUENNIGHOFF_2023) -> np.ndarray:
    """Compute-optimal parameters for ``D`` training tokens under ``L = E + A/N^α + B/D^β``.

    ``N_opt = G·(G·D)^(β/α)`` with ``G = (α·A / (β·B))^(1/(α+β))`` (Hoffmann et al. 2022, Eq. 4; ``D_to_N`` of
    huggingface/datablations). With the Muennighoff et al. constants ``N_opt ≈ 0.051·D``.

    Args:
        D: Training tokens.
        params: Law constants (default the paper's fit).

    Returns:
        ``N_opt`` with the shape of ``D``.
    """
    p = params
    g = (p.alpha * p.A / (p.beta * p.B)) ** (1.0 / (p.alpha + p.beta))
    return g * (g * np.asarray(D, dtype=np.float64)) ** (p.beta / p.alpha)


def unique_params(U: ArrayLike, N: ArrayLike, params: MuennighoffParams = MUENNIGHOFF_2023) -> np.ndarray:
    """``U_N = min(N, N_opt(U_D))``: the parameters ``U_D`` unique tokens support (Muennighoff et al. 2023).

    Args:
        U: Unique tokens ``U_D``.
        N: Model parameters.
        params: Law constants (default the paper's fit).

    Returns:
        ``U_N``, broadcast over the inputs.
    """
    return np.minimum(np.asarray(N, dtype=np.float64), chinchilla_optimal_params(U, params))


def muennighoff_loss(
    N: ArrayLike, D: ArrayLike, U: ArrayLike, params: MuennighoffParams = MUENNIGHOFF_2023
) -> np.ndarray:
    """Loss of ``N`` parameters trained on ``D`` tokens of which ``U`` unique (Muennighoff et al. 2023).

    ``L = E + A / N'^α + B / D'^β`` with ``D' = effective_data(U_D, D)``, ``N' = effective_params(U_N, N)``,
    ``U_D = min(U, D)`` and ``U_N = min(N, N_opt(U_D))``.

    Args:
        N: Model parameters (> 0).
        D: Training tokens (> 0).
        U: Unique tokens (> 0).
        params: Law constants (default the paper's fit).

    Returns:
        Predicted loss, broadcast over the inputs.
    """
    p = params
    u_d = np.minimum(np.asarray(U, dtype=np.float64), np.asarray(D, dtype=np.float64))
    d_eff = effective_data(u_d, D, p.r_star_d)
    n_eff = effective_params(unique_params(u_d, N, p), N, p.r_star_n)
    return p.E + p.A / n_eff**p.alpha + p.B / d_eff**p.beta


# =============================================================================================================
# Checks
# =============================================================================================================
def _check_positive(x: float, name: str) -> None:
    if not np.isfinite(x) or x <= 0:
        msg = f"{name} must be a finite number > 0, got {x}"
        raise ValueError(msg)


def _check_nonnegative(x: float, name: str) -> None:
    if not np.isfinite(x) or x < 0:
        msg = f"{name} must be a finite number >= 0, got {x}"
        raise ValueError(msg)


def _check_b(x: float, name: str) -> None:
    if not np.isfinite(x) or x >= 0:
        msg = f"{name} must be a finite number < 0 (the utility exponent), got {x}"
        raise ValueError(msg)


def _check_tau(x: float, name: str) -> None:
    if not np.isfinite(x) or x <= 0:
        msg = f"{name} must be a finite number > 0 (the half-life in repetitions), got {x}"
        raise ValueError(msg)


def _check_pools(pool_sizes: ArrayLike, bs: ArrayLike, taus: ArrayLike) -> tuple[np.ndarray, ...]:
    bs = np.atleast_1d(np.asarray(bs, dtype=np.float64))
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    sizes = np.atleast_1d(np.asarray(pool_sizes, dtype=np.float64))
    if sizes.size == 1 and bs.size > 1:
        sizes = np.full(bs.size, sizes[0])
    if bs.ndim != 1 or bs.size == 0 or not (bs.size == taus.size == sizes.size):
        msg = f"need one b, tau and pool size per pool, got {bs.size} b, {taus.size} tau, {sizes.size} sizes"
        raise ValueError(msg)
    for i in range(bs.size):
        _check_b(bs[i], f"b[{i}]")
        _check_tau(taus[i], f"tau[{i}]")
        _check_positive(sizes[i], f"pool_size[{i}]")
    return sizes, bs, taus
