"""Decisions where the data lives: small global statistics, then a keep/drop per shard that needs nothing else.

``plan_decisions`` streams the stored numeric scores shard by shard (cluster id, distance to the centroid, SemDeDup
similarity; never the id strings) and computes only what is global: the document count and the target, per-cluster
sizes / sizes after SemDeDup / d_intra (summed shard by shard in the canonical order, the same bits as the
single-frame ``cluster_table``), d_inter, complexity and quotas, the ε sweep, and the *cuts* of every ranking
(``select.select``: a streamed radix select, exact). ``apply_plan`` then decides one shard alone from its own rows
and the plan: a row is kept when its key (score, seeded ``row_hash`` of (stem, row), canonical position) is at most
its group's cut. The decisions equal ``decide`` on the whole canonical frame, row for row (the tests run both).

A strategy joins by registering ``two_pass=TwoPass(plan, apply)`` with ``STRATEGIES``; its shards' quality columns
come from ``ShardScores.quality_columns`` (read per shard, on demand). Every built-in strategy has one. A strategy
without one (a plug-in) is decided by its single-frame function on a frame of its numeric and quality columns (no
ids), and the plan carries the per-row result (``rows``: stem, pos, keep, drop_reason, repeat), which
``apply_plan`` looks up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from winnow.clustering.semdedup import is_duplicate
from winnow.core.errors import CurationError
from winnow.pipeline.prune.base import PruneContext, cluster_stats_frame, shard_row_hash, target_size
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import Cuts, Stream, score_word, select, sort_keys
from winnow.scorers.complexity import complexity, d_inter

if TYPE_CHECKING:
    from winnow.pipeline.config import WinnowConfig

_POS_BITS = 40  # canonical position: shard rank << 40 | row (shards of up to 10^12 rows, 2^24 shards)


@dataclass
class ShardScores:
    """One shard's numeric scores, row-aligned with its ``embeddings/`` (and ``assignments/``) rows."""

    stem: str
    rank: int  # the shard's index among the run's stems, sorted
    n: int
    seed: int
    labels: np.ndarray | None = None  # int64
    dist: np.ndarray | None = None  # float64
    sims: np.ndarray | None = None  # float32, NaN where null
    extra: pl.DataFrame | None = None  # quality columns (single-frame strategies only)
    load_quality: Callable[[list[str]], pl.DataFrame] | None = field(default=None, repr=False)
    _tie: np.ndarray | None = field(default=None, repr=False)

    def quality_columns(self, names: list[str]) -> pl.DataFrame:
        """This shard's quality columns ``names`` (``quality/<stem>``), row-aligned with its other scores."""
        if self.load_quality is None:
            raise CurationError(f"{self.stem}: no quality/ ratings were loaded: the strategy needs `winnow score`")
        return self.load_quality(list(dict.fromkeys(names)))

    @property
    def tie(self) -> np.ndarray:
        if self._tie is None:
            self._tie = shard_row_hash(self.stem, self.n, self.seed)
        return self._tie

    @property
    def canon(self) -> np.ndarray:
        return (np.uint64(self.rank) << np.uint64(_POS_BITS)) | np.arange(self.n, dtype=np.uint64)

    def keys(self, score: np.ndarray, largest: bool) -> np.ndarray:
        """Sort keys: score, then the seeded hash, then the canonical position (``take_top``'s order)."""
        return sort_keys(score_word(score, largest), self.tie, self.canon)

    def dup(self, eps: float) -> np.ndarray:
        return is_duplicate(self.sims, eps) if self.sims is not None else np.zeros(self.n, dtype=bool)


class Source(Protocol):
    """Re-iterable shards of numeric scores in the canonical order."""

    clusters: bool
    dedup: bool

    def __iter__(self) -> Iterator[ShardScores]: ...

    def frame(self) -> pl.DataFrame:
        """The single-frame strategies' input: stem, pos, the numeric scores and the quality columns (no ids)."""
        ...


class FrameSource:
    """Shards of a canonical frame (``load_scores``'s): the two-pass path on data already in memory (tests)."""

    def __init__(self, frame: pl.DataFrame, seed: int):
        self._frame, self.seed = frame, seed
        self.clusters = "cluster_id" in frame.columns
        self.dedup = "dup_max_sim" in frame.columns

    def __iter__(self) -> Iterator[ShardScores]:
        parts = self._frame.partition_by("stem", maintain_order=True, as_dict=True)
        for rank, ((stem,), f) in enumerate(sorted(parts.items())):
            sh = scores_of(f, stem, rank, self.seed, self.clusters, self.dedup)
            sh.load_quality = f.select
            yield sh

    def frame(self) -> pl.DataFrame:
        return self._frame


