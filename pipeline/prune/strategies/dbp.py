"""``dbp`` (density-based pruning, Abbas et al. 2024): SemDeDup at ``dedup.eps`` first, then per-cluster quotas by
water-filling over ``softmax(d_inter · d_intra / τ)``; within a cluster keep the hardest (``prune.dbp_keep``). If N
exceeds the documents left after SemDeDup, all of them are kept plus the least-duplicated duplicates.

Two-pass form: the cluster statistics and quotas from pass 0, then one cut per cluster over its survivors (or one
global cut over the duplicates when N exceeds the survivors). Ties: the seeded ``row_hash``, then canonical order."""

from __future__ import annotations

import numpy as np
from loguru import logger

from winnow.pipeline.prune.base import Decision, PruneContext, cluster_stats_frame, cluster_table, take_top
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import select
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons
from winnow.scorers.complexity import dbp_quotas


def _warn(target: int, n_surv: int, eps: float) -> None:
    logger.warning(
        f"prune: dbp target {target} exceeds the {n_surv} documents left after SemDeDup at eps="
        f"{eps}; keeping all of them and the {target - n_surv} least-duplicated duplicates"
    )


def _dup_keys(sh: ShardScores) -> np.ndarray:
    return sh.keys(np.nan_to_num(sh.sims, nan=-np.inf), largest=False)


def _plan(inp: PlanInput) -> Plan:
    p, target, eps = inp.cfg.prune, inp.target, inp.cfg.dedup.eps
    size, size_s, d_intra, d_int, comp = inp.totals.cluster_table(inp.cfg, inp.centroids)
    n_surv = inp.totals.survivors
    plan = Plan(p.strategy, target)
    if target > n_surv:
        _warn(target, n_surv, eps)

        def dups(sh: ShardScores):
            d = sh.dup(eps)
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
            s = ~sh.dup(eps)
            return sh.labels[s], sh.keys(sh.dist, largest)[s]

        plan.cuts["quota"] = select(inp.stream(survivors), len(quota), quota)
    inp.summary["cluster_quota_sum"] = int(quota.sum())
    plan.cluster_stats = cluster_stats_frame(size, size_s, d_intra, d_int, comp, quota)
    return plan


def _apply(plan: Plan, cfg, sh: ShardScores):
    dup = sh.dup(cfg.dedup.eps)
    if "extra" in plan.cuts:
        keep = ~dup
        idx = np.flatnonzero(dup)
        keep[idx] = plan.cuts["extra"].keep(np.zeros(len(idx), np.int64), _dup_keys(sh)[idx])
    else:
        keep = plan.cuts["quota"].keep(sh.labels, sh.keys(sh.dist, cfg.prune.dbp_keep == "hard")) & ~dup
    reason = reasons(sh.n)
    reason[~keep & dup] = "semdedup_duplicate"
    reason[~keep & ~dup] = "dbp_quota"
    return keep, reason


@STRATEGIES.register("dbp", order=40, needs=("clusters", "dedup"), target="required", two_pass=TwoPass(_plan, _apply))
def dbp(ctx: PruneContext) -> Decision:
    """SemDeDup, then per-cluster quotas from cluster complexity (Abbas et al. 2024)."""
    p, target, dup = ctx.cfg.prune, ctx.target, ctx.dup
    keep, reason = ctx.empty()
    survivors = ~dup
    size, size_s, d_intra, d_int, comp = cluster_table(ctx.frame, ctx.centroids, survivors, ctx.cfg)
    n_surv = int(survivors.sum())
    if target > n_surv:
        _warn(target, n_surv, ctx.cfg.dedup.eps)
        keep = survivors.copy()
        extra = take_top(
            np.nan_to_num(ctx.sims, nan=-np.inf), ctx.idx[~survivors], target - n_surv, largest=False, tie=ctx.tie
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
