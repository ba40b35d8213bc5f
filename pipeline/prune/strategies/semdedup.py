"""``semdedup``: without a target drop every duplicate at ``dedup.eps``; with one keep the N least-duplicated."""

from __future__ import annotations

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext, take_top
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons


def _keys(sh: ShardScores) -> np.ndarray:
    return sh.keys(np.nan_to_num(sh.sims, nan=-np.inf), largest=False)


def _plan(inp: PlanInput) -> Plan:
    cuts = {}
    if inp.target is not None:
        cuts["rank"] = inp.top(lambda sh: (np.zeros(sh.n, np.int64), _keys(sh)), inp.target)
    return Plan(inp.cfg.prune.strategy, inp.target, cuts, cluster_stats=inp.default_cluster_stats())


def _apply(plan: Plan, cfg, sh: ShardScores):
    dup = sh.dup(cfg.dedup.eps)
    keep = ~dup if plan.target is None else plan.cuts["rank"].keep(np.zeros(sh.n, np.int64), _keys(sh))
    reason = reasons(sh.n)
    reason[~keep & dup] = "semdedup_duplicate"
    reason[~keep & ~dup] = "semdedup_rank"
    return keep, reason


@STRATEGIES.register(
    "semdedup", order=20, needs=("clusters", "dedup"), target="optional", two_pass=TwoPass(_plan, _apply)
)
def semdedup(ctx: PruneContext) -> Decision:
    """Drop semantic duplicates at dedup.eps, or keep the N least-duplicated."""
    keep, reason = ctx.empty()
    dup = ctx.dup
    if ctx.target is None:
        keep = ~dup
    else:
        score = np.nan_to_num(ctx.sims, nan=-np.inf)
        keep[take_top(score, ctx.idx, ctx.target, largest=False, tie=ctx.tie)] = True
    reason[~keep & dup] = "semdedup_duplicate"
    reason[~keep & ~dup] = "semdedup_rank"
    return ctx.finish(keep, reason, ctx.default_cluster_stats())
