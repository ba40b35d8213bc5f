"""``dbp`` (density-based pruning, Abbas et al. 2024): SemDeDup at ``dedup.eps`` first, then per-cluster quotas by
water-filling over ``softmax(d_inter · d_intra / τ)``; within a cluster keep the hardest (``prune.dbp_keep``). If N
exceeds the documents left after SemDeDup, all of them are kept plus the least-duplicated duplicates.

``dbp_quality`` is the paper's full recipe: it filters by a quality score first (CLIP score on LAION) and runs DBP
on what is left. Here the pool is the best ``prune.quality_pool`` of the documents by ``quality_score`` (at least
N of them; ties by the seeded ``row_hash``, then canonical order); documents outside it get ``quality_pool``, and
SemDeDup and the quotas see only the pool. DBP alone is a diversity method: it thins dense clusters (templated
boilerplate, machine noise, near-copies) but cannot see junk that embeds like good text (shuffled word salad).

Two-pass form: the cluster statistics and quotas from pass 0, then one cut per cluster over its survivors (or one
global cut over the duplicates when N exceeds the survivors). Ties: the seeded ``row_hash``, then canonical order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
from loguru import logger

from winnow.pipeline.prune.base import Decision, PruneContext, cluster_stats_frame, cluster_table, take_top
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import select
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, Totals, TwoPass, reasons
from winnow.scorers.complexity import dbp_quotas


def _warn(target: int, n_surv: int, eps: float) -> None:
    logger.warning(
        f"prune: dbp target {target} exceeds the {n_surv} documents left after SemDeDup at eps="
        f"{eps}; keeping all of them and the {target - n_surv} least-duplicated duplicates"
    )


def _dup_keys(sh: ShardScores) -> np.ndarray:
    return sh.keys(np.nan_to_num(sh.sims, nan=-np.inf), largest=False)


#: the eligible rows of a shard (``dbp_quality``'s pool), or None for every row
Eligible = Callable[[ShardScores], np.ndarray] | None


def _plan_over(inp: PlanInput, totals: Totals, eligible: Eligible, plan: Plan) -> Plan:
    """DBP's cuts over the eligible rows, with ``totals`` summed over them."""
    p, target, eps = inp.cfg.prune, inp.target, inp.cfg.dedup.eps
    size, size_s, d_intra, d_int, comp = totals.cluster_table(inp.cfg, inp.centroids)
    n_surv = totals.survivors

    def ok(sh: ShardScores) -> np.ndarray:
        return np.ones(sh.n, dtype=bool) if eligible is None else eligible(sh)

    if target > n_surv:
        _warn(target, n_surv, eps)

        def dups(sh: ShardScores):
            d = sh.dup(eps) & ok(sh)
            return np.zeros(int(d.sum()), np.int64), _dup_keys(sh)[d]

        plan.cuts["extra"] = inp.top(dups, target - n_surv)
        quota = size_s.copy()
        inp.summary["target_exceeds_survivors"] = True
    else:
        comp, _prob, quota = dbp_quotas(
            size_s, d_intra, d_int, target, p.dbp_temperature, p.dbp_balance, p.dbp_min_cluster_size
        )
        largest = p.dbp_keep == "hard"

        def survivors(sh: ShardScores):
            s = ~sh.dup(eps) & ok(sh)
            return sh.labels[s], sh.keys(sh.dist, largest)[s]

        plan.cuts["quota"] = select(inp.stream(survivors), len(quota), quota)
    inp.summary["cluster_quota_sum"] = int(quota.sum())
    plan.cluster_stats = cluster_stats_frame(size, size_s, d_intra, d_int, comp, quota)
    return plan


def _plan(inp: PlanInput) -> Plan:
    return _plan_over(inp, inp.totals, None, Plan(inp.cfg.prune.strategy, inp.target))


def _apply_over(plan: Plan, cfg, sh: ShardScores, eligible: np.ndarray):
    dup = sh.dup(cfg.dedup.eps)
    if "extra" in plan.cuts:
        keep = ~dup & eligible
        idx = np.flatnonzero(dup & eligible)
        keep[idx] = plan.cuts["extra"].keep(np.zeros(len(idx), np.int64), _dup_keys(sh)[idx])
    else:
        keep = plan.cuts["quota"].keep(sh.labels, sh.keys(sh.dist, cfg.prune.dbp_keep == "hard")) & ~dup & eligible
    reason = reasons(sh.n)
    reason[~keep & dup] = "semdedup_duplicate"
    reason[~keep & ~dup] = "dbp_quota"
    reason[~eligible] = "quality_pool"
    return keep, reason


def _apply(plan: Plan, cfg, sh: ShardScores):
    return _apply_over(plan, cfg, sh, np.ones(sh.n, dtype=bool))


def _pool_keys(sh: ShardScores) -> np.ndarray:
    return sh.keys(_quality_score(sh.quality_columns(["quality_score"])), largest=True)


