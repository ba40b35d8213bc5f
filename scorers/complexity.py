"""Concept complexity and density-based pruning quotas (DBP, Abbas et al. 2024; DESIGN §3.5).

Per cluster j with centroid c_j:
- ``d_intra(j)`` = mean over members of ``1 − cos(x, c_j)`` (the mean ``dist_to_centroid``);
- ``d_inter(j)`` = mean over the ``l`` nearest other centroids of ``1 − cos(c_j, c_i)`` (l = 20 by default);
- complexity ``C_j = d_inter(j) · d_intra(j)``; clusters smaller than ``min_cluster_size`` take the mean of the
  others;
- ``P_j = softmax(C_j / τ)`` (τ = 0.5);
- quotas ``x_j`` minimise ``Σ (x_j − N·P_j)²`` subject to ``Σ x_j = N`` and
  ``min(⌊balance·N/k⌋, n_j − 1) ≤ x_j ≤ n_j``: the optimum is water-filling, ``x_j = clip(N·P_j + λ, lb_j, n_j)``
  with the scalar λ found by bisection, then rounded so that ``Σ x_j = N`` exactly.
"""

from __future__ import annotations

import math

import numpy as np

#: rows of the centroid distance matrix ``d_inter`` holds at once: about this many bytes (float64)
D_INTER_BLOCK_BYTES = 32 << 20


def d_inter(centroids: np.ndarray, neighbors: int = 20, block_bytes: int = D_INTER_BLOCK_BYTES) -> np.ndarray:
    """Mean cosine distance of each centroid to its ``neighbors`` nearest other centroids (all others if fewer).

    Computed in blocks of rows: memory about ``block_bytes`` instead of k² float64 (800 MB at k = 10,000, times two
    for a full sort: the prune step's peak at 10M documents, bench/RESULTS.md), and a partial sort per row.

    With one block (k up to 2,048 at 32 MiB: every test fixture) the matrix product is the unblocked one, so the bits
    are the same. With several (blocks of equal size, never a thin tail), BLAS may pick another kernel for a block
    than for the whole symmetric product, so a value may differ in its last bit (``tests/pipeline/
    test_prune_d_inter.py``); on this machine's OpenBLAS at k = 10,000 none does and the 10M-document plan is byte
    for byte the same. The single-frame and two-pass paths both call this function, so they always agree."""
    k = centroids.shape[0]
    if k < 2:
        return np.zeros(k, dtype=np.float64)
    c = centroids.astype(np.float64)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    m = min(neighbors, k - 1)
    out = np.empty(k, np.float64)
    blocks = -(-k // max(1, block_bytes // (8 * k)))
    for b in range(blocks):
        lo, hi = b * k // blocks, (b + 1) * k // blocks
        dist = 1.0 - c[lo:hi] @ c.T
        dist[np.arange(hi - lo), np.arange(lo, hi)] = np.inf
        out[lo:hi] = np.sort(np.partition(dist, m - 1, axis=1)[:, :m], axis=1).mean(axis=1)
    return out


def complexity(d_intra: np.ndarray, d_inter_: np.ndarray, sizes: np.ndarray, min_cluster_size: int = 2) -> np.ndarray:
    """``C_j = d_inter · d_intra``; clusters under ``min_cluster_size`` members get the mean of the others."""
    c = np.asarray(d_inter_, np.float64) * np.asarray(d_intra, np.float64)
    small = np.asarray(sizes) < min_cluster_size
    if small.any():
        c = c.copy()
        c[small] = c[~small].mean() if (~small).any() else 0.0
    return c


def softmax(x: np.ndarray, temperature: float = 0.5) -> np.ndarray:
    z = np.asarray(x, np.float64) / temperature
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def quota_bounds(sizes: np.ndarray, target: int, balance: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(lb, ub)`` per cluster: ``lb = min(⌊balance·N/k⌋, n_j − 1)`` (not below 0), ``ub = n_j``."""
    sizes = np.asarray(sizes, np.int64)
    k = len(sizes)
    floor_share = math.floor(balance * target / k) if k else 0
    lb = np.maximum(np.minimum(floor_share, sizes - 1), 0)
    return lb, sizes.copy()


def water_fill(ideal: np.ndarray, lb: np.ndarray, ub: np.ndarray, target: int, tol: float = 1e-9) -> np.ndarray:
    """Integer quotas closest (in squared error) to ``ideal`` with ``lb ≤ x ≤ ub`` and ``Σ x = target``.

    The continuous optimum is ``clip(ideal + λ, lb, ub)`` with λ found by bisection; rounding takes the floor
    and gives the remaining units to the largest fractional parts (ties: lower cluster index) that are below
    their upper bound.

    Raises:
        ValueError: ``target`` outside ``[Σ lb, Σ ub]``.
    """
    ideal = np.asarray(ideal, np.float64)
    lb = np.asarray(lb, np.float64)
    ub = np.asarray(ub, np.float64)
    if np.any(lb > ub):
        raise ValueError("a lower bound exceeds its upper bound")
    if not (lb.sum() - tol <= target <= ub.sum() + tol):
        raise ValueError(f"target {target} outside [{lb.sum():.0f}, {ub.sum():.0f}]")
    if len(ideal) == 0:
        return np.zeros(0, np.int64)

    def total(lam: float) -> float:
        return float(np.clip(ideal + lam, lb, ub).sum())

    lo = float(np.min(lb - ideal)) - 1.0
    hi = float(np.max(ub - ideal)) + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if total(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    x = np.clip(ideal + hi, lb, ub)
    base = np.floor(x + 1e-9).astype(np.int64)
    base = np.clip(base, lb.astype(np.int64), ub.astype(np.int64))
    remaining = int(target - base.sum())
    if remaining > 0:
        frac = x - base
        room = base < ub
        order = np.lexsort((np.arange(len(x)), -np.where(room, frac, -np.inf)))
        take = [i for i in order if room[i]][:remaining]
        base[take] += 1
    elif remaining < 0:  # floating error pushed a floor above target: take from the smallest fractions
        frac = x - base
        room = base > lb
        order = np.lexsort((np.arange(len(x)), np.where(room, frac, np.inf)))
        take = [i for i in order if room[i]][:-remaining]
        base[take] -= 1
    assert base.sum() == target
    return base


def dbp_quotas(
    sizes: np.ndarray,
    d_intra: np.ndarray,
    d_inter_: np.ndarray,
    target: int,
    temperature: float = 0.5,
    balance: float = 0.5,
    min_cluster_size: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(complexity, P, quota)`` per cluster for a kept size ``target``."""
    c = complexity(d_intra, d_inter_, sizes, min_cluster_size)
    p = softmax(c, temperature)
    lb, ub = quota_bounds(sizes, target, balance)
    quota = water_fill(target * p, lb, ub, target)
    return c, p, quota
