"""``semdedup``: without a target drop every duplicate at ``dedup.eps``; with one keep the N least-duplicated."""

from __future__ import annotations

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext, take_top
from winnow.pipeline.prune.registry import STRATEGIES


@STRATEGIES.register("semdedup", order=20, needs=("clusters", "dedup"), target="optional")
def semdedup(ctx: PruneContext) -> Decision:
    """Drop semantic duplicates at dedup.eps, or keep the N least-duplicated."""
    keep, reason = ctx.empty()
    dup = ctx.dup
    if ctx.target is None:
        keep = ~dup
    else:
        score = np.nan_to_num(ctx.sims, nan=-np.inf)
        keep[take_top(score, ctx.idx, ctx.target, largest=False)] = True
    reason[~keep & dup] = "semdedup_duplicate"
    reason[~keep & ~dup] = "semdedup_rank"
    return ctx.finish(keep, reason, ctx.default_cluster_stats())
