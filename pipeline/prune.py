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
- ``quality`` / ``dataman_level`` (DataMan, DESIGN §3.6): a selection by *tokens* (``n_words``, at least 1 per
  document). The target becomes a token budget ``T = round(N · W / n)`` (W: the tokens of all n documents, so
  ``keep_fraction`` f keeps about f of the tokens). ``prune.stratify`` cuts the documents into strata; each stratum
  that has an eligible document gets a token quota proportional to its token share (largest remainder), and keeps
  the prefix of its ranking (``quality``: top by ``quality_score`` or the sum of ``prune.quality_by``;
  ``dataman_level``: a seeded shuffle of the documents at the level) whose tokens come closest to its quota plus
  the rounding left over by the strata before it. Kept tokens are within one document of T, each stratum within
  about one document of its quota, and a stratum's quota never exceeds its tokens, so ``quality`` never repeats a
  document and at ``keep_fraction`` 1 keeps every document exactly once. Only ``dataman_level`` can find a stratum
  short of its quota (its documents at the level hold fewer tokens); that stratum is upsampled with replacement and
  the draws per document go to the ``repeat`` column. ``dataman_level`` without a target keeps every document at the
  level once.
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
from winnow.clustering.semdedup import is_duplicate, kept_fraction_by_eps
from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.pipeline.config import WinnowConfig
from winnow.scorers.base import CRITERION_COLUMNS
from winnow.scorers.complexity import d_inter, dbp_quotas

if TYPE_CHECKING:
    from winnow.core.rundir import RunDir
    from winnow.pipeline.stages import Stage

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
    from winnow.core.layout import bucket_name, read_parquet

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
    from winnow.scorers.complexity import complexity

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


def _prefix_closest(cum: np.ndarray, goal: int) -> int:
    """How many leading items (0..len) bring the running total ``cum`` closest to ``goal``; a tie takes fewer."""
    i = int(np.searchsorted(cum, goal, side="left"))  # i + 1 items are the first to reach the goal
    if i >= len(cum):
        return len(cum)
    below = int(cum[i - 1]) if i > 0 else 0
    return i if goal - below <= int(cum[i]) - goal else i + 1


def _draw_with_replacement(rng: np.random.Generator, tokens: np.ndarray, goal: int) -> np.ndarray:
    """Positions into ``tokens`` drawn uniformly with replacement until their tokens come closest to ``goal``."""
    picks, total, mean = [], 0, float(tokens.mean())
    while True:
        size = int(math.ceil(max(goal - total, 0) / mean * 1.25)) + 16
        batch = rng.integers(0, len(tokens), size)
        cum = total + np.cumsum(tokens[batch])
        k = _prefix_closest(cum, goal)
        picks.append(batch[:k])
        if k < size:
            return np.concatenate(picks)
        total = int(cum[-1])


