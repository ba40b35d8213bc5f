"""SemDeDup (Abbas et al. 2023): within each cluster, each member's max similarity to a higher-ranked member.

For the members of one cluster ranked by ``rank`` (``hard``: descending distance to the centroid, the paper's
default; ``easy``: ascending; ``random``: a seeded permutation), member j gets
``M_j = max_{i ranked before j} cos(e_i, e_j)`` and the index of that argmax. j is a semantic duplicate when
``M_j ≥ 1 − ε``; because ``M_j`` is stored, any ε — and a whole ε sweep — is a threshold over one column.
The first-ranked member has no predecessor: its ``M`` is NaN (stored as null), it is never a duplicate.

The cost is O(n² d) per cluster; it is computed in ``block × block`` tiles of the strict lower triangle of the
ranked similarity matrix, so a 100k-member cluster never needs a 100k × 100k matrix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Rank = Literal["hard", "easy", "random"]


def rank_order(dist: np.ndarray, rank: Rank, seed: int = 0, cluster_id: int = 0, keys: np.ndarray | None = None):
    """Member indices in rank order (rank 0 first). Ties are broken by ``keys`` (default: position), so the order
    is deterministic whatever the order the members arrived in."""
    n = len(dist)
    tiebreak = np.arange(n) if keys is None else keys
    if rank == "hard":
        return np.lexsort((tiebreak, -dist.astype(np.float64)))
    if rank == "easy":
        return np.lexsort((tiebreak, dist.astype(np.float64)))
    if rank == "random":
        base = np.lexsort((tiebreak,))  # canonical order, then a seeded permutation of it
        rng = np.random.default_rng([seed, cluster_id])
        return base[rng.permutation(n)]
    raise ValueError(f"dedup.rank={rank!r}; allowed: hard, easy, random")


def max_sim_to_earlier(emb: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For rows in the given (ranked) order: max cosine to any earlier row, and that row's index.

    Args:
        emb: ``[n, d]`` L2-normalised vectors in rank order.
        block: tile size; memory is O(block²).

    Returns:
        ``(max_sim float32 [n], argmax int64 [n])``; row 0 gets ``(nan, -1)``.
    """
    n = emb.shape[0]
    best = np.full(n, -np.inf, dtype=np.float32)
    arg = np.full(n, -1, dtype=np.int64)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        rows = emb[r0:r1]
        for c0 in range(0, r1, block):  # only columns before the rows' end (lower triangle)
            c1 = min(r1, c0 + block)
            sims = rows @ emb[c0:c1].T  # [r1-r0, c1-c0]
            if c1 > r0:  # the diagonal tile: keep only columns strictly before each row
                ri = np.arange(r0, r1)[:, None]
                ci = np.arange(c0, c1)[None, :]
                sims = np.where(ci < ri, sims, -np.inf)
            j = np.argmax(sims, axis=1)
            v = sims[np.arange(r1 - r0), j]
            better = v > best[r0:r1]
            best[r0:r1] = np.where(better, v, best[r0:r1])
            arg[r0:r1] = np.where(better, c0 + j, arg[r0:r1])
    best[arg < 0] = np.nan
    return best, arg


def semdedup_cluster(
    emb: np.ndarray,
    dist: np.ndarray,
    rank: Rank = "hard",
    seed: int = 0,
    cluster_id: int = 0,
    keys: np.ndarray | None = None,
    block: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """SemDeDup for the members of one cluster, in their given order.

    Returns:
        ``(dup_max_sim float32 [n], dup_nn int64 [n])`` per member in input order: the max similarity to a
        higher-ranked member (NaN for the top-ranked one) and the input index of that member (-1 if none).
    """
    n = emb.shape[0]
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    order = rank_order(dist, rank, seed=seed, cluster_id=cluster_id, keys=keys)
    sims, arg = max_sim_to_earlier(emb[order], block=block)
    out_sim = np.empty(n, np.float32)
    out_nn = np.empty(n, np.int64)
    out_sim[order] = sims
    out_nn[order] = np.where(arg >= 0, order[np.maximum(arg, 0)], -1)
    return out_sim, out_nn


def is_duplicate(dup_max_sim: np.ndarray, eps: float) -> np.ndarray:
    """``M_j ≥ 1 − ε`` (NaN, i.e. no predecessor, is never a duplicate)."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(dup_max_sim, nan=-np.inf) >= 1.0 - eps


def kept_fraction_by_eps(dup_max_sim: np.ndarray, eps_values: list[float]) -> dict[float, float]:
    """The fraction of documents SemDeDup keeps at each ε, from the stored column alone."""
    n = len(dup_max_sim)
    return {float(e): (float((~is_duplicate(dup_max_sim, e)).sum()) / n if n else 1.0) for e in eps_values}