def scores_of(f: pl.DataFrame, stem: str, rank: int, seed: int, clusters: bool, dedup: bool) -> ShardScores:
    """``ShardScores`` from a frame of one shard's rows (cluster_id, dist_to_centroid, dup_max_sim)."""
    sh = ShardScores(stem, rank, f.height, seed)
    if clusters:
        sh.labels = f["cluster_id"].cast(pl.Int64).to_numpy()
        sh.dist = f["dist_to_centroid"].to_numpy().astype(np.float64)
    if dedup:
        sh.sims = f["dup_max_sim"].to_numpy().astype(np.float32)
    return sh


@dataclass
class Totals:
    """Pass 0: the document count and the per-cluster statistics, summed shard by shard in the canonical order."""

    n: int = 0
    k: int = 0
    size: np.ndarray | None = None
    size_s: np.ndarray | None = None
    sum_s: np.ndarray | None = None
    not_dup: dict[float, int] = field(default_factory=dict)  # per ε of the sweep: documents that are no duplicate
    survivors: int = 0

    @classmethod
    def of_clusters(cls, k: int) -> Totals:
        """Empty totals with per-cluster sums for ``k`` clusters."""
        return cls(k=k, size=np.zeros(k, np.int64), size_s=np.zeros(k, np.int64), sum_s=np.zeros(k, np.float64))

    def add(self, sh: ShardScores, cfg: WinnowConfig, eligible: np.ndarray | None = None) -> None:
        """Add a shard; ``eligible``: only these rows can survive (``dbp_quality``'s pool)."""
        self.n += sh.n
        surv = ~sh.dup(cfg.dedup.eps) if eligible is None else ~sh.dup(cfg.dedup.eps) & eligible
        self.survivors += int(surv.sum())
        if sh.sims is not None:
            for e in cfg.dedup.eps_sweep:
                self.not_dup[float(e)] = self.not_dup.get(float(e), 0) + int((~is_duplicate(sh.sims, e)).sum())
        if sh.labels is not None:
            k = self.k
            self.size = self.size + np.bincount(sh.labels, minlength=k)
            self.size_s = self.size_s + np.bincount(sh.labels[surv], minlength=k)
            self.sum_s = self.sum_s + np.bincount(sh.labels[surv], weights=sh.dist[surv], minlength=k)

    def cluster_table(self, cfg: WinnowConfig, centroids: np.ndarray):
        """``base.cluster_table``'s five arrays from the sums."""
        with np.errstate(invalid="ignore", divide="ignore"):
            d_intra = np.where(self.size_s > 0, self.sum_s / np.maximum(self.size_s, 1), 0.0)
        d_int = d_inter(centroids, cfg.prune.dbp_neighbors)
        comp = complexity(d_intra, d_int, self.size_s, cfg.prune.dbp_min_cluster_size)
        return self.size, self.size_s, d_intra, d_int, comp


@dataclass
class PlanInput:
    """What a strategy's ``plan`` reads: the source, the config, the centroids, pass 0 and the target."""

    src: Source
    cfg: WinnowConfig
    centroids: np.ndarray | None
    totals: Totals
    target: int | None
    summary: dict[str, Any]

    def stream(self, chunk: Callable[[ShardScores], tuple[np.ndarray, np.ndarray] | None]) -> Stream:
        """A re-iterable stream of ``chunk(shard)`` over the shards (``None``: no candidate in that shard)."""

        def gen():
            for sh in self.src:
                c = chunk(sh)
                if c is not None and len(c[0]):
                    yield c

        return gen

    def top(self, chunk: Callable[[ShardScores], tuple[np.ndarray, np.ndarray] | None], count: int) -> Cuts:
        """The cut of the ``count`` smallest keys over one group."""
        return select(self.stream(chunk), 1, np.array([count]))

    def default_cluster_stats(self) -> pl.DataFrame | None:
        if self.centroids is None or not self.src.clusters:
            return None
        return cluster_stats_frame(*self.totals.cluster_table(self.cfg, self.centroids))


@dataclass
class Plan:
    """The global step's output: what every shard's decision reads (JSON-able but ``cluster_stats`` and ``rows``)."""

    strategy: str
    target: int | None
    cuts: dict[str, Cuts] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    cluster_stats: pl.DataFrame | None = None
    rows: pl.DataFrame | None = None  # single-frame strategies: stem, pos, keep, drop_reason, repeat
    has_repeat: bool = False

    def to_json(self) -> dict:
        return {
            "strategy": self.strategy, "target": self.target, "data": self.data, "has_repeat": self.has_repeat,
            "cuts": {k: v.to_json() for k, v in self.cuts.items()}, "single_frame": self.rows is not None,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict, rows: pl.DataFrame | None = None) -> Plan:
        cuts = {k: Cuts.from_json(v) for k, v in d["cuts"].items()}
        return cls(d["strategy"], d["target"], cuts, d["data"], rows=rows, has_repeat=d["has_repeat"])