def _quality_selection(frame, cfg, target, centroids, dup, summary) -> Decision:
    """DataMan selection by tokens (see the module docstring): strata by ``prune.stratify`` with token-share quotas
    of the token budget; within a stratum the top by quality (``quality``) or a uniform sample of one
    ``quality_overall`` level (``dataman_level``); strata short of their quota (``dataman_level`` only) upsampled
    with replacement, the draws per document in ``repeat``."""
    p = cfg.prune
    n = frame.height
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
    # tokens: whitespace words (the mixer's and the report's count), at least one per document
    words = frame["n_words"].cast(pl.Float64).fill_null(1.0).to_numpy()
    tokens = np.maximum(np.rint(words), 1).astype(np.int64)
    total_tokens = int(tokens.sum())
    token_target = (2 * target * total_tokens + n) // (2 * n) if n else 0  # round(N · W / n), half up
    code = strata(frame, list(p.stratify))
    n_strata = int(code.max()) + 1 if n else 0
    stratum_tokens = np.bincount(code, weights=tokens, minlength=n_strata).astype(np.int64)
    eligible_tokens = np.bincount(code[eligible], weights=tokens[eligible], minlength=n_strata).astype(np.int64)
    # token quotas over the strata that have an eligible document (the others cannot contribute); a quota never
    # exceeds its stratum's tokens, since token_target ≤ total_tokens
    has_eligible = np.bincount(code[eligible], minlength=n_strata) > 0
    quotas = proportional_quotas(stratum_tokens * has_eligible, token_target)
    # the members of each stratum in canonical order
    by_code = np.argsort(code, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=n_strata))])
    repeat = np.zeros(n, dtype=np.int32)
    drawn = np.zeros(n_strata, dtype=np.int64)
    carry = upsampled = 0  # carry: tokens the strata before fell short of their quotas (negative: over)
    for s_ in np.flatnonzero(has_eligible):
        members = by_code[bounds[s_] : bounds[s_ + 1]]
        cand = members[eligible[members]]
        rng = np.random.default_rng([cfg.run.seed, 0x51, int(s_)])
        if score is not None:  # top by score, ties by canonical order
            order = cand[np.lexsort((cand, -score[cand]))]
        else:  # uniform sample of the level
            order = cand[rng.permutation(len(cand))]
        goal = int(quotas[s_]) + carry
        cum = np.cumsum(tokens[order])
        k = _prefix_closest(cum, goal)
        repeat[order[:k]] = 1
        got = int(cum[k - 1]) if k else 0
        if p.strategy == "dataman_level" and quotas[s_] > eligible_tokens[s_] and goal > got:
            # short stratum (its documents at the level hold fewer tokens than its quota): upsample with replacement
            extra = order[_draw_with_replacement(rng, tokens[order], goal - got)]
            np.add.at(repeat, extra, 1)
            got += int(tokens[extra].sum())
            upsampled += len(extra)
        drawn[s_] = got
        carry = goal - got
    keep = repeat > 0
    reason = np.full(n, None, dtype=object)
    if score is not None:
        reason[~keep] = "quality_rank"
    else:
        reason[~keep & eligible] = "dataman_sample"
        reason[~keep & ~eligible] = "dataman_level"
    tokens_drawn = int((tokens * repeat).sum())
    shortfall = token_target if not has_eligible.any() else 0
    if shortfall:
        logger.warning(f"prune: no document is eligible for {p.strategy}; {shortfall} target tokens not drawn")
    elif n and abs(tokens_drawn - token_target) > int(tokens.max()):  # pragma: no cover - a bug, never bad input
        raise AssertionError(f"prune drew {tokens_drawn} tokens, target {token_target}")
    first = np.unique(code, return_index=True)[1] if n else np.zeros(0, np.int64)
    keys = frame[first.tolist()].select(list(p.stratify)).to_dicts() if p.stratify else [{}] * len(first)
    summary.update(
        unit="tokens",
        strata=int(n_strata),
        strata_without_eligible=int((~has_eligible).sum()),
        tokens_total=total_tokens,
        token_target=int(token_target),
        tokens_drawn=tokens_drawn,
        unique_tokens_kept=int(tokens[keep].sum()),
        shortfall=int(shortfall),
        upsampled_draws=int(upsampled),
        draws=int(repeat.sum()),
        by_stratum=[
            {
                **keys[s_],
                "docs": int(bounds[s_ + 1] - bounds[s_]),
                "tokens": int(stratum_tokens[s_]),
                "eligible_tokens": int(eligible_tokens[s_]),
                "quota_tokens": int(quotas[s_]),
                "drawn_tokens": int(drawn[s_]),
                "kept": int(keep[by_code[bounds[s_] : bounds[s_ + 1]]].sum()),
                "draws": int(repeat[by_code[bounds[s_] : bounds[s_ + 1]]].sum()),
            }
            for s_ in range(n_strata)
        ],
    )
    stats = None
    if centroids is not None and "cluster_id" in frame.columns:
        survivors = ~dup if dup is not None else np.ones(n, dtype=bool)
        stats = _cluster_stats_frame(*cluster_table(frame, centroids, survivors, cfg))
    # the target is in tokens here: draws need not equal the document target N
    return _finish(frame, cfg, keep, reason, target, stats, summary, repeat=repeat, check_draws=False)


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


def _finish(frame, cfg, keep, reason, target, stats, summary, repeat=None, check_draws=True) -> Decision:
    drawn = int(keep.sum()) if repeat is None else int(repeat.sum())
    if check_draws and target is not None and drawn != target:  # pragma: no cover - a bug, never bad input
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
