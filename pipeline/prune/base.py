"""What every prune strategy shares: the decision record, the target, tie-broken top-k, cluster statistics."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from winnow.clustering.semdedup import is_duplicate, kept_fraction_by_eps
from winnow.core.errors import CurationError
from winnow.scorers.base import CRITERION_COLUMNS
from winnow.scorers.complexity import complexity, d_inter

if TYPE_CHECKING:  # the config is assembled above this layer; strategies read its attributes only
    from winnow.pipeline.config import WinnowConfig

#: quality columns carried from ``quality/`` into the decisions and the curated shards
QUALITY_OUT = (*CRITERION_COLUMNS, "quality_overall", "quality_score", "quality_domain")


@dataclass
class Decision:
    n: int
    keep: np.ndarray
    reason: np.ndarray  # object array of str | None
    target: int | None
    cluster_stats: pl.DataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    repeat: np.ndarray | None = None  # quality strategies: draws per document (0 = dropped)

    @property
    def kept(self) -> int:
        return int(self.keep.sum())

    @property
    def dropped_by_reason(self) -> dict[str, int]:
        values, counts = np.unique(self.reason[~self.keep].astype(str), return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def target_size(cfg: WinnowConfig, n: int) -> int | None:
    p = cfg.prune
    if p.keep_count is not None:
        if p.keep_count > n:
            raise CurationError(f"prune.keep_count={p.keep_count} exceeds the {n} valid documents")
        return p.keep_count
    if p.keep_fraction is not None:
        return int(math.floor(p.keep_fraction * n + 0.5))
    return None


@dataclass
class PruneContext:
    """Everything a strategy reads: the canonical frame, the config, the centroids and the derived target.

    ``sims`` is ``dup_max_sim`` (NaN where null) and ``dup`` its duplicates at ``dedup.eps`` when SemDeDup ran.
    """

    frame: pl.DataFrame
    cfg: WinnowConfig
    centroids: np.ndarray | None
    target: int | None = None
    sims: np.ndarray | None = None
    dup: np.ndarray | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    _tie: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, frame: pl.DataFrame, cfg: WinnowConfig, centroids: np.ndarray | None) -> PruneContext:
        ctx = cls(frame, cfg, centroids, target=target_size(cfg, frame.height))
        if "dup_max_sim" in frame.columns:
            ctx.sims = frame["dup_max_sim"].to_numpy().astype(np.float32)  # null -> NaN
            ctx.dup = is_duplicate(ctx.sims, cfg.dedup.eps)
        ctx.summary = {"strategy": cfg.prune.strategy, "n": frame.height, "target": ctx.target}
        return ctx

    @property
    def n(self) -> int:
        return self.frame.height

    @property
    def tie(self) -> np.ndarray:
        """The seeded ``row_hash`` of (stem, row) per row: the tie-break of every ranking."""
        if self._tie is None:
            if "stem" in self.frame.columns:
                self._tie = row_hash(self.frame["stem"], self.frame["pos"], self.cfg.run.seed)
            else:
                self._tie = np.zeros(self.n, np.uint64)
        return self._tie

    @property
    def idx(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)

    def empty(self) -> tuple[np.ndarray, np.ndarray]:
        """``keep`` all false and ``reason`` all null, one per row."""
        return np.zeros(self.n, dtype=bool), np.full(self.n, None, dtype=object)

    def default_cluster_stats(self) -> pl.DataFrame | None:
        """Per-cluster statistics (no quotas) when the run has clusters; survivors are the SemDeDup survivors."""
        if self.centroids is None or "cluster_id" not in self.frame.columns:
            return None
        survivors = ~self.dup if self.dup is not None else np.ones(self.n, dtype=bool)
        return cluster_stats_frame(*cluster_table(self.frame, self.centroids, survivors, self.cfg))

    def finish(self, keep, reason, stats, repeat=None, check_draws=True) -> Decision:
        """The decision, with the ε sweep and the kept / dropped counts in the summary."""
        drawn = int(keep.sum()) if repeat is None else int(repeat.sum())
        if check_draws and self.target is not None and drawn != self.target:  # pragma: no cover - a bug
            raise AssertionError(f"prune drew {drawn} documents, target {self.target}")
        summary = self.summary
        if "dup_max_sim" in self.frame.columns:
            sims = self.frame["dup_max_sim"].to_numpy().astype(np.float32)
            sweep = kept_fraction_by_eps(sims, self.cfg.dedup.eps_sweep)
            summary["kept_fraction_by_eps"] = {str(k): v for k, v in sweep.items()}
        decision = Decision(
            n=self.n, keep=keep, reason=reason, target=self.target, cluster_stats=stats, summary=summary, repeat=repeat
        )
        summary["kept"] = decision.kept
        summary["dropped_by_reason"] = decision.dropped_by_reason
        return decision


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic): a stable 64-bit mix."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def stem_code(stem: str, seed: int, salt: str = "") -> int:
    """The 64-bit code of one stem under ``seed`` (and ``salt``, which gives an independent hash)."""
    key = f"{seed}:{salt}:{stem}" if salt else f"{seed}:{stem}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def row_hash(stems: pl.Series, pos: pl.Series, seed: int, salt: str = "") -> np.ndarray:
    """A seeded 64-bit hash of (stem, row) per document, stable across versions, platforms and shard orders.

    Breaks ties between equal scores (integer ratings tie often): a tie at the cut is then a seeded draw, not a
    preference for earlier-named shards or earlier rows. ``salt`` gives another, independent hash (``random``'s draw).
    """
    codes = {stem: stem_code(stem, seed, salt) for stem in stems.unique().to_list()}
    base = stems.replace_strict(codes, return_dtype=pl.UInt64).to_numpy()
    return _splitmix64(base ^ _splitmix64(pos.cast(pl.UInt64).to_numpy()))


def shard_row_hash(stem: str, n: int, seed: int, salt: str = "") -> np.ndarray:
    """``row_hash`` of rows ``0 .. n-1`` of one shard."""
    return _splitmix64(np.uint64(stem_code(stem, seed, salt)) ^ _splitmix64(np.arange(n, dtype=np.uint64)))


def take_top(
    score: np.ndarray, candidates: np.ndarray, count: int, largest: bool, tie: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the ``count`` candidates with the largest (or smallest) score; ties by ``tie`` (the seeded
    ``row_hash``), then by index (the canonical order)."""
    if count <= 0 or len(candidates) == 0:
        return np.zeros(0, np.int64)
    s = score[candidates].astype(np.float64) + 0.0  # -0.0 ties with 0.0
    t = tie[candidates] if tie is not None else np.zeros(len(candidates), np.uint64)
    order = np.lexsort((candidates, t, -s if largest else s))
    return candidates[order[:count]]


def stem_chunks(frame: pl.DataFrame) -> list[tuple[int, int]]:
    """Row ranges of the canonical frame's shards (one range when it has no ``stem`` column)."""
    if "stem" not in frame.columns or frame.height == 0:
        return [(0, frame.height)]
    stems = frame["stem"]
    starts = np.flatnonzero((stems != stems.shift(1)).fill_null(True).to_numpy())
    ends = np.r_[starts[1:], frame.height]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def cluster_table(frame: pl.DataFrame, centroids: np.ndarray, survivors: np.ndarray, cfg: WinnowConfig):
    """Per-cluster size, size after SemDeDup, d_intra (over survivors), d_inter, complexity."""
    k = centroids.shape[0]
    labels = frame["cluster_id"].to_numpy()
    dist = frame["dist_to_centroid"].to_numpy().astype(np.float64)
    size = np.bincount(labels, minlength=k)
    size_s = np.bincount(labels[survivors], minlength=k)
    sum_s = np.zeros(k, np.float64)
    for lo, hi in stem_chunks(frame):  # summed shard by shard, as the two-pass path does: the same bits
        sl = survivors[lo:hi]
        sum_s = sum_s + np.bincount(labels[lo:hi][sl], weights=dist[lo:hi][sl], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_intra = np.where(size_s > 0, sum_s / np.maximum(size_s, 1), 0.0)
    d_int = d_inter(centroids, cfg.prune.dbp_neighbors)
    comp = complexity(d_intra, d_int, size_s, cfg.prune.dbp_min_cluster_size)
    return size, size_s, d_intra, d_int, comp


def cluster_stats_frame(size, size_s, d_intra, d_int, comp, quota=None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "cluster_id": np.arange(len(size), dtype=np.int32),
            "size": size.astype(np.int64),
            "size_after_dedup": size_s.astype(np.int64),
            "d_intra": d_intra,
            "d_inter": d_int,
            "complexity": comp,
            "quota": pl.Series([None] * len(size), dtype=pl.Int64) if quota is None else quota.astype(np.int64),
        }
    )
