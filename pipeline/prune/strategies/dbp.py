"""``dbp`` (density-based pruning, Abbas et al. 2024): SemDeDup at ``dedup.eps`` first, then per-cluster quotas by
water-filling over ``softmax(d_inter · d_intra / τ)``; within a cluster keep the hardest (``prune.dbp_keep``). If N
exceeds the documents left after SemDeDup, all of them are kept plus the least-duplicated duplicates."""

from __future__ import annotations

import numpy as np
from loguru import logger

from winnow.pipeline.prune.base import Decision, PruneContext, cluster_stats_frame, cluster_table, take_top
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.scorers.complexity import dbp_quotas


@STRATEGIES.register("dbp", order=40, needs=("clusters", "dedup"), target="required")
def dbp(ctx: PruneContext) -> Decision:
    """SemDeDup, then per-cluster quotas from cluster complexity (Abbas et al. 2024)."""
    p, target, dup = ctx.cfg.prune, ctx.target, ctx.dup
    keep, reason = ctx.empty()
    survivors = ~dup
    size, size_s, d_intra, d_int, comp = cluster_table(ctx.frame, ctx.centroids, survivors, ctx.cfg)
    n_surv = int(survivors.sum())
    if target > n_surv:
        logger.warning(
            f"prune: dbp target {target} exceeds the {n_surv} documents left after SemDeDup at eps="
            f"{ctx.cfg.dedup.eps}; keeping all of them and the {target - n_surv} least-duplicated duplicates"
        )
        keep = survivors.copy()
        extra = take_top(np.nan_to_num(ctx.sims, nan=-np.inf), ctx.idx[~survivors], target - n_surv, largest=False)
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
        keep[take_top(dist, members, int(quota[c]), largest)] = True
