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
from scorers.base import CRITERION_COLUMNS
from scorers.complexity import d_inter, dbp_quotas

if TYPE_CHECKING:
    from pipeline.rundir import RunDir
    from pipeline.stages import Stage

NEEDS_CLUSTERS = ("prototypicality_easy", "prototypicality_hard", "dbp", "semdedup")
NEEDS_DEDUP = ("semdedup", "dbp")
NEEDS_QUALITY = ("quality", "dataman_level")
#: quality columns carried from ``quality/`` into the decisions and the curated shards
QUALITY_OUT = (*CRITERION_COLUMNS, "quality_overall", "quality_score", "quality_domain")


def load_scores(
    run: RunDir,
    shards: list[Shard],
    id_field: str,
    clusters: bool,
    dedup: bool,
    n_buckets: int = 0,
    quality: bool = False,
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
        if quality:
            q = pl.from_arrow(read_parquet(run, f"quality/{shard.stem}.parquet")).rename({id_field: "_qid"})
            if q.height != f.height or not q["_qid"].equals(f["id"], check_names=False):
                raise CurationError(f"quality/{shard.stem}.parquet does not match the shard: rerun `winnow score`")
            f = pl.concat([f, q.drop("_qid")], how="horizontal")
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
        stats = _cluster_stats_frame(size, size_s, d_intra, d_int, comp, quota)
        return _finish(frame, cfg, keep, reason, target, stats, summary)
    elif strategy in NEEDS_QUALITY:
        return _quality_selection(frame, cfg, target, centroids, dup, summary)
    else:  # pragma: no cover - the config validates the strategy
        raise CurationError(f"unknown prune.strategy {strategy!r}")
    stats = None
    if centroids is not None and "cluster_id" in frame.columns:
        survivors = ~dup if dup is not None else np.ones(n, dtype=bool)
        stats = _cluster_stats_frame(*cluster_table(frame, centroids, survivors, cfg))
    return _finish(frame, cfg, keep, reason, target, stats, summary)


def strata(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """A stratum code per row from ``columns`` (nulls are a stratum of their own), in sorted key order."""
    if not columns:
        return np.zeros(frame.height, np.int64)
    keys = frame.select([pl.col(c).cast(pl.String).fill_null("\x00null") for c in columns])
    uniq = keys.unique().sort(columns)
    coded = keys.with_row_index("_row").join(uniq.with_row_index("_s"), on=columns, how="left").sort("_row")
    return coded["_s"].to_numpy().astype(np.int64)


def proportional_quotas(weights: np.ndarray, target: int) -> np.ndarray:
    """Integers summing to ``target``, proportional to ``weights`` (largest remainder; ties: lower index)."""
    w = np.asarray(weights, np.float64)
    if target == 0 or w.sum() <= 0:
        return np.zeros(len(w), np.int64)
    ideal = target * w / w.sum()
    base = np.floor(ideal).astype(np.int64)
    rest = target - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -(ideal - base)))
    base[order[:rest]] += 1
    return base