@dataclass
class TwoPass:
    """A strategy's two-pass form: ``plan(inp) -> Plan`` (global, small) and ``apply(plan, cfg, shard) ->
    (keep, reason)`` (per shard; with ``repeats``, ``(keep, reason, repeat)``)."""

    plan: Callable[[PlanInput], Plan]
    apply: Callable[[Plan, WinnowConfig, ShardScores], tuple[np.ndarray, ...]]
    exact_target: bool = True  # keeps exactly ``target`` documents (False: a token budget, ``quality``)
    repeats: bool = False  # ``apply`` also returns ``repeat``, the draws per row (``quality``, ``dataman_level``)


def reasons(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


def plan_decisions(src: Source, cfg: WinnowConfig, centroids: np.ndarray | None) -> Plan:
    """The global step: pass 0, the strategy's plan, then a counting pass for the summary (``prune.json``)."""
    totals = Totals.of_clusters(centroids.shape[0] if centroids is not None else 0) if src.clusters else Totals()
    for sh in src:
        if sh.labels is not None and len(sh.labels) and int(sh.labels.max()) >= totals.k:
            raise CurationError(f"assignments/{sh.stem}.parquet: cluster id above k={totals.k}: rerun `winnow assign`")
        totals.add(sh, cfg)
    target = target_size(cfg, totals.n)
    summary = {"strategy": cfg.prune.strategy, "n": totals.n, "target": target}
    entry = STRATEGIES[cfg.prune.strategy]
    two_pass: TwoPass | None = entry.meta.get("two_pass")
    if two_pass is None:
        return _single_frame_plan(src, cfg, centroids)
    plan = two_pass.plan(PlanInput(src, cfg, centroids, totals, target, summary))
    plan.summary = summary
    if src.dedup:
        n = totals.n
        summary["kept_fraction_by_eps"] = {
            str(float(e)): (totals.not_dup[float(e)] / n if n else 1.0) for e in cfg.dedup.eps_sweep
        }
    kept, dropped = 0, {}
    for sh in src:
        keep, reason = two_pass.apply(plan, cfg, sh)[:2]
        kept += int(keep.sum())
        values, counts = np.unique(reason[~keep].astype(str), return_counts=True)
        for v, c in zip(values, counts, strict=True):
            dropped[str(v)] = dropped.get(str(v), 0) + int(c)
    if two_pass.exact_target and target is not None and kept != target:  # pragma: no cover - a bug
        raise AssertionError(f"prune kept {kept} documents, target {target}")
    summary["kept"] = kept
    summary["dropped_by_reason"] = dict(sorted(dropped.items()))
    return plan


def _single_frame_plan(src: Source, cfg: WinnowConfig, centroids: np.ndarray | None) -> Plan:
    """A strategy without a two-pass form: its own function on the frame of numeric and quality columns."""
    frame = src.frame()
    d = STRATEGIES[cfg.prune.strategy].obj(PruneContext.build(frame, cfg, centroids))
    rows = pl.DataFrame(
        {
            "stem": frame["stem"],
            "pos": frame["pos"],
            "keep": pl.Series(d.keep, dtype=pl.Boolean),
            "drop_reason": pl.Series(d.reason.tolist(), dtype=pl.String),
            "repeat": pl.Series(d.repeat if d.repeat is not None else np.zeros(d.n), dtype=pl.Int32),
        }
    )
    return Plan(
        cfg.prune.strategy, d.target, summary=d.summary, cluster_stats=d.cluster_stats, rows=rows,
        has_repeat=d.repeat is not None,
    )  # fmt: skip


def apply_plan(plan: Plan, cfg: WinnowConfig, sh: ShardScores) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One shard's ``keep``, ``drop_reason`` and (quality strategies) ``repeat``, from the plan and its rows."""
    if plan.rows is not None:
        rows = plan.rows.filter(pl.col("stem") == sh.stem).sort("pos")
        if rows.height != sh.n:
            raise CurationError(f"the prune plan holds {rows.height} rows of {sh.stem}, the shard {sh.n}: rerun prune")
        repeat = rows["repeat"].to_numpy() if plan.has_repeat else None
        return rows["keep"].to_numpy(), np.asarray(rows["drop_reason"].to_list(), dtype=object), repeat
    two_pass: TwoPass = STRATEGIES[plan.strategy].meta["two_pass"]
    if two_pass.repeats:
        return two_pass.apply(plan, cfg, sh)
    keep, reason = two_pass.apply(plan, cfg, sh)
    return keep, reason, (keep.astype(np.int32) if plan.has_repeat else None)  # has_repeat: each kept row once


def decide_two_pass(frame: pl.DataFrame, cfg: WinnowConfig, centroids: np.ndarray | None):
    """The two-pass decisions over a canonical frame: the plan and the per-shard results concatenated in the
    canonical order (``keep``, ``reason``, ``repeat``); equal to ``decide(frame, cfg, centroids)``."""
    src = FrameSource(frame, cfg.run.seed)
    plan = plan_decisions(src, cfg, centroids)
    parts = [apply_plan(plan, cfg, sh) for sh in src]
    keep = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, bool)
    reason = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, object)
    repeat = np.concatenate([p[2] for p in parts]) if parts and parts[0][2] is not None else None
    return plan, keep, reason, repeat