def _in_pool(plan: Plan, sh: ShardScores) -> np.ndarray:
    return plan.cuts["pool"].keep(np.zeros(sh.n, np.int64), _pool_keys(sh))


def _plan_quality(inp: PlanInput) -> Plan:
    """The pool's cut (the best documents by quality_score), pass 0 again over the pool, then DBP's cuts."""
    plan = Plan(inp.cfg.prune.strategy, inp.target)
    size = pool_size(inp.cfg.prune.quality_pool, inp.totals.n, inp.target)
    plan.cuts["pool"] = inp.top(lambda sh: (np.zeros(sh.n, np.int64), _pool_keys(sh)), size)
    inp.summary["quality_pool"] = size
    totals = Totals.of_clusters(inp.totals.k)
    for sh in inp.src:
        totals.add(sh, inp.cfg, _in_pool(plan, sh))
    return _plan_over(inp, totals, lambda sh: _in_pool(plan, sh), plan)


def _apply_quality(plan: Plan, cfg, sh: ShardScores):
    return _apply_over(plan, cfg, sh, _in_pool(plan, sh))


@STRATEGIES.register("dbp", order=40, needs=("clusters", "dedup"), target="required", two_pass=TwoPass(_plan, _apply))
def dbp(ctx: PruneContext) -> Decision:
    """SemDeDup, then per-cluster quotas from cluster complexity (Abbas et al. 2024)."""
    return _dbp(ctx, None)


@STRATEGIES.register(
    "dbp_quality", order=45, needs=("clusters", "dedup", "quality"), target="required",
    two_pass=TwoPass(_plan_quality, _apply_quality),
)  # fmt: skip
def dbp_quality(ctx: PruneContext) -> Decision:
    """DBP over the best ``prune.quality_pool`` of the documents by quality_score (the DBP paper's recipe)."""
    pool = np.zeros(ctx.n, dtype=bool)
    pool[take_top(_quality_score(ctx.frame), ctx.idx, pool_size(ctx.cfg.prune.quality_pool, ctx.n, ctx.target), True,
                  ctx.tie)] = True  # fmt: skip
    ctx.summary["quality_pool"] = int(pool.sum())
    return _dbp(ctx, pool)


def pool_size(share: float, n: int, target: int) -> int:
    """Documents in the quality pool: ``round(share · n)`` (half up), at least the target."""
    return max(int(np.floor(share * n + 0.5)), target)


def _quality_score(frame: pl.DataFrame) -> np.ndarray:
    """The pool's ranking: ``quality_score`` (null: -inf), of the whole frame or of one shard's quality columns."""
    return frame["quality_score"].cast(pl.Float64).fill_null(-np.inf).to_numpy()


def _dbp(ctx: PruneContext, pool: np.ndarray | None) -> Decision:
    p, target, dup = ctx.cfg.prune, ctx.target, ctx.dup
    keep, reason = ctx.empty()
    eligible = np.ones(ctx.n, dtype=bool) if pool is None else pool
    survivors = ~dup & eligible
    size, size_s, d_intra, d_int, comp = cluster_table(ctx.frame, ctx.centroids, survivors, ctx.cfg)
    n_surv = int(survivors.sum())
    if target > n_surv:
        _warn(target, n_surv, ctx.cfg.dedup.eps)
        keep = survivors.copy()
        extra = take_top(
            np.nan_to_num(ctx.sims, nan=-np.inf), ctx.idx[dup & eligible], target - n_surv, largest=False, tie=ctx.tie
        )
        keep[extra] = True
        quota = size_s.copy()
        ctx.summary["target_exceeds_survivors"] = True
    else:
        comp, _prob, quota = dbp_quotas(
            size_s, d_intra, d_int, target, p.dbp_temperature, p.dbp_balance, p.dbp_min_cluster_size
        )
        _keep_quotas(ctx, keep, survivors, quota, largest=p.dbp_keep == "hard")
    reason[~keep & dup] = "semdedup_duplicate"
    reason[~keep & ~dup] = "dbp_quota"
    reason[~eligible] = "quality_pool"
    ctx.summary["cluster_quota_sum"] = int(quota.sum())
    return ctx.finish(keep, reason, cluster_stats_frame(size, size_s, d_intra, d_int, comp, quota))


def _keep_quotas(ctx: PruneContext, keep: np.ndarray, survivors: np.ndarray, quota: np.ndarray, largest: bool) -> None:
    """Within each cluster with a quota, keep that many survivors, hardest (or easiest) first."""
    labels = ctx.frame["cluster_id"].to_numpy()
    dist = ctx.frame["dist_to_centroid"].to_numpy()
    idx = ctx.idx
    for c in np.flatnonzero(quota):
        members = idx[(labels == c) & survivors]
        keep[take_top(dist, members, int(quota[c]), largest, ctx.tie)] = True
