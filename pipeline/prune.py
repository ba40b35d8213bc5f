"""Keep decisions from stored scores: one global, deterministic step (DESIGN §3.3–3.5).

Scoring is separate from deciding: this module reads the columns the earlier stages stored (cluster
assignments, SemDeDup similarities) into one frame, in the canonical order (shards sorted by name, rows in shard
order), and decides ``keep`` / ``drop_reason`` for ``prune.strategy`` and its target. Ties are broken by that
canonical order, so the result never depends on workers or shard sizes.

Strategies (N = the target, from ``keep_fraction`` rounded to the nearest row, or ``keep_count``):
- ``none``: keep everything.
- ``random``: N documents drawn uniformly without replacement (seeded).
- ``semdedup``: without a target, drop every duplicate at ``dedup.eps`` (``dup_max_sim ≥ 1 − ε``); with a target,
  keep the N least-duplicated documents (lowest ``dup_max_sim``; the top-ranked member of a cluster first).
- ``prototypicality_easy`` / ``_hard``: keep the N closest to / farthest from their centroid; with
  ``prune.balance`` every cluster first keeps its ``⌊balance·N/k⌋`` easiest / hardest (capped at its size).
- ``dbp``: SemDeDup at ``dedup.eps`` first, then per-cluster quotas by water-filling over
  ``softmax(d_inter · d_intra / τ)``; within a cluster keep the hardest (``prune.dbp_keep``). If N exceeds the
  documents left after SemDeDup, all of them are kept plus the least-duplicated duplicates, and a warning says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
from loguru import logger

from clustering.semdedup import is_duplicate, kept_fraction_by_eps
from pipeline.config import WinnowConfig
from pipeline.errors import CurationError
from pipeline.io import Shard
from scorers.complexity import d_inter, dbp_quotas

if TYPE_CHECKING:
    from pipeline.rundir import RunDir
    from pipeline.stages import Stage

NEEDS_CLUSTERS = ("prototypicality_easy", "prototypicality_hard", "dbp", "semdedup")
NEEDS_DEDUP = ("semdedup", "dbp")


def load_scores(
    run: RunDir, shards: list[Shard], id_field: str, clusters: bool, dedup: bool, n_buckets: int = 0
) -> pl.DataFrame:
    """One frame over every valid document: stem, pos, id (+ cluster_id, dist_to_centroid, dup_max_sim, dup_nn_id).

    Only the ``n_buckets`` dedup files of the current config are read (an earlier config may have left others).
    """
    from pipeline.stages import bucket_name, read_parquet

    frames = []
    for shard in shards:
        if clusters:
            t = read_parquet(run, f"assignments/{shard.stem}.parquet")
        else:
            t = read_parquet(run, f"embeddings/{shard.stem}.parquet", columns=[id_field])
        f = pl.from_arrow(t).rename({id_field: "id"})
        f = f.with_columns(pl.lit(shard.stem).alias("stem"), pl.int_range(0, f.height, dtype=pl.Int64).alias("pos"))
        frames.append(f)
    frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame({"stem": [], "pos": [], "id": []})
    if dedup:
        stems = [s.stem for s in shards]
        parts = [pl.from_arrow(read_parquet(run, f"dedup/{bucket_name(b)}.parquet")) for b in range(n_buckets)]
        d = pl.concat(parts).filter(pl.col("stem").is_in(stems)) if parts else None
        if d is None or d.height != frame.height or d.select(["stem", "pos"]).is_duplicated().any():
            raise CurationError(
                f"dedup outputs cover {0 if d is None else d.height} rows for {frame.height} documents: "
                "rerun `winnow dedup` (or `winnow run`)"
            )
        frame = frame.join(d, on=["stem", "pos"], how="left", maintain_order="left")
    # canonical order: shards by name (already sorted), rows in order
    return frame.sort(["stem", "pos"], maintain_order=True)


@dataclass
class Decision:
    n: int
    keep: np.ndarray
    reason: np.ndarray  # object array of str | None
    target: int | None
    cluster_stats: pl.DataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)

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


def _take_top(score: np.ndarray, candidates: np.ndarray, count: int, largest: bool) -> np.ndarray:
    """Indices of the ``count`` candidates with the largest (or smallest) score; ties by index."""
    if count <= 0 or len(candidates) == 0:
        return np.zeros(0, np.int64)
    s = score[candidates].astype(np.float64)
    order = np.lexsort((candidates, -s if largest else s))
    return candidates[order[:count]]


def cluster_table(frame: pl.DataFrame, centroids: np.ndarray, survivors: np.ndarray, cfg: WinnowConfig):
    """Per-cluster size, size after SemDeDup, d_intra (over survivors), d_inter, complexity."""
    k = centroids.shape[0]
    labels = frame["cluster_id"].to_numpy()
    dist = frame["dist_to_centroid"].to_numpy().astype(np.float64)
    size = np.bincount(labels, minlength=k)
    size_s = np.bincount(labels[survivors], minlength=k)
    sum_s = np.bincount(labels[survivors], weights=dist[survivors], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_intra = np.where(size_s > 0, sum_s / np.maximum(size_s, 1), 0.0)
    d_int = d_inter(centroids, cfg.prune.dbp_neighbors)
    from scorers.complexity import complexity

    comp = complexity(d_intra, d_int, size_s, cfg.prune.dbp_min_cluster_size)
    return size, size_s, d_intra, d_int, comp


def decide(frame: pl.DataFrame, cfg: WinnowConfig, centroids: np.ndarray | None) -> Decision:
    """Keep decisions for every row of ``frame`` (see the module docstring)."""
    p = cfg.prune
    n = frame.height
    strategy = p.strategy
    target = target_size(cfg, n)
    keep = np.zeros(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    idx = np.arange(n, dtype=np.int64)
    dup = None
    if "dup_max_sim" in frame.columns:
        sims = frame["dup_max_sim"].to_numpy().astype(np.float32)  # null -> NaN
        dup = is_duplicate(sims, cfg.dedup.eps)
    summary: dict[str, Any] = {"strategy": strategy, "n": n, "target": target}

    if strategy == "none":
        keep[:] = True
    elif strategy == "random":
        rng = np.random.default_rng([cfg.run.seed, 0x52414E44])
        keep[rng.permutation(n)[:target]] = True
        reason[~keep] = "random"
    elif strategy == "semdedup":
        assert dup is not None
        if target is None:
            keep = ~dup
        else:
            score = np.nan_to_num(sims, nan=-np.inf)
            keep[_take_top(score, idx, target, largest=False)] = True
        reason[~keep & dup] = "semdedup_duplicate"
        reason[~keep & ~dup] = "semdedup_rank"
    elif strategy in ("prototypicality_easy", "prototypicality_hard"):
        largest = strategy.endswith("hard")
        dist = frame["dist_to_centroid"].to_numpy()
        labels = frame["cluster_id"].to_numpy()
        chosen = np.zeros(n, dtype=bool)
        if p.balance > 0:
            k = centroids.shape[0] if centroids is not None else int(labels.max()) + 1
            floor_share = math.floor(p.balance * target / k)
            for c in np.unique(labels):
                members = idx[labels == c]
                chosen[_take_top(dist, members, min(floor_share, len(members)), largest)] = True
        rest = int(target - chosen.sum())
        chosen[_take_top(dist, idx[~chosen], rest, largest)] = True
        keep = chosen
        reason[~keep] = "prototypicality"
    elif strategy == "dbp":
        assert dup is not None and centroids is not None
        survivors = ~dup
        size, size_s, d_intra, d_int, comp = cluster_table(frame, centroids, survivors, cfg)
        labels = frame["cluster_id"].to_numpy()
        dist = frame["dist_to_centroid"].to_numpy()
        n_surv = int(survivors.sum())
        if target > n_surv:
            logger.warning(
                f"prune: dbp target {target} exceeds the {n_surv} documents left after SemDeDup at eps="
                f"{cfg.dedup.eps}; keeping all of them and the {target - n_surv} least-duplicated duplicates"
            )
            keep = survivors.copy()
            keep[_take_top(np.nan_to_num(sims, nan=-np.inf), idx[~survivors], target - n_surv, largest=False)] = True
            quota = size_s.copy()
            summary["target_exceeds_survivors"] = True
        else:
            comp, prob, quota = dbp_quotas(
                size_s, d_intra, d_int, target, p.dbp_temperature, p.dbp_balance, p.dbp_min_cluster_size
            )
            largest = p.dbp_keep == "hard"
            for c in np.flatnonzero(quota):
                members = idx[(labels == c) & survivors]
                keep[_take_top(dist, members, int(quota[c]), largest)] = True
        reason[~keep & dup] = "semdedup_duplicate"
        reason[~keep & ~dup] = "dbp_quota"
        summary["cluster_quota_sum"] = int(quota.sum())
        stats = pl.DataFrame(
            {
                "cluster_id": np.arange(len(size), dtype=np.int32),
                "size": size.astype(np.int64),
                "size_after_dedup": size_s.astype(np.int64),
                "d_intra": d_intra,
                "d_inter": d_int,
                "complexity": comp,
                "quota": quota.astype(np.int64),
            }
        )
        return _finish(frame, cfg, keep, reason, target, stats, summary)
    else:  # pragma: no cover - the config validates the strategy
        raise CurationError(f"unknown prune.strategy {strategy!r}")
    stats = None
    if centroids is not None and "cluster_id" in frame.columns:
        survivors = ~dup if dup is not None else np.ones(n, dtype=bool)
        size, size_s, d_intra, d_int, comp = cluster_table(frame, centroids, survivors, cfg)
        stats = pl.DataFrame(
            {
                "cluster_id": np.arange(len(size), dtype=np.int32),
                "size": size.astype(np.int64),
                "size_after_dedup": size_s.astype(np.int64),
                "d_intra": d_intra,
                "d_inter": d_int,
                "complexity": comp,
                "quota": pl.Series([None] * len(size), dtype=pl.Int64),
            }
        )
    return _finish(frame, cfg, keep, reason, target, stats, summary)


def _finish(frame, cfg, keep, reason, target, stats, summary) -> Decision:
    if target is not None and int(keep.sum()) != target:  # pragma: no cover - a bug, never bad input
        raise AssertionError(f"prune kept {int(keep.sum())} documents, target {target}")
    if "dup_max_sim" in frame.columns:
        summary["kept_fraction_by_eps"] = {
            str(k): v
            for k, v in kept_fraction_by_eps(
                frame["dup_max_sim"].to_numpy().astype(np.float32), cfg.dedup.eps_sweep
            ).items()
        }
    decision = Decision(n=frame.height, keep=keep, reason=reason, target=target, cluster_stats=stats, summary=summary)
    summary["kept"] = decision.kept
    summary["dropped_by_reason"] = decision.dropped_by_reason
    return decision


def write_outputs(stage: Stage, frame: pl.DataFrame, d: Decision) -> None:
    """``decisions/<stem>.parquet`` per shard, ``cluster_stats.parquet`` and ``prune.json``."""
    cfg = stage.cfg
    id_f = cfg.io.id_field
    eps = cfg.dedup.eps
    cols: dict[str, Any] = {
        "stem": frame["stem"],
        id_f: frame["id"],
    }
    if "cluster_id" in frame.columns:
        cols["cluster_id"] = frame["cluster_id"].cast(pl.Int32)
        cols["dist_to_centroid"] = frame["dist_to_centroid"].cast(pl.Float32)
    if "dup_max_sim" in frame.columns:
        sims = frame["dup_max_sim"].to_numpy().astype(np.float32)
        dup = is_duplicate(sims, eps)
        cols["dup_max_sim"] = frame["dup_max_sim"].cast(pl.Float32)
        nn = frame["dup_nn_id"].to_numpy()
        cols["dup_of"] = pl.Series("dup_of", np.where(dup, nn, None).tolist(), dtype=pl.String)
    cols["keep"] = pl.Series("keep", d.keep, dtype=pl.Boolean)
    cols["drop_reason"] = pl.Series("drop_reason", d.reason.tolist(), dtype=pl.String)
    out = pl.DataFrame(cols)
    for shard in stage.shards:
        part = out.filter(pl.col("stem") == shard.stem).drop("stem").to_arrow()
        with stage.writer(f"decisions/{shard.stem}.parquet") as w:
            w.write(_plain_strings(part))
    if d.cluster_stats is not None:
        with stage.writer("cluster_stats.parquet") as w:
            w.write(d.cluster_stats.to_arrow())
    stage.run_dir.write_text("prune.json", json.dumps(d.summary, indent=2))


def _plain_strings(t: pa.Table) -> pa.Table:
    """polars writes large_string / string_view; the column contract says string."""
    fields = []
    for f in t.schema:
        if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return t.cast(pa.schema(fields))