def _quality_selection(frame, cfg, target, centroids, dup, summary) -> Decision:
    """DataMan selection: strata by source and domain with token-share quotas; top-k by quality (``quality``) or a
    uniform sample of one ``quality_overall`` level (``dataman_level``); short strata upsampled with replacement."""
    p = cfg.prune
    n = frame.height
    idx = np.arange(n, dtype=np.int64)
    level = frame["quality_overall"].to_numpy(allow_copy=True)
    if p.strategy == "quality":
        if p.quality_by:
            cols = [frame[f"quality_{c}"].cast(pl.Float64).fill_null(0.0).to_numpy() for c in p.quality_by]
            score = np.sum(cols, axis=0)
        else:
            score = frame["quality_score"].cast(pl.Float64).fill_null(-np.inf).to_numpy()
        eligible = np.ones(n, dtype=bool)
    else:
        score = None
        eligible = np.nan_to_num(level.astype(np.float64), nan=-1) == p.dataman_level
    if target is None:  # dataman_level without a target: every document at the level, once
        keep = eligible.copy()
        repeat = keep.astype(np.int32)
        reason = np.where(keep, None, "dataman_level").astype(object)
        summary.update(strata=None, shortfall=0)
        return _finish(frame, cfg, keep, reason, None, None, summary, repeat=repeat)
    code = strata(frame, list(p.stratify))
    words = frame["n_words"].cast(pl.Float64).fill_null(1.0).to_numpy()
    n_strata = int(code.max()) + 1 if n else 0
    # quotas by token share, over the strata that have an eligible document (the others cannot contribute)
    has_eligible = np.bincount(code[eligible], minlength=n_strata) > 0
    weights = np.bincount(code, weights=np.maximum(words, 1.0), minlength=n_strata) * has_eligible
    quotas = proportional_quotas(weights, target)
    summary["strata_without_eligible"] = int((~has_eligible).sum())
    repeat = np.zeros(n, dtype=np.int32)
    shortfall = upsampled = 0
    for s_, q in enumerate(quotas):
        cand = idx[(code == s_) & eligible]
        if q == 0:
            continue
        rng = np.random.default_rng([cfg.run.seed, 0x51, s_])
        if len(cand) == 0:
            shortfall += int(q)
            continue
        if score is not None:  # top-k by score, ties by canonical order
            order = cand[np.lexsort((cand, -score[cand]))]
        else:  # uniform sample of the level
            order = cand[rng.permutation(len(cand))]
        take = order[: min(q, len(order))]
        repeat[take] = 1
        extra = int(q) - len(take)
        if extra > 0:  # short stratum: upsample with replacement, record the repeats
            draws = rng.integers(0, len(take), extra)
            np.add.at(repeat, take[draws], 1)
            upsampled += extra
    keep = repeat > 0
    reason = np.full(n, None, dtype=object)
    if score is not None:
        reason[~keep] = "quality_rank"
    else:
        reason[~keep & eligible] = "dataman_sample"
        reason[~keep & ~eligible] = "dataman_level"
    summary.update(strata=int(n_strata), shortfall=shortfall, upsampled_draws=upsampled, draws=int(repeat.sum()))
    if shortfall:
        logger.warning(f"prune: {shortfall} of {target} draws found no eligible document in their stratum")
    stats = None
    if centroids is not None and "cluster_id" in frame.columns:
        survivors = ~dup if dup is not None else np.ones(n, dtype=bool)
        stats = _cluster_stats_frame(*cluster_table(frame, centroids, survivors, cfg))
    return _finish(frame, cfg, keep, reason, target - shortfall, stats, summary, repeat=repeat)


def _cluster_stats_frame(size, size_s, d_intra, d_int, comp, quota=None) -> pl.DataFrame:
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


def _finish(frame, cfg, keep, reason, target, stats, summary, repeat=None) -> Decision:
    drawn = int(keep.sum()) if repeat is None else int(repeat.sum())
    if target is not None and drawn != target:  # pragma: no cover - a bug, never bad input
        raise AssertionError(f"prune drew {drawn} documents, target {target}")
    if "dup_max_sim" in frame.columns:
        summary["kept_fraction_by_eps"] = {
            str(k): v
            for k, v in kept_fraction_by_eps(
                frame["dup_max_sim"].to_numpy().astype(np.float32), cfg.dedup.eps_sweep
            ).items()
        }
    decision = Decision(
        n=frame.height, keep=keep, reason=reason, target=target, cluster_stats=stats, summary=summary, repeat=repeat
    )
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
    for name in QUALITY_OUT:
        if name in frame.columns:
            cols[name] = frame[name]
    if d.repeat is not None:
        cols["repeat"] = pl.Series("repeat", d.repeat, dtype=pl.Int32)
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
